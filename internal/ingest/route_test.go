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
	"kubernaut.ai/datastorage/internal/store"
)

// mixedEvents are n events over the given correlations, round robin.
func mixedEvents(n int, correlations ...string) []*audit.Event {
	out := make([]*audit.Event, n)
	for i := range out {
		out[i] = &audit.Event{ID: uuid.New(), CorrelationID: correlations[i%len(correlations)], Data: []byte(`{}`)}
	}
	return out
}

func TestRouteSendsEveryCorrelationToOneWriterAndARequestToOne(t *testing.T) {
	t.Parallel()
	p, _ := start(t, &fakeStore{}, nil, Options{Writers: 4})
	writerOf := map[string]int{}
	for i := range 40 {
		corr := fmt.Sprintf("rr-%d", i)
		w := p.route(mixedEvents(3, corr))
		writerOf[corr] = w
		assert.Equal(t, w, p.route(mixedEvents(1, corr)), "%s always goes to the same writer", corr)
	}
	// A request over several writers goes to the one owning most of it.
	var a, b string
	for c, w := range writerOf {
		for c2, w2 := range writerOf {
			if w != w2 {
				a, b = c, c2
			}
		}
	}
	require.NotEmpty(t, a, "40 correlations span several writers")
	assert.Equal(t, writerOf[a], p.route(mixedEvents(5, a, a, b)))
	assert.Equal(t, writerOf[b], p.route(mixedEvents(5, b, b, a)))
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

func TestConcurrentCommitsOfOneCorrelationRequestsNeverShareACorrelation(t *testing.T) {
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
				events := mixedEvents(1+rng.IntN(40), corrs[rng.IntN(len(corrs))])
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

// spanningWriters returns a request whose correlations belong to two of p's
// writers.
func spanningWriters(t *testing.T, p *Pipeline) []*audit.Event {
	t.Helper()
	for i := 0; ; i++ {
		x, y := fmt.Sprintf("rr-x%d", i), fmt.Sprintf("rr-y%d", i)
		if p.route(mixedEvents(1, x)) != p.route(mixedEvents(1, y)) {
			return mixedEvents(6, x, y)
		}
		require.Less(t, i, 1000, "no pair of correlations on two writers")
	}
}

func TestARequestSpanningWritersIsOneTransaction(t *testing.T) {
	t.Parallel()
	st := &fakeStore{}
	p, _ := start(t, st, nil, Options{Writers: 2})
	events := spanningWriters(t, p)
	o, err := p.Submit(context.Background(), events)
	require.NoError(t, err)
	assert.Equal(t, Committed, o)
	require.Len(t, st.committedBatches(), 1, "one commit")
	assert.Equal(t, ids(events), ids(st.committedBatches()[0]), "the whole request, in order")
}

func TestARequestSpanningWritersWithARefusedEventStoresNothingAndNamesIt(t *testing.T) {
	t.Parallel()
	bad := 0
	check := &pgconn.PgError{Code: "23514", Message: "new row violates check constraint"}
	st := &fakeStore{insert: func(_ context.Context, _ int, evs []*audit.Event) (int64, error) {
		for i, e := range evs {
			if e.ID == uuid.Nil {
				return 0, &store.RefusedEventError{Index: i, Err: check}
			}
		}
		bad++
		return int64(len(evs)), nil
	}}
	sp := &fakeSpool{}
	p, m := start(t, st, sp, Options{Writers: 2})
	events := spanningWriters(t, p)
	events[4].ID = uuid.Nil // what the fake store refuses
	o, err := p.Submit(context.Background(), events)
	var rejected *RejectedError
	require.ErrorAs(t, err, &rejected)
	assert.Equal(t, 4, rejected.Index, "the answer names the refused element")
	assert.ErrorIs(t, err, check)
	assert.Zero(t, o)
	assert.Empty(t, st.committedIDs(), "no part of the request was committed")
	assert.Empty(t, sp.spooledIDs(), "a refusal is not an outage")
	assert.Equal(t, 6.0, counter(t, m, "rejected"))
}

func TestARequestSpanningWritersDuringAnOutageIsSpooledWhole(t *testing.T) {
	t.Parallel()
	st := &fakeStore{insert: func(context.Context, int, []*audit.Event) (int64, error) {
		return 0, &pgconn.PgError{Code: "57P01"}
	}}
	sp := &fakeSpool{}
	p, _ := start(t, st, sp, Options{Writers: 2})
	events := spanningWriters(t, p)
	o, err := p.Submit(context.Background(), events)
	require.NoError(t, err)
	assert.Equal(t, Queued, o)
	assert.Equal(t, ids(events), sp.spooledIDs(), "the whole request, once, in one append")
	assert.Empty(t, st.committedIDs())
}

func TestARequestSpanningWritersNamesMissingParentsByTheirPlaceInTheRequest(t *testing.T) {
	t.Parallel()
	ghost := uuid.New()
	st := &fakeStore{insert: func(_ context.Context, _ int, evs []*audit.Event) (int64, error) {
		for i, e := range evs {
			if e.ParentID != nil && *e.ParentID == ghost {
				return 0, &store.MissingParentError{Indices: []int{i}}
			}
		}
		return int64(len(evs)), nil
	}}
	p, _ := start(t, st, nil, Options{Writers: 2})
	events := spanningWriters(t, p)
	bad := len(events) - 1
	events[bad].ParentID = &ghost
	// Replay leaves parents to the commit, where the store finds them missing.
	err := p.Replay(context.Background(), events)
	var missing *MissingParentsError
	require.ErrorAs(t, err, &missing)
	assert.Equal(t, []int{bad}, missing.Indices)
}
