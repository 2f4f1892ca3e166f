package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/internal/store"
)

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
	reg.MustRegister(h.ahead, h.checked)
	return h
}

// update measures the horizon; on a database error the last values stay.
func (h *partitionHorizon) update(ctx context.Context, st *store.Store, now time.Time) {
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
