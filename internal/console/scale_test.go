package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/benchdata"
)

// TestConsoleRenderTimeAtScale measures the server time of each console
// page over DATASTORAGE_CONSOLE_SCALE events (make bench-console; skipped
// otherwise): the benchmark data set of dsbench -read, loaded over the last
// 30 days, then every page rendered repeatedly in process (the API calls
// included, no network). It writes the report DATASTORAGE_CONSOLE_REPORT names. It is a
// measurement, not an assertion: the report says how each page compares
// with the 50 ms target.
func TestConsoleRenderTimeAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("DATASTORAGE_CONSOLE_SCALE"))
	if n <= 0 {
		t.Skip("set DATASTORAGE_CONSOLE_SCALE=EVENTS (make bench-console) to measure")
	}
	b := setup(t, false)
	ctx := context.Background()
	corrs := n / benchdata.EventsPerCorrelation
	end := time.Now().UTC().Add(-time.Hour)
	start := end.Add(-benchdata.Days * 24 * time.Hour)
	spacing := (float64(benchdata.Days*24*3600) - float64(benchdata.EventsPerCorrelation*benchdata.StepSeconds*2)) / float64(corrs)
	_, err := b.st.EnsurePartitions(ctx, start.AddDate(0, -1, 0), 3)
	require.NoError(t, err)
	t0 := time.Now()
	conn, err := b.st.Pool().Acquire(ctx)
	require.NoError(t, err)
	for _, s := range []string{"SET session_replication_role = replica", "SET synchronous_commit = off", "SET work_mem = '256MB'"} {
		_, err := conn.Exec(ctx, s)
		require.NoError(t, err)
	}
	var rows int64
	for lo := 1; lo <= corrs; lo += benchdata.ChunkCorrelations {
		hi := min(lo+benchdata.ChunkCorrelations-1, corrs)
		tag, err := conn.Exec(ctx, benchdata.InsertSQL(), lo, hi, start, spacing)
		require.NoError(t, err)
		_, err = conn.Exec(ctx, benchdata.ChainHeadsSQL, lo, hi)
		require.NoError(t, err)
		rows += tag.RowsAffected()
	}
	conn.Release()
	// The generator writes audit_events only; GET by id resolves through
	// the id table (migration 00006), as the write path fills it.
	_, err = b.st.Pool().Exec(ctx, `INSERT INTO audit_event_ids (event_id, event_date)
		SELECT event_id, event_date FROM audit_events ON CONFLICT DO NOTHING`)
	require.NoError(t, err)
	_, err = b.st.Pool().Exec(ctx, "ANALYZE audit_events")
	require.NoError(t, err)
	_, err = b.st.RebuildRollups(ctx, start.Add(-time.Hour), end.Add(2*time.Hour))
	require.NoError(t, err)
	load := time.Since(t0)

	var corr, id string
	require.NoError(t, b.st.Pool().QueryRow(ctx, `SELECT correlation_id, event_id::text FROM audit_events
		WHERE event_timestamp > now() - interval '2 days' ORDER BY event_timestamp DESC LIMIT 1`).Scan(&corr, &id))
	pages := []struct{ name, path string }{
		{"home", "/console/"},
		{"events, first page", "/console/events"},
		{"events, one type", "/console/events?event_type=aiagent.llm.response&since=1d"},
		{"events, one remediation", "/console/events?correlation_id=" + corr},
		{"event", "/console/events/" + id},
		{"timeline", "/console/timeline/" + corr},
		{"dashboards, 24 h", "/console/dashboards?window=24h"},
		{"dashboards, 7 d", "/console/dashboards?window=7d"},
		{"dashboards, 30 d", "/console/dashboards?window=30d"},
		{"integrity", "/console/integrity?correlation_id=" + corr},
	}
	handler := b.srv.Config.Handler
	const reps = 40
	var report strings.Builder
	cpu := "unknown CPU"
	if out, err := exec.Command("sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").Output(); err == nil {
		cpu = strings.TrimSpace(string(out))
	}
	load1 := "?"
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		load1 = strings.Fields(string(raw))[0]
	}
	fmt.Fprintf(&report, "# Console render time\n\nWritten by `make bench-console` (`DATASTORAGE_CONSOLE_SCALE=%d go test -run TestConsoleRenderTimeAtScale ./internal/console/`) on %s.\n\n", n, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&report, "| | |\n|---|---|\n| machine | %d CPUs, %s, load average %s at the start |\n| data | %d events in %d remediations over 30 days (the `dsbench -read` generator), loaded and rolled up in %s |\n| method | each page rendered %d times in process after one warm-up (server time: the console's API calls included, no network), sequentially |\n| target | ≤ 50 ms server time per page at 1 M events (issue 12) |\n\n",
		runtime.NumCPU(), cpu, load1, rows, corrs, load.Round(time.Second), reps)
	report.WriteString("| page | p50 | p99 | max | target met |\n|---|--:|--:|--:|---|\n")
	for _, p := range pages {
		render := func() time.Duration {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, p.path, nil)
			t0 := time.Now()
			handler.ServeHTTP(rec, req)
			d := time.Since(t0)
			require.Equal(t, http.StatusOK, rec.Code, "%s: %s", p.path, rec.Body.String())
			return d
		}
		render()
		var ds []time.Duration
		for range reps {
			ds = append(ds, render())
		}
		slices.Sort(ds)
		p50, p99, worst := ds[len(ds)/2], ds[len(ds)*99/100], ds[len(ds)-1]
		met := "yes"
		if p99 > 50*time.Millisecond {
			met = "**no**"
		}
		fmt.Fprintf(&report, "| %s | %.1f ms | %.1f ms | %.1f ms | %s |\n", p.name, ms(p50), ms(p99), ms(worst), met)
	}
	t.Log("\n" + report.String())
	out := os.Getenv("DATASTORAGE_CONSOLE_REPORT") // make bench-console: bin/bench/, or bench/results/ with RECORD=1
	if out == "" {
		out = "../../bin/bench/console.md"
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(out), 0o755))
	require.NoError(t, os.WriteFile(out, []byte(report.String()), 0o644))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
