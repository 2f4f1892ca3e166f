package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/audit"
)

// Statuses of a workflow version (CONTRACT §15.1).
const (
	StatusActive     = "active"
	StatusDisabled   = "disabled"
	StatusDeprecated = "deprecated"
	StatusArchived   = "archived"
)

// MandatoryLabels are the seven labels every workflow declares, in the
// order field errors and explain terms list them.
var MandatoryLabels = []string{"signal_type", "severity", "component", "environment", "priority", "risk_tolerance", "business_category"}

// Description says what a workflow does and when to use it.
type Description struct {
	What          string `json:"what"`
	WhenToUse     string `json:"when_to_use,omitempty"`
	WhenNotToUse  string `json:"when_not_to_use,omitempty"`
	Preconditions string `json:"preconditions,omitempty"`
}

// Execution says how the workflow engine runs a version.
type Execution struct {
	Engine         string `json:"engine"`
	Bundle         string `json:"bundle"`
	ServiceAccount string `json:"service_account,omitempty"`
}

// Parameter is one input a workflow takes. Default and Enum hold compact
// JSON values of the declared type.
type Parameter struct {
	Name        string     `json:"name"`
	Type        string     `json:"type"`
	Required    bool       `json:"required"`
	Description string     `json:"description,omitempty"`
	Default     RawValue   `json:"default,omitempty"`
	Enum        []RawValue `json:"enum,omitempty"`
}

// RawValue is a JSON value kept as its compact text.
type RawValue = json.RawMessage

// DetectedLabels is what a workflow needs of its target. A nil boolean or an
// empty string means the workflow does not care.
type DetectedLabels struct {
	GitopsManaged   *bool  `json:"gitops_managed,omitempty"`
	PDBProtected    *bool  `json:"pdb_protected,omitempty"`
	NetworkIsolated *bool  `json:"network_isolated,omitempty"`
	HelmManaged     *bool  `json:"helm_managed,omitempty"`
	Stateful        *bool  `json:"stateful,omitempty"`
	HPAEnabled      *bool  `json:"hpa_enabled,omitempty"`
	GitopsTool      string `json:"gitops_tool,omitempty"`
	ServiceMesh     string `json:"service_mesh,omitempty"`
}

// boolKeys lists the boolean detected labels with their fields, in the
// order explain reports them.
func (d *DetectedLabels) boolKeys() []struct {
	key string
	v   **bool
} {
	return []struct {
		key string
		v   **bool
	}{
		{"gitops_managed", &d.GitopsManaged}, {"pdb_protected", &d.PDBProtected},
		{"network_isolated", &d.NetworkIsolated}, {"helm_managed", &d.HelmManaged},
		{"stateful", &d.Stateful}, {"hpa_enabled", &d.HPAEnabled},
	}
}

// Workflow is one registered version (CONTRACT §15.1). Content is empty in
// lists and search results, and then omitted on the wire.
type Workflow struct {
	ID             uuid.UUID           `json:"workflow_id"`
	Name           string              `json:"workflow_name"`
	Version        string              `json:"version"`
	Title          string              `json:"title"`
	Description    Description         `json:"description"`
	ActionType     string              `json:"action_type"`
	Labels         map[string][]string `json:"labels"`
	DetectedLabels DetectedLabels      `json:"detected_labels"`
	CustomLabels   map[string][]string `json:"custom_labels"`
	Execution      Execution           `json:"execution"`
	Parameters     []Parameter         `json:"parameters"`
	Content        string              `json:"content,omitempty"`
	ContentHash    string              `json:"content_hash"`
	Status         string              `json:"status"`
	StatusReason   string              `json:"status_reason,omitempty"`
	IsLatest       bool                `json:"is_latest"`
	CreatedAt      audit.Time          `json:"created_at"`
	UpdatedAt      audit.Time          `json:"updated_at"`
	CreatedBy      string              `json:"created_by"`
	UpdatedBy      string              `json:"updated_by"`
}

// WorkflowID is the deterministic id of a name and version: UUIDv5 (SHA-1,
// uuid.NewSHA1) in the URL namespace of kubernaut.ai/workflows/<name>/<version>,
// so the id survives a dump and restore and any replica computes the same.
func WorkflowID(name, version string) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("kubernaut.ai/workflows/"+name+"/"+version))
}

// ContentHash is "sha256:" and the hex SHA-256 of the exact content bytes.
func ContentHash(content string) string {
	sum := sha256.Sum256([]byte(content))
	return "sha256:" + hex.EncodeToString(sum[:])
}
