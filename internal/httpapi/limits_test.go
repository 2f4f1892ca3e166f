package httpapi_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/httpapi"
)

// fromAddr sends a request from the local address ip (any 127.0.0.0/8
// address reaches the test server on Linux) and checks it against the spec.
func (b *bundle) fromAddr(ip, method, path string, body []byte, headers ...string) response {
	b.t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, b.srv.URL+path, bytes.NewReader(body))
	require.NoError(b.t, err)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	specReq, _ := http.NewRequest(method, b.srv.URL+path, nil)
	b.spec.CheckResponse(b.t, specReq, resp, out)
	return response{status: resp.StatusCode, header: resp.Header, body: out}
}

func TestRateLimitPerClientAddress(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := setup(t, func(o *options) { o.rateLimit = httpapi.RateLimit{RequestsPerSecond: 0.2, Burst: 3} }, withRegistry(reg))

	for i := range 3 {
		require.Equal(t, 200, b.do("GET", "/api/v1/audit/events", nil).status, "request %d is within the burst", i)
	}
	r := b.do("POST", "/api/v1/audit/events", event(nil))
	require.Equal(t, 429, r.status, "%s", r.body)
	p := r.json(t)
	assert.Equal(t, "https://kubernaut.ai/problems/rate-limit-exceeded", p["type"])
	assert.Equal(t, "Rate Limit Exceeded", p["title"])
	assert.EqualValues(t, 429, p["status"])
	assert.Contains(t, []string{"4", "5"}, r.header.Get("Retry-After"), "a token every 5 s")
	assert.Equal(t, 0, b.total(), "a limited write is not written")

	// Probes are never limited.
	for range 10 {
		require.Equal(t, 200, b.do("GET", "/healthz", nil).status)
		require.Equal(t, 200, b.do("GET", "/readyz", nil).status)
	}
	// Another client address has its own bucket.
	for i := range 3 {
		require.Equal(t, 200, b.fromAddr("127.0.0.2", "GET", "/api/v1/audit/events", nil).status, "request %d from 127.0.0.2", i)
	}
	require.Equal(t, 429, b.fromAddr("127.0.0.2", "GET", "/api/v1/audit/events", nil).status)
	require.Equal(t, 429, b.do("GET", "/api/v1/audit/events", nil).status, "the first client is still limited")

	assert.Equal(t, 3.0, counter(t, reg, "datastorage_rate_limited_requests_total", "client", "ip"))
	assert.Equal(t, 0.0, counter(t, reg, "datastorage_rate_limited_requests_total", "client", "identity"))
}

func TestRateLimitPerIdentity(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, static := withStatic(t, staticTokens, 0)
	b := setup(t, static, withRegistry(reg), func(o *options) { o.rateLimit = httpapi.RateLimit{RequestsPerSecond: 0.5, Burst: 2} })

	// Same address, different callers: separate buckets.
	for range 2 {
		require.Equal(t, 200, b.do("GET", "/api/v1/audit/events", nil, bearer("gateway-secret-0123456789")...).status)
	}
	r := b.do("GET", "/api/v1/audit/events", nil, bearer("gateway-secret-0123456789")...)
	require.Equal(t, 429, r.status)
	assert.Contains(t, []string{"1", "2"}, r.header.Get("Retry-After"))
	require.Equal(t, 200, b.do("GET", "/api/v1/audit/events", nil, bearer("reader-secret-0123456789")...).status)
	// One caller from several addresses: one bucket.
	require.Equal(t, 429, b.fromAddr("127.0.0.3", "GET", "/api/v1/audit/events", nil, bearer("gateway-secret-0123456789")...).status)
	// Refusals by auth are not counted against anyone.
	for range 5 {
		require.Equal(t, 401, b.do("GET", "/api/v1/audit/events", nil).status)
	}
	assert.Equal(t, 2.0, counter(t, reg, "datastorage_rate_limited_requests_total", "client", "identity"))
}
