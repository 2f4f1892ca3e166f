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
