package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/testenv"
)

func overlapEvent(corr string, ts time.Time) *audit.Event {
	return &audit.Event{
		ID: uuid.New(), Version: "1.0", Type: "gateway.signal.received",
		Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Category: "gateway",
		Action: "received", Outcome: "success", CorrelationID: corr,
		Data: json.RawMessage(`{"n":1}`), ActorType: "service", ActorID: "gateway-service",
		ResourceType: "gateway", ResourceID: corr, Severity: "info", RetentionDays: 30,
	}
}

// A commit linked after another one of this process (its predecessor,
// still in flight) must not keep its links when the predecessor fails: it
// rolls back, takes the reading path and links to the heads the table
// really has. Here the predecessor fails for real: one of its ids is held,
// uncommitted, by another writer with other content, so its COPY waits and
// then meets the conflict.
// headReadCounter counts the statements that read the chain heads: the
// reading path, which an optimistic commit takes only when it cannot hold.
type headReadCounter struct{ n atomic.Int64 }

func (h *headReadCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if d.SQL == readHeadsSQL {
		h.n.Add(1)
	}
	return ctx
}
func (h *headReadCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (h *headReadCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (h *headReadCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	if d.SQL == readHeadsSQL {
		h.n.Add(1)
	}
}
func (h *headReadCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

const stallCorrs, stallSize = 5, 250

type insertResult struct {
	n   int64
	err error
}

// stallPredecessor starts two large commits that share chains, pred then
// next, with pred's COPY stalled on one of its ids, which another writer
// (tx, returned open) holds uncommitted with other content; it returns once
// next has linked after pred's predicted heads. Committing tx makes pred
// fail on the id; rolling it back lets pred go on.
func stallPredecessor(t *testing.T) (st *Store, reads *headReadCounter, pred, next []*audit.Event, tx pgx.Tx, predDone, nextDone chan insertResult) {
	t.Helper()
	ctx := context.Background()
	reads = &headReadCounter{}
	st, err := Open(ctx, testenv.NewDatabase(t), Options{MaxConns: 6, Tracer: reads})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)

	batch := func() []*audit.Event {
		var out []*audit.Event
		for i := range stallSize {
			out = append(out, overlapEvent(fmt.Sprintf("rr-pred-%d", i%stallCorrs), time.Now().Add(-time.Minute)))
		}
		return out
	}
	// Known heads, so that both commits below link optimistically.
	_, err = st.InsertEvents(ctx, batch())
	require.NoError(t, err)
	pred, next = batch(), batch()

	tx, err = st.pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	held := pred[stallSize/2]
	_, err = tx.Exec(ctx, `INSERT INTO audit_events (event_id, event_date, event_timestamp, version, event_type,
		event_category, event_action, event_outcome, correlation_id, event_data, actor_type, actor_id,
		resource_type, resource_id, severity, retention_days, chain_seq, event_hash, previous_event_hash, hash_algorithm)
		VALUES ($1, $2, $3, '1.0', 't', 'gateway', 'a', 'success', 'rr-pred-other', '{}', 'service', 's',
		'gateway', 'r', 'info', 30, 1, 'h', '', 'sha256')`, held.ID, held.Date.Std(), held.Timestamp.Std())
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO audit_event_ids (event_id, event_date) VALUES ($1, $2)`, held.ID, held.Date.Std())
	require.NoError(t, err)

	predDone, nextDone = make(chan insertResult, 1), make(chan insertResult, 1)
	go func() {
		n, err := st.InsertEvents(ctx, pred)
		predDone <- insertResult{n, err}
	}()
	require.Eventually(t, func() bool {
		var waiting bool
		// Asked outside tx: a transaction sees one snapshot of the statistics.
		err := st.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'transactionid')`).Scan(&waiting)
		return err == nil && waiting
	}, 30*time.Second, 5*time.Millisecond, "the predecessor's COPY never waited on the held id")
	go func() {
		n, err := st.InsertEvents(ctx, next)
		nextDone <- insertResult{n, err}
	}()
	// next reserved its chains while pred is in flight: it linked after
	// pred's predicted heads and depends on it. Then its COPY ends (its
	// transaction goes idle) and it waits for pred.
	require.Eventually(t, func() bool {
		st.heads.mu.Lock()
		defer st.heads.mu.Unlock()
		return len(st.heads.inflight) == 2*stallSize
	}, 30*time.Second, 5*time.Millisecond, "next never reserved its chains behind pred")
	require.Eventually(t, func() bool {
		var idle bool
		err := st.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'datastorage' AND state = 'idle in transaction'
			AND query ILIKE 'copy%')`).Scan(&idle)
		return err == nil && idle
	}, 30*time.Second, 5*time.Millisecond, "next never finished its COPY")
	return st, reads, pred, next, tx, predDone, nextDone
}

func TestACommitLinkedAfterAFailedPredecessorRelinksAndTheChainStaysUnbroken(t *testing.T) {
	t.Parallel()
	st, reads, _, _, tx, predDone, nextDone := stallPredecessor(t)
	require.NoError(t, tx.Commit(context.Background()))

	p, n := <-predDone, <-nextDone
	var conflict *audit.ConflictError
	require.ErrorAs(t, p.err, &conflict, "pred reuses an id stored with other content")
	assert.Equal(t, []int{stallSize / 2}, conflict.Indices)
	require.NoError(t, n.err, "next relinks after its predecessor failed")
	assert.EqualValues(t, stallSize, n.n)
	assert.Positive(t, reads.n.Load(), "next took the reading path")
	requireChains(t, st, 2*stallSize)
}

// requireChains verifies the test's chains against their stored hashes and
// heads, and that they hold total events.
func requireChains(t *testing.T, st *Store, total int64) {
	t.Helper()
	var corrs []string
	for c := range stallCorrs {
		corrs = append(corrs, fmt.Sprintf("rr-pred-%d", c))
	}
	assert.EqualValues(t, total, verifyChains(t, st, corrs...))
	st.heads.mu.Lock()
	assert.Empty(t, st.heads.inflight, "every flight settled")
	st.heads.mu.Unlock()
}

// verifyChains verifies chains against their stored hashes and heads, and
// returns how many events they hold.
func verifyChains(t *testing.T, st *Store, corrs ...string) int64 {
	t.Helper()
	ctx := context.Background()
	hasher := audit.NewHasher(nil)
	var n int64
	for _, corr := range corrs {
		prev, seq := "", int64(0)
		var head *integrity.ChainHead
		stored, err := st.ReadChain(ctx, corr, func(cs integrity.ChainState) error { head = cs.Head; return nil },
			func(e *audit.Event) error {
				seq++
				canon, err := e.Canonical()
				if err != nil {
					return err
				}
				if e.ChainSeq != seq || e.PreviousHash == nil || *e.PreviousHash != prev || e.Hash != hasher.Link(prev, canon) {
					return errors.New(corr + ": chain broken at " + fmt.Sprint(seq))
				}
				prev = e.Hash
				return nil
			})
		require.NoError(t, err)
		require.NotNil(t, head)
		assert.Equal(t, integrity.ChainHead{Seq: seq, Hash: prev}, *head, corr)
		n += stored
	}
	return n
}

// A commit linked after another one of this process waits for it before it
// takes the chain locks: were it to take them first, it would find the old
// heads, fail its check and take the reading path, and its predecessor
// after it. Here the predecessor is stalled in its COPY, then goes on.
func TestACommitWaitsForItsPredecessorInsteadOfOvertakingIt(t *testing.T) {
	t.Parallel()
	st, reads, _, _, tx, predDone, nextDone := stallPredecessor(t)
	before := reads.n.Load()
	require.NoError(t, tx.Rollback(context.Background()))
	p, n := <-predDone, <-nextDone
	require.NoError(t, p.err)
	require.NoError(t, n.err)
	assert.EqualValues(t, stallSize, p.n)
	assert.EqualValues(t, stallSize, n.n)
	assert.Equal(t, before, reads.n.Load(), "a commit read the heads: it fell back to the reading path")
	requireChains(t, st, 3*stallSize)
}
