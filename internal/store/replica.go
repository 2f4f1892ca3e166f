package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/readroute"
)

// The reads that a standby may serve (lists, counts, get by id, timelines,
// aggregations, exports, the remediation read models) take their pool from
// reads(ctx); everything else (writes, chain verification, legal holds, the
// catalog, partition and retention work, parent lookups) uses s.pool, the
// primary, so it sees its own writes. readroute decides; this file only
// applies the decision.

// replicaLagSQL samples the standby. Replay lag is the age of the last
// replayed commit, but on an idle primary that age grows while the standby
// is perfectly current, so a standby that is connected to its primary
// (a WAL receiver runs) and has replayed everything it received counts as 0
// behind. A server that is not in recovery (a promoted standby, or a primary
// named as replica) is never behind itself. A standby that never replayed a
// commit and is not current has an unknown lag: -1, read as "too far".
const replicaLagSQL = `
SELECT CASE
         WHEN NOT pg_is_in_recovery() THEN 0
         WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver)
              AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
         ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, -1)
       END`

// standbyServerSQL names the server a connection is on, as the server sees
// itself (its address and port: behind a Kubernetes service or a libpq
// multi-host replicaUrl, each standby answers with its own), and samples
// its lag in the same round trip. Over a Unix socket the address is NULL:
// the socket's path names the server instead (see sampleServer).
const standbyServerSQL = `SELECT coalesce(host(inet_server_addr()) || ':' || inet_server_port(), ''), (` + replicaLagSQL + `)`

// errStandbyBehind is what acquiring a standby connection returns when the
// server it is on is past database.maxReplicaLag or has no fresh sample:
// the read goes to the primary instead (reader.reroute). Returned by the
// replica pool's PrepareConn; never leaves the store.
var errStandbyBehind = errors.New("store: the standby of this connection is behind or not sampled")

// probeCtxKey marks the sampler's own acquires, which must reach every
// server, behind or not.
type probeCtxKey struct{}

// standbyConns knows which server each replica-pool connection is on, and
// keeps reads off the servers that are behind: several standbys may sit
// behind one replicaUrl, each with its own lag, and the pool hands out
// connections to any of them.
type standbyConns struct {
	router  atomic.Pointer[readroute.Router] // set once the router exists
	servers sync.Map                         // *pgx.Conn → server key
}

// install hooks the pool: each new connection learns its server (and
// samples it), and a connection is handed to a read only if its server is
// current.
func (sc *standbyConns) install(cfg *pgxpool.Config) {
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		key, lag, err := sampleServer(ctx, c)
		if err != nil {
			return fmt.Errorf("store: identify standby: %w", err)
		}
		sc.servers.Store(c, key)
		if r := sc.router.Load(); r != nil {
			r.Observe(key, lag)
		}
		return nil
	}
	cfg.BeforeClose = func(c *pgx.Conn) { sc.servers.Delete(c) }
	cfg.PrepareConn = sc.prepare
}

// prepare is the replica pool's PrepareConn. A connection whose server has
// no fresh sample is sampled on the spot (one round trip, at most once per
// three sampling intervals per server while the background sampler keeps
// up). A connection on a server that is behind is destroyed and the read
// fails with errStandbyBehind, which sends it to the primary: the pool
// keeps the connections to current standbys only.
func (sc *standbyConns) prepare(ctx context.Context, c *pgx.Conn) (bool, error) {
	r := sc.router.Load()
	if r == nil || ctx.Value(probeCtxKey{}) != nil {
		return true, nil
	}
	v, ok := sc.servers.Load(c)
	if !ok {
		return false, nil // not identified: drop it, the next one will be
	}
	key := v.(string)
	usable, known := r.Usable(key)
	if !known {
		_, lag, err := sampleServer(ctx, c)
		if err != nil {
			return false, nil // broken: the pool tries another connection
		}
		r.Observe(key, lag)
		usable, _ = r.Usable(key)
	}
	if !usable {
		r.Refused(key)
		return false, errStandbyBehind
	}
	return true, nil
}

// sampleServer returns the server c is on and its replay lag
// (readroute.Unknown when it cannot be told).
func sampleServer(ctx context.Context, c *pgx.Conn) (string, time.Duration, error) {
	var (
		key  string
		secs float64
	)
	if err := c.QueryRow(ctx, standbyServerSQL).Scan(&key, &secs); err != nil {
		return "", 0, err
	}
	if key == "" {
		key = c.PgConn().Conn().RemoteAddr().String()
	}
	if secs < 0 {
		return key, readroute.Unknown, nil
	}
	return key, time.Duration(secs * float64(time.Second)), nil
}

// probe is the router's Probe for the replica pool: every server that has
// an idle connection is sampled on one of them. When none has (a busy pool,
// or all dropped after a restart), one connection is made or taken, so a
// standby is down only if a fresh connection fails too.
func (sc *standbyConns) probe(replica *pgxpool.Pool) readroute.Probe {
	return func(ctx context.Context) (map[string]time.Duration, error) {
		ctx = context.WithValue(ctx, probeCtxKey{}, true)
		out := map[string]time.Duration{}
		// One idle connection per server is sampled; the others go back at
		// once, so that reads wait for none of them.
		for _, c := range replica.AcquireAllIdle(ctx) {
			key, _ := sc.servers.Load(c.Conn())
			if k, ok := key.(string); ok {
				if _, done := out[k]; !done {
					if _, lag, err := sampleServer(ctx, c.Conn()); err == nil {
						out[k] = lag
					}
				}
			}
			c.Release() // a connection whose query failed is closed, and dropped
		}
		if len(out) > 0 {
			return out, nil
		}
		c, err := replica.Acquire(ctx)
		if err != nil {
			return nil, fmt.Errorf("store: sample replica lag: %w", err)
		}
		defer c.Release()
		key, lag, err := sampleServer(ctx, c.Conn())
		if err != nil {
			return nil, fmt.Errorf("store: sample replica lag: %w", err)
		}
		return map[string]time.Duration{key: lag}, nil
	}
}

// ReadRouter returns the router that sends reads to the standby or the
// primary; its Run samples the standby (the service runs it in the
// background). Without database.replicaUrl it routes everything to the
// primary and Run returns at once.
func (s *Store) ReadRouter() *readroute.Router { return s.router }

// reader is the pool one read uses, chosen once per store call.
type reader struct {
	s      *Store
	target readroute.Target
}

// reads routes one read.
func (s *Store) reads(ctx context.Context) reader {
	t, _ := s.router.Route(ctx)
	return reader{s: s, target: t}
}

func (r reader) pool() *pgxpool.Pool {
	if r.target == readroute.Replica && r.s.replica != nil {
		return r.s.replica
	}
	return r.s.pool
}

// reroute reports whether a read that failed on the standby with err, before
// any row reached the caller, may be sent to the primary instead: the
// standby could not be reached, lost the connection, or cancelled the query
// (a recovery conflict) — an outage, not an answer. A read has no effect, so
// running it again elsewhere is safe. The standby counts as down from then on
// until its next good sample.
func (r reader) reroute(ctx context.Context, err error) bool {
	if r.target != readroute.Replica || err == nil || ctx.Err() != nil {
		return false
	}
	if errors.Is(err, errStandbyBehind) {
		return true // counted by the router's Refused
	}
	if Classify(err) != failure.Unavailable {
		return false
	}
	r.s.router.Rerouted(err)
	return true
}

// done is deferred by each routed read: a standby that failed mid-way (the
// read answered 503) counts as down until its next good sample, so the next
// reads go to the primary instead of failing the same way.
func (r reader) done(err *error) {
	if r.target != readroute.Replica || *err == nil {
		return
	}
	if errors.Is(*err, context.Canceled) || errors.Is(*err, context.DeadlineExceeded) {
		return
	}
	if Classify(*err) == failure.Unavailable {
		r.s.router.MarkDown(*err)
	}
}

// Query runs a query on the routed pool; a standby that fails before the
// first row is replaced by the primary (see routedRows).
func (r reader) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := r.pool().Query(ctx, sql, args...)
	if r.reroute(ctx, err) {
		return r.s.pool.Query(ctx, sql, args...)
	}
	if err != nil || r.target != readroute.Replica {
		return rows, err
	}
	return &routedRows{Rows: rows, r: r, ctx: ctx, sql: sql, args: args}, nil
}

// routedRows are a standby's rows. pgx reports most failures through the
// rows, not Query: if the first Next fails for an outage, the query runs on
// the primary and its rows take over, the caller none the wiser.
type routedRows struct {
	pgx.Rows
	r       reader
	ctx     context.Context
	sql     string
	args    []any
	settled bool // a row was read, or the query was rerouted: no more retries
}

func (rr *routedRows) Next() bool {
	if rr.Rows.Next() {
		rr.settled = true
		return true
	}
	if rr.settled {
		return false
	}
	rr.settled = true
	rr.Rows.Close()
	if !rr.r.reroute(rr.ctx, rr.Rows.Err()) {
		return false
	}
	rows, err := rr.r.s.pool.Query(rr.ctx, rr.sql, rr.args...)
	rr.Rows = rows
	if err != nil {
		return false
	}
	return rr.Rows.Next()
}

// QueryRow is Query for one row.
func (r reader) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return &routedRow{r: r, ctx: ctx, sql: sql, args: args}
}

// routedRow defers the query to Scan, where a standby that fails is
// replaced by the primary.
type routedRow struct {
	r    reader
	ctx  context.Context
	sql  string
	args []any
}

func (rr *routedRow) Scan(dest ...any) error {
	err := rr.r.pool().QueryRow(rr.ctx, rr.sql, rr.args...).Scan(dest...)
	if rr.r.reroute(rr.ctx, err) {
		return rr.r.s.pool.QueryRow(rr.ctx, rr.sql, rr.args...).Scan(dest...)
	}
	return err
}

// SendBatch sends a batch of queries. A batch is not re-sent once sent: its
// queued callbacks may have run. A standby connection that cannot be had
// (down, or behind) sends it to the primary before anything ran.
func (r reader) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if r.target != readroute.Replica || r.s.replica == nil {
		return r.s.pool.SendBatch(ctx, b)
	}
	c, err := r.s.replica.Acquire(ctx)
	if r.reroute(ctx, err) {
		return r.s.pool.SendBatch(ctx, b)
	}
	if err != nil {
		return failedBatch{err}
	}
	return connBatch{BatchResults: c.SendBatch(ctx, b), c: c}
}

// connBatch releases its connection when the batch is closed.
type connBatch struct {
	pgx.BatchResults
	c *pgxpool.Conn
}

func (b connBatch) Close() error {
	err := b.BatchResults.Close()
	b.c.Release()
	return err
}

// failedBatch is a batch that could not be sent: every result is err.
type failedBatch struct{ err error }

func (b failedBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b failedBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b failedBatch) QueryRow() pgx.Row                { return failedRow(b) }
func (b failedBatch) Close() error                     { return b.err }
func (b failedBatch) Tx() pgx.Tx                       { return nil }

// failedRow is the row of a failed batch.
type failedRow struct{ err error }

func (r failedRow) Scan(...any) error { return r.err }

// BeginTx begins a transaction on the routed pool, on the primary if the
// standby cannot be reached.
func (r reader) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	tx, err := r.pool().BeginTx(ctx, opts)
	if r.reroute(ctx, err) {
		return r.s.pool.BeginTx(ctx, opts)
	}
	return tx, err
}
