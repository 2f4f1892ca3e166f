package ingest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

// inFlight counts the InsertEvents calls in flight, small and large apart,
// and keeps the highest count of small ones seen at once.
type inFlight struct {
	mu                sync.Mutex
	small, large      int
	maxSmall, maxBoth int
}

func (f *inFlight) enter(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n < smallRequest {
		f.small++
	} else {
		f.large++
	}
	f.maxSmall = max(f.maxSmall, f.small)
	f.maxBoth = max(f.maxBoth, f.small+f.large)
}

func (f *inFlight) leave(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n < smallRequest {
		f.small--
	} else {
		f.large--
	}
}

func (f *inFlight) highs() (small, both int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxSmall, f.maxBoth
}

// With SmallCommits 1 a small request that finds the other writer idle does
// not commit beside the small commit in flight: it queues, and everything
// that queued meanwhile, on either writer, goes in as few commits as there
// are writers, one at a time.
func TestSmallCommitsAreOneAtATimeAndCarryWhatQueuedMeanwhile(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	var flight inFlight
	st := &fakeStore{insert: g.hold(func(_ context.Context, _ int, events []*audit.Event) (int64, error) {
		return int64(len(events)), nil
	})}
	counted := &countingStore{Store: st, flight: &flight}
	p, m := start(t, counted, nil, Options{Writers: 2, SmallCommits: 1, MaxBatch: 100})

	first := submitAsync(p, newEvents(1, "first"))
	g.waitEntered(t)
	var waiting []<-chan outcome
	var queued []uuid.UUID
	for i := range 10 {
		evs := newEvents(1, fmt.Sprint("c-", i))
		queued = append(queued, evs[0].ID)
		waiting = append(waiting, submitAsync(p, evs))
	}
	// Without the bound the first of them finds the other writer idle and
	// commits at once: they never all queue.
	waitQueued(t, m, 10)
	g.Release()
	for _, ch := range append(waiting, first) {
		r := await(t, ch)
		require.NoError(t, r.err)
		assert.Equal(t, Committed, r.o)
	}
	batches := st.committedBatches()
	require.GreaterOrEqual(t, len(batches), 2)
	assert.LessOrEqual(t, len(batches), 3, "the ten queued requests take one commit per writer at most")
	var later []uuid.UUID
	for _, b := range batches[1:] {
		later = append(later, ids(b)...)
	}
	assert.ElementsMatch(t, queued, later)
	small, _ := flight.highs()
	assert.Equal(t, 1, small, "never two small commits at once")
	count, sum := histogram(t, m.BatchSize)
	assert.Equal(t, uint64(len(batches)), count)
	assert.Equal(t, 11.0, sum)
}

// A large request (a client batch of smallRequest events or more) is not
// held by the bound: it commits beside a small commit in flight, as large
// commits overlap (store/overlap.go).
func TestALargeCommitDoesNotWaitForASmallOneInFlight(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	var flight inFlight
	st := &fakeStore{insert: g.hold(nil)}
	p, _ := start(t, &countingStore{Store: st, flight: &flight}, nil, Options{Writers: 2, SmallCommits: 1, MaxBatch: 2000})

	small := submitAsync(p, newEvents(1, "small"))
	g.waitEntered(t)
	large := newEvents(smallRequest, "large")
	r := await(t, submitAsync(p, large)) // returns while the small commit is held
	require.NoError(t, r.err)
	assert.Equal(t, Committed, r.o)
	g.Release()
	require.NoError(t, await(t, small).err)
	_, both := flight.highs()
	assert.Equal(t, 2, both, "the large commit ran beside the small one")
	batches := st.committedBatches()
	require.Len(t, batches, 2)
	assert.Equal(t, ids(large), ids(batches[0]), "the large commit ended first")
}

// The bound adds no wait to a lone request: with nothing in flight it is
// committed at once, in its caller's goroutine, each time.
func TestALoneRequestIsNotHeldByTheSmallCommitBound(t *testing.T) {
	t.Parallel()
	var byWriter []bool
	var mu sync.Mutex
	st := &fakeStore{insert: func(_ context.Context, _ int, events []*audit.Event) (int64, error) {
		buf := make([]byte, 64<<10)
		stack := string(buf[:runtime.Stack(buf, false)])
		mu.Lock()
		byWriter = append(byWriter, strings.Contains(stack, "(*Pipeline).writer"))
		mu.Unlock()
		return int64(len(events)), nil
	}}
	p, _ := start(t, st, nil, Options{Writers: 2, SmallCommits: 1})
	for i := range 4 {
		r := await(t, submitAsync(p, newEvents(1, fmt.Sprint("lone-", i))))
		require.NoError(t, r.err)
		require.Len(t, st.committedBatches(), i+1, "each lone request is its own commit")
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []bool{false, false, false, false}, byWriter, "every lone request is committed by its caller")
}

// Under concurrent load with the bound, small commits never overlap, no two
// commits in flight share a correlation, and every event is committed once.
func TestConcurrentSmallCommitsUnderTheBoundNeverOverlapNorLoseEvents(t *testing.T) {
	t.Parallel()
	var flight inFlight
	ex := &exclusiveStore{t: t, inFlight: map[string]bool{}}
	p, m := start(t, &countingStore{Store: ex, flight: &flight}, nil, Options{Writers: 2, SmallCommits: 1, MaxBatch: 300})
	var corrs []string
	for i := range 30 {
		corrs = append(corrs, fmt.Sprintf("rr-%d", i))
	}
	var wg sync.WaitGroup
	var all [][]*audit.Event
	var mu sync.Mutex
	for w := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for range 30 {
				n := 1 + rng.IntN(8)
				if rng.IntN(20) == 0 {
					n = smallRequest + rng.IntN(50) // now and then a large request
				}
				events := mixedEvents(n, corrs[rng.IntN(len(corrs))])
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
	small, _ := flight.highs()
	assert.Equal(t, 1, small, "never two small commits at once")
	assert.Zero(t, ex.overlaps, "two commits in flight shared a correlation")
	committed := map[uuid.UUID]int{}
	for _, id := range ex.committedIDs() {
		committed[id]++
	}
	total := 0
	for _, events := range all {
		total += len(events)
		for _, e := range events {
			assert.Equal(t, 1, committed[e.ID], "every event committed once")
		}
	}
	assert.Equal(t, float64(total), counter(t, m, "committed"))
	assert.Zero(t, gaugeValue(t, m.QueueDepth))
}

// countingStore records the commits in flight around another store.
type countingStore struct {
	Store
	flight *inFlight
}

func (c *countingStore) InsertEvents(ctx context.Context, events []*audit.Event) (int64, error) {
	c.flight.enter(len(events))
	defer c.flight.leave(len(events))
	return c.Store.InsertEvents(ctx, events)
}
