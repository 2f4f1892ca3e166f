package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/testenv"
)

// commitSQL runs on a generic plan, which guesses 10 rows per unnest: with
// chain heads and rollup rows in the low thousands it used to join them by
// hash over a sequential scan, reading each table whole at every commit
// (indexJoins). The plan it really runs with, as both kinds of commit set
// up their transaction, must read those tables by index.
func TestACommitReadsTheHeadsAndRollupsByIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.NewDatabase(t)
	catcher := &argsCatcher{}
	st, err := Open(ctx, url, Options{MaxConns: 2, Tracer: catcher})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)
	// commitEventsSQL's plans are the reading path's; the small commits'
	// statement (smallSQL) is checked below.
	st.smallMode = smallPipelined
	// 2,000 correlations and event types in batches of 100: heads and
	// rollup rows in the range where a sequential scan looks cheap to a
	// generic plan.
	for b := range 20 {
		events := make([]*audit.Event, 100)
		for i := range events {
			ts := time.Now().Add(-time.Minute)
			events[i] = &audit.Event{ID: audit.NewServerID(audit.NewTime(ts)), Version: "1.0", Type: fmt.Sprintf("gateway.signal.t%d", b*100+i),
				Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Category: "gateway", Action: "received",
				Outcome: "success", CorrelationID: fmt.Sprintf("rr-plan-%d", b*100+i), Data: []byte(`{}`),
				ActorType: "service", ActorID: "gateway-service", ResourceType: "gateway", ResourceID: "r",
				Severity: "info", RetentionDays: 30}
		}
		_, err := st.InsertEvents(ctx, events)
		require.NoError(t, err)
	}
	_, err = st.pool.Exec(ctx, `ANALYZE`)
	require.NoError(t, err)
	require.NotNil(t, catcher.args, "a commit of fewer than copyMinRows events ran commitEventsSQL")

	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	var plans []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { plans = append(plans, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	// auto_explain sends the plan a statement ran with to this client
	// (EXPLAIN of a statement with parameters would plan it custom).
	for _, q := range []string{`LOAD 'auto_explain'`, `SET auto_explain.log_min_duration = 0`, `SET auto_explain.log_level = notice`} {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err)
	}
	for name, setup := range map[string]func(tx pgx.Tx) error{
		"one round trip (insertFast)": func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, lockChainsGenericSQL, []string{"rr-plan-1"})
			return err
		},
		"reading path (insertTx)": func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, genericPlansSQL)
			return err
		},
	} {
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, setup(tx))
		plans = nil
		// The last commit's arguments again: its heads have moved on, so the
		// guard fails and nothing is written; the plan is the same.
		_, err = tx.Exec(ctx, commitEventsSQL, catcher.args...)
		require.NoError(t, err)
		require.NoError(t, tx.Rollback(ctx))
		plan := strings.Join(plans, "\n")
		require.Contains(t, plan, "audit_chain_heads", name)
		for _, table := range []string{"audit_chain_heads", "audit_rollup_hourly", "audit_rollup_correlations"} {
			assert.NotContains(t, plan, "Seq Scan on "+table, "%s: %s", name, plan)
		}
	}

	// smallSQL, after the chain-lock statement as insertSmall sends it,
	// with the guard holding; rolled back.
	events := make([]*audit.Event, 14)
	for i := range events {
		ts := time.Now().Add(-time.Minute)
		events[i] = &audit.Event{ID: audit.NewServerID(audit.NewTime(ts)), Version: "1.0", Type: fmt.Sprintf("gateway.signal.t%d", i*97),
			Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Category: "gateway", Action: "received",
			Outcome: "success", CorrelationID: fmt.Sprintf("rr-plan-%d", i*97), Data: []byte(`{}`),
			ActorType: "service", ActorID: "gateway-service", ResourceType: "gateway", ResourceID: "r",
			Severity: "info", RetentionDays: 30}
	}
	canon, err := canonicalForms(events)
	require.NoError(t, err)
	expected := st.heads.get(corrsOf(events))
	args, err := smallArgs(events, expected, linkEvents(st.hasher, expected, events, canon), 1)
	require.NoError(t, err)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, lockChainsGenericSQL, corrsOf(events))
	require.NoError(t, err)
	plans = nil
	var ok bool
	require.NoError(t, tx.QueryRow(ctx, smallSQL, args...).Scan(&ok))
	require.True(t, ok)
	require.NoError(t, tx.Rollback(ctx))
	plan := strings.Join(plans, "\n")
	require.Contains(t, plan, "audit_chain_heads")
	for _, table := range []string{"audit_chain_heads", "audit_rollup_hourly", "audit_rollup_correlations", "audit_event_ids"} {
		assert.NotContains(t, plan, "Seq Scan on "+table, "smallSQL: %s", plan)
	}
}
