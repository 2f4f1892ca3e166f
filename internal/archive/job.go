package archive

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the archive job's Prometheus metrics.
type Metrics struct {
	months  prometheus.Counter
	events  prometheus.Counter
	bytes   prometheus.Counter
	runs    *prometheus.CounterVec
	lastOK  prometheus.Gauge
	pending prometheus.Gauge
}

// NewMetrics registers the metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		months: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "datastorage_archive_months_archived_total",
			Help: "Months archived to object storage and dropped from PostgreSQL by this replica.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "datastorage_archive_events_archived_total",
			Help: "Audit events archived by this replica.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "datastorage_archive_bytes_written_total",
			Help: "Bytes of Parquet files and manifests written by this replica.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_archive_runs_total",
			Help: "Archive runs by result: success, error, or skipped (another replica held the lock).",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "datastorage_archive_last_success_timestamp_seconds",
			Help: "Unix time at which this replica last finished an archive run without error.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "datastorage_archive_months_pending",
			Help: "Months due for archiving that the last run left in PostgreSQL (held, referenced, or failed).",
		}),
	}
	for _, r := range []string{"success", "error", "skipped"} {
		m.runs.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.months, m.events, m.bytes, m.runs, m.lastOK, m.pending)
	}
	return m
}

// Job runs the archiver periodically; every replica runs it, an advisory
// lock lets one of them do each run.
type Job struct {
	Archiver *Archiver
	Interval time.Duration
	Metrics  *Metrics
	Log      *slog.Logger
}

// Run archives now and then every Interval until ctx is done.
func (j *Job) Run(ctx context.Context) {
	interval := j.Interval
	if interval <= 0 {
		interval = 6 * time.Hour
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, _ = j.RunOnce(ctx)
		t.Reset(interval)
	}
}

// RunOnce runs the archiver once, recording metrics and logging.
func (j *Job) RunOnce(ctx context.Context) (Report, error) {
	log := j.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := j.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	start := time.Now()
	rep, err := j.Archiver.Run(ctx, time.Time{})
	if rep.Skipped {
		m.runs.WithLabelValues("skipped").Inc()
		return rep, err
	}
	var pending float64
	for _, mr := range rep.Months {
		if mr.Dropped {
			m.months.Inc()
			m.events.Add(float64(mr.Events))
			m.bytes.Add(float64(mr.Bytes))
		} else {
			pending++
		}
	}
	m.pending.Set(pending)
	if err != nil {
		m.runs.WithLabelValues("error").Inc()
		if ctx.Err() == nil {
			log.Error("archive run failed", "error", err)
		}
		return rep, err
	}
	m.runs.WithLabelValues("success").Inc()
	m.lastOK.Set(float64(time.Now().UnixNano()) / 1e9)
	log.Info("archive run finished", "months", len(rep.Months), "duration", time.Since(start).Round(time.Millisecond).String())
	return rep, nil
}
