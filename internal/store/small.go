package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/audit"
)

// smallSQL commits 2 to smallMaxEvents events, on one chain or several,
// guarded as loneSQL guards one event, over arrays. insertSmall sends it
// after the chain-lock statement in one pipeline without BEGIN or COMMIT
// (one implicit transaction, one round trip). It replaced commitEventsSQL
// in a pipeline of BEGIN, the chain locks, commitEventsSQL and COMMIT,
// whose guard read every head once to check it (a join in its first CTE)
// and again to write it; bench/results/wpsmall-2026-12-07.md measures both.
//
// The statement is correct on its own, in autocommit, whatever its
// snapshot (TestASmallCommitThatLostTheRaceForOneOfItsHeadsWritesNothing
// runs it so). The chain locks are taken inside it as well, in the order
// of the (sorted) correlations, before any head is touched: the reading
// path and the large commits read heads under them and write them without
// a check; taking a lock the transaction holds already costs a lookup. The
// guard lives in the heads' own writes: a remembered head moves only if it
// still is the one the events were linked to (UPDATE … WHERE last_seq,
// last_hash = expected; in READ COMMITTED a row another writer changed
// meanwhile is re-checked on its newest version, so an older snapshot
// cannot fork a chain), and a new chain's head is inserted ON CONFLICT DO
// NOTHING. When fewer heads moved than the commit has chains, or a
// client-given id is taken, the statement fails by the marker cast
// (guardFailed): the heads it did move are rolled back with it, nothing is
// written, and the caller takes the reading path. The other writes run
// only once the guard held, and what an older snapshot could miss there is
// caught as in loneSQL: a row inserted concurrently (an id, a rollup row)
// hits a primary key and the commit is retried; a rollup UPDATE re-reads
// the row's newest version.
//
// It sets plan_cache_mode for the rest of the transaction, as loneSQL
// does, for the parents' foreign-key checks that run after the statement.
//
// Parameters: the 29 insertColumns arrays ($1–$29), then the chains
// (correlations sorted, expected seq (0: a chain this process never saw),
// expected hash, new seq, new hash) with the cells they leave open
// (bucket, namespace, cluster, count: cells.go), the ids to record and their dates
// (client-given ids only, as idRowColumns), the hourly rollup (bucket,
// type, category, outcome, severity, count), its shard, and the
// correlation counts no cell keeps (bucket, correlation, namespace,
// cluster, count).
var smallSQL = func() string {
	var b strings.Builder
	next := 1
	arg := func(typ string) string {
		s := fmt.Sprintf("$%d::%s", next, typ)
		next++
		return s
	}
	var eventArgs []string
	for _, t := range insertColumnArrayTypes {
		eventArgs = append(eventArgs, arg(t))
	}
	corrs, expSeq, expHash, newSeq, newHash := arg("text[]"), arg("int8[]"), arg("text[]"), arg("int8[]"), arg("text[]")
	ob, ons, ocl, on := arg("timestamptz[]"), arg("text[]"), arg("text[]"), arg("int8[]")
	ids, idDates := arg("uuid[]"), arg("date[]")
	hb, ht, hc, ho, hs, hn, shard := arg("timestamptz[]"), arg("text[]"), arg("text[]"), arg("text[]"), arg("text[]"), arg("int8[]"), arg("int2")
	cb, ci, cn, cc, cnt := arg("timestamptz[]"), arg("text[]"), arg("text[]"), arg("text[]"), arg("int8[]")

	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	// count() runs the lock function once per correlation, in the
	// array's order: sorted, so two writers never wait for each other in
	// opposite orders.
	p("WITH lock AS MATERIALIZED (")
	p("	SELECT count(pg_advisory_xact_lock(hashtextextended(c, 0))) AS locked,")
	p("		set_config('plan_cache_mode', 'force_generic_plan', true) AS mode")
	p("	FROM unnest(%s) AS c", corrs)
	p("), free AS MATERIALIZED (")
	p("	SELECT NOT EXISTS (SELECT 1 FROM audit_event_ids WHERE event_id = ANY(%s)) AS ok", ids)
	p("), chains(c, es, eh, s, h, b, ns, cl, n) AS (")
	p("	SELECT * FROM unnest(%s, %s, %s, %s, %s, %s, %s, %s, %s)", corrs, expSeq, expHash, newSeq, newHash, ob, ons, ocl, on)
	// o is the head as the statement's snapshot has it: the UPDATE
	// re-checks its cell on the newest version (cellUnchanged, cells.go).
	p("), moved AS (")
	p("	UPDATE audit_chain_heads a SET last_seq = n.s, last_hash = n.h, %s", cellSet("n.b", "n.ns", "n.cl", "n.n"))
	p("	FROM chains n JOIN audit_chain_heads o ON o.correlation_id = n.c")
	p("	WHERE a.correlation_id = n.c AND n.es > 0 AND a.last_seq = n.es AND a.last_hash = n.eh AND %s", cellUnchanged)
	p("	AND (SELECT locked FROM lock) > 0 AND (SELECT ok FROM free)")
	p("	RETURNING a.correlation_id, %s", cellReturning("n.b", "n.ns", "n.cl", "n.n"))
	p("), started AS (")
	p("	INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash, cell_bucket, cell_namespace, cell_cluster, cell_events)")
	p("	SELECT n.c, n.s, n.h, n.b, n.ns, n.cl, n.n FROM chains n WHERE n.es = 0 AND (SELECT locked FROM lock) > 0 AND (SELECT ok FROM free)")
	p("	ON CONFLICT (correlation_id) DO NOTHING")
	p("	RETURNING 1")
	p("), guard AS MATERIALIZED (")
	p("	SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM started) = cardinality(%s) AS ok", corrs)
	p("), events AS (")
	p("	INSERT INTO audit_events (%s)", strings.Join(insertColumns, ", "))
	p("	SELECT * FROM unnest(%s) WHERE (SELECT ok FROM guard)", strings.Join(eventArgs, ", "))
	p("), ids AS (")
	p("	INSERT INTO audit_event_ids (event_id, event_date)")
	p("	SELECT * FROM unnest(%s, %s) WHERE (SELECT ok FROM guard)", ids, idDates)
	// As in commitSQL: rows that exist are UPDATEd, the others INSERTed.
	p("), hourly_new(b, t, c, o, s, n) AS (")
	p("	SELECT * FROM unnest(%s, %s, %s, %s, %s, %s)", hb, ht, hc, ho, hs, hn)
	p("), hourly AS (")
	p("	UPDATE audit_rollup_hourly r SET events = r.events + n.n FROM hourly_new n")
	p("	WHERE (r.bucket, r.event_type, r.event_category, r.event_outcome, r.severity, r.shard) = (n.b, n.t, n.c, n.o, n.s, %s)", shard)
	p("	AND (SELECT ok FROM guard)")
	p("	RETURNING r.bucket, r.event_type, r.event_category, r.event_outcome, r.severity")
	p("), hourly_added AS (")
	p("	INSERT INTO audit_rollup_hourly (bucket, event_type, event_category, event_outcome, severity, shard, events)")
	p("	SELECT n.b, n.t, n.c, n.o, n.s, %s, n.n FROM hourly_new n WHERE (SELECT ok FROM guard) AND NOT EXISTS (", shard)
	p("		SELECT 1 FROM hourly h WHERE (h.bucket, h.event_type, h.event_category, h.event_outcome, h.severity) = (n.b, n.t, n.c, n.o, n.s))")
	// As in commitSQL: the cells closed and the counts no cell keeps, one
	// row per key.
	p("), correlations_new(b, c, ns, cl, n) AS (")
	p("%s", correlationsNewSQL("moved", cb, ci, cn, cc, cnt))
	p("), correlations AS (")
	p("	UPDATE audit_rollup_correlations r SET events = r.events + n.n FROM correlations_new n")
	p("	WHERE (r.bucket, r.correlation_id, r.namespace, r.cluster_id) = (n.b, n.c, n.ns, n.cl) AND (SELECT ok FROM guard)")
	p("	RETURNING r.bucket, r.correlation_id, r.namespace, r.cluster_id")
	p("), correlations_added AS (")
	p("	INSERT INTO audit_rollup_correlations (bucket, correlation_id, namespace, cluster_id, events)")
	p("	SELECT * FROM correlations_new n WHERE (SELECT ok FROM guard) AND NOT EXISTS (")
	p("		SELECT 1 FROM correlations r WHERE (r.bucket, r.correlation_id, r.namespace, r.cluster_id) = (n.b, n.c, n.ns, n.cl))")
	p(")")
	// The main query reads the guard before the writes that depend on it
	// run (PostgreSQL runs the unread ones once it is done), so a failed
	// guard ends the statement before them. The input of the cast is not
	// a constant, so that it is evaluated only when the guard failed.
	fmt.Fprintf(&b, "SELECT (CASE WHEN ok THEN 'true' ELSE '%s' END)::bool FROM guard", guardFailedMarker)
	return b.String()
}()

// smallMaxEvents is the largest commit that insertSmall takes: every
// commit below copyMinRows, as TestMeasureSmallCommit found it as costly as
// the pipeline it replaced, within this machine's noise, at every size it
// measured (2 to 32 events; bench/results/wpsmall-2026-12-07.md).
const smallMaxEvents = copyMinRows - 1

// smallMode is how a small commit is sent.
type smallMode int

const (
	// smallImplicit sends the chain-lock statement (lockChainsGenericSQL:
	// the locks, generic plans, index joins) and smallSQL in one pipeline
	// without BEGIN and COMMIT, which PostgreSQL runs as one implicit
	// transaction, ended by the pipeline's Sync: committed when both
	// succeed, rolled back when either fails.
	smallImplicit smallMode = iota
	// smallAlone sends smallSQL alone, in autocommit. Measured and not
	// kept: with no statement before it, nothing turns sequential scans off
	// or makes its plan generic before PostgreSQL plans it, and on tables
	// of a few thousand rows (or not yet analyzed) its plans read the
	// heads and rollups whole: 3.4 times the PostgreSQL CPU per commit of
	// 2 events, 1.4 times at 4 (bench/results/wpsmall-2026-12-07.md).
	smallAlone
	// smallPipelined sends BEGIN, the chain-lock statement,
	// commitEventsSQL and COMMIT, as before smallSQL.
	smallPipelined
)

// insertSmall commits events (2 to smallMaxEvents of them, linkable: see
// insertFast) with smallSQL, linked to the heads this process remembers, in
// one round trip (smallMode). done is false when the guard failed (a
// head moved or exists after all, a client-given id is taken): nothing was
// written, and the caller takes the reading path.
func (s *Store) insertSmall(ctx context.Context, conn *pgx.Conn, events []*audit.Event, canon [][]byte) (_ int64, done bool, _ error) {
	corrs := corrsOf(events)
	expected := s.heads.get(corrs)
	heads := linkEvents(s.hasher, expected, events, canon)
	shard, release := s.shards.acquire()
	defer release()
	args, err := smallArgs(events, expected, heads, shard)
	if err != nil {
		return 0, false, err
	}
	var ok bool
	switch s.smallMode {
	case smallAlone:
		err = conn.QueryRow(ctx, smallSQL, args...).Scan(&ok)
	case smallImplicit:
		b := &pgx.Batch{}
		b.Queue(lockChainsGenericSQL, corrs)
		b.Queue(smallSQL, args...).QueryRow(func(row pgx.Row) error { return row.Scan(&ok) })
		err = conn.SendBatch(ctx, b).Close()
	default: // smallPipelined never gets here (insertFast sends it the old way)
		return 0, false, fmt.Errorf("store: small commit: mode %d has no small statement", s.smallMode)
	}
	if err != nil {
		s.heads.forget(corrs)
		switch {
		case guardFailed(err):
			return 0, false, nil
		case isDuplicateEvent(err):
			return 0, false, errChainRace
		}
		return 0, false, err
	}
	s.heads.put(heads)
	s.recent.add(events, time.Now())
	return int64(len(events)), true, nil
}

// smallArgs returns the parameters of smallSQL that commit events, linked
// to expected (the remembered heads of their correlations, sorted; {0, ""}
// for none) and leaving heads, with the hourly counts under shard.
func smallArgs(events []*audit.Event, expected, heads chainHeads, shard int16) ([]any, error) {
	cols, err := batchColumns(events)
	if err != nil {
		return nil, err
	}
	d := newRollupDelta(events)
	open, rest := d.cells(heads.ids)
	return slices.Concat(cols, []any{heads.ids, expected.seqs, expected.hashes, heads.seqs, heads.hashes}, open,
		idRowColumns(events), d.hourlyColumns(), []any{shard}, rest), nil
}
