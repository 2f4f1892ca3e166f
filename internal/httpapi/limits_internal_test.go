package httpapi

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestTokenBucket(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newRateLimiter(RateLimit{RequestsPerSecond: 2, Burst: 4}, clk.now)
	for i := range 4 {
		ok, _ := l.allow("a")
		require.True(t, ok, "burst request %d", i)
	}
	ok, wait := l.allow("a")
	require.False(t, ok)
	assert.Equal(t, 500*time.Millisecond, wait)

	clk.advance(250 * time.Millisecond)
	ok, wait = l.allow("a")
	require.False(t, ok)
	assert.Equal(t, 250*time.Millisecond, wait)
	clk.advance(250 * time.Millisecond)
	ok, _ = l.allow("a")
	require.True(t, ok, "one token after 0.5 s at 2/s")

	// Sustained: 2 a second, never more than the burst saved up.
	clk.advance(time.Hour)
	n := 0
	for range 100 {
		if ok, _ := l.allow("a"); ok {
			n++
		}
	}
	assert.Equal(t, 4, n, "an idle hour saves up only the burst")

	ok, _ = l.allow("b")
	assert.True(t, ok, "another key has its own bucket")
}

func TestTokenBucketDefaults(t *testing.T) {
	t.Parallel()
	assert.Nil(t, newRateLimiter(RateLimit{}, nil), "zero disables")
	assert.Equal(t, 50.0, newRateLimiter(RateLimit{RequestsPerSecond: 50}, nil).burst)
	assert.Equal(t, 1.0, newRateLimiter(RateLimit{RequestsPerSecond: 0.1}, nil).burst)
}

func TestTokenBucketMemoryIsBounded(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newRateLimiter(RateLimit{RequestsPerSecond: 10, Burst: 10, MaxClients: 100}, clk.now)
	for i := range 1000 {
		l.allow("client-" + strconv.Itoa(i))
		require.LessOrEqual(t, l.size(), 100)
	}
	// Idle buckets that have refilled are swept: they would decide nothing
	// differently from a fresh one.
	clk.advance(2 * time.Second)
	l.allow("late")
	assert.Equal(t, 100, l.size(), "no sweep before sweepEvery")
	clk.advance(sweepEvery)
	l.allow("later")
	assert.Equal(t, 1, l.size())
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"10.1.2.3:5555":              "10.1.2.3",
		"[::ffff:10.1.2.3]:5555":     "10.1.2.3",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"[fe80::1%eth0]:80":          "fe80::/64",
		"not-an-address":             "not-an-address",
		"host.example:80":            "host.example",
	} {
		assert.Equal(t, want, clientAddr(in), in)
	}
}

func TestRouteVerb(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/api/v1/audit/legal-hold", "get"},
		{"POST", "/api/v1/audit/legal-hold", "update"},
		{"DELETE", "/api/v1/audit/legal-hold/{correlation_id}", "update"},
		{"POST", "/api/v1/audit/verify-chain", "create"},
		{"GET", "/api/v1/audit/export", "get"},
		{"POST", "/api/v1/audit/legal-holdings", "create"},
	} {
		assert.Equal(t, tc.want, string(routeVerb(tc.method, tc.path)), "%s %s", tc.method, tc.path)
	}
}
