package store_test

// The write path's design experiments, as Go benchmarks next to the code they
// measure (they were `dsbench -experiments` and `dsbench -history-index-cost`):
// what each index of audit_events costs a row, which statement writes a
// batch fastest, and what the hash chains cost on top of the bare write. Each
// sub-benchmark gets its own migrated database (storetest.New) and sends rows
// exactly as the store encodes them (store.CopyRows, store.BatchInsertArgs,
// store.BatchInsertSQL): no statement or encoding is copied here.
//
//	make bench-store
//	go test -run '^$' -bench 'IndexCost|WriteStatement|ChainCost' -benchtime 20x ./internal/store/
//
// Besides ns/op, each reports rows/s, pg-cpu-µs/row (the CPU of the
// PostgreSQL backend serving the benchmark's connection, from /proc: Linux
// only, absent elsewhere) and wal-B/row (the WAL insert position). CPU and WAL per row are
// the steady figures; rows/s follows the disk and the other work on the
// machine. They start PostgreSQL, so -short skips them.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

// benchEvents makes n events shaped like the platform's (~500 bytes of
// event_data with a workflow_id, a nested target, a few scalars), over 1,000
// correlations, in the mix of the remediation read models: one event in 50
// is a remediation.workflow_created naming a target, five in 50 are
// effectiveness events. IDs and hashes are filled by refresh.
func benchEvents(n int) []*audit.Event {
	now := time.Now()
	reasons := []string{"OOMKilled", "CrashLoopBackOff", "HighLatency", "DiskPressure", "NodeNotReady"}
	out := make([]*audit.Event, n)
	for i := range out {
		ts := now.Add(-time.Duration(i%3600) * time.Second)
		corr := fmt.Sprintf("rr-%08x-%04d", i*104729, i%1000)
		ns := fmt.Sprintf("ns-%d", i%20)
		e := &audit.Event{
			Version: "1.0", Type: "workflowexecution.step.completed", Category: "workflowexecution",
			Action: "executed", Outcome: "success", CorrelationID: corr,
			Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts),
			ActorType: "service", ActorID: "workflowexecution-service",
			ResourceType: "workflowexecution", ResourceID: corr,
			Namespace: ns, ClusterID: "prod-eu-1", Severity: "info", RetentionDays: 2555,
		}
		data := map[string]any{
			"event_type": e.Type, "remediation_id": corr, "step": i % 12, "attempt": 1 + i%3,
			"workflow_id":     fmt.Sprintf("wf-%s-%03d", strings.ToLower(reasons[i%len(reasons)]), i%40),
			"reason":          reasons[i%len(reasons)],
			"target_resource": map[string]any{"kind": "Deployment", "name": fmt.Sprintf("%s-api-%x", ns, i), "namespace": ns},
			"message":         fmt.Sprintf("phase %d of executed finished after %d probes; replicas %d/6 ready", i%9, i%50, i%6),
		}
		switch {
		case i%50 == 0:
			e.Type, e.Category, e.Action = "remediation.workflow_created", "orchestration", "workflow_created"
			data = map[string]any{"event_type": e.Type, "target_resource": fmt.Sprintf("%s/Deployment/app-%d", ns, i%997),
				"pre_remediation_spec_hash": fmt.Sprintf("%064x", i), "signal_type": "alert", "action_type": "RestartPod", "outcome": "Success"}
		case i%50 >= 45:
			e.Type, e.Category, e.Action = "effectiveness.hash.computed", "effectiveness", "computed"
			data = map[string]any{"event_type": e.Type, "pre_remediation_spec_hash": fmt.Sprintf("%064x", i),
				"post_remediation_spec_hash": fmt.Sprintf("%064x", i+1), "hash_match": false}
		}
		e.ActorID, e.ResourceType = e.Category+"-service", e.Category
		b, err := json.Marshal(data)
		if err != nil {
			panic(err) // strings and numbers always encode
		}
		e.Data = b
		out[i] = e
	}
	return out
}

// standInHash is a SHA-256-sized hash in the API's form, for rows written
// without computing the chain.
var standInHash = strings.Repeat("9f86d081", 8)

// refresh gives events fresh ids and chain fields, as the write path would
// before the statement: every iteration writes new rows.
func refresh(events []*audit.Event) {
	for i, e := range events {
		e.ID = uuid.Must(uuid.NewV7())
		e.ChainSeq, e.Hash, e.PreviousHash, e.HashAlgorithm = int64(i+1), standInHash, nil, audit.AlgSHA256
	}
}

// costMeter measures what a benchmark's writes cost PostgreSQL: the CPU of
// the backend behind conn and the WAL of the whole server.
type costMeter struct {
	ctx   context.Context
	tb    testing.TB
	conn  *pgx.Conn
	pid   int
	cpu0  float64
	cpuOK bool // false where /proc is missing, or when the writes use other connections
	wal0  int64
	rows  int64
}

// newCostMeter connects to url and takes the starting figures after a
// CHECKPOINT, so every sub-benchmark starts with no dirty pages of another.
func newCostMeter(b *testing.B, url string) *costMeter {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(b, err)
	b.Cleanup(func() { conn.Close(context.Background()) })
	m := &costMeter{conn: conn, ctx: ctx, tb: b}
	require.NoError(b, conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&m.pid))
	_, err = conn.Exec(ctx, "CHECKPOINT")
	require.NoError(b, err)
	m.wal0 = m.wal()
	m.cpu0, m.cpuOK = backendCPU(m.pid)
	return m
}

func (m *costMeter) wal() int64 {
	var n int64
	// The WAL insert position moves at once; pg_stat_wal lags until the
	// backend next reports its statistics.
	require.NoError(m.tb, m.conn.QueryRow(m.ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::int8").Scan(&n))
	return n
}

// report adds the per-row metrics of everything since newCostMeter; rows/s
// is over the timed part of the loop only.
func (m *costMeter) report(b *testing.B) {
	b.Helper()
	walBytes := m.wal() - m.wal0
	if m.rows == 0 {
		b.Fatal("no rows written")
	}
	rows := float64(m.rows)
	b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(walBytes)/rows, "wal-B/row")
	if cpu, ok := backendCPU(m.pid); ok && m.cpuOK {
		b.ReportMetric((cpu-m.cpu0)/rows*1e6, "pg-cpu-µs/row")
	}
}

// backendCPU returns the user+system CPU seconds of process pid from
// /proc/<pid>/stat (fields 14 and 15, in USER_HZ = 100 ticks per second).
func backendCPU(pid int) (float64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	k, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return (u + k) / 100, true
}

func skipShort(b *testing.B) {
	if testing.Short() {
		b.Skip("starts PostgreSQL")
	}
}

// copyChunk is the rows per COPY and commit of the index-cost runs: large
// enough that the commit's WAL flush is a rounding error.
const copyChunk = 2000

// BenchmarkIndexCost is what each index of audit_events costs a row: the
// same rows COPYed (the store's own COPY encoding) into a database with the
// schema as migrated, with one index dropped or one candidate added. The
// "as migrated" case is the raw limit of the write path: no chain, no
// rollups, only the table and its indexes. One op is one COPY of copyChunk
// rows in its own transaction.
func BenchmarkIndexCost(b *testing.B) {
	skipShort(b)
	ctx := context.Background()
	// Whatever secondary indexes the migrations leave, so no case names
	// one a later migration dropped.
	st, _ := storetest.New(b, store.Options{MaxConns: 2}, 0)
	rows, err := st.Pool().Query(ctx, `
		SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = 'audit_events'::regclass AND NOT i.indisprimary ORDER BY 1`)
	require.NoError(b, err)
	secondary, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(b, err)
	require.NotEmpty(b, secondary)

	type variant struct {
		name string
		ddl  []string
	}
	dropAll := make([]string, len(secondary))
	for i, ix := range secondary {
		dropAll[i] = "DROP INDEX " + ix
	}
	variants := []variant{{name: "as-migrated"}, {name: "primary-key-only", ddl: dropAll}}
	for _, ix := range secondary {
		variants = append(variants, variant{name: "without-" + ix, ddl: []string{"DROP INDEX " + ix}})
	}
	variants = append(variants,
		variant{name: "without-parent-fk", ddl: []string{"ALTER TABLE audit_events DROP CONSTRAINT audit_events_parent_fk"}},
		variant{name: "plus-gin-jsonb_ops", ddl: []string{"CREATE INDEX x_data_gin ON audit_events USING gin (event_data)"}},
		variant{name: "plus-gin-jsonb_path_ops", ddl: []string{"CREATE INDEX x_data_gin ON audit_events USING gin (event_data jsonb_path_ops)"}},
		// The remediation read models' candidates (CONTRACT §16): the
		// effectiveness events by correlation, and by post-remediation hash.
		variant{name: "plus-effectiveness-correlation", ddl: []string{
			"CREATE INDEX x_eff_corr ON audit_events (correlation_id, event_timestamp) WHERE event_category = 'effectiveness'"}},
		variant{name: "plus-effectiveness-post-hash", ddl: []string{
			"CREATE INDEX x_eff_post ON audit_events ((event_data ->> 'post_remediation_spec_hash')) WHERE event_category = 'effectiveness'"}},
		// The archive's order (docs/archive.md, "Sorting a month"): what an
		// index that would spare the archive job its sort costs every write.
		variant{name: "plus-archive-order", ddl: []string{
			`CREATE INDEX x_archive_order ON audit_events (correlation_id COLLATE "C", chain_seq)`}},
	)
	events := benchEvents(copyChunk)
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			st, url := storetest.New(b, store.Options{MaxConns: 2}, 0)
			for _, q := range v.ddl {
				_, err := st.Pool().Exec(ctx, q)
				require.NoError(b, err, q)
			}
			m := newCostMeter(b, url)
			for b.Loop() {
				b.StopTimer()
				refresh(events)
				b.StartTimer()
				n, err := m.conn.CopyFrom(ctx, pgx.Identifier{"audit_events"}, store.BatchInsertColumns(), store.CopyRows(events))
				require.NoError(b, err)
				m.rows += n
			}
			m.report(b)
			var indexBytes int64
			require.NoError(b, st.Pool().QueryRow(ctx, `
				SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0)::int8
				FROM pg_inherits h JOIN pg_index i ON i.indrelid = h.inhrelid
				WHERE h.inhparent = 'audit_events'::regclass`).Scan(&indexBytes))
			b.ReportMetric(float64(indexBytes)/float64(m.rows), "index-B/row")
		})
	}
}

// BenchmarkWriteStatement compares the ways to write one batch, each in its
// own transaction and without the chain statements (their cost is the same
// around any of them): the store's unnest INSERT, the same with the ON
// CONFLICT DO NOTHING the store dropped, COPY into a temporary table and
// INSERT … SELECT from it, and COPY straight into audit_events (what the
// store does from its COPY threshold up). One op is one batch.
func BenchmarkWriteStatement(b *testing.B) {
	skipShort(b)
	ctx := context.Background()
	cols := strings.Join(store.BatchInsertColumns(), ", ")
	stmts := []struct {
		name  string
		setup string
		write func(tx pgx.Tx, events []*audit.Event) (int64, error)
	}{
		{name: "unnest", write: func(tx pgx.Tx, events []*audit.Event) (int64, error) {
			return execArgs(ctx, tx, store.BatchInsertSQL(), events)
		}},
		{name: "unnest-on-conflict", write: func(tx pgx.Tx, events []*audit.Event) (int64, error) {
			return execArgs(ctx, tx, store.BatchInsertSQL()+"\nON CONFLICT (event_id, event_date) DO NOTHING", events)
		}},
		{
			name:  "copy-temp-insert-select",
			setup: "CREATE TEMP TABLE audit_stage (LIKE audit_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
			write: func(tx pgx.Tx, events []*audit.Event) (int64, error) {
				if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_stage"}, store.BatchInsertColumns(), store.CopyRows(events)); err != nil {
					return 0, err
				}
				tag, err := tx.Exec(ctx, "INSERT INTO audit_events ("+cols+") SELECT "+cols+" FROM audit_stage ON CONFLICT (event_id, event_date) DO NOTHING")
				return tag.RowsAffected(), err
			},
		},
		{name: "copy", write: func(tx pgx.Tx, events []*audit.Event) (int64, error) {
			return tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, store.BatchInsertColumns(), store.CopyRows(events))
		}},
	}
	for _, batch := range []int{32, 500, 2000} {
		events := benchEvents(batch)
		for _, s := range stmts {
			b.Run(fmt.Sprintf("batch=%d/%s", batch, s.name), func(b *testing.B) {
				_, url := storetest.New(b, store.Options{MaxConns: 2}, 0)
				m := newCostMeter(b, url)
				if s.setup != "" {
					_, err := m.conn.Exec(ctx, s.setup)
					require.NoError(b, err)
				}
				for b.Loop() {
					b.StopTimer()
					refresh(events)
					b.StartTimer()
					require.NoError(b, pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
						n, err := s.write(tx, events)
						m.rows += n
						return err
					}))
				}
				m.report(b)
			})
		}
	}
}

func execArgs(ctx context.Context, tx pgx.Tx, sql string, events []*audit.Event) (int64, error) {
	args, err := store.BatchInsertArgs(events)
	if err != nil {
		return 0, err
	}
	tag, err := tx.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

// BenchmarkChainCost is the price of the hash chains: Store.InsertEvents
// (advisory locks, chain-head read, hashing, insert, chain-head write,
// rollups, one transaction) against the same rows written by the statement
// the store would use for that batch size, alone in a transaction. One op is
// one batch from one writer; the concurrent shape (the ingest pipeline's
// writers) is measured over HTTP by `make bench`.
func BenchmarkChainCost(b *testing.B) {
	skipShort(b)
	ctx := context.Background()
	for _, batch := range []int{32, 500} {
		events := benchEvents(batch)
		b.Run(fmt.Sprintf("batch=%d/chain=off", batch), func(b *testing.B) {
			_, url := storetest.New(b, store.Options{MaxConns: 2}, 0)
			m := newCostMeter(b, url)
			for b.Loop() {
				b.StopTimer()
				refresh(events)
				b.StartTimer()
				require.NoError(b, pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
					var n int64
					var err error
					if batch >= 200 { // the store's COPY threshold (copyMinRows)
						n, err = tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, store.BatchInsertColumns(), store.CopyRows(events))
					} else {
						n, err = execArgs(ctx, tx, store.BatchInsertSQL(), events)
					}
					m.rows += n
					return err
				}))
			}
			m.report(b)
		})
		b.Run(fmt.Sprintf("batch=%d/chain=on", batch), func(b *testing.B) {
			st, url := storetest.New(b, store.Options{MaxConns: 2}, 0)
			m := newCostMeter(b, url)
			m.cpuOK = false // the store writes through its own pool
			for b.Loop() {
				b.StopTimer()
				fresh := make([]*audit.Event, len(events))
				for i, e := range events {
					c := *e
					c.ID, c.ChainSeq, c.Hash, c.PreviousHash, c.HashAlgorithm = uuid.Must(uuid.NewV7()), 0, "", nil, ""
					fresh[i] = &c
				}
				b.StartTimer()
				n, err := st.InsertEvents(ctx, fresh)
				require.NoError(b, err)
				m.rows += n
			}
			m.report(b)
		})
	}
}
