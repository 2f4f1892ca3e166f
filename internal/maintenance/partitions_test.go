package maintenance_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/lifecycle"
	"kubernaut.ai/datastorage/internal/maintenance"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/testenv"
)

// gauge reads a gauge of reg; ok is false while it has never been set.
func gauge(t *testing.T, reg *prometheus.Registry, name string) (v float64, ok bool) {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func TestPartitionUpkeepKeepsMonthsAheadAndReportsTheHorizon(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A migrated store without the partitions storetest would create.
	st, err := store.Open(ctx, testenv.NewDatabase(t), store.Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	upkeep := maintenance.NewPartitionUpkeep(st, reg, nil)
	require.NoError(t, upkeep.EnsureAhead(ctx))
	parts, err := st.Partitions(ctx)
	require.NoError(t, err)
	have := map[time.Time]bool{}
	for _, p := range parts {
		have[p.From] = true
	}
	y, m, _ := time.Now().UTC().Date()
	this := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	for i := -1; i <= maintenance.PartitionsAhead; i++ {
		assert.True(t, have[this.AddDate(0, i, 0)], "month %+d has a partition", i)
	}
	assert.False(t, have[this.AddDate(0, maintenance.PartitionsAhead+1, 0)], "no further ahead than asked")

	// The background loop measures the horizon as it starts.
	loop := &lifecycle.Loop{Run: upkeep.Run}
	require.NoError(t, loop.Start(ctx))
	deadline := time.Now().Add(time.Minute)
	for {
		if v, ok := gauge(t, reg, "datastorage_partitions_last_check_timestamp_seconds"); ok && v > 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the horizon was never measured")
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, loop.Stop(ctx))
	ahead, _ := gauge(t, reg, "datastorage_partitions_ahead_months")
	assert.Equal(t, float64(maintenance.PartitionsAhead), ahead)
}

func TestRebuildRollupsWalksTheRangeInWholeHourSteps(t *testing.T) {
	t.Parallel()
	rec := &rollupRecorder{}
	from := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	to := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	total, start, err := maintenance.RebuildRollups(context.Background(), rec, from, to, 6*time.Hour+time.Minute)
	require.NoError(t, err)
	assert.Equal(t, from.Truncate(time.Hour), start)
	assert.Equal(t, int64(len(rec.ranges)), total)
	require.Len(t, rec.ranges, 3)
	assert.Equal(t, [2]time.Time{from.Truncate(time.Hour), from.Truncate(time.Hour).Add(6 * time.Hour)}, rec.ranges[0])
	assert.Equal(t, to, rec.ranges[2][1], "the last step ends at to")
	for i := 1; i < len(rec.ranges); i++ {
		assert.Equal(t, rec.ranges[i-1][1], rec.ranges[i][0], "no hour recounted twice, none skipped")
	}
}

// rollupRecorder notes the ranges it is asked to recount (one event each).
type rollupRecorder struct{ ranges [][2]time.Time }

func (r *rollupRecorder) RebuildRollups(_ context.Context, from, to time.Time) (int64, error) {
	r.ranges = append(r.ranges, [2]time.Time{from, to})
	return 1, nil
}
