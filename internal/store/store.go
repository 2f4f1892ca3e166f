package store

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/readroute"
)

// Store is the PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	replica *pgxpool.Pool     // the standby for routed reads; nil without one (replica.go)
	router  *readroute.Router // where each routed read goes
	fenced  *fencedConns      // primary connections found read-only (fence.go)
	hasher  audit.Hasher
	parents parentLookups // coalesces concurrent parent lookups (parents.go)
	shards  *shardSet     // rollup shards of concurrent inserts (rollup.go)
	recent  *recentEvents // dates of events committed lately, for parents (recent.go)
	heads   *headCache    // chain heads this process committed last (commit.go)
	hourly  *hourlyRows   // hourly rollup rows this process's lone commits met (lone.go)
	// arrayLone sends a lone event through commitEventsSQL instead of
	// loneSQL, as before lone.go: set only by the measurements and tests
	// that compare the two (lone_measure_test.go).
	arrayLone bool
	// smallMode picks how a small commit is sent (small.go); only the
	// measurements and tests that compare the ways change it.
	smallMode smallMode
}

// Options tune the connection pool.
type Options struct {
	// MaxConns bounds the pool; 0 keeps pgx's default.
	MaxConns int32
	// ConnectTimeout bounds each new connection; 0 means 5 s.
	ConnectTimeout time.Duration
	// Hasher links the hash chains; the zero value is plain SHA-256.
	Hasher audit.Hasher
	// Tracer, if set, sees every statement the store runs (the read
	// benchmark uses it to EXPLAIN exactly what the aggregations send).
	Tracer pgx.QueryTracer
	// ReplicaURL, if set, names a streaming standby that serves the reads
	// readroute lets it serve (see replica.go), or a service in front of
	// several, each judged by its own lag.
	ReplicaURL string
	// MaxReplicaLag is the largest sampled replay lag at which the standby
	// still serves reads.
	MaxReplicaLag time.Duration
	// Registerer receives the read routing metrics; nil leaves them
	// unregistered.
	Registerer prometheus.Registerer
	// Log receives the standby's state changes; nil discards them.
	Log *slog.Logger
}

// Open creates the pool. It does not wait for PostgreSQL: the service must start
// (and answer with its spool) while the database is down, so the first
// connection is made on first use.
func Open(ctx context.Context, connString string, opts Options) (*Store, error) {
	fenced := newFencedConns()
	pool, err := newPool(ctx, connString, opts, fenced, nil)
	if err != nil {
		return nil, err
	}
	s := &Store{pool: pool, fenced: fenced, hasher: opts.Hasher, shards: newShardSet(), recent: newRecentEvents(), heads: newHeadCache(), hourly: &hourlyRows{}}
	ro := readroute.Options{MaxLag: opts.MaxReplicaLag, Registerer: opts.Registerer, Log: opts.Log}
	standbys := &standbyConns{}
	if opts.ReplicaURL != "" {
		if s.replica, err = newPool(ctx, opts.ReplicaURL, opts, nil, standbys); err != nil {
			pool.Close()
			return nil, fmt.Errorf("store: replica: %w", err)
		}
		ro.Probe = standbys.probe(s.replica)
	}
	s.router = readroute.New(ro)
	standbys.router.Store(s.router)
	return s, nil
}

// newPool creates a pool with the service's session settings. fenced, when
// set, drops the connections a read-only server refused a write on;
// standbys, when set, keeps reads off the standbys that are behind.
func newPool(ctx context.Context, connString string, opts Options, fenced *fencedConns, standbys *standbyConns) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("store: parse connection string: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	cfg.ConnConfig.Tracer = opts.Tracer
	if fenced != nil {
		fenced.install(cfg)
	}
	if standbys != nil {
		standbys.install(cfg)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	// Broken connections are found on use; a short health check period sheds
	// them quickly after a PostgreSQL restart instead of failing one request each.
	cfg.HealthCheckPeriod = 5 * time.Second
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "datastorage"
	// Every timestamp is read and written in UTC.
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	// JIT compilation pays off for long analytic queries; ours are short or
	// bounded, and the read benchmark saw it add 10-55 ms to each
	// aggregation (bench/results/read.md).
	cfg.ConnConfig.RuntimeParams["jit"] = "off"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: create pool: %w", err)
	}
	return pool, nil
}

// Close closes the pool, waiting for connections in use to be released.
func (s *Store) Close() {
	s.pool.Close()
	if s.replica != nil {
		s.replica.Close()
	}
}

// Ping checks that PostgreSQL answers a query.
func (s *Store) Ping(ctx context.Context) (err error) {
	defer classifyErr(&err)
	if _, err := s.pool.Exec(ctx, "SELECT 1"); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Pool exposes the pool for its statistics (metrics) and for tests.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// ReplicaPool exposes the standby's pool (database.replicaUrl) for its
// statistics; nil without a standby.
func (s *Store) ReplicaPool() *pgxpool.Pool { return s.replica }
