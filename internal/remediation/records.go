package remediation

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// The records the Store reads; they live here, with the interface that
// *store.Store implements, so that nothing above the store depends on it.

// RemediationQuery selects the remediation events of one target that match a
// spec hash (CONTRACT §16.1).
type RemediationQuery struct {
	// Target is event_data.target_resource, "ns/kind/name".
	Target string
	// ClusterID, when not empty, must equal the event's cluster_id.
	ClusterID string
	// SpecHash matches event_data.pre_remediation_spec_hash, or the
	// post_remediation_spec_hash of any effectiveness event of the
	// remediation's correlation.
	SpecHash string
	// From and To bound event_timestamp: From inclusive, To exclusive.
	From, To time.Time
	// Limit keeps the newest Limit matches.
	Limit int
}

// RemediationEvent is a remediation.workflow_created event as the history
// context needs it.
type RemediationEvent struct {
	ID            uuid.UUID
	Timestamp     time.Time
	CorrelationID string
	Data          json.RawMessage
}

// AssessmentEvent is an effectiveness event as the assessment fold needs it.
type AssessmentEvent struct {
	CorrelationID string
	Type          string
	Data          json.RawMessage
}
