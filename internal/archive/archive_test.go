package archive_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/benchdata"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
	"kubernaut.ai/datastorage/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testHMACKey is the chains' HMAC key in every test.
const testHMACKey = "archive-test-key"

// env is a migrated store with events in an old month, and an archiver.
type env struct {
	t      *testing.T
	st     *store.Store
	url    string
	hasher audit.Hasher
	signer *integrity.Signer
	month  time.Time
	// events are the old month's events as stored, by id.
	events map[uuid.UUID]audit.Event
	corrs  []string
}

// oldMonth is five months before now: past archive.after (90 days).
func oldMonth() time.Time {
	y, m, _ := time.Now().UTC().AddDate(0, -5, 0).Date()
	return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	hasher := audit.NewHasher([]byte(testHMACKey))
	st, url := storetest.New(t, store.Options{MaxConns: 8, Hasher: hasher}, 1)
	e := &env{t: t, st: st, url: url, hasher: hasher, signer: testSigner(), month: oldMonth(), events: map[uuid.UUID]audit.Event{}}
	_, err := st.EnsurePartitions(context.Background(), e.month, 6)
	require.NoError(t, err)
	return e
}

// fill writes corrs correlations of perCorr events each into the old
// month, varied over the columns that are optional or stored compactly,
// with parents inside the month; a few chains continue into the next
// month (chains cross months), without parents across the boundary.
func (e *env) fill(corrs, perCorr int) {
	e.t.Helper()
	ctx := context.Background()
	var batch []*audit.Event
	for c := range corrs {
		corr := fmt.Sprintf("rr-%04d-%s", c, uuid.NewString()[:8])
		e.corrs = append(e.corrs, corr)
		start := e.month.Add(time.Duration(c%27)*24*time.Hour + time.Duration(c)*time.Minute + 123456*time.Microsecond)
		var prev *audit.Event
		for s := range perCorr {
			typ := benchdata.Types[(c+s)%len(benchdata.Types)]
			ts := start.Add(time.Duration(s) * 17 * time.Second)
			if c%7 == 3 && s == perCorr-1 {
				ts = time.Now().UTC().Add(-time.Hour) // the chain's last link is in this month, not due
			}
			ev := &audit.Event{
				ID: uuid.New(), Version: "1.0", Type: typ[0], Category: typ[1], Action: "step",
				Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Outcome: []string{"success", "failure", "pending"}[s%3],
				CorrelationID: corr, Data: json.RawMessage(fmt.Sprintf(`{"step":%d,"msg":"é \u2028 <x>","nested":{"b":[1,2.5,null],"a":true}}`, s)),
				ActorType: "service", ActorID: typ[1] + "-service", ResourceType: typ[1], ResourceID: corr,
				Severity: []string{"info", "warning", "error", "critical"}[s%4], RetentionDays: 2555,
			}
			if s%2 == 0 {
				ev.Namespace = benchdata.Namespaces[c%len(benchdata.Namespaces)]
				ev.ClusterID = "cluster-1"
				ev.ActorIP = "10.0.0.1"
			}
			if s%3 == 1 {
				d := int32(s * 10)
				ev.DurationMS = &d
				ev.ErrorCode, ev.ErrorMessage = "E42", "boom"
				ev.ActorType, ev.ActorID, ev.ResourceType, ev.ResourceID = "user", "alice", "pod", "pod-1"
			}
			if s%5 == 4 {
				ev.IsSensitive = true
			}
			if prev != nil && s%2 == 1 && !(c%7 == 3 && s == perCorr-1) {
				ev.ParentID = &prev.ID
			}
			batch = append(batch, ev)
			prev = ev
		}
		if len(batch) > 500 {
			_, err := e.st.InsertEvents(ctx, batch)
			require.NoError(e.t, err)
			batch = nil
		}
	}
	if len(batch) > 0 {
		_, err := e.st.InsertEvents(ctx, batch)
		require.NoError(e.t, err)
	}
	e.snapshot()
}

// snapshot keeps the month's events as stored now.
func (e *env) snapshot() {
	for _, c := range e.corrs {
		evs, err := e.st.CorrelationEvents(context.Background(), c, 10000)
		require.NoError(e.t, err)
		for _, ev := range evs {
			e.events[ev.ID] = ev
		}
	}
}

func (e *env) archiver(objs archive.Objects) *archive.Archiver {
	return &archive.Archiver{Source: e.st, Objects: objs, Signer: e.signer, Hasher: e.hasher,
		Options: archive.Options{After: 90 * 24 * time.Hour, Target: "test", RowsPerGroup: 64, RowsPerFile: 1500,
			// A few dozen rows a run: every test's month is sorted by
			// merging spilled runs, the path a real month takes.
			SortMemory: 32 << 10, TempDir: e.t.TempDir()}}
}

func (e *env) partitionExists(month time.Time) bool {
	conn, err := pgx.Connect(context.Background(), e.url)
	require.NoError(e.t, err)
	defer conn.Close(context.Background())
	var ok bool
	require.NoError(e.t, conn.QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`,
		fmt.Sprintf("audit_events_y%04dm%02d", month.Year(), int(month.Month()))).Scan(&ok))
	return ok
}

// sameEvent asserts that got is want: canonical form, hash, and every
// column the canonical form leaves out.
func sameEvent(t *testing.T, want, got audit.Event) {
	t.Helper()
	wc, err := want.Canonical()
	require.NoError(t, err)
	gc, err := got.Canonical()
	require.NoError(t, err)
	assert.Equal(t, string(wc), string(gc), "canonical form of %s", want.ID)
	assert.Equal(t, want.Hash, got.Hash)
	assert.Equal(t, *want.PreviousHash, *got.PreviousHash)
	assert.Equal(t, want.ChainSeq, got.ChainSeq)
	assert.Equal(t, want.HashAlgorithm, got.HashAlgorithm)
	assert.Equal(t, want.CreatedAt, got.CreatedAt)
	assert.Equal(t, want.LegalHold, got.LegalHold)
	assert.Equal(t, want.Date, got.Date)
	assert.Equal(t, want.ParentDate, got.ParentDate)
}

// TestRoundTripDirectory archives a month to a directory, reads it, and
// restores it.
func TestRoundTripDirectory(t *testing.T) {
	RoundTrip(t, fileTarget(t, t.TempDir()))
}

// RoundTrip is the whole life of an archived month against objs: a
// function of the store so it runs against every target (the S3 one too).
func RoundTrip(t *testing.T, objs archive.Objects) {
	e := newEnv(t)
	e.fill(120, 25)
	ctx := context.Background()
	a := e.archiver(objs)

	rep, err := a.Run(ctx, time.Time{})
	require.NoError(t, err)
	mr := e.monthOf(rep)
	assert.True(t, mr.Dropped)
	// The chains' links of this month stay in PostgreSQL.
	inMonth := 0
	for _, ev := range e.events {
		if archive.MonthString(ev.Date.Std()) == mr.Month {
			inMonth++
		}
	}
	assert.EqualValues(t, inMonth, mr.Events)
	assert.False(t, e.partitionExists(e.month))

	m, err := a.Verify(ctx, e.month)
	require.NoError(t, err)
	assert.Greater(t, len(m.Files), 1, "RowsPerFile splits the month")
	assert.NotEmpty(t, m.Rollups, "the manifest carries the month's rollup totals")

	// Reads of archived correlations use only the row groups that can
	// hold them.
	rd := &archive.Reader{Source: e.st, Objects: objs, PublicKey: e.signer.PublicKey()}
	for _, c := range []string{e.corrs[0], e.corrs[3], e.corrs[len(e.corrs)-1]} {
		got, stats, err := rd.Correlation(ctx, c)
		require.NoError(t, err)
		require.NotEmpty(t, got)
		assert.Less(t, stats.RowGroupsRead, stats.RowGroups, "row groups skipped by their statistics")
		assert.LessOrEqual(t, stats.RowGroupsRead, 2)
		for _, ev := range got {
			sameEvent(t, e.events[ev.ID], ev)
		}
	}

	// The archived chain verifies and the timeline is whole.
	svc := integrity.NewService(archive.ChainStore{Store: e.st, Reader: rd}, e.hasher, e.signer)
	for _, c := range []string{e.corrs[0], e.corrs[3]} {
		vr, err := svc.VerifyChain(ctx, c, true)
		require.NoError(t, err)
		assert.True(t, vr.IsValid, vr.Message)
		assert.EqualValues(t, 25, vr.TotalEvents)
	}
	tl := archive.TimelineStore{TimelineSource: e.st, Reader: rd}
	evs, err := tl.CorrelationEvents(ctx, e.corrs[3], 1000)
	require.NoError(t, err)
	assert.Len(t, evs, 25, "24 archived links and 1 in PostgreSQL")
	assert.Equal(t, archive.MonthString(e.month), archive.MonthString(evs[0].Date.Std()), "the archived links come first")
	// The streamed timeline of the API: outline, then the events in chunks.
	timelines := query.NewTimelines(tl)
	outline, err := timelines.Outline(ctx, e.corrs[3])
	require.NoError(t, err)
	assert.Equal(t, 25, outline.EventCount)
	var nodes []*query.TimelineNode
	var walk func([]*query.TimelineNode)
	walk = func(ns []*query.TimelineNode) {
		for _, n := range ns {
			nodes = append(nodes, n)
			walk(n.Children)
		}
	}
	walk(outline.Events)
	filled := 0
	require.NoError(t, timelines.Fill(ctx, e.corrs[3], nodes, func(n *query.TimelineNode, ev *audit.Event) error {
		sameEvent(t, e.events[ev.ID], *ev)
		filled++
		return nil
	}))
	assert.Equal(t, 25, filled)

	// Lists: by correlation, the archived events are in the pages (in
	// order, through cursors); any other list names the months it did not
	// search.
	lists := query.New(e.st).WithArchive(rd)
	for _, asc := range []bool{false, true} {
		var got []audit.Event
		var cursor *query.Cursor
		for range 10 {
			res, err := lists.List(ctx, query.ListParams{Filter: query.EventFilter{CorrelationID: e.corrs[3]},
				Limit: 7, Cursor: cursor, Ascending: asc})
			require.NoError(t, err)
			assert.Empty(t, res.ArchivedMonths, "a correlation's list searches the archive")
			got = append(got, res.Events...)
			if !res.HasMore {
				break
			}
			c, err := query.DecodeCursor(res.NextCursor)
			require.NoError(t, err)
			cursor = &c
		}
		require.Len(t, got, 25, "ascending=%t", asc)
		for i := 1; i < len(got); i++ {
			before := got[i-1].Timestamp.Std().Before(got[i].Timestamp.Std())
			assert.Equal(t, asc, before, "order at %d (ascending=%t)", i, asc)
		}
		for _, ev := range got {
			sameEvent(t, e.events[ev.ID], ev)
		}
	}
	res, err := lists.List(ctx, query.ListParams{Filter: query.EventFilter{CorrelationID: e.corrs[3], EventOutcome: "failure"}, Limit: 100})
	require.NoError(t, err)
	assert.Len(t, res.Events, 8, "filters apply to archived events: outcomes cycle success, failure, pending over 25 links")
	res, err = lists.List(ctx, query.ListParams{Filter: query.EventFilter{Since: e.month.AddDate(0, 0, -3), Until: e.month.AddDate(0, 0, 10)}, Limit: 5})
	require.NoError(t, err)
	assert.Equal(t, []string{archive.MonthString(e.month)}, res.ArchivedMonths)
	res, err = lists.List(ctx, query.ListParams{Filter: query.EventFilter{Since: e.month.AddDate(0, 3, 0)}, Limit: 5})
	require.NoError(t, err)
	assert.Empty(t, res.ArchivedMonths)

	// Restore: the month is back, byte-identical.
	n, err := a.Restore(ctx, e.month)
	require.NoError(t, err)
	assert.EqualValues(t, inMonth, n)
	require.True(t, e.partitionExists(e.month))
	for _, c := range e.corrs {
		evs, err := e.st.CorrelationEvents(ctx, c, 10000)
		require.NoError(t, err)
		require.Len(t, evs, 25)
		for _, ev := range evs {
			sameEvent(t, e.events[ev.ID], ev)
		}
		if c == e.corrs[0] {
			got, err := e.st.GetEvent(ctx, evs[0].ID)
			require.NoError(t, err, "the restored ids resolve again")
			sameEvent(t, evs[0], got)
		}
	}
	vr, err := integrity.NewService(e.st, e.hasher, e.signer).VerifyChain(ctx, e.corrs[3], true)
	require.NoError(t, err)
	assert.True(t, vr.IsValid, vr.Message)
	// A restored month is not archived again by the job.
	rep, err = a.Run(ctx, time.Time{})
	require.NoError(t, err)
	for _, m := range rep.Months {
		assert.NotEqual(t, archive.MonthString(e.month), m.Month)
	}
	assert.Equal(t, archive.StatusRestored, e.record(e.month).Status)
}

// TestTamperingIsDetected changes a file, then the manifest.
func TestTamperingIsDetected(t *testing.T) {
	e := newEnv(t)
	e.fill(20, 10)
	ctx := context.Background()
	root := t.TempDir()
	a := e.archiver(fileTarget(t, root))
	_, err := a.Run(ctx, time.Time{})
	require.NoError(t, err)
	_, err = a.Verify(ctx, e.month)
	require.NoError(t, err)

	part := filepath.Join(root, filepath.FromSlash(archive.MonthPrefix(e.month)), "part-00000.parquet")
	orig, err := os.ReadFile(part)
	require.NoError(t, err)
	bad := append([]byte(nil), orig...)
	bad[len(bad)/2] ^= 0x20
	require.NoError(t, os.WriteFile(part, bad, 0o644))
	_, err = a.Verify(ctx, e.month)
	require.ErrorContains(t, err, "the file was changed")
	require.NoError(t, os.WriteFile(part, orig, 0o644))

	mpath := filepath.Join(root, filepath.FromSlash(archive.ManifestKey(e.month)))
	mb, err := os.ReadFile(mpath)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(mb, &m))
	m["events"] = m["events"].(float64) - 1
	tampered, err := json.Marshal(m)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(mpath, tampered, 0o644))
	_, err = a.Verify(ctx, e.month)
	require.ErrorIs(t, err, archive.ErrBadManifest)

	// A restore of a tampered archive is refused.
	_, err = a.Restore(ctx, e.month)
	require.ErrorIs(t, err, archive.ErrBadManifest)
}

// TestHeldMonthIsSkipped: a month with an event under legal hold stays
// whole in PostgreSQL.
func TestHeldMonthIsSkipped(t *testing.T) {
	e := newEnv(t)
	e.fill(10, 5)
	ctx := context.Background()
	_, err := e.st.PlaceHold(ctx, e.corrs[2], "case 7", "legal", time.Now())
	require.NoError(t, err)
	a := e.archiver(fileTarget(t, t.TempDir()))
	rep, err := a.Run(ctx, time.Time{})
	require.NoError(t, err)
	assert.Equal(t, "skipped", e.monthOf(rep).Action)
	// Each held event counted once, whether flagged or held by its
	// correlation's active hold (or both).
	assert.Contains(t, e.monthOf(rep).Note, fmt.Sprintf("%d held events", e.inMonth(e.corrs[2])))
	assert.True(t, e.partitionExists(e.month))
	assert.Empty(t, e.record(e.month).Status, "no record of a skipped month")
}

// inMonth counts the events of correlation corr in the env's month.
func (e *env) inMonth(corr string) int {
	n := 0
	for _, ev := range e.events {
		if ev.CorrelationID == corr && archive.MonthString(ev.Date.Std()) == archive.MonthString(e.month) {
			n++
		}
	}
	return n
}

// monthOf returns the report of the env's month.
func (e *env) monthOf(rep archive.Report) archive.MonthReport {
	e.t.Helper()
	for _, m := range rep.Months {
		if m.Month == archive.MonthString(e.month) {
			return m
		}
	}
	e.t.Fatalf("month %s not in the report %+v", archive.MonthString(e.month), rep)
	return archive.MonthReport{}
}

// record returns the record of month (zero when none).
func (e *env) record(month time.Time) archive.Record {
	e.t.Helper()
	recs, err := e.st.ArchiveRecords(context.Background())
	require.NoError(e.t, err)
	for _, r := range recs {
		if r.Month.Equal(month) {
			return r
		}
	}
	return archive.Record{}
}

// TestMonthChangedBeforeDropIsKept: an event written to the month after its
// archive was verified and recorded (here by the step hook) makes the drop
// refuse, and the next run archives the month again, with it.
func TestMonthChangedBeforeDropIsKept(t *testing.T) {
	e := newEnv(t)
	e.fill(10, 6)
	ctx := context.Background()
	a := e.archiver(fileTarget(t, t.TempDir()))
	late := uuid.New()
	a.Options.AfterStep = func(step string, month time.Time) {
		if step != archive.StepRecorded || !month.Equal(e.month) {
			return
		}
		ts := e.month.Add(36 * time.Hour)
		_, err := e.st.InsertEvents(ctx, []*audit.Event{{
			ID: late, Version: "1.0", Type: "gateway.signal.received", Category: "gateway", Action: "received",
			Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Outcome: "success", CorrelationID: "late-arrival",
			Data: json.RawMessage(`{}`), ActorType: "service", ActorID: "gateway-service", ResourceType: "gateway",
			ResourceID: "late-arrival", Severity: "info", RetentionDays: 2555,
		}})
		require.NoError(t, err)
	}
	_, err := a.Run(ctx, e.month)
	require.ErrorContains(t, err, "not dropping")
	assert.True(t, e.partitionExists(e.month), "the month stays in PostgreSQL")
	assert.Equal(t, archive.StatusVerified, e.record(e.month).Status)

	a.Options.AfterStep = nil
	rep, err := a.Run(ctx, e.month)
	require.NoError(t, err)
	mr := e.monthOf(rep)
	assert.True(t, mr.Dropped)
	assert.Equal(t, "archived", mr.Action, "written again")
	assert.EqualValues(t, len(e.monthEvents())+1, mr.Events)
	rd := &archive.Reader{Source: e.st, Objects: a.Objects, PublicKey: e.signer.PublicKey()}
	got, _, err := rd.Correlation(ctx, "late-arrival")
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, late, got[0].ID)
}

// TestReaderSharesOpenFilesAcrossLookups: lookups of many correlations at
// once, with room for one open file among several, each get the whole
// correlation and the events as they were (the cache's eviction closes a
// file only after its last lookup; run under -race).
func TestReaderSharesOpenFilesAcrossLookups(t *testing.T) {
	e := newEnv(t)
	e.fill(60, 12)
	ctx := context.Background()
	objs := fileTarget(t, t.TempDir())
	a := e.archiver(objs)
	a.Options.RowsPerFile = 100
	_, err := a.Run(ctx, e.month)
	require.NoError(t, err)
	m, err := a.Manifest(ctx, e.month)
	require.NoError(t, err)
	require.Greater(t, len(m.Files), 1, "several files, so that lookups evict each other's")
	inMonth := map[string]int{}
	for _, ev := range e.events {
		if archive.MonthString(ev.Date.Std()) == archive.MonthString(e.month) {
			inMonth[ev.CorrelationID]++
		}
	}

	rd := &archive.Reader{Source: e.st, Objects: objs, PublicKey: e.signer.PublicKey(), MaxOpenFiles: 1}
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			for i := range 3 * len(e.corrs) {
				c := e.corrs[(i*7+w*13)%len(e.corrs)]
				got, _, err := rd.Correlation(ctx, c)
				if err != nil {
					errs <- err
					return
				}
				if len(got) != inMonth[c] {
					errs <- fmt.Errorf("%s: %d archived events, want %d", c, len(got), inMonth[c])
					return
				}
				for k, ev := range got {
					if want := e.events[ev.ID]; want.Hash != ev.Hash || want.CorrelationID != c || (k > 0 && ev.ChainSeq != got[k-1].ChainSeq+1) {
						errs <- fmt.Errorf("%s: event %s differs from the one archived", c, ev.ID)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
}
