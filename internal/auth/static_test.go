package auth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/auth"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

// clock is a settable clock for reload intervals and cache expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const tokens = `
tokens:
  - name: gateway
    token: gateway-token-0123456789
    verbs: [get, create]
  - name: reader
    token: reader-token-0123456789
    verbs: [get]
  - name: alice
    token: alice-token-0123456789
    verbs: [get, update]
    user: true
`

func TestStaticAuthorizesListedTokensWithTheirVerbs(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	writeFile(t, path, tokens)
	s, err := auth.NewStatic(path, auth.ReloadOptions{})
	require.NoError(t, err)
	ctx := context.Background()

	id, err := s.Authorize(ctx, "gateway-token-0123456789", auth.VerbCreate)
	require.NoError(t, err)
	assert.Equal(t, auth.Identity{Name: "gateway"}, id)
	_, err = s.Authorize(ctx, "gateway-token-0123456789", auth.VerbGet)
	require.NoError(t, err)

	id, err = s.Authorize(ctx, "gateway-token-0123456789", auth.VerbUpdate)
	require.ErrorIs(t, err, auth.ErrForbidden)
	assert.Equal(t, "gateway", id.Name, "a forbidden caller is still identified")

	_, err = s.Authorize(ctx, "reader-token-0123456789", auth.VerbCreate)
	require.ErrorIs(t, err, auth.ErrForbidden)

	id, err = s.Authorize(ctx, "alice-token-0123456789", auth.VerbUpdate)
	require.NoError(t, err)
	assert.Equal(t, auth.Identity{Name: "alice", User: true}, id)

	for _, bad := range []string{"", "gateway-token-012345678", "gateway-token-01234567890", "GATEWAY-TOKEN-0123456789"} {
		_, err = s.Authorize(ctx, bad, auth.VerbGet)
		require.ErrorIs(t, err, auth.ErrUnauthenticated, "token %q", bad)
	}
}

func TestStaticTokenFileRotationWithoutRestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	writeFile(t, path, "tokens:\n  - {name: gateway, token: old-secret-0123456789, verbs: [get, create]}\n")
	clk := newClock()
	s, err := auth.NewStatic(path, auth.ReloadOptions{Interval: 5 * time.Second, Now: clk.Now})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = s.Authorize(ctx, "old-secret-0123456789", auth.VerbCreate)
	require.NoError(t, err)

	// Same length on purpose: detection must not rely on the size.
	writeFile(t, path, "tokens:\n  - {name: gateway, token: new-secret-0123456789, verbs: [get, create]}\n")
	_, err = s.Authorize(ctx, "old-secret-0123456789", auth.VerbCreate)
	require.NoError(t, err, "within the interval the file is not looked at")

	clk.Advance(5 * time.Second)
	_, err = s.Authorize(ctx, "old-secret-0123456789", auth.VerbCreate)
	require.ErrorIs(t, err, auth.ErrUnauthenticated, "the old token is revoked")
	id, err := s.Authorize(ctx, "new-secret-0123456789", auth.VerbCreate)
	require.NoError(t, err)
	assert.Equal(t, "gateway", id.Name)
}

func TestStaticBrokenRewriteKeepsPreviousTokens(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	writeFile(t, path, "tokens:\n  - {name: gateway, token: secret-0123456789, verbs: [get]}\n")
	s, err := auth.NewStatic(path, auth.ReloadOptions{})
	require.NoError(t, err)
	ctx := context.Background()

	for name, content := range map[string]string{
		"empty":       "",
		"half":        "tokens:\n  - {name: gateway, tok",
		"bad verb":    "tokens:\n  - {name: gateway, token: other-0123456789, verbs: [delete]}\n",
		"unknown key": "tokens:\n  - {name: gateway, token: other-0123456789, verbs: [get], role: admin}\n",
	} {
		writeFile(t, path, content)
		changed, err := s.Reload()
		require.Error(t, err, name)
		assert.False(t, changed, name)
		_, err = s.Authorize(ctx, "secret-0123456789", auth.VerbGet)
		require.NoError(t, err, "%s: the previous tokens stay in force", name)
	}
	require.NoError(t, os.Remove(path))
	_, err = s.Reload()
	require.Error(t, err)
	_, err = s.Authorize(ctx, "secret-0123456789", auth.VerbGet)
	require.NoError(t, err, "a vanished file keeps the previous tokens")

	writeFile(t, path, "tokens: []\n")
	changed, err := s.Reload()
	require.NoError(t, err)
	assert.True(t, changed)
	_, err = s.Authorize(ctx, "secret-0123456789", auth.VerbGet)
	require.ErrorIs(t, err, auth.ErrUnauthenticated, "`tokens: []` revokes everybody")
}

func TestStaticFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want string }{
		{"empty", "", "empty"},
		{"no tokens key", "other: 1\n", "field other not found"},
		{"tokens key null", "tokens:\n", "no `tokens` key"},
		{"missing name", "tokens: [{token: abcdefabcdef, verbs: [get]}]", "tokens[0]: name is required"},
		{"duplicate name", "tokens: [{name: a, token: t1t1t1t1, verbs: [get]}, {name: a, token: t2t2t2t2, verbs: [get]}]", "tokens[1] (a): name is used twice"},
		{"missing token", "tokens: [{name: a, verbs: [get]}]", "tokens[0] (a): token is required"},
		{"duplicate token", "tokens: [{name: a, token: same-token, verbs: [get]}, {name: b, token: same-token, verbs: [get]}]", "tokens[1] (b): token is the same"},
		{"spaces", "tokens: [{name: a, token: ' padded ', verbs: [get]}]", "white space"},
		{"no verbs", "tokens: [{name: a, token: abcabcabc}]", "at least one of get, create, update"},
		{"unknown verb", "tokens: [{name: a, token: abcabcabc, verbs: [get, delete]}]", `unknown verb "delete"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".yaml")
			writeFile(t, path, tc.content)
			_, err := auth.NewStatic(path, auth.ReloadOptions{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "same-token", "tokens never appear in errors")
		})
	}
	_, err := auth.NewStatic(filepath.Join(dir, "missing.yaml"), auth.ReloadOptions{})
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	for header, want := range map[string]string{
		"Bearer abc":     "abc",
		"bearer abc":     "abc",
		"BEARER   abc  ": "abc",
		"Bearer":         "",
		"Bearer ":        "",
		"Basic abc":      "",
		"":               "",
		"abc":            "",
	} {
		got, ok := auth.BearerToken(header)
		assert.Equal(t, want, got, header)
		assert.Equal(t, want != "", ok, header)
	}
}

func TestIdentityContext(t *testing.T) {
	t.Parallel()
	_, ok := auth.FromContext(context.Background())
	assert.False(t, ok)
	id, ok := auth.FromContext(auth.NewContext(context.Background(), auth.Identity{Name: "bob", User: true}))
	assert.True(t, ok)
	assert.Equal(t, auth.Identity{Name: "bob", User: true}, id)
}

func TestStaticConcurrentRequestsDuringRotation(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	writeFile(t, path, "tokens: [{name: a, token: token-a-0123456789, verbs: [get]}]\n")
	s, err := auth.NewStatic(path, auth.ReloadOptions{Interval: time.Millisecond})
	require.NoError(t, err)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := s.Authorize(context.Background(), "token-a-0123456789", auth.VerbGet)
				if err != nil && !errors.Is(err, auth.ErrUnauthenticated) {
					t.Errorf("unexpected error: %v", err)
					return
				}
			}
		})
	}
	for i := range 50 {
		tok := "token-a-0123456789"
		if i%2 == 1 {
			tok = "token-b-0123456789"
		}
		// Written in place, not renamed: readers may see partial files.
		writeFile(t, path, "tokens: [{name: a, token: "+tok+", verbs: [get]}]\n")
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
}

func TestStaticReloadFailuresAreCountedAndShown(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	writeFile(t, path, "tokens:\n  - {name: gateway, token: secret-0123456789, verbs: [get]}\n")
	reg := prometheus.NewRegistry()
	s, err := auth.NewStatic(path, auth.ReloadOptions{Metrics: auth.NewReloadMetrics(reg)})
	require.NoError(t, err)
	failures := func() float64 { return series(t, reg, "datastorage_auth_file_reload_errors_total", "token_file") }
	failing := func() float64 { return series(t, reg, "datastorage_auth_file_reload_failing", "token_file") }
	require.Equal(t, 0.0, failures())
	require.Equal(t, 0.0, failing())
	require.Equal(t, 0.0, series(t, reg, "datastorage_auth_file_reload_failing", "tls_certificate"), "present for files not in use")

	writeFile(t, path, "tokens:\n  - {name: gateway, tok")
	_, err = s.Reload()
	require.Error(t, err)
	assert.Equal(t, 1.0, failures())
	assert.Equal(t, 1.0, failing(), "older tokens are in force")

	require.NoError(t, os.Remove(path))
	_, err = s.Reload()
	require.Error(t, err)
	assert.Equal(t, 2.0, failures())
	assert.Equal(t, 1.0, failing())
	_, err = s.Authorize(context.Background(), "secret-0123456789", auth.VerbGet)
	require.NoError(t, err, "the last good tokens stay in force")

	// Back to the last good contents: unchanged, and fine again.
	writeFile(t, path, "tokens:\n  - {name: gateway, token: secret-0123456789, verbs: [get]}\n")
	changed, err := s.Reload()
	require.NoError(t, err)
	assert.False(t, changed)
	assert.Equal(t, 0.0, failing())
	assert.Equal(t, 2.0, failures())
}

// series returns the value of the gathered series name{file=file}.
func series(t *testing.T, reg *prometheus.Registry, name, file string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "file" && l.GetValue() == file {
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{file=%q}", name, file)
	return 0
}
