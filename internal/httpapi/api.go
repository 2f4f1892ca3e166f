package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/query"
)

// Ingester is the write pipeline as the handlers see it.
type Ingester interface {
	Submit(ctx context.Context, events []*audit.Event) (ingest.Outcome, error)
}

// Reader answers event reads.
type Reader interface {
	List(ctx context.Context, p query.ListParams) (query.ListResult, error)
	Get(ctx context.Context, id uuid.UUID) (audit.Event, error)
}

// NotificationWriter stores legacy notification audits.
type NotificationWriter interface {
	InsertNotification(ctx context.Context, n audit.Notification) (audit.Notification, error)
}

// Health reports what readiness needs to know.
type Health interface {
	// Check pings the database and the spool; it must return within ctx.
	Check(ctx context.Context) (databaseUp, spoolUp bool)
	// ShuttingDown reports whether the process has begun to stop.
	ShuttingDown() bool
}

// Config is everything the API needs. Every field is required unless noted.
type Config struct {
	Validator     *audit.Validator
	Ingest        Ingester
	Reader        Reader
	Timelines     TimelineReader
	Aggregator    Aggregator
	Notifications NotificationWriter
	Health        Health
	Log           *slog.Logger
	// Registerer receives the HTTP metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer

	MaxBatchSize   int
	MaxBodySize    int64
	RequestTimeout time.Duration
	// Now is the clock for relative query times; nil means time.Now.
	Now func() time.Time

	// NotificationSpool queues notifications while PostgreSQL is
	// unavailable (CONTRACT §9); nil answers 503 then.
	NotificationSpool NotificationSpool

	// Auth checks the bearer token of every request to a route under /api/
	// (never the probes); nil serves without authentication (auth.mode
	// none).
	Auth Authorizer
	// RateLimit limits each client's request rate on the routes under
	// /api/; the zero value disables it.
	RateLimit RateLimit
	// Integrity serves verify-chain, legal holds and export; nil leaves those routes out.
	Integrity Integrity
	// Remediations serves the remediation read models (CONTRACT §16); nil
	// leaves those routes out.
	Remediations Remediations
	// Catalog serves the workflow catalog (CONTRACT §15); nil leaves its routes out.
	Catalog Catalog
	// Console, when set, builds the browser console served at /console/
	// from the API's complete handler (the console reads and writes through
	// it, with the caller's token); nil leaves the console out.
	Console func(api http.Handler) http.Handler
}

// batchPath is the batch write endpoint, the production write path.
const batchPath = "/api/v1/audit/events/batch"

// API is the HTTP API of CONTRACT §1, as one http.Handler.
type API struct {
	validator      *audit.Validator
	ingest         Ingester
	reader         Reader
	timelines      TimelineReader
	aggregator     Aggregator
	notifications  NotificationWriter
	notifSpool     NotificationSpool
	health         Health
	log            *slog.Logger
	metrics        *httpMetrics
	maxBatch       int
	maxBody        int64
	requestTimeout time.Duration
	now            func() time.Time
	authz          Authorizer
	limiter        *rateLimiter
	guardMetrics   *guardMetrics
	handler        http.Handler
	// consoleOn sends browsers asking for an HTML timeline to the console.
	consoleOn bool
}

// New builds the API.
func New(c Config) *API {
	a := &API{
		validator:      c.Validator,
		ingest:         c.Ingest,
		reader:         c.Reader,
		timelines:      c.Timelines,
		aggregator:     c.Aggregator,
		notifications:  c.Notifications,
		notifSpool:     c.NotificationSpool,
		health:         c.Health,
		log:            c.Log,
		metrics:        newHTTPMetrics(c.Registerer),
		maxBatch:       c.MaxBatchSize,
		maxBody:        c.MaxBodySize,
		requestTimeout: c.RequestTimeout,
		now:            c.Now,
		authz:          c.Auth,
		limiter:        newRateLimiter(c.RateLimit, nil),
	}
	a.guardMetrics = newGuardMetrics(c.Registerer, a.limiter)
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.requestTimeout <= 0 {
		a.requestTimeout = 30 * time.Second
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+batchPath, a.writeBatch)
	mux.HandleFunc("POST /api/v1/audit/events", a.writeOne)
	mux.HandleFunc("GET /api/v1/audit/events", a.listEvents)
	mux.HandleFunc("GET /api/v1/audit/events/{event_id}", a.getEvent)
	mux.HandleFunc("GET /api/v1/audit/timeline/{correlation_id}", a.getTimeline)
	mux.HandleFunc("GET /api/v1/audit/aggregations/{name}", a.getAggregation)
	mux.HandleFunc("POST /api/v1/audit/notifications", a.writeNotification)
	a.registerIntegrity(mux, c.Integrity)
	a.registerRemediation(mux, c.Remediations)
	a.registerWorkflows(mux, c.Catalog)
	for _, p := range []string{"/healthz", "/health/live"} {
		mux.HandleFunc("GET "+p, a.live)
	}
	for _, p := range []string{"/readyz", "/health/ready", "/health"} {
		mux.HandleFunc("GET "+p, a.ready)
	}
	a.handler = a.instrument(a.guard(mux, withConsistency(routeProblems(mux))))
	if c.Console != nil {
		a.consoleOn = true
		// Outside /api/: the console signs people in itself and sends
		// their tokens with every request it makes to the API.
		mux.Handle("/console/", c.Console(a.handler))
		mux.Handle("GET /console", http.RedirectHandler("/console/", http.StatusMovedPermanently))
	}
	return a
}

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }
