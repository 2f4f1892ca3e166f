package archive_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/query"
)

// TestArchiveMeasure measures the archive tier; it runs only when
// ARCHIVE_MEASURE_CORRELATIONS is set (50 events each) and asserts nothing
// about time: it prints archive throughput (events/s, write + verify +
// PostgreSQL digest + drop), Parquet bytes per event, and the latency of
// an archived correlation's timeline from the directory target.
//
//	ARCHIVE_MEASURE_CORRELATIONS=2000 go test -run TestArchiveMeasure -v ./internal/archive/
//
// The events are written through the store (real hash chains, which the
// archive verifies), not by internal/benchdata, whose stand-in hashes the
// archive's verification rightly refuses.
func TestArchiveMeasure(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ARCHIVE_MEASURE_CORRELATIONS"))
	if n <= 0 {
		t.Skip("set ARCHIVE_MEASURE_CORRELATIONS to measure")
	}
	e := newEnv(t)
	start := time.Now()
	e.fill(n, 50)
	t.Logf("loaded %d events in %s", len(e.events), time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	objs := fileTarget(t, t.TempDir())
	a := e.archiver(objs)
	a.Options.RowsPerGroup, a.Options.RowsPerFile = 0, 0 // the defaults
	if g, _ := strconv.Atoi(os.Getenv("ARCHIVE_MEASURE_ROWS_PER_GROUP")); g > 0 {
		a.Options.RowsPerGroup = g
	}

	start = time.Now()
	// The step times: the month's events name their predecessor as parent
	// every other link (fill), the rows the drop must delete first.
	a.Options.AfterStep = func(step string, _ time.Time) {
		t.Logf("step %s at %s", step, time.Since(start).Round(time.Millisecond))
	}
	cpu0 := cpuSeconds(t)
	rep, err := a.Run(ctx, e.month)
	require.NoError(t, err)
	took := time.Since(start)
	cpu := cpuSeconds(t) - cpu0
	mr := e.monthOf(rep)
	m, err := a.Manifest(ctx, e.month)
	require.NoError(t, err)
	var fileBytes int64
	for _, f := range m.Files {
		fileBytes += f.Bytes
	}
	t.Logf("archive job CPU (this process; PostgreSQL apart): %.2f s = %.1f µs/event", cpu, cpu*1e6/float64(mr.Events))
	t.Logf("archived %d events in %s: %.0f events/s; Parquet %d bytes = %.1f bytes/event (manifest included: %.1f)",
		mr.Events, took.Round(time.Millisecond), float64(mr.Events)/took.Seconds(),
		fileBytes, float64(fileBytes)/float64(mr.Events), float64(mr.Bytes)/float64(mr.Events))

	rd := &archive.Reader{Source: e.st, Objects: objs, PublicKey: e.signer.PublicKey()}
	timelines := query.NewTimelines(archive.TimelineStore{TimelineSource: e.st, Reader: rd})
	var lat []time.Duration
	cpu0 = cpuSeconds(t)
	for i := range 200 {
		c := e.corrs[(i*7919)%len(e.corrs)]
		t0 := time.Now()
		tl, err := timelines.Get(ctx, c)
		require.NoError(t, err)
		lat = append(lat, time.Since(t0))
		require.NotZero(t, tl.EventCount)
	}
	t.Logf("200 timelines: %.1f ms CPU per lookup", (cpuSeconds(t)-cpu0)*1e3/200)
	slices.Sort(lat)
	_, stats, err := rd.Correlation(ctx, e.corrs[0])
	require.NoError(t, err)
	t.Logf("timeline of an archived correlation (directory target, 200 lookups): p50 %s p99 %s max %s; row groups read %d of %d",
		lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], stats.RowGroupsRead, stats.RowGroups)
}

// cpuSeconds is the user+system CPU time of this process.
func cpuSeconds(t *testing.T) float64 {
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
