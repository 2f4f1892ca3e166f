package catalog

import (
	"errors"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/failure"
)

// The records the catalog's Store reads and writes. They live here, with
// the interface, so that the store implements what the catalog declares and
// nothing above the store (the HTTP API, the console) depends on it.

// WorkflowRecord is a stored workflow version, as the store reads and
// writes it (*store.Store implements Store). The JSON columns travel as
// their encoded text, whose shape this package owns.
type WorkflowRecord struct {
	ID             uuid.UUID
	Name           string
	Version        string
	VersionKey     string
	Prerelease     bool
	Title          string
	Description    []byte
	ActionType     string
	Labels         []byte
	DetectedLabels []byte
	CustomLabels   []byte
	// LabelTerms are the lower-cased key=value terms of the mandatory and
	// custom labels (custom keys prefixed "custom.") that the candidate
	// filter matches.
	LabelTerms   []string
	Execution    []byte
	Parameters   []byte
	Content      string
	ContentHash  string
	Status       string
	StatusReason string
	IsLatest     bool
	CreatedAt    time.Time
	CreatedBy    string
	UpdatedAt    time.Time
	UpdatedBy    string
	// TextRank is the search's normalised full-text relevance (0..1); only
	// SearchWorkflows sets it.
	TextRank float64
}

// ErrWorkflowExists is returned by Store.RegisterWorkflow, unwrapped, when the id
// is already stored; the stored record is returned with it. Test with
// errors.Is.
var ErrWorkflowExists = failure.Mark(errors.New("workflow version already registered"), failure.Data)

// StatusChange is what ChangeWorkflowStatus writes.
type StatusChange struct {
	Status, Reason, By string
	At                 time.Time
}

// WorkflowFilter selects versions for ListWorkflows.
type WorkflowFilter struct {
	Name, Status, ActionType string
	// SignalType matches a labels.signal_type value, case-insensitively.
	SignalType string
	LatestOnly bool
	// After is the keyset position: rows after (Name, VersionKey) in the
	// list order (name ascending, precedence descending).
	After *WorkflowKeyset
	Limit int
}

// WorkflowKeyset is a position in the workflow list.
type WorkflowKeyset struct {
	Name, VersionKey string
}

// SearchQuery is the candidate filter of a search (CONTRACT §15.4).
type SearchQuery struct {
	// Require holds terms a candidate must have (signal_type=<value>).
	Require []string
	// AnyOf holds, per requested label, the terms of which a candidate must
	// have one (the value or the wildcard).
	AnyOf [][]string
	// ActionType, when set, must equal the candidate's.
	ActionType string
	// Bools are detected labels the target has: a candidate that declares
	// one with the other value contradicts the target.
	Bools map[string]bool
	// Named are gitops_tool / service_mesh of the target: a candidate that
	// declares another named one contradicts it ("*" does not).
	Named map[string]string
	// Text, when set, ranks candidates by full-text relevance.
	Text string
}

// Discovery is a recorded search answer.
type Discovery struct {
	ID        uuid.UUID
	CreatedAt time.Time
	Request   []byte
	Offered   []uuid.UUID
}
