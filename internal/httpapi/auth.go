package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/auth"
)

// Authorizer checks a request's bearer token for the verb of its route
// (CONTRACT §1, §11). *auth.Static and *auth.Kubernetes are the two; its
// errors wrap auth.ErrUnauthenticated (401), auth.ErrForbidden (403) or
// auth.ErrUnavailable (503).
type Authorizer interface {
	Authorize(ctx context.Context, token string, verb auth.Verb) (auth.Identity, error)
}

// legalHoldPath is the prefix of the routes that need verb update to change.
const legalHoldPath = "/api/v1/audit/legal-hold"

// authRetryAfter is what a 503 tells a client whose token could not be
// checked (the Kubernetes API is down).
const authRetryAfter = 5 * time.Second

// routeVerb is the verb a request to a route under /api/ needs (CONTRACT §1):
// reads need get, and so do the catalog's search and validate; legal holds
// and catalog status changes need update; every other write needs create. path is the path of the mux pattern that matched.
func routeVerb(method, path string) auth.Verb {
	switch {
	case method == http.MethodGet || method == http.MethodHead:
		return auth.VerbGet
	case path == legalHoldPath || strings.HasPrefix(path, legalHoldPath+"/"):
		return auth.VerbUpdate
	// The catalog (CONTRACT §15.5): search and validate only read it;
	// a status change is an update.
	case path == workflowsPath+"/search" || strings.HasPrefix(path, workflowsPath+"/discoveries/"):
		return auth.VerbGet
	case method == http.MethodPatch && strings.HasPrefix(path, workflowsPath+"/"):
		return auth.VerbUpdate
	default:
		return auth.VerbCreate
	}
}

// guard authenticates, authorizes and rate-limits requests to the API's
// routes before they reach their handlers. Requests that match no route go
// on to the 404/405 problems whoever sends them; the probes and anything else
// outside /api/ are never authenticated nor limited.
func (a *API) guard(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		if pattern == "" {
			next.ServeHTTP(w, r)
			return
		}
		// The route is known now; metrics and logs name it even when the
		// request is refused here, before the mux would have set it.
		r.Pattern = pattern
		_, path, found := strings.Cut(pattern, " ")
		if !found {
			path = pattern
		}
		if !strings.HasPrefix(path, "/api/") {
			next.ServeHTTP(w, r)
			return
		}
		key, client := "", "ip"
		if a.authz != nil {
			id, ok := a.authorize(w, r, routeVerb(r.Method, path))
			if !ok {
				return
			}
			r = r.WithContext(auth.NewContext(r.Context(), id))
			key, client = "id:"+id.Name, "identity"
		}
		if a.limiter != nil {
			if key == "" {
				key = "ip:" + clientAddr(r.RemoteAddr)
			}
			if ok, wait := a.limiter.allow(key); !ok {
				a.guardMetrics.limited.WithLabelValues(client).Inc()
				writeRateLimited(w, r, wait, a.limiter)
				return
			}
		}
		if !a.checkInput(w, r, path) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorize checks the bearer token for verb and answers the refusals.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, verb auth.Verb) (auth.Identity, bool) {
	token, _ := auth.BearerToken(r.Header.Get("Authorization"))
	id, err := a.authz.Authorize(r.Context(), token, verb)
	ctx := r.Context()
	switch {
	case err == nil:
		a.guardMetrics.decisions.WithLabelValues("allowed").Inc()
		return id, true
	case errors.Is(err, auth.ErrUnauthenticated):
		a.guardMetrics.decisions.WithLabelValues("unauthorized").Inc()
		// Debug only: the request line already says 401, and a flood of bad
		// tokens must not flood the log twice.
		a.log.DebugContext(ctx, "request not authenticated", "request_id", RequestID(ctx), "path", r.URL.Path, "reason", err.Error())
		challenge, detail := `Bearer realm="datastorage"`, "a bearer token is required: Authorization: Bearer <token>"
		if token != "" {
			challenge += `, error="invalid_token"`
			detail = "the bearer token is not valid"
		}
		w.Header().Set("WWW-Authenticate", challenge)
		writeBlankProblem(w, r, http.StatusUnauthorized, "Unauthorized", detail)
	case errors.Is(err, auth.ErrForbidden):
		a.guardMetrics.decisions.WithLabelValues("forbidden").Inc()
		a.log.InfoContext(ctx, "request forbidden", "request_id", RequestID(ctx), "path", r.URL.Path,
			"caller", id.Name, "verb", string(verb), "reason", err.Error())
		writeBlankProblem(w, r, http.StatusForbidden, "Forbidden", "the caller may not use verb "+string(verb)+" on this endpoint")
	default:
		// The authority could not be asked; never the caller's fault, and
		// not a 500 either: it passes.
		a.guardMetrics.decisions.WithLabelValues("error").Inc()
		a.log.ErrorContext(ctx, "could not authenticate request", "request_id", RequestID(ctx), "path", r.URL.Path, "error", err.Error())
		writeUnavailable(w, r, authRetryAfter, "the caller could not be authenticated right now; retry later")
	}
	return auth.Identity{}, false
}

// writeBlankProblem sends the `about:blank` problems of 401 and 403
// (CONTRACT §11): their title is the HTTP status phrase.
func writeBlankProblem(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{Type: "about:blank", Title: title, Status: status, Detail: detail, Instance: instance(r)})
}

// maxActorID is the length limit of actor_id (CONTRACT §2.1).
const maxActorID = 255

// applyCaller makes an authenticated person the actor of the events they
// write (CONTRACT §2.1). Service accounts and static service tokens keep the
// actor the events name. A name longer than actor_id allows is cut at a
// character boundary.
func applyCaller(ctx context.Context, events []*audit.Event) {
	id, ok := auth.FromContext(ctx)
	if !ok || !id.User {
		return
	}
	name := id.Name
	if len(name) > maxActorID {
		name = name[:maxActorID]
		for !utf8.ValidString(name) {
			name = name[:len(name)-1]
		}
	}
	for _, e := range events {
		e.ActorType, e.ActorID = "user", name
	}
}

// guardMetrics count what guard decides. Labels come from fixed sets.
type guardMetrics struct {
	decisions *prometheus.CounterVec
	limited   *prometheus.CounterVec
}

func newGuardMetrics(reg prometheus.Registerer, limiter *rateLimiter) *guardMetrics {
	m := &guardMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_auth_decisions_total",
			Help: "Authentication and authorization decisions on API requests, by result: allowed, unauthorized (401), forbidden (403), error (503, the authority could not be asked).",
		}, []string{"result"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "datastorage_rate_limited_requests_total",
			Help: "API requests refused with 429 by the per-client rate limit, by what identified the client: identity (authenticated caller) or ip.",
		}, []string{"client"}),
	}
	for _, r := range []string{"allowed", "unauthorized", "forbidden", "error"} {
		m.decisions.WithLabelValues(r)
	}
	for _, c := range []string{"identity", "ip"} {
		m.limited.WithLabelValues(c)
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.limited)
		if limiter != nil {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "datastorage_rate_limit_clients",
				Help: "Clients the rate limiter currently tracks (those whose bucket is not full).",
			}, func() float64 { return float64(limiter.size()) }))
		}
	}
	return m
}
