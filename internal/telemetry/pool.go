package telemetry

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports a pgx pool's statistics at scrape time, so the
// figures are always current and cost nothing between scrapes.
type PoolCollector struct {
	pool *pgxpool.Pool

	conns        *prometheus.Desc
	maxConns     *prometheus.Desc
	acquires     *prometheus.Desc
	emptyWaits   *prometheus.Desc
	waitSeconds  *prometheus.Desc
	canceledAcqs *prometheus.Desc
}

// NewPoolCollector returns a collector for pool.
func NewPoolCollector(pool *pgxpool.Pool) *PoolCollector {
	return &PoolCollector{
		pool: pool,
		conns: prometheus.NewDesc("datastorage_db_pool_connections",
			"Connections in the PostgreSQL pool, by state (idle, in_use, constructing).", []string{"state"}, nil),
		maxConns: prometheus.NewDesc("datastorage_db_pool_max_connections",
			"The pool's connection limit.", nil, nil),
		acquires: prometheus.NewDesc("datastorage_db_pool_acquires_total",
			"Connections handed out by the pool.", nil, nil),
		emptyWaits: prometheus.NewDesc("datastorage_db_pool_empty_acquires_total",
			"Acquires that had to wait because no connection was free: the pool-saturation signal.", nil, nil),
		waitSeconds: prometheus.NewDesc("datastorage_db_pool_acquire_wait_seconds_total",
			"Time spent waiting for a pool connection.", nil, nil),
		canceledAcqs: prometheus.NewDesc("datastorage_db_pool_canceled_acquires_total",
			"Acquires given up because their context ended.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.conns
	ch <- c.maxConns
	ch <- c.acquires
	ch <- c.emptyWaits
	ch <- c.waitSeconds
	ch <- c.canceledAcqs
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.AcquiredConns()), "in_use")
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.ConstructingConns()), "constructing")
	ch <- prometheus.MustNewConstMetric(c.maxConns, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(c.acquires, prometheus.CounterValue, float64(s.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.emptyWaits, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.waitSeconds, prometheus.CounterValue, s.AcquireDuration().Seconds())
	ch <- prometheus.MustNewConstMetric(c.canceledAcqs, prometheus.CounterValue, float64(s.CanceledAcquireCount()))
}
