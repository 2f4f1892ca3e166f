package spool

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the reason label of datastorage_spool_refused_total.
const (
	refusedFull         = "full"
	refusedUnavailable  = "unavailable"
	refusedUnreplicated = "unreplicated"
)

// Values of the result label of datastorage_replay_events_total.
const (
	resultCommitted    = "committed"
	resultDuplicate    = "duplicate"
	resultFailed       = "failed"
	resultDeadLettered = "dead_lettered"
	resultParked       = "parked"
)

// Metrics are the spool's counters. The gauges (depth, age, dead letters)
// are read from Redis at scrape time by NewCollector.
type Metrics struct {
	// Enqueued counts records appended to the spool.
	Enqueued *prometheus.CounterVec
	// Refused counts records the spool could not take, by reason.
	Refused *prometheus.CounterVec
	// Replayed counts spooled records the replay worker finished with, by result.
	Replayed *prometheus.CounterVec
	// DeadLettered counts records moved to the dead-letter stream.
	DeadLettered *prometheus.CounterVec
	// Parked counts records whose replay failed with an internal error and
	// that were left pending (see consumer.park).
	Parked *prometheus.CounterVec
	// WaitSeconds is the time of the append round trip that ends with WAIT
	// (the appends that wait for redis.minReplicas replicas), by stream.
	WaitSeconds *prometheus.HistogramVec
	// WaitShortfalls counts appends that fewer than redis.minReplicas
	// replicas confirmed within redis.waitTimeout, by stream.
	WaitShortfalls *prometheus.CounterVec
}

// NewMetrics creates the counters and registers them with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_spool_enqueued_total",
			Help: "Records appended to the spool because PostgreSQL could not take them, by stream (events, notifications).",
		}, []string{"stream"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_spool_refused_total",
			Help: "Records the spool could not take (the write answered 503), by stream and reason: full (redis.dlqMaxLen reached), unavailable (Redis error) or unreplicated (fewer than redis.minReplicas replicas confirmed them).",
		}, []string{"stream", "reason"}),
		Replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_replay_events_total",
			Help: "Spooled records handled by the replay worker, by stream and result: committed, duplicate (already stored; notifications only, events count theirs in datastorage_ingest_events_total), failed (data error, retried later), dead_lettered, parked (internal error, left pending).",
		}, []string{"stream", "result"}),
		DeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_dead_letters_total",
			Help: "Spooled records moved to the dead-letter stream by this process, by stream.",
		}, []string{"stream"}),
		Parked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_replay_parked_total",
			Help: "Spooled records whose replay failed with an internal error (a bug, a schema that no longer fits) and were left pending, to be tried again after redis.claimIdle, by stream. Never an outage, never the data's fault: an operator must look.",
		}, []string{"stream"}),
		WaitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "datastorage_spool_wait_seconds",
			Help:    "Time of a spool append that waits (Redis WAIT) for redis.minReplicas replicas to confirm it: the script and the WAIT, one round trip, by stream.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"stream"}),
		WaitShortfalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_spool_wait_shortfalls_total",
			Help: "Spool appends that fewer than redis.minReplicas replicas confirmed within redis.waitTimeout; their records were withdrawn and the writes answered 503, by stream.",
		}, []string{"stream"}),
	}
	for _, k := range Kinds() {
		m.Enqueued.WithLabelValues(k.String())
		m.DeadLettered.WithLabelValues(k.String())
		m.Parked.WithLabelValues(k.String())
		m.WaitSeconds.WithLabelValues(k.String())
		m.WaitShortfalls.WithLabelValues(k.String())
		for _, r := range []string{refusedFull, refusedUnavailable, refusedUnreplicated} {
			m.Refused.WithLabelValues(k.String(), r)
		}
		for _, r := range []string{resultCommitted, resultDuplicate, resultFailed, resultDeadLettered, resultParked} {
			m.Replayed.WithLabelValues(k.String(), r)
		}
	}
	if reg != nil {
		reg.MustRegister(m.Enqueued, m.Refused, m.Replayed, m.DeadLettered, m.Parked, m.WaitSeconds, m.WaitShortfalls)
	}
	return m
}

// scrapeTimeout bounds the Redis round trip of one scrape: a slow Redis must
// not make the whole metrics endpoint time out.
const scrapeTimeout = 2 * time.Second

// collector reads the spool's gauges from Redis when Prometheus scrapes.
type collector struct {
	spool                                       *Spool
	up, depth, oldest, pending, dead, consumers *prometheus.Desc
}

// NewCollector returns the spool's gauges, computed at scrape time from
// Redis: datastorage_spool_up, _depth, _oldest_age_seconds, _pending,
// _consumers and _dead_letters. When Redis does not answer only
// datastorage_spool_up (0) is reported, so the others never show stale values.
func NewCollector(s *Spool) prometheus.Collector {
	stream := []string{"stream"}
	return &collector{
		spool: s,
		up:    prometheus.NewDesc("datastorage_spool_up", "1 when Redis answered the last scrape's spool queries, else 0.", nil, nil),
		depth: prometheus.NewDesc("datastorage_spool_depth",
			"Entries in the spool stream: accepted records not yet committed to PostgreSQL.", stream, nil),
		oldest: prometheus.NewDesc("datastorage_spool_oldest_age_seconds",
			"Age of the oldest entry in the spool stream (0 when empty).", stream, nil),
		pending: prometheus.NewDesc("datastorage_spool_pending",
			"Spool entries delivered to a replay worker and not yet acknowledged.", stream, nil),
		consumers: prometheus.NewDesc("datastorage_spool_consumers",
			"Replay workers known to the consumer group.", stream, nil),
		dead: prometheus.NewDesc("datastorage_spool_dead_letters",
			"Entries in the dead-letter stream, waiting for an operator.", stream, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.depth, c.oldest, c.pending, c.consumers, c.dead} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	stats, err := c.spool.Stats(ctx, Kinds()...)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	now := c.spool.now()
	for _, st := range stats {
		k := st.Kind.String()
		age := 0.0
		if !st.Oldest.IsZero() {
			age = max(0, now.Sub(st.Oldest).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(st.Depth), k)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age, k)
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.Pending), k)
		ch <- prometheus.MustNewConstMetric(c.consumers, prometheus.GaugeValue, float64(st.Consumers), k)
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(st.DeadLetters), k)
	}
}
