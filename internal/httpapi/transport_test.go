package httpapi_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
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
)

// Issue 18, items 11 and 12: how a body is framed and labelled.

// bodyRoutes are the routes that read a JSON body, each with a body that
// would succeed (or at least be read) and the status of that success.
func bodyRoutes(t *testing.T) []struct {
	method, path, body string
	ok                 int
} {
	return []struct {
		method, path, body string
		ok                 int
	}{
		{"POST", "/api/v1/audit/events", string(mustJSON(t, event(nil))), 201},
		{"POST", "/api/v1/audit/events/batch", string(mustJSON(t, []any{event(nil)})), 201},
		{"POST", "/api/v1/audit/notifications", string(mustJSON(t, notification(nil))), 201},
		{"POST", "/api/v1/audit/legal-hold", `{"correlation_id":"rr-ct","reason":"r"}`, 200},
		{"POST", "/api/v1/audit/verify-chain", `{"correlation_id":"rr-ct"}`, 200},
		{"DELETE", "/api/v1/audit/legal-hold/rr-ct", `{"release_reason":"r"}`, 200},
	}
}

func TestJSONEndpointsRefuseOtherMediaTypesWith415(t *testing.T) {
	t.Parallel()
	b, logs := setupHostile(t)
	b.writeChain("rr-ct", 1)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(mustJSON(t, event(nil)))
	require.NoError(t, zw.Close())

	for _, rt := range bodyRoutes(t) {
		for _, ct := range []string{"text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
			"multipart/form-data; boundary=x", "", "application/jsonx", "application/json; charset=iso-8859-1",
			"application/problem+json", "not a media type"} {
			r := b.do(rt.method, rt.path, rt.body, "Content-Type", ct)
			require.Equal(t, 415, r.status, "%s %s with %q: %s", rt.method, rt.path, ct, r.body)
			p := r.json(t)
			assert.Equal(t, "https://kubernaut.ai/problems/unsupported-media-type", p["type"])
			assert.Equal(t, "Unsupported Media Type", p["title"])
		}
		// A compressed body is refused for what it is, not called invalid JSON.
		r := b.do(rt.method, rt.path, gz.Bytes(), "Content-Encoding", "gzip")
		require.Equal(t, 415, r.status, "%s %s gzip: %s", rt.method, rt.path, r.body)
		assert.Contains(t, r.json(t)["detail"], "Content-Encoding gzip")
	}
	require.Equal(t, 1, b.total(), "nothing was written")
	var holds int
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), "SELECT count(*) FROM audit_events WHERE legal_hold").Scan(&holds))
	require.Zero(t, holds, "no legal hold was placed")

	// The same requests labelled JSON pass (a charset parameter of utf-8 is fine).
	for _, rt := range bodyRoutes(t) {
		r := b.do(rt.method, rt.path, rt.body, "Content-Type", "application/json; charset=UTF-8")
		require.Equal(t, rt.ok, r.status, "%s %s: %s", rt.method, rt.path, r.body)
	}
	// A request without a body needs no Content-Type: the handler says what is missing.
	r := b.do("POST", "/api/v1/audit/verify-chain", nil)
	require.Equal(t, 400, r.status)
	require.NotContains(t, logs.String(), "level=ERROR")
}

// rawExchange writes raw on a new connection to b's server and reads one
// response; with wantClosed, it also checks that the server then closed
// the connection.
func rawExchange(t *testing.T, b *bundle, raw string, wantClosed bool) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", b.srv.Listener.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	// A guard against a hung test, not a measured time.
	require.NoError(t, c.SetDeadline(time.Now().Add(time.Minute)))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if wantClosed {
		_, err = br.ReadByte()
		require.ErrorIs(t, err, io.EOF, "the connection is closed after the response")
	}
	return resp, body
}

func TestContentLengthWithTransferEncodingIsRefusedAndTheConnectionClosed(t *testing.T) {
	t.Parallel()
	b, _ := setupHostile(t)
	id := uuid.NewString()
	ev := string(mustJSON(t, event(map[string]any{"event_id": id})))
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(ev), ev)
	head := "POST /api/v1/audit/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

	for _, h := range []string{
		"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
		"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
		"transfer-encoding: chunked\r\ncontent-length: 4\r\n",
	} {
		resp, body := rawExchange(t, b, head+h+"\r\n"+chunked, true)
		require.Equal(t, 400, resp.StatusCode, "%s", body)
		assert.Contains(t, string(body), "Content-Length and Transfer-Encoding")
		require.Equal(t, 0, b.count(id), "nothing was written")
	}

	// The same body framed once is written: the check refuses only the conflict.
	resp, body := rawExchange(t, b, head+"Transfer-Encoding: chunked\r\n\r\n"+chunked, false)
	require.Equal(t, 201, resp.StatusCode, "%s", body)
	require.Equal(t, 1, b.count(id))
}

func TestSlowBodyIs408WithoutInternalAddresses(t *testing.T) {
	t.Parallel()
	b, logs := setupHostileServer(t, time.Second)
	c, err := net.Dial("tcp", b.srv.Listener.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(time.Minute)))
	// Half a body, then nothing: the server's read timeout ends the wait.
	_, err = io.WriteString(c, "POST /api/v1/audit/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"version\":")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, 408, resp.StatusCode, "%s", body)
	assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	assert.Contains(t, string(body), "https://kubernaut.ai/problems/request-timeout")
	local, remote := c.LocalAddr().String(), c.RemoteAddr().String()
	for _, leak := range []string{"127.0.0.1", "tcp", local, remote, "i/o timeout"} {
		assert.NotContains(t, string(body), leak)
	}
	require.NotContains(t, logs.String(), "level=ERROR")
	require.Zero(t, b.total())
}

func TestNotFoundDoesNotEchoALongPath(t *testing.T) {
	t.Parallel()
	b, _ := setupHostile(t)
	long := "/api/v1/" + strings.Repeat("a", 100<<10)
	r := b.do("GET", long, nil)
	require.Equal(t, 404, r.status)
	assert.Less(t, len(r.body), 2048, "the problem is bounded, not twice the path")
	p := r.json(t)
	assert.Equal(t, long[:256], p["instance"])
	assert.True(t, strings.HasSuffix(p["detail"].(string), "…"))

	r = b.do("PUT", "/api/v1/audit/events/"+strings.Repeat("b", 100<<10), nil)
	require.Equal(t, 405, r.status)
	assert.Less(t, len(r.body), 2048)
}

func TestTokenFileDeletedKeepsTokensAndRaisesTheMetricEmptyListRevokes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	require.NoError(t, os.WriteFile(path, []byte("tokens: [{name: gateway, token: kept-secret-0123456789, verbs: [get, create]}]\n"), 0o600))
	reg := prometheus.NewRegistry()
	s, err := auth.NewStatic(path, auth.ReloadOptions{Interval: 10 * time.Millisecond, Metrics: auth.NewReloadMetrics(reg)})
	require.NoError(t, err)
	b := setup(t, func(o *options) { o.auth = s })
	token := bearer("kept-secret-0123456789")
	failing := func() float64 {
		families, err := reg.Gather()
		require.NoError(t, err)
		for _, f := range families {
			if f.GetName() != "datastorage_auth_file_reload_failing" {
				continue
			}
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == "token_file" {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	require.Equal(t, 0.0, failing())

	for _, broken := range []func(){
		func() { require.NoError(t, os.Remove(path)) },
		func() { require.NoError(t, os.WriteFile(path, nil, 0o600)) },
		func() { require.NoError(t, os.WriteFile(path, []byte("tokens: [{name: gateway, tok"), 0o600)) },
	} {
		broken()
		// Requests look at the file; wait until one has seen it broken.
		require.Eventually(t, func() bool {
			return b.do("GET", "/api/v1/audit/events", nil, token...).status == 200 && failing() == 1
		}, 10*time.Second, 20*time.Millisecond, "the old token keeps working and the gauge says the file failed")
		assert.Greater(t, counter(t, reg, "datastorage_auth_file_reload_errors_total", "file", "token_file"), 0.0)
		require.Equal(t, 201, b.do("POST", "/api/v1/audit/events", event(nil), token...).status)
	}

	require.NoError(t, os.WriteFile(path, []byte("tokens: []\n"), 0o600))
	require.Eventually(t, func() bool {
		return b.do("GET", "/api/v1/audit/events", nil, token...).status == 401
	}, 10*time.Second, 20*time.Millisecond, "an explicitly empty list revokes every token")
	assert.Equal(t, 0.0, failing())
}
