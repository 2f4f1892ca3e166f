package httpapi_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/auth"
	"kubernaut.ai/datastorage/internal/auth/authtest"
	"kubernaut.ai/datastorage/internal/httpapi"
)

const staticTokens = `
tokens:
  - name: gateway
    token: gateway-secret-0123456789
    verbs: [get, create]
  - name: reader
    token: reader-secret-0123456789
    verbs: [get]
  - name: alice
    token: alice-secret-0123456789
    verbs: [get, create, update]
    user: true
`

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// withStatic serves with static tokens from a file the test may rewrite.
func withStatic(t *testing.T, content string, interval time.Duration) (string, func(*options)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	s, err := auth.NewStatic(path, auth.ReloadOptions{Interval: interval})
	require.NoError(t, err)
	return path, func(o *options) { o.auth = s }
}

func withRegistry(reg *prometheus.Registry) func(*options) {
	return func(o *options) { o.registerer = reg }
}

// counter sums the counters name whose labels include all of labels
// ("k", "v", ...).
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// requireBlankProblem checks a 401/403 problem (CONTRACT §11).
func requireBlankProblem(t *testing.T, r response, status int, title string) {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	p := r.json(t)
	assert.Equal(t, "about:blank", p["type"])
	assert.Equal(t, title, p["title"])
	assert.EqualValues(t, status, p["status"])
}

func TestStaticAuthRefusesAndAllowsByVerb(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, static := withStatic(t, staticTokens, 0)
	b := setup(t, static, withRegistry(reg))

	// No token, a wrong one, another scheme: 401 with a Bearer challenge.
	r := b.do("POST", "/api/v1/audit/events", event(nil))
	requireBlankProblem(t, r, 401, "Unauthorized")
	assert.Equal(t, `Bearer realm="datastorage"`, r.header.Get("WWW-Authenticate"))
	assert.Equal(t, "/api/v1/audit/events", r.json(t)["instance"])
	r = b.do("POST", "/api/v1/audit/events", event(nil), bearer("gateway-secret-012345678")...)
	requireBlankProblem(t, r, 401, "Unauthorized")
	assert.Equal(t, `Bearer realm="datastorage", error="invalid_token"`, r.header.Get("WWW-Authenticate"))
	r = b.do("GET", "/api/v1/audit/events", nil, "Authorization", "Basic Z2F0ZXdheTpzZWNyZXQ=")
	requireBlankProblem(t, r, 401, "Unauthorized")
	r = b.do("HEAD", "/api/v1/audit/events", nil)
	assert.Equal(t, 401, r.status)
	assert.Equal(t, 0, b.total(), "nothing refused was written")

	// A token without create may read but not write.
	r = b.do("POST", "/api/v1/audit/events", event(nil), bearer("reader-secret-0123456789")...)
	requireBlankProblem(t, r, 403, "Forbidden")
	assert.Contains(t, r.json(t)["detail"], "create")
	r = b.do("POST", "/api/v1/audit/events/batch", []any{event(nil)}, bearer("reader-secret-0123456789")...)
	requireBlankProblem(t, r, 403, "Forbidden")
	r = b.do("POST", "/api/v1/audit/notifications", map[string]any{}, bearer("reader-secret-0123456789")...)
	requireBlankProblem(t, r, 403, "Forbidden")
	assert.Equal(t, 0, b.total())
	r = b.do("GET", "/api/v1/audit/events", nil, bearer("reader-secret-0123456789")...)
	require.Equal(t, 200, r.status, "%s", r.body)

	// With the verbs: written and read back.
	r = b.do("POST", "/api/v1/audit/events", event(map[string]any{"actor_id": "gateway-7"}), bearer("gateway-secret-0123456789")...)
	require.Equal(t, 201, r.status, "%s", r.body)
	id := r.json(t)["event_id"].(string)
	r = b.do("POST", "/api/v1/audit/events/batch", []any{event(nil), event(nil)}, bearer("gateway-secret-0123456789")...)
	require.Equal(t, 201, r.status, "%s", r.body)
	r = b.do("GET", "/api/v1/audit/events/"+id, nil, bearer("gateway-secret-0123456789")...)
	require.Equal(t, 200, r.status, "%s", r.body)
	got := r.json(t)
	assert.Equal(t, "service", got["actor_type"], "a static token is a service unless marked user")
	assert.Equal(t, "gateway-7", got["actor_id"])
	assert.Equal(t, 3, b.total())

	// Probes never ask for a token; unknown routes stay 404/405 problems.
	for _, p := range []string{"/healthz", "/readyz", "/health", "/health/ready", "/health/live"} {
		assert.Equal(t, 200, b.do("GET", p, nil).status, p)
	}
	r = b.do("GET", "/api/v1/nothing-here", nil)
	assert.Equal(t, 404, r.status)
	r = b.do("DELETE", "/api/v1/audit/events", nil)
	assert.Equal(t, 405, r.status)

	assert.Equal(t, 4.0, counter(t, reg, "datastorage_auth_decisions_total", "result", "unauthorized"))
	assert.Equal(t, 3.0, counter(t, reg, "datastorage_auth_decisions_total", "result", "forbidden"))
	assert.Equal(t, 4.0, counter(t, reg, "datastorage_auth_decisions_total", "result", "allowed"))
	assert.Equal(t, 0.0, counter(t, reg, "datastorage_auth_decisions_total", "result", "error"))
	// The route is named in the request metrics even when refused.
	assert.Equal(t, 2.0, counter(t, reg, "datastorage_http_requests_total", "route", "POST /api/v1/audit/events", "code", "401"))
	assert.Equal(t, 0.0, counter(t, reg, "datastorage_http_requests_total", "route", "unmatched", "code", "401"))
}

func TestStaticTokenFileRotationTakesEffectWithoutRestart(t *testing.T) {
	t.Parallel()
	path, static := withStatic(t, "tokens: [{name: gateway, token: first-secret-0123456789, verbs: [get, create]}]\n", 20*time.Millisecond)
	b := setup(t, static)
	require.Equal(t, 201, b.do("POST", "/api/v1/audit/events", event(nil), bearer("first-secret-0123456789")...).status)

	require.NoError(t, os.WriteFile(path, []byte("tokens: [{name: gateway, token: second-secret-012345678, verbs: [get, create]}]\n"), 0o600))
	require.Eventually(t, func() bool {
		return b.do("POST", "/api/v1/audit/events", event(nil), bearer("second-secret-012345678")...).status == 201
	}, 5*time.Second, 10*time.Millisecond, "the new token is accepted")
	r := b.do("POST", "/api/v1/audit/events", event(nil), bearer("first-secret-0123456789")...)
	requireBlankProblem(t, r, 401, "Unauthorized")
}

func TestUserIdentityBecomesTheActor(t *testing.T) {
	t.Parallel()
	_, static := withStatic(t, staticTokens, 0)
	b := setup(t, static)
	actor := func(id string) (string, string) {
		t.Helper()
		// As stored, read back by the store (which fills in the defaults
		// it stores as NULL).
		e, err := b.store.GetEvent(context.Background(), uuid.MustParse(id))
		require.NoError(t, err)
		return e.ActorType, e.ActorID
	}

	r := b.do("POST", "/api/v1/audit/events", event(map[string]any{"actor_type": "service", "actor_id": "spoofed"}), bearer("alice-secret-0123456789")...)
	require.Equal(t, 201, r.status, "%s", r.body)
	typ, name := actor(r.json(t)["event_id"].(string))
	assert.Equal(t, "user", typ)
	assert.Equal(t, "alice", name)

	r = b.do("POST", "/api/v1/audit/events/batch", []any{event(nil), event(map[string]any{"actor_id": "x"})}, bearer("alice-secret-0123456789")...)
	require.Equal(t, 201, r.status, "%s", r.body)
	for _, id := range r.json(t)["event_ids"].([]any) {
		typ, name := actor(id.(string))
		assert.Equal(t, "user", typ)
		assert.Equal(t, "alice", name)
	}

	// A service keeps the actor it names, or the default.
	r = b.do("POST", "/api/v1/audit/events/batch", []any{event(nil), event(map[string]any{"actor_type": "controller", "actor_id": "x"})}, bearer("gateway-secret-0123456789")...)
	require.Equal(t, 201, r.status, "%s", r.body)
	ids := r.json(t)["event_ids"].([]any)
	typ, name = actor(ids[0].(string))
	assert.Equal(t, [2]string{"service", "gateway-service"}, [2]string{typ, name})
	typ, name = actor(ids[1].(string))
	assert.Equal(t, [2]string{"controller", "x"}, [2]string{typ, name})
}

func TestKubernetesAuthThroughTheAPI(t *testing.T) {
	t.Parallel()
	const sa = "system:serviceaccount:kubernaut:gateway"
	fake := authtest.NewKubernetes(t, "kubernaut")
	fake.AddToken("sa-token", authtest.User{Name: sa, Groups: []string{"system:serviceaccounts"}})
	fake.AddToken("bob-token", authtest.User{Name: "bob@example.com", Groups: []string{"sre"}})
	fake.AddToken("viewer-token", authtest.User{Name: "viewer"})
	fake.AddToken("carol-token", authtest.User{Name: "carol"})
	fake.Grant(sa, "get", "create")
	fake.Grant("bob@example.com", "get", "create")
	fake.Grant("viewer", "get")
	fake.Grant("carol", "get")
	k, err := auth.NewKubernetes(auth.KubernetesOptions{Cluster: fake.Cluster(), Namespace: "kubernaut"})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	b := setup(t, func(o *options) { o.auth = k }, withRegistry(reg))

	r := b.do("POST", "/api/v1/audit/events/batch", []any{event(map[string]any{"actor_id": "gw-1"})}, bearer("sa-token")...)
	require.Equal(t, 201, r.status, "%s", r.body)
	saEvent := r.json(t)["event_ids"].([]any)[0].(string)
	tr, sar := fake.Calls()
	assert.Equal(t, [2]int{1, 2}, [2]int{tr, sar})
	assert.Equal(t, []string{"get", "create"}, fake.ReviewedVerbs())

	// The cache: the next requests make no API call.
	for range 3 {
		r = b.do("POST", "/api/v1/audit/events", event(nil), bearer("sa-token")...)
		require.Equal(t, 201, r.status, "%s", r.body)
		require.Equal(t, 200, b.do("GET", "/api/v1/audit/events", nil, bearer("sa-token")...).status)
	}
	tr, sar = fake.Calls()
	assert.Equal(t, [2]int{1, 2}, [2]int{tr, sar}, "answered from the cache")

	// A person is the actor of what they write.
	r = b.do("POST", "/api/v1/audit/events", event(nil), bearer("bob-token")...)
	require.Equal(t, 201, r.status, "%s", r.body)
	r = b.do("GET", "/api/v1/audit/events/"+r.json(t)["event_id"].(string), nil, bearer("bob-token")...)
	require.Equal(t, 200, r.status, "%s", r.body)
	assert.Equal(t, "user", r.json(t)["actor_type"])
	assert.Equal(t, "bob@example.com", r.json(t)["actor_id"])
	r = b.do("GET", "/api/v1/audit/events/"+saEvent, nil, bearer("bob-token")...)
	assert.Equal(t, "gw-1", r.json(t)["actor_id"], "a service account's events keep their actor")

	requireBlankProblem(t, b.do("POST", "/api/v1/audit/events", event(nil), bearer("viewer-token")...), 403, "Forbidden")
	requireBlankProblem(t, b.do("GET", "/api/v1/audit/events", nil, bearer("forged")...), 401, "Unauthorized")
	requireBlankProblem(t, b.do("GET", "/api/v1/audit/events", nil), 401, "Unauthorized")

	// The Kubernetes API down: 503 with Retry-After, not 500; cached callers
	// carry on.
	fake.SetDown(true)
	r = b.do("GET", "/api/v1/audit/events", nil, bearer("carol-token")...)
	require.Equal(t, 503, r.status, "%s", r.body)
	assert.Equal(t, "https://kubernaut.ai/problems/service-unavailable", r.json(t)["type"])
	assert.Equal(t, "5", r.header.Get("Retry-After"))
	require.Equal(t, 201, b.do("POST", "/api/v1/audit/events", event(nil), bearer("sa-token")...).status)
	fake.Close()
	r = b.do("POST", "/api/v1/audit/events", event(nil), bearer("carol-token")...)
	require.Equal(t, 503, r.status, "%s", r.body)
	assert.NotEmpty(t, r.header.Get("Retry-After"))
	assert.Equal(t, 2.0, counter(t, reg, "datastorage_auth_decisions_total", "result", "error"))
	assert.Equal(t, 2.0, counter(t, reg, "datastorage_auth_decisions_total", "result", "unauthorized"))
	assert.Equal(t, 1.0, counter(t, reg, "datastorage_auth_decisions_total", "result", "forbidden"))
}

func TestRouteVerbs(t *testing.T) {
	t.Parallel()
	// Every route's verb as CONTRACT §1 lists it, through a recording
	// authorizer over the real API.
	rec := &recordingAuthorizer{}
	b := setup(t, func(o *options) { o.auth = rec })
	cases := []struct {
		method, path string
		want         auth.Verb
	}{
		{"POST", "/api/v1/audit/events/batch", auth.VerbCreate},
		{"POST", "/api/v1/audit/events", auth.VerbCreate},
		{"GET", "/api/v1/audit/events", auth.VerbGet},
		{"HEAD", "/api/v1/audit/events", auth.VerbGet},
		{"GET", "/api/v1/audit/events/0190b8a4-7d4b-7000-8000-000000000001", auth.VerbGet},
		{"GET", "/api/v1/audit/timeline/rr-1", auth.VerbGet},
		{"GET", "/api/v1/audit/aggregations/success-rate", auth.VerbGet},
		{"POST", "/api/v1/audit/notifications", auth.VerbCreate},
	}
	for _, tc := range cases {
		rec.verb = ""
		b.do(tc.method, tc.path, nil, bearer("any")...)
		assert.Equal(t, tc.want, rec.verb, "%s %s", tc.method, tc.path)
	}
	rec.verb = ""
	b.do("GET", "/healthz", nil)
	assert.Empty(t, rec.verb, "probes are not authenticated")
}

// recordingAuthorizer notes the verb asked for and refuses, so that no
// handler runs.
type recordingAuthorizer struct{ verb auth.Verb }

func (r *recordingAuthorizer) Authorize(_ context.Context, _ string, verb auth.Verb) (auth.Identity, error) {
	r.verb = verb
	return auth.Identity{Name: "x"}, auth.ErrForbidden
}

var _ httpapi.Authorizer = (*auth.Static)(nil)
var _ httpapi.Authorizer = (*auth.Kubernetes)(nil)

func TestLongUserNameIsCutToActorIDLimit(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 200) // 400 bytes
	_, static := withStatic(t, "tokens: [{name: '"+long+"', token: long-secret-0123456789, verbs: [get, create], user: true}]\n", 0)
	b := setup(t, static)
	r := b.do("POST", "/api/v1/audit/events", event(nil), bearer("long-secret-0123456789")...)
	require.Equal(t, 201, r.status, "%s", r.body)
	r = b.do("GET", "/api/v1/audit/events/"+r.json(t)["event_id"].(string), nil, bearer("long-secret-0123456789")...)
	got := r.json(t)["actor_id"].(string)
	assert.LessOrEqual(t, len(got), 255)
	assert.True(t, strings.HasPrefix(long, got))
}
