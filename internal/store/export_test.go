package store

import (
	"context"
	"fmt"
)

// MigrateUpTo applies the pending migrations up to and including version,
// for tests that compare the schema before and after a migration.
func (s *Store) MigrateUpTo(ctx context.Context, version int64) (int, error) {
	p, closeDB, err := s.provider(nil)
	if err != nil {
		return 0, err
	}
	defer closeDB()
	res, err := p.UpTo(ctx, version)
	if err != nil {
		return len(res), fmt.Errorf("store: migrate up to %d: %w", version, err)
	}
	return len(res), nil
}

// MigrateDownTo rolls back the applied migrations above version, for tests
// of a migration's Down section.
func (s *Store) MigrateDownTo(ctx context.Context, version int64) (int, error) {
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
