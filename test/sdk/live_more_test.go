package sdk

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/client"
	"kubernaut.ai/datastorage/internal/auth"
	"kubernaut.ai/datastorage/internal/auth/authtest"
)

// TestTimelineAndAggregationsAgainstTheServer runs the read-side calls
// against the real server too.
func TestTimelineAndAggregationsAgainstTheServer(t *testing.T) {
	t.Parallel()
	srv := startLiveServer(t)
	c, _ := newSpecClient(t, srv.url)
	ctx := context.Background()

	now := time.Now().UTC().Truncate(time.Second)
	root := newEvent("rr-tl")
	root.ID, root.Timestamp, root.Namespace, root.Severity = client.NewEventID(), now.Add(-3*time.Minute), "prod", "high"
	child := newEvent("rr-tl")
	child.ParentEventID, child.Timestamp, child.Namespace = &root.ID, now.Add(-2*time.Minute), "prod"
	child.Outcome = client.OutcomeFailure
	other := newEvent("rr-tl-2")
	other.Timestamp, other.Namespace = now.Add(-time.Minute), "dev"
	_, err := c.WriteEvents(ctx, []client.Event{root, child, other})
	require.NoError(t, err)

	tl, err := c.Timeline(ctx, "rr-tl")
	require.NoError(t, err)
	require.Len(t, tl.Events, 1)
	assert.Equal(t, root.ID, tl.Events[0].ID)
	require.Len(t, tl.Events[0].Children, 1)
	assert.Equal(t, client.OutcomeFailure, tl.Events[0].Children[0].Outcome)
	assert.EqualValues(t, 60_000, tl.DurationMS)
	_, err = c.Timeline(ctx, "rr-none")
	assert.ErrorIs(t, err, client.ErrNotFound)

	ns, err := c.ByNamespace(ctx, client.Window{Since: "1d"})
	require.NoError(t, err)
	assert.Equal(t, []client.NamespaceCount{{Namespace: "prod", Remediations: 1, Events: 2}, {Namespace: "dev", Remediations: 1, Events: 1}}, ns)

	sr, err := c.SuccessRate(ctx, client.SuccessRateQuery{Category: client.CategoryWorkflowExecution, MinSamples: 2})
	require.NoError(t, err)
	assert.EqualValues(t, 3, sr.Total)
	assert.EqualValues(t, 1, sr.Failures)
	assert.True(t, sr.MinSamplesMet)

	groups, err := c.Counts(ctx, client.CountsQuery{GroupBy: []string{"namespace", "event_outcome"}})
	require.NoError(t, err)
	assert.Len(t, groups, 3)

	sev, err := c.BySeverity(ctx, client.Window{})
	require.NoError(t, err)
	require.NotEmpty(t, sev)
	assert.Equal(t, "high", sev[0].Severity)

	trend, err := c.Trend(ctx, client.TrendQuery{Period: "7d", Interval: "day"})
	require.NoError(t, err)
	var total int64
	for _, p := range trend.DataPoints {
		total += p.Count
	}
	assert.EqualValues(t, 3, total)
}

// TestTokenRotationAgainstKubernetesAuth runs the server in auth.mode
// kubernetes (TokenReview and SubjectAccessReview against a fake API
// server) and rotates the client's service-account token the way the
// kubelet does: the client must follow, and the emitter with it.
func TestTokenRotationAgainstKubernetesAuth(t *testing.T) {
	t.Parallel()
	const ns = "kubernaut-system"
	kube := authtest.NewKubernetes(t, ns)
	gateway := authtest.User{Name: "system:serviceaccount:" + ns + ":gateway", UID: "u-1", Groups: []string{"system:serviceaccounts"}}
	kube.AddToken("token-one", gateway)
	kube.Grant(gateway.Name, "get", "create")
	authz, err := auth.NewKubernetes(auth.KubernetesOptions{Cluster: kube.Cluster(), Namespace: ns, CacheTTL: -1})
	require.NoError(t, err)
	srv := startLiveServer(t, authz)

	dir := t.TempDir()
	tokenPath := filepath.Join(dir, "token")
	rotate := func(token string) {
		tmp := filepath.Join(dir, "token.tmp")
		require.NoError(t, os.WriteFile(tmp, []byte(token), 0o600))
		require.NoError(t, os.Rename(tmp, tokenPath)) // atomic, as the kubelet swaps its symlink
	}
	rotate("token-one")
	c, _ := newSpecClient(t, srv.url, client.WithTokenFile(tokenPath))
	ctx := context.Background()

	_, err = c.WriteEvent(ctx, newEvent("rr-auth"))
	require.NoError(t, err)

	// The kubelet rotates the token; the old one stops working.
	kube.AddToken("token-two", gateway)
	rotate("token-two")
	kube.RemoveToken("token-one")
	_, err = c.WriteEvent(ctx, newEvent("rr-auth"))
	require.NoError(t, err, "the client reads the rotated token")

	em := client.NewEmitter(c, client.EmitterOptions{BatchSize: 10, FlushInterval: time.Hour})
	for range 10 {
		require.NoError(t, em.Emit(ctx, newEvent("rr-auth")))
	}
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, em.Close(closeCtx))
	assert.EqualValues(t, 10, em.Stats().Sent)
	assert.Equal(t, 12, srv.count(t, "SELECT count(*) FROM audit_events WHERE correlation_id = 'rr-auth'"))

	// No token, a revoked one, and a missing verb are typed errors.
	anon, _ := newSpecClient(t, srv.url)
	_, err = anon.QueryEvents(ctx, client.Query{})
	assert.ErrorIs(t, err, client.ErrUnauthorized)
	reader := authtest.User{Name: "system:serviceaccount:" + ns + ":dashboard", UID: "u-2"}
	kube.AddToken("token-reader", reader)
	kube.Grant(reader.Name, "get")
	ro, _ := newSpecClient(t, srv.url, client.WithToken("token-reader"))
	_, err = ro.QueryEvents(ctx, client.Query{CorrelationID: "rr-auth"})
	require.NoError(t, err)
	_, err = ro.WriteEvent(ctx, newEvent("rr-auth"))
	var p *client.Problem
	require.True(t, errors.As(err, &p), "%v", err)
	assert.Equal(t, 403, p.Status)
	assert.ErrorIs(t, err, client.ErrForbidden)
}
