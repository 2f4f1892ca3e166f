package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"
)

// The workflow catalog (CONTRACT §15): versioned remediation workflows that
// an AI agent searches by the labels of a signal.

// WorkflowStatus is the lifecycle status of a workflow version.
type WorkflowStatus string

// The statuses of a workflow version. A version is created active; active,
// disabled and deprecated move freely among each other and to archived,
// which is final.
const (
	WorkflowActive     WorkflowStatus = "active"
	WorkflowDisabled   WorkflowStatus = "disabled"
	WorkflowDeprecated WorkflowStatus = "deprecated"
	WorkflowArchived   WorkflowStatus = "archived"
)

// WorkflowDescription tells the agent what a workflow does and when to pick
// it; the server's full-text search covers it with the title.
type WorkflowDescription struct {
	What          string `json:"what"`
	WhenToUse     string `json:"when_to_use,omitempty"`
	WhenNotToUse  string `json:"when_not_to_use,omitempty"`
	Preconditions string `json:"preconditions,omitempty"`
}

// WorkflowLabels are the seven mandatory labels a search matches. Each is a
// non-empty list of values; ["*"] matches any value (not for SignalType).
// Values compare case-insensitively.
type WorkflowLabels struct {
	SignalType       []string `json:"signal_type"`
	Severity         []string `json:"severity"`
	Component        []string `json:"component"`
	Environment      []string `json:"environment"`
	Priority         []string `json:"priority"`
	RiskTolerance    []string `json:"risk_tolerance"`
	BusinessCategory []string `json:"business_category"`
}

// DetectedLabels are properties of the target: in a workflow, what it needs
// of the target; in a search, what was detected on it. A nil pointer or an
// empty string is "not declared". GitOpsTool and ServiceMesh may be "*".
type DetectedLabels struct {
	GitOpsManaged   *bool  `json:"gitops_managed,omitempty"`
	PDBProtected    *bool  `json:"pdb_protected,omitempty"`
	NetworkIsolated *bool  `json:"network_isolated,omitempty"`
	HelmManaged     *bool  `json:"helm_managed,omitempty"`
	Stateful        *bool  `json:"stateful,omitempty"`
	HPAEnabled      *bool  `json:"hpa_enabled,omitempty"`
	GitOpsTool      string `json:"gitops_tool,omitempty"`
	ServiceMesh     string `json:"service_mesh,omitempty"`
}

// Bool returns a pointer to b, for the fields of [DetectedLabels].
func Bool(b bool) *bool { return &b }

// WorkflowExecution says how the workflow engine runs a version.
type WorkflowExecution struct {
	// Engine is tekton, job or ansible.
	Engine string `json:"engine"`
	// Bundle is an OCI reference pinned by digest: …@sha256:<64 hex>.
	Bundle         string `json:"bundle"`
	ServiceAccount string `json:"service_account,omitempty"`
}

// WorkflowParameter is one input of a workflow. Default and each Enum value
// must have the declared Type (string, integer, number or boolean).
type WorkflowParameter struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Required    bool   `json:"required,omitempty"`
	Description string `json:"description,omitempty"`
	Default     any    `json:"default,omitempty"`
	Enum        []any  `json:"enum,omitempty"`
}

// WorkflowSpec is what a caller registers: the create keys of a version.
// Name and version identify it; registering the same spec again is
// idempotent, and a different spec under the same name and version is a
// conflict (bump the version).
type WorkflowSpec struct {
	WorkflowName   string              `json:"workflow_name"`
	Version        string              `json:"version"`
	Title          string              `json:"title"`
	Description    WorkflowDescription `json:"description"`
	ActionType     string              `json:"action_type"`
	Labels         WorkflowLabels      `json:"labels"`
	DetectedLabels DetectedLabels      `json:"detected_labels,omitzero"`
	CustomLabels   map[string][]string `json:"custom_labels,omitempty"`
	Execution      WorkflowExecution   `json:"execution"`
	Parameters     []WorkflowParameter `json:"parameters,omitempty"`
	// Content is the workflow definition (YAML), 1 B – 256 KiB.
	Content string `json:"content"`
}

// Workflow is a stored workflow version. Lists and search results leave
// Content empty; [Client.GetWorkflow] fills it.
type Workflow struct {
	WorkflowID     uuid.UUID           `json:"workflow_id"`
	WorkflowName   string              `json:"workflow_name"`
	Version        string              `json:"version"`
	Title          string              `json:"title"`
	Description    WorkflowDescription `json:"description"`
	ActionType     string              `json:"action_type"`
	Labels         WorkflowLabels      `json:"labels"`
	DetectedLabels DetectedLabels      `json:"detected_labels"`
	CustomLabels   map[string][]string `json:"custom_labels"`
	Execution      WorkflowExecution   `json:"execution"`
	Parameters     []WorkflowParameter `json:"parameters"`
	Content        string              `json:"content,omitempty"`
	// ContentHash is sha256:<hex> of the exact Content bytes.
	ContentHash string         `json:"content_hash"`
	Status      WorkflowStatus `json:"status"`
	// StatusReason is the reason of the last status change ("" before one).
	StatusReason string `json:"status_reason,omitempty"`
	// IsLatest marks the one version of a name a search offers: the highest
	// active one, stable versions before pre-releases.
	IsLatest  bool      `json:"is_latest"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	CreatedBy string    `json:"created_by"`
	UpdatedBy string    `json:"updated_by"`
}

// WorkflowID returns the id the server gives a name and version: a UUIDv5
// of kubernaut.ai/workflows/<name>/<version>, stable across restores, so a
// caller can address a version it has not fetched.
func WorkflowID(name, version string) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("kubernaut.ai/workflows/"+name+"/"+version))
}

// RegisterResult is the answer to [Client.RegisterWorkflow].
type RegisterResult struct {
	Workflow Workflow
	// Created is true for a new version (201), false when the same spec was
	// already registered (200: nothing changed, no event).
	Created bool
}

// RegisterWorkflow registers a workflow version. A version that exists with
// a different spec is a *Problem matching [ErrConflict]; an invalid spec one
// matching [ErrValidation] whose FieldErrors name every failing key.
func (c *Client) RegisterWorkflow(ctx context.Context, spec WorkflowSpec) (*RegisterResult, error) {
	return c.registerWorkflow(ctx, spec)
}

// RegisterWorkflowJSON registers a version given as the JSON object of its
// create keys, sent as is: the server judges every key, unknown ones too.
func (c *Client) RegisterWorkflowJSON(ctx context.Context, spec json.RawMessage) (*RegisterResult, error) {
	if !json.Valid(spec) {
		return nil, errors.New("datastorage: RegisterWorkflowJSON: the spec is not valid JSON")
	}
	return c.registerWorkflow(ctx, spec)
}

func (c *Client) registerWorkflow(ctx context.Context, spec any) (*RegisterResult, error) {
	var out RegisterResult
	r, err := c.sendJSON(ctx, http.MethodPost, workflowEndpoint(c, nil), spec, &out.Workflow)
	if err != nil {
		return nil, err
	}
	switch r.status {
	case http.StatusCreated:
		out.Created = true
	case http.StatusOK:
	default:
		return nil, errUnexpected(r)
	}
	return &out, nil
}

// GetWorkflow returns one version with its Content; a *Problem matching
// [ErrNotFound] when there is none.
func (c *Client) GetWorkflow(ctx context.Context, id uuid.UUID) (*Workflow, error) {
	var w Workflow
	if err := c.getJSON(ctx, workflowEndpoint(c, nil, id.String()), &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// WorkflowQuery selects versions for [Client.ListWorkflows] and
// [Client.Workflows]. Empty fields do not filter.
type WorkflowQuery struct {
	WorkflowName string
	Status       WorkflowStatus
	ActionType   string
	// SignalType matches a labels.signal_type value case-insensitively.
	SignalType string
	// Latest keeps only the is_latest version of each name.
	Latest bool
	// Limit is the page size, 1 … 1000 (0: the server's default, 50).
	Limit int
	// Cursor is a NextCursor of an earlier page.
	Cursor string
}

func (q WorkflowQuery) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("workflow_name", q.WorkflowName)
	set("status", string(q.Status))
	set("action_type", q.ActionType)
	set("signal_type", q.SignalType)
	if q.Latest {
		v.Set("latest", "true")
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	set("cursor", q.Cursor)
	return v
}

// WorkflowPage is one page of versions, ordered by name, then version
// precedence, highest first. Content is empty.
type WorkflowPage struct {
	Workflows  []Workflow         `json:"workflows"`
	Pagination WorkflowPagination `json:"pagination"`
}

// WorkflowPagination says whether more versions follow a page.
type WorkflowPagination struct {
	Limit   int  `json:"limit"`
	HasMore bool `json:"has_more"`
	// NextCursor fetches the next page; set exactly when HasMore.
	NextCursor string `json:"next_cursor,omitempty"`
}

// ListWorkflows returns one page of the versions matching q. Pass the
// page's Pagination.NextCursor as q.Cursor for the next one, or use
// [Client.Workflows].
func (c *Client) ListWorkflows(ctx context.Context, q WorkflowQuery) (*WorkflowPage, error) {
	var page WorkflowPage
	if err := c.getJSON(ctx, workflowEndpoint(c, q.values()), &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// Workflows iterates over every version matching q, page after page by
// cursor (q.Limit per request). It stops at the first error, which it
// yields with a zero Workflow.
func (c *Client) Workflows(ctx context.Context, q WorkflowQuery) func(yield func(Workflow, error) bool) {
	return func(yield func(Workflow, error) bool) {
		q := q
		for {
			page, err := c.ListWorkflows(ctx, q)
			if err != nil {
				yield(Workflow{}, err)
				return
			}
			for _, w := range page.Workflows {
				if !yield(w, nil) {
					return
				}
			}
			if !page.Pagination.HasMore || page.Pagination.NextCursor == "" {
				return
			}
			q.Cursor = page.Pagination.NextCursor
		}
	}
}

// WorkflowVersions is every version of one name, highest precedence first.
type WorkflowVersions struct {
	WorkflowName string     `json:"workflow_name"`
	Versions     []Workflow `json:"versions"`
}

// WorkflowVersions returns every version of name; [ErrNotFound] for a name
// that was never registered.
func (c *Client) WorkflowVersions(ctx context.Context, name string) (*WorkflowVersions, error) {
	var out WorkflowVersions
	if err := c.getJSON(ctx, workflowEndpoint(c, nil, "by-name", name, "versions"), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetWorkflowStatus moves a version to status, recording reason (1–500
// characters, required). A move the lifecycle does not allow, including to
// the current status or out of archived, is a *Problem matching
// [ErrInvalidTransition]; an unknown id one matching [ErrNotFound].
func (c *Client) SetWorkflowStatus(ctx context.Context, id uuid.UUID, status WorkflowStatus, reason string) (*Workflow, error) {
	var w Workflow
	in := map[string]string{"status": string(status), "reason": reason}
	if _, err := c.sendJSON(ctx, http.MethodPatch, workflowEndpoint(c, nil, id.String()), in, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// SearchContext is the signal a search is about. SignalType is required;
// every other key given must be among a workflow's values for that label
// (or the workflow has "*") for it to be a candidate.
type SearchContext struct {
	SignalType       string `json:"signal_type"`
	Severity         string `json:"severity,omitempty"`
	Component        string `json:"component,omitempty"`
	Environment      string `json:"environment,omitempty"`
	Priority         string `json:"priority,omitempty"`
	RiskTolerance    string `json:"risk_tolerance,omitempty"`
	BusinessCategory string `json:"business_category,omitempty"`
}

// SearchRequest asks which workflows fit a signal. Only the latest version
// of each name is a candidate.
type SearchRequest struct {
	Context        SearchContext       `json:"context"`
	DetectedLabels DetectedLabels      `json:"detected_labels,omitzero"`
	CustomLabels   map[string][]string `json:"custom_labels,omitempty"`
	// Text is ranked by PostgreSQL full-text relevance over title and
	// description.
	Text string `json:"text,omitempty"`
	// ActionType, when set, filters exactly.
	ActionType string `json:"action_type,omitempty"`
	// TopK is 1 … 100 (0: the server's default, 10).
	TopK int `json:"top_k,omitempty"`
	// MinScore drops results scoring below it (0 … 1).
	MinScore float64 `json:"min_score,omitempty"`
	// Explain asks for the terms of each score.
	Explain bool `json:"explain,omitempty"`
	// RemediationID is the correlation of the search's audit event.
	RemediationID string `json:"remediation_id,omitempty"`
}

// SearchResult is the answer to a search. Keep DiscoveryID: the choice
// among Results is checked against it ([Client.ValidateSelection]).
type SearchResult struct {
	DiscoveryID string      `json:"discovery_id"`
	Results     []SearchHit `json:"results"`
	// TotalCandidates counts every candidate before min_score and top_k.
	TotalCandidates int `json:"total_candidates"`
}

// SearchHit is one ranked workflow (without Content).
type SearchHit struct {
	Rank     int         `json:"rank"`
	Score    float64     `json:"score"`
	Workflow Workflow    `json:"workflow"`
	Terms    []ScoreTerm `json:"terms,omitempty"`
}

// ScoreTerm is one term of a score (with Explain): the contributions of a
// hit's terms add up to its score.
type ScoreTerm struct {
	// Term is context.<key>, detected.<key>, custom.<key> or text.
	Term string `json:"term"`
	// Requested and Offered are the JSON values of the request and the
	// workflow for the term.
	Requested    json.RawMessage `json:"requested,omitempty"`
	Offered      json.RawMessage `json:"offered,omitempty"`
	Match        float64         `json:"match"`
	Weight       float64         `json:"weight"`
	Contribution float64         `json:"contribution"`
}

// SearchWorkflows runs one search. Prefer [Client.Discover], which keeps
// the discovery and makes the choice go through its validation.
func (c *Client) SearchWorkflows(ctx context.Context, req SearchRequest) (*SearchResult, error) {
	var out SearchResult
	if _, err := c.sendJSON(ctx, http.MethodPost, workflowEndpoint(c, nil, "search"), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Selection reasons of [SelectionValidation].
const (
	SelectionOK             = "ok"
	SelectionNotOffered     = "not_offered"
	SelectionNoLongerActive = "no_longer_active"
)

// SelectionValidation is the server's check of a choice: Valid only when the
// workflow was among the results of the search and is still active.
type SelectionValidation struct {
	Valid bool `json:"valid"`
	// Reason is ok, not_offered or no_longer_active.
	Reason string `json:"reason"`
}

// ValidateSelection asks whether workflowID was offered by the search
// discoveryID and is still active. An invalid choice is a result with Valid
// false, not an error; an unknown (or expired) discovery is a *Problem
// matching [ErrNotFound].
func (c *Client) ValidateSelection(ctx context.Context, discoveryID string, workflowID uuid.UUID) (*SelectionValidation, error) {
	var out SelectionValidation
	in := map[string]string{"workflow_id": workflowID.String()}
	u := workflowEndpoint(c, nil, "discoveries", discoveryID, "validate")
	if _, err := c.sendJSON(ctx, http.MethodPost, u, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func workflowEndpoint(c *Client, query url.Values, segments ...string) *url.URL {
	return c.endpoint(query, append([]string{"api", "v1", "workflows"}, segments...)...)
}
