package archive_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/benchdata"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/maintenance"
	"kubernaut.ai/datastorage/internal/objstore"
	"kubernaut.ai/datastorage/internal/testenv"
)

// fillExpiring writes corrs correlations of perCorr events into the old
// month with retention_days days (keep, when set, gives a correlation's
// events another retention). Every seventh chain's last link is written
// now, so it stays in PostgreSQL after the month is archived and removed:
// its chain crosses the month.
func (e *env) fillExpiring(corrs, perCorr int, days int32, keep func(c int) int32) {
	e.t.Helper()
	ctx := context.Background()
	var batch []*audit.Event
	for c := range corrs {
		corr := fmt.Sprintf("rx-%04d-%s", c, uuid.NewString()[:8])
		e.corrs = append(e.corrs, corr)
		start := e.month.Add(time.Duration(c%27)*24*time.Hour + time.Duration(c)*time.Minute)
		d := days
		if keep != nil && keep(c) != 0 {
			d = keep(c)
		}
		var prev *audit.Event
		for s := range perCorr {
			typ := benchdata.Types[(c+s)%len(benchdata.Types)]
			ts := start.Add(time.Duration(s) * 41 * time.Minute)
			crosses := c%7 == 3 && s == perCorr-1
			if crosses {
				ts = time.Now().UTC().Add(-time.Hour)
			}
			ev := &audit.Event{
				ID: uuid.New(), Version: "1.0", Type: typ[0], Category: typ[1], Action: "step",
				Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Outcome: []string{"success", "failure"}[s%2],
				CorrelationID: corr, Data: json.RawMessage(fmt.Sprintf(`{"step":%d}`, s)),
				ActorType: "service", ActorID: "svc", ResourceType: typ[1], ResourceID: corr,
				Severity: []string{"info", "warning", "error"}[s%3], RetentionDays: d,
			}
			if s%2 == 0 {
				ev.Namespace = benchdata.Namespaces[c%len(benchdata.Namespaces)]
				ev.ClusterID = "cluster-1"
			}
			if prev != nil && s%2 == 1 && !crosses {
				ev.ParentID = &prev.ID
			}
			batch = append(batch, ev)
			prev = ev
		}
		if len(batch) >= 2000 {
			_, err := e.st.InsertEvents(ctx, batch)
			require.NoError(e.t, err)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		_, err := e.st.InsertEvents(ctx, batch)
		require.NoError(e.t, err)
	}
	if corrs <= 1000 {
		e.snapshot()
	}
}

// rollups is what the rollup tables say, summed over shards, without the
// keys that sum to zero: the hourly counts and the correlation counts.
type rollups struct {
	Hourly       map[string]int64
	Correlations map[string]int64
}

func (e *env) query(sql string, args ...any) map[string]int64 {
	e.t.Helper()
	conn, err := pgx.Connect(context.Background(), e.url)
	require.NoError(e.t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), sql, args...)
	require.NoError(e.t, err)
	out := map[string]int64{}
	var k string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&k, &n}, func() error { out[k] = n; return nil })
	require.NoError(e.t, err)
	return out
}

// rollupsNow reads the rollups (the correlation counts with the chain
// heads' open cells, migration 00012).
func (e *env) rollupsNow() rollups {
	return rollups{
		Hourly: e.query(`SELECT concat_ws('|', bucket, event_type, event_category, event_outcome, severity), sum(events)::bigint
			FROM audit_rollup_hourly GROUP BY 1 HAVING sum(events) <> 0`),
		Correlations: e.query(`SELECT concat_ws('|', bucket, correlation_id, namespace, cluster_id), sum(events)::bigint
			FROM audit_rollup_correlations_all GROUP BY 1 HAVING sum(events) <> 0`),
	}
}

// rollupsWithout is what the rollups must say once the month is gone: the
// counts of the events in PostgreSQL outside it.
func (e *env) rollupsWithout(month time.Time) rollups {
	from, to := month, month.AddDate(0, 1, 0)
	return rollups{
		Hourly: e.query(`SELECT concat_ws('|', date_trunc('hour', event_timestamp, 'UTC'), event_type, event_category,
				event_outcome, severity), count(*) FROM audit_events WHERE NOT (event_date >= $1 AND event_date < $2) GROUP BY 1`, from, to),
		Correlations: e.query(`SELECT concat_ws('|', date_trunc('hour', event_timestamp, 'UTC'), correlation_id,
				coalesce(namespace, ''), coalesce(cluster_id, '')), count(*) FROM audit_events
				WHERE NOT (event_date >= $1 AND event_date < $2) GROUP BY 1`, from, to),
	}
}

func (e *env) exec(sql string, args ...any) (int64, error) {
	conn, err := pgx.Connect(context.Background(), e.url)
	require.NoError(e.t, err)
	defer conn.Close(context.Background())
	tag, err := conn.Exec(context.Background(), sql, args...)
	return tag.RowsAffected(), err
}

func (e *env) tombstones() int64 {
	return e.query(`SELECT 'n', count(*) FROM audit_chain_tombstones`)["n"]
}

// s3Target opens objstore's s3:// target on a versitygw the test starts.
func s3Target(t *testing.T) archive.Objects {
	t.Helper()
	srv := testenv.NewS3(t)
	dir := t.TempDir()
	id, secret := filepath.Join(dir, "id"), filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(id, []byte(srv.AccessKey), 0o600))
	require.NoError(t, os.WriteFile(secret, []byte(srv.SecretKey), 0o600))
	st, err := objstore.Open(context.Background(), "s3://"+srv.Bucket+"/archive", objstore.Options{
		Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true, AccessKeyIDFile: id, SecretAccessKeyFile: secret})
	require.NoError(t, err)
	return Objects{st}
}

func (e *env) expirer(objs archive.Objects) *archive.Expirer {
	return &archive.Expirer{Source: e.st, Objects: objs, PublicKey: e.signer.PublicKey()}
}

// onlyArchived is a correlation of the month none of whose links stays in
// PostgreSQL; crossing is one whose last link does.
func (e *env) onlyArchived() string { return e.corrs[0] }
func (e *env) crossing() string     { return e.corrs[3] }

func monthAction(t *testing.T, rep archive.ExpiryReport, month time.Time) archive.MonthExpiry {
	t.Helper()
	for _, m := range rep.Months {
		if m.Month == archive.MonthString(month) {
			return m
		}
	}
	return archive.MonthExpiry{}
}

// TestArchivedMonthRetentionDirectory is the retention of an archived
// month against a directory.
func TestArchivedMonthRetentionDirectory(t *testing.T) {
	ArchivedMonthRetention(t, fileTarget(t, t.TempDir()))
}

// ArchivedMonthRetention: a month whose events have all expired is
// archived; a hold placed on one of its correlations (only archived) is
// placed, shows on the timeline, and keeps the month; once released, the
// retention job deletes the month's files, subtracts its events from the
// rollups exactly, and tombstones its links, so the chains that continue in
// PostgreSQL still verify.
func ArchivedMonthRetention(t *testing.T, objs archive.Objects) {
	e := newEnv(t)
	e.fillExpiring(40, 8, 30, nil)
	ctx := context.Background()
	want := e.rollupsWithout(e.month)
	_, err := e.archiver(objs).Run(ctx, time.Time{})
	require.NoError(t, err)
	require.Equal(t, archive.StatusDropped, e.record(e.month).Status)
	require.NotEqual(t, want, e.rollupsNow(), "archiving leaves the month in the rollups")

	rd := &archive.Reader{Source: e.st, Objects: objs, PublicKey: e.signer.PublicKey(), Holds: e.st}
	chains := archive.ChainStore{Store: e.st, Reader: rd, Holds: e.st}
	svc := integrity.NewService(chains, e.hasher, e.signer)

	// Without the archive, a hold on a correlation that is only archived
	// finds nothing; with it, the hold is placed and counts the archived
	// events.
	_, err = e.st.PlaceHold(ctx, e.onlyArchived(), "case 1", "alice", time.Now())
	require.ErrorIs(t, err, integrity.ErrNotFound)
	h, err := svc.PlaceHold(ctx, e.onlyArchived(), "case 1", "alice")
	require.NoError(t, err)
	assert.EqualValues(t, 8, h.EventsAffected)
	holds, err := svc.ListHolds(ctx)
	require.NoError(t, err)
	require.Len(t, holds, 1)
	assert.EqualValues(t, 8, holds[0].EventsAffected)
	tl := archive.TimelineStore{TimelineSource: e.st, Reader: rd}
	evs, err := tl.CorrelationEvents(ctx, e.onlyArchived(), 100)
	require.NoError(t, err)
	require.Len(t, evs, 8)
	for _, ev := range evs {
		assert.True(t, ev.LegalHold, "the archived event shows its hold")
		assert.Equal(t, "case 1", ev.HoldReason)
	}
	vr, err := svc.VerifyChain(ctx, e.onlyArchived(), true)
	require.NoError(t, err)
	assert.True(t, vr.IsValid, "hold fields are outside the hash: %s", vr.Message)

	// Held: the month stays, whole.
	x := e.expirer(objs)
	before := e.rollupsNow()
	rep, err := x.Run(ctx, false)
	require.NoError(t, err)
	ma := monthAction(t, rep, e.month)
	assert.Equal(t, maintenance.ArchivedHeld, ma.Action)
	assert.Contains(t, ma.Note, e.onlyArchived())
	assert.Equal(t, e.month.AddDate(0, 0, 30+26), ma.LastRetained, "the last event's date + 30 days")
	assert.Equal(t, archive.StatusDropped, e.record(e.month).Status)
	assert.Equal(t, before, e.rollupsNow())
	// Held again at the next run, from the recorded last day and the
	// manifest alone: the files are not read again.
	counted := &countingObjects{Objects: objs}
	rep, err = (&archive.Expirer{Source: e.st, Objects: counted, PublicKey: e.signer.PublicKey()}).Run(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, maintenance.ArchivedHeld, monthAction(t, rep, e.month).Action)
	assert.Equal(t, []string{archive.ManifestKey(e.month)}, counted.opened)
	list, err := objs.List(ctx, archive.MonthPrefix(e.month))
	require.NoError(t, err)
	assert.NotEmpty(t, list)

	rel, err := svc.ReleaseHold(ctx, e.onlyArchived(), "closed", "alice")
	require.NoError(t, err)
	assert.EqualValues(t, 8, rel.EventsReleased)

	// Released: the retention job (leader lock, metrics) removes it.
	reg := prometheus.NewRegistry()
	job := &maintenance.RetentionJob{Store: e.st, Options: maintenance.RetentionOptions{Archive: x},
		Metrics: maintenance.NewRetentionMetrics(reg)}
	rrep, err := job.RunOnce(ctx)
	require.NoError(t, err)
	require.Len(t, rrep.Archived, 1)
	assert.Equal(t, maintenance.ArchivedExpired, rrep.Archived[0].Action)
	archived := e.record(e.month).Events
	assert.Equal(t, archived, rrep.ArchivedEventsDeleted)
	assert.Equal(t, archive.StatusExpired, e.record(e.month).Status)
	list, err = objs.List(ctx, archive.MonthPrefix(e.month))
	require.NoError(t, err)
	assert.Empty(t, list, "files and manifest deleted")
	assert.Equal(t, want, e.rollupsNow(), "the rollups count exactly the events that remain")
	assert.InDelta(t, 1, counterValue(t, reg, "datastorage_retention_archived_months_deleted_total"), 0)
	assert.InDelta(t, float64(archived), counterValue(t, reg, "datastorage_retention_archived_events_deleted_total"), 0)

	// Reads: the month is gone like an expired partition; the chain that
	// continues in PostgreSQL verifies over the tombstones.
	evs, err = tl.CorrelationEvents(ctx, e.onlyArchived(), 100)
	require.NoError(t, err)
	assert.Empty(t, evs)
	evs, err = tl.CorrelationEvents(ctx, e.crossing(), 100)
	require.NoError(t, err)
	assert.Len(t, evs, 1, "the link written now stays")
	vr, err = svc.VerifyChain(ctx, e.crossing(), true)
	require.NoError(t, err)
	assert.True(t, vr.IsValid, vr.Message)
	months, err := rd.MonthsIn(ctx, e.month, e.month.AddDate(0, 1, 0))
	require.NoError(t, err)
	assert.Empty(t, months, "an expired month is not named as archived")
	_, err = svc.PlaceHold(ctx, e.onlyArchived(), "too late", "bob")
	require.ErrorIs(t, err, integrity.ErrNotFound)

	// Again: nothing to do, nothing subtracted twice.
	tombs := e.tombstones()
	rep, err = x.Run(ctx, false)
	require.NoError(t, err)
	assert.Empty(t, rep.Months)
	assert.Equal(t, want, e.rollupsNow())
	assert.Equal(t, tombs, e.tombstones())
}

// countingObjects records the keys opened.
type countingObjects struct {
	archive.Objects
	opened []string
}

func (c *countingObjects) Open(ctx context.Context, key string) (archive.Object, error) {
	c.opened = append(c.opened, key)
	return c.Objects.Open(ctx, key)
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1)
			if c := mf.GetMetric()[0].GetCounter(); c != nil {
				return c.GetValue()
			}
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// TestArchivedMonthKeptUntilItsLastEventExpires: one correlation kept 2,555
// days keeps the whole month (the month is the archive's unit), and a dry
// run says so without changing anything.
func TestArchivedMonthKeptUntilItsLastEventExpires(t *testing.T) {
	e := newEnv(t)
	e.fillExpiring(10, 4, 30, func(c int) int32 {
		if c == 5 {
			return 2555
		}
		return 0
	})
	ctx := context.Background()
	objs := fileTarget(t, t.TempDir())
	_, err := e.archiver(objs).Run(ctx, time.Time{})
	require.NoError(t, err)
	before := e.rollupsNow()
	x := e.expirer(objs)
	for _, dry := range []bool{true, false} {
		rep, err := x.Run(ctx, dry)
		require.NoError(t, err)
		ma := monthAction(t, rep, e.month)
		assert.Equal(t, maintenance.ArchivedKept, ma.Action)
		assert.Equal(t, e.month.AddDate(0, 0, 5+2555), ma.LastRetained)
	}
	assert.Equal(t, archive.StatusDropped, e.record(e.month).Status)
	assert.Equal(t, before, e.rollupsNow())
	// The last retained day is read from the files once, and recorded.
	assert.Equal(t, map[string]int64{e.month.AddDate(0, 0, 5+2555).Format(time.DateOnly): 0},
		e.query(`SELECT last_retained::text, 0::bigint FROM audit_archives WHERE month = $1`, e.month))
}

// holdDuring wraps the store's retention sessions to place a hold at a
// chosen moment of a run.
type holdDuring struct {
	archive.RetentionSource
	// before runs before BeginExpiry; inside runs inside its
	// transaction, once the hold gate is taken.
	before, inside func()
}

type holdDuringSession struct {
	archive.RetentionSession
	h *holdDuring
}

func (h *holdDuring) OpenArchiveRetention(ctx context.Context) (archive.RetentionSession, bool, error) {
	s, ok, err := h.RetentionSource.OpenArchiveRetention(ctx)
	if s != nil {
		s = holdDuringSession{s, h}
	}
	return s, ok, err
}

func (s holdDuringSession) BeginExpiry(ctx context.Context, month time.Time, sha string, gone *archive.Gone,
	check func([]string) error) error {
	if s.h.before != nil {
		s.h.before()
	}
	return s.RetentionSession.BeginExpiry(ctx, month, sha, gone, func(held []string) error {
		if s.h.inside != nil {
			s.h.inside()
		}
		return check(held)
	})
}

// TestHoldPlacedWhileRetentionRuns: a hold placed after the run looked at
// the holds, but before the month is marked, keeps the month; a hold placed
// while the run holds the gate waits, then finds the month gone and holds
// only what PostgreSQL still has.
func TestHoldPlacedWhileRetentionRuns(t *testing.T) {
	e := newEnv(t)
	e.fillExpiring(14, 6, 30, nil)
	ctx := context.Background()
	objs := fileTarget(t, t.TempDir())
	_, err := e.archiver(objs).Run(ctx, time.Time{})
	require.NoError(t, err)
	rd := &archive.Reader{Source: e.st, Objects: objs, PublicKey: e.signer.PublicKey(), Holds: e.st}
	svc := integrity.NewService(archive.ChainStore{Store: e.st, Reader: rd, Holds: e.st}, e.hasher, e.signer)
	before := e.rollupsNow()

	// Before the gate: the check under the gate sees it.
	wrap := &holdDuring{RetentionSource: e.st}
	placed := false
	wrap.before = func() { // once: the empty months that follow are removed too
		if placed {
			return
		}
		placed = true
		_, err := svc.PlaceHold(ctx, e.onlyArchived(), "late", "carol")
		require.NoError(t, err)
	}
	x := &archive.Expirer{Source: wrap, Objects: objs, PublicKey: e.signer.PublicKey()}
	rep, err := x.Run(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, maintenance.ArchivedHeld, monthAction(t, rep, e.month).Action)
	assert.Equal(t, archive.StatusDropped, e.record(e.month).Status)
	assert.Equal(t, before, e.rollupsNow())
	_, err = svc.ReleaseHold(ctx, e.onlyArchived(), "done", "carol")
	require.NoError(t, err)

	// Inside the gate: the hold waits for the month to be marked, then
	// counts only the link still in PostgreSQL.
	var wg sync.WaitGroup
	var held integrity.Hold
	var holdErr error
	wrap.before = nil
	wrap.inside = func() {
		if wrap.inside == nil {
			return
		}
		wrap.inside = nil
		wg.Add(1)
		go func() {
			defer wg.Done()
			held, holdErr = svc.PlaceHold(ctx, e.crossing(), "during", "dave")
		}()
		e.waitAdvisoryWaiter()
	}
	rep, err = x.Run(ctx, false)
	require.NoError(t, err)
	wg.Wait()
	assert.Equal(t, maintenance.ArchivedExpired, monthAction(t, rep, e.month).Action)
	require.NoError(t, holdErr)
	assert.EqualValues(t, 1, held.EventsAffected, "the archived links were gone by the time the hold was placed")
	assert.Equal(t, archive.StatusExpired, e.record(e.month).Status)
}

// waitAdvisoryWaiter waits until a session waits for an advisory lock
// (the hold gate).
func (e *env) waitAdvisoryWaiter() {
	e.t.Helper()
	for range 2000 {
		if e.query(`SELECT 'n', count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`)["n"] > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatal("no session waited for the hold gate")
}

// TestRetentionCrashAtEachStep kills `datastorage retention run` after
// each step of an archived month's removal, then runs it again: the month
// ends expired, files gone, rollups subtracted once, tombstones recorded
// once.
func TestRetentionCrashAtEachStep(t *testing.T) {
	bin := testenv.ServiceBinary(t)
	for _, step := range []string{archive.StepExpiring, archive.StepFilesDeleted, archive.StepExpired} {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t)
			e.fillExpiring(20, 6, 30, nil)
			ctx := context.Background()
			root := t.TempDir()
			objs := fileTarget(t, root)
			want := e.rollupsWithout(e.month)
			_, err := e.archiver(objs).Run(ctx, time.Time{})
			require.NoError(t, err)
			cmdEnv := e.cliEnv(t, root)

			cmd := exec.Command(bin, "retention", "run")
			cmd.Env = append(cmdEnv, "TEST_DATASTORAGE_RETENTION_KILL_AFTER="+step)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "the run must be killed, got %v\n%s", err, out)
			ws, ok := exit.Sys().(syscall.WaitStatus)
			require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "killed by SIGKILL: %v\n%s", err, out)

			// Whatever the step, the rollups were subtracted exactly once.
			assert.Equal(t, want, e.rollupsNow())
			tombs := e.tombstones()
			list, err := objs.List(ctx, archive.MonthPrefix(e.month))
			require.NoError(t, err)
			switch step {
			case archive.StepExpiring:
				assert.Equal(t, archive.StatusExpiring, e.record(e.month).Status)
				assert.NotEmpty(t, list)
				// The files are still there, but the month is gone: a
				// restore would count its events again.
				_, err := e.archiver(objs).Restore(ctx, e.month)
				require.ErrorIs(t, err, archive.ErrRemoved)
				assert.False(t, e.partitionExists(e.month))
				// And if a restore got past that check, the record refuses
				// to become restored (migration 00010).
				_, err = e.exec(`UPDATE audit_archives SET status = 'restored' WHERE month = $1`, e.month)
				require.ErrorContains(t, err, "removed by retention")
				assert.Equal(t, archive.StatusExpiring, e.record(e.month).Status)
				cmd := exec.Command(bin, "archive", "restore", "--month", archive.MonthString(e.month))
				cmd.Env = cmdEnv
				out, err := cmd.CombinedOutput()
				require.Error(t, err)
				assert.Contains(t, string(out), "removed by retention")
			case archive.StepFilesDeleted:
				assert.Equal(t, archive.StatusExpiring, e.record(e.month).Status)
				assert.Empty(t, list)
			case archive.StepExpired:
				assert.Equal(t, archive.StatusExpired, e.record(e.month).Status)
			}

			cmd = exec.Command(bin, "retention", "run")
			cmd.Env = cmdEnv
			out, err = cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.Equal(t, archive.StatusExpired, e.record(e.month).Status)
			list, err = objs.List(ctx, archive.MonthPrefix(e.month))
			require.NoError(t, err)
			assert.Empty(t, list)
			assert.Equal(t, want, e.rollupsNow(), "not subtracted twice")
			assert.Equal(t, tombs, e.tombstones(), "not tombstoned twice")
			if step == archive.StepExpiring {
				assert.Contains(t, string(out), "finished a run that was interrupted")
			}
		})
	}
}

// TestArchivedMonthRetentionS3 is the retention of an archived month
// against a real S3-compatible server (versitygw, started by testenv).
func TestArchivedMonthRetentionS3(t *testing.T) {
	ArchivedMonthRetention(t, s3Target(t))
}

// brokenObjects is an object store that cannot be reached.
type brokenObjects struct{ archive.Objects }

func (brokenObjects) Open(context.Context, string) (archive.Object, error) {
	return nil, errors.New("connection refused")
}

// TestHoldWhileTheArchiveIsUnreachable: a hold on a correlation with
// events in PostgreSQL is placed (and released) even when the archive
// cannot be read, counting PostgreSQL's events; a correlation that may be
// only archived gets the archive's error, not a 404 that would say it
// does not exist. Retention, which checks the holds by correlation, keeps
// the month all the same.
func TestHoldWhileTheArchiveIsUnreachable(t *testing.T) {
	e := newEnv(t)
	e.fillExpiring(14, 6, 30, nil)
	ctx := context.Background()
	objs := fileTarget(t, t.TempDir())
	_, err := e.archiver(objs).Run(ctx, time.Time{})
	require.NoError(t, err)
	broken := brokenObjects{objs}
	rd := &archive.Reader{Source: e.st, Objects: broken, PublicKey: e.signer.PublicKey(), Holds: e.st}
	svc := integrity.NewService(archive.ChainStore{Store: e.st, Reader: rd, Holds: e.st}, e.hasher, e.signer)

	h, err := svc.PlaceHold(ctx, e.crossing(), "outage", "erin")
	require.NoError(t, err)
	assert.EqualValues(t, 1, h.EventsAffected, "PostgreSQL's link only: the archive could not be counted")
	_, err = svc.PlaceHold(ctx, e.onlyArchived(), "outage", "erin")
	require.Error(t, err)
	require.NotErrorIs(t, err, integrity.ErrNotFound)

	rep, err := e.expirer(objs).Run(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, maintenance.ArchivedHeld, monthAction(t, rep, e.month).Action, "the hold keeps the month")
	rel, err := svc.ReleaseHold(ctx, e.crossing(), "over", "erin")
	require.NoError(t, err)
	assert.EqualValues(t, 1, rel.EventsReleased)
}

// TestRetentionLeavesArchivedMonthsToARunningArchiveJob: while the archive
// job (or a restore) holds its lock, the retention run does PostgreSQL's
// part and skips the archived months; the next run removes them.
func TestRetentionLeavesArchivedMonthsToARunningArchiveJob(t *testing.T) {
	e := newEnv(t)
	e.fillExpiring(7, 4, 30, nil)
	ctx := context.Background()
	objs := fileTarget(t, t.TempDir())
	_, err := e.archiver(objs).Run(ctx, time.Time{})
	require.NoError(t, err)
	job, leader, err := e.st.OpenArchive(ctx)
	require.NoError(t, err)
	require.True(t, leader)
	opts := maintenance.RetentionOptions{Archive: e.expirer(objs)}
	rep, err := maintenance.RunRetention(ctx, e.st, opts)
	require.NoError(t, err)
	assert.True(t, rep.ArchiveSkipped)
	assert.Empty(t, rep.Archived)
	assert.Equal(t, archive.StatusDropped, e.record(e.month).Status)
	job.Close(ctx)
	rep, err = maintenance.RunRetention(ctx, e.st, opts)
	require.NoError(t, err)
	assert.False(t, rep.ArchiveSkipped)
	assert.Equal(t, archive.StatusExpired, e.record(e.month).Status)
}
