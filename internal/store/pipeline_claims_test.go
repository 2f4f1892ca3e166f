package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

// Small requests that share chains, through the ingest pipeline's two
// writers as the server runs them: each pair of correlations belongs to two
// writers, so by owner alone two requests of a pair were committed at once,
// met on a chain lock, and the second found its head moved and committed
// again on the reading path. A request now follows the writer that holds a
// request sharing its chains (ingest/claims.go): no commit reads the heads,
// every chain verifies, the rollups are exact.
func TestPipelineCommitsSmallRequestsSharingChainsWithoutReadingHeads(t *testing.T) {
	t.Parallel()
	reads := &headReads{}
	st, _ := storetest.New(t, store.Options{MaxConns: 8, Tracer: reads}, 1)
	ctx := context.Background()
	pipe := ingest.New(st, nil, ingest.Options{Writers: 2, MaxBatch: 500}, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, pipe.Start(ctx))
	t.Cleanup(func() { _ = pipe.Stop(context.Background()) })
	const pairs, submitters, perSubmitter = 6, 8, 25
	now := time.Now().Add(-time.Minute)
	var wg sync.WaitGroup
	var total sync.Map
	for w := range submitters {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for range perSubmitter {
				p := rng.IntN(pairs)
				a, b := fmt.Sprintf("rr-pair-%d-a", p), fmt.Sprintf("rr-pair-%d-b", p)
				if rng.IntN(2) == 0 {
					a, b = b, a
				}
				n := 2 + rng.IntN(30)
				events := make([]*audit.Event, n)
				for i := range events {
					events[i] = newEvent([]string{a, b}[i%2], now, 30)
				}
				o, err := pipe.Submit(ctx, events)
				assert.NoError(t, err)
				assert.Equal(t, ingest.Committed, o)
				v, _ := total.LoadOrStore(w, new(int64))
				*v.(*int64) += int64(n)
			}
		})
	}
	wg.Wait()
	assert.Zero(t, reads.n.Load(), "commits that read the heads (met a concurrent commit of their chains)")
	var want, got int64
	total.Range(func(_, v any) bool { want += *v.(*int64); return true })
	for p := range pairs {
		got += verifyChain(t, st, fmt.Sprintf("rr-pair-%d-a", p))
		got += verifyChain(t, st, fmt.Sprintf("rr-pair-%d-b", p))
	}
	assert.Equal(t, want, got, "every event stored once")
	storetest.RequireRollupsMatchEvents(t, st)
}

// Small and large requests on the same chains through the pipeline: small
// ones follow large ones and the other way round, large ones overlap each
// other (store/overlap.go). Whatever path each commit takes, nothing is lost
// or doubled and every chain verifies.
func TestPipelineOfSmallAndLargeRequestsOnSharedChainsLosesNothing(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t, store.Options{MaxConns: 8}, 1)
	ctx := context.Background()
	pipe := ingest.New(st, nil, ingest.Options{Writers: 2, MaxBatch: 2000}, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, pipe.Start(ctx))
	t.Cleanup(func() { _ = pipe.Stop(context.Background()) })
	const corrs = 16
	now := time.Now().Add(-time.Minute)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var want int64
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 4))
			for range 12 {
				n := 1 + rng.IntN(40)
				if w < 2 {
					n = 200 + rng.IntN(100) // large: optimistic, COPYed
				}
				events := make([]*audit.Event, n)
				for i := range events {
					events[i] = newEvent(fmt.Sprintf("rr-mixed-%d", rng.IntN(corrs)), now, 30)
				}
				o, err := pipe.Submit(ctx, events)
				assert.NoError(t, err)
				assert.Equal(t, ingest.Committed, o)
				mu.Lock()
				want += int64(n)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	var got int64
	for c := range corrs {
		got += verifyChain(t, st, fmt.Sprintf("rr-mixed-%d", c))
	}
	assert.Equal(t, want, got, "every event stored once")
	storetest.RequireRollupsMatchEvents(t, st)
}
