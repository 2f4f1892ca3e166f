package query

import (
	"errors"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/failure"
)

// The types below are the read side's vocabulary. The store implements
// [Store], [AggregateStore] and [TimelineStore] in these terms, so a reader
// of this package never needs the store's, and the store imports this
// package, not the other way round.

// ErrNotFound is returned (possibly wrapped) by the read stores' GetEvent
// and by [Service.Get] and [Timelines.Get] when no event matches. Test with
// errors.Is. Its class is failure.Data: asking again gives the same answer.
var ErrNotFound = failure.Mark(errors.New("not found"), failure.Data)

// EventFilter selects events. Zero values mean "no condition"; all conditions
// must hold.
type EventFilter struct {
	CorrelationID string
	EventType     string
	EventCategory string
	EventOutcome  string
	Severity      string
	Namespace     string
	ClusterID     string
	ActorID       string
	ResourceType  string
	ResourceID    string
	// Since and Until bound event_timestamp, both inclusive.
	Since, Until time.Time
	// DetailKey and DetailValue match a top-level key of event_data, compared
	// as text. The caller checks DetailKey against ^[a-zA-Z0-9_]+$.
	DetailKey, DetailValue string
}

// Keyset is a position in the (event_timestamp, event_id) order.
type Keyset struct {
	Timestamp time.Time
	ID        uuid.UUID
}

// Page says which slice of the ordered matches to return.
type Page struct {
	Limit  int
	Offset int
	// After continues strictly after this position (in the page's order).
	After *Keyset
	// Ascending orders oldest first; the default is newest first.
	Ascending bool
}

// Window is a closed interval of event_timestamp. Every aggregation is
// bounded by one, and it also bounds event_date so whole months are pruned.
type Window struct {
	From, To time.Time
}

// OutcomeCounts are the events of a selection by outcome.
type OutcomeCounts struct {
	Successes, Failures, Pending int64
}

// SuccessFilter selects the events of a success rate: exactly one field is set.
type SuccessFilter struct {
	EventType, EventCategory, WorkflowID string
}

// NamespaceCount is one row of the by-namespace aggregation.
type NamespaceCount struct {
	Namespace    string `json:"namespace"`
	Remediations int64  `json:"remediations"`
	Events       int64  `json:"events"`
}

// TrendBucket is one bucket of the trend aggregation as the store counts it;
// [TrendPoint] is its form in the answer.
type TrendBucket struct {
	Bucket   time.Time
	Count    int64
	Failures int64
}

// GroupColumns are the columns a counts aggregation may group by. The store
// keeps the first four in its hourly rollup and the last two in its
// per-correlation rollup, so their order matters.
var GroupColumns = []string{"event_category", "event_type", "event_outcome", "severity", "namespace", "cluster_id"}

// Group is one group of a counts aggregation: the values of the grouped
// columns (nil for NULL) and how many events have them.
type Group struct {
	Keys  []*string
	Count int64
}
