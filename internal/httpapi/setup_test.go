package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

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

// bundle is what an API test works with: a real server over a fresh,
// migrated database.
type bundle struct {
	t      *testing.T
	srv    *httptest.Server
	store  *store.Store
	spec   *apitest.Validator
	health *fakeHealth
	// catalog is the workflow catalog the API serves (CONTRACT §15).
	catalog *catalog.Service
}

type options struct {
	maxAge       time.Duration
	maxClockSkew time.Duration
	maxBatch     int
	maxBody      int64
	reader       httpapi.Reader
	// auth, rateLimit and registerer go to httpapi.Config unchanged.
	auth       httpapi.Authorizer
	rateLimit  httpapi.RateLimit
	registerer prometheus.Registerer
	// catalogSink, when set, replaces the write pipeline as the sink of the
	// catalog's search and validation events.
	catalogSink catalog.EventSink
	// weights replace the catalog's default score weights.
	weights *catalog.Weights
}

func setup(t *testing.T, opts ...func(*options)) *bundle {
	t.Helper()
	o := options{maxAge: 7 * 24 * time.Hour, maxClockSkew: time.Hour, maxBatch: 5000, maxBody: 16 << 20}
	for _, f := range opts {
		f(&o)
	}
	st, _ := storetest.New(t, store.Options{MaxConns: 8}, 3)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pipe := ingest.New(st, nil, ingest.Options{Writers: 2, MaxBatch: 500}, nil, log)
	require.NoError(t, pipe.Start(context.Background()))
	t.Cleanup(func() { _ = pipe.Stop(context.Background()) })
	reader := o.reader
	if reader == nil {
		reader = query.New(st)
	}
	health := &fakeHealth{db: true}
	validator := &audit.Validator{MaxAge: o.maxAge, MaxSkew: o.maxClockSkew, DefaultRetentionDays: 2555}
	sink := o.catalogSink
	if sink == nil {
		sink = catalog.EventSinkFunc(func(ctx context.Context, events []*audit.Event) error {
			_, err := pipe.Submit(ctx, events)
			return err
		})
	}
	weights := catalog.DefaultWeights
	if o.weights != nil {
		weights = *o.weights
	}
	cat := catalog.New(catalog.Options{Store: st, Sink: sink, Validator: validator, Weights: weights, Log: log, Registerer: o.registerer})
	api := httpapi.New(httpapi.Config{
		Validator:      validator,
		Catalog:        cat,
		Ingest:         pipe,
		Reader:         reader,
		Timelines:      query.NewTimelines(st),
		Aggregator:     query.NewAggregator(st),
		Notifications:  st,
		Health:         health,
		Log:            log,
		MaxBatchSize:   o.maxBatch,
		MaxBodySize:    o.maxBody,
		RequestTimeout: 10 * time.Second,
		Auth:           o.auth,
		RateLimit:      o.rateLimit,
		Registerer:     o.registerer,
		Remediations:   remediation.New(st),
	})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &bundle{t: t, srv: srv, store: st, spec: apitest.NewValidator(t), health: health, catalog: cat}
}

type fakeHealth struct{ db, spool, stopping bool }

func (h *fakeHealth) Check(context.Context) (bool, bool) { return h.db, h.spool }
func (h *fakeHealth) ShuttingDown() bool                 { return h.stopping }

// response is a finished exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic value.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(r.body, &v), "body: %s", r.body)
	return v
}

// fields returns a problem's field_errors.
func (r response) fields(t *testing.T) map[string]any {
	t.Helper()
	fe, _ := r.json(t)["field_errors"].(map[string]any)
	return fe
}

// do sends a request and checks the exchange against api/openapi.yaml, so
// every test is also a contract test.
func (b *bundle) do(method, path string, body any, headers ...string) response {
	b.t.Helper()
	var raw []byte
	switch v := body.(type) {
	case nil:
	case []byte:
		raw = v
	case string:
		raw = []byte(v)
	default:
		var err error
		raw, err = json.Marshal(v)
		require.NoError(b.t, err)
	}
	req, err := http.NewRequest(method, b.srv.URL+path, bytes.NewReader(raw))
	require.NoError(b.t, err)
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := b.srv.Client().Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	specReq, _ := http.NewRequest(method, b.srv.URL+path, nil)
	specReq.Header = req.Header.Clone()
	b.spec.CheckResponse(b.t, specReq, resp, out)
	if resp.StatusCode >= 400 && !strings.HasPrefix(path, "/health") && path != "/readyz" {
		require.Equal(b.t, "application/problem+json", resp.Header.Get("Content-Type"), "error bodies are problems: %s", out)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: out}
}

// event returns a valid AuditEventRequest; overrides replace or (with nil) remove keys.
func event(overrides map[string]any) map[string]any {
	e := map[string]any{
		"version":         "1.0",
		"event_type":      "gateway.signal.received",
		"event_timestamp": time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano),
		"event_category":  "gateway",
		"event_action":    "received",
		"event_outcome":   "success",
		"correlation_id":  "rr-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", ""),
		"event_data":      map[string]any{"event_type": "gateway.signal.received", "signal": "OOMKilled"},
	}
	for k, v := range overrides {
		if v == nil {
			delete(e, k)
		} else {
			e[k] = v
		}
	}
	return e
}

// count returns how many stored events have the id.
func (b *bundle) count(id string) int {
	b.t.Helper()
	var n int
	require.NoError(b.t, b.store.Pool().QueryRow(context.Background(),
		"SELECT count(*) FROM audit_events WHERE event_id = $1", id).Scan(&n))
	return n
}

// total returns how many events are stored.
func (b *bundle) total() int {
	b.t.Helper()
	var n int
	require.NoError(b.t, b.store.Pool().QueryRow(context.Background(), "SELECT count(*) FROM audit_events").Scan(&n))
	return n
}
