package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/auth/authtest"
)

// TestTLSAndStaticTokensRotateWithoutRestart runs the binary with HTTPS and
// static bearer tokens, then replaces the certificate and the token file
// under it.
func TestTLSAndStaticTokensRotateWithoutRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	tokenFile := filepath.Join(dir, "tokens.yaml")
	first, second := authtest.NewCert(t, "first"), authtest.NewCert(t, "second")
	first.Write(t, certFile, keyFile)
	require.NoError(t, writeFile(tokenFile, "tokens: [{name: gateway, token: first-token-0123456789, verbs: [get, create]}]\n"))

	// start waits for any HTTP answer on /healthz; over plain HTTP a TLS
	// port answers 400, which is enough to know it listens.
	s := start(t,
		"DATASTORAGE_SERVER_TLS_CERTFILE="+certFile,
		"DATASTORAGE_SERVER_TLS_KEYFILE="+keyFile,
		"DATASTORAGE_AUTH_MODE=static",
		"DATASTORAGE_AUTH_TOKENFILE="+tokenFile,
	)
	base := strings.Replace(s.base, "http://", "https://", 1)
	roots := first.Pool()
	roots.AddCert(second.Cert)
	// A new connection for every request, so each sees the current certificate.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: "localhost"},
		DisableKeepAlives: true,
	}}
	do := func(method, path, token string, body any) (*http.Response, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			raw, err := json.Marshal(body)
			require.NoError(t, err)
			rd = bytes.NewReader(raw)
		}
		req, err := http.NewRequest(method, base+path, rd)
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var v map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return resp, v
	}

	resp, _ := do("GET", "/readyz", "", nil)
	require.Equal(t, 200, resp.StatusCode, "probes need no token")
	assert.Equal(t, "first", resp.TLS.PeerCertificates[0].Subject.CommonName)
	corr := "rr-" + uuid.NewString()
	resp, body := do("POST", "/api/v1/audit/events", "", event(corr, nil))
	require.Equal(t, 401, resp.StatusCode)
	assert.Equal(t, "about:blank", body["type"])
	assert.True(t, strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer"))
	resp, body = do("POST", "/api/v1/audit/events", "first-token-0123456789", event(corr, nil))
	require.Equal(t, 201, resp.StatusCode, "%v", body)

	// Old protocol versions are refused.
	_, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{
		RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11,
	})
	require.Error(t, err)

	// Rotate both; the server picks them up within its reload interval.
	second.Write(t, certFile, keyFile)
	require.NoError(t, writeFile(tokenFile+".new", "tokens: [{name: gateway, token: second-token-012345678, verbs: [get, create]}]\n"))
	require.NoError(t, os.Rename(tokenFile+".new", tokenFile))
	require.Eventually(t, func() bool {
		resp, _ := do("GET", "/api/v1/audit/events?correlation_id="+corr, "second-token-012345678", nil)
		return resp.StatusCode == 200 && resp.TLS.PeerCertificates[0].Subject.CommonName == "second"
	}, 15*time.Second, 100*time.Millisecond, "new certificate and token in service")
	resp, _ = do("GET", "/api/v1/audit/events", "first-token-0123456789", nil)
	assert.Equal(t, 401, resp.StatusCode, "the old token is revoked")

	// Metrics stay plain HTTP and count the decisions.
	mresp, err := http.Get(s.metrics)
	require.NoError(t, err)
	m, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	assert.Contains(t, string(m), `datastorage_auth_decisions_total{result="unauthorized"}`)
	assert.Contains(t, string(m), `datastorage_auth_decisions_total{result="allowed"}`)
	assert.NotContains(t, s.output(), "first-token", "tokens never reach the log")
}

func TestSecurityConfigErrorsStopTheStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := "DATASTORAGE_DATABASE_URL=postgres://nobody@127.0.0.1:1/x"
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, writeFile(bad, "tokens: [{name: a, token: t-0123456789, verbs: [delete]}]\n"))
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"missing token file", []string{db, "DATASTORAGE_AUTH_MODE=static", "DATASTORAGE_AUTH_TOKENFILE=" + dir + "/nope.yaml"}, "auth.tokenFile"},
		{"invalid token file", []string{db, "DATASTORAGE_AUTH_MODE=static", "DATASTORAGE_AUTH_TOKENFILE=" + bad}, `unknown verb "delete"`},
		{"missing certificate", []string{db, "DATASTORAGE_SERVER_TLS_CERTFILE=" + dir + "/c", "DATASTORAGE_SERVER_TLS_KEYFILE=" + dir + "/k"}, "server.tls"},
		{"kubernetes outside a cluster", []string{db, "DATASTORAGE_AUTH_MODE=kubernetes", "DATASTORAGE_AUTH_NAMESPACE=ns",
			"KUBERNETES_SERVICE_HOST=", "KUBECONFIG="}, "KUBERNETES_SERVICE_HOST"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := run(t, tc.env, "serve")
			assert.NotEqual(t, 0, code, out)
			assert.Contains(t, out, tc.want)
		})
	}
}
