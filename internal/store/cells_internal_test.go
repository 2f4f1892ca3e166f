package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/testenv"
)

// commitTracer records the commit statements that succeeded, so a test
// knows which write path a commit took, and every lone statement sent
// with how it ended.
type commitTracer struct {
	mu       sync.Mutex
	ok       map[string]int
	attempts []loneAttempt
}

// loneAttempt is a lone statement sent (loneSQL, loneSameCellSQL) and its
// error.
type loneAttempt struct {
	sql string
	err error
}

func (c *commitTracer) record(sql string, err error) {
	if sql == loneStartSQL || sql == loneExtendSQL || sql == loneSameCellSQL {
		c.mu.Lock()
		c.attempts = append(c.attempts, loneAttempt{sql, err})
		c.mu.Unlock()
	}
	if err != nil {
		return
	}
	switch sql {
	case loneStartSQL, loneExtendSQL, loneSameCellSQL, smallSQL, commitEventsSQL, commitAfterCopySQL:
	default:
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok == nil {
		c.ok = map[string]int{}
	}
	c.ok[sql]++
}

// takeAttempts returns the lone statements sent since the last call.
func (c *commitTracer) takeAttempts() []loneAttempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.attempts
	c.attempts = nil
	return out
}

// take returns the statements recorded since the last call.
func (c *commitTracer) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.ok
	c.ok = nil
	return out
}

type sqlKey struct{}

func (c *commitTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, sqlKey{}, d.SQL)
}
func (c *commitTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	sql, _ := ctx.Value(sqlKey{}).(string)
	c.record(sql, d.Err)
}
func (c *commitTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (c *commitTracer) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	c.record(d.SQL, d.Err)
}
func (c *commitTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// cellStore opens a migrated store on a fresh database.
func cellStore(t *testing.T, opts Options) *Store {
	t.Helper()
	ctx := context.Background()
	st, err := Open(ctx, testenv.NewDatabase(t), opts)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)
	return st
}

// cellEvent is an event of corr at ts in namespace ns.
func cellEvent(corr string, ts time.Time, ns string) *audit.Event {
	e := overlapEvent(corr, ts)
	e.Namespace, e.ClusterID = ns, "east"
	return e
}

// openCell reads corr's open cell: its hour, namespace and count (ok false
// without a head).
func openCell(t *testing.T, st *Store, corr string) (bucket time.Time, ns string, n int64, ok bool) {
	t.Helper()
	var b *time.Time
	err := st.pool.QueryRow(context.Background(), `SELECT cell_bucket, cell_namespace, cell_events FROM audit_chain_heads
		WHERE correlation_id = $1`, corr).Scan(&b, &ns, &n)
	if err == pgx.ErrNoRows {
		return time.Time{}, "", 0, false
	}
	require.NoError(t, err)
	if b != nil {
		bucket = b.UTC()
	}
	return bucket, ns, n, true
}

// Every write path keeps the correlation counts exact through cell
// changes: the same hour and namespace (the cell grows), another
// namespace, the next hour, one commit over several hours whose earliest
// cell is the stored one (two counts for one rollup key in one
// statement), and an event older than the open cell. After each commit
// the counts (rollup rows and open cells) equal a count of the events, and
// the statement the path stands for is the one that committed. A chained
// path leaves the cell of the commit's latest event open on the head; the
// unchained path (dsbench's chains off) has no head and writes every
// count to audit_rollup_correlations.
func TestOpenCellsKeepCorrelationCountsExactOnEveryPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type path struct {
		name      string
		stmt      string // the statement that must commit each step
		sameCell  bool   // lone events in the head's open cell go by loneSameCellSQL instead
		copy      bool   // commits of copyMinRows events or more
		single    bool   // one event per commit
		unchained bool
		setup     func(*Store)
		write     func(st *Store, events []*audit.Event) error
	}
	insert := func(st *Store, events []*audit.Event) error {
		_, err := st.InsertEvents(ctx, events)
		return err
	}
	reading := func(st *Store, events []*audit.Event) error {
		canon, err := canonicalForms(events)
		if err != nil {
			return err
		}
		_, err = st.insertEvents(ctx, events, canon, false, false)
		return err
	}
	unchained := func(st *Store, events []*audit.Event) error {
		for i, e := range events {
			e.ChainSeq, e.Hash, e.PreviousHash, e.HashAlgorithm = int64(i+1), strings.Repeat("ab", 32), nil, audit.AlgSHA256
		}
		_, err := st.InsertUnchained(ctx, events)
		return err
	}
	paths := []path{
		{name: "lone", stmt: loneExtendSQL, sameCell: true, single: true, write: insert},
		{name: "lone-array", stmt: smallSQL, single: true, setup: func(s *Store) { s.arrayLone = true }, write: insert},
		{name: "small", stmt: smallSQL, write: insert},
		{name: "small-pipelined", stmt: commitEventsSQL, setup: func(s *Store) { s.smallMode = smallPipelined }, write: insert},
		{name: "reading", stmt: commitEventsSQL, write: reading},
		{name: "reading-copy", stmt: commitAfterCopySQL, copy: true, write: reading},
		{name: "overlap-copy", stmt: commitAfterCopySQL, copy: true, write: insert},
		{name: "unchained", stmt: commitEventsSQL, unchained: true, write: unchained},
		{name: "unchained-copy", stmt: commitAfterCopySQL, copy: true, unchained: true, write: unchained},
	}
	hour := time.Now().UTC().Truncate(time.Hour)
	at := func(h int, minute int) time.Time {
		return hour.Add(time.Duration(h)*time.Hour + time.Duration(minute)*time.Minute)
	}
	type cell struct {
		h  int
		ns string
	}
	steps := []struct {
		name  string
		cells []cell // two events of each, in this order and time order, but for the last step
	}{
		{"first", []cell{{-3, "a"}}},
		{"same cell", []cell{{-3, "a"}}},
		{"other namespace", []cell{{-3, "b"}}},
		{"next hour", []cell{{-2, "b"}}},
		{"other namespace again", []cell{{-2, "a"}}},
		{"back to a cell that has a rollup row", []cell{{-2, "b"}}},
		// The stored cell and the commit's first one are the same key,
		// which has a rollup row: an UPDATE … FROM with its two counts
		// as two source rows would add only one of them.
		{"several hours, the stored cell among them", []cell{{-2, "b"}, {0, "a"}, {-1, "b"}}},
		{"an earlier hour than the open cell", []cell{{-3, "a"}}},
		{"the open hour again, another namespace", []cell{{0, "b"}}},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			tracer := &commitTracer{}
			st := cellStore(t, Options{MaxConns: 4, Tracer: tracer})
			if p.setup != nil {
				p.setup(st)
			}
			corr := "rr-cell-" + p.name
			// What the open cell must be, followed commit by commit: the
			// cell of the commit's latest event, grown when it is the
			// stored one, unless it is an earlier hour than the stored
			// one, which then stays as it is.
			var open struct {
				at time.Time
				ns string
				n  int64
			}
			follow := func(commit []*audit.Event) {
				var latest *audit.Event
				for _, e := range commit {
					if e.CorrelationID == corr && (latest == nil || !e.Timestamp.Std().Before(latest.Timestamp.Std())) {
						latest = e
					}
				}
				b := rollupBucket(latest)
				if b.Before(open.at) {
					return
				}
				var n int64
				for _, e := range commit {
					if e.CorrelationID == corr && rollupBucket(e).Equal(b) && e.Namespace == latest.Namespace {
						n++
					}
				}
				if !b.Equal(open.at) || latest.Namespace != open.ns {
					open.at, open.ns, open.n = b, latest.Namespace, 0
				}
				open.n += n
			}
			for i, step := range steps {
				var events []*audit.Event
				for k, c := range step.cells {
					for j := range 2 {
						events = append(events, cellEvent(corr, at(c.h, 10+i*5+k*2+j), c.ns))
					}
				}
				if p.copy {
					// Other correlations make the commit large enough for
					// COPY.
					for j := range copyMinRows {
						events = append(events, cellEvent(fmt.Sprintf("rr-cell-fill-%d", j%20), at(-1, 1+i), "f"))
					}
				}
				commits := [][]*audit.Event{events}
				switch {
				case p.single:
					commits = nil
					for _, e := range events {
						commits = append(commits, []*audit.Event{e})
					}
				case i == 0 && !p.copy && !p.unchained && p.name != "reading":
					// The fast paths need a remembered head: a first
					// event starts the chain.
					commits = [][]*audit.Event{events[:1], events[1:]}
				}
				tracer.take()
				inCell := 0 // lone events in the cell the head holds open
				for _, c := range commits {
					if len(c) == 1 && rollupBucket(c[0]).Equal(open.at) && c[0].Namespace == open.ns {
						inCell++
					}
					require.NoError(t, p.write(st, c), step.name)
					follow(c)
				}
				took := tracer.take()
				if i > 0 || p.copy || p.unchained || p.name == "reading" {
					n := took[p.stmt]
					if p.sameCell {
						assert.Equal(t, inCell, took[loneSameCellSQL], "%s: events sent by loneSameCellSQL: %v", step.name, took)
						n += took[loneSameCellSQL]
					}
					assert.Positive(t, n, "%s: the path's statement did not commit: %v", step.name, took)
				}
				storedRollupsMatch(t, st)

				b, ns, n, ok := openCell(t, st, corr)
				if p.unchained {
					assert.False(t, ok, "%s: a chain head for unchained events", step.name)
					continue
				}
				require.True(t, ok)
				assert.Equal(t, open.at, b, step.name)
				assert.Equal(t, open.ns, ns, step.name)
				assert.Equal(t, open.n, n, "%s: events in the open cell", step.name)
			}
		})
	}
}

// Commits of two stores (two replicas, each with its own remembered heads)
// on shared chains, over a few hours and namespaces, in commits of 1 to
// 250 events at once: the counts stay exact, whichever path each commit
// took and however often a remembered head was stale.
func TestOpenCellsStayExactUnderConcurrentWritersOfTwoStores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := cellStore(t, Options{MaxConns: 6})
	b, err := Open(ctx, a.pool.Config().ConnString(), Options{MaxConns: 6})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	hour := time.Now().UTC().Truncate(time.Hour)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 6 {
		st := a
		if w%2 == 1 {
			st = b
		}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range 12 {
				n := []int{1, 1, 2, 5, 40, 250}[rng.IntN(6)]
				events := make([]*audit.Event, n)
				for i := range events {
					ts := hour.Add(-time.Duration(rng.IntN(4))*time.Hour + time.Duration(rng.IntN(3600))*time.Second)
					events[i] = cellEvent(fmt.Sprintf("rr-cc-%d", rng.IntN(6)), ts, []string{"a", "b"}[rng.IntN(2)])
				}
				if _, err := st.InsertEvents(ctx, events); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	storedRollupsMatch(t, a)
	var open int64
	require.NoError(t, a.pool.QueryRow(ctx, `SELECT sum(cell_events) FROM audit_chain_heads`).Scan(&open))
	assert.Positive(t, open, "no count in an open cell: the cells were not used")
}

// A commit that does not commit leaves the open cell as it was: a trial
// commit (locateRefusal's, ended by ROLLBACK) and a batch PostgreSQL
// refuses (an outcome its CHECK does not allow), on a commit that would
// have closed the cell.
func TestARolledBackCommitLeavesTheOpenCellAsItWas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := cellStore(t, Options{MaxConns: 4})
	hour := time.Now().UTC().Truncate(time.Hour)
	corr := "rr-cell-rollback"
	_, err := st.InsertEvents(ctx, []*audit.Event{cellEvent(corr, hour.Add(-2*time.Hour), "a"), cellEvent(corr, hour.Add(-2*time.Hour+time.Minute), "a")})
	require.NoError(t, err)
	b0, ns0, n0, _ := openCell(t, st, corr)
	require.EqualValues(t, 2, n0)

	trial := []*audit.Event{cellEvent(corr, hour.Add(-time.Hour), "b"), cellEvent(corr, hour.Add(-time.Hour+time.Minute), "b")}
	canon, err := canonicalForms(trial)
	require.NoError(t, err)
	_, err = st.insertEvents(ctx, trial, canon, true, false)
	require.NoError(t, err)

	bad := []*audit.Event{cellEvent(corr, hour.Add(-time.Hour), "b"), cellEvent(corr, hour.Add(-time.Hour+time.Minute), "b")}
	bad[1].Outcome = "maybe"
	_, err = st.InsertEvents(ctx, bad)
	var refused *audit.RefusedEventError
	require.ErrorAs(t, err, &refused)
	assert.Equal(t, 1, refused.Index)

	b, ns, n, _ := openCell(t, st, corr)
	assert.Equal(t, b0, b)
	assert.Equal(t, ns0, ns)
	assert.Equal(t, n0, n)
	storedRollupsMatch(t, st)

	_, err = st.InsertEvents(ctx, []*audit.Event{cellEvent(corr, hour.Add(-time.Hour), "b")})
	require.NoError(t, err)
	storedRollupsMatch(t, st)
}

// The cell guard (cellUnchanged). A lone statement and a small one link
// events in a new hour to a remembered head, and start while another
// transaction, holding the chain's lock, hands the head's open cell to
// audit_rollup_correlations without moving the head (as only a writer
// that does not move heads could: here the test itself). They wait for the
// lock inside their statement, whose snapshot still has the old cell.
// When the other commits, they must write nothing: closing the cell they
// read would count its events a second time. With the guard edited out,
// they do, and the counts are wrong.
func TestACommitWhoseOpenCellChangedMeanwhileWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := cellStore(t, Options{MaxConns: 6})
	hour := time.Now().UTC().Truncate(time.Hour)
	for _, c := range []struct {
		name    string
		small   bool
		guarded bool
	}{{"lone", false, true}, {"small", true, true}, {"lone-unguarded", false, false}, {"small-unguarded", true, false}} {
		corr := "rr-cell-guard-" + c.name
		// The open cell (H-2, a) with 1 event, and a rollup row of the same
		// key (2 events), left when a commit in (H-2, b) closed it.
		_, err := st.InsertEvents(ctx, []*audit.Event{cellEvent(corr, hour.Add(-2*time.Hour), "a"), cellEvent(corr, hour.Add(-2*time.Hour), "a")})
		require.NoError(t, err)
		_, err = st.InsertEvents(ctx, []*audit.Event{cellEvent(corr, hour.Add(-2*time.Hour), "b")})
		require.NoError(t, err)
		_, err = st.InsertEvents(ctx, []*audit.Event{cellEvent(corr, hour.Add(-2*time.Hour), "a")})
		require.NoError(t, err)
		_, _, n, _ := openCell(t, st, corr)
		require.EqualValues(t, 1, n)

		next := []*audit.Event{cellEvent(corr, hour.Add(-time.Hour), "a")}
		if c.small {
			next = append(next, cellEvent(corr, hour.Add(-time.Hour), "a"))
		}
		canon, err := canonicalForms(next)
		require.NoError(t, err)
		expected := st.heads.get([]string{corr})
		heads := linkEvents(st.hasher, expected, next, canon)
		var sql string
		var args []any
		if c.small {
			sql = smallSQL
			args, err = smallArgs(next, expected, heads, 1)
		} else {
			sql, args, err = loneArgs(next[0], expected, heads, 1)
		}
		require.NoError(t, err)
		if !c.guarded {
			require.Contains(t, sql, cellUnchanged)
			sql = strings.Replace(sql, cellUnchanged, "true", 1)
		}

		tx, err := st.pool.Begin(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		_, err = tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, corr)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `WITH h AS (
				SELECT correlation_id, cell_bucket, cell_namespace, cell_cluster, cell_events FROM audit_chain_heads WHERE correlation_id = $1
			), flushed AS (
				UPDATE audit_chain_heads SET cell_events = 0 WHERE correlation_id = $1
			)
			INSERT INTO audit_rollup_correlations AS r (bucket, correlation_id, namespace, cluster_id, events)
			SELECT cell_bucket, correlation_id, cell_namespace, cell_cluster, cell_events FROM h
			ON CONFLICT (bucket, correlation_id, namespace, cluster_id) DO UPDATE SET events = r.events + EXCLUDED.events`, corr)
		require.NoError(t, err)

		conn, err := st.pool.Acquire(ctx)
		require.NoError(t, err)
		var pid int
		require.NoError(t, conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
		done := make(chan error, 1)
		var n64 int64
		var ok bool
		go func() {
			// smallSQL alone, as smallAlone sends it: its own snapshot is
			// older than the lock it waits for. (insertSmall sends the
			// lock statement before it, which gives it a newer one.)
			if c.small {
				done <- conn.QueryRow(ctx, sql, args...).Scan(&ok)
				return
			}
			n, err := loneCount(ctx, conn, sql, args)
			n64 = n
			done <- err
		}()
		require.Eventually(t, func() bool {
			select {
			case err := <-done:
				require.Failf(t, "the commit did not wait for the lock", "%s: %v", c.name, err)
			default:
			}
			var waiting bool
			err := st.pool.QueryRow(ctx, `SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting)
			return err == nil && waiting
		}, 30*time.Second, 5*time.Millisecond, "the commit never waited for the lock")
		require.NoError(t, tx.Commit(ctx))
		err = <-done
		conn.Release()

		var stored int
		require.NoError(t, st.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE correlation_id = $1`, corr).Scan(&stored))
		switch {
		case c.guarded && c.small:
			require.Error(t, err)
			assert.True(t, guardFailed(err), "%v", err)
			assert.Equal(t, 4, stored)
			storedRollupsMatch(t, st)
		case c.guarded:
			require.NoError(t, err)
			assert.Zero(t, n64, "the lone statement wrote")
			assert.Equal(t, 4, stored)
			storedRollupsMatch(t, st)
		default:
			// What the guarded cases' assertions catch when it is gone:
			// the cell's event, handed over by the other transaction, is
			// counted a second time.
			require.NoError(t, err)
			assert.Equal(t, 4+len(next), stored)
			var counted int64
			require.NoError(t, st.pool.QueryRow(ctx, `SELECT sum(events) FROM audit_rollup_correlations_all WHERE correlation_id = $1`, corr).Scan(&counted))
			assert.EqualValues(t, 4+len(next)+1, counted)
		}
		st.heads.forget([]string{corr})
	}
}

// Migrating below 00012 hands every open cell's count to
// audit_rollup_correlations before the columns go, and migrating up again
// starts with empty cells: no count is lost either way.
func TestMigratingTheCellsDownAndUpKeepsEveryCount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := cellStore(t, Options{MaxConns: 4})
	hour := time.Now().UTC().Truncate(time.Hour)
	for i := range 3 {
		_, err := st.InsertEvents(ctx, []*audit.Event{cellEvent("rr-cell-migrate", hour.Add(-time.Duration(i)*time.Hour), "a"),
			cellEvent(fmt.Sprintf("rr-cell-migrate-%d", i), hour.Add(-time.Hour), "b")})
		require.NoError(t, err)
	}
	var open int64
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT sum(cell_events) FROM audit_chain_heads`).Scan(&open))
	require.EqualValues(t, 4, open)

	_, err := st.MigrateDownTo(ctx, 11)
	require.NoError(t, err)
	var bad int
	require.NoError(t, st.pool.QueryRow(ctx, `
		SELECT count(*) FROM (
			SELECT date_trunc('hour', event_timestamp, 'UTC') AS b, correlation_id, coalesce(namespace, '') AS ns,
				coalesce(cluster_id, '') AS cl, count(*) AS n FROM audit_events GROUP BY 1, 2, 3, 4
		) e FULL JOIN audit_rollup_correlations r
			ON (r.bucket, r.correlation_id, r.namespace, r.cluster_id) = (e.b, e.correlation_id, e.ns, e.cl)
		WHERE e.n IS DISTINCT FROM r.events`).Scan(&bad))
	assert.Zero(t, bad, "correlation rollup rows that differ from the events after the cells went")

	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	storedRollupsMatch(t, st)
	_, err = st.InsertEvents(ctx, []*audit.Event{cellEvent("rr-cell-migrate", hour, "a")})
	require.NoError(t, err)
	storedRollupsMatch(t, st)
}
