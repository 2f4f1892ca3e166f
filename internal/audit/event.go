package audit

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Categories lists every accepted event_category, in the order CONTRACT §2.1 gives them.
var Categories = []string{
	"gateway", "notification", "analysis", "aiagent", "signalprocessing", "workflow",
	"workflowexecution", "orchestration", "approval", "effectiveness", "actiontype",
	"apifrontend", "security", "agentsession",
}

// Outcomes lists every accepted event_outcome.
var Outcomes = []string{"success", "failure", "pending"}

// Event is one audit event as it is stored and returned (CONTRACT §2.2). Its JSON
// form is the wire form: optional strings are omitted when empty, and the two
// nullable timestamps are always present.
type Event struct {
	ID            uuid.UUID       `json:"event_id"`
	Version       string          `json:"version"`
	Type          string          `json:"event_type"`
	Timestamp     Time            `json:"event_timestamp"`
	Date          Date            `json:"event_date"`
	Category      string          `json:"event_category"`
	Action        string          `json:"event_action"`
	Outcome       string          `json:"event_outcome"`
	CorrelationID string          `json:"correlation_id"`
	Data          json.RawMessage `json:"event_data"`
	ActorType     string          `json:"actor_type,omitempty"`
	ActorID       string          `json:"actor_id,omitempty"`
	ActorIP       string          `json:"actor_ip,omitempty"`
	ResourceType  string          `json:"resource_type,omitempty"`
	ResourceID    string          `json:"resource_id,omitempty"`
	ParentID      *uuid.UUID      `json:"parent_event_id,omitempty"`
	ParentDate    *Time           `json:"parent_event_date"`
	Namespace     string          `json:"namespace,omitempty"`
	ClusterID     string          `json:"cluster_id,omitempty"`
	Severity      string          `json:"severity,omitempty"`
	DurationMS    *int32          `json:"duration_ms,omitempty"`
	ErrorCode     string          `json:"error_code,omitempty"`
	ErrorMessage  string          `json:"error_message,omitempty"`
	RetentionDays int32           `json:"retention_days"`
	IsSensitive   bool            `json:"is_sensitive"`
	Hash          string          `json:"event_hash,omitempty"`
	PreviousHash  *string         `json:"previous_event_hash,omitempty"`
	HashAlgorithm string          `json:"hash_algorithm,omitempty"`
	LegalHold     bool            `json:"legal_hold"`
	HoldReason    string          `json:"legal_hold_reason,omitempty"`
	HoldPlacedBy  string          `json:"legal_hold_placed_by,omitempty"`
	HoldPlacedAt  *Time           `json:"legal_hold_placed_at"`
	CreatedAt     Time            `json:"created_at"`
}

// ParentResolved reports whether the parent's partition date is known. Decode
// never sets ParentDate (clients' parent_event_date is ignored), so a parent is
// resolved only once the server has found it: the write path does that before
// the commit, the replay for events that were spooled unresolved.
func (e *Event) ParentResolved() bool { return e.ParentID == nil || e.ParentDate != nil }

// ResolveParent records the parent's partition date, taken from the parent itself.
func (e *Event) ResolveParent(date Date) {
	t := Time(date)
	e.ParentDate = &t
}

// wireTime is the output layout of every timestamp: RFC 3339, UTC, six
// fractional digits, because the existing clients parse exactly that.
const wireTime = "2006-01-02T15:04:05.000000Z07:00"

// Time is a timestamp stored at microsecond precision in UTC.
type Time time.Time

// NewTime truncates t to microseconds and moves it to UTC, the precision and
// zone PostgreSQL keeps, so a value reads back exactly as it was written.
func NewTime(t time.Time) Time { return Time(t.UTC().Truncate(time.Microsecond)) }

// Std returns the time.Time.
func (t Time) Std() time.Time { return time.Time(t) }

// String formats t in the wire layout.
func (t Time) String() string { return time.Time(t).UTC().Format(wireTime) }

// MarshalJSON writes the wire layout.
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(wireTime)+2)
	b = append(b, '"')
	b = time.Time(t).UTC().AppendFormat(b, wireTime)
	return append(b, '"'), nil
}

// UnmarshalJSON accepts any RFC 3339 timestamp; it is used by clients of this
// package (the SDK, the CLI), not by request validation.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	*t = NewTime(v)
	return nil
}

// Date is a calendar date in UTC (midnight), the partition key event_date.
type Date time.Time

// DateOf returns the UTC calendar date of t.
func DateOf(t time.Time) Date {
	y, m, d := t.UTC().Date()
	return Date(time.Date(y, m, d, 0, 0, 0, 0, time.UTC))
}

// Std returns the date as midnight UTC.
func (d Date) Std() time.Time { return time.Time(d) }

// String formats d as YYYY-MM-DD.
func (d Date) String() string { return time.Time(d).Format(time.DateOnly) }

// MarshalJSON writes YYYY-MM-DD.
func (d Date) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 12)
	b = append(b, '"')
	b = time.Time(d).AppendFormat(b, time.DateOnly)
	return append(b, '"'), nil
}

// UnmarshalJSON reads YYYY-MM-DD.
func (d *Date) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return err
	}
	*d = Date(v)
	return nil
}
