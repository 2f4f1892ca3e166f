package maintenance

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PartitionsAhead is how many months beyond the current one always have a
// partition; the previous month is kept too, for events up to
// ingest.maxEventAge old.
const PartitionsAhead = 3

// Partition describes one monthly partition of audit_events.
type Partition struct {
	Name string
	From time.Time // first day, inclusive
	To   time.Time // first day of the next month, exclusive
}

// PartitionStore creates and lists audit_events' monthly partitions.
// internal/store implements it.
type PartitionStore interface {
	// EnsurePartitions creates the missing partitions of the months from
	// from's month on, ahead months in all, and returns how many it created.
	EnsurePartitions(ctx context.Context, from time.Time, ahead int) (int, error)
	// Partitions lists the partitions in month order.
	Partitions(ctx context.Context) ([]Partition, error)
}

// PartitionUpkeep keeps audit_events' monthly partitions ahead of the
// calendar and reports how far ahead they reach. Writes create a missing
// month on demand, so upkeep failing costs a slower first write of a month,
// never an event; the metrics warn long before.
type PartitionUpkeep struct {
	store   PartitionStore
	log     *slog.Logger
	horizon *partitionHorizon
	// Interval is the time between two passes of Run (default one hour:
	// far more often than months need, but one cheap query, and it heals
	// soon after a database outage).
	Interval time.Duration
}

// NewPartitionUpkeep returns the upkeep of st's partitions, its metrics
// registered with reg (nil: unregistered).
func NewPartitionUpkeep(st PartitionStore, reg prometheus.Registerer, log *slog.Logger) *PartitionUpkeep {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PartitionUpkeep{store: st, log: log, horizon: newPartitionHorizon(reg), Interval: time.Hour}
}

// EnsureAhead creates the partitions of the previous month through
// PartitionsAhead months after the current one, where missing.
func (u *PartitionUpkeep) EnsureAhead(ctx context.Context) error {
	n, err := u.store.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), PartitionsAhead+1)
	if err != nil {
		return err
	}
	if n > 0 {
		u.log.Info("created partitions", "count", n)
	}
	return nil
}

// Run measures the horizon, then keeps partitions ahead every Interval
// until ctx ends. It is the work of a lifecycle.Loop.
func (u *PartitionUpkeep) Run(ctx context.Context) {
	u.horizon.update(ctx, u.store, time.Now())
	interval := u.Interval
	if interval <= 0 {
		interval = time.Hour
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := u.EnsureAhead(ctx); err != nil {
				u.log.Warn("could not create partitions ahead", "error", err)
			}
			u.horizon.update(ctx, u.store, time.Now())
		}
	}
}

// partitionHorizon exports how far ahead of the calendar audit_events has
// monthly partitions, measured by each partition maintenance pass, so an
// operator is warned long before a month begins without its partition
// (writes would still create it on demand, at a cost).
type partitionHorizon struct {
	ahead   prometheus.Gauge
	checked prometheus.Gauge
}

func newPartitionHorizon(reg prometheus.Registerer) *partitionHorizon {
	h := &partitionHorizon{
		ahead: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "datastorage_partitions_ahead_months",
			Help: "Consecutive months after the current one that have an audit_events partition (3 when maintenance keeps up; -1 when even the current month has none).",
		}),
		checked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "datastorage_partitions_last_check_timestamp_seconds",
			Help: "Unix time of the last successful partition check (the gauge datastorage_partitions_ahead_months is that old).",
		}),
	}
	if reg != nil {
		reg.MustRegister(h.ahead, h.checked)
	}
	return h
}

// update measures the horizon; on a database error the last values stay.
func (h *partitionHorizon) update(ctx context.Context, st PartitionStore, now time.Time) {
	parts, err := st.Partitions(ctx)
	if err != nil {
		return
	}
	have := make(map[time.Time]bool, len(parts))
	for _, p := range parts {
		have[p.From] = true
	}
	y, m, _ := now.UTC().Date()
	month := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	ahead := -1
	for have[month] {
		ahead++
		month = month.AddDate(0, 1, 0)
	}
	h.ahead.Set(float64(ahead))
	h.checked.Set(float64(now.Unix()))
}
