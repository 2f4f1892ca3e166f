package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/failure"
)

// querier is what both the pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// insertEventsSQL writes a whole batch in one statement: each column travels
// as one array parameter, so the statement text (and its prepared plan) is
// the same for 1 event or 5,000, and the parameter count never grows.
//
// It is a plain INSERT, not ON CONFLICT DO NOTHING: the events already stored
// were dropped under the chain locks (see chain), so a conflict here means a
// concurrent transaction stored one of them meanwhile, and the whole
// transaction must fail anyway (the hashes computed for it are void). A plain
// INSERT fails it by itself, before the COMMIT that follows in the same
// pipeline, and it writes less WAL (no speculative-insertion record per row).
const insertEventsSQL = `
INSERT INTO audit_events (
	event_id, event_date, event_timestamp, version, event_type, event_category,
	event_action, event_outcome, correlation_id, event_data, actor_type, actor_id,
	actor_ip, resource_type, resource_id, parent_event_id, parent_event_date,
	namespace, cluster_id, severity, duration_ms, error_code, error_message,
	retention_days, is_sensitive, chain_seq, event_hash, previous_event_hash, hash_algorithm)
SELECT * FROM unnest(
	$1::uuid[], $2::date[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
	$7::text[], $8::text[], $9::text[], $10::jsonb[], $11::text[], $12::text[],
	$13::text[], $14::text[], $15::text[], $16::uuid[], $17::date[],
	$18::text[], $19::text[], $20::text[], $21::int4[], $22::text[], $23::text[],
	$24::int4[], $25::bool[], $26::int8[], $27::bytea[], $28::bytea[], $29::text[])`

// copyMinRows is the batch size from which the rows go by COPY instead of
// insertEventsSQL. COPY costs a round trip more (it cannot share a pipeline
// with other statements) and saves PostgreSQL CPU on every row: measured
// (dsbench -experiments) the saving outweighs the round trip from a few
// hundred rows on.
const copyMinRows = 200

// insertColumns are the columns of insertEventsSQL and of the COPY, in the
// order of columns and eventRows. Both write the stored form (stored.go):
// hashes as bytea, defaults as NULL.
var insertColumns = []string{
	"event_id", "event_date", "event_timestamp", "version", "event_type", "event_category",
	"event_action", "event_outcome", "correlation_id", "event_data", "actor_type", "actor_id",
	"actor_ip", "resource_type", "resource_id", "parent_event_id", "parent_event_date",
	"namespace", "cluster_id", "severity", "duration_ms", "error_code", "error_message",
	"retention_days", "is_sensitive", "chain_seq", "event_hash", "previous_event_hash", "hash_algorithm",
}

// Statements of the hash chain. The advisory locks are taken in the order of
// the (sorted) array, so two writers touching the same correlations queue
// instead of deadlocking; a lock is per correlation, not per table, so
// unrelated remediations never wait for each other.
//
// Every statement that reads audit_events is bounded by event_date, so the
// planner opens only the partitions that can hold the rows: with three years
// of monthly partitions, an unbounded lookup spends milliseconds planning
// and locking the other 35 months.
const (
	lockChainsSQL = `SELECT pg_advisory_xact_lock(hashtextextended(c, 0)) FROM unnest($1::text[]) AS c`
	// lockChainsGenericSQL is lockChainsSQL and genericPlansSQL in one
	// statement, for a commit that reads nothing before it writes
	// (insertFast).
	lockChainsGenericSQL = `SELECT pg_advisory_xact_lock(hashtextextended(c, 0)), set_config('plan_cache_mode', 'force_generic_plan', true), ` +
		indexJoins + ` FROM unnest($1::text[]) AS c`
	readHeadsSQL = `SELECT correlation_id, last_seq, last_hash FROM audit_chain_heads WHERE correlation_id = ANY($1)`
	// insertIDsSQL takes the ids of the events a transaction stores. A
	// concurrent transaction storing the same id waits for ours and then
	// fails on the primary key (errChainRace): one id, one row.
	insertIDsSQL = `INSERT INTO audit_event_ids (event_id, event_date) SELECT * FROM unnest($1::uuid[], $2::date[])`
	// repeatsSQL reads the stored events whose ids a batch repeats on the
	// same date, to tell a retry (same content) from a forgery.
	repeatsSQL    = `SELECT ` + eventColumns + ` FROM audit_events WHERE event_id = ANY($1) AND event_date BETWEEN $2 AND $3`
	writeHeadsSQL = `
INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash)
SELECT * FROM unnest($1::text[], $2::int8[], $3::text[])
ON CONFLICT (correlation_id) DO UPDATE SET last_seq = EXCLUDED.last_seq, last_hash = EXCLUDED.last_hash`
)

// storedIDsSQL finds the ids already taken, on any date
// (audit_event_ids, migration 00006): one primary-key probe per id on an
// unpartitioned table; and for v7 ids, the events stored without an id
// row on the date the id names (ids.go). Parameters: storedIDsArgs.
var storedIDsSQL = `SELECT event_id, event_date, false FROM audit_event_ids WHERE event_id = ANY($1)
	UNION ALL ` + selfDatedSQL(2, 3)

// genericPlansSQL makes the foreign-key checks that the rows of a write
// transaction fire run on a generic plan. Left to itself (plan_cache_mode
// auto) PostgreSQL re-plans that check at every row, because a custom plan
// that prunes partitions looks cheaper than a generic one that prunes them
// at executor start: at 36 monthly partitions 0.068 ms of planning for 0.007
// ms of execution (bench/results/latest.md, pg_stat_statements). Statements
// that look ids up in a range of dates must not follow it: in PostgreSQL 15
// a generic plan locks every partition before pruning, which took a parent
// lookup from 0.2 to 3 ms; they run before it, on custom plans.
//
// It also keeps commitSQL's generic plan on index probes (indexJoins).
const genericPlansSQL = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true), ` + indexJoins

// indexJoins makes the rest of a write transaction read tables by index
// only. commitSQL's generic plan cannot see how many heads and rollup rows a
// commit touches (it guesses 10 per unnest) and, while audit_chain_heads and
// the rollup tables are a few thousand rows, it joined them by hash over a
// sequential scan, reading each table whole at every commit: for a commit
// of one event that was most of what it cost PostgreSQL beyond a naive
// INSERT (TestMeasureLoneCommit, same run: 590 → 370 µs of backend CPU per
// event, the naive INSERT 127–132; auto_explain of the plan:
// TestExplainLoneCommit). Only sequential scans are turned off: turning
// hash joins off as well cost batches of 500 twice the CPU (52 against 27
// µs per event), as the anti-joins between the statement's own CTEs became
// nested loops, quadratic in the batch. Nothing later in the transaction
// needs a sequential scan (foreign-key checks and lookups by id are index
// probes); the setting ends with the transaction.
const indexJoins = `set_config('enable_seqscan', 'off', true)`

// errChainRace means a concurrent transaction stored one of our events
// between our duplicate check and our insert; the hashes computed for it are
// void, so the whole transaction is retried.
var errChainRace = errors.New("store: event stored concurrently")

// maxInsertAttempts bounds the retries of InsertEvents (missing partition,
// concurrent duplicate, deadlock or serialization failure).
const maxInsertAttempts = 4

// InsertEvents stores events in one transaction, extending each
// correlation's hash chain, and returns how many were new (the others were
// already stored with the same content, canonical form included: retries;
// they keep their place in the chain). An event whose event_id is already
// stored, on any date, with other content (or earlier in the slice with
// other content) fails the batch with *audit.ConflictError. Parents not yet resolved are looked up inside the same transaction
// (in the same round trip as the chain heads); an event whose parent is
// neither stored nor earlier in the slice fails the batch with
// *audit.MissingParentError. A month without a partition is created and the batch
// retried.
func (s *Store) InsertEvents(ctx context.Context, events []*audit.Event) (_ int64, err error) {
	defer classifyErr(&err)
	s.recent.resolve(events, time.Now())
	// The canonical form of every event whose parent is settled is computed
	// before the transaction, so the chain locks are held for SQL and
	// SHA-256 only.
	var unresolved []*audit.Event
	for _, e := range events {
		if !e.ParentResolved() {
			unresolved = append(unresolved, e)
		}
	}
	canon, err := canonicalForms(events)
	if err != nil {
		return 0, fmt.Errorf("store: insert %d events: %w", len(events), err)
	}
	unresolve := func() {
		// A parent found earlier in this batch may not be there when the
		// caller retries without some of its events: leave every parent as
		// it was, to be resolved again.
		for _, e := range unresolved {
			e.ParentDate = nil
		}
	}
	n, err := s.insertAttempts(ctx, events, canon)
	if err != nil {
		unresolve()
		if isRefusal(err) {
			return 0, &audit.RefusedEventError{Index: s.locateRefusal(ctx, events, canon, unresolve), Err: err}
		}
	}
	return n, err
}

// canonicalForms returns the canonical form of every event whose parent is
// settled (nil for the others). A large batch's are computed on two
// goroutines: some 4 µs an event, 2 ms for 500, which a lone writer spent
// with PostgreSQL idle and the other CPU too (TestMeasureChainCost).
func canonicalForms(events []*audit.Event) ([][]byte, error) {
	canon := make([][]byte, len(events))
	fill := func(from, to int) error {
		for i := from; i < to; i++ {
			e := events[i]
			if !e.ParentResolved() {
				continue
			}
			c, err := e.Canonical()
			if err != nil {
				return &audit.InvalidEventError{EventID: e.ID.String(), Err: err}
			}
			canon[i] = c
		}
		return nil
	}
	if len(events) < copyMinRows {
		return canon, fill(0, len(events))
	}
	half := len(events) / 2
	second := make(chan error, 1)
	go func() { second <- fill(half, len(events)) }()
	err := fill(0, half)
	if err2 := <-second; err == nil {
		err = err2
	}
	return canon, err
}

// isRefusal reports PostgreSQL refusing the rows themselves (SQLSTATE
// classes 22 and 23).
func isRefusal(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && classifySQLState(pgErr.Code) == failure.Data
}

// locateRefusal finds the first event of a refused batch whose presence
// makes PostgreSQL refuse it, by bisecting over prefixes of the batch (a
// prefix keeps every parent that is earlier in the batch), each tried in a
// transaction that is rolled back: log2(n)+1 trials, paid only when a batch
// is refused, so that the answer can name the element. It returns -1 when
// the trials do not reproduce the refusal (a concurrent change, or the
// database became unavailable meanwhile).
func (s *Store) locateRefusal(ctx context.Context, events []*audit.Event, canon [][]byte, unresolve func()) int {
	refused := func(k int) (bool, bool) {
		defer unresolve()
		_, err := s.insertEvents(ctx, events[:k], slices.Clone(canon[:k]), true, false)
		switch {
		case err == nil:
			return false, true
		case isRefusal(err):
			return true, true
		default:
			return false, false
		}
	}
	if bad, ok := refused(len(events)); !bad || !ok {
		return -1
	}
	// events[:lo] is accepted, events[:hi] refused.
	lo, hi := 0, len(events)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		bad, ok := refused(mid)
		if !ok {
			return -1
		}
		if bad {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi - 1
}

func (s *Store) insertAttempts(ctx context.Context, events []*audit.Event, canon [][]byte) (int64, error) {
	var err error
	raced := false
	for range maxInsertAttempts {
		var n int64
		// After a race the reading path decides: insertFast's guard does not
		// see the events stored without an id row (ids.go), which a client
		// may repeat; their primary key stops it, and the retry reads.
		n, err = s.insertEvents(ctx, events, canon, false, !raced)
		raced = raced || errors.Is(err, errChainRace)
		switch {
		case err == nil:
			return n, nil
		case isMissingPartition(err):
			if _, perr := s.ensureMonths(ctx, monthsOf(events)); perr != nil {
				return 0, perr
			}
		case errors.Is(err, errChainRace), isRetryable(err):
		default:
			return 0, err
		}
	}
	return 0, err
}

// insertEvents runs one attempt. A commit of fewer than copyMinRows events
// whose parents are settled and whose chain heads this process remembers
// (headCache) takes one round trip: the chain locks and smallSQL, guarded
// by the remembered heads, in one implicit transaction (insertFast,
// small.go); a commit of one such event is one statement in autocommit
// (loneSQL, lone.go). Otherwise, or
// when the guard fails, it takes two: BEGIN, the chain locks, the chain
// heads, the duplicate check and the parent lookup in one pipeline;
// commitSQL (with the rows, or after their COPY, which takes a round trip
// of its own) and COMMIT in the next. A commit of copyMinRows events or
// more first tries the optimistic path (insertOverlap, overlap.go), which
// takes the chain locks only after its COPY. A trial (locateRefusal) ends
// with ROLLBACK instead of COMMIT; fast false (a retry after a race) goes
// straight to the reading path.
func (s *Store) insertEvents(ctx context.Context, events []*audit.Event, canon [][]byte, trial, fast bool) (int64, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: insert %d events: %w", len(events), err)
	}
	defer conn.Release()
	if !trial && fast {
		n, done, err := s.insertFast(ctx, conn.Conn(), events, canon)
		if err != nil {
			rollback(conn.Conn())
			return 0, fmt.Errorf("store: insert %d events: %w", len(events), err)
		}
		if done {
			return n, nil
		}
		n, done, err = s.insertOverlap(ctx, conn.Conn(), events, canon)
		if err != nil {
			rollback(conn.Conn())
			return 0, fmt.Errorf("store: insert %d events: %w", len(events), err)
		}
		if done {
			return n, nil
		}
	}
	inserted, err := s.insertTx(ctx, conn.Conn(), events, canon, trial)
	if err != nil {
		rollback(conn.Conn())
		return 0, fmt.Errorf("store: insert %d events: %w", len(events), err)
	}
	return inserted, nil
}

// linkable reports whether events can be linked to the heads this process
// remembers, with no read first (insertFast, insertOverlap): every
// canonical form is known and no id comes twice (the reading path tells a
// retry from a conflict). A client-given v7 id may also be one the server
// made and answered, stored without an id row on the date it names
// (ids.go): the commit's guard does not see it, but the event's own
// primary key does when the event is on that date; on another date only
// the reading path finds it.
func linkable(events []*audit.Event, canon [][]byte) bool {
	if slices.ContainsFunc(canon, func(c []byte) bool { return c == nil }) {
		return false
	}
	seen := make(map[uuid.UUID]struct{}, len(events))
	for _, e := range events {
		if _, dup := seen[e.ID]; dup {
			return false
		}
		seen[e.ID] = struct{}{}
		if d, ok := audit.IDDate(e.ID); ok && !e.ServerID() && !sameDate(d, e.Date) {
			return false
		}
	}
	return true
}

// clientIDs returns the ids of events that the server did not make: the
// ones a commit's guard must find free.
func clientIDs(events []*audit.Event) []uuid.UUID {
	var ids []uuid.UUID
	for _, e := range events {
		if !e.ServerID() {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// linkEvents links events, in order, to the heads in expected (one per
// correlation, sorted as corrsOf sorts them) and returns the heads they
// leave.
func linkEvents(h audit.Hasher, expected chainHeads, events []*audit.Event, canon [][]byte) chainHeads {
	heads := chainHeads{ids: expected.ids, seqs: slices.Clone(expected.seqs), hashes: slices.Clone(expected.hashes)}
	for i, e := range events {
		k, _ := slices.BinarySearch(heads.ids, e.CorrelationID)
		prev := heads.hashes[k]
		heads.seqs[k]++
		heads.hashes[k] = h.Link(prev, canon[i])
		e.ChainSeq, e.Hash, e.PreviousHash, e.HashAlgorithm = heads.seqs[k], heads.hashes[k], &prev, h.Algorithm()
	}
	return heads
}

// insertFast commits events in one round trip, linked to the chain heads
// this process remembers, when it can: fewer than copyMinRows events, every
// parent settled, no id twice: one event by loneSQL (lone.go), more by
// smallSQL (small.go). done is false when it could not, or when the guard
// found a head moved (another replica, the catalog) or a client-given id
// already taken (a retry, or a conflict): the commit then wrote nothing,
// and the caller takes the reading path, which sorts retries from
// conflicts.
func (s *Store) insertFast(ctx context.Context, conn *pgx.Conn, events []*audit.Event, canon [][]byte) (_ int64, done bool, _ error) {
	if len(events) >= copyMinRows || !linkable(events, canon) {
		return 0, false, nil
	}
	if len(events) == 1 && !s.arrayLone {
		return s.insertLone(ctx, conn, events[0], canon[0]) // lone.go
	}
	if len(events) <= smallMaxEvents && s.smallMode != smallPipelined {
		return s.insertSmall(ctx, conn, events, canon) // small.go
	}
	check := clientIDs(events)
	corrs := corrsOf(events)
	expected := s.heads.get(corrs)
	heads := linkEvents(s.hasher, expected, events, canon)
	cols, err := batchColumns(events)
	if err != nil {
		return 0, false, err
	}
	shard, release := s.shards.acquire()
	defer release()
	var ok bool
	var commit pgconn.CommandTag
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(lockChainsGenericSQL, corrs)
	b.Queue(commitEventsSQL, slices.Concat(cols, commitArgs(heads, &expected, check, newRollupDelta(events), shard), idRowColumns(events))...).
		QueryRow(func(row pgx.Row) error { return row.Scan(&ok) })
	b.Queue("COMMIT").Exec(func(t pgconn.CommandTag) error {
		commit = t
		return nil
	})
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		s.heads.forget(corrs)
		if isDuplicateEvent(err) {
			return 0, false, errChainRace
		}
		return 0, false, err
	}
	if commit.String() != "COMMIT" {
		s.heads.forget(corrs)
		return 0, false, fmt.Errorf("store: transaction rolled back at commit (%s)", commit)
	}
	if !ok {
		s.heads.forget(corrs)
		return 0, false, nil
	}
	s.heads.put(heads)
	s.recent.add(events, time.Now())
	return int64(len(events)), true, nil
}

func (s *Store) insertTx(ctx context.Context, conn *pgx.Conn, events []*audit.Event, canon [][]byte, trial bool) (int64, error) {
	fresh, heads, err := s.chain(ctx, conn, events, canon, true)
	if err != nil {
		return 0, err
	}
	var inserted int64
	b := &pgx.Batch{}
	var commit pgconn.CommandTag
	shard, release := s.shards.acquire()
	defer release()
	switch {
	case len(fresh) >= copyMinRows:
		// A big batch goes by COPY, in a round trip of its own: PostgreSQL
		// spends some 15 % less CPU per row on it than on the same rows
		// through unnest (multi-row heap inserts, less WAL).
		n, err := conn.CopyFrom(ctx, pgx.Identifier{"audit_events"}, insertColumns, &eventRows{events: fresh})
		if err != nil {
			if isDuplicateEvent(err) {
				return 0, errChainRace
			}
			return 0, err
		}
		inserted = n
		b.Queue(commitAfterCopySQL, append(idRowColumns(fresh), commitArgs(heads, nil, nil, newRollupDelta(fresh), shard)...)...)
	case len(fresh) > 0:
		cols, err := batchColumns(fresh)
		if err != nil {
			return 0, err
		}
		inserted = int64(len(fresh))
		b.Queue(commitEventsSQL, slices.Concat(cols, commitArgs(heads, nil, nil, newRollupDelta(fresh), shard), idRowColumns(fresh))...)
	}
	end := "COMMIT"
	if trial {
		end = "ROLLBACK"
	}
	b.Queue(end).Exec(func(t pgconn.CommandTag) error {
		commit = t
		return nil
	})
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		s.heads.forget(heads.ids)
		if isDuplicateEvent(err) {
			return 0, errChainRace
		}
		return 0, err
	}
	if trial {
		return 0, nil
	}
	if commit.String() != "COMMIT" {
		// COMMIT of a failed transaction answers ROLLBACK, without an error.
		s.heads.forget(heads.ids)
		return 0, fmt.Errorf("store: transaction rolled back at commit (%s)", commit)
	}
	s.heads.put(heads)
	s.recent.add(fresh, time.Now())
	return inserted, nil
}

// queueLinked queues the INSERT of linked events (by unnest), of their ids
// (audit_event_ids: one id, one event, whatever its date) and their new
// chain heads; tag receives the INSERT's command tag. The write path and
// the catalog's transactions both use it.
func (s *Store) queueLinked(b *pgx.Batch, fresh []*audit.Event, heads chainHeads, tag *pgconn.CommandTag) error {
	cols, err := batchColumns(fresh)
	if err != nil {
		return err
	}
	b.Queue(insertIDsSQL, idRowColumns(fresh)...)
	b.Queue(insertEventsSQL, cols...).Exec(func(t pgconn.CommandTag) error {
		*tag = t
		return nil
	})
	b.Queue(writeHeadsSQL, heads.ids, heads.seqs, heads.hashes)
	return nil
}

// queueRollups queues the rollup upserts of fresh and returns the release
// of their shard, to be called once the transaction has ended. They go last
// before COMMIT: the rollup rows stay locked from there to the end of the
// commit, the shortest time possible.
func (s *Store) queueRollups(b *pgx.Batch, fresh []*audit.Event) (release func()) {
	shard, release := s.shards.acquire()
	newRollupDelta(fresh).queue(b, shard)
	return release
}

// rollback ends whatever transaction a failed attempt left open, so the
// connection goes back to the pool clean. A connection it cannot clean is
// closed, and the pool replaces it.
func rollback(conn *pgx.Conn) {
	if conn.IsClosed() || conn.PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		_ = conn.Close(ctx)
	}
}

// isDuplicateEvent reports a primary-key violation of audit_events or of
// audit_event_ids, or of a table commitSQL adds rows to that a concurrent
// commit added first (a chain head, a rollup row): the commit is retried.
func isDuplicateEvent(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" &&
		(strings.HasPrefix(pgErr.TableName, "audit_events") || pgErr.TableName == "audit_event_ids" ||
			pgErr.TableName == "audit_chain_heads" || strings.HasPrefix(pgErr.TableName, "audit_rollup_"))
}

func sameDate(a, b audit.Date) bool { return a.Std().Equal(b.Std()) }

// idRowColumns are the parameters of insertIDsSQL, and commitSQL's ids to
// record: the ids of events that need an audit_event_ids row, every one but
// those the server made (they name their own date, see ids.go).
func idRowColumns(events []*audit.Event) []any {
	ids := make([]pgtype.UUID, 0, len(events))
	dates := make([]time.Time, 0, len(events))
	for _, e := range events {
		if e.ServerID() {
			continue
		}
		ids = append(ids, pgtype.UUID{Bytes: e.ID, Valid: true})
		dates = append(dates, e.Date.Std())
	}
	return []any{ids, dates}
}

// chainHeads is the new last link of each correlation a batch touches.
type chainHeads struct {
	ids    []string
	seqs   []int64
	hashes []string
}

// chain opens the transaction (unless begin is false: the caller has one
// open on conn), locks the chains of the batch's correlations,
// resolves parents, drops events already stored (and repeats within the
// batch), and links the rest: each gets the next sequence number of its
// correlation and a hash over its predecessor's. It returns the events to
// insert and the new chain heads. canon holds the events' canonical forms
// where already known; the others are computed here.
func (s *Store) chain(ctx context.Context, conn *pgx.Conn, events []*audit.Event, canon [][]byte, begin bool) ([]*audit.Event, chainHeads, error) {
	type head struct {
		seq  int64
		hash string
	}
	heads := make(map[string]*head)
	var check []uuid.UUID
	var minDate, maxDate time.Time
	for _, e := range events {
		heads[e.CorrelationID] = nil
		d := e.Date.Std()
		if minDate.IsZero() || d.Before(minDate) {
			minDate = d
		}
		if d.After(maxDate) {
			maxDate = d
		}
		if !e.ServerID() {
			check = append(check, e.ID)
		}
	}
	corrs := slices.Sorted(maps.Keys(heads))
	lookup := pendingParents(events)

	b := &pgx.Batch{}
	if begin {
		b.Queue("BEGIN")
	}
	b.Queue(lockChainsSQL, corrs)
	b.Queue(readHeadsSQL, corrs).Query(func(rows pgx.Rows) error {
		var c string
		var h head
		_, err := pgx.ForEachRow(rows, []any{&c, &h.seq, &h.hash}, func() error {
			hh := h
			heads[c] = &hh
			return nil
		})
		return err
	})
	stored := map[uuid.UUID]audit.Date{}
	if len(check) > 0 {
		b.Queue(storedIDsSQL, storedIDsArgs(check)...).Query(func(rows pgx.Rows) error { return collectIDDates(rows, stored) })
	}
	found := map[uuid.UUID]audit.Date{}
	if len(lookup) > 0 {
		from, to := parentWindowOf(minDate, maxDate)
		b.Queue(recentParentsSQL, recentParentsArgs(lookup, from, to)...).
			Query(func(rows pgx.Rows) error { return collectIDDates(rows, found) })
	}
	// After the reads above, which prune best with custom plans; before the
	// INSERT or COPY, whose foreign-key checks need generic ones.
	b.Queue(genericPlansSQL)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, chainHeads{}, err
	}
	if len(lookup) > 0 {
		if err := resolveFound(ctx, conn, events, lookup, found); err != nil {
			return nil, chainHeads{}, err
		}
	}

	repeats, err := s.repeats(ctx, conn, events, stored)
	if err != nil {
		return nil, chainHeads{}, err
	}

	fresh := make([]*audit.Event, 0, len(events))
	seen := make(map[uuid.UUID][]byte, len(events)) // id → canonical form
	var conflicts []int
	for i, e := range events {
		c := canon[i]
		if c == nil {
			var err error
			if c, err = e.Canonical(); err != nil {
				return nil, chainHeads{}, &audit.InvalidEventError{EventID: e.ID.String(), Err: err}
			}
		}
		// A repeated id is a retry when the content is the same, byte for
		// byte in canonical form (what the hash covers); anything else is a
		// conflict, whatever the date.
		if first, ok := seen[e.ID]; ok {
			if !bytes.Equal(first, c) {
				conflicts = append(conflicts, i)
			}
			continue
		}
		seen[e.ID] = c
		if d, ok := stored[e.ID]; ok && !e.ServerID() {
			if r, same := repeats[e.ID]; !same || !sameDate(d, e.Date) || !bytes.Equal(r, c) {
				conflicts = append(conflicts, i)
			}
			continue
		}
		if len(conflicts) > 0 {
			continue // the batch fails: no need to link the rest
		}
		h := heads[e.CorrelationID]
		if h == nil {
			h = &head{}
			heads[e.CorrelationID] = h
		}
		prev := h.hash
		h.seq++
		h.hash = s.hasher.Link(prev, c)
		e.ChainSeq, e.Hash, e.PreviousHash, e.HashAlgorithm = h.seq, h.hash, &prev, s.hasher.Algorithm()
		fresh = append(fresh, e)
	}
	if len(conflicts) > 0 {
		return nil, chainHeads{}, &audit.ConflictError{Indices: conflicts}
	}
	var out chainHeads
	for _, c := range corrs {
		if h := heads[c]; h != nil && h.seq > 0 {
			out.ids = append(out.ids, c)
			out.seqs = append(out.seqs, h.seq)
			out.hashes = append(out.hashes, h.hash)
		}
	}
	return fresh, out, nil
}

// repeats returns the canonical form of the stored events whose ids events
// repeat on the same date (stored maps every id already taken to its date).
// It costs a round trip only when there are such repeats: retries, spool
// replays of events already committed, or forgeries.
func (s *Store) repeats(ctx context.Context, conn *pgx.Conn, events []*audit.Event, stored map[uuid.UUID]audit.Date) (map[uuid.UUID][]byte, error) {
	var ids []uuid.UUID
	var from, to time.Time
	for _, e := range events {
		d, ok := stored[e.ID]
		if !ok || !sameDate(d, e.Date) || e.ServerID() {
			continue
		}
		ids = append(ids, e.ID)
		if from.IsZero() || d.Std().Before(from) {
			from = d.Std()
		}
		if d.Std().After(to) {
			to = d.Std()
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := conn.Query(ctx, repeatsSQL, pgUUIDs(ids), from, to)
	if err != nil {
		return nil, err
	}
	out := make(map[uuid.UUID][]byte, len(ids))
	evs, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, err
	}
	for i := range evs {
		if !sameDate(stored[evs[i].ID], evs[i].Date) {
			continue // a row of the same id on another date, stored before ids were unique
		}
		c, err := evs[i].Canonical()
		if err != nil {
			return nil, &audit.InvalidEventError{EventID: evs[i].ID.String(), Err: err}
		}
		out[evs[i].ID] = c
	}
	return out, nil
}

// batchColumns turns events into the 29 array parameters of insertEventsSQL.
func batchColumns(events []*audit.Event) ([]any, error) {
	n := len(events)
	var (
		ids          = make([]pgtype.UUID, n)
		dates        = make([]time.Time, n)
		stamps       = make([]time.Time, n)
		versions     = make([]string, n)
		types        = make([]string, n)
		categories   = make([]string, n)
		actions      = make([]string, n)
		outcomes     = make([]string, n)
		correlations = make([]string, n)
		data         = make([][]byte, n)
		actorTypes   = make([]pgtype.Text, n)
		actorIDs     = make([]pgtype.Text, n)
		actorIPs     = make([]pgtype.Text, n)
		resTypes     = make([]pgtype.Text, n)
		resIDs       = make([]pgtype.Text, n)
		parentIDs    = make([]pgtype.UUID, n)
		parentDates  = make([]pgtype.Date, n)
		namespaces   = make([]pgtype.Text, n)
		clusters     = make([]pgtype.Text, n)
		severities   = make([]string, n)
		durations    = make([]pgtype.Int4, n)
		errCodes     = make([]pgtype.Text, n)
		errMessages  = make([]pgtype.Text, n)
		retention    = make([]int32, n)
		sensitive    = make([]bool, n)
		seqs         = make([]int64, n)
		hashes       = make([][]byte, n)
		prevHashes   = make([][]byte, n)
		algorithms   = make([]string, n)
	)
	for i, e := range events {
		ids[i] = pgtype.UUID{Bytes: e.ID, Valid: true}
		dates[i] = e.Date.Std()
		stamps[i] = e.Timestamp.Std()
		versions[i] = e.Version
		types[i] = e.Type
		categories[i] = e.Category
		actions[i] = e.Action
		outcomes[i] = e.Outcome
		correlations[i] = e.CorrelationID
		data[i] = e.Data
		actorTypes[i] = storedActorType(e)
		actorIDs[i] = storedActorID(e)
		actorIPs[i] = optText(e.ActorIP)
		resTypes[i] = storedResourceType(e)
		resIDs[i] = storedResourceID(e)
		if e.ParentID != nil && e.ParentDate != nil {
			parentIDs[i] = pgtype.UUID{Bytes: *e.ParentID, Valid: true}
			parentDates[i] = pgtype.Date{Time: e.ParentDate.Std(), Valid: true}
		}
		namespaces[i] = optText(e.Namespace)
		clusters[i] = optText(e.ClusterID)
		severities[i] = e.Severity
		if e.DurationMS != nil {
			durations[i] = pgtype.Int4{Int32: *e.DurationMS, Valid: true}
		}
		errCodes[i] = optText(e.ErrorCode)
		errMessages[i] = optText(e.ErrorMessage)
		retention[i] = e.RetentionDays
		sensitive[i] = e.IsSensitive
		seqs[i] = e.ChainSeq
		var err error
		if hashes[i], prevHashes[i], err = storedHashes(e); err != nil {
			return nil, err
		}
		algorithms[i] = e.HashAlgorithm
	}
	return []any{ids, dates, stamps, versions, types, categories, actions, outcomes,
		correlations, data, actorTypes, actorIDs, actorIPs, resTypes, resIDs, parentIDs,
		parentDates, namespaces, clusters, severities, durations, errCodes, errMessages,
		retention, sensitive, seqs, hashes, prevHashes, algorithms}, nil
}

// pgUUIDs converts ids for a uuid[] parameter. pgx encodes pgtype.UUID
// directly; a uuid.UUID goes through its driver.Valuer (format, then parse)
// and costs some 50 times more, which at thousands of events per second is
// a measurable share of the server's CPU.
func pgUUIDs(ids []uuid.UUID) []pgtype.UUID {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		out[i] = pgtype.UUID{Bytes: id, Valid: true}
	}
	return out
}

// eventRows feeds events to COPY, one row of insertColumns at a time.
type eventRows struct {
	events []*audit.Event
	i      int
	row    [29]any
}

func (r *eventRows) Next() bool {
	r.i++
	return r.i <= len(r.events)
}

func (r *eventRows) Err() error { return nil }

func (r *eventRows) Values() ([]any, error) {
	e := r.events[r.i-1]
	v := &r.row
	v[0], v[1], v[2] = pgtype.UUID{Bytes: e.ID, Valid: true}, e.Date.Std(), e.Timestamp.Std()
	v[3], v[4], v[5], v[6], v[7] = e.Version, e.Type, e.Category, e.Action, e.Outcome
	v[8], v[9], v[10], v[11] = e.CorrelationID, []byte(e.Data), storedActorType(e), storedActorID(e)
	v[12], v[13], v[14] = optText(e.ActorIP), storedResourceType(e), storedResourceID(e)
	v[15], v[16] = pgtype.UUID{}, pgtype.Date{}
	if e.ParentID != nil && e.ParentDate != nil {
		v[15] = pgtype.UUID{Bytes: *e.ParentID, Valid: true}
		v[16] = pgtype.Date{Time: e.ParentDate.Std(), Valid: true}
	}
	v[17], v[18], v[19] = optText(e.Namespace), optText(e.ClusterID), e.Severity
	v[20] = pgtype.Int4{}
	if e.DurationMS != nil {
		v[20] = pgtype.Int4{Int32: *e.DurationMS, Valid: true}
	}
	v[21], v[22], v[23], v[24] = optText(e.ErrorCode), optText(e.ErrorMessage), e.RetentionDays, e.IsSensitive
	hash, prev, err := storedHashes(e)
	if err != nil {
		return nil, err
	}
	v[25], v[26], v[27], v[28] = e.ChainSeq, hash, prev, e.HashAlgorithm
	return v[:], nil
}

// optText stores an empty optional string as NULL.
func optText(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// isMissingPartition reports the error PostgreSQL gives when a row's
// event_date falls in a month without a partition.
func isMissingPartition(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23514" && pgErr.ConstraintName == "" &&
		pgErr.TableName == "audit_events"
}

func monthsOf(events []*audit.Event) []time.Time {
	var months []time.Time
	seen := map[time.Time]bool{}
	for _, e := range events {
		m := monthStart(e.Date.Std())
		if !seen[m] {
			seen[m] = true
			months = append(months, m)
		}
	}
	return months
}
