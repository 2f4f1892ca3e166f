package store_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

func childOf(parent *audit.Event, corr string, ts time.Time) *audit.Event {
	e := newEvent(corr, ts, 30)
	id := parent.ID
	e.ParentID = &id
	return e
}

func TestResolveParentsFindsRecentAndOldParentsAndNamesTheMissing(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	_, err := st.EnsurePartitions(ctx, time.Now().AddDate(0, -3, 0), 4)
	require.NoError(t, err)
	recent := newEvent("rr-parents", time.Now().Add(-2*time.Hour), 30)
	old := newEvent("rr-parents", time.Now().AddDate(0, 0, -60), 30) // far outside the lookup window
	_, err = st.InsertEvents(ctx, []*audit.Event{old, recent})
	require.NoError(t, err)

	missing := newEvent("rr-parents", time.Now(), 30) // never stored
	children := []*audit.Event{
		childOf(recent, "rr-parents", time.Now()),
		childOf(missing, "rr-parents", time.Now()),
		childOf(old, "rr-parents", time.Now()),
	}
	err = st.ResolveParents(ctx, children)
	var mp *audit.MissingParentError
	require.ErrorAs(t, err, &mp)
	assert.Equal(t, []int{1}, mp.Indices)
	require.NotNil(t, children[0].ParentDate)
	assert.Equal(t, recent.Date.Std(), children[0].ParentDate.Std())
	require.NotNil(t, children[2].ParentDate)
	assert.Equal(t, old.Date.Std(), children[2].ParentDate.Std(), "a parent outside the window is still found")
	assert.Nil(t, children[1].ParentDate)

	// The same happens inside InsertEvents, for events nobody resolved.
	late := []*audit.Event{childOf(old, "rr-parents", time.Now()), childOf(recent, "rr-parents", time.Now())}
	n, err := st.InsertEvents(ctx, late)
	require.NoError(t, err)
	assert.EqualValues(t, 2, n)
	assert.Equal(t, old.Date.Std(), late[0].ParentDate.Std())
}

func TestConcurrentResolveParentsAllGetTheirAnswers(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	var parents []*audit.Event
	for i := range 20 {
		parents = append(parents, newEvent("rr-many", time.Now().Add(-time.Duration(i)*time.Minute), 30))
	}
	_, err := st.InsertEvents(ctx, parents)
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make([]error, 200)
	kids := make([][]*audit.Event, len(errs))
	for i := range errs {
		kids[i] = []*audit.Event{childOf(parents[i%len(parents)], "rr-many", time.Now())}
		if i%10 == 0 {
			kids[i] = append(kids[i], childOf(newEvent("x", time.Now(), 30), "rr-many", time.Now()))
		}
		wg.Go(func() { errs[i] = st.ResolveParents(ctx, kids[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		assert.Equal(t, parents[i%len(parents)].Date.Std(), kids[i][0].ParentDate.Std(), "request %d", i)
		if i%10 == 0 {
			var mp *audit.MissingParentError
			require.ErrorAs(t, err, &mp, "request %d", i)
			assert.Equal(t, []int{1}, mp.Indices)
			continue
		}
		assert.NoError(t, err, "request %d", i)
	}
}

func TestInsertEventsWithAMissingParentLeavesParentsUnresolvedAndTheConnectionUsable(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	first := newEvent("rr-rollback", time.Now().Add(-time.Minute), 30)
	inBatch := childOf(first, "rr-rollback", time.Now())
	orphan := childOf(newEvent("x", time.Now(), 30), "rr-rollback", time.Now())
	_, err := st.InsertEvents(ctx, []*audit.Event{first, inBatch, orphan})
	var mp *audit.MissingParentError
	require.ErrorAs(t, err, &mp)
	assert.Equal(t, []int{2}, mp.Indices)
	assert.Nil(t, inBatch.ParentDate, "resolved from the failed batch only: reset for the retry")

	// Every pooled connection still works, and nothing was written.
	for range 10 {
		n, err := st.InsertEvents(ctx, []*audit.Event{newEvent("rr-rollback-2", time.Now(), 30)})
		require.NoError(t, err)
		assert.EqualValues(t, 1, n)
	}
	var stored int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE correlation_id = 'rr-rollback'`).Scan(&stored))
	assert.Zero(t, stored)
}

func TestInsertEventsRacingAnUncommittedForgeryOfItsIDIsAConflict(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	ev := newEvent("rr-race", time.Now(), 30)
	_, err := st.InsertEvents(ctx, []*audit.Event{newEvent("rr-race", time.Now().Add(-time.Minute), 30)})
	require.NoError(t, err)

	// Another writer holds the same id uncommitted, with other content under
	// another correlation (so no chain lock orders the two), and has taken
	// the id as every writer does.
	tx, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(context.Background())
	_, err = tx.Exec(ctx, `INSERT INTO audit_events (event_id, event_date, event_timestamp, version, event_type,
		event_category, event_action, event_outcome, correlation_id, event_data, actor_type, actor_id,
		resource_type, resource_id, severity, retention_days, chain_seq, event_hash, previous_event_hash, hash_algorithm)
		VALUES ($1, $2, $3, '1.0', 't', 'gateway', 'a', 'success', 'rr-race-other', '{}', 'service', 's',
		'gateway', 'r', 'info', 30, 1, 'h', '', 'sha256')`, ev.ID, ev.Date.Std(), ev.Timestamp.Std())
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO audit_event_ids (event_id, event_date) VALUES ($1, $2)`, ev.ID, ev.Date.Std())
	require.NoError(t, err)

	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := st.InsertEvents(ctx, []*audit.Event{ev})
		done <- result{n, err}
	}()
	// Commit once the insert waits for the other writer's row (its
	// duplicate check could not see it), so the insert meets the conflict.
	require.Eventually(t, func() bool {
		var waiting bool
		err := st.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'transactionid')`).Scan(&waiting)
		return err == nil && waiting
	}, 30*time.Second, 5*time.Millisecond)
	require.NoError(t, tx.Commit(ctx))
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("InsertEvents never returned")
	}
	var conflict *audit.ConflictError
	require.ErrorAs(t, r.err, &conflict, "the id is taken by other content: the retry after the race sees it")
	assert.Equal(t, []int{0}, conflict.Indices)
	assert.False(t, store.IsUnavailable(r.err), "a conflict is the client's data, not an outage")

	var rows int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE event_id = $1`, ev.ID).Scan(&rows))
	assert.Equal(t, 1, rows)
	var seq int64
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT last_seq FROM audit_chain_heads WHERE correlation_id = 'rr-race'`).Scan(&seq))
	assert.EqualValues(t, 1, seq, "the chain did not count the event it did not store")
	got, err := st.GetEvent(ctx, ev.ID)
	require.NoError(t, err)
	assert.Equal(t, "rr-race-other", got.CorrelationID, "the first writer keeps the id")
}

// verifyChain recomputes a correlation's chain from the stored events and
// checks it against the stored hashes and the chain head.
func verifyChain(t *testing.T, st *store.Store, corr string) int64 {
	t.Helper()
	hasher := audit.NewHasher(nil)
	var head *integrity.ChainHead
	prev, seq := "", int64(0)
	n, err := st.ReadChain(context.Background(), corr,
		func(cs integrity.ChainState) error { head = cs.Head; return nil },
		func(e *audit.Event) error {
			seq++
			require.Equal(t, seq, e.ChainSeq, "%s: chain_seq", corr)
			require.NotNil(t, e.PreviousHash)
			require.Equal(t, prev, *e.PreviousHash, "%s #%d: previous hash", corr, seq)
			canon, err := e.Canonical()
			require.NoError(t, err)
			require.Equal(t, hasher.Link(prev, canon), e.Hash, "%s #%d: hash", corr, seq)
			prev = e.Hash
			return nil
		})
	require.NoError(t, err)
	require.NotNil(t, head)
	assert.Equal(t, integrity.ChainHead{Seq: seq, Hash: prev}, *head, "%s: head", corr)
	return n
}

func TestBigAndSmallBatchesLinkTheSameVerifiableChains(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	corrs := []string{"rr-big-1", "rr-big-2", "rr-big-3"}
	stored := newEvent(corrs[0], time.Now().Add(-time.Hour), 30)
	_, err := st.InsertEvents(ctx, []*audit.Event{stored}) // small: unnest
	require.NoError(t, err)

	// A batch big enough to go by COPY, with parents stored before and
	// earlier in the batch, and a repeat of an event already stored.
	var big []*audit.Event
	for i := range 450 {
		e := newEvent(corrs[i%len(corrs)], time.Now().Add(-time.Duration(450-i)*time.Second), 30)
		switch {
		case i%7 == 0:
			e.ParentID = &stored.ID
		case i > 10 && i%5 == 0:
			e.ParentID = &big[i-3].ID
		}
		big = append(big, e)
	}
	repeat := *stored
	big = append(big, &repeat)
	n, err := st.InsertEvents(ctx, big)
	require.NoError(t, err)
	assert.EqualValues(t, 450, n, "the repeat is not stored twice")
	assert.Equal(t, stored.Date.Std(), big[7].ParentDate.Std())
	assert.Equal(t, big[12].Date.Std(), big[15].ParentDate.Std())

	// More small batches extend the same chains.
	for i := range 5 {
		_, err := st.InsertEvents(ctx, []*audit.Event{newEvent(corrs[i%len(corrs)], time.Now(), 30), childOf(big[i], corrs[0], time.Now())})
		require.NoError(t, err)
	}
	var total int64
	for _, c := range corrs {
		total += verifyChain(t, st, c)
	}
	assert.EqualValues(t, 1+450+10, total)
}

// lookupCounter counts the parent lookups a store sends.
type lookupCounter struct{ n atomic.Int64 }

func (l *lookupCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "FROM audit_event_ids WHERE event_id = ANY") {
		l.n.Add(1)
	}
	return ctx
}

func (l *lookupCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func TestResolveParentsOfEventsThisStoreCommittedAsksNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lookups := &lookupCounter{}
	st, url := storetest.New(t, store.Options{MaxConns: 4, Tracer: lookups}, 1)
	other, err := store.Open(ctx, url, store.Options{MaxConns: 2}) // another replica
	require.NoError(t, err)
	defer other.Close()

	mine := newEvent("rr-recent", time.Now().Add(-time.Minute), 30)
	theirs := newEvent("rr-recent", time.Now().Add(-time.Minute), 30)
	_, err = st.InsertEvents(ctx, []*audit.Event{mine})
	require.NoError(t, err)
	_, err = other.InsertEvents(ctx, []*audit.Event{theirs})
	require.NoError(t, err)

	child := childOf(mine, "rr-recent", time.Now())
	require.NoError(t, st.ResolveParents(ctx, []*audit.Event{child}))
	assert.Equal(t, mine.Date.Std(), child.ParentDate.Std())
	assert.Zero(t, lookups.n.Load(), "a parent this store committed is known without a query")

	child2 := childOf(theirs, "rr-recent", time.Now())
	require.NoError(t, st.ResolveParents(ctx, []*audit.Event{child2}))
	assert.Equal(t, theirs.Date.Std(), child2.ParentDate.Std())
	assert.EqualValues(t, 1, lookups.n.Load(), "another replica's event is looked up")

	n, err := st.InsertEvents(ctx, []*audit.Event{child, child2})
	require.NoError(t, err)
	assert.EqualValues(t, 2, n)
}

// The write path declares the store it needs; the store cannot say so in
// its own code without importing internal/ingest.
var _ ingest.Store = (*store.Store)(nil)
