package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	lp := newLoneParams(newChain)
	const corr, seq, typ, category, outcome, severity = loneCorr, loneSeq, loneType, loneCategory, loneOutcome, loneSeverity
	expSeq, expHash, newHash, id, bucket, shard, ns, cluster := lp.expSeq, lp.expHash, lp.newHash, lp.id, lp.bucket, lp.shard, lp.ns, lp.cluster

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	b.WriteString(lonePrologue(id))
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
	b.WriteString(loneRows(lp))
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
	// kept: the head's stored cell stayed open (the event is in an earlier
	// hour), so the cell left open is not the event's (insertLone).
	if newChain {
		b.WriteString("SELECT count(*), false FROM head")
	} else {
		b.WriteString("SELECT count(*), coalesce(bool_or(kept), false) FROM head")
	}
	return b.String()
}

// sameCellSQL returns loneSameCellSQL: loneSQL for the lone event a quiet
// cluster sends most often, onto a remembered head whose open cell is the
// event's own (same hour, namespace and cluster, as every event of a
// remediation within the hour), counted in an hourly rollup row that this
// process knows exists.
// Then the head's UPDATE only adds 1 to its cell, with no self-join to read
// the stored cell, no cell to close and no hourly row to insert: three
// nodes of loneSQL's plan, two of them tables to open at every execution,
// that such an event never uses (TestMeasureLonePieces: 12–26 % of the
// backend's CPU per lone event).
//
// Its parameters are loneExtendSQL's (loneArgs). The head's UPDATE moves
// it only if it is still the one the event was linked to and holds that
// cell (on its newest version: READ COMMITTED re-checks the WHERE, and
// cell_events + 1 is computed on it), so a head moved or a cell closed by
// another writer makes it write nothing and answer 0, as loneSQL does. A
// hourly row that is not there after all (RebuildRollups deleted the hour's
// rows) would leave the event uncounted, so the statement then fails
// (hourlyRowMissing) and nothing of it stays; the caller sends loneSQL,
// which inserts the row. As in commitAfterCopySQL, the input of the cast is
// not a constant, so that it is evaluated only when the row is missing.
func sameCellSQL() string {
	lp := newLoneParams(false)
	expSeq, expHash, newHash, bucket, ns, cluster := lp.expSeq, lp.expHash, lp.newHash, lp.bucket, lp.ns, lp.cluster
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	b.WriteString(lonePrologue(lp.id))
	p("), head AS (")
	p("	UPDATE audit_chain_heads a SET last_seq = %s, last_hash = %s, cell_events = a.cell_events + 1", loneSeq, newHash)
	p("	WHERE a.correlation_id = %s AND a.last_seq = %s AND a.last_hash = %s", loneCorr, expSeq, expHash)
	p("	AND (a.cell_bucket, a.cell_namespace, a.cell_cluster) = (%s, %s, %s)", bucket, ns, cluster)
	p("	AND EXISTS (SELECT FROM lock) AND (SELECT ok FROM free)")
	p("	RETURNING 1")
	b.WriteString(loneRows(lp))
	p(")")
	fmt.Fprintf(&b, "SELECT (CASE WHEN NOT EXISTS (SELECT FROM head) THEN '0' WHEN EXISTS (SELECT FROM hourly) THEN '1' ELSE '%s' END)::int8", hourlyMissingMarker)
	return b.String()
}

// hourlyMissingMarker is the text of the error loneSameCellSQL raises when
// the hourly rollup row it adds to is not there: invalid_text_representation
// (22P02) of an int8 whose input is this text.
const hourlyMissingMarker = "datastorage: hourly rollup row missing"

// hourlyRowMissing reports the error loneSameCellSQL raises when its hourly
// row is not there: the statement wrote nothing.
func hourlyRowMissing(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "22P02" && strings.Contains(pgErr.Message, hourlyMissingMarker)
}

// lonePrologue is how every lone statement starts: the chain's advisory
// lock, with the transaction's plan_cache_mode (loneSQL), and whether the
// id (the parameter id) is free.
func lonePrologue(id string) string {
	return "WITH lock AS MATERIALIZED (\n" +
		"\tSELECT pg_advisory_xact_lock(hashtextextended(" + loneCorr + ", 0)), set_config('plan_cache_mode', 'force_generic_plan', true)\n" +
		"), free AS MATERIALIZED (\n" +
		"\tSELECT NOT EXISTS (SELECT 1 FROM audit_event_ids WHERE event_id = " + id + ") AS ok\n"
}

// loneRows is the part every lone statement shares after its head: the
// event, its id row (for a client-given id) and its count in the hourly
// rollup row, each written only if the head CTE returned a row. A hourly
// row that is not there yet is the caller's to insert (loneSQL) or to
// fail on (loneSameCellSQL).
func loneRows(lp loneParams) string {
	return "), event AS (\n" +
		"\tINSERT INTO audit_events (" + strings.Join(insertColumns, ", ") + ")\n" +
		"\tSELECT " + strings.Join(loneEventValues(), ", ") + " WHERE EXISTS (SELECT FROM head)\n" +
		"), ids AS (\n" +
		"\tINSERT INTO audit_event_ids (event_id, event_date)\n" +
		"\tSELECT " + lp.id + ", $2::date WHERE " + lp.id + " IS NOT NULL AND EXISTS (SELECT FROM head)\n" +
		"), hourly AS (\n" +
		"\tUPDATE audit_rollup_hourly SET events = events + 1\n" +
		"\tWHERE (bucket, event_type, event_category, event_outcome, severity, shard) = (" +
		strings.Join([]string{lp.bucket, loneType, loneCategory, loneOutcome, loneSeverity, lp.shard}, ", ") + ")\n" +
		"\tAND EXISTS (SELECT FROM head)\n" +
		"\tRETURNING 1\n"
}

// loneEventValues returns the event's 29 columns as loneSQL's first
// parameters, typed, in insertColumns' order.
func loneEventValues() []string {
	types := []string{"uuid", "date", "timestamptz", "text", "text", "text",
		"text", "text", "text", "jsonb", "text", "text",
		"text", "text", "text", "uuid", "date",
		"text", "text", "text", "int4", "text", "text",
		"int4", "bool", "int8", "bytea", "bytea", "text"}
	vals := make([]string, len(types))
	for i, t := range types {
		vals[i] = fmt.Sprintf("$%d::%s", i+1, t)
	}
	return vals
}

// Event columns that loneSQL's other parts reuse (loneEventValues).
const loneCorr, loneSeq, loneType, loneCategory, loneOutcome, loneSeverity = "$9::text", "$26::int8", "$5::text", "$6::text", "$8::text", "$20::text"

// loneParams are loneSQL's parameters after the event's columns, in the
// order loneArgs sends them: the expected head (seq and hash; "" when the
// statement starts a chain), the new head's hash, the id to record, the
// rollup hour, the hourly shard, and the namespace and cluster as the
// rollups key them.
type loneParams struct {
	expSeq, expHash, newHash, id, bucket, shard, ns, cluster string
}

func newLoneParams(newChain bool) loneParams {
	n := len(insertColumns)
	arg := func(typ string) string {
		n++
		return fmt.Sprintf("$%d::%s", n, typ)
	}
	var lp loneParams
	if !newChain {
		lp.expSeq, lp.expHash = arg("int8"), arg("text")
	}
	lp.newHash, lp.id, lp.bucket, lp.shard, lp.ns, lp.cluster = arg("text"), arg("uuid"), arg("timestamptz"), arg("int2"), arg("text"), arg("text")
	return lp
}

// Statements of a lone event: onto a remembered head, or starting a chain;
// and onto a remembered head in the event's own cell.
var (
	loneExtendSQL   = loneSQL(false)
	loneStartSQL    = loneSQL(true)
	loneSameCellSQL = sameCellSQL()
)

// insertLone commits one linkable event (see insertFast) with loneSQL, in
// one round trip and one statement. done is false when the statement
// wrote nothing (a head moved or exists after all, the id is taken): the
// caller then takes the reading path, as after insertFast's guard.
//
// When the remembered head holds the event's own cell and this process knows
// the hourly row the event counts in, it sends loneSameCellSQL instead; if
// that row turns out to be gone, loneSQL follows on the same connection.
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
	cell := headCell{bucket: rollupBucket(e), ns: e.Namespace, cluster: e.ClusterID}
	row := hourlyRow{hourlyKeyOf(e, cell.bucket), shard}
	fail := func(err error) (int64, bool, error) {
		s.heads.forget(corrs)
		if isDuplicateEvent(err) {
			return 0, false, errChainRace
		}
		return 0, false, err
	}
	var n int64
	kept, sent := false, false
	if sql == loneExtendSQL && s.heads.inCell(e.CorrelationID, cell) && s.hourly.has(row) {
		err = conn.QueryRow(ctx, loneSameCellSQL, args...).Scan(&n)
		switch {
		case hourlyRowMissing(err):
			s.hourly.forget(row)
		case err != nil:
			return fail(err)
		default:
			sent = true
		}
	}
	if !sent {
		if err := conn.QueryRow(ctx, sql, args...).Scan(&n, &kept); err != nil {
			return fail(err)
		}
	}
	if n != 1 {
		s.heads.forget(corrs)
		return 0, false, nil
	}
	if kept {
		// The head kept its later cell open: the event's is not it.
		cell = headCell{}
	}
	s.heads.putLone(heads, cell)
	s.hourly.add(row)
	s.recent.add([]*audit.Event{e}, time.Now())
	return 1, true, nil
}

// headCell is the key of a chain head's open cell (cells.go); the zero
// value means not known.
type headCell struct {
	bucket      time.Time
	ns, cluster string
}

// hourlyRow is a row of audit_rollup_hourly, shard included.
type hourlyRow struct {
	key   hourlyKey
	shard int16
}

// hourlyRows remembers the rows of audit_rollup_hourly that this process's
// lone commits found or made, so that the next lone event counted in one
// can be sent loneSameCellSQL, which only updates it. It is a hint, never
// trusted: a row deleted since (RebuildRollups) fails that statement, and
// loneSQL follows.
type hourlyRows struct {
	mu   sync.Mutex
	rows map[hourlyRow]struct{}
}

// maxHourlyRows bounds hourlyRows; past it, it starts over. An hour of a
// busy cluster has some hundreds of keys per shard.
const maxHourlyRows = 4096

func (h *hourlyRows) has(r hourlyRow) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.rows[r]
	return ok
}

func (h *hourlyRows) add(r hourlyRow) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rows == nil || len(h.rows) >= maxHourlyRows {
		h.rows = make(map[hourlyRow]struct{})
	}
	h.rows[r] = struct{}{}
}

func (h *hourlyRows) forget(r hourlyRow) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.rows, r)
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
