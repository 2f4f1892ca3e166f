package query

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
)

// MaxTimelineEvents bounds one timeline. A remediation has tens of events; a
// correlation with more than this is a client bug, and the answer says it was
// cut rather than growing without limit.
const MaxTimelineEvents = 5000

// TimelineStore is the part of the store a timeline reads.
type TimelineStore interface {
	CorrelationEvents(ctx context.Context, correlationID string, limit int) ([]audit.Event, error)
}

// TimelineNode is an event with the events that name it as their parent.
type TimelineNode struct {
	audit.Event
	// OffsetMS is the time from the start of the remediation to this event (ours).
	OffsetMS int64           `json:"offset_ms"`
	Children []*TimelineNode `json:"children"`
}

// Timeline is one remediation's events as a tree in causal order.
type Timeline struct {
	CorrelationID string          `json:"correlation_id"`
	Events        []*TimelineNode `json:"events"`
	StartedAt     audit.Time      `json:"started_at"`
	EndedAt       audit.Time      `json:"ended_at"`
	DurationMS    int64           `json:"duration_ms"`
	// Outcome is the outcome of the latest event: where the remediation stands.
	Outcome string `json:"outcome"`
	// EventCount is the number of events in the tree (ours).
	EventCount int `json:"event_count"`
	// Truncated says the correlation has more than MaxTimelineEvents events and
	// only the earliest are shown (ours).
	Truncated bool `json:"truncated,omitempty"`
}

// Timelines builds timelines.
type Timelines struct {
	store TimelineStore
}

// NewTimelines returns a Timelines reading from st.
func NewTimelines(st TimelineStore) *Timelines { return &Timelines{store: st} }

// Get returns the timeline of a correlation, or an error wrapping
// store.ErrNotFound when it has no events.
func (t *Timelines) Get(ctx context.Context, correlationID string) (*Timeline, error) {
	events, err := t.store.CorrelationEvents(ctx, correlationID, MaxTimelineEvents+1)
	if err != nil {
		return nil, fmt.Errorf("query: timeline: %w", err)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("query: timeline of %q: %w", correlationID, store.ErrNotFound)
	}
	tl := BuildTimeline(correlationID, events[:min(len(events), MaxTimelineEvents)])
	tl.Truncated = len(events) > MaxTimelineEvents
	return tl, nil
}

// BuildTimeline nests events (in time order) under their parents. An event
// whose parent is not among them is a root. Siblings keep time order, whatever
// order the events arrived in.
func BuildTimeline(correlationID string, events []audit.Event) *Timeline {
	start := events[0].Timestamp.Std()
	nodes := make(map[[16]byte]*TimelineNode, len(events))
	ordered := make([]*TimelineNode, len(events))
	for i := range events {
		n := &TimelineNode{Event: events[i], Children: []*TimelineNode{}}
		n.OffsetMS = n.Timestamp.Std().Sub(start).Milliseconds()
		nodes[n.ID] = n
		ordered[i] = n
	}
	tl := &Timeline{CorrelationID: correlationID, Events: []*TimelineNode{}, EventCount: len(events)}
	for _, n := range ordered {
		if n.ParentID != nil {
			if p, ok := nodes[*n.ParentID]; ok {
				p.Children = append(p.Children, n)
				continue
			}
		}
		tl.Events = append(tl.Events, n)
	}
	last := events[len(events)-1]
	tl.StartedAt, tl.EndedAt = events[0].Timestamp, last.Timestamp
	tl.DurationMS = last.Timestamp.Std().Sub(start).Milliseconds()
	tl.Outcome = last.Outcome
	return tl
}

// OutlineStore is what a streamed timeline reads (*store.Store is one).
type OutlineStore interface {
	CorrelationOutline(ctx context.Context, correlationID string, limit int) ([]audit.Event, error)
	EachCorrelationEvent(ctx context.Context, correlationID string, ids []uuid.UUID, from, to time.Time,
		each func(*audit.Event) error) error
}

// ErrNoOutline is returned by Outline and Fill when the Timelines' store
// cannot read outlines; Get still works.
var ErrNoOutline = errors.New("query: the store cannot read timeline outlines")

// Outline returns the timeline of a correlation as Get does, but its nodes
// hold only what shapes the tree (event_id, event_date, event_timestamp,
// parent_event_id, event_outcome): the full events are read by Fill, a few
// at a time, while the response is written (issue 18 item 6: 5,000 events
// of 256 KiB are 1.3 GB held at once otherwise).
func (t *Timelines) Outline(ctx context.Context, correlationID string) (*Timeline, error) {
	st, ok := t.store.(OutlineStore)
	if !ok {
		return nil, ErrNoOutline
	}
	events, err := st.CorrelationOutline(ctx, correlationID, MaxTimelineEvents+1)
	if err != nil {
		return nil, fmt.Errorf("query: timeline: %w", err)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("query: timeline of %q: %w", correlationID, store.ErrNotFound)
	}
	tl := BuildTimeline(correlationID, events[:min(len(events), MaxTimelineEvents)])
	tl.Truncated = len(events) > MaxTimelineEvents
	return tl, nil
}

// Fill reads the full events of nodes (from an Outline of correlationID)
// and hands each node with its event to each, in the order of nodes. It
// holds the events of nodes at once: callers pass a few at a time.
func (t *Timelines) Fill(ctx context.Context, correlationID string, nodes []*TimelineNode,
	each func(*TimelineNode, *audit.Event) error) error {
	st, ok := t.store.(OutlineStore)
	if !ok {
		return ErrNoOutline
	}
	if len(nodes) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(nodes))
	from, to := nodes[0].Date.Std(), nodes[0].Date.Std()
	for i, n := range nodes {
		ids[i] = n.ID
		from, to = minTime(from, n.Date.Std()), maxTime(to, n.Date.Std())
	}
	type key struct {
		id   uuid.UUID
		date time.Time
	}
	full := make(map[key]*audit.Event, len(nodes))
	err := st.EachCorrelationEvent(ctx, correlationID, ids, from, to, func(e *audit.Event) error {
		c := *e
		full[key{c.ID, c.Date.Std()}] = &c
		return nil
	})
	if err != nil {
		return fmt.Errorf("query: timeline events: %w", err)
	}
	for _, n := range nodes {
		e, ok := full[key{n.ID, n.Date.Std()}]
		if !ok {
			// Outline and Fill are two reads: retention may have removed it
			// in between.
			return fmt.Errorf("query: timeline event %s: %w", n.ID, store.ErrNotFound)
		}
		if err := each(n, e); err != nil {
			return err
		}
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
