package auth_test

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/auth"
	"kubernaut.ai/datastorage/internal/auth/authtest"
)

const (
	gatewaySA = "system:serviceaccount:kubernaut:gateway"
	alice     = "alice@example.com"
)

func newKube(t *testing.T, opts ...func(*auth.KubernetesOptions)) (*authtest.Kubernetes, *auth.Kubernetes, *clock) {
	t.Helper()
	fake := authtest.NewKubernetes(t, "kubernaut")
	fake.AddToken("gw-token", authtest.User{Name: gatewaySA, UID: "u-1", Groups: []string{"system:serviceaccounts", "system:authenticated"}})
	fake.AddToken("alice-token", authtest.User{Name: alice, Groups: []string{"sre"}})
	fake.AddToken("nobody-token", authtest.User{Name: "nobody"})
	fake.Grant(gatewaySA, "get", "create")
	fake.Grant(alice, "get", "update")
	clk := newClock()
	o := auth.KubernetesOptions{Cluster: fake.Cluster(), Namespace: "kubernaut", Now: clk.Now}
	for _, f := range opts {
		f(&o)
	}
	k, err := auth.NewKubernetes(o)
	require.NoError(t, err)
	return fake, k, clk
}

func TestKubernetesReviewsTokenThenVerbs(t *testing.T) {
	t.Parallel()
	fake, k, _ := newKube(t)
	ctx := context.Background()

	id, err := k.Authorize(ctx, "gw-token", auth.VerbCreate)
	require.NoError(t, err)
	assert.Equal(t, auth.Identity{Name: gatewaySA, User: false}, id, "a service account is not a user")
	tr, sar := fake.Calls()
	assert.Equal(t, 1, tr)
	assert.Equal(t, 2, sar)
	assert.Equal(t, []string{"get", "create"}, fake.ReviewedVerbs(), "get always, plus create for writes")
	assert.Equal(t, []string{"system:serviceaccounts", "system:authenticated"}, fake.ReviewedGroups()[0], "groups are passed on")

	id, err = k.Authorize(ctx, "alice-token", auth.VerbUpdate)
	require.NoError(t, err)
	assert.Equal(t, auth.Identity{Name: alice, User: true}, id, "anyone else is a user")
	assert.Equal(t, []string{"get", "create", "get", "update"}, fake.ReviewedVerbs())

	_, err = k.Authorize(ctx, "alice-token", auth.VerbCreate)
	require.ErrorIs(t, err, auth.ErrForbidden)
	assert.Contains(t, err.Error(), "may not create services/data-storage-service in namespace kubernaut")

	_, err = k.Authorize(ctx, "nobody-token", auth.VerbGet)
	require.ErrorIs(t, err, auth.ErrForbidden)

	_, err = k.Authorize(ctx, "forged-token", auth.VerbGet)
	require.ErrorIs(t, err, auth.ErrUnauthenticated)
	_, err = k.Authorize(ctx, "", auth.VerbGet)
	require.ErrorIs(t, err, auth.ErrUnauthenticated)
}

func TestKubernetesCachesPositiveAnswers(t *testing.T) {
	t.Parallel()
	fake, k, clk := newKube(t)
	ctx := context.Background()

	_, err := k.Authorize(ctx, "gw-token", auth.VerbCreate)
	require.NoError(t, err)
	tr, sar := fake.Calls()
	require.Equal(t, [2]int{1, 2}, [2]int{tr, sar})

	// The second request makes no API call at all.
	for range 10 {
		_, err = k.Authorize(ctx, "gw-token", auth.VerbCreate)
		require.NoError(t, err)
		_, err = k.Authorize(ctx, "gw-token", auth.VerbGet)
		require.NoError(t, err)
	}
	tr, sar = fake.Calls()
	assert.Equal(t, [2]int{1, 2}, [2]int{tr, sar})

	// Refusals are not cached: a grant takes effect at once.
	_, err = k.Authorize(ctx, "gw-token", auth.VerbUpdate)
	require.ErrorIs(t, err, auth.ErrForbidden)
	fake.Grant(gatewaySA, "update")
	_, err = k.Authorize(ctx, "gw-token", auth.VerbUpdate)
	require.NoError(t, err)
	tr, sar = fake.Calls()
	assert.Equal(t, [2]int{1, 4}, [2]int{tr, sar}, "the token review stays cached, update is reviewed twice")

	// After the TTL everything is asked again: a revoked token stops working.
	fake.RemoveToken("gw-token")
	clk.Advance(29 * time.Second)
	_, err = k.Authorize(ctx, "gw-token", auth.VerbCreate)
	require.NoError(t, err, "still cached")
	clk.Advance(time.Second)
	_, err = k.Authorize(ctx, "gw-token", auth.VerbCreate)
	require.ErrorIs(t, err, auth.ErrUnauthenticated)
}

func TestKubernetesCacheIsBounded(t *testing.T) {
	t.Parallel()
	fake, k, _ := newKube(t, func(o *auth.KubernetesOptions) { o.CacheSize = 3 })
	ctx := context.Background()
	tokens := []string{"t0", "t1", "t2", "t3", "t4", "t5"}
	for _, tok := range tokens {
		fake.AddToken(tok, authtest.User{Name: "user-" + tok})
		fake.Grant("user-"+tok, "get")
		_, err := k.Authorize(ctx, tok, auth.VerbGet)
		require.NoError(t, err)
	}
	assert.LessOrEqual(t, auth.CacheSize(k), 3)
	// Whatever was evicted still works, at the price of a new review.
	for _, tok := range tokens {
		_, err := k.Authorize(ctx, tok, auth.VerbGet)
		require.NoError(t, err)
	}
	assert.LessOrEqual(t, auth.CacheSize(k), 3)
}

func TestKubernetesCacheCanBeDisabled(t *testing.T) {
	t.Parallel()
	fake, k, _ := newKube(t, func(o *auth.KubernetesOptions) { o.CacheTTL = -1 })
	for range 3 {
		_, err := k.Authorize(context.Background(), "gw-token", auth.VerbGet)
		require.NoError(t, err)
	}
	tr, sar := fake.Calls()
	assert.Equal(t, [2]int{3, 3}, [2]int{tr, sar})
}

func TestKubernetesOutageIsUnavailable(t *testing.T) {
	t.Parallel()
	fake, k, clk := newKube(t)
	ctx := context.Background()
	_, err := k.Authorize(ctx, "gw-token", auth.VerbGet)
	require.NoError(t, err)

	fake.SetDown(true)
	_, err = k.Authorize(ctx, "gw-token", auth.VerbGet)
	require.NoError(t, err, "a cached answer survives an outage")
	_, err = k.Authorize(ctx, "alice-token", auth.VerbGet)
	require.ErrorIs(t, err, auth.ErrUnavailable, "503 from the API")
	assert.Contains(t, err.Error(), "503")

	fake.Close()
	clk.Advance(time.Minute)
	_, err = k.Authorize(ctx, "gw-token", auth.VerbGet)
	require.ErrorIs(t, err, auth.ErrUnavailable, "API unreachable")
}

func TestKubernetesOwnCredentialRefusedIsUnavailable(t *testing.T) {
	t.Parallel()
	fake := authtest.NewKubernetes(t, "kubernaut")
	fake.AddToken("gw-token", authtest.User{Name: gatewaySA})
	c := fake.Cluster()
	c.Token = "wrong-sa-token"
	k, err := auth.NewKubernetes(auth.KubernetesOptions{Cluster: c, Namespace: "kubernaut"})
	require.NoError(t, err)
	_, err = k.Authorize(context.Background(), "gw-token", auth.VerbGet)
	require.ErrorIs(t, err, auth.ErrUnavailable, "not the caller's fault")
	assert.Contains(t, err.Error(), "system:auth-delegator")
}

func TestKubernetesTimesOut(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hang := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	k, err := auth.NewKubernetes(auth.KubernetesOptions{
		Cluster: auth.Cluster{
			Server: hang.URL,
			CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hang.Certificate().Raw}),
		},
		Namespace: "ns",
		Timeout:   200 * time.Millisecond,
	})
	require.NoError(t, err)
	start := time.Now()
	_, err = k.Authorize(context.Background(), "gw-token", auth.VerbGet)
	require.ErrorIs(t, err, auth.ErrUnavailable)
	assert.Less(t, time.Since(start), 3*time.Second)
}

func TestKubernetesOptionErrors(t *testing.T) {
	t.Parallel()
	fake := authtest.NewKubernetes(t, "ns")
	_, err := auth.NewKubernetes(auth.KubernetesOptions{Cluster: fake.Cluster()})
	require.ErrorContains(t, err, "namespace")
	c := fake.Cluster()
	c.CAData = []byte("not pem")
	_, err = auth.NewKubernetes(auth.KubernetesOptions{Cluster: c, Namespace: "ns"})
	require.ErrorContains(t, err, "PEM")
	_, err = auth.NewKubernetes(auth.KubernetesOptions{Namespace: "ns"})
	require.ErrorContains(t, err, "server")
}

func TestKubernetesConcurrentRequests(t *testing.T) {
	t.Parallel()
	_, k, clk := newKube(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 50 {
				tok, verb := "gw-token", auth.VerbCreate
				if (i+j)%2 == 0 {
					tok, verb = "alice-token", auth.VerbUpdate
				}
				if _, err := k.Authorize(context.Background(), tok, verb); err != nil {
					t.Errorf("%s: %v", tok, err)
					return
				}
				if j%10 == 0 {
					clk.Advance(10 * time.Second)
				}
			}
		})
	}
	wg.Wait()
}
