package maintenance_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/maintenance"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

func monthStart(t time.Time) time.Time {
	y, m, _ := t.UTC().Date()
	return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
}

func partitionName(m time.Time) string {
	return "audit_events_y" + m.Format("2006") + "m" + m.Format("01")
}

func (e *env) partitions() map[string]bool {
	e.t.Helper()
	parts, err := e.st.Partitions(context.Background())
	require.NoError(e.t, err)
	out := map[string]bool{}
	for _, p := range parts {
		out[p.Name] = true
	}
	return out
}

func (e *env) count(sql string, args ...any) int64 {
	e.t.Helper()
	var n int64
	require.NoError(e.t, e.st.Pool().QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func TestRetentionKeepsHeldEventsAndDropsExpiredMonths(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ctx := context.Background()
	base := monthStart(time.Now()).AddDate(-3, 0, 0)
	_, err := e.st.EnsurePartitions(ctx, base, 5)
	require.NoError(t, err)
	day := func(month, d int) time.Time { return base.AddDate(0, month, d-1).Add(10 * time.Hour) }

	// Month 0: A expires (a small tree), B expires too but is held.
	a1 := old("rr-A", day(0, 3), 30, nil)
	a2 := old("rr-A", day(0, 3).Add(time.Minute), 30, a1)
	a3 := old("rr-A", day(0, 4), 30, a2)
	b1 := old("rr-B", day(0, 5), 30, nil)
	b2 := old("rr-B", day(0, 5).Add(time.Minute), 30, b1)
	// Month 2: everything expired and unheld, parents and children inside
	// the month; F goes on today.
	d1 := old("rr-D", day(2, 1), 30, nil)
	d2 := old("rr-D", day(2, 2), 30, d1)
	f1 := old("rr-F", day(2, 3), 30, nil)
	f2 := old("rr-F", time.Now().Add(-time.Minute), 2555, nil)
	// Month 4: E's root expired, but its child (today, kept for years)
	// references it, so the month stays.
	e1 := old("rr-E", day(4, 1), 30, nil)
	e2 := old("rr-E", time.Now().Add(-time.Minute), 2555, e1)
	// Month 5: not expired.
	g1 := old("rr-G", day(5, 1), 2555, nil)
	e.write(a1, a2, a3, b1, b2, d1, d2, f1, f2, e1, e2, g1)
	_, err = e.svc.PlaceHold(ctx, "rr-B", "litigation", "legal")
	require.NoError(t, err)
	total := e.count(`SELECT count(*) FROM audit_events`)

	reg := prometheus.NewRegistry()
	job := &maintenance.RetentionJob{Store: e.st, Metrics: maintenance.NewRetentionMetrics(reg),
		Options: maintenance.RetentionOptions{BatchSize: 2}}

	// Dry run: says what would go, changes nothing.
	job.Options.DryRun = true
	rep, err := job.RunOnce(ctx)
	require.NoError(t, err)
	require.True(t, rep.DryRun)
	require.Equal(t, []string{partitionName(base.AddDate(0, 2, 0))}, rep.PartitionsDropped)
	require.Equal(t, int64(3+3), rep.EventsDeleted, "%+v", rep)
	require.Equal(t, total, e.count(`SELECT count(*) FROM audit_events`))

	job.Options.DryRun = false
	rep, err = job.RunOnce(ctx)
	require.NoError(t, err)
	require.False(t, rep.Skipped)
	require.Equal(t, []string{partitionName(base.AddDate(0, 2, 0))}, rep.PartitionsDropped)
	require.Equal(t, int64(6), rep.EventsDeleted, "%+v", rep)

	parts := e.partitions()
	require.False(t, parts[partitionName(base.AddDate(0, 2, 0))], "month 2 dropped")
	require.True(t, parts[partitionName(base)], "month 0 kept: it holds held events")
	require.True(t, parts[partitionName(base.AddDate(0, 4, 0))], "month 4 kept: referenced")
	require.Equal(t, total-6, e.count(`SELECT count(*) FROM audit_events`))
	storetest.RequireRollupsMatchEvents(t, e.st) // dropped months and deleted rows leave the aggregations

	// A is gone, B is intact, and every chain that remains still verifies:
	// retention's gaps are recorded.
	_, err = e.svc.VerifyChain(ctx, "rr-A", false)
	require.ErrorIs(t, err, integrity.ErrNotFound)
	for corr, n := range map[string]int64{"rr-B": 2, "rr-F": 1, "rr-E": 2, "rr-G": 1} {
		rep := e.verify(corr)
		require.True(t, rep.IsValid, "%s: %s", corr, rep.Message)
		require.Equal(t, n, rep.TotalEvents, corr)
	}
	require.Equal(t, int64(1), e.count(`SELECT count(*) FROM audit_chain_tombstones WHERE correlation_id = 'rr-F'
		AND from_seq = 1 AND to_seq = 1 AND last_hash = $1`, f1.Hash))

	// Once the hold is released, the month goes too.
	_, err = e.svc.ReleaseHold(ctx, "rr-B", "case closed", "legal")
	require.NoError(t, err)
	rep, err = job.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{partitionName(base)}, rep.PartitionsDropped)
	require.Equal(t, int64(2), rep.EventsDeleted)
	require.False(t, e.partitions()[partitionName(base)])
	storetest.RequireRollupsMatchEvents(t, e.st)

	// Metrics count both runs (the dry run deleted nothing).
	got := map[string]float64{}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil && len(m.GetLabel()) == 0:
				got[mf.GetName()] = m.GetCounter().GetValue()
			case m.GetCounter() != nil && m.GetLabel()[0].GetValue() == "success":
				got[mf.GetName()] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[mf.GetName()] = m.GetGauge().GetValue()
			}
		}
	}
	require.Equal(t, 8.0+6.0, got["datastorage_retention_events_deleted_total"], "%v", got)
	require.Equal(t, 2.0+1.0, got["datastorage_retention_partitions_dropped_total"], "%v", got)
	require.Equal(t, 3.0, got["datastorage_retention_runs_total"])
	require.InDelta(t, float64(time.Now().Unix()), got["datastorage_retention_last_run_timestamp_seconds"], 60)
}

func TestRetentionRowsInPartlyExpiredMonth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ctx := context.Background()
	base := monthStart(time.Now()).AddDate(-2, 0, 0)
	_, err := e.st.EnsurePartitions(ctx, base, 0)
	require.NoError(t, err)
	// One chain: links 1 and 2 (child of 1) expire, 3 is kept for years,
	// 4 and 5 (child of 4) expire. The month stays; parents go after their
	// children, one row per batch.
	at := base.Add(24 * time.Hour)
	l1 := old("rr-P", at, 10, nil)
	l2 := old("rr-P", at.Add(time.Second), 10, l1)
	l3 := old("rr-P", at.Add(2*time.Second), 2555, nil)
	l4 := old("rr-P", at.Add(3*time.Second), 10, nil)
	l5 := old("rr-P", at.Add(4*time.Second), 10, l4)
	e.write(l1, l2, l3, l4, l5)

	rep, err := maintenance.RunRetention(ctx, e.st, maintenance.RetentionOptions{BatchSize: 1})
	require.NoError(t, err)
	require.Empty(t, rep.PartitionsDropped)
	require.Equal(t, int64(4), rep.EventsDeleted, "%+v", rep)
	require.Equal(t, int64(1), e.count(`SELECT count(*) FROM audit_events`))
	storetest.RequireRollupsMatchEvents(t, e.st)
	v := e.verify("rr-P")
	require.True(t, v.IsValid, "%s", v.Message)
	require.Equal(t, int64(1), v.TotalEvents)

	// The same run again finds nothing to do.
	rep, err = maintenance.RunRetention(ctx, e.st, maintenance.RetentionOptions{})
	require.NoError(t, err)
	require.Zero(t, rep.EventsDeleted)
}

func TestRetentionRunsOnOneReplicaAtATime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ctx := context.Background()
	conn, err := e.st.Pool().Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(0x6473_7265_746e))
	require.NoError(t, err)
	rep, err := maintenance.RunRetention(ctx, e.st, maintenance.RetentionOptions{})
	require.NoError(t, err)
	require.True(t, rep.Skipped)
	_, err = conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, int64(0x6473_7265_746e))
	require.NoError(t, err)
	rep, err = maintenance.RunRetention(ctx, e.st, maintenance.RetentionOptions{})
	require.NoError(t, err)
	require.False(t, rep.Skipped)
}

func TestRetentionFinishesAnInterruptedDetach(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ctx := context.Background()
	month := monthStart(time.Now()).AddDate(-2, 0, 0)
	_, err := e.st.EnsurePartitions(ctx, month, 0)
	require.NoError(t, err)
	e.write(old("rr-I", month.Add(time.Hour), 10, nil), old("rr-I", month.Add(2*time.Hour), 10, nil))
	name := partitionName(month)

	// A detach cancelled while it waits for an older transaction is left
	// pending, its month invisible to queries.
	reader, err := e.st.Pool().Begin(ctx)
	require.NoError(t, err)
	_, err = reader.Exec(ctx, `SELECT count(*) FROM audit_events`)
	require.NoError(t, err)
	conn, err := e.st.Pool().Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `SET statement_timeout = 300`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `ALTER TABLE audit_events DETACH PARTITION `+name+` CONCURRENTLY`)
	require.ErrorContains(t, err, "statement timeout")
	_, _ = conn.Exec(ctx, `RESET statement_timeout`)
	conn.Release()
	require.NoError(t, reader.Rollback(ctx))
	require.Equal(t, int64(1), e.count(`SELECT count(*) FROM pg_inherits WHERE inhrelid = $1::regclass AND inhdetachpending`, name))

	rep, err := maintenance.RunRetention(ctx, e.st, maintenance.RetentionOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{name}, rep.PartitionsDropped)
	require.Equal(t, int64(2), rep.EventsDeleted)
	require.False(t, e.partitions()[name])
	require.Equal(t, int64(0), e.count(`SELECT count(*) FROM pg_class WHERE relname = $1`, name))
	storetest.RequireRollupsMatchEvents(t, e.st)
}

// Retention deletes events whose count is still in their correlation's
// open cell (migration 00012): it subtracts them from
// audit_rollup_correlations, so the key's count is in two rows that add up
// to 0, and the aggregations over that hour must not see the correlation
// any more (by-namespace counted each row on its own before it summed them
// by key).
func TestRetentionOfEventsInAnOpenCellLeavesTheAggregationsExact(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ctx := context.Background()
	base := monthStart(time.Now()).AddDate(-2, 0, 0)
	_, err := e.st.EnsurePartitions(ctx, base, 0)
	require.NoError(t, err)
	at := base.Add(24*time.Hour + 10*time.Minute)
	gone1, gone2 := old("rr-cell-gone", at, 10, nil), old("rr-cell-gone", at.Add(time.Second), 10, nil)
	kept := old("rr-cell-kept", at.Add(2*time.Second), 2555, nil) // keeps the month
	for _, ev := range []*audit.Event{gone1, gone2, kept} {
		ev.Namespace = "payments"
	}
	e.write(gone1, gone2)
	e.write(kept)
	require.Equal(t, int64(2), e.count(`SELECT cell_events FROM audit_chain_heads WHERE correlation_id = 'rr-cell-gone'`))

	rep, err := maintenance.RunRetention(ctx, e.st, maintenance.RetentionOptions{})
	require.NoError(t, err)
	require.Empty(t, rep.PartitionsDropped)
	require.Equal(t, int64(2), rep.EventsDeleted, "%+v", rep)
	storetest.RequireRollupsMatchEvents(t, e.st)

	w := query.Window{From: at.Truncate(time.Hour).Add(-time.Hour), To: at.Truncate(time.Hour).Add(2 * time.Hour)}
	ns, err := e.st.CountByNamespace(ctx, w)
	require.NoError(t, err)
	require.Equal(t, []query.NamespaceCount{{Namespace: "payments", Remediations: 1, Events: 1}}, ns)
	groups, err := e.st.CountGroups(ctx, w, []string{"namespace"})
	require.NoError(t, err)
	require.Len(t, groups, 1)
	require.Equal(t, int64(1), groups[0].Count)
}
