package telemetry

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// The pool label values of the datastorage_db_pool_* metrics.
const (
	// PoolPrimary is the pool on database.url: writes and the reads that
	// must see them.
	PoolPrimary = "primary"
	// PoolReplica is the pool on database.replicaUrl: the routed reads.
	PoolReplica = "replica"
)

// PoolCollector exports pgx pools' statistics at scrape time, so the
// figures are always current and cost nothing between scrapes. Each series
// carries a pool label: the standby's pool saturating is a different
// problem (reads wait) from the primary's (writes wait).
type PoolCollector struct {
	pools map[string]*pgxpool.Pool

	conns        *prometheus.Desc
	totalConns   *prometheus.Desc
	maxConns     *prometheus.Desc
	acquires     *prometheus.Desc
	emptyWaits   *prometheus.Desc
	waitSeconds  *prometheus.Desc
	canceledAcqs *prometheus.Desc
}

// NewPoolCollector returns a collector for the primary's pool and, when
// replica is not nil, the standby's.
func NewPoolCollector(primary, replica *pgxpool.Pool) *PoolCollector {
	pools := map[string]*pgxpool.Pool{PoolPrimary: primary}
	if replica != nil {
		pools[PoolReplica] = replica
	}
	return &PoolCollector{
		pools: pools,
		conns: prometheus.NewDesc("datastorage_db_pool_connections",
			"Connections in a PostgreSQL pool, by pool (primary, replica) and state (idle, in_use, constructing).", []string{"pool", "state"}, nil),
		totalConns: prometheus.NewDesc("datastorage_db_pool_total_connections",
			"Connections a PostgreSQL pool holds in any state, by pool (primary, replica).", []string{"pool"}, nil),
		maxConns: prometheus.NewDesc("datastorage_db_pool_max_connections",
			"A pool's connection limit, by pool (primary, replica).", []string{"pool"}, nil),
		acquires: prometheus.NewDesc("datastorage_db_pool_acquires_total",
			"Connections handed out by a pool, by pool (primary, replica).", []string{"pool"}, nil),
		emptyWaits: prometheus.NewDesc("datastorage_db_pool_empty_acquires_total",
			"Acquires that had to wait because no connection was free, by pool (primary, replica): the pool-saturation signal.", []string{"pool"}, nil),
		waitSeconds: prometheus.NewDesc("datastorage_db_pool_acquire_wait_seconds_total",
			"Time spent acquiring a pool connection, waits included, by pool (primary, replica).", []string{"pool"}, nil),
		canceledAcqs: prometheus.NewDesc("datastorage_db_pool_canceled_acquires_total",
			"Acquires given up because their context ended, by pool (primary, replica).", []string{"pool"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.conns
	ch <- c.totalConns
	ch <- c.maxConns
	ch <- c.acquires
	ch <- c.emptyWaits
	ch <- c.waitSeconds
	ch <- c.canceledAcqs
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	for name, pool := range c.pools {
		s := pool.Stat()
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.IdleConns()), name, "idle")
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.AcquiredConns()), name, "in_use")
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.ConstructingConns()), name, "constructing")
		ch <- prometheus.MustNewConstMetric(c.totalConns, prometheus.GaugeValue, float64(s.TotalConns()), name)
		ch <- prometheus.MustNewConstMetric(c.maxConns, prometheus.GaugeValue, float64(s.MaxConns()), name)
		ch <- prometheus.MustNewConstMetric(c.acquires, prometheus.CounterValue, float64(s.AcquireCount()), name)
		ch <- prometheus.MustNewConstMetric(c.emptyWaits, prometheus.CounterValue, float64(s.EmptyAcquireCount()), name)
		ch <- prometheus.MustNewConstMetric(c.waitSeconds, prometheus.CounterValue, s.AcquireDuration().Seconds(), name)
		ch <- prometheus.MustNewConstMetric(c.canceledAcqs, prometheus.CounterValue, float64(s.CanceledAcquireCount()), name)
	}
}
