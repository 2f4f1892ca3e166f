// Package sdk holds the tests of the Go SDK (kubernaut.ai/datastorage/client,
// a module of its own): they check every request the SDK makes and every
// answer it reads against api/openapi.yaml, and many run against the real
// server, so they need this module's packages, which the SDK's module must
// not depend on.
package sdk

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/client"
	"kubernaut.ai/datastorage/internal/apitest"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/catalog"
	"kubernaut.ai/datastorage/internal/httpapi"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/remediation"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
	"kubernaut.ai/datastorage/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// specTransport checks every exchange the client makes against
// api/openapi.yaml: the request the SDK builds and the answer it gets. A
// mismatch fails the test, so every client test is also a contract test of
// the client (and, against the real server, of the server).
type specTransport struct {
	t    testing.TB
	spec *apitest.Validator
	next http.RoundTripper

	mu        sync.Mutex
	exchanges int
}

func (s *specTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	if req.Context().Value(invalidOnPurpose{}) != nil {
		// The test sends a bad request on purpose, to see the server's answer.
	} else if err := s.spec.RequestError(req, body); err != nil {
		s.t.Errorf("the client sent a request outside the contract: %v", err)
	}
	resp, err := s.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	if err := s.spec.ResponseError(req, resp, out); err != nil {
		s.t.Errorf("an answer outside the contract: %v", err)
	}
	s.mu.Lock()
	s.exchanges++
	s.mu.Unlock()
	return resp, nil
}

func (s *specTransport) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges
}

type invalidOnPurpose struct{}

// badRequest marks the requests made with ctx as outside the contract on
// purpose; only their answers are checked.
func badRequest(ctx context.Context) context.Context {
	return context.WithValue(ctx, invalidOnPurpose{}, true)
}

// newSpecClient returns a client of baseURL whose exchanges are checked
// against the contract.
func newSpecClient(t testing.TB, baseURL string, opts ...client.Option) (*client.Client, *specTransport) {
	t.Helper()
	tr := &specTransport{t: t, spec: apitest.NewValidator(t), next: http.DefaultTransport}
	opts = append([]client.Option{client.WithHTTPClient(&http.Client{Transport: tr, Timeout: 30 * time.Second})}, opts...)
	c, err := client.New(baseURL, opts...)
	require.NoError(t, err)
	return c, tr
}

// liveServer is the real API, in process, over a fresh migrated database.
type liveServer struct {
	url   string
	store *store.Store
}

type storeHealth struct{ st *store.Store }

func (h storeHealth) Check(ctx context.Context) (bool, bool) { return h.st.Ping(ctx) == nil, false }
func (storeHealth) ShuttingDown() bool                       { return false }

// startLiveServer builds the API as cmd/datastorage does (store, group
// commit, query services) and serves it with httptest. authz, when given,
// checks bearer tokens as auth.mode static or kubernetes does.
func startLiveServer(t *testing.T, authz ...httpapi.Authorizer) *liveServer {
	t.Helper()
	st, _ := storetest.New(t, store.Options{MaxConns: 8}, 2)

	log := slog.New(slog.DiscardHandler)
	pipe := ingest.New(st, nil, ingest.Options{Writers: 2, MaxBatch: 1000}, nil, log)
	require.NoError(t, pipe.Start(context.Background()))
	t.Cleanup(func() { _ = pipe.Stop(context.Background()) })
	validator := &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555}
	// The catalog as serve wires it: search and validation events go
	// through the write pipeline.
	cat := catalog.New(catalog.Options{Store: st, Validator: validator, Weights: catalog.DefaultWeights, Log: log,
		Sink: catalog.EventSinkFunc(func(ctx context.Context, events []*audit.Event) error {
			_, err := pipe.Submit(ctx, events)
			return err
		})})
	cfg := httpapi.Config{
		Validator:      validator,
		Catalog:        cat,
		Ingest:         pipe,
		Reader:         query.New(st),
		Timelines:      query.NewTimelines(st),
		Aggregator:     query.NewAggregator(st),
		Notifications:  st,
		Health:         storeHealth{st},
		Log:            log,
		MaxBatchSize:   5000,
		MaxBodySize:    16 << 20,
		RequestTimeout: 10 * time.Second,
		Remediations:   remediation.New(st),
	}
	if len(authz) > 0 {
		cfg.Auth = authz[0]
	}
	srv := httptest.NewServer(httpapi.New(cfg))
	t.Cleanup(srv.Close)
	return &liveServer{url: srv.URL, store: st}
}

// countByID returns how many rows hold each of ids.
func (s *liveServer) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, s.store.Pool().QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// fakeServer answers canned, contract-valid exchanges for the endpoints
// whose server side is not in this test's reach; every answer it gives is
// itself checked against the contract by specTransport.
type fakeServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []recorded
}

type recorded struct {
	method, path, rawQuery string
	header                 http.Header
	body                   []byte
}

func newFakeServer(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, body []byte)) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.requests = append(f.requests, recorded{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Clone(), body})
		f.mu.Unlock()
		w.Header().Set("X-Request-ID", "req-fake")
		handler(w, r, body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) last() recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1]
}

func (f *fakeServer) all() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.requests...)
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func writeProblem(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// newEvent returns a valid event for correlation.
func newEvent(correlation string) client.Event {
	return client.Event{
		Version:       "1.0",
		Type:          "workflowexecution.step.completed",
		Category:      client.CategoryWorkflowExecution,
		Action:        "completed",
		Outcome:       client.OutcomeSuccess,
		CorrelationID: correlation,
		Data:          map[string]any{"step": 1},
	}
}

// quietLogger keeps the emitter's retry warnings out of the test output.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
