package archive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/query"
)

// ChainStore is an integrity.Store whose chains include their archived
// links: verify-chain of a correlation whose first months were archived
// reads those links from the files (only the row groups that can hold them)
// with the links still in PostgreSQL, and checks the whole chain. The
// archived links mostly come first, but not always: a late event stamped
// into an archived month, or an event held in PostgreSQL, sits between
// links of the other side.
type ChainStore struct {
	integrity.Store
	Reader *Reader
	// Holds, when set, lets legal holds be placed on archived
	// correlations and count their archived events (holds.go).
	Holds HoldStore
}

// ReadChain reads the archived links and PostgreSQL's in chain order.
func (c ChainStore) ReadChain(ctx context.Context, correlationID string,
	begin func(integrity.ChainState) error, each func(*audit.Event) error) (int64, error) {
	return c.ReadChainAfter(ctx, correlationID, func(st integrity.ChainState) (int64, error) {
		return 0, begin(st)
	}, each)
}

// ReadChainAfter reads the archived links after the checkpoint and
// PostgreSQL's, merged in chain_seq order: a chain's links need not lie
// in month order (a late event stamped into an earlier month, archived or
// not, takes the chain's next chain_seq there).
func (c ChainStore) ReadChainAfter(ctx context.Context, correlationID string,
	begin func(integrity.ChainState) (int64, error), each func(*audit.Event) error) (int64, error) {
	archived, _, err := c.Reader.Correlation(ctx, correlationID)
	if err != nil {
		return 0, fmt.Errorf("archive: chain of %q: %w", correlationID, err)
	}
	slices.SortStableFunc(archived, func(a, b audit.Event) int { return cmp.Compare(a.ChainSeq, b.ChainSeq) })
	var after, sent int64
	began, next := false, 0
	// emitBefore sends the archived links after the checkpoint whose
	// chain_seq is below limit, those not sent yet.
	emitBefore := func(limit int64) error {
		for ; next < len(archived) && archived[next].ChainSeq < limit; next++ {
			if archived[next].ChainSeq <= after {
				continue
			}
			sent++
			if err := each(&archived[next]); err != nil {
				return err
			}
		}
		return nil
	}
	n, err := c.Store.ReadChainAfter(ctx, correlationID, func(st integrity.ChainState) (int64, error) {
		began = true
		a, err := begin(st)
		after = a
		return a, err
	}, func(e *audit.Event) error {
		if err := emitBefore(e.ChainSeq); err != nil {
			return err
		}
		return each(e)
	})
	switch {
	case errors.Is(err, integrity.ErrNotFound) && began && len(archived) > 0:
		// Every link of the chain is archived.
		if err := emitBefore(math.MaxInt64); err != nil {
			return sent, err
		}
		if sent == 0 {
			return 0, err
		}
		return sent, nil
	case err != nil:
		return n + sent, err
	}
	if err := emitBefore(math.MaxInt64); err != nil {
		return n + sent, err
	}
	return n + sent, nil
}

// TimelineSource is what TimelineStore wraps (*store.Store is one).
type TimelineSource interface {
	query.TimelineStore
	query.OutlineStore
}

// TimelineStore is a query.TimelineStore (and OutlineStore, so timelines
// still stream) whose correlations include their archived events.
type TimelineStore struct {
	TimelineSource
	Reader *Reader
}

// CorrelationEvents returns the archived events, then PostgreSQL's, in
// (event_timestamp, chain_seq) order, at most limit.
func (t TimelineStore) CorrelationEvents(ctx context.Context, correlationID string, limit int) ([]audit.Event, error) {
	archived, _, err := t.Reader.Correlation(ctx, correlationID)
	if err != nil {
		return nil, fmt.Errorf("archive: timeline of %q: %w", correlationID, err)
	}
	live, err := t.TimelineSource.CorrelationEvents(ctx, correlationID, limit)
	if err != nil || len(archived) == 0 {
		return live, err
	}
	return mergeEvents(archived, live, limit), nil
}

// CorrelationOutline is CorrelationEvents for the outline of a streamed
// timeline: the archived events come whole (they are read whole anyway).
func (t TimelineStore) CorrelationOutline(ctx context.Context, correlationID string, limit int) ([]audit.Event, error) {
	archived, _, err := t.Reader.Correlation(ctx, correlationID)
	if err != nil {
		return nil, fmt.Errorf("archive: timeline of %q: %w", correlationID, err)
	}
	live, err := t.TimelineSource.CorrelationOutline(ctx, correlationID, limit)
	if err != nil || len(archived) == 0 {
		return live, err
	}
	return mergeEvents(archived, live, limit), nil
}

// EachCorrelationEvent reads the archive only when [from, to] reaches an
// archived month.
func (t TimelineStore) EachCorrelationEvent(ctx context.Context, correlationID string, ids []uuid.UUID, from, to time.Time,
	each func(*audit.Event) error) error {
	months, err := t.Reader.MonthsIn(ctx, from, to.AddDate(0, 0, 1))
	if err != nil {
		return fmt.Errorf("archive: timeline of %q: %w", correlationID, err)
	}
	if len(months) > 0 {
		archived, _, err := t.Reader.Correlation(ctx, correlationID)
		if err != nil {
			return fmt.Errorf("archive: timeline of %q: %w", correlationID, err)
		}
		for i := range archived {
			if slices.Contains(ids, archived[i].ID) {
				if err := each(&archived[i]); err != nil {
					return err
				}
			}
		}
	}
	return t.TimelineSource.EachCorrelationEvent(ctx, correlationID, ids, from, to, each)
}

// mergeEvents merges archived and live events in (event_timestamp,
// chain_seq) order, an event in both (a restored month) once.
func mergeEvents(archived, live []audit.Event, limit int) []audit.Event {
	seen := make(map[[16]byte]bool, len(live))
	for _, e := range live {
		seen[e.ID] = true
	}
	out := make([]audit.Event, 0, len(archived)+len(live))
	for _, e := range archived {
		if !seen[e.ID] {
			out = append(out, e)
		}
	}
	out = append(out, live...)
	slices.SortStableFunc(out, func(a, b audit.Event) int {
		if c := a.Timestamp.Std().Compare(b.Timestamp.Std()); c != 0 {
			return c
		}
		return cmp.Compare(a.ChainSeq, b.ChainSeq)
	})
	return out[:min(len(out), limit)]
}
