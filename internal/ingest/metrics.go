package ingest

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/internal/audit"
)

// Values of the result label of datastorage_ingest_events_total.
const (
	resultCommitted   = "committed"
	resultDuplicate   = "duplicate"
	resultQueued      = "queued"
	resultRejected    = "rejected"
	resultUnavailable = "unavailable"
	resultBusy        = "busy"
	resultAbandoned   = "abandoned"
	resultInternal    = "internal"
)

// Metrics are the pipeline's Prometheus metrics.
type Metrics struct {
	// Events counts submitted events by what became of them.
	Events *prometheus.CounterVec
	// BatchSize observes the events per successful commit.
	BatchSize prometheus.Histogram
	// CommitSeconds observes the duration of each commit attempt.
	CommitSeconds prometheus.Histogram
	// QueueDepth is the number of events waiting for a writer.
	QueueDepth prometheus.Gauge
	// Lag observes, per committed event, commit time minus event_timestamp,
	// by path (live or replayed): how late an event reaches the trail.
	Lag *prometheus.HistogramVec

	// The series every commit updates, resolved once (NewMetrics): a
	// label lookup hashes the value under the vector's lock, per commit.
	committed, duplicate prometheus.Counter
	lagLive, lagReplayed prometheus.Observer
}

// Values of the path label of datastorage_ingest_lag_seconds.
const (
	pathLive     = "live"
	pathReplayed = "replayed"
)

// NewMetrics creates the metrics and registers them with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_ingest_events_total",
			Help: "Audit events submitted for writing, by result: committed, duplicate (already stored), queued (spooled), rejected (refused by the database), unavailable, busy (queue full until the deadline), abandoned (the client left while waiting for the queue), internal (a commit failed with an internal error).",
		}, []string{"result"}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "datastorage_ingest_batch_size",
			Help:    "Events written per group commit.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000},
		}),
		CommitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "datastorage_ingest_commit_duration_seconds",
			Help:    "Duration of one group commit (one INSERT and COMMIT), including failed attempts.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "datastorage_ingest_queue_depth",
			Help: "Events waiting for a group-commit writer.",
		}),
		// From a few milliseconds (a live write at low load) to a day (a
		// spool replayed after a long outage): the buckets must tell both
		// "the commit was slow" and "the trail is hours behind" apart.
		Lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "datastorage_ingest_lag_seconds",
			Help:    "Commit time minus event_timestamp of each committed event, by path: live (committed as it arrived) or replayed (from the spool). Includes the client's own buffering; events stamped in the future count as 0.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600, 14400, 86400},
		}, []string{"path"}),
	}
	m.lagLive, m.lagReplayed = m.Lag.WithLabelValues(pathLive), m.Lag.WithLabelValues(pathReplayed)
	m.committed, m.duplicate = m.Events.WithLabelValues(resultCommitted), m.Events.WithLabelValues(resultDuplicate)
	for _, r := range []string{resultCommitted, resultDuplicate, resultQueued, resultRejected, resultUnavailable, resultBusy, resultAbandoned, resultInternal} {
		m.Events.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Events, m.BatchSize, m.CommitSeconds, m.QueueDepth, m.Lag)
	}
	return m
}

// observeLag records the lag of events committed at committedAt. Events the
// store found already stored are observed too: telling them apart would cost
// the commit a result per row, and a retry's lag is lag all the same.
func (m *Metrics) observeLag(events []*audit.Event, replay bool, committedAt time.Time) {
	h := m.lagLive
	if replay {
		h = m.lagReplayed
	}
	for _, e := range events {
		h.Observe(max(committedAt.Sub(e.Timestamp.Std()), 0).Seconds())
	}
}
