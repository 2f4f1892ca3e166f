package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// problems collects validation errors so that all of them are reported in
// one go.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, fmt.Errorf("config: "+key+": "+format, args...))
}

func between[T int | int64](p *problems, key string, v, lo, hi T) {
	if v < lo || v > hi {
		p.add(key, "must be between %d and %d, got %d", lo, hi, v)
	}
}

func atLeast[T int | int64](p *problems, key string, v, lo T) {
	if v < lo {
		p.add(key, "must be at least %d, got %d", lo, v)
	}
}

func positive(p *problems, key string, d Duration) {
	if d.Duration <= 0 {
		p.add(key, "must be greater than 0, got %s", d)
	}
}

func oneOf(p *problems, key, v string, allowed []string) {
	if !slices.Contains(allowed, v) {
		p.add(key, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
	}
}

func (c Config) validate() []error {
	var p problems

	s := c.Server
	between(&p, "server.port", s.Port, 1, 65535)
	between(&p, "server.metricsPort", s.MetricsPort, 1, 65535)
	if s.MetricsPort == s.Port {
		p.add("server.metricsPort", "must differ from server.port, both are %d", s.Port)
	}
	between(&p, "server.maxBatchSize", s.MaxBatchSize, 1, 100_000)
	if s.MaxBodySize < 1 {
		p.add("server.maxBodySize", "must be at least 1 byte, got %d", int64(s.MaxBodySize))
	}
	positive(&p, "server.shutdownTimeout", s.ShutdownTimeout)
	if s.EndpointPropagationDelay.Duration < 0 {
		p.add("server.endpointPropagationDelay", "must not be negative, got %s", s.EndpointPropagationDelay)
	}
	positive(&p, "server.readHeaderTimeout", s.ReadHeaderTimeout)
	positive(&p, "server.readTimeout", s.ReadTimeout)
	positive(&p, "server.writeTimeout", s.WriteTimeout)
	positive(&p, "server.idleTimeout", s.IdleTimeout)
	positive(&p, "server.requestTimeout", s.RequestTimeout)
	// One without the other is refused rather than ignored, so nobody
	// believes traffic is encrypted when it is not.
	if s.TLS.CertFile != "" && s.TLS.KeyFile == "" {
		p.add("server.tls.keyFile", "required when server.tls.certFile is set")
	}
	if s.TLS.KeyFile != "" && s.TLS.CertFile == "" {
		p.add("server.tls.certFile", "required when server.tls.keyFile is set")
	}
	between(&p, "server.rateLimit.requestsPerSecond", s.RateLimit.RequestsPerSecond, 0, 1_000_000)
	between(&p, "server.rateLimit.burst", s.RateLimit.Burst, 0, 1_000_000)

	c.Database.validate(&p)

	r := c.Redis
	if !validHostPort(r.Addr) {
		p.add("redis.addr", "must be host:port with a port between 1 and 65535, got %q", r.Addr)
	}
	if r.SecretsFile != "" && r.PasswordKey == "" {
		p.add("redis.passwordKey", "required when redis.secretsFile is set")
	}
	// Redis has 16 databases by default; servers configured with more are fine.
	between(&p, "redis.db", r.DB, 0, 1<<16)
	atLeast(&p, "redis.dlqMaxLen", r.DLQMaxLen, 1)
	positive(&p, "redis.claimIdle", r.ClaimIdle)
	between(&p, "redis.replayBatch", r.ReplayBatch, 1, 10_000)
	between(&p, "redis.maxDeliveries", r.MaxDeliveries, 1, 1000)
	r.validateHA(&p)

	a := c.Auth
	switch a.Mode {
	case "none", "kubernetes":
		if a.Mode == "kubernetes" && a.Namespace == "" {
			p.add("auth.namespace", "required when auth.mode is kubernetes (the namespace of the data-storage-service Service)")
		}
		// Refused rather than ignored, so nobody believes tokens are checked.
		if a.TokenFile != "" {
			p.add("auth.tokenFile", "only used when auth.mode is static, but auth.mode is %q", a.Mode)
		}
	case "static":
		if a.TokenFile == "" {
			p.add("auth.tokenFile", "required when auth.mode is static")
		}
	default:
		oneOf(&p, "auth.mode", a.Mode, []string{"none", "static", "kubernetes"})
	}

	in := c.Ingest
	positive(&p, "ingest.maxEventAge", in.MaxEventAge)
	if in.MaxClockSkew.Duration < 0 {
		p.add("ingest.maxClockSkew", "must not be negative, got %s", in.MaxClockSkew)
	}
	between(&p, "ingest.writers", in.Writers, 1, 64)
	between(&p, "ingest.smallCommits", in.SmallCommits, 0, 64)
	between(&p, "ingest.maxBatch", in.MaxBatch, 1, 100_000)
	// A queue smaller than one batch would stop batches from ever filling.
	if in.QueueSize < in.MaxBatch {
		p.add("ingest.queueSize", "must be at least ingest.maxBatch (%d), got %d", in.MaxBatch, in.QueueSize)
	}

	between(&p, "retention.defaultDays", c.Retention.DefaultDays, 1, 2555)
	positive(&p, "retention.interval", c.Retention.Interval)
	between(&p, "retention.batchSize", c.Retention.BatchSize, 1, 100_000)
	positive(&p, "retention.batchTimeout", c.Retention.BatchTimeout)

	for _, w := range []struct {
		key string
		v   float64
	}{{"catalog.weights.context", c.Catalog.Weights.Context}, {"catalog.weights.detected", c.Catalog.Weights.Detected},
		{"catalog.weights.custom", c.Catalog.Weights.Custom}, {"catalog.weights.text", c.Catalog.Weights.Text}} {
		// NaN fails both comparisons, so it is refused too.
		if !(w.v >= 0 && w.v <= 100) {
			p.add(w.key, "must be a number from 0 to 100, got %v", w.v)
		}
	}
	if c.Catalog.DiscoveryTTL.Duration < time.Minute {
		p.add("catalog.discoveryTTL", "must be at least 1m, got %s", c.Catalog.DiscoveryTTL)
	}

	c.Archive.validate(&p, c.Ingest.MaxEventAge)

	oneOf(&p, "logging.level", c.Logging.Level, []string{"debug", "info", "warn", "error"})
	oneOf(&p, "logging.format", c.Logging.Format, []string{"json", "text"})

	return p
}

func (d Database) validate(p *problems) {
	if d.URL != "" {
		// Mixing both forms would leave it unclear which one wins.
		for _, part := range []struct {
			key string
			set bool
		}{
			{"database.host", d.Host != ""},
			{"database.port", d.Port != 0},
			{"database.name", d.Name != ""},
			{"database.user", d.User != ""},
			{"database.sslMode", d.SSLMode != ""},
		} {
			if part.set {
				p.add(part.key, "must be empty when database.url is set")
			}
		}
		if err := checkDatabaseURL(d.URL); err != nil {
			p.add("database.url", "%v", err)
		}
	} else if d.usesParts() {
		for _, part := range []struct{ key, value string }{
			{"database.host", d.Host}, {"database.name", d.Name}, {"database.user", d.User},
		} {
			if part.value == "" {
				p.add(part.key, "required when the database is given as parts (or set database.url instead)")
			}
		}
		between(p, "database.port", d.Port, 1, 65535)
		oneOf(p, "database.sslMode", d.SSLMode, []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
	}
	if d.SecretsFile != "" && d.PasswordKey == "" {
		p.add("database.passwordKey", "required when database.secretsFile is set")
	}
	between(p, "database.maxConns", d.MaxConns, 1, maxDBMaxConns)
	positive(p, "database.connectTimeout", d.ConnectTimeout)
	if d.ReplicaURL != "" {
		if err := checkDatabaseURL(d.ReplicaURL); err != nil {
			p.add("database.replicaUrl", "%v", err)
		}
	}
	positive(p, "database.maxReplicaLag", d.MaxReplicaLag)
}

// checkDatabaseURL checks the shape of a URL or DSN. It never quotes the
// value, which may hold a password.
func checkDatabaseURL(s string) error {
	if !isPostgresURL(s) {
		if strings.Contains(s, "://") || !strings.Contains(s, "=") {
			return errors.New("must be a postgres:// URL or a keyword/value DSN such as \"host=db dbname=datastorage\"")
		}
		return nil
	}
	if _, err := url.Parse(s); err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the wrapper repeats the whole URL, password included
		}
		return fmt.Errorf("is not a valid URL: %v", err)
	}
	return nil
}

// validHostPort reports whether addr is host:port with a non-empty host and
// a port in range.
func validHostPort(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

func (a Archive) validate(p *problems, maxEventAge Duration) {
	if a.Enabled && a.Target == "" {
		p.add("archive.target", "required when archive.enabled is true (file:///abs/dir or s3://bucket/prefix)")
	}
	if a.After.Duration < maxEventAge.Duration {
		p.add("archive.after", "must be at least ingest.maxEventAge (%s), or events could arrive for an archived month; got %s",
			maxEventAge, a.After)
	}
	if a.TempDir != "" && !filepath.IsAbs(a.TempDir) {
		p.add("archive.tempDir", "must be an absolute directory, got %q", a.TempDir)
	}
	if a.SortMemory < 1<<20 {
		p.add("archive.sortMemory", "must be at least 1MiB, got %d", int64(a.SortMemory))
	}
	scheme := ""
	if a.Target != "" {
		var err error
		if scheme, err = checkArchiveTarget(a.Target); err != nil {
			p.add("archive.target", "%v", err)
		}
	}
	s := a.S3
	if scheme != "s3" {
		// Refused rather than ignored, so nobody believes they are used.
		for _, k := range []struct {
			key string
			set bool
		}{
			{"archive.s3.endpoint", s.Endpoint != ""}, {"archive.s3.region", s.Region != ""},
			{"archive.s3.pathStyle", s.PathStyle}, {"archive.s3.accessKeyIdFile", s.AccessKeyIDFile != ""},
			{"archive.s3.secretAccessKeyFile", s.SecretAccessKeyFile != ""},
		} {
			if k.set && a.Target != "" {
				p.add(k.key, "only used when archive.target is an s3:// URL, got %q", a.Target)
			}
		}
	}
	if s.Endpoint != "" {
		u, err := url.Parse(s.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("archive.s3.endpoint", "must be an http:// or https:// URL such as https://minio.example:9000, got %q", s.Endpoint)
		}
	}
	if s.AccessKeyIDFile != "" && s.SecretAccessKeyFile == "" {
		p.add("archive.s3.secretAccessKeyFile", "required when archive.s3.accessKeyIdFile is set")
	}
	if s.SecretAccessKeyFile != "" && s.AccessKeyIDFile == "" {
		p.add("archive.s3.accessKeyIdFile", "required when archive.s3.secretAccessKeyFile is set")
	}
}

// checkArchiveTarget checks the shape of an archive target URL and returns
// its scheme. Whether the directory or bucket exists is checked when the
// target is opened (internal/objstore), which needs the disk or the network.
func checkArchiveTarget(target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", fmt.Errorf("is not a valid URL: %v", err)
	}
	switch u.Scheme {
	case "file":
		if (u.Host != "" && u.Host != "localhost") || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
			return "", fmt.Errorf("must name an absolute directory as file:///abs/dir (three slashes), got %q", target)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return "", fmt.Errorf("must have no query or fragment, got %q", target)
		}
	case "s3":
		if u.Host == "" {
			return "", fmt.Errorf("must name a bucket as s3://bucket/prefix, got %q", target)
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return "", fmt.Errorf("must be s3://bucket/prefix without user, query or fragment (credentials and endpoint are archive.s3 keys), got %q", target)
		}
	default:
		return "", fmt.Errorf("must be file:///abs/dir or s3://bucket/prefix, got %q", target)
	}
	return u.Scheme, nil
}
