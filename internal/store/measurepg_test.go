package store

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/testenv"
)

// measureSettings are the settings of the measurement tests' private
// PostgreSQL: durable as production is (fsync, synchronous commit,
// full-page writes), sized as cmd/dsbench's, and with pg_stat_statements
// counting every statement, those of triggers too.
var measureSettings = [][2]string{
	{"fsync", "on"}, {"synchronous_commit", "on"}, {"full_page_writes", "on"}, {"wal_level", "replica"},
	{"shared_buffers", "1GB"}, {"wal_buffers", "16MB"}, {"max_wal_size", "4GB"}, {"checkpoint_timeout", "15min"},
	{"shared_preload_libraries", "pg_stat_statements"}, {"pg_stat_statements.track", "all"},
}

// startMeasuredPostgres starts a private PostgreSQL for a measurement
// test, with measureSettings and then override (a later value of a
// setting wins), closed when the test ends, and returns it with the pid
// of its postmaster, whose process tree is PostgreSQL's CPU.
func startMeasuredPostgres(t *testing.T, override ...[2]string) (*testenv.Postgres, int) {
	t.Helper()
	var opts []testenv.PostgresOption
	for _, s := range append(measureSettings[:len(measureSettings):len(measureSettings)], override...) {
		opts = append(opts, testenv.WithPostgresSetting(s[0], s[1]))
	}
	pg, err := testenv.StartPostgres(opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Close() })
	pidFile, err := os.ReadFile(filepath.Join(pg.DataDir, "postmaster.pid"))
	require.NoError(t, err)
	postmaster, err := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0])
	require.NoError(t, err)
	return pg, postmaster
}

// measuredStore opens a store on url for a measurement test, closed when
// the test ends, migrated, with 36 monthly partitions before this month's
// (as dsbench's database has during its load: what a partitioned lookup
// or a foreign-key check costs depends on them).
func measuredStore(t *testing.T, url string, opts Options) *Store {
	t.Helper()
	ctx := context.Background()
	st, err := Open(ctx, url, opts)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -35, 0), 37)
	require.NoError(t, err)
	return st
}
