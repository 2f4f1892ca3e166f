package archive

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
)

// Legal holds on archived events (docs/archive.md, "Legal holds"). A hold
// is a row of legal_holds, by correlation; in PostgreSQL the correlation's
// rows also carry a flag, which the files cannot (they are signed and
// immutable). The hold's row is what protects archived events: retention
// of archived months (expire.go) keeps a month while any of its
// correlations has an active hold, and reads of archived events show the
// hold from that row.

// HoldStore places and releases holds that count archived events.
// internal/store implements it.
type HoldStore interface {
	// PlaceHoldArchived is integrity.Store's PlaceHold for a correlation
	// with archived archived events in months: ErrMonthChanged (wrapped)
	// when one of those months is no longer archived by the time the hold
	// is placed (retention began removing it).
	PlaceHoldArchived(ctx context.Context, correlationID, reason, placedBy string, at time.Time,
		archived int64, months []time.Time) (integrity.Hold, error)
	// ReleaseHoldArchived is ReleaseHold, counting archived events too.
	ReleaseHoldArchived(ctx context.Context, correlationID, reason, releasedBy string, at time.Time,
		archived int64) (integrity.HoldRelease, error)
}

// HoldLookup finds a correlation's active hold. internal/store implements
// it.
type HoldLookup interface {
	// ActiveHold returns the correlation's active hold, ok false when it
	// has none.
	ActiveHold(ctx context.Context, correlationID string) (h integrity.Hold, ok bool, err error)
}

// placeAttempts bounds the retries of a hold whose archived months
// changed between counting and placing: each retry follows a month that
// retention removed, so a second attempt finds none of them changed
// unless another month went in between.
const placeAttempts = 3

// PlaceHold places a hold on a correlation whose events may be in
// PostgreSQL, in the archive, or both: an archived correlation is held
// like any other (without Holds, archived events are not counted and a
// correlation that is only archived is not found).
func (c ChainStore) PlaceHold(ctx context.Context, correlationID, reason, placedBy string, at time.Time) (integrity.Hold, error) {
	if c.Holds == nil {
		return c.Store.PlaceHold(ctx, correlationID, reason, placedBy, at)
	}
	for attempt := 1; ; attempt++ {
		n, months, err := c.archivedCount(ctx, correlationID)
		if err != nil {
			// The archive is unreachable: a hold is by correlation, so it
			// protects the archived events all the same; it is placed when
			// PostgreSQL has events of the correlation (counting only
			// those), and only a correlation that may be only archived
			// waits for the archive.
			h, perr := c.Holds.PlaceHoldArchived(ctx, correlationID, reason, placedBy, at, 0, nil)
			if errors.Is(perr, integrity.ErrNotFound) {
				return integrity.Hold{}, err
			}
			return h, perr
		}
		h, err := c.Holds.PlaceHoldArchived(ctx, correlationID, reason, placedBy, at, n, months)
		if errors.Is(err, ErrMonthChanged) && attempt < placeAttempts {
			continue
		}
		return h, err
	}
}

// ReleaseHold releases the hold, counting the archived events released.
func (c ChainStore) ReleaseHold(ctx context.Context, correlationID, reason, releasedBy string, at time.Time) (integrity.HoldRelease, error) {
	if c.Holds == nil {
		return c.Store.ReleaseHold(ctx, correlationID, reason, releasedBy, at)
	}
	// The archive unreachable does not keep a hold in force: the release
	// then counts only PostgreSQL's events.
	n, _, err := c.archivedCount(ctx, correlationID)
	if err != nil {
		n = 0
	}
	return c.Holds.ReleaseHoldArchived(ctx, correlationID, reason, releasedBy, at, n)
}

// ListHolds lists the active holds, each counting its archived events
// too (one archive lookup per hold; holds are few).
func (c ChainStore) ListHolds(ctx context.Context) ([]integrity.Hold, error) {
	holds, err := c.Store.ListHolds(ctx)
	if err != nil {
		return nil, err
	}
	for i := range holds {
		n, _, err := c.archivedCount(ctx, holds[i].CorrelationID)
		if err != nil {
			return nil, err
		}
		holds[i].EventsAffected += n
	}
	return holds, nil
}

// archivedCount counts a correlation's archived events and names the
// months they are in.
func (c ChainStore) archivedCount(ctx context.Context, correlationID string) (int64, []time.Time, error) {
	events, _, err := c.Reader.Correlation(ctx, correlationID)
	if err != nil {
		return 0, nil, fmt.Errorf("archive: events of %q: %w", correlationID, err)
	}
	var months []time.Time
	for _, e := range events {
		d := e.Date.Std()
		m := time.Date(d.Year(), d.Month(), 1, 0, 0, 0, 0, time.UTC)
		if !slices.ContainsFunc(months, m.Equal) {
			months = append(months, m)
		}
	}
	return int64(len(events)), months, nil
}

// markHeld shows a correlation's active hold on its archived events, as
// PostgreSQL's flag shows it on the others. The hold fields are outside
// the hash, so the events still verify.
func (r *Reader) markHeld(ctx context.Context, correlationID string, events []audit.Event) error {
	if r.Holds == nil || len(events) == 0 {
		return nil
	}
	h, ok, err := r.Holds.ActiveHold(ctx, correlationID)
	if err != nil || !ok {
		return err
	}
	for i := range events {
		showHold(&events[i], h)
	}
	return nil
}

// showHold fills an archived event's hold fields from its correlation's
// active hold h.
func showHold(e *audit.Event, h integrity.Hold) {
	at := audit.NewTime(h.PlacedAt)
	e.LegalHold, e.HoldReason, e.HoldPlacedBy, e.HoldPlacedAt = true, h.Reason, h.PlacedBy, &at
}
