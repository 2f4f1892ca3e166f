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
	// Archive, when set, also removes the archived months whose events
	// have all expired (docs/archive.md, "Retention"), after PostgreSQL's
	// expired events.
	Archive ArchiveRetention
}

// ArchiveRetention removes archived months whose events have all expired
// and that no legal hold keeps. internal/archive's Expirer does it (cmd
// adapts it).
type ArchiveRetention interface {
	// ExpireArchived looks at every archived month; with dryRun it only
	// reports. skipped is true when the archive job's lock was taken (an
	// archive run or a restore): nothing was looked at, the next run will.
	ExpireArchived(ctx context.Context, dryRun bool) (months []ArchivedRetention, skipped bool, err error)
}

// Archived month actions of a retention run.
const (
	ArchivedExpired = "expired"      // the month's files were deleted
	ArchivedWould   = "would expire" // dry run
	ArchivedHeld    = "held"         // every event expired, but a correlation is held
	ArchivedKept    = "kept"         // some events are within their retention
)

// ArchivedRetention is what a run did with one archived month.
type ArchivedRetention struct {
	Month  string // YYYY-MM
	Action string
	Events int64
	// LastRetained is the last day an event of the month must be kept
	// (zero when the run did not need to know).
	LastRetained time.Time
	Note         string
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
	// ArchivedEventsDeleted counts the events of the archived months whose
	// files were deleted (or, dry run, would be); they are not in
	// EventsDeleted.
	ArchivedEventsDeleted int64
	// Archived has one entry per archived month past its first possible
	// expiry; ArchiveSkipped is true when the archive job's lock was taken.
	Archived       []ArchivedRetention
	ArchiveSkipped bool
}

// ArchivedHeld counts the archived months kept only by a legal hold.
func (r RetentionReport) ArchivedHeld() int { return r.archivedWith(ArchivedHeld) }

// ArchivedMonthsDeleted counts the archived months whose files went.
func (r RetentionReport) ArchivedMonthsDeleted() int { return r.archivedWith(ArchivedExpired) }

func (r RetentionReport) archivedWith(action string) int {
	n := 0
	for _, a := range r.Archived {
		if a.Action == action {
			n++
		}
	}
	return n
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
	deleted prometheus.Counter
	dropped prometheus.Counter
	// archivedMonths, archivedEvents and archivedHeld: the retention of
	// archived months.
	archivedMonths prometheus.Counter
	archivedEvents prometheus.Counter
	archivedHeld   prometheus.Gauge
	runs           *prometheus.CounterVec
	lastRun        prometheus.Gauge
	lastOK         prometheus.Gauge
	duration       prometheus.Histogram
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
		archivedMonths: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "datastorage_retention_archived_months_deleted_total",
			Help: "Archived months whose files and manifest retention deleted (every event expired, none held).",
		}),
		archivedEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "datastorage_retention_archived_events_deleted_total",
			Help: "Events of the archived months retention deleted (not in datastorage_retention_events_deleted_total).",
		}),
		archivedHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "datastorage_retention_archived_months_held",
			Help: "Archived months, at the last retention run, whose events have all expired but which a legal hold keeps.",
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
		reg.MustRegister(m.deleted, m.dropped, m.archivedMonths, m.archivedEvents, m.archivedHeld,
			m.runs, m.lastRun, m.lastOK, m.duration)
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
	m.archivedMonths.Add(float64(rep.ArchivedMonthsDeleted()))
	m.archivedEvents.Add(float64(rep.ArchivedEventsDeleted))
	if j.Options.Archive != nil && !rep.ArchiveSkipped && err == nil {
		m.archivedHeld.Set(float64(rep.ArchivedHeld()))
	}
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
		"archived_months_deleted", rep.ArchivedMonthsDeleted(), "archived_months_held", rep.ArchivedHeld(),
		"duration", time.Since(start).Round(time.Millisecond).String())
	return rep, nil
}
