// Package clientmetrics exports the counters of a Data Storage SDK emitter
// ([client.Emitter]) as Prometheus metrics.
//
// It is a module of its own so that the SDK itself needs no Prometheus: a
// service that does not export the emitter's metrics, or exports them some
// other way ([client.Emitter.Stats]), does not inherit the Prometheus client.
//
//	em := client.NewEmitter(c, client.EmitterOptions{})
//	reg.MustRegister(clientmetrics.New(em, nil)) // datastorage_emitter_* metrics
package clientmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/client"
)

// Collector is a prometheus.Collector of one emitter's counters, read from
// [client.Emitter.Stats] and [client.Emitter.StatsByReason] at scrape time.
type Collector struct {
	e                                      *client.Emitter
	queued, sent, retried, dropped, failed *prometheus.Desc
	buffered, capacity                     *prometheus.Desc
}

// New returns the collector of e. labels are constant labels added to every
// metric (for a host with more than one emitter); nil adds none.
func New(e *client.Emitter, labels map[string]string) *Collector {
	l := prometheus.Labels(labels)
	return &Collector{
		e: e,
		queued: prometheus.NewDesc("datastorage_emitter_events_queued_total",
			"Audit events the emitter accepted into its buffer.", nil, l),
		sent: prometheus.NewDesc("datastorage_emitter_events_sent_total",
			"Audit events the Data Storage server confirmed (committed or durably spooled).", nil, l),
		retried: prometheus.NewDesc("datastorage_emitter_events_retried_total",
			"Audit events sent again after a failed attempt (once per event per retry).", nil, l),
		dropped: prometheus.NewDesc("datastorage_emitter_events_dropped_total",
			"Audit events Emit did not accept, by reason: buffer_full, closed, canceled, invalid.", []string{"reason"}, l),
		failed: prometheus.NewDesc("datastorage_emitter_events_failed_total",
			"Accepted audit events given up, by reason: rejected (4xx), retries_exhausted, closed (Close deadline).", []string{"reason"}, l),
		buffered: prometheus.NewDesc("datastorage_emitter_buffered_events",
			"Accepted audit events not yet sent or given up.", nil, l),
		capacity: prometheus.NewDesc("datastorage_emitter_buffer_capacity_events",
			"Events the emitter's buffer holds at most (EmitterOptions.BufferSize).", nil, l),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.queued, c.sent, c.retried, c.dropped, c.failed, c.buffered, c.capacity} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.e.Stats()
	dropped, failed := c.e.StatsByReason()
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.CounterValue, float64(s.Queued))
	ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(s.Sent))
	ch <- prometheus.MustNewConstMetric(c.retried, prometheus.CounterValue, float64(s.Retried))
	for reason, n := range dropped {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n), reason)
	}
	for reason, n := range failed {
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(c.buffered, prometheus.GaugeValue, float64(s.Buffered))
	ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.GaugeValue, float64(c.e.BufferSize()))
}

var _ prometheus.Collector = (*Collector)(nil)
