package scenario

// The archive benchmark (`dsbench -archive`, the second half of `make
// bench-read`): a month old enough to archive, of o.ArchiveEvents events
// with real hash chains, archived to a file:// target by the archive job
// (internal/archive, run in this process against the benchmark's
// PostgreSQL), then read back: archive throughput with the CPU of this
// process and of PostgreSQL, Parquet bytes per event against PostgreSQL's,
// the timeline of archived correlations, and verify.
//
// The read benchmark's loader (internal/benchdata) writes stand-in hashes
// that the archive's verification refuses, so the month is generated here:
// events built in Go, chained with the HMAC hasher on both CPUs, loaded by
// the archive session's Restore (COPY into a temporary table, one INSERT per
// chunk), the statement that brings an archived month back.

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/benchdata"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/objstore"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/store"
)

// archiveResult is what the archive benchmark measured.
type archiveResult struct {
	started, finished time.Time
	facts             facts
	month             time.Time
	events, corrs     int64
	load              time.Duration

	pgBytes, pgHeap, pgIndex int64 // the partition before the archive

	run                 time.Duration
	steps               []stepTime
	runCPU, runPGCPU    float64 // CPU seconds of this process and of PostgreSQL during the run
	files, groups       int
	parquetBytes        int64
	manifestBytes       int64
	statements          []archiveStmt
	verify              time.Duration
	verifyCPU           float64
	cold                time.Duration
	lat                 []time.Duration
	groupsRead, groupsN int
	readWays            []readWay
	peakRSS             int64 // of this process during the run
}

type stepTime struct {
	name string
	at   time.Duration
}

type archiveStmt struct {
	query        string
	calls        int64
	total        float64 // ms
	rows         int64
	blksRead     int64
	tempWritten  int64
	sharedHit    int64
	sharedDirtyd int64
}

// archiveObjects adapts an objstore.Store to archive.Objects.
type archiveObjects struct{ objstore.Store }

func (o archiveObjects) Open(ctx context.Context, key string) (archive.Object, error) {
	return o.Store.Open(ctx, key)
}

func (o archiveObjects) List(ctx context.Context, prefix string) ([]archive.ObjectInfo, error) {
	list, err := o.Store.List(ctx, prefix)
	out := make([]archive.ObjectInfo, len(list))
	for i, x := range list {
		out[i] = archive.ObjectInfo{Key: x.Key, Size: x.Size}
	}
	return out, err
}

// RunArchive is `dsbench -archive`.
func RunArchive(ctx context.Context, o Options) error {
	workDir, bin, err := harness.Prepare(ctx, o.ServerBin)
	if err != nil {
		return err
	}
	defer os.RemoveAll(workDir)
	e, err := harness.StartEnv(ctx, bin, workDir, o.ServerEnv, harness.MergeSettings(harness.PGSettings(), readPGSettings))
	if err != nil {
		return err
	}
	defer e.Close()
	r := &archiveResult{started: time.Now()}
	r.facts = collectFacts(ctx, e)

	key := make([]byte, 32)
	_, _ = crand.Read(key)
	hasher := audit.NewHasher(key)
	st, err := store.Open(ctx, e.DBURL, store.Options{MaxConns: 8, Hasher: hasher})
	if err != nil {
		return err
	}
	defer st.Close()
	y, m, _ := time.Now().UTC().AddDate(0, -5, 0).Date()
	r.month = time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	if _, err := st.EnsurePartitions(ctx, r.month, 6); err != nil {
		return err
	}
	if err := loadArchiveMonth(ctx, st, hasher, r, o.ArchiveEvents); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	conn, err := pgx.Connect(ctx, e.DBURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	part := fmt.Sprintf("audit_events_y%04dm%02d", r.month.Year(), int(r.month.Month()))
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) "+part); err != nil {
		return err
	}
	if err := conn.QueryRow(ctx, `SELECT pg_table_size($1::regclass), pg_relation_size($1::regclass), pg_indexes_size($1::regclass)`, part).
		Scan(&r.pgBytes, &r.pgHeap, &r.pgIndex); err != nil {
		return err
	}
	// Drop the month's pages from PostgreSQL's buffers? Not possible
	// without a restart; the run reads them from shared_buffers or the OS
	// cache, as an archive job on a warm machine would.
	if o.ArchiveCompare {
		if r.readWays, err = compareArchiveReads(ctx, conn, e.PostmasterPID(), part); err != nil {
			return fmt.Errorf("compare reads: %w", err)
		}
	}
	signer, err := integrity.GenerateSigner()
	if err != nil {
		return err
	}
	root := filepath.Join(workDir, "archive")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	objs, err := objstore.Open(ctx, "file://"+root, objstore.Options{})
	if err != nil {
		return err
	}
	a := &archive.Archiver{Source: st, Objects: archiveObjects{objs}, Signer: signer, Hasher: hasher,
		Options: archive.Options{After: 90 * 24 * time.Hour, Target: "file://bench", TempDir: workDir}}
	t0 := time.Now()
	a.Options.AfterStep = func(step string, _ time.Time) {
		r.steps = append(r.steps, stepTime{step, time.Since(t0)})
		harness.Logf("  archive step %s at %s", step, time.Since(t0).Round(time.Millisecond))
	}
	if _, err := conn.Exec(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
		return err
	}
	var prof *os.File
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err == nil {
			if prof, err = os.Create(filepath.Join(o.ProfileDir, "archive-run.cpu.pprof")); err == nil {
				_ = pprof.StartCPUProfile(prof)
			}
		}
	}
	harness.Logf("archiving %s (%d events)", archive.MonthString(r.month), r.events)
	resetPeakRSS()
	cpu0, pg0 := harness.SelfCPU(), harness.TreeCPU(e.PostmasterPID())
	t0 = time.Now()
	rep, err := a.Run(ctx, r.month)
	r.run = time.Since(t0)
	r.peakRSS = peakRSS()
	r.runCPU, r.runPGCPU = harness.SelfCPU()-cpu0, harness.TreeCPU(e.PostmasterPID())-pg0
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	if err != nil {
		return fmt.Errorf("archive run: %w", err)
	}
	if len(rep.Months) != 1 || !rep.Months[0].Dropped {
		return fmt.Errorf("archive run: the month was not archived: %+v", rep.Months)
	}
	harness.Logf("archived in %s: %.0f events/s", r.run.Round(time.Millisecond), float64(r.events)/r.run.Seconds())
	r.statements = archiveStatements(ctx, conn)

	mf, err := a.Manifest(ctx, r.month)
	if err != nil {
		return err
	}
	r.files = len(mf.Files)
	for _, f := range mf.Files {
		r.parquetBytes += f.Bytes
		r.groups += f.RowGroups
	}
	r.manifestBytes = rep.Months[0].Bytes - r.parquetBytes

	cpu0 = harness.SelfCPU()
	t1 := time.Now()
	if _, err := a.Verify(ctx, r.month); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	r.verify, r.verifyCPU = time.Since(t1), harness.SelfCPU()-cpu0
	harness.Logf("verified in %s", r.verify.Round(time.Millisecond))

	if err := timeArchivedTimelines(ctx, st, a, signer, r, o.ReadRequests); err != nil {
		return err
	}
	r.finished = time.Now()
	return os.WriteFile(o.Out, []byte(renderArchive(r, o)), 0o644)
}

// loadArchiveMonth writes about n events of chained correlations into the
// month: two goroutines build and hash correlations, this one loads them.
func loadArchiveMonth(ctx context.Context, st *store.Store, hasher audit.Hasher, r *archiveResult, n int64) error {
	t0 := time.Now()
	corrs := max(n/benchdata.EventsPerCorrelation, 1)
	r.corrs = corrs
	const chunk = 2000 // correlations per Restore (~100,000 events)
	chunks := make(chan []*audit.Event, 2)
	var next sync.Mutex
	c := int64(0)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	span := 28 * 24 * time.Hour
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				next.Lock()
				lo := c
				c += chunk
				next.Unlock()
				if lo >= corrs {
					return
				}
				var out []*audit.Event
				for i := lo; i < min(lo+chunk, corrs); i++ {
					out = append(out, archiveCorrelation(hasher, r.month, i, corrs, span)...)
				}
				select {
				case chunks <- out:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(chunks) }()
	s, leader, err := st.OpenArchive(ctx)
	if err != nil {
		return err
	}
	if !leader {
		return fmt.Errorf("the archive lock is held")
	}
	defer s.Close(ctx)
	for evs := range chunks {
		k, err := s.Restore(ctx, r.month, func(yield func(*audit.Event) error) error {
			for _, e := range evs {
				if err := yield(e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		r.events += k
		if r.events%(20*chunk*benchdata.EventsPerCorrelation) < k {
			harness.Logf("  %d events loaded (%.0f events/s)", r.events, float64(r.events)/time.Since(t0).Seconds())
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if _, err := st.RebuildRollups(ctx, r.month, r.month.AddDate(0, 1, 0)); err != nil {
		return err
	}
	r.load = time.Since(t0)
	harness.Logf("loaded %d events of %d correlations in %s", r.events, corrs, r.load.Round(time.Second))
	return nil
}

// archiveCorrelation builds correlation i's chain: 20..80 events, spread
// over the month, the event data of the read benchmark's shape.
func archiveCorrelation(hasher audit.Hasher, month time.Time, i, corrs int64, span time.Duration) []*audit.Event {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	id := uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "corr:%d", i)).String()
	n := 20 + rng.IntN(61)
	start := month.Add(time.Duration(float64(span) * float64(i) / float64(corrs)))
	ns := benchdata.Namespaces[rng.IntN(len(benchdata.Namespaces))]
	out := make([]*audit.Event, 0, n)
	prev := ""
	ts := start
	for s := 1; s <= n; s++ {
		typ := benchdata.Types[rng.IntN(len(benchdata.Types))]
		ts = ts.Add(time.Duration(1000+rng.IntN(30000)) * time.Millisecond)
		outcome := "success"
		switch x := rng.IntN(100); {
		case x >= 95:
			outcome = "pending"
		case x >= 85:
			outcome = "failure"
		}
		dur := int32(rng.IntN(30000))
		data, _ := json.Marshal(map[string]any{
			"event_type": typ[0], "remediation_id": id, "phase": typ[1],
			"signal_fingerprint": fmt.Sprintf("%016x", rng.Uint64()),
			"alert_name":         []string{"KubePodCrashLooping", "NodeMemoryPressure", "HighErrorRate", "PodOOMKilled"}[i%4],
			"target_resource":    map[string]string{"kind": "Deployment", "name": fmt.Sprintf("app-%d", i%997), "namespace": ns},
			"message":            fmt.Sprintf("step %d of remediation for app-%d: %s after evaluating cluster state and recent events", s, i%997, outcome),
			"labels":             map[string]string{"team": fmt.Sprintf("team-%d", i%40), "env": "production", "tier": "backend"},
			"attempt":            1 + rng.IntN(3), "duration_ms": dur,
		})
		ev := &audit.Event{
			ID: uuid.New(), Version: "1.0", Type: typ[0], Category: typ[1], Action: "step",
			Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Outcome: outcome, CorrelationID: id, Data: data,
			ActorType: "service", ActorID: typ[1] + "-service", ActorIP: fmt.Sprintf("10.%d.%d.%d", i%200, s%250, rng.IntN(250)),
			ResourceType: "remediation", ResourceID: id, Namespace: ns, ClusterID: fmt.Sprintf("cluster-%d", i%5),
			Severity: []string{"info", "info", "low", "medium", "warning", "high"}[rng.IntN(6)], DurationMS: &dur,
			RetentionDays: 2555, CreatedAt: audit.NewTime(ts.Add(40 * time.Millisecond)),
		}
		if outcome == "failure" {
			ev.ErrorCode, ev.ErrorMessage = fmt.Sprintf("E%d", 100+rng.IntN(40)), "operation failed: timeout waiting for rollout"
		}
		canon, err := ev.Canonical()
		if err != nil {
			panic(err) // the data is built above: a failure is a bug here
		}
		p := prev
		ev.ChainSeq, ev.PreviousHash, ev.HashAlgorithm = int64(s), &p, hasher.Algorithm()
		ev.Hash = hasher.Link(prev, canon)
		prev = ev.Hash
		out = append(out, ev)
	}
	// Events must stay inside the month (the partition's bounds).
	end := month.AddDate(0, 1, 0)
	return slices.DeleteFunc(out, func(e *audit.Event) bool { return !e.Timestamp.Std().Before(end) })
}

// timeArchivedTimelines times the timeline of archived correlations through
// the query layer with the archive reader, as the server's handler calls it.
func timeArchivedTimelines(ctx context.Context, st *store.Store, a *archive.Archiver, signer *integrity.Signer, r *archiveResult, n int) error {
	rd := &archive.Reader{Source: st, Objects: a.Objects, PublicKey: signer.PublicKey()}
	timelines := query.NewTimelines(archive.TimelineStore{TimelineSource: st, Reader: rd})
	rng := rand.New(rand.NewPCG(42, 42))
	id := func() string {
		return uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "corr:%d", rng.Int64N(r.corrs))).String()
	}
	// The first lookup in each file opens it and parses its footer, once
	// per process (archive.Reader keeps it): those are timed apart.
	m, err := a.Manifest(ctx, r.month)
	if err != nil {
		return err
	}
	for _, f := range m.Files {
		t := time.Now()
		if _, err := timelines.Get(ctx, f.First); err != nil {
			return fmt.Errorf("timeline: %w", err)
		}
		r.cold = max(r.cold, time.Since(t))
	}
	for range n {
		c := id()
		t := time.Now()
		tl, err := timelines.Get(ctx, c)
		if err != nil {
			return fmt.Errorf("timeline %s: %w", c, err)
		}
		r.lat = append(r.lat, time.Since(t))
		if tl.EventCount == 0 {
			return fmt.Errorf("timeline %s: no events", c)
		}
	}
	_, stats, err := rd.Correlation(ctx, id())
	if err != nil {
		return err
	}
	r.groupsRead, r.groupsN = stats.RowGroupsRead, stats.RowGroups
	runtime.KeepAlive(rd)
	return nil
}

// archiveStatements reads pg_stat_statements after the run: where PostgreSQL's
// time went.
func archiveStatements(ctx context.Context, conn *pgx.Conn) []archiveStmt {
	rows, err := conn.Query(ctx, `SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 110), calls, total_exec_time, rows,
		shared_blks_read, temp_blks_written, shared_blks_hit, shared_blks_dirtied
		FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT 14`)
	if err != nil {
		return nil
	}
	var out []archiveStmt
	var s archiveStmt
	_, _ = pgx.ForEachRow(rows, []any{&s.query, &s.calls, &s.total, &s.rows, &s.blksRead, &s.tempWritten, &s.sharedHit, &s.sharedDirtyd}, func() error {
		out = append(out, s)
		return nil
	})
	return out
}
