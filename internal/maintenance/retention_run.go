package maintenance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Retention (docs/integrity.md). An event expires when
// event_date + retention_days is before today (UTC): it was kept for at
// least retention_days whole days. Held events never expire: a row is held
// when its legal_hold flag is set or its correlation has an active hold.
//
// A month's partition is dropped (DETACH … CONCURRENTLY, then DROP) when it
// is over, every row in it is expired and none is held. PostgreSQL refuses to
// detach a partition while any row — in another month or in the same one —
// references one of its rows through the parent foreign key, so the rows that
// reference the month (those whose parent_event_date falls in it) are deleted
// first, leaves first, but only when they are expired and unheld themselves.
// If one of them must stay (not expired yet, held, or a parent of a row that
// stays), the month is not dropped: its expired, unreferenced rows are deleted
// one by one instead, and the rest waits for a later run.
//
// Any other month with expired rows (some held, some not expired yet) loses
// its expired, unheld rows that no remaining row references, in batches.
// A parent is therefore never deleted before its children.
//
// Every removed link is recorded in audit_chain_tombstones in the same
// transaction, so verify-chain tells retention from tampering.

// This file is the policy: what to look at, in which order, what to do
// when a batch times out or a month cannot go. Every statement it needs is a
// method of the store's [RetentionSession], which holds the connection (and
// with it the leader lock and the session settings) for the whole run.

// ErrBatchTimeout is returned (wrapped) by a [RetentionSession]'s deletes
// and Detach when the statement timeout of the batch, or the detach's wait,
// cut them short. The run shrinks its batches or leaves the work for later.
var ErrBatchTimeout = errors.New("retention: statement timed out")

// ErrStillReferenced is returned (wrapped) by a [RetentionSession]'s
// deletes and Detach when a row written meanwhile references what was to go
// (a foreign key violation). The run leaves that work for a later run.
var ErrStillReferenced = errors.New("retention: rows still referenced")

// PartitionRef is one of audit_events' monthly partitions as a retention
// run finds it.
type PartitionRef struct {
	Partition
	// DetachPending marks a partition a crashed or cancelled run left half
	// detached (invisible to new queries).
	DetachPending bool
}

// RowRef names an event that references a parent: the parent's key and
// its own.
type RowRef struct {
	ParentDate time.Time
	ParentID   uuid.UUID
	Date       time.Time
	ID         uuid.UUID
}

// RetentionEstimate is what a dry run counts in one partition.
type RetentionEstimate struct {
	// Total is every row of the partition.
	Total int64
	// Expired, Unheld and Deletable narrow it down: expired rows, those of
	// them not held, and those of these whose children all go too (an
	// estimate: a grandchild that stays would keep its parent, and so it).
	Expired, Unheld, Deletable int64
}

// RetentionSession runs the statements of one retention run on a
// connection of its own that holds the retention leader lock. "Expired"
// means event_date + retention_days is before today; "held" means the
// row's legal_hold flag is set or its correlation has an active hold. Every
// delete records the removed links as tombstones and subtracts the rows
// from the rollups in its own transaction. internal/store implements it.
type RetentionSession interface {
	// Close releases the leader lock and the connection.
	Close(ctx context.Context)
	// Today is the database's current UTC date.
	Today(ctx context.Context) (time.Time, error)
	// Partitions lists audit_events' monthly partitions, oldest first.
	Partitions(ctx context.Context) ([]PartitionRef, error)
	// DetachedTables names the tables that look like monthly partitions
	// but are not attached to audit_events.
	DetachedTables(ctx context.Context) ([]string, error)
	// SweepHolds flags the events written after their correlation was put
	// under hold, and returns how many.
	SweepHolds(ctx context.Context) (int64, error)
	// Assess reports whether p has expired rows, rows that are not expired,
	// and held rows.
	Assess(ctx context.Context, p Partition, today time.Time) (expired, live, held bool, err error)
	// Estimate counts what retention could delete in p (dry run).
	Estimate(ctx context.Context, p Partition, today time.Time) (RetentionEstimate, error)
	// OutsideBlockers counts the rows of other months that reference p and
	// must stay (not expired, or held).
	OutsideBlockers(ctx context.Context, p Partition, today time.Time) (int64, error)
	// References counts the rows, anywhere, whose parent is in p.
	References(ctx context.Context, p Partition) (int64, error)
	// Blocks returns p's size in heap blocks and an estimate of its rows
	// per block.
	Blocks(ctx context.Context, p Partition) (blocks, rowsPerBlock int64, err error)
	// DeleteBlocks deletes, in one transaction bounded by timeout, p's
	// expired, unheld, unreferenced rows in heap blocks [from, to).
	DeleteBlocks(ctx context.Context, p Partition, today time.Time, from, to int64, timeout time.Duration) (int64, error)
	// ReferencingRows returns up to limit rows whose parent is in p, after
	// the row after in (ParentDate, ParentID, Date, ID) order.
	ReferencingRows(ctx context.Context, p Partition, after RowRef, limit int) ([]RowRef, error)
	// DeleteIDs deletes, in one transaction bounded by timeout, those of the
	// rows ids of month's partition that are expired, unheld and
	// unreferenced.
	DeleteIDs(ctx context.Context, month, today time.Time, ids []uuid.UUID, timeout time.Duration) (int64, error)
	// LockHoldGate keeps legal holds from being placed until unlock is
	// called.
	LockHoldGate(ctx context.Context) (unlock func(), err error)
	// Held reports whether any row of p is held.
	Held(ctx context.Context, p Partition) (bool, error)
	// Detach detaches p from audit_events without blocking other months,
	// waiting at most timeout for the transactions that use the table.
	Detach(ctx context.Context, p Partition, timeout time.Duration) error
	// DetachPending reports whether p was left half detached.
	DetachPending(ctx context.Context, p Partition) (bool, error)
	// FinalizeDetach completes a detach left pending.
	FinalizeDetach(ctx context.Context, p Partition) error
	// DropDetached drops the detached partition p when every row in it is
	// expired and unheld, recording its links; otherwise, and on an error,
	// it attaches p back (waiting at most attachTimeout) and reports false.
	DropDetached(ctx context.Context, p Partition, today time.Time, attachTimeout time.Duration) (dropped bool, deleted int64, err error)
}

type retentionRun struct {
	s      RetentionSession
	opts   RetentionOptions
	log    *slog.Logger
	today  time.Time
	report *RetentionReport
	batch  int // current batch size in rows; shrinks after timeouts
}

// RunRetention runs retention once through st. It returns a report with
// Skipped set, and no error, when another replica is running it.
func RunRetention(ctx context.Context, st RetentionStore, opts RetentionOptions) (RetentionReport, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 5000
	}
	if opts.BatchTimeout <= 0 {
		opts.BatchTimeout = 30 * time.Second
	}
	if opts.DetachTimeout <= 0 {
		opts.DetachTimeout = 10 * time.Minute
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	report := RetentionReport{DryRun: opts.DryRun}
	session, leader, err := st.OpenRetention(ctx)
	if err != nil {
		return report, fmt.Errorf("retention: %w", err)
	}
	if !leader {
		return RetentionReport{Skipped: true, DryRun: opts.DryRun}, nil
	}
	defer session.Close(ctx)
	r := &retentionRun{s: session, opts: opts, log: log, report: &report, batch: opts.BatchSize}
	if err := r.run(ctx); err != nil {
		return report, fmt.Errorf("retention: %w", err)
	}
	if opts.Archive != nil {
		// Under the retention lock too: one replica runs all of retention.
		months, skipped, err := opts.Archive.ExpireArchived(ctx, opts.DryRun)
		report.Archived, report.ArchiveSkipped = months, skipped
		for _, m := range months {
			if m.Action == ArchivedExpired || m.Action == ArchivedWould {
				report.ArchivedEventsDeleted += m.Events
			}
		}
		if skipped {
			log.Info("retention of archived months skipped: the archive job is running; the next run will do it")
		}
		if err != nil {
			return report, fmt.Errorf("retention: archived months: %w", err)
		}
	}
	return report, nil
}

func (r *retentionRun) run(ctx context.Context) error {
	var err error
	if r.today, err = r.s.Today(ctx); err != nil {
		return err
	}
	r.report.Today = r.today
	parts, err := r.s.Partitions(ctx)
	if err != nil {
		return err
	}
	if err := r.warnDetached(ctx); err != nil {
		return err
	}
	if !r.opts.DryRun {
		if r.report.HoldsSwept, err = r.s.SweepHolds(ctx); err != nil {
			return err
		}
		for _, p := range parts {
			if p.DetachPending {
				if err := r.finishDetach(ctx, p.Partition); err != nil {
					return err
				}
			}
		}
	}
	for _, p := range parts {
		if p.DetachPending {
			continue
		}
		// A row expires at the earliest two days after its month starts
		// (event_date + 1 day < today).
		if !p.From.Before(r.today.AddDate(0, 0, -1)) {
			continue
		}
		if err := r.partition(ctx, p.Partition); err != nil {
			return fmt.Errorf("partition %s: %w", p.Name, err)
		}
	}
	return nil
}

// warnDetached logs the tables that look like monthly partitions but are
// not attached: a month an operator detached (to archive it), or one a
// crash left between detach and drop. Retention leaves them alone.
func (r *retentionRun) warnDetached(ctx context.Context) error {
	names, err := r.s.DetachedTables(ctx)
	if err != nil {
		return err
	}
	for _, n := range names {
		r.log.Warn("a monthly table is not attached to audit_events: its events are invisible to the service; "+
			"attach it back (ALTER TABLE audit_events ATTACH PARTITION …) or drop it", "table", n)
	}
	return nil
}

// partition applies retention to one partition.
func (r *retentionRun) partition(ctx context.Context, p Partition) error {
	expired, live, held, err := r.s.Assess(ctx, p, r.today)
	if err != nil {
		return err
	}
	if !expired {
		return nil
	}
	pr := PartitionRetention{Name: p.Name, Action: RetentionDelete}
	droppable := !live && !held && !p.To.After(r.today)
	if r.opts.DryRun {
		if err := r.dryRun(ctx, p, &pr, droppable); err != nil {
			return err
		}
		r.report.Partitions = append(r.report.Partitions, pr)
		r.report.EventsDeleted += pr.Deleted
		if pr.Dropped {
			r.report.PartitionsDropped = append(r.report.PartitionsDropped, p.Name)
		}
		return nil
	}
	if droppable {
		pr.Action = RetentionDrop
		dropped, note, err := r.dropPartition(ctx, p, &pr)
		if err != nil {
			return err
		}
		if dropped {
			r.report.Partitions = append(r.report.Partitions, pr)
			r.report.PartitionsDropped = append(r.report.PartitionsDropped, p.Name)
			return nil
		}
		pr.Note = note
	}
	n, err := r.deleteRows(ctx, p)
	pr.Deleted += n
	r.report.EventsDeleted += n
	r.report.Partitions = append(r.report.Partitions, pr)
	if err != nil {
		return err
	}
	if pr.Deleted > 0 {
		r.log.Info("retention deleted expired events", "partition", p.Name, "events", pr.Deleted, "note", pr.Note)
	}
	return nil
}

// dryRun fills pr with what a real run would do, without writing.
func (r *retentionRun) dryRun(ctx context.Context, p Partition, pr *PartitionRetention, droppable bool) error {
	est, err := r.s.Estimate(ctx, p, r.today)
	if err != nil {
		return err
	}
	pr.Expired = est.Expired
	pr.Held = est.Expired - est.Unheld
	if droppable {
		blockers, err := r.s.OutsideBlockers(ctx, p, r.today)
		if err != nil {
			return err
		}
		if blockers == 0 {
			pr.Action, pr.Dropped, pr.Deleted = RetentionDrop, true, est.Total
			return nil
		}
		pr.Note = fmt.Sprintf("not dropped: %d event(s) of other months that must stay reference it", blockers)
	}
	pr.Deleted = est.Deletable
	var notes []string
	if pr.Note != "" {
		notes = append(notes, pr.Note)
	}
	if pr.Held > 0 {
		notes = append(notes, fmt.Sprintf("%d expired event(s) kept under legal hold", pr.Held))
	}
	if n := est.Unheld - est.Deletable; n > 0 {
		notes = append(notes, fmt.Sprintf("%d expired event(s) kept as parents of events that stay", n))
	}
	pr.Note = strings.Join(notes, "; ")
	return nil
}

// deleteRows deletes the partition's expired, unheld rows that nothing
// references, walking it a block range at a time; it repeats while a pass
// deletes something, since a parent becomes deletable once its children are
// gone. It returns the number of rows deleted.
func (r *retentionRun) deleteRows(ctx context.Context, p Partition) (int64, error) {
	var total int64
	for {
		pages, rowsPerPage, err := r.s.Blocks(ctx, p)
		if err != nil {
			return total, err
		}
		var pass int64
		for start := int64(0); start < pages; {
			span := max(1, int64(r.batch)/max(1, rowsPerPage))
			n, err := r.s.DeleteBlocks(ctx, p, r.today, start, start+span, r.opts.BatchTimeout)
			timedOut := errors.Is(err, ErrBatchTimeout)
			switch {
			case err == nil:
				pass += n
				start += span
				r.batch = min(r.batch*2, r.opts.BatchSize)
			case timedOut && span > 1:
				r.batch = max(1, r.batch/2)
				r.log.Warn("retention batch timed out; shrinking it", "partition", p.Name, "batch", r.batch)
			case timedOut || errors.Is(err, ErrStillReferenced):
				// One block range that cannot be done now (a child was
				// written meanwhile, or it is too slow even alone): skip it
				// this run.
				r.log.Warn("retention skipped a block range", "partition", p.Name, "from", start, "error", err)
				start += span
			default:
				return total + pass, err
			}
		}
		total += pass
		if pass == 0 {
			return total, nil
		}
	}
}

// dropPartition removes a partition whose rows are all expired and unheld:
// first the rows that reference it, then the partition itself. It returns
// false and why when the partition has to stay.
func (r *retentionRun) dropPartition(ctx context.Context, p Partition, pr *PartitionRetention) (bool, string, error) {
	n, err := r.deleteReferencing(ctx, p)
	pr.Deleted += n
	r.report.EventsDeleted += n
	if err != nil {
		return false, "", err
	}
	blockers, err := r.s.References(ctx, p)
	if err != nil {
		return false, "", err
	}
	if blockers > 0 {
		return false, fmt.Sprintf("not dropped: %d event(s) that must stay still reference it", blockers), nil
	}

	// The gate keeps legal holds out from the last check to the drop.
	unlock, err := r.s.LockHoldGate(ctx)
	if err != nil {
		return false, "", err
	}
	defer unlock()
	held, err := r.s.Held(ctx, p)
	if err != nil {
		return false, "", err
	}
	if held {
		return false, "not dropped: a legal hold was placed meanwhile", nil
	}
	if err := r.s.Detach(ctx, p, r.opts.DetachTimeout); err != nil {
		if errors.Is(err, ErrStillReferenced) {
			// A row referencing the month was written meanwhile.
			return false, "not dropped: an event referencing it was written meanwhile", nil
		}
		if !errors.Is(err, ErrBatchTimeout) {
			return false, "", err
		}
		// Cancelled while waiting for the transactions using the table. If
		// that was in the second phase, the partition is left "detach
		// pending" (invisible to new queries): finish it now, or the next
		// run will.
		pending, err := r.s.DetachPending(ctx, p)
		if err != nil {
			return false, "", err
		}
		if !pending {
			return false, "not dropped: detaching timed out waiting for long transactions; next run retries", nil
		}
		if err := r.s.FinalizeDetach(ctx, p); err != nil {
			return false, "", fmt.Errorf("finish detaching %s (the next run retries): %w", p.Name, err)
		}
	}
	dropped, n, err := r.s.DropDetached(ctx, p, r.today, r.opts.DetachTimeout)
	if err != nil || !dropped {
		return false, "not dropped: rows written meanwhile must stay", err
	}
	pr.Deleted += n
	pr.Dropped = true
	r.report.EventsDeleted += n
	r.log.Info("retention dropped a partition", "partition", p.Name, "events", n)
	return true, "", nil
}

// finishDetach completes a detach that a crashed or cancelled run left
// pending, then drops the partition or attaches it back.
func (r *retentionRun) finishDetach(ctx context.Context, p Partition) error {
	if err := r.s.FinalizeDetach(ctx, p); err != nil {
		return fmt.Errorf("finish detaching %s: %w", p.Name, err)
	}
	dropped, n, err := r.s.DropDetached(ctx, p, r.today, r.opts.DetachTimeout)
	if err != nil {
		return fmt.Errorf("drop %s: %w", p.Name, err)
	}
	if dropped {
		r.report.EventsDeleted += n
		r.report.PartitionsDropped = append(r.report.PartitionsDropped, p.Name)
		r.report.Partitions = append(r.report.Partitions, PartitionRetention{Name: p.Name, Action: RetentionDrop, Deleted: n, Dropped: true})
	}
	return nil
}

// deleteReferencing deletes, leaves first, the expired and unheld rows
// whose parent is in partition p, wherever they are, so that p can be
// detached. Rows that must stay are left; the caller then finds p still
// referenced.
func (r *retentionRun) deleteReferencing(ctx context.Context, p Partition) (int64, error) {
	var total int64
	for {
		var pass int64
		// Keyset over the parent index; the child's own key breaks ties
		// between siblings.
		after := RowRef{ParentDate: p.From}
		for {
			refs, err := r.s.ReferencingRows(ctx, p, after, r.batch)
			if err != nil {
				return total + pass, err
			}
			byMonth := map[time.Time][]uuid.UUID{}
			var months []time.Time
			for _, ref := range refs {
				m := monthOf(ref.Date)
				if _, ok := byMonth[m]; !ok {
					months = append(months, m)
				}
				byMonth[m] = append(byMonth[m], ref.ID)
				after = ref
			}
			for _, m := range months {
				n, err := r.s.DeleteIDs(ctx, m, r.today, byMonth[m], r.opts.BatchTimeout)
				if errors.Is(err, ErrBatchTimeout) || errors.Is(err, ErrStillReferenced) {
					r.log.Warn("retention skipped a batch of referencing events", "month", m.Format("2006-01"), "error", err)
					continue
				}
				if err != nil {
					return total + pass, err
				}
				pass += n
			}
			if len(refs) < r.batch {
				break
			}
		}
		total += pass
		if pass == 0 {
			return total, nil
		}
	}
}

// monthOf returns the first day of t's month, UTC.
func monthOf(t time.Time) time.Time {
	y, m, _ := t.UTC().Date()
	return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
}
