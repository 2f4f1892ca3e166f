package scenario

import (
	"fmt"
	"strings"
	"time"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/report"
	"kubernaut.ai/datastorage/internal/archive"
)

// The archive tier's targets (issue 14).
const (
	archiveTargetRate     = 100_000 // events/s
	archiveTargetBytes    = 250     // Parquet bytes per event
	archiveTargetTimeline = 300 * time.Millisecond
)

func renderArchive(r *archiveResult, o Options) string {
	var b strings.Builder
	f := r.facts
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	rate := float64(r.events) / r.run.Seconds()
	w("# Archive benchmark\n\n")
	w("`dsbench %s` — %s, %s … %s.\n\n", strings.Join(o.Args, " "), f.gitRev, r.started.UTC().Format(time.DateTime), r.finished.UTC().Format(time.DateTime))
	w("CPU: %s (%d CPUs), %s; load average at the start %s; %s; %s.\n", f.cpuModel, f.cpus, f.memory, f.loadAvg, f.pgVersion, f.goVersion)
	w("Times are wall-clock on a machine shared with other work: indicative only. The CPU seconds and\n")
	w("PostgreSQL's counters depend much less on the load.\n\n")
	w("Month %s: %d events in %d correlations with real HMAC chains, loaded in %s (Restore: COPY +\n",
		archive.MonthString(r.month), r.events, r.corrs, r.load.Round(time.Second))
	w("INSERT … SELECT), archived by `archive.Archiver.Run` in the dsbench process to a `file://` target.\n\n")

	w("| measure | result | target |\n|---|---:|---:|\n")
	w("| archive throughput (write + read back + drop) | %.0f events/s (%s) | ≥ %d events/s |\n", rate, r.run.Round(time.Millisecond), archiveTargetRate)
	w("| CPU of the job (dsbench process) | %.1f s = %.1f µs/event | |\n", r.runCPU, r.runCPU*1e6/float64(r.events))
	w("| CPU of PostgreSQL during the run | %.1f s = %.1f µs/event | |\n", r.runPGCPU, r.runPGCPU*1e6/float64(r.events))
	w("| peak RSS of the dsbench process during the run (VmHWM, reset before it) | %s | |\n", mib(r.peakRSS))
	w("| Parquet bytes per event | %.1f (%d files, %d row groups, %s) | ≤ %d |\n", float64(r.parquetBytes)/float64(r.events),
		r.files, r.groups, mib(r.parquetBytes), archiveTargetBytes)
	w("| manifest | %s (%.1f bytes/event) | |\n", mib(r.manifestBytes), float64(r.manifestBytes)/float64(r.events))
	w("| PostgreSQL bytes per event (partition: heap+TOAST, then indexes) | %.0f + %.0f = %.0f | |\n",
		float64(r.pgBytes)/float64(r.events), float64(r.pgIndex)/float64(r.events), float64(r.pgBytes+r.pgIndex)/float64(r.events))
	w("| verify (every file, every event's hash) | %s, %.1f s CPU (%.0f events/s) | |\n", r.verify.Round(time.Millisecond),
		r.verifyCPU, float64(r.events)/r.verify.Seconds())
	w("| archived timeline, first lookup in a file (footer parsed; slowest of %d files) | %s | |\n", r.files, r.cold.Round(time.Microsecond))
	w("| archived timeline p50 / p99 / max (%d random correlations) | %s / %s / %s | p99 ≤ %s |\n", len(r.lat),
		report.Quantile(r.lat, 0.50).Round(time.Microsecond), report.Quantile(r.lat, 0.99).Round(time.Microsecond),
		report.Quantile(r.lat, 1).Round(time.Microsecond), archiveTargetTimeline)
	w("| row groups read by one lookup | %d of %d | |\n\n", r.groupsRead, r.groupsN)

	w("Steps of the run (time since its start):\n\n")
	for _, s := range r.steps {
		w("- %s at %s\n", s.name, s.at.Round(time.Millisecond))
	}
	w("\nPostgreSQL during the run (`pg_stat_statements`, by total time; blocks of 8 KiB):\n\n")
	w("| statement | calls | ms | rows | shared read | shared hit | temp written |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.statements {
		w("| `%s` | %d | %.0f | %d | %d | %d | %d |\n", strings.ReplaceAll(s.query, "|", "\\|"), s.calls, s.total, s.rows, s.blksRead, s.sharedHit, s.tempWritten)
	}
	w("%s", renderReadWays(r.readWays, r.events))
	w("\nCPU profile of the run: `%s/archive-run.cpu.pprof` (`go tool pprof -top`).\n", o.ProfileDir)
	return b.String()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
