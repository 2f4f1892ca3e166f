package auth

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"time"
)

// CertReloader serves a TLS certificate and key from two PEM files and
// picks up new files without a restart: on a TLS handshake, when
// ReloadOptions.Interval has passed since the last look, both files are read
// again, and a changed, valid pair replaces the one served. A pair that does
// not load (a certificate already replaced while its key is not yet) keeps
// the previous one in service until both files agree.
type CertReloader struct {
	files *watchedFiles
	cert  atomic.Pointer[tls.Certificate]
	opts  ReloadOptions
}

// NewCertReloader loads the pair; an invalid pair is an error.
func NewCertReloader(certFile, keyFile string, opts ReloadOptions) (*CertReloader, error) {
	c := &CertReloader{opts: opts.withDefaults()}
	c.files = newWatchedFiles("TLS certificate", "tls_certificate", []string{certFile, keyFile}, opts, func(b [][]byte) error {
		cert, err := tls.X509KeyPair(b[0], b[1])
		if err != nil {
			return err
		}
		c.cert.Store(&cert)
		if cert.Leaf != nil {
			c.opts.Log.Info("TLS certificate loaded", "subject", cert.Leaf.Subject.String(),
				"dns_names", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter.Format(time.RFC3339))
		}
		return nil
	})
	if err := c.files.initial(); err != nil {
		return nil, fmt.Errorf("auth: TLS certificate %s / key %s: %w", certFile, keyFile, err)
	}
	return c, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.files.maybeReload()
	return c.cert.Load(), nil
}

// Reload reads the files now, whatever the interval. It reports whether a
// new pair is in service.
func (c *CertReloader) Reload() (bool, error) { return c.files.reload() }

// ServerConfig is a TLS server configuration serving the reloaded
// certificate: TLS 1.2 at least, HTTP/2 and HTTP/1.1 offered.
func (c *CertReloader) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
