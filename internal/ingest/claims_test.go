package ingest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

// spanningPairs returns n pairs of correlations, each pair owned by two
// different writers of p, no correlation in two pairs.
func spanningPairs(t *testing.T, p *Pipeline, n int) [][2]string {
	t.Helper()
	var pairs [][2]string
	for i := 0; len(pairs) < n; i++ {
		x, y := fmt.Sprintf("rr-px%d", i), fmt.Sprintf("rr-py%d", i)
		if p.route(mixedEvents(1, x)) != p.route(mixedEvents(1, y)) {
			pairs = append(pairs, [2]string{x, y})
		}
		require.Less(t, i, 1000, "no pair of correlations on two writers")
	}
	return pairs
}

// Requests that share correlations but are owned by different writers (the
// owner of most of a request is a tie, decided by its first event) are never
// committed at once: the later one follows the writer that holds the
// earlier one, queued or committing. By owner alone two of them would meet
// on a chain lock, and the second would find its head moved and commit
// again on the reading path (store.insertFast).
func TestRequestsSharingCorrelationsAcrossWritersAreNeverCommittedAtOnce(t *testing.T) {
	t.Parallel()
	st := &exclusiveStore{t: t, inFlight: map[string]bool{}}
	p, _ := start(t, st, nil, Options{Writers: 2, MaxBatch: 500})
	pairs := spanningPairs(t, p, 6)
	var wg sync.WaitGroup
	var all [][]*audit.Event
	var mu sync.Mutex
	for w := range 12 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for range 40 {
				pair := pairs[rng.IntN(len(pairs))]
				if rng.IntN(2) == 0 {
					pair[0], pair[1] = pair[1], pair[0]
				}
				events := mixedEvents(2+rng.IntN(20), pair[0], pair[1])
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
	p.claims.mu.Lock()
	defer p.claims.mu.Unlock()
	for w := range p.queues {
		assert.Empty(t, p.claims.small[w], "every claim released once its request was answered")
		assert.Empty(t, p.claims.large[w])
	}
}

// A small request follows a large one it shares a chain with; a large one
// does not follow a large one (their COPYs overlap in the store), but does
// follow a small one.
func TestPlaceFollowsSmallRequestsAndLetsLargeOnesOverlap(t *testing.T) {
	t.Parallel()
	p, _ := start(t, &fakeStore{}, nil, Options{Writers: 2})
	pair := spanningPairs(t, p, 1)[0]
	x, y := pair[0], pair[1]
	ownerX, ownerY := p.route(mixedEvents(1, x)), p.route(mixedEvents(1, y))

	w, big := p.place(mixedEvents(smallRequest, x))
	require.Equal(t, ownerX, w)
	w2, small := p.place(mixedEvents(3, y, x))
	assert.Equal(t, ownerX, w2, "a small request follows the large one that holds x")
	p.claims.release(small)
	w3, big2 := p.place(mixedEvents(smallRequest, y, x))
	assert.Equal(t, ownerY, w3, "a large request goes to its owner: large commits overlap")
	p.claims.release(big2)
	p.claims.release(big)

	_, small = p.place(mixedEvents(3, x))
	w4, big3 := p.place(mixedEvents(smallRequest, y, x))
	assert.Equal(t, ownerX, w4, "a large request follows a small one it shares a chain with")
	p.claims.release(big3)
	p.claims.release(small)
}
