package archive

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"kubernaut.ai/datastorage/internal/maintenance"
)

// Retention of archived months (docs/archive.md, "Retention"). Retention
// deletes an event from PostgreSQL once event_date + retention_days is
// before today; an archived month's files go by the same rule, whole: when
// the last of its events has expired (max(event_date + retention_days) is
// before today), never while a correlation of the month is under an active
// legal hold. A month is the unit because it is the archive's unit: its
// files, its manifest and its record are written, verified and signed
// together, and rewriting them without some events would make a second,
// differently signed archive of the month. The cost is that a month with
// one event kept 7 years keeps the whole month as long.
//
// Removing a month is two recorded steps, so that a crash between any two
// statements is finished by the next run, and nothing is done twice:
//
//  1. One transaction, under the legal-hold gate: check that no
//     correlation of the month is held, subtract the month's events from
//     the rollups and record their links as tombstones (as retention does
//     for the rows it deletes from PostgreSQL), mark the record expiring.
//     From its commit on, reads no longer use the month's files.
//  2. Delete every object under the month's prefix, the manifest last,
//     then mark the record expired.
//
// A run that finds a month expiring does step 2 again (deleting an object
// that is gone already is not an error).

// Record statuses of retention (migration 00010).
const (
	// StatusExpiring: the month's events were subtracted from the rollups
	// and tombstoned; its files are to be deleted.
	StatusExpiring = "expiring"
	// StatusExpired: the month's files and manifest are deleted.
	StatusExpired = "expired"
)

// Steps of an archived month's retention, named to Expirer.AfterStep (the
// crash tests' hook).
const (
	StepExpiring     = "expiring"      // step 1 committed
	StepFilesDeleted = "files-deleted" // every object of the month deleted
	StepExpired      = "expired"       // the record says expired
)

// ErrHeld is returned by the check a RetentionSession's BeginExpiry calls
// when a correlation of the month is under an active legal hold: the month
// stays.
var ErrHeld = errors.New("archive: a correlation of the month is under legal hold")

// RetentionSource opens retention runs over the archived months.
// internal/store implements it.
type RetentionSource interface {
	// OpenArchiveRetention returns a session holding the archive leader
	// lock (the archive job's, so that no archive run or restore works on a
	// month while its files are deleted), or leader false when another
	// replica holds it.
	OpenArchiveRetention(ctx context.Context) (s RetentionSession, leader bool, err error)
}

// ExpiryRecord is what retention needs of a row of audit_archives.
type ExpiryRecord struct {
	Month          time.Time
	Status         string
	ManifestKey    string
	ManifestSHA256 string
	Events         int64
	// LastRetained is max(event_date + retention_days) of the month's
	// events; nil until a run has read it from the files.
	LastRetained *time.Time
}

// RetentionSession is one retention run's hold on the database.
type RetentionSession interface {
	// Close releases the leader lock.
	Close(ctx context.Context)
	// Today is the database's UTC date.
	Today(ctx context.Context) (time.Time, error)
	// ExpiryRecords lists the months whose status is dropped or
	// expiring, oldest first.
	ExpiryRecords(ctx context.Context) ([]ExpiryRecord, error)
	// SetLastRetained records day as the month's LastRetained, if its
	// manifest is still manifestSHA256.
	SetLastRetained(ctx context.Context, month time.Time, manifestSHA256 string, day time.Time) error
	// ActiveHolds lists the correlations under an active legal hold.
	ActiveHolds(ctx context.Context) ([]string, error)
	// BeginExpiry, in one transaction that holds the legal-hold gate (no
	// hold can be placed meanwhile): calls check with the correlations
	// under an active hold (an error rolls everything back and is
	// returned), subtracts gone from the rollups, records its tombstones,
	// and marks the month expiring, provided it is still dropped with
	// manifest manifestSHA256 (otherwise ErrMonthChanged).
	BeginExpiry(ctx context.Context, month time.Time, manifestSHA256 string, gone *Gone, check func(held []string) error) error
	// FinishExpiry marks an expiring month expired.
	FinishExpiry(ctx context.Context, month time.Time) error
}

// ErrMonthChanged is returned by BeginExpiry when the month's record is no
// longer the dropped archive the run read (restored, archived again).
var ErrMonthChanged = errors.New("archive: the month's record changed during the run")

// Gone is what removing a month takes away from the rollups and the chains:
// the counts to subtract and the removed links, computed from the files.
type Gone struct {
	Events       int64
	Hourly       []HourlyCount
	Correlations []CorrelationCount
	Tombstones   []Tombstone
}

// HourlyCount is one row of audit_rollup_hourly's key with its count.
type HourlyCount struct {
	Bucket                                           time.Time
	EventType, EventCategory, EventOutcome, Severity string
	Events                                           int64
}

// CorrelationCount is one row of audit_rollup_correlations' key with its
// count; Namespace and ClusterID are "" when the events had none.
type CorrelationCount struct {
	Bucket                              time.Time
	CorrelationID, Namespace, ClusterID string
	Events                              int64
}

// Tombstone is a run of consecutive links of one chain that is removed:
// chain_seq FromSeq..ToSeq, LastHash (hex) the hash of ToSeq.
type Tombstone struct {
	CorrelationID  string
	FromSeq, ToSeq int64
	LastHash       string
}

// Expirer removes the archived months whose events have all expired. It is
// run by the retention job (maintenance), after PostgreSQL's retention.
type Expirer struct {
	Source  RetentionSource
	Objects Objects
	// PublicKey verifies the manifests; a month whose manifest does not
	// verify is left alone (and the run fails: someone must look).
	PublicKey ed25519.PublicKey
	// AfterStep, when set, is called after each step (tests).
	AfterStep func(step string, month time.Time)
	Log       *slog.Logger
}

// MonthExpiry is what a run did with one archived month.
type MonthExpiry struct {
	Month  string
	Action string // maintenance.Archived*
	Events int64
	// LastRetained is the last day an event of the month must be kept.
	LastRetained time.Time
	Note         string
}

// ExpiryReport is what a run did.
type ExpiryReport struct {
	// Skipped: another replica holds the archive leader lock (the archive
	// job, a restore); nothing was looked at.
	Skipped bool
	Months  []MonthExpiry
}

// removed reports a month that retention removed or is removing.
func removed(r Record) bool { return r.Status == StatusExpiring || r.Status == StatusExpired }

// ErrRemoved is returned by Archiver.Restore for a month retention removed
// (or began removing): its events were subtracted from the rollups and
// tombstoned, so they cannot come back (migration 00010 refuses it too).
var ErrRemoved = errors.New("archive: the month was removed by retention")

// notRemoved returns ErrRemoved for a month retention removed.
func (a *Archiver) notRemoved(ctx context.Context, month time.Time) error {
	recs, err := a.records(ctx)
	if err != nil {
		return err
	}
	if r, ok := recs[month]; ok && removed(r) {
		return fmt.Errorf("%w: %s (status %s): every event in it had expired and its files are deleted",
			ErrRemoved, MonthString(month), r.Status)
	}
	return nil
}

// ExpireArchived runs x for the retention job (maintenance.ArchiveRetention).
func (x *Expirer) ExpireArchived(ctx context.Context, dryRun bool) ([]maintenance.ArchivedRetention, bool, error) {
	rep, err := x.Run(ctx, dryRun)
	out := make([]maintenance.ArchivedRetention, 0, len(rep.Months))
	for _, m := range rep.Months {
		out = append(out, maintenance.ArchivedRetention{Month: m.Month, Action: m.Action, Events: m.Events,
			LastRetained: m.LastRetained, Note: m.Note})
	}
	return out, rep.Skipped, err
}

var _ maintenance.ArchiveRetention = (*Expirer)(nil)

func (x *Expirer) log() *slog.Logger {
	if x.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return x.Log
}

func (x *Expirer) step(name string, month time.Time) {
	if x.AfterStep != nil {
		x.AfterStep(name, month)
	}
}

// Run looks at every dropped or expiring month, oldest first, and removes
// those whose events have all expired and that no hold keeps. With dryRun
// it only reports (it still records LastRetained, which is a fact of the
// files, not a change).
func (x *Expirer) Run(ctx context.Context, dryRun bool) (ExpiryReport, error) {
	var rep ExpiryReport
	s, leader, err := x.Source.OpenArchiveRetention(ctx)
	if err != nil {
		return rep, fmt.Errorf("archive: retention: %w", err)
	}
	if !leader {
		rep.Skipped = true
		return rep, nil
	}
	defer s.Close(ctx)
	today, err := s.Today(ctx)
	if err != nil {
		return rep, fmt.Errorf("archive: retention: %w", err)
	}
	recs, err := s.ExpiryRecords(ctx)
	if err != nil {
		return rep, fmt.Errorf("archive: retention: %w", err)
	}
	for _, rec := range recs {
		me, err := x.month(ctx, s, rec, today, dryRun)
		if err != nil {
			return rep, fmt.Errorf("archive: retention of %s: %w", MonthString(rec.Month), err)
		}
		if me.Action != "" {
			rep.Months = append(rep.Months, me)
		}
	}
	return rep, nil
}

func (x *Expirer) month(ctx context.Context, s RetentionSession, rec ExpiryRecord, today time.Time, dryRun bool) (MonthExpiry, error) {
	me := MonthExpiry{Month: MonthString(rec.Month), Events: rec.Events}
	if rec.Status == StatusExpiring {
		// A run stopped after its transaction: the rollups and tombstones
		// are done, the files are (partly) there.
		if dryRun {
			me.Action, me.Note = maintenance.ArchivedWould, "files left by an interrupted run"
			return me, nil
		}
		if err := x.finish(ctx, s, rec.Month); err != nil {
			return me, err
		}
		me.Action, me.Note = maintenance.ArchivedExpired, "finished a run that was interrupted"
		return me, nil
	}
	// A month's events all expire at the earliest two days after it
	// ends (retention_days ≥ 1): no need to read its files before.
	if !rec.Month.AddDate(0, 1, 1).Before(today) {
		return me, nil
	}
	if rec.LastRetained != nil && !rec.LastRetained.Before(today) {
		me.Action, me.LastRetained = maintenance.ArchivedKept, *rec.LastRetained
		return me, nil
	}
	m, err := x.manifest(ctx, rec)
	if err != nil {
		return me, err
	}
	if rec.LastRetained != nil {
		// Known to be expired: a held month is not read again at every
		// run (its files are the month's whole size).
		me.LastRetained = *rec.LastRetained
		holds, err := s.ActiveHolds(ctx)
		if err != nil {
			return me, err
		}
		if held := heldOf(m, holds, nil); len(held) > 0 {
			me.Action, me.Note = maintenance.ArchivedHeld, "legal hold on "+strings.Join(held, ", ")
			return me, nil
		}
	}
	scan, err := x.scan(ctx, m)
	if err != nil {
		return me, err
	}
	me.LastRetained = scan.lastRetained
	if rec.LastRetained == nil {
		if err := s.SetLastRetained(ctx, rec.Month, rec.ManifestSHA256, scan.lastRetained); err != nil {
			return me, err
		}
	}
	if !scan.lastRetained.Before(today) {
		me.Action = maintenance.ArchivedKept
		return me, nil
	}
	holds, err := s.ActiveHolds(ctx)
	if err != nil {
		return me, err
	}
	if held := heldOf(m, holds, scan.flagged); len(held) > 0 {
		me.Action, me.Note = maintenance.ArchivedHeld, "legal hold on "+strings.Join(held, ", ")
		return me, nil
	}
	if dryRun {
		me.Action = maintenance.ArchivedWould
		return me, nil
	}
	err = s.BeginExpiry(ctx, rec.Month, rec.ManifestSHA256, scan.gone, func(active []string) error {
		if held := heldOf(m, active, scan.flagged); len(held) > 0 {
			return fmt.Errorf("%w: %s", ErrHeld, strings.Join(held, ", "))
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrHeld):
		// A hold was placed since the look above, before the gate.
		me.Action, me.Note = maintenance.ArchivedHeld, "legal hold placed during the run"
		return me, nil
	case errors.Is(err, ErrMonthChanged):
		me.Action, me.Note = maintenance.ArchivedKept, "the month's record changed during the run"
		return me, nil
	case err != nil:
		return me, err
	}
	x.step(StepExpiring, rec.Month)
	if err := x.finish(ctx, s, rec.Month); err != nil {
		return me, err
	}
	me.Action = maintenance.ArchivedExpired
	x.log().Info("archive: month removed by retention", "month", me.Month, "events", rec.Events,
		"last_retained", scan.lastRetained.Format(time.DateOnly))
	return me, nil
}

// finish is step 2: every object under the month's prefix goes, the
// manifest last (a listing is what finds the files, whatever their number
// and names, and stray ones a crashed archive run left), then the record
// says expired.
func (x *Expirer) finish(ctx context.Context, s RetentionSession, month time.Time) error {
	objs, err := x.Objects.List(ctx, MonthPrefix(month))
	if err != nil {
		return fmt.Errorf("list files: %w", err)
	}
	manifest := ManifestKey(month)
	slices.SortFunc(objs, func(a, b ObjectInfo) int {
		return cmp.Or(cmp.Compare(boolInt(a.Key == manifest), boolInt(b.Key == manifest)), strings.Compare(a.Key, b.Key))
	})
	for _, o := range objs {
		if err := x.Objects.Delete(ctx, o.Key); err != nil {
			return fmt.Errorf("delete %s: %w", o.Key, err)
		}
	}
	x.step(StepFilesDeleted, month)
	if err := s.FinishExpiry(ctx, month); err != nil {
		return err
	}
	x.step(StepExpired, month)
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// heldOf returns the correlations of m that are under an active hold (or,
// flagged, whose rows carry the hold flag), sorted.
func heldOf(m *Manifest, active []string, flagged map[string]bool) []string {
	set := make(map[string]bool, len(active))
	for _, c := range active {
		set[c] = true
	}
	var out []string
	for _, c := range m.Correlations {
		if set[c.CorrelationID] || flagged[c.CorrelationID] {
			out = append(out, c.CorrelationID)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// manifest reads the recorded manifest: its SHA-256 must be the record's
// and its signature must verify.
func (x *Expirer) manifest(ctx context.Context, rec ExpiryRecord) (*Manifest, error) {
	return recordedManifest(ctx, x.Objects, rec.ManifestKey, rec.ManifestSHA256, x.PublicKey)
}

// monthScan is what one pass over a month's files finds.
type monthScan struct {
	lastRetained time.Time
	gone         *Gone
	// flagged names the correlations with a row whose legal_hold flag is
	// set (an archived month has none: the job skips held months).
	flagged map[string]bool
}

type hourlyKey struct {
	bucket             int64
	typ, cat, out, sev string
}

type corrKey struct {
	bucket          int64
	corr, ns, clust string
}

type seqHash struct {
	seq  int64
	hash []byte
}

// scan reads every file of the month once: each file's size and SHA-256
// against the manifest (the counts subtracted must be those of the
// archived events), then its rows, into the month's last retained day,
// the rollup counts and the tombstones.
func (x *Expirer) scan(ctx context.Context, m *Manifest) (monthScan, error) {
	sc := monthScan{gone: &Gone{}, flagged: map[string]bool{}}
	hourly := map[hourlyKey]int64{}
	corrs := map[corrKey]int64{}
	// A chain whose links in the month are consecutive is one tombstone,
	// from the manifest; the links of the others (their month has gaps:
	// links in other months, or removed by retention before archiving)
	// are collected to find their runs.
	// (A correlation listed more than once, in pieces, is taken whole.)
	gapped := map[string][]seqHash{}
	whole := map[string]*Chain{}
	var order []string
	for _, c := range m.Correlations {
		w, ok := whole[c.CorrelationID]
		if !ok {
			cc := c
			whole[c.CorrelationID], order = &cc, append(order, c.CorrelationID)
			continue
		}
		w.Events += c.Events
		if c.FirstSeq < w.FirstSeq {
			w.FirstSeq, w.FirstHash = c.FirstSeq, c.FirstHash
		}
		if c.LastSeq > w.LastSeq {
			w.LastSeq, w.LastHash = c.LastSeq, c.LastHash
		}
	}
	for _, id := range order {
		c := whole[id]
		if c.Events != c.LastSeq-c.FirstSeq+1 {
			gapped[id] = nil
		} else {
			sc.gone.Tombstones = append(sc.gone.Tombstones,
				Tombstone{CorrelationID: id, FromSeq: c.FirstSeq, ToSeq: c.LastSeq, LastHash: c.LastHash})
		}
	}
	var last int32
	var total int64
	for _, f := range m.Files {
		if err := ctx.Err(); err != nil {
			return sc, err
		}
		obj, err := x.Objects.Open(ctx, f.Key)
		if err != nil {
			return sc, fmt.Errorf("%s: %w", f.Key, err)
		}
		sum, size, err := sha256Of(obj)
		if err == nil && (sum != f.SHA256 || size != f.Bytes) {
			err = fmt.Errorf("differs from the manifest (run `datastorage archive verify`)")
		}
		var n int64
		if err == nil {
			n, err = EachRow(obj, obj.Size(), func(r *Row) error {
				last = max(last, r.EventDate+r.RetentionDays)
				if r.LegalHold {
					sc.flagged[r.CorrelationID] = true
				}
				b := r.EventTimestamp.UTC().Truncate(time.Hour).UnixMicro()
				hourly[hourlyKey{b, r.EventType, r.EventCategory, r.EventOutcome, r.Severity}]++
				corrs[corrKey{b, r.CorrelationID, str(r.Namespace), str(r.ClusterID)}]++
				if links, ok := gapped[r.CorrelationID]; ok {
					gapped[r.CorrelationID] = append(links, seqHash{r.ChainSeq, slices.Clone(r.EventHash)})
				}
				return nil
			})
		}
		obj.Close()
		if err == nil && n != f.Rows {
			err = fmt.Errorf("%d rows, the manifest says %d", n, f.Rows)
		}
		if err != nil {
			return sc, fmt.Errorf("%s: %w", f.Key, err)
		}
		total += n
	}
	if total != m.Events {
		return sc, fmt.Errorf("the files hold %d events, the manifest says %d", total, m.Events)
	}
	sc.lastRetained = fromDays(last)
	if total == 0 {
		// A month without events keeps nothing.
		sc.lastRetained, _ = m.MonthTime()
	}
	sc.gone.Events = total
	for k, n := range hourly {
		sc.gone.Hourly = append(sc.gone.Hourly, HourlyCount{Bucket: time.UnixMicro(k.bucket).UTC(),
			EventType: k.typ, EventCategory: k.cat, EventOutcome: k.out, Severity: k.sev, Events: n})
	}
	for k, n := range corrs {
		sc.gone.Correlations = append(sc.gone.Correlations, CorrelationCount{Bucket: time.UnixMicro(k.bucket).UTC(),
			CorrelationID: k.corr, Namespace: k.ns, ClusterID: k.clust, Events: n})
	}
	for id, links := range gapped {
		slices.SortFunc(links, func(a, b seqHash) int { return cmp.Compare(a.seq, b.seq) })
		for i := 0; i < len(links); {
			j := i
			for j+1 < len(links) && links[j+1].seq == links[j].seq+1 {
				j++
			}
			sc.gone.Tombstones = append(sc.gone.Tombstones, Tombstone{CorrelationID: id,
				FromSeq: links[i].seq, ToSeq: links[j].seq, LastHash: hex.EncodeToString(links[j].hash)})
			i = j + 1
		}
	}
	// One order for every statement that updates the rollups: no two
	// transactions wait on each other's rows in opposite orders.
	slices.SortFunc(sc.gone.Hourly, func(a, b HourlyCount) int {
		return cmp.Or(a.Bucket.Compare(b.Bucket), strings.Compare(a.EventType, b.EventType),
			strings.Compare(a.EventCategory, b.EventCategory), strings.Compare(a.EventOutcome, b.EventOutcome),
			strings.Compare(a.Severity, b.Severity))
	})
	slices.SortFunc(sc.gone.Correlations, func(a, b CorrelationCount) int {
		return cmp.Or(a.Bucket.Compare(b.Bucket), strings.Compare(a.CorrelationID, b.CorrelationID),
			strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.ClusterID, b.ClusterID))
	})
	return sc, nil
}
