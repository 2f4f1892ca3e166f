package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

// headReads counts the statements that read the chain heads: the reading
// path (insertTx), which an optimistic commit takes only when it could not
// hold.
type headReads struct{ n atomic.Int64 }

func (h *headReads) count(sql string) {
	if strings.HasSuffix(sql, "FROM audit_chain_heads WHERE correlation_id = ANY($1)") {
		h.n.Add(1)
	}
}

func (h *headReads) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	h.count(d.SQL)
	return ctx
}
func (h *headReads) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (h *headReads) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (h *headReads) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	h.count(d.SQL)
}
func (h *headReads) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// bigBatches makes batches of size events each, spread over corrs the way
// the benchmark spreads them: every batch names most correlations, so any
// two concurrent batches share chains.
func bigBatches(prefix string, corrs, batches, size int) [][]*audit.Event {
	now := time.Now().Add(-time.Minute)
	out := make([][]*audit.Event, batches)
	for b := range out {
		for i := range size {
			out[b] = append(out[b], newEvent(fmt.Sprintf("%s-%d", prefix, (b*7+i)%corrs), now, 30))
		}
	}
	return out
}

// Large commits of one process that share chains link to each other's
// predicted heads and commit one after the other without reading a head:
// none of them may fall back to the reading path, and every chain must
// verify.
func TestConcurrentBigCommitsOnSharedChainsLinkWithoutReadingHeads(t *testing.T) {
	t.Parallel()
	reads := &headReads{}
	st, _ := storetest.New(t, store.Options{MaxConns: 8, Tracer: reads}, 1)
	ctx := context.Background()
	const writers, perWriter, size, corrs = 4, 4, 250, 40
	all := bigBatches("rr-overlap", corrs, writers*perWriter, size)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for _, b := range all[w*perWriter : (w+1)*perWriter] {
				n, err := st.InsertEvents(ctx, b)
				assert.NoError(t, err)
				assert.EqualValues(t, size, n)
			}
		})
	}
	wg.Wait()
	assert.Zero(t, reads.n.Load(), "commits that read the heads (fell back to the reading path)")
	var total int64
	for c := range corrs {
		total += verifyChain(t, st, fmt.Sprintf("rr-overlap-%d", c))
	}
	assert.EqualValues(t, writers*perWriter*size, total)
	storetest.RequireRollupsMatchEvents(t, st)
}

// Two stores on one database are two replicas: each links optimistically to
// heads the other moves. Every commit whose heads moved must notice, roll
// back and take the reading path: nothing lost, nothing doubled, every
// chain unbroken.
func TestTwoStoresCommittingBigBatchesToTheSameChainsLoseNothing(t *testing.T) {
	t.Parallel()
	a, url := storetest.New(t, store.Options{MaxConns: 4}, 1)
	ctx := context.Background()
	b, err := store.Open(ctx, url, store.Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	const perWriter, size, corrs = 4, 250, 30
	all := bigBatches("rr-replicas", corrs, 4*perWriter, size)
	var wg sync.WaitGroup
	for w, st := range []*store.Store{a, a, b, b} {
		wg.Go(func() {
			for _, batch := range all[w*perWriter : (w+1)*perWriter] {
				n, err := st.InsertEvents(ctx, batch)
				assert.NoError(t, err)
				assert.EqualValues(t, size, n)
			}
		})
	}
	wg.Wait()
	var total int64
	for c := range corrs {
		total += verifyChain(t, a, fmt.Sprintf("rr-replicas-%d", c))
	}
	assert.EqualValues(t, 4*perWriter*size, total)
	var rows, ids int64
	require.NoError(t, a.Pool().QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM audit_events`).Scan(&rows, &ids))
	assert.Equal(t, rows, ids, "no event stored twice")
	storetest.RequireRollupsMatchEvents(t, a)
}

// A store links a big batch to the head it remembers; when another store
// (replica) has moved that head since, the commit must notice under the
// lock, roll back its COPY and relink on the reading path; and the next big
// commits of that store take the reading path directly for a while
// (overlapBackoff) instead of throwing more COPYs away. A store that never
// saw a chain reads its head before linking, and needs no fallback.
func TestABigCommitLinkedToAHeadAnotherStoreMovedIsRelinked(t *testing.T) {
	t.Parallel()
	readsA, readsB := &headReads{}, &headReads{}
	a, url := storetest.New(t, store.Options{MaxConns: 4, Tracer: readsA}, 1)
	ctx := context.Background()
	b, err := store.Open(ctx, url, store.Options{MaxConns: 4, Tracer: readsB})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	const corrs, size = 10, 250
	batches := bigBatches("rr-moved", corrs, 12, size)
	commit := func(st *store.Store, batch []*audit.Event) {
		t.Helper()
		n, err := st.InsertEvents(ctx, batch)
		require.NoError(t, err)
		require.EqualValues(t, size, n)
	}
	commit(a, batches[0])
	commit(b, batches[1])
	assert.Zero(t, readsB.n.Load(), "b had never seen the chains: it reads their heads before linking, no fallback")
	commit(a, batches[2])
	assert.EqualValues(t, 1, readsA.n.Load(), "a's remembered heads were stale: one fallback to the reading path")
	// The backoff: the next 8 commits read the heads under the locks (and
	// refresh a's memory of them), the one after links optimistically.
	for i := range 8 {
		commit(a, batches[3+i])
		assert.EqualValues(t, 2+i, readsA.n.Load(), "commit %d after a moved head takes the reading path directly", i+1)
	}
	commit(a, batches[11])
	assert.EqualValues(t, 9, readsA.n.Load(), "after the backoff, optimistic again")
	var total int64
	for c := range corrs {
		total += verifyChain(t, a, fmt.Sprintf("rr-moved-%d", c))
	}
	assert.EqualValues(t, 12*size, total)
	storetest.RequireRollupsMatchEvents(t, a)
}

// A client that retries a request while its first attempt is still being
// committed sends the same ids again: the retry must wait for the attempt
// and answer that nothing is new, never store an event twice.
func TestABigBatchRetriedWhileItsFirstAttemptCommitsIsStoredOnce(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t, store.Options{MaxConns: 8}, 1)
	ctx := context.Background()
	first := bigBatches("rr-retry-inflight", 20, 1, 300)[0]
	retry := make([]*audit.Event, len(first))
	for i, e := range first {
		c := *e
		retry[i] = &c
	}
	var wg sync.WaitGroup
	var stored atomic.Int64
	for _, batch := range [][]*audit.Event{first, retry} {
		wg.Go(func() {
			n, err := st.InsertEvents(ctx, batch)
			assert.NoError(t, err)
			stored.Add(n)
		})
	}
	wg.Wait()
	assert.EqualValues(t, len(first), stored.Load(), "events new across both attempts")
	var total int64
	for c := range 20 {
		total += verifyChain(t, st, fmt.Sprintf("rr-retry-inflight-%d", c))
	}
	assert.EqualValues(t, len(first), total)
	storetest.RequireRollupsMatchEvents(t, st)
}
