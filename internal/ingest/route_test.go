package ingest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

// mixedEvents are n events over the given correlations, round robin.
func mixedEvents(n int, correlations ...string) []*audit.Event {
	out := make([]*audit.Event, n)
	for i := range out {
		out[i] = &audit.Event{ID: uuid.New(), CorrelationID: correlations[i%len(correlations)], Data: []byte(`{}`)}
	}
	return out
}

func TestRouteKeepsEveryCorrelationOnOneWriterAndEveryPartInOrder(t *testing.T) {
	t.Parallel()
	p, _ := start(t, &fakeStore{}, nil, Options{Writers: 4})
	var corrs []string
	for i := range 40 {
		corrs = append(corrs, fmt.Sprintf("rr-%d", i))
	}
	writerOf := map[string]int{}
	for range 20 {
		events := mixedEvents(100, corrs...)
		ps := p.route(events)
		require.Greater(t, len(ps), 1, "100 events over 40 correlations span several writers")
		seen := 0
		for _, pt := range ps {
			last := -1
			for _, e := range pt.events {
				if w, ok := writerOf[e.CorrelationID]; ok {
					assert.Equal(t, w, pt.writer, "%s always goes to the same writer", e.CorrelationID)
				}
				writerOf[e.CorrelationID] = pt.writer
				i := indexOf(events, e)
				assert.Greater(t, i, last, "a part keeps the request's order")
				last = i
				seen++
			}
		}
		assert.Equal(t, len(events), seen, "every event is in exactly one part")
	}

	one := mixedEvents(30, "rr-single")
	ps := p.route(one)
	require.Len(t, ps, 1, "one correlation, one part")
	assert.Equal(t, ids(one), ids(ps[0].events))
}

func indexOf(events []*audit.Event, e *audit.Event) int {
	for i, x := range events {
		if x == e {
			return i
		}
	}
	return -1
}

func TestRouteKeepsAChildWithAParentEarlierInTheRequest(t *testing.T) {
	t.Parallel()
	p, _ := start(t, &fakeStore{}, nil, Options{Writers: 8})
	events := mixedEvents(64, "rr-a", "rr-b", "rr-c", "rr-d", "rr-e", "rr-f", "rr-g", "rr-h")
	// Children in other correlations than their parents, chains of them.
	for i := 8; i < len(events); i += 3 {
		id := events[i-5].ID
		events[i].ParentID = &id
	}
	partOf := map[uuid.UUID]int{}
	for k, pt := range p.route(events) {
		for _, e := range pt.events {
			partOf[e.ID] = k
		}
	}
	for _, e := range events {
		if e.ParentID != nil {
			assert.Equal(t, partOf[*e.ParentID], partOf[e.ID], "a child commits in its parent's transaction")
		}
	}
}

// exclusiveStore fails the test if two InsertEvents calls are ever in
// flight with a correlation in common: what the chain locks would make wait.
type exclusiveStore struct {
	fakeStore
	t        *testing.T
	mu       sync.Mutex
	inFlight map[string]bool
	overlaps int
}

func (s *exclusiveStore) InsertEvents(ctx context.Context, events []*audit.Event) (int64, error) {
	corrs := map[string]bool{}
	for _, e := range events {
		corrs[e.CorrelationID] = true
	}
	s.mu.Lock()
	for c := range corrs {
		if s.inFlight[c] {
			s.overlaps++
		}
		s.inFlight[c] = true
	}
	s.mu.Unlock()
	time.Sleep(200 * time.Microsecond) // a commit takes time: give others the chance to overlap
	n, err := s.fakeStore.InsertEvents(ctx, events)
	s.mu.Lock()
	for c := range corrs {
		delete(s.inFlight, c)
	}
	s.mu.Unlock()
	return n, err
}

func TestConcurrentCommitsNeverShareACorrelation(t *testing.T) {
	t.Parallel()
	st := &exclusiveStore{t: t, inFlight: map[string]bool{}}
	p, _ := start(t, st, nil, Options{Writers: 4, MaxBatch: 50})
	var corrs []string
	for i := range 30 {
		corrs = append(corrs, fmt.Sprintf("rr-%d", i))
	}
	var wg sync.WaitGroup
	var all [][]*audit.Event
	var mu sync.Mutex
	for w := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range 30 {
				events := mixedEvents(1+rng.IntN(40), corrs[rng.IntN(10):]...)
				o, err := p.Submit(context.Background(), events)
				assert.NoError(t, err)
				assert.Equal(t, Committed, o)
				mu.Lock()
				all = append(all, events)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Zero(t, st.overlaps, "two commits in flight shared a correlation")
	committed := map[uuid.UUID]int{}
	for _, id := range st.committedIDs() {
		committed[id]++
	}
	for _, events := range all {
		for _, e := range events {
			assert.Equal(t, 1, committed[e.ID], "every event committed once")
		}
	}
}

func TestASplitRequestAnswersQueuedWhenOnePartWasSpooled(t *testing.T) {
	t.Parallel()
	var down string // the correlation whose commit meets an outage
	st := &fakeStore{insert: func(_ context.Context, _ int, evs []*audit.Event) (int64, error) {
		for _, e := range evs {
			if e.CorrelationID == down {
				return 0, &pgconn.PgError{Code: "57P01"}
			}
		}
		return int64(len(evs)), nil
	}}
	sp := &fakeSpool{}
	p, _ := start(t, st, sp, Options{Writers: 2})
	events := splitAcrossWriters(t, p)
	down = events[len(events)-1].CorrelationID
	o, err := p.Submit(context.Background(), events)
	require.NoError(t, err)
	assert.Equal(t, Queued, o)
	assert.ElementsMatch(t, ids(events), append(st.committedIDs(), sp.spooledIDs()...), "every event stored or spooled, once")
	assert.NotEmpty(t, st.committedIDs())
	assert.NotEmpty(t, sp.spooledIDs())
}

// splitAcrossWriters returns a request that p's routing splits in two.
func splitAcrossWriters(t *testing.T, p *Pipeline) []*audit.Event {
	t.Helper()
	for i := 0; ; i++ {
		events := mixedEvents(6, fmt.Sprintf("rr-x%d", i), fmt.Sprintf("rr-y%d", i))
		if len(p.route(events)) == 2 {
			return events
		}
		require.Less(t, i, 1000, "no pair of correlations on two writers")
	}
}

func TestASplitRequestNamesMissingParentsByTheirPlaceInTheRequest(t *testing.T) {
	t.Parallel()
	ghost := uuid.New()
	st := &fakeStore{insert: func(_ context.Context, _ int, evs []*audit.Event) (int64, error) {
		for i, e := range evs {
			if e.ParentID != nil && *e.ParentID == ghost {
				return 0, &audit.MissingParentError{Indices: []int{i}}
			}
		}
		return int64(len(evs)), nil
	}}
	p, _ := start(t, st, nil, Options{Writers: 2})
	events := splitAcrossWriters(t, p)
	bad := len(events) - 1
	events[bad].ParentID = &ghost
	// Replay leaves parents to the commit, where the store finds them missing.
	err := p.Replay(context.Background(), events)
	var missing *MissingParentsError
	require.ErrorAs(t, err, &missing)
	assert.Equal(t, []int{bad}, missing.Indices)
}
