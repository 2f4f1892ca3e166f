package httpapi

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// RateLimit is the per-client request rate limit (server.rateLimit). A
// client is the authenticated caller when authentication is on, else the
// client address of the connection (an IPv6 client by its /64, which one host
// often owns whole). Behind a proxy that address is the proxy's: turn
// authentication on to tell clients apart there.
type RateLimit struct {
	// RequestsPerSecond is the rate each client may sustain; zero disables
	// the limit.
	RequestsPerSecond float64
	// Burst is how many requests a client may send at once after a quiet
	// spell; zero means RequestsPerSecond (at least 1).
	Burst int
	// MaxClients bounds the clients remembered at once; zero means 100,000.
	// Past it, a client is forgotten (its bucket refills) rather than memory
	// growing.
	MaxClients int
}

var kindRateLimited = kind{"rate-limit-exceeded", http.StatusTooManyRequests, "Rate Limit Exceeded"}

// Remembering clients.
const (
	defaultMaxClients = 100_000
	// sweepEvery is how often buckets that have refilled are forgotten.
	sweepEvery = time.Minute
)

// rateLimiter is one token bucket per client. A bucket holds up to burst
// tokens, gains rate tokens a second, and each request takes one.
//
// Memory stays bounded: a bucket that has refilled completely behaves
// exactly like one never made, so sweeps drop those (changing no decision);
// and at MaxClients an arbitrary bucket is dropped to make room.
type rateLimiter struct {
	rate, burst float64
	max         int
	now         func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	nextSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newRateLimiter returns nil when the limit is disabled.
func newRateLimiter(c RateLimit, now func() time.Time) *rateLimiter {
	if c.RequestsPerSecond <= 0 {
		return nil
	}
	burst := float64(c.Burst)
	if burst <= 0 {
		burst = math.Max(1, math.Floor(c.RequestsPerSecond))
	}
	maxClients := c.MaxClients
	if maxClients <= 0 {
		maxClients = defaultMaxClients
	}
	if now == nil {
		now = time.Now
	}
	return &rateLimiter{rate: c.RequestsPerSecond, burst: burst, max: maxClients, now: now, buckets: map[string]*bucket{}}
}

// allow takes a token from key's bucket. When there is none, it says how
// long until there is.
func (l *rateLimiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !now.Before(l.nextSweep) {
		l.sweep(now)
	}
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			for k := range l.buckets {
				delete(l.buckets, k)
				break
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	} else if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = math.Min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// sweep forgets the buckets that have refilled.
func (l *rateLimiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	l.nextSweep = now.Add(sweepEvery)
}

func (l *rateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// clientAddr names the client of a connection for rate limiting: its IP
// address, or for IPv6 its /64 network.
func clientAddr(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
			return host
		}
		return remoteAddr
	}
	addr := ap.Addr().Unmap()
	if addr.Is6() {
		if p, err := addr.Prefix(64); err == nil {
			return p.String()
		}
	}
	return addr.String()
}

// writeRateLimited answers 429 with the seconds until the client's next
// token (at least 1).
func writeRateLimited(w http.ResponseWriter, r *http.Request, wait time.Duration, l *rateLimiter) {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeProblem(w, r, kindRateLimited,
		fmt.Sprintf("this client exceeded %g requests per second (burst %g); retry after %d s", l.rate, l.burst, secs), nil)
}
