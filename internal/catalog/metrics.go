package catalog

import "github.com/prometheus/client_golang/prometheus"

// metrics answer an operator's questions about the catalog: is GitOps
// registering (and conflicting), who changes statuses, how fast and how
// wide are searches. Labels come from fixed sets.
type metrics struct {
	registrations *prometheus.CounterVec
	statusChanges *prometheus.CounterVec
	searchSeconds prometheus.Histogram
	candidates    prometheus.Histogram
	searchEvents  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_catalog_registrations_total",
			Help: "Workflow version registrations by outcome: created, unchanged (idempotent repeat), conflict, invalid, error.",
		}, []string{"outcome"}),
		statusChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_catalog_status_changes_total",
			Help: "Workflow version status changes committed, by from and to status.",
		}, []string{"from", "to"}),
		searchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "datastorage_catalog_search_duration_seconds",
			Help:    "Time to answer a workflow search: candidate query, scoring and recording the discovery.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1},
		}),
		candidates: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "datastorage_catalog_search_candidates",
			Help:    "Candidates per workflow search (before min_score and top_k).",
			Buckets: []float64{0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		searchEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_catalog_discovery_events_failed_total",
			Help: "Search and selection audit events that neither PostgreSQL nor the spool could take (the request answered 503), by event.",
		}, []string{"event"}),
	}
	for _, o := range []string{"created", "unchanged", "conflict", "invalid", "error"} {
		m.registrations.WithLabelValues(o)
	}
	for _, e := range []string{"search_completed", "selection_validated"} {
		m.searchEvents.WithLabelValues(e)
	}
	// Every allowed move has a series from the start, so that the
	// dashboard's panels and client/restart_linux_test.go's check of the
	// served metrics see it before the first status change.
	for _, from := range []string{"active", "disabled", "deprecated"} {
		for _, to := range []string{"active", "disabled", "deprecated", "archived"} {
			if from != to {
				m.statusChanges.WithLabelValues(from, to)
			}
		}
	}
	if reg != nil {
		reg.MustRegister(m.registrations, m.statusChanges, m.searchSeconds, m.candidates, m.searchEvents)
	}
	return m
}
