package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"kubernaut.ai/datastorage/internal/audit"
)

// A large commit (copyMinRows events or more) used to take the chain locks
// first and hold them through its COPY and its COMMIT, so that two commits
// sharing any correlation ran one after the other: with batches that name
// hundreds of correlations, every two commits share some, and the write
// path used one CPU of two (bench/results/writepath-2026-12-07b.md).
//
// insertOverlap links such a commit optimistically instead: to the heads the
// process remembers (headCache), extended with the heads that the commits
// still in flight in this process will leave (their predictions). It COPYs
// the rows with no chain lock held, so that the COPYs of concurrent commits
// run side by side, and only then, in the last statements of the
// transaction, takes the chain locks and checks, in the statement that
// writes the heads (commitSQL's guard), that every head is still the one it
// linked to. Before that check it waits, in Go, for the commits of this
// process it linked after, so that it never takes the locks ahead of its
// predecessor (it would find the old heads and fail). Reservations are made
// one at a time (headCache.reserving), all chains of a commit at once, so
// the dependencies follow the order of reservation: no cycle, no deadlock.
//
// The chain locks stay: the reading path and the one-round-trip small commit
// (insertFast) read or check the heads after taking them, so a large commit
// must hold them for its own check too, or it could move a head one of
// those has just read. They cost < 1 ms per commit once nobody waits on them.
//
// Whenever the optimistic commit cannot hold (a head another replica or the
// reading path moved, a predecessor that failed, an id taken or stored
// concurrently), it rolls back and the caller takes the reading path
// (insertTx), which reads the heads under the locks and sorts retries from
// conflicts: the guarantees stay those of that path.

// peekHeadsSQL is readHeadsSQL for a commit that links optimistically: the
// same rows, read before the chain locks; its own text tells the two apart
// in pg_stat_statements and in tests.
const peekHeadsSQL = `SELECT correlation_id, last_seq, last_hash FROM audit_chain_heads WHERE correlation_id = ANY($1::text[])`

// flight is one optimistic commit in progress, from the reservation of its
// chains in the head cache to the end of its transaction.
type flight struct {
	done chan struct{} // closed once the commit is over and ok is set
	ok   bool          // it committed; false: it did not and will not (rolled back, or failed and being rolled back)
}

// errPredecessorFailed is returned by wait when a commit this one
// linked after did not commit: the heads this one linked to will never be
// the table's.
var errPredecessorFailed = errors.New("store: a preceding commit failed")

// reservation is what reserve hands an optimistic commit: its flight, the
// heads it expects in the table and the ones it leaves, and the commits it
// must wait for.
type reservation struct {
	f        *flight
	expected chainHeads
	heads    chainHeads
	after    []*flight
	ids      []uuid.UUID
}

// reserve links events (canon: their canonical forms; corrs: their
// correlations, sorted, once each) to the heads this process expects the
// table to hold once its commits in flight are done, and records the heads
// they leave as the new expectation, owned by the new flight. read holds
// heads just read from the table for chains the cache did not know; the
// newer of a read head and a remembered one wins (a chain only grows), and
// a head a flight will leave wins over both. It returns busy (and reserves
// nothing) when an id of events belongs to a commit in flight: two
// uncommitted transactions holding the same id would wait for each other in
// PostgreSQL while one waits for the other in Go, which no deadlock detector
// sees.
func (c *headCache) reserve(h audit.Hasher, corrs []string, events []*audit.Event, canon [][]byte, read map[string]cachedHead) (r reservation, busy []*flight) {
	ids := clientIDs(events)
	// Reservations take their turn under reserving, and hash the batch
	// outside mu: a small commit (insertFast) reads and writes the cache
	// under mu and must not wait for 500 SHA-256 links. A small or reading
	// commit that updates a chain between the two halves is overwritten
	// by this reservation's prediction; the guard then fails for one of
	// them, which takes the reading path: slower, never wrong.
	c.reserving.Lock()
	defer c.reserving.Unlock()

	c.mu.Lock()
	for _, e := range events {
		if f, ok := c.inflight[e.ID]; ok && !slices.Contains(busy, f) {
			busy = append(busy, f)
		}
	}
	if len(busy) > 0 {
		c.mu.Unlock()
		return reservation{}, busy
	}
	f := &flight{done: make(chan struct{})}
	r = reservation{
		f:        f,
		expected: chainHeads{ids: corrs, seqs: make([]int64, len(corrs)), hashes: make([]string, len(corrs))},
		ids:      ids,
	}
	for i, id := range corrs {
		ch, known := c.heads[id]
		if rd, ok := read[id]; ok && ch.owner == nil && (!known || rd.seq > ch.seq) {
			ch = rd
		}
		r.expected.seqs[i], r.expected.hashes[i] = ch.seq, ch.hash
		if ch.owner != nil && !slices.Contains(r.after, ch.owner) {
			r.after = append(r.after, ch.owner)
		}
	}
	c.mu.Unlock()

	r.heads = linkEvents(h, r.expected, events, canon)

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.heads)+len(corrs) > maxCachedHeads {
		// Starting over forgets the predictions too: a commit reserved
		// after this one then expects no head, fails its check and takes
		// the reading path. Rare, and never wrong.
		clear(c.heads)
	}
	for i, id := range corrs {
		c.heads[id] = cachedHead{seq: r.heads.seqs[i], hash: r.heads.hashes[i], owner: f}
	}
	if c.inflight == nil {
		c.inflight = make(map[uuid.UUID]*flight)
	}
	for _, e := range events {
		c.inflight[e.ID] = f
	}
	return r, nil
}

// settle ends r's flight: its predicted heads become known heads when it
// committed, and are forgotten when it did not (unless a later commit of
// this process already wrote over them). Then its dependents may go on.
func (c *headCache) settle(r reservation, events []*audit.Event, committed bool) {
	c.mu.Lock()
	for _, id := range r.heads.ids {
		ch, ok := c.heads[id]
		if !ok || ch.owner != r.f {
			continue
		}
		if committed {
			ch.owner = nil
			c.heads[id] = ch
		} else {
			delete(c.heads, id)
		}
	}
	for _, e := range events {
		if c.inflight[e.ID] == r.f {
			delete(c.inflight, e.ID)
		}
	}
	c.mu.Unlock()
	r.f.ok = committed
	close(r.f.done)
}

// unknown returns the chains of corrs the cache holds no head for: new
// correlations, or ones this process has not written since it started (or
// since the cache started over).
func (c *headCache) unknown(corrs []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, id := range corrs {
		if _, ok := c.heads[id]; !ok {
			out = append(out, id)
		}
	}
	return out
}

// overlapBackoff is how many large commits take the reading path directly
// after an optimistic commit found a head moved. Heads move under a replica
// when another one writes the same chains at the same time; each such
// failure costs a COPY rolled back, so while it keeps happening the commits
// queue on the chain locks instead, as they did before optimistic linking,
// and try again now and then.
const overlapBackoff = 8

// optimistic reports whether the next large commit may link
// optimistically, counting down the backoff.
func (c *headCache) optimistic() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pessimistic > 0 {
		c.pessimistic--
		return false
	}
	return true
}

// headMoved starts the backoff.
func (c *headCache) headMoved() {
	c.mu.Lock()
	c.pessimistic = overlapBackoff
	c.mu.Unlock()
}

// corrsOf returns the correlations of events, sorted, once each.
func corrsOf(events []*audit.Event) []string {
	corrs := make([]string, 0, 64)
	for _, e := range events {
		corrs = append(corrs, e.CorrelationID)
	}
	slices.Sort(corrs)
	return slices.Compact(corrs)
}

// wait returns once every flight of fs has ended: errPredecessorFailed when
// one did not commit, ctx's error when ctx ends first.
func wait(ctx context.Context, fs []*flight) error {
	for _, f := range fs {
		select {
		case <-f.done:
			if !f.ok {
				return errPredecessorFailed
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// insertOverlap commits a large batch optimistically (see above), in three
// round trips: BEGIN (with the heads the cache does not know); the COPY; the
// chain locks, commitAfterCopySQL guarded by the heads linked to, and
// COMMIT. A guard that does not hold fails the statement, so that the
// COMMIT queued behind it never runs, and ROLLBACK follows. done is
// false when it could not commit the batch: the transaction is then rolled
// back and the caller takes the reading path on the same connection.
func (s *Store) insertOverlap(ctx context.Context, conn *pgx.Conn, events []*audit.Event, canon [][]byte) (_ int64, done bool, _ error) {
	if len(events) < copyMinRows || !linkable(events, canon) {
		return 0, false, nil
	}
	if !s.heads.optimistic() {
		return 0, false, nil
	}
	corrs := corrsOf(events)
	// The heads of chains the cache does not know are read in BEGIN's round
	// trip, without a lock: a replica that restarted, or that writes a
	// chain for the first time since, links to them instead of failing its
	// check and throwing its COPY away. A head moved meanwhile is caught by
	// the check. The foreign-key checks the COPY fires need generic plans
	// (genericPlansSQL), set after the read, which prunes best without.
	read := map[string]cachedHead{}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	if unknown := s.heads.unknown(corrs); len(unknown) > 0 {
		b.Queue(peekHeadsSQL, unknown).Query(func(rows pgx.Rows) error {
			var c string
			var h cachedHead
			_, err := pgx.ForEachRow(rows, []any{&c, &h.seq, &h.hash}, func() error {
				read[c] = h
				return nil
			})
			return err
		})
	}
	b.Queue(genericPlansSQL)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return 0, false, err
	}
	r, busy := s.heads.reserve(s.hasher, corrs, events, canon, read)
	if busy != nil {
		// The same ids are being committed right now (a client retrying a
		// request still in flight): once that commit ended, the reading
		// path finds them stored and answers the retry.
		if err := abort(ctx, conn); err != nil {
			return 0, false, err
		}
		if err := wait(ctx, busy); err != nil && !errors.Is(err, errPredecessorFailed) {
			return 0, false, err
		}
		return 0, false, nil
	}
	committed := false
	defer func() { s.heads.settle(r, events, committed) }()

	n, err := conn.CopyFrom(ctx, pgx.Identifier{"audit_events"}, insertColumns, &eventRows{events: events})
	switch {
	case isDuplicateEvent(err):
		// An id already stored on the same date: a retry or a conflict,
		// which the reading path tells apart.
		return 0, false, abort(ctx, conn)
	case err != nil:
		return 0, false, err
	}
	switch err := wait(ctx, r.after); {
	case errors.Is(err, errPredecessorFailed):
		return 0, false, abort(ctx, conn)
	case err != nil:
		return 0, false, err
	}

	shard, release := s.shards.acquire()
	defer release()
	var commit pgconn.CommandTag
	b = &pgx.Batch{}
	b.Queue(lockChainsSQL, r.heads.ids)
	b.Queue(commitAfterCopySQL, append(idRowColumns(events), commitArgs(r.heads, &r.expected, r.ids, newRollupDelta(events), shard)...)...)
	b.Queue("COMMIT").Exec(func(t pgconn.CommandTag) error {
		commit = t
		return nil
	})
	err = conn.SendBatch(ctx, b).Close()
	switch {
	case isDuplicateEvent(err):
		// An id or a new rollup row taken by a concurrent transaction.
		return 0, false, abort(ctx, conn)
	case guardFailed(err):
		// A head moved (another replica, the reading path, the catalog)
		// or a client-given id is taken: the statement failed, so that
		// nothing of ours stays.
		s.heads.headMoved()
		return 0, false, abort(ctx, conn)
	case err != nil:
		return 0, false, err
	case commit.String() != "COMMIT":
		return 0, false, fmt.Errorf("store: transaction rolled back at commit (%s)", commit)
	}
	committed = true
	s.recent.add(events, time.Now())
	return n, true, nil
}

// abort rolls back an optimistic commit that cannot hold, so that the
// connection can take the reading path.
func abort(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		return fmt.Errorf("store: roll back an optimistic commit: %w", err)
	}
	return nil
}
