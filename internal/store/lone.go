package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
)

// loneSQL commits one event in one statement, sent alone, in autocommit:
// no BEGIN, no separate chain-lock statement, no COMMIT, and scalar
// parameters instead of one-element arrays. A lone event is what a quiet
// cluster sends (single c=1), and there the statement's fixed costs
// (parse, bind, executor start, snapshot, three more protocol messages)
// were most of what PostgreSQL did beyond the row itself
// (bench/results/writepath-2026-12-07e.md).
//
// The guard lives in the chain head's own UPDATE: it moves the head only
// if it still is the one the event was linked to (the head cache's). In
// READ COMMITTED a concurrent writer of the same head makes this UPDATE
// wait for the row and re-check its WHERE on the row's newest version, so
// a lost race updates nothing, however old the statement's snapshot. Every
// other write (the event, its id row, both rollups) is conditional on the
// head's RETURNING row: a lost race writes nothing, and the statement
// answers 0. A new chain (no head remembered) inserts its head ON
// CONFLICT DO NOTHING, so a head that exists after all (a restart, another
// replica) answers 0 too. A client-given id that is already taken answers
// 0 as well: the reading path then tells a retry from a conflict.
//
// The head's UPDATE also counts the event in the correlation's open cell
// (cells.go), only if the cell is still the one the statement read; only
// a cell it closes (the event is in another hour, namespace or cluster)
// goes to audit_rollup_correlations. A commit in the same cell as the one
// before it updates the head and the hourly rollup, nothing else.
//
// The chain's advisory lock is still taken, inside the statement, before
// the head is touched: the reading path (chain) and the large commits
// (overlap.go) read a head under that lock and write it unconditionally,
// so a writer that moved it without the lock could fork the chain under
// them. The lock waits in the statement; what the statement's older
// snapshot could miss meanwhile is caught by the head UPDATE's re-check
// (above), by primary keys (the event, its id row, a rollup row inserted
// concurrently: a unique violation, retried by the reading path), or is
// an UPDATE of a rollup row, which re-reads the row's newest version.
//
// It also sets plan_cache_mode for the rest of the transaction, as
// genericPlansSQL does: the foreign-key check of an event with a parent
// runs after the statement's own work, and would otherwise be planned
// again for every row.
//
// Parameters: the 29 insertColumns as scalars ($1–$29), then the expected
// head (seq, hash; only when !newChain), the new head's hash, the id to
// record (NULL for an id the server made), the rollup hour, the hourly
// shard, namespace and cluster as the rollups key them.
func loneSQL(newChain bool) string {
	types := []string{"uuid", "date", "timestamptz", "text", "text", "text",
		"text", "text", "text", "jsonb", "text", "text",
		"text", "text", "text", "uuid", "date",
		"text", "text", "text", "int4", "text", "text",
		"int4", "bool", "int8", "bytea", "bytea", "text"}
	vals := make([]string, len(types))
	for i, t := range types {
		vals[i] = fmt.Sprintf("$%d::%s", i+1, t)
	}
	n := len(types)
	arg := func(typ string) string {
		n++
		return fmt.Sprintf("$%d::%s", n, typ)
	}
	// Columns reused from the event's own parameters.
	const corr, seq, typ, category, outcome, severity = "$9::text", "$26::int8", "$5::text", "$6::text", "$8::text", "$20::text"
	var expSeq, expHash string
	if !newChain {
		expSeq, expHash = arg("int8"), arg("text")
	}
	newHash, id, date, bucket, shard, ns, cluster := arg("text"), arg("uuid"), "$2::date", arg("timestamptz"), arg("int2"), arg("text"), arg("text")

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("WITH lock AS MATERIALIZED (")
	p("	SELECT pg_advisory_xact_lock(hashtextextended(%s, 0)), set_config('plan_cache_mode', 'force_generic_plan', true)", corr)
	p("), free AS MATERIALIZED (")
	p("	SELECT NOT EXISTS (SELECT 1 FROM audit_event_ids WHERE event_id = %s) AS ok", id)
	if newChain {
		p("), head AS (")
		p("	INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash, cell_bucket, cell_namespace, cell_cluster, cell_events)")
		p("	SELECT %s, %s, %s, %s, %s, %s, 1 WHERE EXISTS (SELECT FROM lock) AND (SELECT ok FROM free)", corr, seq, newHash, bucket, ns, cluster)
		p("	ON CONFLICT (correlation_id) DO NOTHING")
		p("	RETURNING 1")
	} else {
		// o is the head as the statement's snapshot has it: the UPDATE
		// re-checks its cell on the newest version (cellUnchanged,
		// cells.go), and closes it when the event is in another cell.
		p("), head AS (")
		p("	UPDATE audit_chain_heads a SET last_seq = %s, last_hash = %s, %s", seq, newHash, cellSet(bucket, ns, cluster, "1"))
		p("	FROM audit_chain_heads o")
		p("	WHERE a.correlation_id = %s AND o.correlation_id = %s AND a.last_seq = %s AND a.last_hash = %s AND %s", corr, corr, expSeq, expHash, cellUnchanged)
		p("	AND EXISTS (SELECT FROM lock) AND (SELECT ok FROM free)")
		p("	RETURNING %s", cellReturning(bucket, ns, cluster, "1"))
	}
	p("), event AS (")
	p("	INSERT INTO audit_events (%s)", strings.Join(insertColumns, ", "))
	p("	SELECT %s WHERE EXISTS (SELECT FROM head)", strings.Join(vals, ", "))
	p("), ids AS (")
	p("	INSERT INTO audit_event_ids (event_id, event_date)")
	p("	SELECT %s, %s WHERE %s IS NOT NULL AND EXISTS (SELECT FROM head)", id, date, id)
	p("), hourly AS (")
	p("	UPDATE audit_rollup_hourly SET events = events + 1")
	p("	WHERE (bucket, event_type, event_category, event_outcome, severity, shard) = (%s, %s, %s, %s, %s, %s)", bucket, typ, category, outcome, severity, shard)
	p("	AND EXISTS (SELECT FROM head)")
	p("	RETURNING 1")
	p("), hourly_added AS (")
	p("	INSERT INTO audit_rollup_hourly (bucket, event_type, event_category, event_outcome, severity, shard, events)")
	p("	SELECT %s, %s, %s, %s, %s, %s, 1 WHERE EXISTS (SELECT FROM head) AND NOT EXISTS (SELECT FROM hourly)", bucket, typ, category, outcome, severity, shard)
	if !newChain {
		// The event counts in the head's cell; only a cell it closed goes
		// to audit_rollup_correlations.
		p("), closed AS (")
		p("	SELECT b, ns, cl, n FROM (%s) AS x(b, c, ns, cl, n)", closedCells("head", "NULL::text"))
		p("), correlations AS (")
		p("	UPDATE audit_rollup_correlations r SET events = r.events + c.n FROM closed c")
		p("	WHERE (r.bucket, r.correlation_id, r.namespace, r.cluster_id) = (c.b, %s, c.ns, c.cl)", corr)
		p("	RETURNING 1")
		p("), correlations_added AS (")
		p("	INSERT INTO audit_rollup_correlations (bucket, correlation_id, namespace, cluster_id, events)")
		p("	SELECT c.b, %s, c.ns, c.cl, c.n FROM closed c WHERE NOT EXISTS (SELECT FROM correlations)", corr)
	}
	p(")")
	b.WriteString("SELECT count(*) FROM head")
	return b.String()
}

// Statements of a lone event: onto a remembered head, or starting a chain.
var (
	loneExtendSQL = loneSQL(false)
	loneStartSQL  = loneSQL(true)
)

// insertLone commits one linkable event (see insertFast) with loneSQL, in
// one round trip and one statement. done is false when the statement
// wrote nothing (a head moved or exists after all, the id is taken): the
// caller then takes the reading path, as after insertFast's guard.
func (s *Store) insertLone(ctx context.Context, conn *pgx.Conn, e *audit.Event, canon []byte) (_ int64, done bool, _ error) {
	corrs := []string{e.CorrelationID}
	expected := s.heads.get(corrs)
	heads := linkEvents(s.hasher, expected, []*audit.Event{e}, [][]byte{canon})
	shard, release := s.shards.acquire()
	defer release()
	sql, args, err := loneArgs(e, expected, heads, shard)
	if err != nil {
		return 0, false, err
	}
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		s.heads.forget(corrs)
		if isDuplicateEvent(err) {
			return 0, false, errChainRace
		}
		return 0, false, err
	}
	if n != 1 {
		s.heads.forget(corrs)
		return 0, false, nil
	}
	s.heads.put(heads)
	s.recent.add([]*audit.Event{e}, time.Now())
	return 1, true, nil
}

// loneArgs returns the loneSQL statement and parameters that commit e,
// linked to expected (its correlation's remembered head: {0, ""} for none)
// and leaving heads.
func loneArgs(e *audit.Event, expected, heads chainHeads, shard int16) (string, []any, error) {
	rows := eventRows{events: []*audit.Event{e}}
	rows.Next()
	cols, err := rows.Values()
	if err != nil {
		return "", nil, err
	}
	id := pgtype.UUID{}
	if !e.ServerID() {
		id = pgtype.UUID{Bytes: e.ID, Valid: true}
	}
	sql := loneStartSQL
	args := make([]any, 0, len(cols)+8)
	args = append(args, cols...)
	if expected.seqs[0] != 0 {
		sql = loneExtendSQL
		args = append(args, expected.seqs[0], expected.hashes[0])
	}
	return sql, append(args, heads.hashes[0], id, rollupBucket(e), shard, e.Namespace, e.ClusterID), nil
}
