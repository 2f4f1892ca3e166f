package auth_test

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/auth"
	"kubernaut.ai/datastorage/internal/auth/authtest"
)

// serveTLS serves 200s over TLS with the reloader's configuration and
// returns the address.
func serveTLS(t *testing.T, r *auth.CertReloader) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, r.ServerConfig())) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// servedCert makes a fresh TLS connection and returns the common name of
// the certificate the server presented.
func servedCert(t *testing.T, addr string, cfg *tls.Config) (string, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

func TestCertReloaderServesReplacedCertificateWithoutRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first, second := authtest.NewCert(t, "first"), authtest.NewCert(t, "second")
	first.Write(t, certFile, keyFile)
	clk := newClock()
	r, err := auth.NewCertReloader(certFile, keyFile, auth.ReloadOptions{Interval: 10 * time.Second, Now: clk.Now})
	require.NoError(t, err)
	addr := serveTLS(t, r)

	trustBoth := first.Pool()
	trustBoth.AddCert(second.Cert)
	client := &tls.Config{RootCAs: trustBoth, ServerName: "localhost"}
	cn, err := servedCert(t, addr, client)
	require.NoError(t, err)
	assert.Equal(t, "first", cn)

	// A rotation that has replaced the certificate but not yet the key: the
	// pair does not load, and the old one stays in service.
	require.NoError(t, os.WriteFile(certFile, second.CertPEM, 0o600))
	clk.Advance(10 * time.Second)
	cn, err = servedCert(t, addr, client)
	require.NoError(t, err)
	assert.Equal(t, "first", cn)

	require.NoError(t, os.WriteFile(keyFile, second.KeyPEM, 0o600))
	cn, err = servedCert(t, addr, client)
	require.NoError(t, err)
	assert.Equal(t, "first", cn, "not looked at again within the interval")
	clk.Advance(10 * time.Second)
	cn, err = servedCert(t, addr, client)
	require.NoError(t, err)
	assert.Equal(t, "second", cn, "the new pair is served without a restart")

	// Clients trusting only the old certificate now fail, as they should.
	_, err = servedCert(t, addr, &tls.Config{RootCAs: first.Pool(), ServerName: "localhost"})
	require.Error(t, err)
}

func TestCertReloaderRefusesOldTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c := authtest.NewCert(t, "server")
	c.Write(t, certFile, keyFile)
	r, err := auth.NewCertReloader(certFile, keyFile, auth.ReloadOptions{})
	require.NoError(t, err)
	addr := serveTLS(t, r)

	for name, v := range map[string]uint16{"TLS 1.0": tls.VersionTLS10, "TLS 1.1": tls.VersionTLS11} {
		_, err := servedCert(t, addr, &tls.Config{RootCAs: c.Pool(), ServerName: "localhost", MinVersion: v, MaxVersion: v})
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "protocol version", name)
	}
	for name, v := range map[string]uint16{"TLS 1.2": tls.VersionTLS12, "TLS 1.3": tls.VersionTLS13} {
		_, err := servedCert(t, addr, &tls.Config{RootCAs: c.Pool(), ServerName: "localhost", MinVersion: v, MaxVersion: v})
		require.NoError(t, err, name)
	}
	// HTTP/2 is offered.
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: c.Pool(), ServerName: "localhost", NextProtos: []string{"h2"}})
	require.NoError(t, err)
	assert.Equal(t, "h2", conn.ConnectionState().NegotiatedProtocol)
	conn.Close()
}

func TestCertReloaderErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_, err := auth.NewCertReloader(certFile, keyFile, auth.ReloadOptions{})
	require.ErrorIs(t, err, os.ErrNotExist)

	a, b := authtest.NewCert(t, "a"), authtest.NewCert(t, "b")
	require.NoError(t, os.WriteFile(certFile, a.CertPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, b.KeyPEM, 0o600))
	_, err = auth.NewCertReloader(certFile, keyFile, auth.ReloadOptions{})
	require.ErrorContains(t, err, "private key does not match public key")

	a.Write(t, certFile, keyFile)
	r, err := auth.NewCertReloader(certFile, keyFile, auth.ReloadOptions{})
	require.NoError(t, err)
	changed, err := r.Reload()
	require.NoError(t, err)
	assert.False(t, changed, "same files: nothing to do")
	require.NoError(t, os.WriteFile(keyFile, []byte("garbage"), 0o600))
	changed, err = r.Reload()
	require.Error(t, err)
	assert.False(t, changed)
}
