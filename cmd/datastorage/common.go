package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/config"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/spool"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/telemetry"
)

func loadConfig(flagPath string, environ []string, logOut io.Writer) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(config.ResolvePath(flagPath, environ), environ)
	if err != nil {
		return cfg, nil, err
	}
	log, err := telemetry.NewLogger(logOut, cfg.Logging.SlogLevel(), cfg.Logging.Format)
	return cfg, log, err
}

// openStore opens the PostgreSQL pool of cfg; a config without a database
// is refused here, naming the key, for every command that needs one.
func openStore(ctx context.Context, cfg config.Config) (*store.Store, error) {
	return openStoreWith(ctx, cfg, store.Options{})
}

// openStoreWith is openStore with the options only serve sets (the standby
// for reads, metrics, a logger) in extra.
func openStoreWith(ctx context.Context, cfg config.Config, extra store.Options) (*store.Store, error) {
	if err := cfg.RequireDatabase(); err != nil {
		return nil, err
	}
	extra.MaxConns = int32(cfg.Database.MaxConns)
	extra.ConnectTimeout = cfg.Database.ConnectTimeout.Duration
	extra.Hasher = audit.NewHasher(cfg.Integrity.HMACKey)
	return store.Open(ctx, cfg.Database.ConnString(), extra)
}

// migrateWithRetry applies migrations, waiting up to patience for PostgreSQL
// to accept connections: in a fresh deployment the database often starts
// after the service.
func migrateWithRetry(ctx context.Context, st *store.Store, log *slog.Logger, patience time.Duration) error {
	deadline := time.Now().Add(patience)
	for {
		n, err := st.Migrate(ctx, log)
		if err == nil {
			if n > 0 {
				log.Info("applied migrations", "count", n)
			}
			return nil
		}
		if !store.IsUnavailable(err) || time.Now().After(deadline) {
			return fmt.Errorf("migrate: %w", err)
		}
		log.Warn("database not reachable yet; retrying migration", "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// newReplayWorker builds the spool's replay worker over pipeline, as serve
// and dlq replay both run it.
func newReplayWorker(cfg config.Config, sp *spool.Spool, pipeline *ingest.Pipeline, st *store.Store, log *slog.Logger) (*spool.Worker, error) {
	return sp.NewWorker(spool.WorkerOptions{
		BatchSize:     cfg.Redis.ReplayBatch,
		ClaimIdle:     cfg.Redis.ClaimIdle.Duration,
		MaxDeliveries: cfg.Redis.MaxDeliveries,
		Events:        eventReplayer{pipeline},
		Notifications: notificationReplayer{st},
		Database:      st,
		Log:           log,
	})
}
