package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"
)

// Config is the complete service configuration. The yaml tags are also the
// source of the environment variable names, so renaming a tag renames its
// variable.
type Config struct {
	Server    Server    `yaml:"server"`
	Database  Database  `yaml:"database"`
	Redis     Redis     `yaml:"redis"`
	Auth      Auth      `yaml:"auth"`
	Ingest    Ingest    `yaml:"ingest"`
	Retention Retention `yaml:"retention"`
	Integrity Integrity `yaml:"integrity"`
	Catalog   Catalog   `yaml:"catalog"`
	Archive   Archive   `yaml:"archive"`
	Logging   Logging   `yaml:"logging"`
}

// Server configures the HTTP listeners and their limits.
type Server struct {
	Host        string `yaml:"host"`
	Port        int    `yaml:"port"`
	MetricsPort int    `yaml:"metricsPort"`
	// MaxBatchSize caps the number of events in one batch request.
	MaxBatchSize int `yaml:"maxBatchSize"`
	// MaxBodySize caps the size of a request body.
	MaxBodySize ByteSize `yaml:"maxBodySize"`
	// ShutdownTimeout bounds the whole graceful shutdown.
	ShutdownTimeout Duration `yaml:"shutdownTimeout"`
	// EndpointPropagationDelay is how long the server keeps serving after
	// readiness turns 503, so load balancers stop routing to it first.
	EndpointPropagationDelay Duration `yaml:"endpointPropagationDelay"`
	ReadHeaderTimeout        Duration `yaml:"readHeaderTimeout"`
	ReadTimeout              Duration `yaml:"readTimeout"`
	WriteTimeout             Duration `yaml:"writeTimeout"`
	IdleTimeout              Duration `yaml:"idleTimeout"`
	// RequestTimeout is the deadline given to each request's context.
	RequestTimeout Duration `yaml:"requestTimeout"`
	// Pprof serves Go's profiling handlers (/debug/pprof/) on the metrics
	// port, never on the API port. Off by default: a profile costs CPU
	// while it runs and shows the program's internals.
	Pprof bool `yaml:"pprof"`
	TLS   TLS  `yaml:"tls"`
	// RateLimit limits each client's request rate on the API routes.
	RateLimit RateLimit `yaml:"rateLimit"`
}

// TLS makes the API port serve HTTPS (TLS 1.2 or later) with a certificate
// and key from PEM files, both or neither. Replaced files are picked up
// without a restart (e.g. a cert-manager Secret). The metrics port stays
// plain HTTP.
type TLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// Enabled reports whether HTTPS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// RateLimit is a token bucket per client: the authenticated caller, else the
// client address. The probes are never limited.
type RateLimit struct {
	// RequestsPerSecond is the rate each client may sustain; 0 disables the
	// limit (the default).
	RequestsPerSecond int `yaml:"requestsPerSecond"`
	// Burst is how many requests a client may send at once; 0 means
	// RequestsPerSecond.
	Burst int `yaml:"burst"`
}

// Database configures the PostgreSQL connection pool. The connection is
// given either as URL or as Host, Name and User (with optional Port and
// SSLMode), never both.
type Database struct {
	// URL is a postgres:// URL or a keyword/value DSN.
	URL     string `yaml:"url"`
	Host    string `yaml:"host"`
	Port    int    `yaml:"port"`
	Name    string `yaml:"name"`
	User    string `yaml:"user"`
	SSLMode string `yaml:"sslMode"`
	// SecretsFile is a YAML or JSON map holding the password under
	// PasswordKey; it keeps the password out of the config file and the
	// environment, where it would leak into process listings and dumps.
	SecretsFile string `yaml:"secretsFile"`
	PasswordKey string `yaml:"passwordKey"`
	// MaxConns is the pool size; it is not part of ConnString.
	MaxConns int `yaml:"maxConns"`
	// ConnectTimeout bounds dialling one connection; it is not part of
	// ConnString either.
	ConnectTimeout Duration `yaml:"connectTimeout"`
	// ReplicaURL, optional, names a streaming standby (a postgres:// URL or
	// a keyword/value DSN; the password from SecretsFile is added as to URL)
	// that serves lists, timelines, aggregations, exports and the
	// remediation reads while its replay lag is at most MaxReplicaLag.
	ReplicaURL string `yaml:"replicaUrl"`
	// MaxReplicaLag is the largest sampled replay lag at which the standby
	// still serves reads; past it they go to the primary.
	MaxReplicaLag Duration `yaml:"maxReplicaLag"`
	// Password is read from SecretsFile by Load, never from YAML or the
	// environment.
	Password string `yaml:"-"`
}

// Redis configures the spool (the fallback queue and the dead-letter queue).
type Redis struct {
	// Addr is host:port.
	Addr        string `yaml:"addr"`
	SecretsFile string `yaml:"secretsFile"`
	PasswordKey string `yaml:"passwordKey"`
	DB          int    `yaml:"db"`
	// DLQMaxLen caps the spool streams so a long outage cannot exhaust Redis
	// memory. The streams are never trimmed (that would drop accepted events):
	// at the cap the spool refuses, and a write PostgreSQL cannot take
	// answers 503 so the client keeps the event.
	DLQMaxLen int64 `yaml:"dlqMaxLen"`
	// ClaimIdle is how long a spooled entry may stay delivered to a replay
	// worker without being acknowledged before another worker takes it over;
	// it is the delay before the entries of a crashed replica are replayed
	// elsewhere.
	ClaimIdle Duration `yaml:"claimIdle"`
	// ReplayBatch is the number of spooled entries a replay worker reads and
	// commits at once.
	ReplayBatch int `yaml:"replayBatch"`
	// MaxDeliveries is how many times an entry that fails for a data reason
	// is tried before it moves to the dead-letter stream.
	MaxDeliveries int `yaml:"maxDeliveries"`
	// Sentinel, when configured, finds the master through Redis Sentinel
	// and follows it through failovers; Addr is then not used.
	Sentinel RedisSentinel `yaml:"sentinel"`
	// MinReplicas is how many replicas must confirm a spooled write (WAIT)
	// before it is answered 201/202; see RequiredReplicas.
	MinReplicas MinReplicas `yaml:"minReplicas"`
	// WaitTimeout bounds that confirmation; a shortfall is answered 503.
	WaitTimeout Duration `yaml:"waitTimeout"`
	// Password is read from SecretsFile by Load.
	Password string `yaml:"-"`
}

// Auth selects how API callers are authenticated (CONTRACT §11): "none",
// "static" (bearer tokens with their verbs from TokenFile, re-read when it
// changes) or "kubernetes" (TokenReview and SubjectAccessReview against the
// Kubernetes API, for the data-storage-service Service in Namespace).
type Auth struct {
	Mode string `yaml:"mode"`
	// TokenFile is the static mode's token file; only allowed in that mode.
	TokenFile string `yaml:"tokenFile"`
	// Namespace is where the kubernetes mode's data-storage-service Service
	// lives; required in that mode, ignored in the others.
	Namespace string `yaml:"namespace"`
}

// Ingest tunes the write path.
type Ingest struct {
	// MaxEventAge is how far in the past an event timestamp may lie.
	MaxEventAge Duration `yaml:"maxEventAge"`
	// MaxClockSkew is how far in the future an event timestamp may lie.
	MaxClockSkew Duration `yaml:"maxClockSkew"`
	// Writers is the number of group-commit writer goroutines.
	Writers int `yaml:"writers"`
	// SmallCommits is the number of small commits (under 200 events) the
	// writers run at once; 0 means as many as Writers. Fewer small commits
	// in flight make each one larger under load (ingest.Options).
	SmallCommits int `yaml:"smallCommits"`
	// MaxBatch is the number of events written in one commit.
	MaxBatch int `yaml:"maxBatch"`
	// QueueSize is the number of events that may wait for a writer.
	QueueSize int `yaml:"queueSize"`
}

// Retention configures the deletion of expired events (docs/integrity.md).
type Retention struct {
	// Enabled runs the retention job in serve: every replica tries, one at a
	// time runs it (a PostgreSQL advisory lock decides).
	Enabled bool `yaml:"enabled"`
	// DefaultDays is retention_days for events that do not set it.
	DefaultDays int `yaml:"defaultDays"`
	// Interval is the time between two runs.
	Interval Duration `yaml:"interval"`
	// BatchSize is the number of rows one DELETE aims at; it halves after
	// a batch times out.
	BatchSize int `yaml:"batchSize"`
	// BatchTimeout is the statement timeout of one batch.
	BatchTimeout Duration `yaml:"batchTimeout"`
}

// Integrity configures the event hash chain.
type Integrity struct {
	// HMACKeyFile, when set, switches the chain from plain SHA-256 to
	// HMAC-SHA256 with the key stored in this file.
	HMACKeyFile string `yaml:"hmacKeyFile"`
	// HMACKey is the content of HMACKeyFile without trailing line breaks,
	// filled by Load; nil means plain SHA-256.
	HMACKey []byte `yaml:"-"`
	// SigningKeyFile holds the Ed25519 private key that signs exports: PEM
	// (PKCS #8) or the 32-byte seed (raw, hex or base64). Empty means an
	// ephemeral key generated at start, whose public key is logged.
	SigningKeyFile string `yaml:"signingKeyFile"`
	// SigningKey is the content of SigningKeyFile, filled by Load and parsed
	// by the integrity package.
	SigningKey []byte `yaml:"-"`
}

// Catalog configures the workflow catalog's search (CONTRACT §15.4).
type Catalog struct {
	// Weights are the score's term weights.
	Weights CatalogWeights `yaml:"weights"`
	// DiscoveryTTL is how long a search answer can be validated; older
	// discoveries are deleted.
	DiscoveryTTL Duration `yaml:"discoveryTTL"`
}

// CatalogWeights weigh each kind of search term: the context labels, the
// detected labels, the custom labels and the text.
type CatalogWeights struct {
	Context  float64 `yaml:"context"`
	Detected float64 `yaml:"detected"`
	Custom   float64 `yaml:"custom"`
	Text     float64 `yaml:"text"`
}

// Archive configures the archive tier (issue 14): months older than After are
// written as Parquet files to Target, verified, and dropped from PostgreSQL.
type Archive struct {
	// Enabled runs the archive job in serve (one replica at a time, as
	// retention). It requires Target. Target alone, with Enabled false, lets
	// the archive commands (list, verify, restore) reach the archive while
	// the job does not run.
	Enabled bool `yaml:"enabled"`
	// After is how old a month's last day must be before the month is
	// archived. It may not be shorter than ingest.maxEventAge, or an event
	// could arrive for a month already archived.
	After Duration `yaml:"after"`
	// Target is where archived months go: file:///abs/dir or
	// s3://bucket/prefix. Empty means no archive.
	Target string `yaml:"target"`
	// TempDir holds the job's temporary files: the runs its sort of a
	// month spills (about the partition's heap size, ~0.9 KB per event)
	// and one Parquet file while it is written. Empty means the system's
	// (TMPDIR).
	TempDir string `yaml:"tempDir"`
	// SortMemory bounds the row bytes the job's sort holds in memory at
	// once (one run); the job's RSS is about 3 times it.
	SortMemory ByteSize `yaml:"sortMemory"`
	// S3 configures an s3:// Target; its keys are refused for a file:// one.
	S3 ArchiveS3 `yaml:"s3"`
}

// ArchiveS3 configures the S3 client of an s3:// archive target. Every field
// may stay empty: the standard AWS environment (AWS_REGION, AWS_PROFILE, web
// identity, instance roles…) then decides, as for any AWS SDK.
type ArchiveS3 struct {
	// Endpoint is the URL of an S3-compatible service (MinIO, Ceph…); empty
	// means AWS S3.
	Endpoint string `yaml:"endpoint"`
	// Region is the bucket's region; empty takes the AWS environment, else
	// us-east-1.
	Region string `yaml:"region"`
	// PathStyle addresses the bucket in the URL path, as most S3-compatible
	// services need.
	PathStyle bool `yaml:"pathStyle"`
	// AccessKeyIDFile and SecretAccessKeyFile hold static credentials, both
	// or neither (a mounted Secret); neither means the AWS credential chain.
	AccessKeyIDFile     string `yaml:"accessKeyIdFile"`
	SecretAccessKeyFile string `yaml:"secretAccessKeyFile"`
}

// Logging configures the slog handler.
type Logging struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// SlogLevel returns the slog.Level for Level. Load has already rejected
// unknown levels; anything else maps to slog.LevelInfo.
func (l Logging) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

const (
	envPrefix       = "DATASTORAGE_"
	defaultPGPort   = 5432
	defaultSSLMode  = "prefer"
	maxDBMaxConns   = 1000
	defaultPassword = "password"
)

// Default returns the configuration used when nothing overrides it.
func Default() Config {
	return Config{
		Server: Server{
			Host:                     "0.0.0.0",
			Port:                     8080,
			MetricsPort:              9090,
			MaxBatchSize:             10000,
			MaxBodySize:              32 * MiB,
			ShutdownTimeout:          Duration{60 * time.Second},
			EndpointPropagationDelay: Duration{5 * time.Second},
			ReadHeaderTimeout:        Duration{10 * time.Second},
			ReadTimeout:              Duration{30 * time.Second},
			WriteTimeout:             Duration{60 * time.Second},
			IdleTimeout:              Duration{120 * time.Second},
			RequestTimeout:           Duration{30 * time.Second},
		},
		Database: Database{
			PasswordKey: defaultPassword,
			// Capped so that a very large machine still gets a valid default.
			MaxConns:       min(4*runtime.NumCPU(), maxDBMaxConns),
			ConnectTimeout: Duration{5 * time.Second},
			MaxReplicaLag:  Duration{5 * time.Second},
		},
		Redis: Redis{
			Addr:          "127.0.0.1:6379",
			PasswordKey:   defaultPassword,
			DLQMaxLen:     1_000_000,
			ClaimIdle:     Duration{30 * time.Second},
			ReplayBatch:   500,
			MaxDeliveries: 5,
			Sentinel:      RedisSentinel{PasswordKey: defaultPassword},
			MinReplicas:   AutoReplicas,
			WaitTimeout:   Duration{time.Second},
		},
		Auth: Auth{Mode: "none"},
		Ingest: Ingest{
			MaxEventAge:  Duration{168 * time.Hour},
			MaxClockSkew: Duration{60 * time.Minute},
			Writers:      2,
			SmallCommits: 1,
			MaxBatch:     2000,
			QueueSize:    20000,
		},
		Retention: Retention{
			DefaultDays:  2555,
			Interval:     Duration{time.Hour},
			BatchSize:    5000,
			BatchTimeout: Duration{30 * time.Second},
		},
		Catalog: Catalog{
			Weights:      CatalogWeights{Context: 1, Detected: 0.5, Custom: 0.5, Text: 1},
			DiscoveryTTL: Duration{24 * time.Hour},
		},
		// 90 days: a quarter of hot history, the usual horizon of incident
		// reviews and well past ingest.maxEventAge.
		Archive: Archive{After: Duration{90 * 24 * time.Hour}, SortMemory: 256 << 20},
		Logging: Logging{Level: "info", Format: "json"},
	}
}

// Load builds the configuration from the defaults, the YAML file at path
// ("" means no file), the DATASTORAGE_ variables in environ (in the form of
// os.Environ, passed in so tests control it) and the secret files, then
// validates it. All problems are returned at once, joined, each naming its
// key. Load does not require a database; see Config.RequireDatabase.
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	var errs []error
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: read file: %w", err)
		}
		fileErrs, err := decodeYAML(data, &cfg)
		if err != nil {
			return Config{}, fmt.Errorf("config: %s: %w", path, err)
		}
		errs = append(errs, fileErrs...)
	}
	errs = append(errs, applyEnv(&cfg, environ)...)
	cfg.Database.fillPartDefaults()
	errs = append(errs, cfg.validate()...)
	errs = append(errs, cfg.readSecrets()...)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// RequireDatabase reports whether a database connection is configured. Load
// leaves this to the commands that need one so the others run without it.
func (c Config) RequireDatabase() error {
	if c.Database.URL == "" && c.Database.Host == "" {
		return errors.New("config: database.url: required (set database.url or database.host/name/user, or DATASTORAGE_DATABASE_URL)")
	}
	return nil
}

// ResolvePath picks the config file path: the flag value if given, else
// CONFIG_PATH from environ, else "" (defaults and environment only).
func ResolvePath(flagValue string, environ []string) string {
	if flagValue != "" {
		return flagValue
	}
	path := ""
	// Later entries win, as they do for duplicated variables in a real
	// environment.
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "CONFIG_PATH="); ok {
			path = v
		}
	}
	return path
}
