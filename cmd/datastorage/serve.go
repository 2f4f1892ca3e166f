package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/catalog"
	"kubernaut.ai/datastorage/internal/config"
	"kubernaut.ai/datastorage/internal/console"
	"kubernaut.ai/datastorage/internal/httpapi"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/lifecycle"
	"kubernaut.ai/datastorage/internal/maintenance"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/remediation"
	"kubernaut.ai/datastorage/internal/spool"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/telemetry"
	"kubernaut.ai/datastorage/internal/version"
)

func cmdServe(ctx context.Context, args, environ []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (default $CONFIG_PATH)")
	noMigrate := fs.Bool("no-migrate", false, "do not apply schema migrations at start")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, log, err := loadConfig(*configPath, environ, stderr)
	if err != nil {
		return err
	}
	setGCPercent(environ)
	reg := telemetry.NewRegistry()
	authz, tlsCfg, err := apiSecurity(cfg, environ, log, reg)
	if err != nil {
		return err
	}
	log.Info("starting datastorage", "version", version.Version, "api", net.JoinHostPort(cfg.Server.Host, strconv.Itoa(cfg.Server.Port)),
		"metrics", net.JoinHostPort(cfg.Server.Host, strconv.Itoa(cfg.Server.MetricsPort)))

	// Only the server reads from the standby: the other commands have no
	// sampler to tell whether it is current, so they read the primary.
	st, err := openStoreWith(ctx, cfg, store.Options{
		ReplicaURL:    cfg.Database.ReplicaConnString(),
		MaxReplicaLag: cfg.Database.MaxReplicaLag.Duration,
		Registerer:    reg,
		Log:           log,
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if !*noMigrate {
		if err := migrateWithRetry(ctx, st, log, time.Minute); err != nil {
			return err
		}
	}
	reg.MustRegister(telemetry.NewPoolCollector(st.Pool(), st.ReplicaPool()))
	upkeep := maintenance.NewPartitionUpkeep(st, reg, log)
	if err := upkeep.EnsureAhead(ctx); err != nil {
		// Writes create a missing month on demand, so a failure here is
		// worth a warning, not a refusal to start.
		log.Warn("could not create partitions ahead at start", "error", err)
	}

	// The spool does not need Redis at start either: while Redis is down,
	// writes commit to PostgreSQL as usual and readiness says "spool":"down".
	redis.SetLogger(redisLog{log})
	rdb := openRedis(cfg.Redis)
	defer rdb.Close()
	if sn := cfg.Redis.Sentinel; sn.Enabled() {
		log.Info("spool: Redis through Sentinel", "master_name", sn.MasterName, "sentinels", sn.Addrs.String(),
			"min_replicas", cfg.Redis.RequiredReplicas(), "wait_timeout", cfg.Redis.WaitTimeout.String())
	} else if n := cfg.Redis.RequiredReplicas(); n > 0 {
		log.Info("spool: Redis", "addr", cfg.Redis.Addr, "min_replicas", n, "wait_timeout", cfg.Redis.WaitTimeout.String())
	}

	// Every piece of background work joins bg, which stops it (last joined
	// first, each waited for) before the deferred closes of Redis and the
	// pool: on shutdown, and on every error path from here on.
	var bg lifecycle.Group
	defer stopBackground(cfg, log, &bg)
	bg.Add("store parent lookups", st)
	sp := spool.New(rdb, spool.Options{
		MaxLen:      cfg.Redis.DLQMaxLen,
		Metrics:     spool.NewMetrics(reg),
		MinReplicas: cfg.Redis.RequiredReplicas(),
		WaitTimeout: cfg.Redis.WaitTimeout.Duration,
	})
	reg.MustRegister(spool.NewCollector(sp))

	pipeline := ingest.New(st, sp, ingest.Options{
		Writers:      cfg.Ingest.Writers,
		SmallCommits: cfg.Ingest.SmallCommits,
		MaxBatch:     cfg.Ingest.MaxBatch,
		QueueSize:    cfg.Ingest.QueueSize,
	}, ingest.NewMetrics(reg), log)
	// The writers start now, before the replay worker and the API that feed
	// them, so they stop after both.
	if err := bg.Start(ctx, "ingest pipeline", pipeline); err != nil {
		return err
	}
	worker, err := newReplayWorker(cfg, sp, pipeline, st, log)
	if err != nil {
		return err
	}

	signer, err := newSigner(cfg, log)
	if err != nil {
		return err
	}
	archiver, err := archiveJob(ctx, cfg, st, reg, log)
	if err != nil {
		return err
	}
	retention, err := retentionJob(ctx, cfg, st, reg, log)
	if err != nil {
		return err
	}

	validator := &audit.Validator{
		MaxAge:               cfg.Ingest.MaxEventAge.Duration,
		MaxSkew:              cfg.Ingest.MaxClockSkew.Duration,
		DefaultRetentionDays: int32(cfg.Retention.DefaultDays),
	}
	workflows := newCatalog(cfg, st, pipeline, validator, reg, log)

	health := &healthState{store: st, spool: sp}
	// With an archive target, timelines and verify-chain include the
	// archived links of a correlation (docs/archive.md).
	var timelineStore query.TimelineStore = st
	var chainStore integrity.Store = st
	reader := query.New(st)
	if cfg.Archive.Target != "" {
		objs, err := openTarget(ctx, cfg)
		if err != nil {
			return err
		}
		ar := &archive.Reader{Source: st, Objects: objs, PublicKey: signer.PublicKey(), Holds: st}
		timelineStore = archive.TimelineStore{TimelineSource: st, Reader: ar}
		chainStore = archive.ChainStore{Store: st, Reader: ar, Holds: st}
		reader = reader.WithArchive(ar)
	}
	api := httpapi.New(httpapi.Config{
		Validator:      validator,
		Ingest:         pipeline,
		Reader:         reader,
		Timelines:      query.NewTimelines(timelineStore),
		Aggregator:     query.NewAggregator(st),
		Notifications:  st,
		Health:         health,
		Log:            log,
		Registerer:     reg,
		MaxBatchSize:   cfg.Server.MaxBatchSize,
		MaxBodySize:    int64(cfg.Server.MaxBodySize),
		RequestTimeout: cfg.Server.RequestTimeout.Duration,
		Auth:           authz,
		RateLimit:      apiRateLimit(cfg.Server.RateLimit),

		NotificationSpool: sp,
		Integrity:         integrity.NewService(chainStore, audit.NewHasher(cfg.Integrity.HMACKey), signer),
		Remediations:      remediation.New(st),
		Catalog:           workflows,
		Console: func(h http.Handler) http.Handler {
			return console.New(h, console.Config{Auth: consoleAuth(authz), Secure: cfg.Server.TLS.Enabled(), Log: log})
		},
	})

	apiSrv := &http.Server{
		Addr:              net.JoinHostPort(cfg.Server.Host, strconv.Itoa(cfg.Server.Port)),
		Handler:           api,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.Duration,
		ReadTimeout:       cfg.Server.ReadTimeout.Duration,
		WriteTimeout:      cfg.Server.WriteTimeout.Duration,
		IdleTimeout:       cfg.Server.IdleTimeout.Duration,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext:       httpapi.ConnContext,
	}
	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", telemetry.MetricsHandler(reg))
	if cfg.Server.Pprof {
		registerPprof(metricsMux)
	}
	metricsSrv := &http.Server{
		Addr:              net.JoinHostPort(cfg.Server.Host, strconv.Itoa(cfg.Server.MetricsPort)),
		Handler:           metricsMux,
		ReadHeaderTimeout: 10 * time.Second,
	}
	// Listen before serving so a port clash stops the start with a clear error.
	apiLn, err := net.Listen("tcp", apiSrv.Addr)
	if err != nil {
		return fmt.Errorf("listen on server.port: %w", err)
	}
	if tlsCfg != nil {
		apiLn = tls.NewListener(apiLn, tlsCfg)
	} else {
		// Content-Length with Transfer-Encoding is refused (request
		// smuggling); the check needs the plain bytes (see GuardListener).
		apiLn = httpapi.GuardListener(apiLn)
	}
	metricsLn, err := net.Listen("tcp", metricsSrv.Addr)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("listen on server.metricsPort: %w", err)
	}

	// Background work starts last, once nothing can fail but itself.
	replay := &lifecycle.Loop{Run: worker.Run}
	background := []namedService{{"spool replay", replay}, {"partition upkeep", &lifecycle.Loop{Run: upkeep.Run}},
		{"workflow discovery sweeper", &lifecycle.Loop{Run: workflows.RunSweeper}}}
	if st.ReadRouter().HasReplica() {
		background = append(background, namedService{"standby lag sampler", &lifecycle.Loop{Run: st.ReadRouter().Run}})
	}
	if job := retention; job != nil {
		background = append(background, namedService{"retention", &lifecycle.Loop{Run: job.Run}})
	}
	if job := archiver; job != nil {
		background = append(background, namedService{"archive", &lifecycle.Loop{Run: job.Run}})
	}
	for _, b := range background {
		if err := bg.Start(ctx, b.name, b.svc); err != nil {
			apiLn.Close()
			metricsLn.Close()
			return err
		}
	}
	log.Info("replay worker started", "consumer", worker.Consumer(), "group", spool.Group)

	serveErr := make(chan error, 2)
	go func() { serveErr <- apiSrv.Serve(apiLn) }()
	go func() { serveErr <- metricsSrv.Serve(metricsLn) }()
	log.Info("serving", "api", apiLn.Addr().String(), "metrics", metricsLn.Addr().String())

	select {
	case <-ctx.Done():
		log.Info("shutdown requested")
	case err := <-serveErr:
		return fmt.Errorf("server stopped: %w", err)
	}
	return shutdown(cfg, log, health, apiSrv, metricsSrv, replay, &bg)
}

// namedService is background work and the name its errors carry.
type namedService struct {
	name string
	svc  lifecycle.Service
}

// stopBackground stops what is left in bg when serve returns: everything
// after a failed start, nothing after a shutdown (which stopped it all).
func stopBackground(cfg config.Config, log *slog.Logger, bg *lifecycle.Group) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.Duration)
	defer cancel()
	if err := bg.Stop(ctx); err != nil {
		log.Error("background work did not stop cleanly", "error", err)
	}
}

// shutdown follows docs/architecture.md: readiness turns 503, the endpoints
// have time to drop this pod, in-flight requests finish while the replay
// worker stops (its commit in progress is finished and acknowledged,
// anything else it holds stays pending for another replica), then the rest
// of the background work stops, last started first: retention and partition
// upkeep, the pipeline, which commits (or spools) what it holds, and the
// store's parent lookups. Only then do Redis and the pool close (deferred by
// the caller). Every request either completes or was never accepted.
func shutdown(cfg config.Config, log *slog.Logger, health *healthState, apiSrv, metricsSrv *http.Server,
	replay lifecycle.Service, bg *lifecycle.Group) error {
	health.shuttingDown.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.Duration)
	defer cancel()
	if d := cfg.Server.EndpointPropagationDelay.Duration; d > 0 {
		log.Info("readiness is 503; waiting for endpoints to drop this instance", "delay", d)
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	var errs []error
	// Replay and the HTTP drain stop side by side; the pipeline (in bg)
	// closes only after both, since both feed it.
	replayErr := make(chan error, 1)
	go func() { replayErr <- replay.Stop(ctx) }()
	if err := apiSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("drain HTTP: %w", err))
	}
	if err := <-replayErr; err != nil {
		errs = append(errs, err)
	}
	if err := bg.Stop(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := metricsSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stop metrics: %w", err))
	}
	if len(errs) == 0 {
		log.Info("shutdown complete")
	}
	return errors.Join(errs...)
}

// healthState answers readiness.
type healthState struct {
	store        *store.Store
	spool        *spool.Spool
	shuttingDown atomic.Bool
}

// Check pings PostgreSQL and Redis side by side, so a hanging one costs the
// probe one timeout, not two.
func (h *healthState) Check(ctx context.Context) (dbUp, spoolUp bool) {
	var wg sync.WaitGroup
	wg.Go(func() { dbUp = h.store.Ping(ctx) == nil })
	wg.Go(func() { spoolUp = h.spool.Ping(ctx) == nil })
	wg.Wait()
	return dbUp, spoolUp
}

func (h *healthState) ShuttingDown() bool { return h.shuttingDown.Load() }

// defaultGCPercent is the collector's target when GOGC is not set. The
// write path allocates per event (bodies, decoded events, COPY rows) while
// the live heap stays small (40–50 MB at full load), so Go's default of 100
// collects often: a fifth of the server's CPU in the batch benchmark. Twice
// the headroom measured 8–13 % more batch throughput for some 20 MB more
// RSS (bench/results/latest.md). GOGC, when set, wins as usual.
const defaultGCPercent = 200

func setGCPercent(environ []string) {
	for _, kv := range environ {
		if strings.HasPrefix(kv, "GOGC=") {
			return
		}
	}
	debug.SetGCPercent(defaultGCPercent)
}

// newCatalog wires the workflow catalog: its changes commit with their
// events in the store; its search and validation events go through the
// write pipeline like any client's.
func newCatalog(cfg config.Config, st *store.Store, pipeline *ingest.Pipeline, validator *audit.Validator,
	reg prometheus.Registerer, log *slog.Logger) *catalog.Service {
	w := cfg.Catalog.Weights
	return catalog.New(catalog.Options{
		Store: st,
		Sink: catalog.EventSinkFunc(func(ctx context.Context, events []*audit.Event) error {
			_, err := pipeline.Submit(ctx, events)
			return err
		}),
		Validator:    validator,
		Weights:      catalog.Weights{Context: w.Context, Detected: w.Detected, Custom: w.Custom, Text: w.Text},
		DiscoveryTTL: cfg.Catalog.DiscoveryTTL.Duration,
		Registerer:   reg,
		Log:          log,
	})
}

// consoleAuth is the console's sign-in check: the API's own authorizer, or
// none (a nil interface, not an interface holding a nil) with auth.mode none.
func consoleAuth(a httpapi.Authorizer) console.Authorizer {
	if a == nil {
		return nil
	}
	return a
}
