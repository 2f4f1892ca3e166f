package httpapi

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics are the API's own metrics. Every label value comes from a
// bounded set: routes are mux patterns, fields are our field names.
type httpMetrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	validation *prometheus.CounterVec
	// children holds the series of each route, method and status seen so
	// far (routeKey → *routeSeries): every request would otherwise hash
	// its labels twice, under the vectors' locks, and format its status.
	// The keys are as bounded as the labels.
	children sync.Map
}

// routeKey names the series of one route, method and status.
type routeKey struct {
	route, method string
	status        int
}

// routeSeries are the two series a request of one routeKey updates.
type routeSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_http_requests_total",
			Help: "HTTP requests served, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "datastorage_http_request_duration_seconds",
			Help:    "HTTP request latency, by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
		validation: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_validation_failures_total",
			Help: "Request fields that failed validation, by field name (batch element indices removed).",
		}, []string{"field"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.validation)
	}
	return m
}

func (m *httpMetrics) observe(route, method string, status int, d time.Duration) {
	switch method {
	case "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS":
	default:
		method = "other" // methods are client strings too
	}
	key := routeKey{route, method, status}
	v, ok := m.children.Load(key)
	if !ok {
		v, _ = m.children.LoadOrStore(key, &routeSeries{
			requests: m.requests.WithLabelValues(route, method, strconv.Itoa(status)),
			duration: m.duration.WithLabelValues(route, method),
		})
	}
	s := v.(*routeSeries)
	s.requests.Inc()
	s.duration.Observe(d.Seconds())
}

// validationFailure counts one failing field; "[12].event_type" counts as
// "event_type" so that the label stays bounded.
func (m *httpMetrics) validationFailure(key string) {
	if strings.HasPrefix(key, "[") {
		if i := strings.Index(key, "]."); i >= 0 {
			key = key[i+2:]
		} else {
			key = "element"
		}
	}
	m.validation.WithLabelValues(key).Inc()
}
