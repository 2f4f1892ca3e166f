package client

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Category is an event_category. The server accepts only the constants below.
type Category string

// The event categories the server accepts.
const (
	CategoryGateway           Category = "gateway"
	CategoryNotification      Category = "notification"
	CategoryAnalysis          Category = "analysis"
	CategoryAIAgent           Category = "aiagent"
	CategorySignalProcessing  Category = "signalprocessing"
	CategoryWorkflow          Category = "workflow"
	CategoryWorkflowExecution Category = "workflowexecution"
	CategoryOrchestration     Category = "orchestration"
	CategoryApproval          Category = "approval"
	CategoryEffectiveness     Category = "effectiveness"
	CategoryActionType        Category = "actiontype"
	CategoryAPIFrontend       Category = "apifrontend"
	CategorySecurity          Category = "security"
	CategoryAgentSession      Category = "agentsession"
)

// Outcome is an event_outcome.
type Outcome string

// The event outcomes the server accepts.
const (
	OutcomeSuccess Outcome = "success"
	OutcomeFailure Outcome = "failure"
	OutcomePending Outcome = "pending"
)

// Event is an audit event: the same type as a service writes it and as the
// server returns it (CONTRACT §1).
//
// Writing: Version, Type, Category, Action, Outcome and CorrelationID are
// required. The write methods and the emitter fill in, when left zero, ID (a
// new UUIDv7, which makes the write idempotent), Timestamp (now) and Data (an
// empty object). Empty optional fields are left out of the request and the
// server applies its defaults (actor_type "service", severity "info",
// retention 2555 days, …). The fields the server assigns (from ParentEventDate
// on) are never sent: a read event can be written again as it is.
//
// Reading: every field is filled as stored, the server's defaults applied, and
// Data holds the stored object as a [json.RawMessage] (see [Event.DecodeData]).
//
// Field names drop the "event_" of their JSON keys.
type Event struct {
	// ID makes the write idempotent: the same id and timestamp are
	// stored once however often they are sent.
	ID            uuid.UUID `json:"event_id,omitzero"`
	Version       string    `json:"version"`
	Type          string    `json:"event_type"`
	Timestamp     time.Time `json:"event_timestamp"`
	Category      Category  `json:"event_category"`
	Action        string    `json:"event_action"`
	Outcome       Outcome   `json:"event_outcome"`
	CorrelationID string    `json:"correlation_id"`
	// Data is any value that encodes as a JSON object (a map, a struct,
	// json.RawMessage); nil sends {}. A read event's Data is the stored
	// object as a json.RawMessage.
	Data any `json:"event_data"`

	ActorType     string     `json:"actor_type,omitempty"`
	ActorID       string     `json:"actor_id,omitempty"`
	ActorIP       string     `json:"actor_ip,omitempty"`
	ResourceType  string     `json:"resource_type,omitempty"`
	ResourceID    string     `json:"resource_id,omitempty"`
	ParentEventID *uuid.UUID `json:"parent_event_id,omitempty"`
	Namespace     string     `json:"namespace,omitempty"`
	ClusterID     string     `json:"cluster_id,omitempty"`
	Severity      string     `json:"severity,omitempty"`
	// DurationMS is 0 … 2^31−1; nil leaves it out.
	DurationMS   *int64 `json:"duration_ms,omitempty"`
	ErrorCode    string `json:"error_code,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
	// RetentionDays is 1 … 2555; 0 means the server default when writing.
	RetentionDays int  `json:"retention_days,omitempty"`
	IsSensitive   bool `json:"is_sensitive,omitempty"`

	// The fields below are assigned by the server: filled on read, never
	// sent.

	// ParentEventDate is the partition date of the parent event.
	ParentEventDate *time.Time `json:"parent_event_date,omitempty"`
	// Date is the UTC date of Timestamp (YYYY-MM-DD), the partition key.
	Date          string `json:"event_date"`
	Hash          string `json:"event_hash"`
	PreviousHash  string `json:"previous_event_hash"`
	HashAlgorithm string `json:"hash_algorithm"`
	// ChainSeq is the event's position in its correlation's hash chain.
	ChainSeq          int64      `json:"chain_seq,omitempty"`
	LegalHold         bool       `json:"legal_hold"`
	LegalHoldReason   string     `json:"legal_hold_reason,omitempty"`
	LegalHoldPlacedBy string     `json:"legal_hold_placed_by,omitempty"`
	LegalHoldPlacedAt *time.Time `json:"legal_hold_placed_at,omitempty"`
	// CreatedAt is the commit time.
	CreatedAt time.Time `json:"created_at"`
}

// UnmarshalJSON reads an event, keeping event_data as the json.RawMessage
// it was sent as (decoding it into any would turn its numbers into float64
// and lose large integers).
func (e *Event) UnmarshalJSON(b []byte) error {
	type plain Event // no methods: no recursion
	var w struct {
		*plain
		Data json.RawMessage `json:"event_data"`
	}
	w.plain = (*plain)(e)
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	e.Data = nil
	if w.Data != nil {
		e.Data = w.Data
	}
	return nil
}

// DecodeData decodes Data into v: a read event's stored object, or the
// value a writer set.
func (e *Event) DecodeData(v any) error {
	raw, ok := e.Data.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(e.Data); err != nil {
			return err
		}
	}
	return json.Unmarshal(raw, v)
}

// eventRequest is the request body of one event (AuditEventRequest): the
// fields a client may send, without those the server assigns.
type eventRequest struct {
	ID            uuid.UUID  `json:"event_id,omitzero"`
	Version       string     `json:"version"`
	Type          string     `json:"event_type"`
	Timestamp     time.Time  `json:"event_timestamp"`
	Category      Category   `json:"event_category"`
	Action        string     `json:"event_action"`
	Outcome       Outcome    `json:"event_outcome"`
	CorrelationID string     `json:"correlation_id"`
	Data          any        `json:"event_data"`
	ActorType     string     `json:"actor_type,omitempty"`
	ActorID       string     `json:"actor_id,omitempty"`
	ActorIP       string     `json:"actor_ip,omitempty"`
	ResourceType  string     `json:"resource_type,omitempty"`
	ResourceID    string     `json:"resource_id,omitempty"`
	ParentEventID *uuid.UUID `json:"parent_event_id,omitempty"`
	Namespace     string     `json:"namespace,omitempty"`
	ClusterID     string     `json:"cluster_id,omitempty"`
	Severity      string     `json:"severity,omitempty"`
	DurationMS    *int64     `json:"duration_ms,omitempty"`
	ErrorCode     string     `json:"error_code,omitempty"`
	ErrorMessage  string     `json:"error_message,omitempty"`
	RetentionDays int        `json:"retention_days,omitempty"`
	IsSensitive   bool       `json:"is_sensitive,omitempty"`
}

// prepare returns the request body of e, with the fields the SDK defaults
// filled in.
func (e Event) prepare(now time.Time) (eventRequest, error) {
	if e.ID == uuid.Nil {
		id, err := uuid.NewV7()
		if err != nil {
			return eventRequest{}, err
		}
		e.ID = id
	}
	if e.Timestamp.IsZero() {
		e.Timestamp = now
	}
	if e.Data == nil {
		e.Data = struct{}{}
	}
	return eventRequest{
		ID: e.ID, Version: e.Version, Type: e.Type, Timestamp: e.Timestamp, Category: e.Category,
		Action: e.Action, Outcome: e.Outcome, CorrelationID: e.CorrelationID, Data: e.Data,
		ActorType: e.ActorType, ActorID: e.ActorID, ActorIP: e.ActorIP, ResourceType: e.ResourceType,
		ResourceID: e.ResourceID, ParentEventID: e.ParentEventID, Namespace: e.Namespace,
		ClusterID: e.ClusterID, Severity: e.Severity, DurationMS: e.DurationMS, ErrorCode: e.ErrorCode,
		ErrorMessage: e.ErrorMessage, RetentionDays: e.RetentionDays, IsSensitive: e.IsSensitive,
	}, nil
}

// WriteResult is the answer to [Client.WriteEvent].
type WriteResult struct {
	ID uuid.UUID
	// Timestamp is the stored timestamp (UTC, microseconds).
	Timestamp time.Time
	// Queued is true when the server answered 202: PostgreSQL could not take
	// the event right now and it is durably queued in the server's spool; it
	// will be stored exactly once, under ID.
	Queued  bool
	Message string
}

// BatchResult is the answer to [Client.WriteEvents]: every event is
// committed or durably queued.
type BatchResult struct {
	IDs     []uuid.UUID `json:"event_ids"`
	Message string      `json:"message"`
}

// Order is the sort direction of a query.
type Order string

// Sort directions on (event_timestamp, event_id).
const (
	OrderDesc Order = "desc"
	OrderAsc  Order = "asc"
)

// Query selects events for [Client.QueryEvents] and [Client.Events]. Empty
// fields do not filter; the filters combine with AND.
type Query struct {
	CorrelationID string
	Type          string
	Category      Category
	Outcome       Outcome
	Severity      string
	Namespace     string
	ClusterID     string
	ActorID       string
	ResourceType  string
	ResourceID    string

	// Since and Until bound event_timestamp, inclusive. Each is "<n>d"
	// (days ago), a Go duration ("24h": that long ago), an RFC 3339
	// timestamp, "YYYY-MM-DDTHH:MM:SS" (UTC) or "YYYY-MM-DD" (UTC midnight).
	// [TimeBound] formats a time.Time.
	Since, Until string

	// DetailKey and DetailValue match a top-level key of event_data
	// (compared as text); both or neither.
	DetailKey, DetailValue string

	// Limit is the page size, 1 … 1000 (0: the server's default, 50).
	Limit int
	// Offset skips rows (compatibility; cost grows with depth). Not with Cursor.
	Offset int
	// Cursor is a Pagination.NextCursor of an earlier page.
	Cursor string
	Order  Order
}

// TimeBound formats t for Query.Since and Query.Until.
func TimeBound(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// EventPage is one page of a query.
type EventPage struct {
	Data       []Event    `json:"data"`
	Pagination Pagination `json:"pagination"`
	// Raw is the response body as received (for tools that print it).
	Raw json.RawMessage `json:"-"`
}

// Pagination describes where a page sits in the result.
type Pagination struct {
	Limit  int   `json:"limit"`
	Offset int   `json:"offset"`
	Total  int64 `json:"total"`
	// TotalIsExact is false when Total is only a lower bound (an exact count
	// would have been costly).
	TotalIsExact bool `json:"total_is_exact"`
	HasMore      bool `json:"has_more"`
	// NextCursor fetches the next page; set exactly when HasMore.
	NextCursor string `json:"next_cursor,omitempty"`
}

// Timeline is one remediation's events as a causal tree.
type Timeline struct {
	CorrelationID string          `json:"correlation_id"`
	Events        []TimelineEvent `json:"events"`
	StartedAt     time.Time       `json:"started_at"`
	EndedAt       time.Time       `json:"ended_at"`
	DurationMS    int64           `json:"duration_ms"`
	// Outcome is the outcome of the latest event.
	Outcome Outcome `json:"outcome"`
	// EventCount is the number of events in the tree.
	EventCount int `json:"event_count,omitempty"`
	// Truncated is true when the correlation has more events than the
	// server puts in one tree (5,000): only the earliest are here.
	Truncated bool `json:"truncated,omitempty"`
	// Raw is the response body as received (for tools that print it).
	Raw json.RawMessage `json:"-"`
}

// TimelineEvent is an event with the events caused by it.
type TimelineEvent struct {
	Event
	// OffsetMS is the milliseconds from the remediation's first event.
	OffsetMS int64           `json:"offset_ms,omitempty"`
	Children []TimelineEvent `json:"children"`
}

// UnmarshalJSON reads the event and its tree. It is needed because the
// embedded Event's UnmarshalJSON would otherwise be promoted and read only
// the event.
func (t *TimelineEvent) UnmarshalJSON(b []byte) error {
	if err := t.Event.UnmarshalJSON(b); err != nil {
		return err
	}
	var tree struct {
		OffsetMS int64           `json:"offset_ms"`
		Children []TimelineEvent `json:"children"`
	}
	if err := json.Unmarshal(b, &tree); err != nil {
		return err
	}
	t.OffsetMS, t.Children = tree.OffsetMS, tree.Children
	return nil
}

// Window is the time window of an aggregation (default: the last 7 days).
// The forms are those of Query.Since.
type Window struct {
	Since, Until string
}

// SuccessRateQuery selects the events of a success rate: exactly one of
// Type, Category or WorkflowID.
type SuccessRateQuery struct {
	Window
	Type     string
	Category Category
	// WorkflowID matches event_data.workflow_id.
	WorkflowID string
	// MinSamples is the sample count needed for MinSamplesMet (0: server default 5).
	MinSamples int
}

// SuccessRate is the success-rate aggregation.
type SuccessRate struct {
	Total     int64 `json:"total"`
	Successes int64 `json:"successes"`
	Failures  int64 `json:"failures"`
	// SuccessRate is Successes/Total as a fraction 0 … 1.
	SuccessRate float64 `json:"success_rate"`
	// Confidence is insufficient_data, low, medium or high.
	Confidence    string `json:"confidence"`
	MinSamplesMet bool   `json:"min_samples_met"`
}

// NamespaceCount is one namespace of the by-namespace aggregation.
type NamespaceCount struct {
	Namespace string `json:"namespace"`
	// Remediations counts distinct correlation ids.
	Remediations int64 `json:"remediations"`
	Events       int64 `json:"events"`
}

// SeverityCount is one severity of the by-severity aggregation.
type SeverityCount struct {
	Severity string `json:"severity"`
	Count    int64  `json:"count"`
}

// TrendQuery selects a trend: Period "7d", "30d" or "90d" ending at Until
// (default now), in buckets of Interval "hour" or "day".
type TrendQuery struct {
	Until    string
	Period   string
	Interval string
}

// Trend is the trend aggregation.
type Trend struct {
	Period     string       `json:"period"`
	Interval   string       `json:"interval"`
	DataPoints []TrendPoint `json:"data_points"`
}

// TrendPoint is one bucket of a trend; empty buckets are present with 0.
type TrendPoint struct {
	Bucket   time.Time `json:"bucket"`
	Count    int64     `json:"count"`
	Failures int64     `json:"failures"`
}

// CountsQuery groups event counts by some of event_category, event_type,
// event_outcome, severity, namespace, cluster_id.
type CountsQuery struct {
	Window
	GroupBy []string
}

// CountGroup is one group of the counts aggregation: the values of the
// requested keys (missing or null ones are ""), and the count.
type CountGroup struct {
	Keys  map[string]string
	Count int64
}

// UnmarshalJSON reads {"<key>": value…, "count": n}.
func (g *CountGroup) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	g.Keys = map[string]string{}
	for k, v := range raw {
		if k == "count" {
			if err := json.Unmarshal(v, &g.Count); err != nil {
				return err
			}
			continue
		}
		var s *string
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		if s != nil {
			g.Keys[k] = *s
		} else {
			g.Keys[k] = ""
		}
	}
	return nil
}

// ChainVerification is the result of [Client.VerifyChain].
type ChainVerification struct {
	CorrelationID    string          `json:"correlation_id"`
	IsValid          bool            `json:"is_valid"`
	TotalEvents      int64           `json:"total_events"`
	VerifiedEvents   int64           `json:"verified_events"`
	TamperedEvents   []TamperedEvent `json:"tampered_events"`
	VerificationTime time.Time       `json:"verification_time"`
	Message          string          `json:"message"`
}

// TamperedEvent is an event whose stored hash does not match.
type TamperedEvent struct {
	ID           uuid.UUID `json:"event_id"`
	Timestamp    time.Time `json:"event_timestamp"`
	ExpectedHash string    `json:"expected_hash"`
	ActualHash   string    `json:"actual_hash"`
	PreviousHash string    `json:"previous_hash"`
	Message      string    `json:"message"`
}

// LegalHold is a hold on a correlation's events.
type LegalHold struct {
	CorrelationID  string    `json:"correlation_id"`
	EventsAffected int64     `json:"events_affected"`
	PlacedBy       string    `json:"placed_by"`
	PlacedAt       time.Time `json:"placed_at"`
	Reason         string    `json:"reason"`
}

// LegalHoldList is every active hold.
type LegalHoldList struct {
	Holds []LegalHold `json:"holds"`
	Total int64       `json:"total"`
}

// LegalHoldRelease is the answer to [Client.ReleaseLegalHold].
type LegalHoldRelease struct {
	CorrelationID  string    `json:"correlation_id"`
	EventsReleased int64     `json:"events_released"`
	ReleasedBy     string    `json:"released_by"`
	ReleasedAt     time.Time `json:"released_at"`
}

// ExportQuery selects the events of a signed export. Zero fields do not
// filter.
type ExportQuery struct {
	StartTime, EndTime time.Time
	CorrelationID      string
	Category           Category
	// Format is "json" (default) or "ndjson"; [Client.Export] always asks
	// for json, [Client.ExportTo] honours it.
	Format string
	// Limit is 1 … 10000 (0: server default 1000).
	Limit  int
	Offset int
}

// Export is a signed export.
type Export struct {
	Metadata              ExportMetadata        `json:"export_metadata"`
	Events                []Event               `json:"events"`
	HashChainVerification HashChainVerification `json:"hash_chain_verification"`
	// Raw is the response body exactly as received: keep it (not a
	// re-encoding) for `datastorage verify-export`.
	Raw []byte `json:"-"`
}

// ExportMetadata describes an export and carries its signature.
type ExportMetadata struct {
	Timestamp   time.Time `json:"export_timestamp"`
	Format      string    `json:"export_format"`
	TotalEvents int64     `json:"total_events"`
	// Signature is base64 (standard encoding) over the exact bytes of the
	// exported events.
	Signature          string         `json:"signature"`
	SignatureAlgorithm string         `json:"signature_algorithm"`
	ExportedBy         string         `json:"exported_by"`
	QueryFilters       map[string]any `json:"query_filters"`
}

// HashChainVerification is the chain check of the exported events.
type HashChainVerification struct {
	TotalEventsVerified      int64       `json:"total_events_verified"`
	ValidChainEvents         int64       `json:"valid_chain_events"`
	BrokenChainEvents        int64       `json:"broken_chain_events"`
	ChainIntegrityPercentage float64     `json:"chain_integrity_percentage"`
	VerificationTimestamp    time.Time   `json:"verification_timestamp"`
	TamperedEventIDs         []uuid.UUID `json:"tampered_event_ids"`
}

// NotificationChannel is a notification's channel.
type NotificationChannel string

// The channels the server accepts.
const (
	ChannelEmail     NotificationChannel = "email"
	ChannelSlack     NotificationChannel = "slack"
	ChannelPagerDuty NotificationChannel = "pagerduty"
	ChannelTeams     NotificationChannel = "teams"
	ChannelWebhook   NotificationChannel = "webhook"
	ChannelSMS       NotificationChannel = "sms"
	ChannelConsole   NotificationChannel = "console"
	ChannelFile      NotificationChannel = "file"
	ChannelLog       NotificationChannel = "log"
)

// NotificationStatus is a notification's delivery status.
type NotificationStatus string

// The statuses the server accepts.
const (
	NotificationSent         NotificationStatus = "sent"
	NotificationFailed       NotificationStatus = "failed"
	NotificationPending      NotificationStatus = "pending"
	NotificationAcknowledged NotificationStatus = "acknowledged"
	NotificationEscalated    NotificationStatus = "escalated"
)

// Notification is a legacy typed notification audit record as written.
// NotificationID must be unique: a repeat is a 409 ([ErrConflict]).
type Notification struct {
	RemediationID  string              `json:"remediation_id"`
	NotificationID string              `json:"notification_id"`
	Recipient      string              `json:"recipient"`
	Channel        NotificationChannel `json:"channel"`
	MessageSummary string              `json:"message_summary"`
	Status         NotificationStatus  `json:"status"`
	// SentAt is at most now + 5 minutes; zero means now.
	SentAt          time.Time `json:"sent_at"`
	DeliveryStatus  string    `json:"delivery_status,omitempty"`
	ErrorMessage    string    `json:"error_message,omitempty"`
	EscalationLevel *int      `json:"escalation_level,omitempty"`
}

// NotificationRecord is a stored notification audit record.
type NotificationRecord struct {
	ID              int64               `json:"id"`
	RemediationID   string              `json:"remediation_id"`
	NotificationID  string              `json:"notification_id"`
	Recipient       string              `json:"recipient"`
	Channel         NotificationChannel `json:"channel"`
	MessageSummary  string              `json:"message_summary"`
	Status          NotificationStatus  `json:"status"`
	SentAt          time.Time           `json:"sent_at"`
	DeliveryStatus  string              `json:"delivery_status,omitempty"`
	ErrorMessage    string              `json:"error_message,omitempty"`
	EscalationLevel *int                `json:"escalation_level,omitempty"`
	CreatedAt       time.Time           `json:"created_at"`
	UpdatedAt       time.Time           `json:"updated_at"`
}

// NotificationResult is the answer to [Client.WriteNotification].
type NotificationResult struct {
	// Record is the stored record; nil when Queued.
	Record *NotificationRecord
	// Queued is true when the server answered 202: the record is durably
	// queued in the server's spool and will be stored later.
	Queued bool
}

// Readiness is the answer of the readiness probe.
type Readiness struct {
	// Ready is true for a 200 answer.
	Ready bool `json:"-"`
	// Status is "ready" or "not_ready".
	Status string `json:"status"`
	// Database and Spool are "up" or "down" (set when ready).
	Database string `json:"database,omitempty"`
	Spool    string `json:"spool,omitempty"`
	// Reason says why not ready: "shutting_down" or "database_unreachable".
	Reason string `json:"reason,omitempty"`
}
