package archive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
)

// Signed exports whose window reaches archived months (docs/archive.md,
// "Exports"). An export lists its events in chain order — correlation_id
// in byte order, chain_seq, event_id — so that each correlation's links come
// together and the export's hash_chain_verification (and verify-export)
// checks them as one chain. Every archived file is sorted that way too
// (whatever the number of files of a month, and whether a correlation spans
// several), so the export merges the files of the archived months in its
// window with PostgreSQL's cursor, one row group of each file in memory at
// a time; offset and limit apply to the merged sequence.

// OpenExport opens an export that includes the archived events of its
// window. Without archived months in the window it is PostgreSQL's export
// unchanged.
func (c ChainStore) OpenExport(ctx context.Context, f integrity.ExportFilter, batch int) (integrity.ExportCursor, error) {
	recs, err := c.exportMonths(ctx, f)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return c.Store.OpenExport(ctx, f, batch)
	}
	if batch <= 0 {
		batch = 500
	}
	inner := f
	inner.Offset, inner.Limit = 0, 0
	if f.Limit > 0 {
		inner.Limit = f.Offset + f.Limit
	}
	pg, err := c.Store.OpenExport(ctx, inner, batch)
	if err != nil {
		return nil, err
	}
	x := &mergedExport{batch: batch, skip: f.Offset, left: f.Limit, limited: f.Limit > 0}
	x.streams = append(x.streams, &stream{name: "PostgreSQL", next: cursorNext(ctx, pg), stop: func() { pg.Close(ctx) }})
	if err := c.openArchived(ctx, f, recs, x); err != nil {
		x.Close(ctx)
		return nil, err
	}
	return x, nil
}

// exportMonths returns the records of the archived (dropped) months that
// the filter's window [Since, Until] reaches.
func (c ChainStore) exportMonths(ctx context.Context, f integrity.ExportFilter) ([]Record, error) {
	all, err := c.Reader.Source.ArchiveRecords(ctx)
	if err != nil {
		return nil, fmt.Errorf("archive: records: %w", err)
	}
	var out []Record
	for _, rec := range all {
		if rec.Status != StatusDropped {
			continue
		}
		end := rec.Month.AddDate(0, 1, 0)
		if (!f.Since.IsZero() && !end.After(f.Since)) || (!f.Until.IsZero() && f.Until.Before(rec.Month)) {
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}

// openArchived adds the archived events' streams to x: a correlation's
// archived events (the lookup reads only the row groups that can hold it),
// or every file of the months.
func (c ChainStore) openArchived(ctx context.Context, f integrity.ExportFilter, recs []Record, x *mergedExport) error {
	holds := map[string]integrity.Hold{}
	list, err := c.Store.ListHolds(ctx)
	if err != nil {
		return err
	}
	for _, h := range list {
		holds[h.CorrelationID] = h
	}
	since, until := f.Since.Truncate(time.Microsecond), f.Until.Truncate(time.Microsecond)
	keep := func(corr, category string, ts time.Time) bool {
		return (f.CorrelationID == "" || corr == f.CorrelationID) &&
			(f.EventCategory == "" || category == f.EventCategory) &&
			(f.Since.IsZero() || !ts.Before(since)) &&
			(f.Until.IsZero() || !ts.After(until))
	}
	if f.CorrelationID != "" {
		events, _, err := c.Reader.Correlation(ctx, f.CorrelationID)
		if err != nil {
			return err
		}
		events = slices.DeleteFunc(events, func(e audit.Event) bool {
			return !keep(e.CorrelationID, e.Category, e.Timestamp.Std())
		})
		next, stop := iter.Pull2(func(yield func(audit.Event, error) bool) {
			for _, e := range events {
				if !yield(e, nil) {
					return
				}
			}
		})
		x.streams = append(x.streams, &stream{name: "archived " + f.CorrelationID, next: next, stop: stop})
		return nil
	}
	for _, rec := range recs {
		m, err := c.Reader.manifest(ctx, rec)
		if err != nil {
			return err
		}
		for _, file := range m.Files {
			obj, err := c.Reader.Objects.Open(ctx, file.Key)
			if err != nil {
				return fmt.Errorf("archive: %s: %w", file.Key, err)
			}
			next, stop := iter.Pull2(func(yield func(audit.Event, error) bool) {
				_, err := EachRow(obj, obj.Size(), func(r *Row) error {
					if !keep(r.CorrelationID, r.EventCategory, r.EventTimestamp) {
						return nil
					}
					e, err := r.Event()
					if err != nil {
						return err
					}
					if h, ok := holds[e.CorrelationID]; ok {
						showHold(&e, h)
					}
					if !yield(e, nil) {
						return errStopped
					}
					return nil
				})
				if err != nil && !errors.Is(err, errStopped) {
					yield(audit.Event{}, err)
				}
			})
			x.streams = append(x.streams, &stream{name: file.Key, next: next, stop: func() { stop(); obj.Close() }})
		}
	}
	return nil
}

// errStopped ends a file's read when the export stops early.
var errStopped = errors.New("archive: export stopped")

// cursorNext pulls PostgreSQL's export cursor one event at a time.
func cursorNext(ctx context.Context, cur integrity.ExportCursor) func() (audit.Event, error, bool) {
	var buf []audit.Event
	done := false
	return func() (audit.Event, error, bool) {
		if len(buf) == 0 && !done {
			b, err := cur.Next(ctx)
			if err != nil {
				return audit.Event{}, err, true
			}
			buf, done = b, len(b) == 0
		}
		if len(buf) == 0 {
			return audit.Event{}, nil, false
		}
		e := buf[0]
		buf = buf[1:]
		return e, nil, true
	}
}

// stream is one sorted source of the export: PostgreSQL's cursor or one
// archived file.
type stream struct {
	name    string
	next    func() (audit.Event, error, bool)
	stop    func()
	head    audit.Event
	has     bool
	started bool
}

// advance reads the stream's next event, and checks that the stream is in
// chain order: a merge of unsorted streams would split chains silently.
func (s *stream) advance() error {
	prev, had := s.head, s.has
	e, err, ok := s.next()
	if err != nil {
		return fmt.Errorf("archive: export: %s: %w", s.name, err)
	}
	s.head, s.has, s.started = e, ok, true
	if ok && had && exportOrder(&prev, &e) > 0 {
		return fmt.Errorf("archive: export: %s is not in (correlation_id, chain_seq) order at event %s", s.name, e.ID)
	}
	return nil
}

// exportOrder is the export's order: correlation_id in byte order (the
// files' order; store.OpenExport uses COLLATE "C" for the same), then
// chain_seq, then event_id.
func exportOrder(a, b *audit.Event) int {
	return cmp.Or(strings.Compare(a.CorrelationID, b.CorrelationID), cmp.Compare(a.ChainSeq, b.ChainSeq),
		slices.Compare(a.ID[:], b.ID[:]))
}

// mergedExport merges the streams into the export's order, then applies
// offset and limit.
type mergedExport struct {
	streams []*stream
	batch   int
	skip    int64
	left    int64
	limited bool
	closed  bool
}

// Next returns the next batch in the export's order; an empty batch ends
// the export.
func (x *mergedExport) Next(ctx context.Context) ([]audit.Event, error) {
	var out []audit.Event
	for len(out) < x.batch && (!x.limited || x.left > 0) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var least *stream
		for _, s := range x.streams {
			if !s.started {
				if err := s.advance(); err != nil {
					return nil, err
				}
			}
			if s.has && (least == nil || exportOrder(&s.head, &least.head) < 0) {
				least = s
			}
		}
		if least == nil {
			break
		}
		e := least.head
		if err := least.advance(); err != nil {
			return nil, err
		}
		if x.skip > 0 {
			x.skip--
			continue
		}
		out = append(out, e)
		x.left--
	}
	return out, nil
}

// Close stops every stream; it may be called more than once.
func (x *mergedExport) Close(ctx context.Context) {
	if x.closed {
		return
	}
	x.closed = true
	for _, s := range x.streams {
		s.stop()
	}
}
