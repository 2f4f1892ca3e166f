package store_test

import (
	"context"
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

// roundTrips counts the round trips a store makes: every statement sent
// alone, every batch (pipeline) and every COPY is one.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
func (r *roundTrips) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

// during returns the round trips f made.
func (r *roundTrips) during(t *testing.T, f func() error) int64 {
	t.Helper()
	before := r.n.Load()
	require.NoError(t, f())
	return r.n.Load() - before
}

func TestALoneEventCommitsInOneRoundTrip(t *testing.T) {
	t.Parallel()
	rt := &roundTrips{}
	st, _ := storetest.New(t, store.Options{MaxConns: 2, Tracer: rt}, 1)
	ctx := context.Background()
	now := time.Now()
	// A new correlation, then its next events, one commit each, as a
	// quiet cluster sends them; then a small batch of two correlations.
	for i := range 3 {
		e := newEvent("rr-lone", now.Add(time.Duration(i)*time.Second), 30)
		assert.EqualValues(t, 1, rt.during(t, func() error {
			n, err := st.InsertEvents(ctx, []*audit.Event{e})
			assert.EqualValues(t, 1, n)
			return err
		}), "event %d: round trips", i)
	}
	batch := []*audit.Event{newEvent("rr-lone", now, 30), newEvent("rr-lone-2", now, 30), newEvent("rr-lone", now, 30)}
	assert.EqualValues(t, 1, rt.during(t, func() error {
		_, err := st.InsertEvents(ctx, batch)
		return err
	}), "batch: round trips")
	assert.EqualValues(t, 5, verifyChain(t, st, "rr-lone"))
	assert.EqualValues(t, 1, verifyChain(t, st, "rr-lone-2"))
	storetest.RequireRollupsMatchEvents(t, st)
}

// Two stores on one database are two replicas: each one's memory of the
// chain heads goes stale when the other writes. The stale one must notice,
// read the heads and link to the real ones, never fork the chain.
func TestAStaleChainHeadIsReadAgainNotForked(t *testing.T) {
	t.Parallel()
	rtA, rtB := &roundTrips{}, &roundTrips{}
	a, url := storetest.New(t, store.Options{MaxConns: 2, Tracer: rtA}, 1)
	ctx := context.Background()
	b, err := store.Open(ctx, url, store.Options{MaxConns: 2, Tracer: rtB})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	now := time.Now()
	insert := func(st *store.Store, rt *roundTrips, corr string) int64 {
		return rt.during(t, func() error {
			n, err := st.InsertEvents(ctx, []*audit.Event{newEvent(corr, now, 30)})
			assert.EqualValues(t, 1, n)
			return err
		})
	}
	require.EqualValues(t, 1, insert(a, rtA, "rr-stale"), "a: new correlation")
	// b has never seen it: it expects no head, finds one, reads it.
	assert.EqualValues(t, 3, insert(b, rtB, "rr-stale"), "b: missing head, read again")
	// a remembers seq 1, the table says 2.
	assert.EqualValues(t, 3, insert(a, rtA, "rr-stale"), "a: stale head, read again")
	assert.EqualValues(t, 1, insert(a, rtA, "rr-stale"), "a: head known again")
	assert.EqualValues(t, 4, verifyChain(t, a, "rr-stale"))
	storetest.RequireRollupsMatchEvents(t, a)
}
