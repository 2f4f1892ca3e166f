package scenario

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/report"
)

// writepathMarkdown is the issue-15 part of the report: its targets, each as
// a ratio inside this run, and PostgreSQL's work per event for every
// scenario, which does not depend on what else ran on the machine.
func (r *writeReport) writepathMarkdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	copyRate := r.copy.rowsPerSec()
	ratio := func(v, of float64) string {
		if of <= 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", v/of)
	}
	p("## Issue 15 targets (ratios inside this run)")
	p("")
	p("CPU: %s, %d CPUs. Wall-clock ratios on a shared machine are indicative only; the PostgreSQL counters below are not.", r.facts.cpuModel, r.facts.cpus)
	p("")
	p("| measure | target | measured | met |")
	p("|---|---|---|---|")
	// Without a raw COPY (-skip-raw) a ratio to it is not measured: not met.
	if l, ok := r.load("batch500 c=4"); ok && copyRate > 0 {
		v := l.EventsPerSec() / max(copyRate, 1e-9)
		p("| batch500 c=4 events/s ÷ raw COPY rows/s | ≥ 0.85 | %s (%.0f ÷ %.0f) | %s |", ratio(l.EventsPerSec(), copyRate), l.EventsPerSec(), copyRate, report.Yes(v >= .85))
		if l.work != nil && r.wp.copyWork.events > 0 {
			pe, pc := l.work.pgMicros(), r.wp.copyWork.pgMicros()
			p("| PostgreSQL CPU per batched event (batch500 c=4) ÷ per COPY row | ≤ 1.25 | %s (%.1f ÷ %.1f µs) | %s |", ratio(pe, pc), pe, pc, report.Yes(pe/max(pc, 1e-9) <= 1.25))
		}
	}
	for _, shape := range [][2]int{{500, 1}, {32, 2}} {
		on, off, ok := r.chainPair(shape[0], shape[1])
		if !ok {
			continue
		}
		limit := .10
		if shape[0] == 32 {
			limit = .20
		}
		slower := 1 - on/max(off, 1e-9)
		verdict := fmt.Sprintf("%.0f %% slower", slower*100)
		if slower < 0 {
			verdict = fmt.Sprintf("%.0f %% faster", -slower*100)
		}
		p("| chains on vs off, %d × %d (rollups on in both), rows/s | ≤ %.0f %% slower | %s (%.0f vs %.0f) | %s |",
			shape[0], shape[1], limit*100, verdict, on, off, report.Yes(slower <= limit))
	}
	if l, ok := r.load("single c=64"); ok {
		if copyRate > 0 {
			v := l.EventsPerSec() / copyRate
			p("| single c=64 events/s ÷ raw COPY rows/s | ≥ 0.35 | %s (%.0f ÷ %.0f) | %s |", ratio(l.EventsPerSec(), copyRate), l.EventsPerSec(), copyRate, report.Yes(v >= .35))
		}
		p("| single c=64 p99 | ≤ 25 ms | %s | %s |", report.Dur(l.Percentile(.99)), report.Yes(l.Percentile(.99) <= 25*time.Millisecond))
	}
	for i := range min(len(r.wp.naive), len(r.wp.again)) {
		n, o := r.wp.naive[i], r.wp.again[i]
		p("| single c=1 ÷ naive writer, round %d: events/s | ≥ 1.0 | %s (%.0f ÷ %.0f) | %s |", i+1,
			ratio(o.EventsPerSec(), n.EventsPerSec()), o.EventsPerSec(), n.EventsPerSec(), report.Yes(o.EventsPerSec() >= n.EventsPerSec()))
		p("| single c=1 vs naive writer, round %d: p50 / p99 | no worse | %s / %s vs %s / %s | %s |", i+1,
			report.Dur(o.Percentile(.5)), report.Dur(o.Percentile(.99)), report.Dur(n.Percentile(.5)), report.Dur(n.Percentile(.99)),
			report.Yes(o.Percentile(.5) <= n.Percentile(.5) && o.Percentile(.99) <= n.Percentile(.99)))
	}
	if l, ok := r.load("single c=1"); ok {
		p("| single c=1 p99 | ≤ 2 ms | %s | %s |", report.Dur(l.Percentile(.99)), report.Yes(l.Percentile(.99) <= 2*time.Millisecond))
	}
	rss := r.serverPeakRSSAll
	for _, l := range append(r.loads, r.wp.again...) {
		rss = max(rss, l.peakRSS)
	}
	p("| server RSS (highest VmHWM of any scenario) | ≤ 150 MB | %s | %s |", report.MB(rss), report.Yes(rss <= 150<<20))
	p("")
	if s := r.sync; s.n > 0 {
		p("The floor under the single c=1 targets: the disk under PostgreSQL's WAL flushed an 8 KiB write (`fdatasync`, as `wal_sync_method` does) in p50 %s, p99 %s, max %s (%d flushes, measured before the load). Every commit of one event waits for at least one such flush before it can be answered.",
			report.Dur(s.p50), report.Dur(s.p99), report.Dur(s.max), s.n)
		p("")
	}
	if r.wp.chainsErr != "" {
		p("Chains on vs off failed: `%s`", r.wp.chainsErr)
		p("")
	}

	p("## PostgreSQL's work per event")
	p("")
	p("From PostgreSQL's own counters: `pg_stat_user_tables` (rows inserted and updated in all tables, per row inserted into audit_events), `pg_stat_database` (commits), `pg_stat_statements` (statements, shared blocks dirtied), `pg_stat_wal` (records, full-page images, bytes), and the CPU time of PostgreSQL's processes (`/proc/<pid>/stat` of the postmaster and its children). HTTP scenarios: over the measured window, each started at least %s after the previous load ended (PostgreSQL 15 keeps an idle backend's counters up to 10 s before it publishes them) and read again %s after it ended, which misses up to a second of the window's tail as the first reading missed up to a second of the warm-up; raw COPY and the store runs: over the whole run, read again once its connections' backends had exited (which publishes their counters). These do not depend on what else runs on the machine, except the CPU column, which a busy machine inflates (cache misses, frequency).", statsIdleFlush, statsSettle)
	p("")
	p("| scenario | events | events/commit | statements/commit (no BEGIN, COMMIT, SET) | rows inserted/event | rows updated/event (HOT) | WAL records/event | WAL FPI/event | WAL bytes/event | blocks dirtied/event | PostgreSQL CPU µs/event | server CPU µs/event |")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	row := func(name string, w *pgWork, serverCPU bool) {
		if w == nil || w.events <= 0 {
			return
		}
		srv := "–"
		if serverCPU {
			srv = fmt.Sprintf("%.0f", w.serverCPU/float64(w.events)*1e6)
		}
		perCommit := func(v int64) string {
			if w.commits <= 0 {
				return "–"
			}
			return fmt.Sprintf("%.1f", float64(v)/float64(w.commits))
		}
		p("| %s | %d | %s | %s | %.2f | %.2f (%.2f) | %.1f | %.2f | %.0f | %.2f | %.0f | %s |", name, w.events,
			perCommit(w.events), perCommit(w.statements), w.per(w.inserted), w.per(w.updated), w.per(w.hot),
			w.per(w.walRecords), w.per(w.walFPI), w.per(w.wal), w.per(w.dirtied), w.pgMicros(), srv)
	}
	for _, l := range r.loads {
		row(l.Spec.Name, l.work, true)
	}
	for i := range min(len(r.wp.naive), len(r.wp.again)) {
		if w := r.wp.naive[i].work; w != nil && r.wp.naive[i].Events > 0 {
			// Its server CPU is the naive writer's process's, over the window.
			cp := *w
			cp.serverCPU = r.wp.naive[i].cpu.server * float64(w.events) / float64(r.wp.naive[i].Events)
			row(fmt.Sprintf("naive writer c=1, round %d (server CPU: the naive writer's)", i+1), &cp, true)
		}
		row(fmt.Sprintf("single c=1, round %d (alternating)", i+1), r.wp.again[i].work, true)
	}
	row("raw COPY", &r.wp.copyWork, false)
	for _, c := range r.wp.chains {
		on := "off"
		if c.chain {
			on = "on"
		}
		row(fmt.Sprintf("store %d × %d, chains %s", c.batch, c.writers, on), &c.work, false)
	}
	p("")
	r.writepathBreakdown(p)
	p("Statements per commit count what `pg_stat_statements` saw less BEGIN, COMMIT and SET, which it counts once per connection when they come through the extended protocol (pgx's pipelines); the naive writer's INSERT is its own transaction. Round trips per commit are counted for the store-level runs below (a pgx tracer on the store: each pipeline, lone statement and COPY is one); `docs/architecture.md` gives them for each commit size.")
	p("")
	if len(r.wp.chains) > 0 {
		p("Chains on vs off, through the store (no HTTP): *on* is `ingest.Pipeline` over `store.InsertEvents` (as in the server); *off* is `store.InsertUnchained`, the same INSERT or COPY, id table and rollups in one transaction, without the chain's locks, head read and write and hashing. One off and one on run of each shape go first as a warm-up, not counted; then off and on alternate, off first and last (off, on, off, on, off), so that a drift of the machine's load reaches both; the comparison uses the mean rate of each. Each run has a store (connection pool) of its own.")
		p("")
		p("| batch × writers | chains | rows/s | Go CPU µs/row | PostgreSQL CPU µs/row | commits | round trips/commit |")
		p("|---|---|--:|--:|--:|--:|--:|")
		for _, c := range r.wp.chains {
			rt := "–"
			if c.work.commits > 0 {
				rt = fmt.Sprintf("%.2f", float64(c.roundTrips)/float64(c.work.commits))
			}
			p("| %d × %d | %v | %.0f | %.0f | %.0f | %d | %s |", c.batch, c.writers, c.chain, c.rowsPerSec(),
				c.goCPU/float64(max(c.rows, 1))*1e6, c.work.pgMicros(), c.work.commits, rt)
		}
		p("")
	}
	return b.String()
}

// chainPair returns the mean rate of a shape's chains-on runs and of its
// chains-off runs.
func (r *writeReport) chainPair(batch, writers int) (on, off float64, ok bool) {
	var ons, offs []float64
	for _, c := range r.wp.chains {
		if c.batch != batch || c.writers != writers {
			continue
		}
		if c.chain {
			ons = append(ons, c.rowsPerSec())
		} else {
			offs = append(offs, c.rowsPerSec())
		}
	}
	if len(ons) == 0 || len(offs) == 0 {
		return 0, 0, false
	}
	mean := func(v []float64) float64 {
		var t float64
		for _, x := range v {
			t += x
		}
		return t / float64(len(v))
	}
	return mean(ons), mean(offs), true
}

// writepathBreakdown says where the rows and the WAL per event go: rows
// inserted and updated per table, WAL by resource manager.
func (r *writeReport) writepathBreakdown(p func(string, ...any)) {
	type named struct {
		name string
		w    *pgWork
	}
	var all []named
	for _, l := range r.loads {
		all = append(all, named{l.Spec.Name, l.work})
	}
	for i := range min(len(r.wp.naive), len(r.wp.again)) {
		all = append(all, named{fmt.Sprintf("naive c=1 #%d", i+1), r.wp.naive[i].work})
	}
	all = append(all, named{"raw COPY", &r.wp.copyWork})
	for _, c := range r.wp.chains {
		all = append(all, named{fmt.Sprintf("store %d×%d chains %v", c.batch, c.writers, c.chain), &c.work})
	}
	var tables []string
	for _, n := range all {
		if n.w == nil {
			continue
		}
		for t, v := range n.w.tables {
			if v[0]+v[1] > 0 && !slices.Contains(tables, t) {
				tables = append(tables, t)
			}
		}
	}
	slices.Sort(tables)
	p("")
	p("Rows per event by table, inserted / updated:")
	p("")
	p("| scenario | %s |", strings.Join(tables, " | "))
	p("|---|%s", strings.Repeat("--:|", len(tables)))
	for _, n := range all {
		if n.w == nil || n.w.events <= 0 {
			continue
		}
		cells := make([]string, len(tables))
		for i, t := range tables {
			v := n.w.tables[t]
			cells[i] = fmt.Sprintf("%.2f / %.2f", n.w.per(v[0]), n.w.per(v[1]))
		}
		p("| %s | %s |", n.name, strings.Join(cells, " | "))
	}
	p("")
	p("WAL per event by resource manager (`pg_walinspect.pg_get_wal_stats` over the scenario's WAL), records / bytes (of which full-page images):")
	p("")
	var rms []string
	for _, n := range all {
		if n.w == nil {
			continue
		}
		for _, s := range n.w.walByRM {
			if !slices.Contains(rms, s.rm) {
				rms = append(rms, s.rm)
			}
		}
	}
	p("| scenario | %s |", strings.Join(rms, " | "))
	p("|---|%s", strings.Repeat("--:|", len(rms)))
	for _, n := range all {
		if n.w == nil || n.w.events <= 0 || len(n.w.walByRM) == 0 {
			continue
		}
		cells := make([]string, len(rms))
		for i, rm := range rms {
			cells[i] = "–"
			for _, s := range n.w.walByRM {
				if s.rm == rm {
					cells[i] = fmt.Sprintf("%.2f / %.0f (%.0f)", n.w.per(s.records), n.w.per(s.bytes+s.fpi), n.w.per(s.fpi))
				}
			}
		}
		p("| %s | %s |", n.name, strings.Join(cells, " | "))
	}
	p("")
}
