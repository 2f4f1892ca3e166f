package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeFile writes content to a fresh file and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// loadYAML loads content as the config file with the given environment.
func loadYAML(t *testing.T, content string, environ ...string) (Config, error) {
	t.Helper()
	return Load(writeFile(t, "datastorage.yaml", content), environ)
}

func TestLoadWithoutFileOrEnvironmentReturnsDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Load("", nil)
	require.NoError(t, err)
	assert.Equal(t, Default(), cfg)

	assert.Equal(t, "0.0.0.0", cfg.Server.Host)
	assert.Equal(t, 8080, cfg.Server.Port)
	assert.Equal(t, 9090, cfg.Server.MetricsPort)
	assert.Equal(t, 10000, cfg.Server.MaxBatchSize)
	assert.Equal(t, 32*MiB, cfg.Server.MaxBodySize)
	assert.Equal(t, 60*time.Second, cfg.Server.ShutdownTimeout.Duration)
	assert.Equal(t, 5*time.Second, cfg.Server.EndpointPropagationDelay.Duration)
	assert.Equal(t, 30*time.Second, cfg.Server.RequestTimeout.Duration)
	assert.Equal(t, "password", cfg.Database.PasswordKey)
	assert.GreaterOrEqual(t, cfg.Database.MaxConns, 4)
	assert.Equal(t, "127.0.0.1:6379", cfg.Redis.Addr)
	assert.Equal(t, int64(1_000_000), cfg.Redis.DLQMaxLen)
	assert.Equal(t, "none", cfg.Auth.Mode)
	assert.Equal(t, 168*time.Hour, cfg.Ingest.MaxEventAge.Duration)
	assert.Equal(t, time.Hour, cfg.Ingest.MaxClockSkew.Duration)
	assert.Equal(t, 2555, cfg.Retention.DefaultDays)
	assert.Nil(t, cfg.Integrity.HMACKey)
	assert.Equal(t, slog.LevelInfo, cfg.Logging.SlogLevel())
	assert.Equal(t, "json", cfg.Logging.Format)
	assert.Empty(t, cfg.Database.ConnString())
}

func TestShippedExampleFileLoadsAsDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Load("../../config/datastorage.example.yaml", nil)
	require.NoError(t, err)
	assert.Equal(t, Default(), cfg)
}

func TestEmptyFileMeansDefaults(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{"empty": "", "comments only": "# nothing\n", "blank section": "server:\n"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := loadYAML(t, content)
			require.NoError(t, err)
			assert.Equal(t, Default(), cfg)
		})
	}
}

func TestLoadFullFile(t *testing.T) {
	t.Parallel()
	hmac := writeFile(t, "hmac.key", "s3cret-key\n")
	signing := writeFile(t, "signing.pem", "PRIVATE KEY PEM\n")
	secrets := writeFile(t, "db.yaml", "pw: hunter2\n")
	keyID := writeFile(t, "access-key-id", "AKIAEXAMPLE\n")
	secretKey := writeFile(t, "secret-access-key", "wJalrXUtnFEMI\n")
	cfg, err := loadYAML(t, `
server:
  host: 127.0.0.1
  port: 8081
  metricsPort: 9091
  maxBatchSize: 100
  maxBodySize: 512KiB
  shutdownTimeout: 1m30s
  endpointPropagationDelay: 0s
  readHeaderTimeout: 2s
  readTimeout: 3s
  writeTimeout: 4s
  idleTimeout: 5s
  requestTimeout: 6s
  pprof: true
  tls:
    certFile: /tls/tls.crt
    keyFile: /tls/tls.key
  rateLimit:
    requestsPerSecond: 200
    burst: 400
database:
  host: db.internal
  port: 6432
  name: audit
  user: writer
  sslMode: verify-full
  secretsFile: `+secrets+`
  passwordKey: pw
  maxConns: 7
  connectTimeout: 2s
  replicaUrl: postgres://reader@db-ro.internal/audit
  maxReplicaLag: 750ms
redis:
  addr: redis.internal:6380
  db: 3
  dlqMaxLen: 42
  claimIdle: 5s
  replayBatch: 100
  maxDeliveries: 3
  sentinel:
    masterName: spool
    addrs:
      - sentinel-0.redis:26379
      - sentinel-1.redis:26379
  minReplicas: 2
  waitTimeout: 250ms
auth:
  mode: static
  tokenFile: /secrets/tokens.yaml
  namespace: kubernaut
ingest:
  maxEventAge: 24h
  maxClockSkew: 0s
  writers: 4
  smallCommits: 3
  maxBatch: 500
  queueSize: 500
retention:
  enabled: true
  defaultDays: 30
  interval: 15m
  batchSize: 100
  batchTimeout: 5s
integrity:
  hmacKeyFile: `+hmac+`
  signingKeyFile: `+signing+`
archive:
  enabled: true
  after: 720h
  target: s3://audit-archive/datastorage
  tempDir: /scratch/archive
  sortMemory: 64MiB
  s3:
    endpoint: https://minio.internal:9000
    region: eu-west-3
    pathStyle: true
    accessKeyIdFile: `+keyID+`
    secretAccessKeyFile: `+secretKey+`
logging:
  level: debug
  format: text
`)
	require.NoError(t, err)

	want := Default()
	want.Server = Server{
		Host: "127.0.0.1", Port: 8081, MetricsPort: 9091, MaxBatchSize: 100, MaxBodySize: 512 * KiB,
		ShutdownTimeout: Duration{90 * time.Second}, EndpointPropagationDelay: Duration{0},
		ReadHeaderTimeout: Duration{2 * time.Second}, ReadTimeout: Duration{3 * time.Second},
		WriteTimeout: Duration{4 * time.Second}, IdleTimeout: Duration{5 * time.Second},
		RequestTimeout: Duration{6 * time.Second}, Pprof: true,
		TLS:       TLS{CertFile: "/tls/tls.crt", KeyFile: "/tls/tls.key"},
		RateLimit: RateLimit{RequestsPerSecond: 200, Burst: 400},
	}
	want.Auth = Auth{Mode: "static", TokenFile: "/secrets/tokens.yaml", Namespace: "kubernaut"}
	want.Database = Database{
		Host: "db.internal", Port: 6432, Name: "audit", User: "writer", SSLMode: "verify-full",
		SecretsFile: secrets, PasswordKey: "pw", MaxConns: 7, ConnectTimeout: Duration{2 * time.Second},
		ReplicaURL: "postgres://reader@db-ro.internal/audit", MaxReplicaLag: Duration{750 * time.Millisecond},
		Password: "hunter2",
	}
	want.Redis = Redis{Addr: "redis.internal:6380", PasswordKey: "password", DB: 3, DLQMaxLen: 42,
		ClaimIdle: Duration{5 * time.Second}, ReplayBatch: 100, MaxDeliveries: 3,
		Sentinel:    RedisSentinel{MasterName: "spool", Addrs: AddrList{"sentinel-0.redis:26379", "sentinel-1.redis:26379"}, PasswordKey: "password"},
		MinReplicas: 2, WaitTimeout: Duration{250 * time.Millisecond}}
	want.Ingest = Ingest{MaxEventAge: Duration{24 * time.Hour}, Writers: 4, SmallCommits: 3, MaxBatch: 500, QueueSize: 500}
	want.Retention = Retention{Enabled: true, DefaultDays: 30, Interval: Duration{15 * time.Minute},
		BatchSize: 100, BatchTimeout: Duration{5 * time.Second}}
	want.Integrity = Integrity{HMACKeyFile: hmac, HMACKey: []byte("s3cret-key"),
		SigningKeyFile: signing, SigningKey: []byte("PRIVATE KEY PEM\n")}
	want.Archive = Archive{Enabled: true, After: Duration{720 * time.Hour}, Target: "s3://audit-archive/datastorage",
		TempDir: "/scratch/archive", SortMemory: 64 << 20,
		S3: ArchiveS3{Endpoint: "https://minio.internal:9000", Region: "eu-west-3", PathStyle: true,
			AccessKeyIDFile: keyID, SecretAccessKeyFile: secretKey}}
	want.Logging = Logging{Level: "debug", Format: "text"}
	assert.Equal(t, want, cfg)
	assert.Equal(t, slog.LevelDebug, cfg.Logging.SlogLevel())
}

func TestEnvironmentOverrides(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   []string
		check func(t *testing.T, c Config)
	}{
		{"database url", []string{"DATASTORAGE_DATABASE_URL=postgres://u@h/db"}, func(t *testing.T, c Config) {
			assert.Equal(t, "postgres://u@h/db", c.Database.URL)
		}},
		{"upper-case form", []string{"DATASTORAGE_SERVER_MAXBATCHSIZE=77"}, func(t *testing.T, c Config) {
			assert.Equal(t, 77, c.Server.MaxBatchSize)
		}},
		{"catalog weights and TTL", []string{"DATASTORAGE_CATALOG_WEIGHTS_DETECTED=0.75", "DATASTORAGE_CATALOG_DISCOVERY_TTL=48h"}, func(t *testing.T, c Config) {
			assert.Equal(t, 0.75, c.Catalog.Weights.Detected)
			assert.Equal(t, 48*time.Hour, c.Catalog.DiscoveryTTL.Duration)
			assert.Equal(t, 1.0, c.Catalog.Weights.Context)
		}},
		{"snake-case form", []string{"DATASTORAGE_SERVER_MAX_BATCH_SIZE=78"}, func(t *testing.T, c Config) {
			assert.Equal(t, 78, c.Server.MaxBatchSize)
		}},
		{"duration", []string{"DATASTORAGE_INGEST_MAXEVENTAGE=48h"}, func(t *testing.T, c Config) {
			assert.Equal(t, 48*time.Hour, c.Ingest.MaxEventAge.Duration)
		}},
		{"duration snake-case", []string{"DATASTORAGE_INGEST_MAX_CLOCK_SKEW=5m"}, func(t *testing.T, c Config) {
			assert.Equal(t, 5*time.Minute, c.Ingest.MaxClockSkew.Duration)
		}},
		{"byte size", []string{"DATASTORAGE_SERVER_MAXBODYSIZE=1GiB"}, func(t *testing.T, c Config) {
			assert.Equal(t, GiB, c.Server.MaxBodySize)
		}},
		{"int64", []string{"DATASTORAGE_REDIS_DLQ_MAX_LEN=5"}, func(t *testing.T, c Config) {
			assert.Equal(t, int64(5), c.Redis.DLQMaxLen)
		}},
		{"nested section", []string{"DATASTORAGE_SERVER_TLS_CERT_FILE=", "DATASTORAGE_SERVER_TLS_KEYFILE="}, func(t *testing.T, c Config) {
			assert.Empty(t, c.Server.TLS.CertFile)
		}},
		{"acronym in key", []string{"DATASTORAGE_INTEGRITY_HMAC_KEY_FILE="}, func(t *testing.T, c Config) {
			assert.Empty(t, c.Integrity.HMACKeyFile)
		}},
		{"other variables are ignored", []string{"PATH=/bin", "CONFIG_PATH=/x", "DATASTORAGE=1", "NOT_DATASTORAGE_X=1"}, func(t *testing.T, c Config) {
			assert.Equal(t, Default(), c)
		}},
		{"several at once", []string{"DATASTORAGE_LOGGING_LEVEL=warn", "DATASTORAGE_LOGGING_FORMAT=text", "DATASTORAGE_REDIS_DB=2"}, func(t *testing.T, c Config) {
			assert.Equal(t, Logging{Level: "warn", Format: "text"}, c.Logging)
			assert.Equal(t, slog.LevelWarn, c.Logging.SlogLevel())
			assert.Equal(t, 2, c.Redis.DB)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load("", tt.env)
			require.NoError(t, err)
			tt.check(t, cfg)
		})
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	t.Parallel()
	cfg, err := loadYAML(t, "server:\n  port: 8081\n  metricsPort: 9091\n", "DATASTORAGE_SERVER_PORT=8082")
	require.NoError(t, err)
	assert.Equal(t, 8082, cfg.Server.Port)
	assert.Equal(t, 9091, cfg.Server.MetricsPort)
}

// Every key must be reachable under both spellings, and no two keys may
// share a variable name.
func TestEveryKeyHasEnvironmentVariables(t *testing.T) {
	t.Parallel()
	def := Default()
	owner := map[string]string{}
	walkLeaves(reflect.ValueOf(&def).Elem(), "", func(path string, v reflect.Value) {
		value := fmt.Sprint(v.Interface())
		for _, name := range envNames(path) {
			if other, dup := owner[name]; dup {
				t.Errorf("%s is the variable of both %s and %s", name, other, path)
			}
			owner[name] = path
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				cfg, err := Load("", []string{name + "=" + value})
				require.NoError(t, err)
				assert.Equal(t, Default(), cfg, "setting %s to its default must change nothing", path)
			})
		}
	})
	assert.Equal(t, "server.maxBatchSize", owner["DATASTORAGE_SERVER_MAXBATCHSIZE"])
	assert.Equal(t, "server.maxBatchSize", owner["DATASTORAGE_SERVER_MAX_BATCH_SIZE"])
	assert.Equal(t, "server.tls.certFile", owner["DATASTORAGE_SERVER_TLS_CERTFILE"])
	assert.Equal(t, "redis.dlqMaxLen", owner["DATASTORAGE_REDIS_DLQ_MAX_LEN"])
	assert.NotContains(t, owner, "DATASTORAGE_DATABASE_PASSWORD", "passwords come only from secret files")
}

// TestLoadErrors checks that each bad input is refused with a message that
// names its key (and, for the environment, the variable).
func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		env  []string
		want []string // substrings of the error
	}{
		// Unknown keys and variables.
		{name: "unknown key", yaml: "server:\n  maxBatchSise: 10\n",
			want: []string{"config: server.maxBatchSise: unknown key (line 2)"}},
		{name: "unknown section", yaml: "servre:\n  port: 1\n", want: []string{"config: servre: unknown key (line 1)"}},
		{name: "unknown nested key", yaml: "server:\n  tls:\n    cert: x\n", want: []string{"config: server.tls.cert: unknown key (line 3)"}},
		{name: "password in yaml", yaml: "database:\n  password: x\n", want: []string{"config: database.password: unknown key"}},
		{name: "duplicate key", yaml: "server:\n  port: 1\n  port: 2\n", want: []string{"config: server.port: duplicate key (line 3)"}},
		{name: "unknown variable", env: []string{"DATASTORAGE_SERVER_PROT=8080"},
			want: []string{"config: DATASTORAGE_SERVER_PROT: environment variable matches no config key"}},
		{name: "password variable", env: []string{"DATASTORAGE_DATABASE_PASSWORD=x"},
			want: []string{"DATASTORAGE_DATABASE_PASSWORD: environment variable matches no config key"}},
		{name: "both spellings", env: []string{"DATASTORAGE_SERVER_MAXBATCHSIZE=1", "DATASTORAGE_SERVER_MAX_BATCH_SIZE=2"},
			want: []string{"DATASTORAGE_SERVER_MAXBATCHSIZE and DATASTORAGE_SERVER_MAX_BATCH_SIZE both set server.maxBatchSize"}},

		// Types.
		{name: "not an integer", yaml: "server:\n  port: abc\n", want: []string{`config: server.port: must be an integer, got "abc" (line 2)`}},
		{name: "list for integer", yaml: "server:\n  port: [1]\n", want: []string{"config: server.port: must be an integer (line 2)"}},
		{name: "scalar for section", yaml: "server: 5\n", want: []string{"config: server: must be a mapping of keys (line 1)"}},
		{name: "not a mapping", yaml: "- a\n", want: []string{"config: top level: must be a mapping of keys"}},
		{name: "not a bool", yaml: "retention:\n  enabled: maybe\n", want: []string{`retention.enabled: must be true or false, got "maybe"`}},
		{name: "catalog weight not a number", yaml: "catalog:\n  weights:\n    text: high\n", want: []string{`catalog.weights.text: must be a number, got "high"`}},
		{name: "catalog weight negative", env: []string{"DATASTORAGE_CATALOG_WEIGHTS_CUSTOM=-1"}, want: []string{"catalog.weights.custom: must be a number from 0 to 100, got -1"}},
		{name: "catalog weight NaN", env: []string{"DATASTORAGE_CATALOG_WEIGHTS_CONTEXT=NaN"}, want: []string{"catalog.weights.context: must be a number from 0 to 100"}},
		{name: "catalog discovery TTL too short", yaml: "catalog:\n  discoveryTTL: 30s\n", want: []string{"catalog.discoveryTTL: must be at least 1m, got 30s"}},
		{name: "bad env integer", env: []string{"DATASTORAGE_SERVER_PORT=eighty"},
			want: []string{`config: DATASTORAGE_SERVER_PORT (server.port): must be an integer, got "eighty"`}},
		{name: "duration in words", yaml: "server:\n  shutdownTimeout: 5 minutes\n",
			want: []string{`config: server.shutdownTimeout: must be a duration such as "90s" or "1h30m", got "5 minutes" (line 2)`}},
		{name: "duration without unit", yaml: "server:\n  shutdownTimeout: 300\n",
			want: []string{`config: server.shutdownTimeout: must be a duration with a unit, e.g. "300s" or "300ms", got 300`}},
		{name: "env duration without unit", env: []string{"DATASTORAGE_INGEST_MAX_EVENT_AGE=300"},
			want: []string{`config: DATASTORAGE_INGEST_MAX_EVENT_AGE (ingest.maxEventAge): must be a duration with a unit, e.g. "300s"`}},
		{name: "bad size", yaml: "server:\n  maxBodySize: 16 megs\n", want: []string{`config: server.maxBodySize: must be a size such as`}},

		// Ranges.
		{name: "port too high", yaml: "server:\n  port: 70000\n", want: []string{"config: server.port: must be between 1 and 65535, got 70000"}},
		{name: "metrics port zero", yaml: "server:\n  metricsPort: 0\n", want: []string{"config: server.metricsPort: must be between 1 and 65535, got 0"}},
		{name: "metrics port equals port", yaml: "server:\n  metricsPort: 8080\n", want: []string{"config: server.metricsPort: must differ from server.port"}},
		{name: "batch size zero", yaml: "server:\n  maxBatchSize: 0\n", want: []string{"config: server.maxBatchSize: must be between 1 and 100000, got 0"}},
		{name: "batch size too high", env: []string{"DATASTORAGE_SERVER_MAXBATCHSIZE=100001"}, want: []string{"server.maxBatchSize: must be between 1 and 100000"}},
		{name: "body size zero", yaml: "server:\n  maxBodySize: 0\n", want: []string{"config: server.maxBodySize: must be at least 1 byte, got 0"}},
		{name: "zero shutdown timeout", yaml: "server:\n  shutdownTimeout: 0s\n", want: []string{"config: server.shutdownTimeout: must be greater than 0, got 0s"}},
		{name: "negative propagation delay", yaml: "server:\n  endpointPropagationDelay: -1s\n", want: []string{"config: server.endpointPropagationDelay: must not be negative"}},
		{name: "zero request timeout", env: []string{"DATASTORAGE_SERVER_REQUESTTIMEOUT=0"}, want: []string{"config: server.requestTimeout: must be greater than 0"}},
		{name: "tls cert without key", env: []string{"DATASTORAGE_SERVER_TLS_CERTFILE=/tls/crt"}, want: []string{"config: server.tls.keyFile: required when server.tls.certFile is set"}},
		{name: "tls key without cert", yaml: "server:\n  tls:\n    keyFile: /k\n", want: []string{"config: server.tls.certFile: required when server.tls.keyFile is set"}},
		{name: "negative rate", yaml: "server:\n  rateLimit:\n    requestsPerSecond: -1\n", want: []string{"config: server.rateLimit.requestsPerSecond: must be between 0 and 1000000, got -1"}},
		{name: "negative burst", env: []string{"DATASTORAGE_SERVER_RATELIMIT_BURST=-5"}, want: []string{"config: server.rateLimit.burst: must be between 0 and 1000000, got -5"}},
		{name: "redis addr without port", yaml: "redis:\n  addr: localhost\n", want: []string{`config: redis.addr: must be host:port with a port between 1 and 65535, got "localhost"`}},
		{name: "redis db", yaml: "redis:\n  db: -1\n", want: []string{"config: redis.db: must be between 0 and 65536, got -1"}},
		{name: "dlq max len", yaml: "redis:\n  dlqMaxLen: 0\n", want: []string{"config: redis.dlqMaxLen: must be at least 1, got 0"}},
		{name: "auth static without file", yaml: "auth:\n  mode: static\n", want: []string{"config: auth.tokenFile: required when auth.mode is static"}},
		{name: "auth kubernetes without namespace", env: []string{"DATASTORAGE_AUTH_MODE=kubernetes"}, want: []string{"config: auth.namespace: required when auth.mode is kubernetes"}},
		{name: "token file without static", yaml: "auth:\n  tokenFile: /t\n", want: []string{`config: auth.tokenFile: only used when auth.mode is static, but auth.mode is "none"`}},
		{name: "token file in kubernetes mode", yaml: "auth:\n  mode: kubernetes\n  namespace: ns\n  tokenFile: /t\n", want: []string{`config: auth.tokenFile: only used when auth.mode is static, but auth.mode is "kubernetes"`}},
		{name: "auth unknown", yaml: "auth:\n  mode: oauth\n", want: []string{`config: auth.mode: must be one of none, static, kubernetes, got "oauth"`}},
		{name: "max event age zero", yaml: "ingest:\n  maxEventAge: 0s\n", want: []string{"config: ingest.maxEventAge: must be greater than 0"}},
		{name: "negative clock skew", yaml: "ingest:\n  maxClockSkew: -1m\n", want: []string{"config: ingest.maxClockSkew: must not be negative, got -1m0s"}},
		{name: "writers", yaml: "ingest:\n  writers: 65\n", want: []string{"config: ingest.writers: must be between 1 and 64, got 65"}},
		{name: "small commits", yaml: "ingest:\n  smallCommits: -1\n", want: []string{"config: ingest.smallCommits: must be between 0 and 64, got -1"}},
		{name: "max batch", yaml: "ingest:\n  maxBatch: 0\n", want: []string{"config: ingest.maxBatch: must be between 1 and 100000, got 0"}},
		{name: "queue smaller than batch", yaml: "ingest:\n  maxBatch: 100\n  queueSize: 99\n", want: []string{"config: ingest.queueSize: must be at least ingest.maxBatch (100), got 99"}},
		{name: "retention interval", yaml: "retention:\n  interval: 0s\n", want: []string{"config: retention.interval: must be greater than 0, got 0s"}},
		{name: "retention batch size", yaml: "retention:\n  batchSize: 0\n", want: []string{"config: retention.batchSize: must be between 1 and 100000, got 0"}},
		{name: "retention batch timeout", env: []string{"DATASTORAGE_RETENTION_BATCHTIMEOUT=-1s"}, want: []string{"config: retention.batchTimeout: must be greater than 0"}},
		{name: "signing key missing", yaml: "integrity:\n  signingKeyFile: /nonexistent/key.pem\n", want: []string{"config: integrity.signingKeyFile: open /nonexistent/key.pem"}},
		{name: "retention days", yaml: "retention:\n  defaultDays: 2556\n", want: []string{"config: retention.defaultDays: must be between 1 and 2555, got 2556"}},
		{name: "log level", env: []string{"DATASTORAGE_LOGGING_LEVEL=loud"}, want: []string{`config: logging.level: must be one of debug, info, warn, error, got "loud"`}},
		{name: "log format", yaml: "logging:\n  format: xml\n", want: []string{`config: logging.format: must be one of json, text, got "xml"`}},

		// Archive.
		{name: "archive enabled without target", yaml: "archive:\n  enabled: true\n",
			want: []string{"config: archive.target: required when archive.enabled is true"}},
		{name: "archive relative file target", env: []string{"DATASTORAGE_ARCHIVE_TARGET=file://archive/dir"},
			want: []string{`config: archive.target: must name an absolute directory as file:///abs/dir (three slashes), got "file://archive/dir"`}},
		{name: "archive opaque file target", yaml: "archive:\n  target: file:archive\n",
			want: []string{"config: archive.target: must name an absolute directory"}},
		{name: "archive target scheme", yaml: "archive:\n  target: /var/archive\n",
			want: []string{`config: archive.target: must be file:///abs/dir or s3://bucket/prefix, got "/var/archive"`}},
		{name: "archive s3 without bucket", yaml: "archive:\n  target: s3:///prefix\n",
			want: []string{"config: archive.target: must name a bucket as s3://bucket/prefix"}},
		{name: "archive s3 credentials in URL", yaml: "archive:\n  target: s3://key:secret@bucket/p\n",
			want: []string{"config: archive.target: must be s3://bucket/prefix without user"}},
		{name: "archive relative temp dir", env: []string{"DATASTORAGE_ARCHIVE_TEMPDIR=scratch"},
			want: []string{`config: archive.tempDir: must be an absolute directory, got "scratch"`}},
		{name: "archive sort memory", yaml: "archive:\n  sortMemory: 64KiB\n",
			want: []string{"config: archive.sortMemory: must be at least 1MiB, got 65536"}},
		{name: "archive after shorter than max event age", yaml: "archive:\n  after: 24h\n",
			want: []string{"config: archive.after: must be at least ingest.maxEventAge (168h0m0s), or events could arrive for an archived month; got 24h0m0s"}},
		{name: "archive s3 key for a file target", yaml: "archive:\n  target: file:///var/archive\n  s3:\n    region: eu-west-1\n    pathStyle: true\n",
			want: []string{`config: archive.s3.region: only used when archive.target is an s3:// URL, got "file:///var/archive"`,
				"config: archive.s3.pathStyle: only used when archive.target is an s3:// URL"}},
		{name: "archive s3 endpoint", yaml: "archive:\n  target: s3://b\n  s3:\n    endpoint: minio:9000\n",
			want: []string{`config: archive.s3.endpoint: must be an http:// or https:// URL such as https://minio.example:9000, got "minio:9000"`}},
		{name: "archive s3 key id without secret", env: []string{"DATASTORAGE_ARCHIVE_TARGET=s3://b", "DATASTORAGE_ARCHIVE_S3_ACCESS_KEY_ID_FILE=/nonexistent/id"},
			want: []string{"config: archive.s3.secretAccessKeyFile: required when archive.s3.accessKeyIdFile is set",
				"config: archive.s3.accessKeyIdFile: open /nonexistent/id"}},
		{name: "archive s3 secret without key id", yaml: "archive:\n  target: s3://b\n  s3:\n    secretAccessKeyFile: /nonexistent/secret\n",
			want: []string{"config: archive.s3.accessKeyIdFile: required when archive.s3.secretAccessKeyFile is set",
				"config: archive.s3.secretAccessKeyFile: open /nonexistent/secret"}},

		// Database.
		{name: "url and parts", yaml: "database:\n  url: postgres://h/db\n  host: h\n  port: 5432\n",
			want: []string{"config: database.host: must be empty when database.url is set", "config: database.port: must be empty when database.url is set"}},
		{name: "parts incomplete", yaml: "database:\n  host: h\n",
			want: []string{"config: database.name: required when the database is given as parts", "config: database.user: required"}},
		{name: "parts without host", env: []string{"DATASTORAGE_DATABASE_NAME=db", "DATASTORAGE_DATABASE_USER=u"},
			want: []string{"config: database.host: required"}},
		{name: "ssl mode", yaml: "database:\n  host: h\n  name: n\n  user: u\n  sslMode: on\n", want: []string{`config: database.sslMode: must be one of disable, allow, prefer, require, verify-ca, verify-full, got "on"`}},
		{name: "url shape", env: []string{"DATASTORAGE_DATABASE_URL=mysql://u:pw@h/db"}, want: []string{"config: database.url: must be a postgres:// URL or a keyword/value DSN"}},
		{name: "replica url shape", env: []string{"DATASTORAGE_DATABASE_REPLICAURL=mysql://u:pw@h/db"}, want: []string{"config: database.replicaUrl: must be a postgres:// URL or a keyword/value DSN"}},
		{name: "max replica lag", yaml: "database:\n  maxReplicaLag: 0s\n", want: []string{"config: database.maxReplicaLag: must be greater than 0, got 0s"}},
		{name: "max conns", yaml: "database:\n  maxConns: 0\n", want: []string{"config: database.maxConns: must be between 1 and 1000, got 0"}},
		{name: "empty password key", yaml: "database:\n  secretsFile: /x\n  passwordKey: \"\"\n", want: []string{"config: database.passwordKey: required when database.secretsFile is set"}},
		{name: "missing secrets file", yaml: "database:\n  secretsFile: /nonexistent/db.yaml\n", want: []string{"config: database.secretsFile: open /nonexistent/db.yaml"}},
		{name: "missing redis secrets file", env: []string{"DATASTORAGE_REDIS_SECRETSFILE=/nonexistent/r.yaml"}, want: []string{"config: redis.secretsFile: open /nonexistent/r.yaml"}},
		{name: "missing hmac key file", yaml: "integrity:\n  hmacKeyFile: /nonexistent/key\n", want: []string{"config: integrity.hmacKeyFile: open /nonexistent/key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var err error
			if tt.yaml != "" {
				_, err = loadYAML(t, tt.yaml, tt.env...)
			} else {
				_, err = Load("", tt.env)
			}
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	_, err := loadYAML(t, `
server:
  port: 70000
  maxBatchSise: 10
  shutdownTimeout: 300
auth:
  mode: static
`, "DATASTORAGE_SERVER_PROT=1", "DATASTORAGE_LOGGING_LEVEL=loud")
	require.Error(t, err)

	var joined interface{ Unwrap() []error }
	require.True(t, errors.As(err, &joined))
	msgs := strings.Split(err.Error(), "\n")
	assert.Len(t, joined.Unwrap(), 6)
	assert.Len(t, msgs, 6, "one line per problem")
	for _, w := range []string{"server.port", "server.maxBatchSise", "server.shutdownTimeout", "auth.mode", "DATASTORAGE_SERVER_PROT", "logging.level"} {
		assert.Contains(t, err.Error(), w)
	}
	for _, m := range msgs {
		assert.True(t, strings.HasPrefix(m, "config: "), m)
	}
}

func TestLoadFileErrors(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil)
	require.ErrorContains(t, err, "config: read file:")
	require.ErrorIs(t, err, os.ErrNotExist)

	_, err = loadYAML(t, "server: [\n")
	require.ErrorContains(t, err, "config: ")
	require.ErrorContains(t, err, "datastorage.yaml: yaml:")
}

func TestSecretsFiles(t *testing.T) {
	t.Parallel()
	yamlSecret := "password: \"p@ss w'rd\\\\\"\nother: x\n" // the password is p@ss w'rd\
	tests := []struct {
		name     string
		db       Database
		secret   string
		wantConn string
	}{
		{name: "injected into URL user info", db: Database{URL: "postgres://app@db:5432/audit?sslmode=disable"}, secret: yamlSecret,
			wantConn: "postgres://app:p%40ss%20w%27rd%5C@db:5432/audit?sslmode=disable"},
		{name: "URL password wins", db: Database{URL: "postgres://app:inline@db/audit"}, secret: yamlSecret,
			wantConn: "postgres://app:inline@db/audit"},
		{name: "URL without user gets query parameter", db: Database{URL: "postgresql:///audit?host=/run/pg"}, secret: yamlSecret,
			wantConn: "postgresql:///audit?host=%2Frun%2Fpg&password=p%40ss+w%27rd%5C"},
		{name: "keyword DSN", db: Database{URL: "host=db dbname=audit user=app"}, secret: yamlSecret,
			wantConn: `host=db dbname=audit user=app password='p@ss w\'rd\\'`},
		{name: "keyword DSN with password", db: Database{URL: "host=db application_name='password=x' password=inline"}, secret: yamlSecret,
			wantConn: "host=db application_name='password=x' password=inline"},
		{name: "built from parts", db: Database{Host: "db", Name: "audit", User: "app"}, secret: yamlSecret,
			wantConn: `host='db' port=5432 dbname='audit' user='app' password='p@ss w\'rd\\' sslmode='prefer'`},
		{name: "JSON secrets file", db: Database{Host: "db", Port: 6432, Name: "a b", User: "app", SSLMode: "require", PasswordKey: "pg-pass"},
			secret:   `{"pg-pass": "0123"}`,
			wantConn: `host='db' port=6432 dbname='a b' user='app' password='0123' sslmode='require'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			secretFile := writeFile(t, "secret.yaml", tt.secret)
			env := []string{"DATASTORAGE_DATABASE_SECRETS_FILE=" + secretFile}
			for key, value := range map[string]string{
				"URL": tt.db.URL, "HOST": tt.db.Host, "NAME": tt.db.Name, "USER": tt.db.User, "SSLMODE": tt.db.SSLMode, "PASSWORDKEY": tt.db.PasswordKey,
			} {
				if value != "" {
					env = append(env, "DATASTORAGE_DATABASE_"+key+"="+value)
				}
			}
			if tt.db.Port != 0 {
				env = append(env, fmt.Sprintf("DATASTORAGE_DATABASE_PORT=%d", tt.db.Port))
			}
			cfg, err := Load("", env)
			require.NoError(t, err)
			assert.Equal(t, tt.wantConn, cfg.Database.ConnString())
			require.NoError(t, cfg.RequireDatabase())
		})
	}
}

// The standby's connection gets the primary's password the same way.
func TestReplicaConnStringGetsThePassword(t *testing.T) {
	t.Parallel()
	secretFile := writeFile(t, "secret.yaml", "password: s3cret\n")
	cfg, err := Load("", []string{"DATASTORAGE_DATABASE_SECRETSFILE=" + secretFile,
		"DATASTORAGE_DATABASE_URL=postgres://app@db-rw/audit", "DATASTORAGE_DATABASE_REPLICAURL=postgres://app@db-ro/audit"})
	require.NoError(t, err)
	assert.Equal(t, "postgres://app:s3cret@db-ro/audit", cfg.Database.ReplicaConnString())
	assert.Equal(t, "postgres://app:s3cret@db-rw/audit", cfg.Database.ConnString())
	cfg, err = Load("", nil)
	require.NoError(t, err)
	assert.Empty(t, cfg.Database.ReplicaConnString(), "no standby by default")
	assert.Equal(t, 5*time.Second, cfg.Database.MaxReplicaLag.Duration)
}

// A Secret mounted as a directory (an operator-generated one, such as
// CloudNativePG's <cluster>-app) gives its password file as it is.
func TestSecretsFileAsAMountedSecretDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "username"), []byte("app"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "password"), []byte("0123 s3cret\n"), 0o600))
	env := []string{"DATASTORAGE_DATABASE_URL=postgres://app@pg-rw/app", "DATASTORAGE_DATABASE_SECRETSFILE=" + dir}
	cfg, err := Load("", env)
	require.NoError(t, err)
	assert.Equal(t, "0123 s3cret", cfg.Database.Password)
	_, err = Load("", append(env, "DATASTORAGE_DATABASE_PASSWORDKEY=pass"))
	require.ErrorContains(t, err, `config: database.passwordKey: no file "pass" in the directory`)
	_, err = Load("", append(env, "DATASTORAGE_DATABASE_PASSWORDKEY=../password"))
	require.ErrorContains(t, err, `must be a file name`)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "password"), []byte("\n"), 0o600))
	_, err = Load("", env)
	require.ErrorContains(t, err, `config: database.passwordKey: "password" in `+dir+` is empty`)
}

func TestSecretsFileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, secret, want string
	}{
		{"missing key", "pass: x\n", `config: database.passwordKey: no key "password" in`},
		{"empty value", "password: \"\"\n", `config: database.passwordKey: "password" in`},
		{"not a map", "hunter2\n", "config: database.secretsFile: "},
		{"not YAML", "password: [\n", "is not valid YAML or JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			secretFile := writeFile(t, "secret.yaml", tt.secret)
			_, err := Load("", []string{"DATASTORAGE_DATABASE_SECRETSFILE=" + secretFile})
			require.ErrorContains(t, err, tt.want)
			assert.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestArchiveCredentialFileEmpty(t *testing.T) {
	t.Parallel()
	id := writeFile(t, "id", "AKIA\n")
	secret := writeFile(t, "secret", " \n")
	_, err := Load("", []string{"DATASTORAGE_ARCHIVE_TARGET=s3://b/p",
		"DATASTORAGE_ARCHIVE_S3_ACCESSKEYIDFILE=" + id, "DATASTORAGE_ARCHIVE_S3_SECRETACCESSKEYFILE=" + secret})
	require.EqualError(t, err, "config: archive.s3.secretAccessKeyFile: "+secret+" is empty")
}

func TestArchiveFileTargetAcceptsOnlyAbsoluteDirectories(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"file:///var/lib/archive", "file://localhost/var/lib/archive", "s3://bucket", "s3://bucket/a/prefix"} {
		cfg, err := Load("", []string{"DATASTORAGE_ARCHIVE_ENABLED=true", "DATASTORAGE_ARCHIVE_TARGET=" + target})
		require.NoError(t, err, target)
		assert.Equal(t, target, cfg.Archive.Target)
	}
}

func TestRedisPasswordFromSecretsFile(t *testing.T) {
	t.Parallel()
	secretFile := writeFile(t, "redis.json", `{"redis-password": "r3dis"}`)
	cfg, err := Load("", []string{"DATASTORAGE_REDIS_SECRETSFILE=" + secretFile, "DATASTORAGE_REDIS_PASSWORD_KEY=redis-password"})
	require.NoError(t, err)
	assert.Equal(t, "r3dis", cfg.Redis.Password)
}

func TestHMACKeyFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, content string
		wantKey       string
		wantErr       string
	}{
		{name: "trailing newline dropped", content: "k3y\r\n", wantKey: "k3y"},
		{name: "inner bytes kept", content: " k\ney ", wantKey: " k\ney "},
		{name: "empty", content: "\n", wantErr: "config: integrity.hmacKeyFile: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load("", []string{"DATASTORAGE_INTEGRITY_HMACKEYFILE=" + writeFile(t, "key", tt.content)})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.ErrorContains(t, err, "is empty")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, []byte(tt.wantKey), cfg.Integrity.HMACKey)
		})
	}
}

func TestDatabaseURLErrorDoesNotLeakPassword(t *testing.T) {
	t.Parallel()
	_, err := Load("", []string{"DATASTORAGE_DATABASE_URL=postgres://u:hunter2@db:badport/x"})
	require.ErrorContains(t, err, "config: database.url: is not a valid URL")
	assert.NotContains(t, err.Error(), "hunter2")
}

func TestRequireDatabase(t *testing.T) {
	t.Parallel()
	err := Default().RequireDatabase()
	require.EqualError(t, err, "config: database.url: required (set database.url or database.host/name/user, or DATASTORAGE_DATABASE_URL)")

	cfg, err := Load("", []string{"DATASTORAGE_DATABASE_URL=postgres://datastorage@127.0.0.1:5432/datastorage?sslmode=disable"})
	require.NoError(t, err)
	require.NoError(t, cfg.RequireDatabase())
	assert.Equal(t, "postgres://datastorage@127.0.0.1:5432/datastorage?sslmode=disable", cfg.Database.ConnString())
}

func TestPartsGetPortAndSSLModeDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := loadYAML(t, "database:\n  host: db\n  name: audit\n  user: app\n")
	require.NoError(t, err)
	assert.Equal(t, 5432, cfg.Database.Port)
	assert.Equal(t, "prefer", cfg.Database.SSLMode)
	assert.Equal(t, "host='db' port=5432 dbname='audit' user='app' sslmode='prefer'", cfg.Database.ConnString())
}

func TestByteSizeParsing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    ByteSize
		wantErr bool
	}{
		{in: "16MiB", want: 16 << 20},
		{in: "512KiB", want: 512 << 10},
		{in: "1GiB", want: 1 << 30},
		{in: "10MB", want: 10_000_000},
		{in: "2kb", want: 2000},
		{in: "1 KiB", want: 1024},
		{in: "1048576", want: 1 << 20},
		{in: "7B", want: 7},
		{in: "0", want: 0},
		{in: "", wantErr: true},
		{in: "MiB", wantErr: true},
		{in: "1.5GiB", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "16MiBs", wantErr: true},
		{in: "10TB", wantErr: true},
		{in: "9999999999999GiB", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var b ByteSize
			err := b.UnmarshalText([]byte(tt.in))
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, b)
		})
	}
}

func TestByteSizeString(t *testing.T) {
	t.Parallel()
	for want, b := range map[string]ByteSize{"16MiB": 16 * MiB, "1GiB": GiB, "3KiB": 3 * KiB, "1000B": 1000, "0B": 0} {
		assert.Equal(t, want, b.String())
	}
}

func TestByteSizeInYAMLAsInteger(t *testing.T) {
	t.Parallel()
	cfg, err := loadYAML(t, "server:\n  maxBodySize: 1024\n")
	require.NoError(t, err)
	assert.Equal(t, KiB, cfg.Server.MaxBodySize)
}

func TestDurationParsing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "90s", want: 90 * time.Second},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "0", want: 0},
		{in: "300", wantErr: `must be a duration with a unit, e.g. "300s"`},
		{in: "5 minutes", wantErr: `must be a duration such as "90s"`},
		{in: "", wantErr: "must be a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var d Duration
			err := d.UnmarshalText([]byte(tt.in))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, d.Duration)
		})
	}
}

func TestSlogLevel(t *testing.T) {
	t.Parallel()
	for level, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		assert.Equal(t, want, Logging{Level: level}.SlogLevel())
	}
}

func TestResolvePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, flag string
		env        []string
		want       string
	}{
		{"flag wins", "/flag.yaml", []string{"CONFIG_PATH=/env.yaml"}, "/flag.yaml"},
		{"environment", "", []string{"HOME=/root", "CONFIG_PATH=/env.yaml"}, "/env.yaml"},
		{"last duplicate wins", "", []string{"CONFIG_PATH=/a.yaml", "CONFIG_PATH=/b.yaml"}, "/b.yaml"},
		{"nothing", "", []string{"XCONFIG_PATH=/x"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, ResolvePath(tt.flag, tt.env))
		})
	}
}
