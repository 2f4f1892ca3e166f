package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/apitest"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/catalog"
	"kubernaut.ai/datastorage/internal/httpapi"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/testenv"
)

func TestCatalogVerbs(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, static := withStatic(t, staticTokens, 0)
	b := setup(t, static, withRegistry(reg))
	reader, gateway, alice := bearer("reader-secret-0123456789"), bearer("gateway-secret-0123456789"), bearer("alice-secret-0123456789")

	// Registering needs create.
	requireBlankProblem(t, b.do(http.MethodPost, "/api/v1/workflows", workflow("verbs", "1.0.0", nil), reader...), 403, "Forbidden")
	r := b.do(http.MethodPost, "/api/v1/workflows", workflow("verbs", "1.0.0", nil), gateway...)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	w := r.json(t)
	assert.Equal(t, "gateway", w["created_by"])

	// Reading, searching and validating need only get.
	require.Equal(t, http.StatusOK, b.do(http.MethodGet, "/api/v1/workflows/"+id(w), nil, reader...).status)
	require.Equal(t, http.StatusOK, b.do(http.MethodGet, "/api/v1/workflows", nil, reader...).status)
	require.Equal(t, http.StatusOK, b.do(http.MethodGet, "/api/v1/workflows/by-name/verbs/versions", nil, reader...).status)
	r = b.do(http.MethodPost, "/api/v1/workflows/search", map[string]any{"context": map[string]any{"signal_type": "OOMKilled"}}, reader...)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	disc := r.json(t)["discovery_id"].(string)
	r = b.do(http.MethodPost, "/api/v1/workflows/discoveries/"+disc+"/validate", map[string]any{"workflow_id": id(w)}, reader...)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)

	// A status change needs update: create is not enough.
	change := map[string]any{"status": "deprecated", "reason": "superseded"}
	requireBlankProblem(t, b.do(http.MethodPatch, "/api/v1/workflows/"+id(w), change, gateway...), 403, "Forbidden")
	requireBlankProblem(t, b.do(http.MethodPatch, "/api/v1/workflows/"+id(w), change, reader...), 403, "Forbidden")
	r = b.do(http.MethodPatch, "/api/v1/workflows/"+id(w), change, alice...)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	assert.Equal(t, "alice", r.json(t)["updated_by"])
	var actorType, actorID string
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), `SELECT actor_type, actor_id FROM audit_events
		WHERE correlation_id = 'workflow/verbs' AND event_action = 'updated'`).Scan(&actorType, &actorID))
	assert.Equal(t, "user", actorType)
	assert.Equal(t, "alice", actorID)

	// The metrics saw it.
	b.do(http.MethodPost, "/api/v1/workflows", workflow("verbs", "1.0.0", nil), gateway...)
	b.do(http.MethodPost, "/api/v1/workflows", workflow("verbs", "1.0.0", map[string]any{"title": "x"}), gateway...)
	b.do(http.MethodPost, "/api/v1/workflows", workflow("verbs", "bad", nil), gateway...)
	for outcome, n := range map[string]float64{"created": 1, "unchanged": 1, "conflict": 1, "invalid": 1} {
		assert.Equal(t, n, counter(t, reg, "datastorage_catalog_registrations_total", "outcome", outcome), outcome)
	}
	assert.Equal(t, 1.0, counter(t, reg, "datastorage_catalog_status_changes_total", "from", "active", "to", "deprecated"))
	families, err := reg.Gather()
	require.NoError(t, err)
	seen := map[string]uint64{}
	for _, f := range families {
		if h := f.GetMetric(); len(h) > 0 && h[0].GetHistogram() != nil {
			seen[f.GetName()] = h[0].GetHistogram().GetSampleCount()
		}
	}
	assert.EqualValues(t, 1, seen["datastorage_catalog_search_duration_seconds"])
	assert.EqualValues(t, 1, seen["datastorage_catalog_search_candidates"])
}

// TestCatalogAnswers503WhilePostgresIsDown runs the API on a PostgreSQL
// server of its own and stops it: the catalog answers 503 with Retry-After,
// and nothing is queued for later.
func TestCatalogAnswers503WhilePostgresIsDown(t *testing.T) {
	pg, err := testenv.StartPostgres()
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Close() })
	ctx := context.Background()
	dbURL, err := pg.CreateDatabase(ctx, "catalog_outage")
	require.NoError(t, err)
	st, err := store.Open(ctx, dbURL, store.Options{ConnectTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)
	validator := &audit.Validator{MaxAge: time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555}
	cat := catalog.New(catalog.Options{Store: st, Validator: validator, Weights: catalog.DefaultWeights,
		Sink: catalog.EventSinkFunc(func(ctx context.Context, events []*audit.Event) error {
			_, err := st.InsertEvents(ctx, events)
			return err
		})})
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Validator: validator, Catalog: cat, RequestTimeout: 10 * time.Second,
		MaxBodySize: 1 << 20, Health: &fakeHealth{}}))
	t.Cleanup(srv.Close)
	b := &bundle{t: t, srv: srv, store: st, spec: apitest.NewValidator(t)}
	w := b.register(workflow("outage", "1.0.0", nil), http.StatusCreated)

	require.NoError(t, pg.Stop())
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/api/v1/workflows", workflow("outage", "1.1.0", nil)},
		{http.MethodGet, "/api/v1/workflows/" + id(w), nil},
		{http.MethodGet, "/api/v1/workflows", nil},
		{http.MethodGet, "/api/v1/workflows/by-name/outage/versions", nil},
		{http.MethodPatch, "/api/v1/workflows/" + id(w), map[string]any{"status": "disabled", "reason": "x"}},
		{http.MethodPost, "/api/v1/workflows/search", map[string]any{"context": map[string]any{"signal_type": "OOMKilled"}}},
	} {
		r := b.do(c.method, c.path, c.body)
		require.Equal(t, http.StatusServiceUnavailable, r.status, "%s %s: %s", c.method, c.path, r.body)
		assert.NotEmpty(t, r.header.Get("Retry-After"))
	}
	require.NoError(t, pg.Start())
	b.register(workflow("outage", "1.1.0", nil), http.StatusCreated)
}
