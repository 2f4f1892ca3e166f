package scenario

import (
	"fmt"
	"strings"
	"time"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/report"
	"kubernaut.ai/datastorage/internal/benchdata"
)

func (r *readReport) markdown(o Options) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	f := r.facts
	w("# Read-path benchmark\n\n")
	w("`%s` (`make bench-read`), %s, %s.\n\n",
		report.CommandLine(o.Args), r.started.UTC().Format("2006-01-02 15:04 MST"), r.finished.Sub(r.started).Round(time.Second))
	w("Machine: %d CPUs (%s), %s, %s. %s. Git %s. Load average at start %s.\n\n", f.cpus, f.cpuModel, f.memory, f.kernel, f.goVersion, f.gitRev, f.loadAvg)
	w("PostgreSQL: %s. Settings:", f.pgVersion)
	for _, s := range f.pgSettings {
		w(" `%s=%s`", s[0], s[1])
	}
	w(" (the read benchmark raises `shared_buffers`, `work_mem`, `effective_cache_size` and lowers `random_page_cost` to 1.1 for SSD; everything else as `make bench`). Server: the real binary, default configuration (%s).\n\n", f.pool)

	l := r.load
	var rows, heap, idx, total int64
	for _, p := range r.sizes {
		rows += p.rows
		heap += p.heap
		idx += p.idx
		total += p.total
	}
	w("## Data set\n\n")
	w("%d events in %d correlations (20–80 events each, ≈50), %s … %s UTC (30 days), generated inside PostgreSQL by "+
		"`INSERT … SELECT … FROM generate_series` in chunks of %d correlations, two sessions in parallel, each chunk written in time order "+
		"(the heap is laid out by time, as a live system's is; about 65 correlations interleave at any moment). "+
		"30 event types across the 14 categories; outcomes 85 %% success / 10 %% failure / 5 %% pending; 20 namespaces (5 %% of correlations without one); "+
		"6 severities (info 55 %%, low 15, medium 12, warning 10, high 5, critical 3); 5 clusters; "+
		"event_data averages %.0f bytes as JSON text (%.0f bytes stored), with `workflow_id` (50 values) on workflow and workflowexecution events; "+
		"70 %% of events after the first of their correlation name an earlier event of it as parent.\n\n",
		l.events, l.corrs, l.start.Format(time.DateTime), l.end.Format(time.DateTime), benchdata.ChunkCorrelations, l.avgDataText, l.avgDataCol)
	w("Rows are valid for the schema (chain_seq 1..n per correlation, 32-byte `event_hash` linked to the next event's `previous_event_hash`, " +
		"`audit_chain_heads` filled), but the hashes are md5-derived stand-ins, not SHA-256 over the canonical event: verify-chain would reject them; reads do not look at them.\n\n")
	w("Load: the %d secondary indexes were dropped, the rows inserted (%s, %.0f events/s; parent foreign key not checked during the load: "+
		"`session_replication_role = replica`, `synchronous_commit = off`), the indexes re-created from their own definitions (%s), then `VACUUM (ANALYZE)` (%s); "+
		"the rows bypassed the write path, so the aggregation rollups were then counted from them by `store.RebuildRollups`, as after a restore (%s).\n\n",
		len(l.indexDefs), l.insert.Round(time.Second), float64(l.events)/l.insert.Seconds(), l.index.Round(time.Second), l.vacuum.Round(time.Second),
		l.rollups.Round(time.Second))

	w("## Results\n\n")
	w("One request at a time over HTTP to the running server (kept-alive connection), 3 warm-up requests, then %d timed ones (or as many as fit in %s). "+
		"Latency is as the client sees it, body read.\n\n", o.ReadRequests, o.ReadBudget)
	w("| request | n | p50 | p99 | max | target | met |\n|---|---:|---:|---:|---:|---|---|\n")
	for _, x := range r.results {
		met := ""
		if x.limit > 0 {
			met = report.Yes(x.pct(.99) <= x.limit && x.errs == 0)
		}
		extra := ""
		if x.errs > 0 {
			extra = fmt.Sprintf(" (%d errors: %s)", x.errs, x.firstErr)
		}
		if x.note != "" {
			extra += " (" + x.note + ")"
		}
		w("| %s%s | %d | %s | %s | %s | %s | %s |\n", x.name, extra, len(x.lat), report.Dur(x.pct(.5)), report.Dur(x.pct(.99)), report.Dur(x.pct(1)), x.target, met)
	}
	w("\nRequests: ")
	for i, x := range r.results {
		if i > 0 {
			w("; ")
		}
		w("%s `%s`", x.name, x.path)
	}
	w(". The cursor page is reached by walking %d pages with `next_cursor`; the timeline uses a different random correlation per request; "+
		"event_type + 1 h uses a random type and a random hour of the 30 days per request; aggregations use their default window (the last 7 days).\n\n", r.cursorDepth)

	w("## Storage\n\n")
	mill := float64(max(rows, 1)) / 1e6
	w("| partition | rows (estimate) | table (heap + TOAST) | indexes | total |\n|---|---:|---:|---:|---:|\n")
	for _, p := range r.sizes {
		if p.rows == 0 && p.total < 1<<20 {
			continue
		}
		w("| %s | %d | %s | %s | %s |\n", p.name, p.rows, report.MB(p.heap), report.MB(p.idx), report.MB(p.total))
	}
	w("| **all** | %d | %s | %s | %s |\n\n", rows, report.MB(heap), report.MB(idx), report.MB(total))
	per := float64(total) / float64(max(rows, 1))
	w("Per million events: table %s, indexes %s, total %s. **Bytes per event: %.0f table + %.0f indexes = %.0f total** "+
		"(target ≤ 1.2 KB = 1,229 bytes: %s).\n\n",
		report.MB(int64(float64(heap)/mill)), report.MB(int64(float64(idx)/mill)), report.MB(int64(float64(total)/mill)),
		float64(heap)/float64(max(rows, 1)), float64(idx)/float64(max(rows, 1)), per, report.Yes(per <= 1229))
	var rollups int64
	for _, p := range r.rollupSizes {
		rollups += p.total
	}
	w("The aggregation rollups (not in the figures above: they grow with hours × keys and correlations, not with events) take %s: ", report.MB(rollups))
	for i, p := range r.rollupSizes {
		if i > 0 {
			w(", ")
		}
		w("%s %d rows, %s", p.name, p.rows, report.MB(p.total))
	}
	w(" — %.0f bytes per event.\n\n", float64(rollups)/float64(max(rows, 1)))
	w("The indexes were built by CREATE INDEX after the load, so they are packed (leaf pages 90 %% full). Indexes grown by live inserts " +
		"whose keys do not arrive in order (correlation, type, category, namespace, resource, actor: new entries land inside each key's range) " +
		"split pages and settle nearer 70 %% full, so expect the index share to be up to about 1.3 × larger in production.\n\n")

	w("## Plans\n\n`EXPLAIN (ANALYZE, BUFFERS)` of each statement the server runs for the shapes above, as internal/store writes them, " +
		"with literal parameters (custom plans; the server's prepared statements may switch to generic plans, whose partitions are pruned at executor start). " +
		"Run once after the HTTP measurements, so the cache is as warm as the benchmark left it.\n\n")
	for _, x := range r.explains {
		w("<details><summary>%s</summary>\n\n```sql\n%s\n```\n\n```\n%s\n```\n\n</details>\n\n", x.name, x.sql, x.plan)
	}
	return b.String()
}
