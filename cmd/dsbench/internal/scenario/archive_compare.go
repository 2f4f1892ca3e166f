package scenario

// `dsbench -archive -archive-compare`: before the archive run, the ways of
// reading a month in the archive's order are timed against each other on
// the same partition, in the same process and PostgreSQL: what each costs
// PostgreSQL and the wire, rows drained undecoded (the job's decoding and
// encoding are the same after any of them).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
)

// readWay is one way of reading the month, timed.
type readWay struct {
	name        string
	wall        time.Duration
	pgCPU       float64 // seconds
	selfCPU     float64 // seconds
	rows        int64
	tempWritten int64 // 8 KiB blocks, from pg_stat_statements
}

// archiveColumns are the columns the archive reads (store's eventColumns).
const archiveColumns = `event_id, event_date, event_timestamp, version, event_type, event_category,
	event_action, event_outcome, correlation_id, event_data, actor_type, actor_id, actor_ip,
	resource_type, resource_id, parent_event_id, parent_event_date, namespace, cluster_id,
	severity, duration_ms, error_code, error_message, retention_days, is_sensitive,
	chain_seq, event_hash, previous_event_hash, hash_algorithm, legal_hold, legal_hold_reason,
	legal_hold_placed_by, legal_hold_placed_at, created_at`

// compareArchiveReads times, on the month's partition: the whole rows
// sorted by PostgreSQL (the job's first read); the whole rows in physical
// order by an extended-protocol SELECT (its read until
// archive-2026-12-07c) and by a binary COPY (its read now, one stream;
// the job runs two at once on page ranges); and the narrow keys sorted by
// PostgreSQL in memory, then the rows fetched by ctid in that order in
// batches (a TID scan: random heap access).
func compareArchiveReads(ctx context.Context, conn *pgx.Conn, pgPID int, part string) ([]readWay, error) {
	drain := func(sql string, args ...any) (int64, error) {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		var n int64
		for rows.Next() {
			n++
		}
		return n, rows.Err()
	}
	ident := pgx.Identifier{part}.Sanitize()
	ways := []struct {
		name string
		run  func() (int64, error)
	}{
		{"whole rows, `ORDER BY correlation_id COLLATE \"C\", chain_seq` in PostgreSQL (before)", func() (int64, error) {
			return drain(`SELECT ` + archiveColumns + ` FROM ` + ident + ` ORDER BY correlation_id COLLATE "C", chain_seq`)
		}},
		{"whole rows, physical order, extended-protocol `SELECT` (sequential scan; the job sorts; its read until archive-2026-12-07c)", func() (int64, error) {
			return drain(`SELECT ` + archiveColumns + ` FROM ` + ident)
		}},
		{"whole rows, physical order, `COPY (SELECT …) TO STDOUT (FORMAT binary)` (the job's read now)", func() (int64, error) {
			tag, err := conn.PgConn().CopyTo(ctx, io.Discard, `COPY (SELECT `+archiveColumns+` FROM `+ident+`) TO STDOUT (FORMAT binary)`)
			return tag.RowsAffected(), err
		}},
		{"whole rows, physical order, two binary `COPY` streams at once, each of half the pages (`ctid` ranges: the job's read now)", func() (int64, error) {
			var pages int64
			if err := conn.QueryRow(ctx, `SELECT pg_relation_size($1::regclass) / current_setting('block_size')::bigint + 1`, ident).Scan(&pages); err != nil {
				return 0, err
			}
			other, err := pgx.ConnectConfig(ctx, conn.Config())
			if err != nil {
				return 0, err
			}
			defer other.Close(context.WithoutCancel(ctx))
			conds := []string{fmt.Sprintf("ctid < '(%d,0)'::tid", pages/2), fmt.Sprintf("ctid >= '(%d,0)'::tid", pages/2)}
			var n [2]int64
			var errs [2]error
			var wg sync.WaitGroup
			for i, c := range []*pgx.Conn{conn, other} {
				wg.Go(func() {
					tag, err := c.PgConn().CopyTo(ctx, io.Discard, `COPY (SELECT `+archiveColumns+` FROM `+ident+` WHERE `+conds[i]+`) TO STDOUT (FORMAT binary)`)
					n[i], errs[i] = tag.RowsAffected(), err
				})
			}
			wg.Wait()
			return n[0] + n[1], errors.Join(errs[:]...)
		}},
		{"narrow keys sorted in PostgreSQL (work_mem 1GB), rows fetched by ctid in that order, 2,000 a batch", func() (int64, error) {
			if _, err := conn.Exec(ctx, `SET work_mem = '1GB'`); err != nil {
				return 0, err
			}
			defer conn.Exec(context.WithoutCancel(ctx), `RESET work_mem`)
			rows, err := conn.Query(ctx, `SELECT ctid FROM `+ident+` ORDER BY correlation_id COLLATE "C", chain_seq`)
			if err != nil {
				return 0, err
			}
			tids, err := pgx.CollectRows(rows, pgx.RowTo[pgtype.TID])
			if err != nil {
				return 0, err
			}
			var n int64
			for lo := 0; lo < len(tids); lo += 2000 {
				k, err := drain(`SELECT `+archiveColumns+` FROM `+ident+` WHERE ctid = ANY($1::tid[])`, tids[lo:min(lo+2000, len(tids))])
				if err != nil {
					return n, err
				}
				n += k
			}
			return n, nil
		}},
	}
	var out []readWay
	for _, w := range ways {
		if _, err := conn.Exec(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
			return nil, err
		}
		self0, pg0 := harness.SelfCPU(), harness.TreeCPU(pgPID)
		t0 := time.Now()
		n, err := w.run()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w.name, err)
		}
		rw := readWay{name: w.name, wall: time.Since(t0), pgCPU: harness.TreeCPU(pgPID) - pg0, selfCPU: harness.SelfCPU() - self0, rows: n}
		_ = conn.QueryRow(ctx, `SELECT coalesce(sum(temp_blks_written), 0)::bigint FROM pg_stat_statements
			WHERE query NOT LIKE '%pg_stat_statements%'`).Scan(&rw.tempWritten)
		harness.Logf("  read compared: %s: %s", w.name, rw.wall.Round(time.Millisecond))
		out = append(out, rw)
	}
	return out, nil
}

func renderReadWays(ways []readWay, events int64) string {
	if len(ways) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nReading the month in the archive's order, compared before the run (`-archive-compare`; rows drained\n")
	fmt.Fprintf(&b, "undecoded, so the job's decoding and encoding, the same after each, are left out):\n\n")
	fmt.Fprintf(&b, "| read | wall | PostgreSQL CPU | dsbench CPU | rows | temp written |\n|---|---:|---:|---:|---:|---:|\n")
	for _, w := range ways {
		fmt.Fprintf(&b, "| %s | %s | %.1f s (%.1f µs/event) | %.1f s | %d | %s |\n", w.name, w.wall.Round(time.Millisecond),
			w.pgCPU, w.pgCPU*1e6/float64(max(events, 1)), w.selfCPU, w.rows, mib(w.tempWritten*8192))
	}
	return b.String()
}

// resetPeakRSS returns memory to the OS and resets VmHWM (Linux:
// clear_refs 5), so that peakRSS measures what follows.
func resetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS is this process's peak resident set (VmHWM), in bytes; 0 if
// unknown.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
