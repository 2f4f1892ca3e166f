package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// MigrationStatus is one migration and whether it is applied.
type MigrationStatus struct {
	Version int64
	Name    string
	Applied bool
}

// provider builds a goose provider over a database/sql handle, which goose
// requires; it is used only for migrations. The session locker takes a
// PostgreSQL advisory lock so replicas starting together migrate one at a time.
func (s *Store) provider(log *slog.Logger) (*goose.Provider, func() error, error) {
	db := stdlib.OpenDBFromPool(s.pool)
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, nil, fmt.Errorf("store: migrations: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, nil, fmt.Errorf("store: migration lock: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true)}
	if log != nil {
		opts = append(opts, goose.WithSlog(log))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, opts...)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("store: migrations: %w", err)
	}
	return p, db.Close, nil
}

// Migrate applies every pending migration and returns how many it applied.
func (s *Store) Migrate(ctx context.Context, log *slog.Logger) (_ int, err error) {
	defer classifyErr(&err)
	p, closeDB, err := s.provider(log)
	if err != nil {
		return 0, err
	}
	defer closeDB()
	res, err := p.Up(ctx)
	if err != nil {
		return len(res), fmt.Errorf("store: migrate up: %w", err)
	}
	return len(res), nil
}

// MigrationStatus lists every known migration and whether it is applied.
func (s *Store) MigrationStatus(ctx context.Context) (_ []MigrationStatus, err error) {
	defer classifyErr(&err)
	p, closeDB, err := s.provider(nil)
	if err != nil {
		return nil, err
	}
	defer closeDB()
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migration status: %w", err)
	}
	out := make([]MigrationStatus, 0, len(st))
	for _, m := range st {
		out = append(out, MigrationStatus{
			Version: m.Source.Version,
			Name:    m.Source.Path,
			Applied: m.State == goose.StateApplied,
		})
	}
	return out, nil
}

// FirstMigration is the version that creates audit_events. MigrateDownTo
// never rolls it back: its Down drops the table and every event with it.
const FirstMigration = 1

// ErrRollbackBelowFirst is returned by MigrateDownTo for a target version
// below FirstMigration.
var ErrRollbackBelowFirst = fmt.Errorf("store: migrations can be rolled back to %d at the lowest: rolling back %d drops every event", FirstMigration, FirstMigration)

// MigrateDownTo rolls back the applied migrations above version, newest
// first, and returns how many it rolled back. Every Down above
// FirstMigration keeps the events (a test runs them all on a populated
// database); what a Down removes is derived data or a guard, and the Up
// that follows restores it.
func (s *Store) MigrateDownTo(ctx context.Context, version int64) (int, error) {
	if version < FirstMigration {
		return 0, ErrRollbackBelowFirst
	}
	p, closeDB, err := s.provider(nil)
	if err != nil {
		return 0, err
	}
	defer closeDB()
	res, err := p.DownTo(ctx, version)
	if err != nil {
		return len(res), fmt.Errorf("store: migrate down to %d: %w", version, err)
	}
	return len(res), nil
}
