package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// insertColumnArrayTypes are the SQL types of the insertColumns arrays, in
// their order: the first parameters of the array statements (commitSQL,
// smallSQL).
var insertColumnArrayTypes = []string{"uuid[]", "date[]", "timestamptz[]", "text[]", "text[]", "text[]",
	"text[]", "text[]", "text[]", "jsonb[]", "text[]", "text[]",
	"text[]", "text[]", "text[]", "uuid[]", "date[]",
	"text[]", "text[]", "text[]", "int4[]", "text[]", "text[]",
	"int4[]", "bool[]", "int8[]", "bytea[]", "bytea[]", "text[]"}

// commitSQL writes everything a commit of linked events writes, in one
// statement: the events (unless they went by COPY), their ids
// (audit_event_ids), the new chain heads with their open cells (cells.go)
// and both rollups. One statement
// instead of five saves PostgreSQL a parse, bind, executor start and end
// and a snapshot per statement, which for a commit of one event was most of
// its work beyond the row itself (bench/results/writepath-2026-12-07.md).
//
// It writes only if its guard holds: every chain head is what the caller
// linked the events to (expected), and no id to check is taken yet. A
// caller that read the heads under the chain locks passes no expectations
// and no ids, and the guard holds by construction; the optimistic large
// commit (insertOverlap) passes the heads it linked to and the client-given
// ids, and falls back to reading them when the guard fails (small commits
// have smallSQL, small.go, which guards in the heads' own UPDATE). The statement
// runs after the chain locks were taken, in a statement of its own, so its
// snapshot sees every head committed before.
//
// withEvents is false for a commit whose rows went by COPY; the ids to
// record then come as the first two parameters, else as the last two. They
// are the client-given ids only (idRowColumns): an id the server made
// names its own date and needs no row (audit.NewServerID, ids.go).
func commitSQL(withEvents bool) string {
	var b strings.Builder
	next := 1
	arg := func(typ string) string {
		s := fmt.Sprintf("$%d::%s", next, typ)
		next++
		return s
	}
	var eventArgs, idArgs []string
	if withEvents {
		for _, t := range insertColumnArrayTypes {
			eventArgs = append(eventArgs, arg(t))
		}
	} else {
		idArgs = []string{arg("uuid[]"), arg("date[]")}
	}
	corrs, expSeq, expHash, newSeq, newHash := arg("text[]"), arg("int8[]"), arg("text[]"), arg("int8[]"), arg("text[]")
	ob, ons, ocl, on := arg("timestamptz[]"), arg("text[]"), arg("text[]"), arg("int8[]")
	check := arg("uuid[]")
	hb, ht, hc, ho, hs, shard, hn := arg("timestamptz[]"), arg("text[]"), arg("text[]"), arg("text[]"), arg("text[]"), arg("int2"), arg("int8[]")
	cb, ci, cn, cc, cnt := arg("timestamptz[]"), arg("text[]"), arg("text[]"), arg("text[]"), arg("int8[]")
	if withEvents {
		idArgs = []string{arg("uuid[]"), arg("date[]")}
	}
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("WITH ok AS (")
	p("	SELECT NOT EXISTS (")
	p("		SELECT 1 FROM unnest(%s, %s, %s) AS x(c, s, h)", corrs, expSeq, expHash)
	p("		LEFT JOIN audit_chain_heads a ON a.correlation_id = x.c")
	p("		WHERE x.s IS NOT NULL AND (coalesce(a.last_seq, 0) <> x.s OR coalesce(a.last_hash, '') <> x.h))")
	p("	AND NOT EXISTS (SELECT 1 FROM audit_event_ids WHERE event_id = ANY(%s)) AS ok", check)
	p("), ids AS (")
	p("	INSERT INTO audit_event_ids (event_id, event_date)")
	p("	SELECT * FROM unnest(%s, %s) WHERE (SELECT ok FROM ok)", idArgs[0], idArgs[1])
	if withEvents {
		p("), events AS (")
		p("	INSERT INTO audit_events (%s)", strings.Join(insertColumns, ", "))
		p("	SELECT * FROM unnest(%s) WHERE (SELECT ok FROM ok)", strings.Join(eventArgs, ", "))
	}
	// Rows that exist are UPDATEd, the others INSERTed: an upsert (ON
	// CONFLICT DO UPDATE) locks the row before it updates it, and writes
	// a WAL record for each, where UPDATE writes one. No concurrent commit
	// inserts the same key meanwhile: heads and correlation counts are
	// under the chain locks, hourly counts under this commit's shard; when
	// one does (another replica drew the same shard, retention), the
	// primary key refuses the INSERT and the commit is retried
	// (isDuplicateEvent). A head whose open cell changed since the
	// statement's snapshot (cellUnchanged) is not updated, so its INSERT
	// fails the same way.
	p("), heads_new(c, s, h, b, ns, cl, n) AS (")
	p("	SELECT * FROM unnest(%s, %s, %s, %s, %s, %s, %s)", corrs, newSeq, newHash, ob, ons, ocl, on)
	p("), heads AS (")
	p("	UPDATE audit_chain_heads a SET last_seq = n.s, last_hash = n.h, %s", cellSet("n.b", "n.ns", "n.cl", "n.n"))
	// o is the head as the statement's snapshot has it: its cell is the
	// one to close (cells.go). A join, not a CTE of the heads: the generic
	// plan cannot size a CTE and joined it to the commit's chains in a
	// nested loop, quadratic in the chains (160,000 comparisons for 400).
	p("	FROM heads_new n JOIN audit_chain_heads o ON o.correlation_id = n.c")
	p("	WHERE a.correlation_id = n.c AND %s AND (SELECT ok FROM ok)", cellUnchanged)
	p("	RETURNING a.correlation_id, %s", cellReturning("n.b", "n.ns", "n.cl", "n.n"))
	p("), heads_added AS (")
	p("	INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash, cell_bucket, cell_namespace, cell_cluster, cell_events)")
	p("	SELECT * FROM heads_new n WHERE (SELECT ok FROM ok) AND NOT EXISTS (SELECT 1 FROM heads WHERE correlation_id = n.c)")
	p("), hourly_new(b, t, c, o, s, n) AS (")
	p("	SELECT * FROM unnest(%s, %s, %s, %s, %s, %s)", hb, ht, hc, ho, hs, hn)
	p("), hourly AS (")
	p("	UPDATE audit_rollup_hourly r SET events = r.events + n.n FROM hourly_new n")
	p("	WHERE (r.bucket, r.event_type, r.event_category, r.event_outcome, r.severity, r.shard) = (n.b, n.t, n.c, n.o, n.s, %s)", shard)
	p("	AND (SELECT ok FROM ok)")
	p("	RETURNING r.bucket, r.event_type, r.event_category, r.event_outcome, r.severity")
	p("), hourly_added AS (")
	p("	INSERT INTO audit_rollup_hourly (bucket, event_type, event_category, event_outcome, severity, shard, events)")
	p("	SELECT n.b, n.t, n.c, n.o, n.s, %s, n.n FROM hourly_new n WHERE (SELECT ok FROM ok) AND NOT EXISTS (", shard)
	p("		SELECT 1 FROM hourly h WHERE (h.bucket, h.event_type, h.event_category, h.event_outcome, h.severity) = (n.b, n.t, n.c, n.o, n.s))")
	// The cells closed and the counts no cell keeps, one row per key.
	p("), correlations_new(b, c, ns, cl, n) AS (")
	p("%s", correlationsNewSQL("heads", cb, ci, cn, cc, cnt))
	p("), correlations AS (")
	p("	UPDATE audit_rollup_correlations r SET events = r.events + n.n FROM correlations_new n")
	p("	WHERE (r.bucket, r.correlation_id, r.namespace, r.cluster_id) = (n.b, n.c, n.ns, n.cl) AND (SELECT ok FROM ok)")
	p("	RETURNING r.bucket, r.correlation_id, r.namespace, r.cluster_id")
	p("), correlations_added AS (")
	p("	INSERT INTO audit_rollup_correlations (bucket, correlation_id, namespace, cluster_id, events)")
	p("	SELECT * FROM correlations_new n WHERE (SELECT ok FROM ok) AND NOT EXISTS (")
	p("		SELECT 1 FROM correlations r WHERE (r.bucket, r.correlation_id, r.namespace, r.cluster_id) = (n.b, n.c, n.ns, n.cl))")
	p(")")
	if withEvents {
		b.WriteString("SELECT ok FROM ok")
	} else {
		// After a COPY the rows are already in the transaction, so a
		// guard that does not hold must end it: the statement fails
		// (guardFailed), which lets its caller send COMMIT in the same
		// pipeline instead of a round trip of its own after reading ok.
		// The input of the cast is not a constant, so that it is
		// evaluated only when the guard failed, never at planning.
		fmt.Fprintf(&b, "SELECT (CASE WHEN ok THEN 'true' ELSE '%s' END)::bool FROM ok", guardFailedMarker)
	}
	return b.String()
}

// guardFailedMarker is the text of the error commitAfterCopySQL raises
// when its guard does not hold: invalid_text_representation (22P02) of a
// boolean whose input is this text.
const guardFailedMarker = "datastorage: chain head moved or id taken"

// guardFailed reports the error commitAfterCopySQL raises when its guard
// does not hold (a head moved, a client-given id taken): the transaction is
// aborted and nothing of it stays.
func guardFailed(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "22P02" && strings.Contains(pgErr.Message, guardFailedMarker)
}

// Statements of a commit: with the events' rows (up to copyMinRows events),
// and after their COPY.
var (
	commitEventsSQL    = commitSQL(true)
	commitAfterCopySQL = commitSQL(false)
)

// commitArgs are the parameters of commitSQL after the events' own: the
// heads (expected may be nil: no expectation) with the cells they leave
// open, the ids to check and the rollups. A head the commit adds no event
// to (the reading path passes the heads of a batch's repeats too) is left
// out: it does not move.
func commitArgs(heads chainHeads, expected *chainHeads, check []uuid.UUID, d rollupDelta, shard int16) []any {
	moving := chainHeads{ids: make([]string, 0, len(heads.ids)), seqs: make([]int64, 0, len(heads.ids)),
		hashes: make([]string, 0, len(heads.ids))}
	// Without expectations the arrays are empty: unnest pads them with
	// NULLs, which the guard skips.
	var expSeq []pgtype.Int8
	var expHash []string
	for i, c := range heads.ids {
		if _, ok := d.latest[c]; !ok {
			continue
		}
		moving.ids, moving.seqs, moving.hashes = append(moving.ids, c), append(moving.seqs, heads.seqs[i]), append(moving.hashes, heads.hashes[i])
		if expected != nil {
			expSeq = append(expSeq, pgtype.Int8{Int64: expected.seqs[i], Valid: true})
			expHash = append(expHash, expected.hashes[i])
		}
	}
	hourly := d.hourlyColumns()
	open, rest := d.cells(moving.ids)
	return slices.Concat([]any{moving.ids, expSeq, expHash, moving.seqs, moving.hashes}, open,
		[]any{pgUUIDs(check), hourly[0], hourly[1], hourly[2], hourly[3], hourly[4], shard, hourly[5]}, rest)
}

// headCache remembers the chain head each correlation had after this
// process's last commit to it, so that the next commit can link its events
// without reading the heads first (insertFast). It is a hint, never trusted:
// commitSQL checks it against the table under the chain lock, and a stale
// or missing entry costs a round trip, not a broken chain. Another replica,
// the catalog's writes or a rolled-back commit make entries stale.
type headCache struct {
	// reserving orders the reservations of optimistic commits
	// (overlap.go); it is taken before mu, never after.
	reserving sync.Mutex
	mu        sync.Mutex
	heads     map[string]cachedHead
	// inflight holds the ids of the optimistic commits in flight
	// (overlap.go).
	inflight map[uuid.UUID]*flight
	// pessimistic counts the large commits that take the reading path
	// before optimistic linking is tried again (overlapBackoff).
	pessimistic int
}

type cachedHead struct {
	seq  int64
	hash string
	// owner is the optimistic commit in flight that will leave this head
	// (overlap.go); nil once a commit left it.
	owner *flight
	// cell is the open cell the head holds, when a lone commit left it
	// (putLone); the zero value, not known, after any other commit.
	cell headCell
}

// maxCachedHeads bounds the cache: some 100 bytes an entry, 6 MB at most.
// When full it starts over; remediations are short, so the correlations
// worth remembering come back within seconds.
const maxCachedHeads = 1 << 16

func newHeadCache() *headCache { return &headCache{heads: make(map[string]cachedHead)} }

// get returns the remembered head of each correlation ({0, ""} for one
// never seen: a new correlation, most likely).
func (c *headCache) get(corrs []string) chainHeads {
	out := chainHeads{ids: corrs, seqs: make([]int64, len(corrs)), hashes: make([]string, len(corrs))}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, id := range corrs {
		h := c.heads[id]
		out.seqs[i], out.hashes[i] = h.seq, h.hash
	}
	return out
}

// put records heads committed.
func (c *headCache) put(h chainHeads) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.heads)+len(h.ids) > maxCachedHeads {
		clear(c.heads)
	}
	for i, id := range h.ids {
		c.heads[id] = cachedHead{seq: h.seqs[i], hash: h.hashes[i]}
	}
}

// putLone records the head a lone commit left, with the open cell it left
// (the zero headCell when not known).
func (c *headCache) putLone(h chainHeads, cell headCell) {
	c.put(h)
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.heads[h.ids[0]]; ok {
		ch.cell = cell
		c.heads[h.ids[0]] = ch
	}
}

// inCell reports whether the head remembered for corr is a committed one
// (no optimistic commit in flight will move it) whose open cell is cell.
func (c *headCache) inCell(corr string, cell headCell) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.heads[corr]
	return ok && ch.owner == nil && !ch.cell.bucket.IsZero() && ch.cell.bucket.Equal(cell.bucket) &&
		ch.cell.ns == cell.ns && ch.cell.cluster == cell.cluster
}

// forget drops correlations whose head is not known any more.
func (c *headCache) forget(corrs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range corrs {
		delete(c.heads, id)
	}
}
