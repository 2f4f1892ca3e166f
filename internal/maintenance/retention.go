package maintenance

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Retention (docs/integrity.md) deletes the events whose retention_days
// have passed, never a held one, dropping whole months where it can. It is
// scheduled work, so the job and its policy live here (retention_run.go);
// the statements are the store's. Whether an event may go is integrity's
// rule (legal holds, tombstones for verify-chain), which those statements
// apply.

// RetentionStore opens retention runs. internal/store implements it.
type RetentionStore interface {
	// OpenRetention returns a session holding the retention leader lock, or
	// leader false (and no session) when another replica holds it.
	OpenRetention(ctx context.Context) (session RetentionSession, leader bool, err error)
}

// RetentionOptions tune one retention run.
type RetentionOptions struct {
	// DryRun reports what would be deleted without deleting anything.
	DryRun bool
	// BatchSize is the number of rows one DELETE statement aims at; it
	// halves after a statement timeout and grows back after successes.
	// 0 means 5000.
	BatchSize int
	// BatchTimeout is the statement timeout of one batch; 0 means 30 s.
	BatchTimeout time.Duration
	// DetachTimeout bounds detaching one partition, which waits for the
	// transactions that use the table (a long export, for one); 0 means 10 min.
	DetachTimeout time.Duration
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// RetentionReport says what a run did, or (dry run) would do.
type RetentionReport struct {
	// Skipped is true when another replica holds the retention lock; nothing
	// else is set then.
	Skipped bool
	DryRun  bool
	// Today is the UTC date the run judged expiry against.
	Today time.Time
	// HoldsSwept is the number of events flagged as held because their
	// correlation was put under hold after they were written.
	HoldsSwept int64
	// EventsDeleted counts the events deleted, including those of dropped
	// partitions; in a dry run, the events that would be.
	EventsDeleted int64
	// PartitionsDropped names the partitions dropped (or that would be).
	PartitionsDropped []string
	// Partitions has one entry per partition that had expired events.
	Partitions []PartitionRetention
}

// Partition actions of a retention run.
const (
	RetentionDrop   = "drop"   // the whole partition goes
	RetentionDelete = "delete" // expired, unheld rows go one by one
)

// PartitionRetention is what a run did to one partition.
type PartitionRetention struct {
	Name   string
	Action string
	// Expired counts the partition's expired rows (dry run).
	Expired int64
	// Held counts the partition's expired rows kept because they are held
	// (dry run).
	Held int64
	// Deleted counts the rows deleted (or, dry run, that would be).
	Deleted int64
	Dropped bool
	// Note explains a partition kept in part.
	Note string
}

// RetentionMetrics are the retention job's Prometheus metrics. Only the
// replica that wins the run's lock records a run.
type RetentionMetrics struct {
	deleted  prometheus.Counter
	dropped  prometheus.Counter
	runs     *prometheus.CounterVec
	lastRun  prometheus.Gauge
	lastOK   prometheus.Gauge
	duration prometheus.Histogram
}

// NewRetentionMetrics registers the metrics with reg (nil: unregistered).
func NewRetentionMetrics(reg prometheus.Registerer) *RetentionMetrics {
	m := &RetentionMetrics{
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "datastorage_retention_events_deleted_total",
			Help: "Audit events deleted by retention, including those of dropped partitions.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "datastorage_retention_partitions_dropped_total",
			Help: "Monthly partitions dropped by retention.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_retention_runs_total",
			Help: "Retention runs by result: success, error, or skipped (another replica held the lock).",
		}, []string{"result"}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "datastorage_retention_last_run_timestamp_seconds",
			Help: "Unix time at which this replica last finished a retention run (success or error).",
		}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "datastorage_retention_last_success_timestamp_seconds",
			Help: "Unix time at which this replica last finished a retention run without error.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "datastorage_retention_run_duration_seconds",
			Help:    "Duration of the retention runs this replica performed.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}),
	}
	for _, r := range []string{"success", "error", "skipped"} {
		m.runs.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.deleted, m.dropped, m.runs, m.lastRun, m.lastOK, m.duration)
	}
	return m
}

// RetentionJob runs retention periodically. Every replica runs the job; a
// PostgreSQL advisory lock lets one of them do each run.
type RetentionJob struct {
	Store    RetentionStore
	Options  RetentionOptions
	Interval time.Duration
	Metrics  *RetentionMetrics
	Log      *slog.Logger
}

// Run runs retention now and then every Interval until ctx is done.
func (j *RetentionJob) Run(ctx context.Context) {
	interval := j.Interval
	if interval <= 0 {
		interval = time.Hour
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

// RunOnce runs retention once, recording metrics and logging the outcome.
func (j *RetentionJob) RunOnce(ctx context.Context) (RetentionReport, error) {
	log := j.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := j.Options
	if opts.Log == nil {
		opts.Log = log
	}
	start := time.Now()
	rep, err := RunRetention(ctx, j.Store, opts)
	m := j.Metrics
	if m == nil {
		m = NewRetentionMetrics(nil)
	}
	if rep.Skipped {
		m.runs.WithLabelValues("skipped").Inc()
		log.Debug("retention skipped: another replica is running it")
		return rep, err
	}
	m.deleted.Add(float64(rep.EventsDeleted))
	m.dropped.Add(float64(len(rep.PartitionsDropped)))
	m.duration.Observe(time.Since(start).Seconds())
	now := float64(time.Now().UnixNano()) / 1e9
	m.lastRun.Set(now)
	if err != nil {
		m.runs.WithLabelValues("error").Inc()
		if ctx.Err() == nil {
			log.Error("retention run failed", "error", err, "events_deleted", rep.EventsDeleted)
		}
		return rep, err
	}
	m.runs.WithLabelValues("success").Inc()
	m.lastOK.Set(now)
	log.Info("retention run finished", "events_deleted", rep.EventsDeleted,
		"partitions_dropped", len(rep.PartitionsDropped), "holds_swept", rep.HoldsSwept,
		"duration", time.Since(start).Round(time.Millisecond).String())
	return rep, nil
}
