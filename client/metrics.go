package client

import "github.com/prometheus/client_golang/prometheus"

// emitterMetrics exports an emitter's counters at scrape time.
type emitterMetrics struct {
	e                                      *Emitter
	queued, sent, retried, dropped, failed *prometheus.Desc
	buffered, capacity                     *prometheus.Desc
}

func newEmitterMetrics(e *Emitter, labels map[string]string) *emitterMetrics {
	l := prometheus.Labels(labels)
	return &emitterMetrics{
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
func (e *Emitter) Describe(ch chan<- *prometheus.Desc) {
	m := e.metrics
	for _, d := range []*prometheus.Desc{m.queued, m.sent, m.retried, m.dropped, m.failed, m.buffered, m.capacity} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: register the emitter with the
// host's registry (reg.MustRegister(emitter)) to export its counters.
func (e *Emitter) Collect(ch chan<- prometheus.Metric) {
	m, s := e.metrics, &e.stats
	ch <- prometheus.MustNewConstMetric(m.queued, prometheus.CounterValue, float64(s.queued.Load()))
	ch <- prometheus.MustNewConstMetric(m.sent, prometheus.CounterValue, float64(s.sent.Load()))
	ch <- prometheus.MustNewConstMetric(m.retried, prometheus.CounterValue, float64(s.retried.Load()))
	for i, r := range dropReasons {
		ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(s.dropped[i].Load()), r)
	}
	for i, r := range failReasons {
		ch <- prometheus.MustNewConstMetric(m.failed, prometheus.CounterValue, float64(s.failed[i].Load()), r)
	}
	ch <- prometheus.MustNewConstMetric(m.buffered, prometheus.GaugeValue, float64(s.buffered.Load()))
	ch <- prometheus.MustNewConstMetric(m.capacity, prometheus.GaugeValue, float64(e.opts.BufferSize))
}

var _ prometheus.Collector = (*Emitter)(nil)
