package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// ErrSelectionRejected matches a *[SelectionError]: the server did not
// confirm a choice made from a [Discovery].
var ErrSelectionRejected = errors.New("datastorage: workflow selection rejected")

// SelectionError is returned by [Discovery.Select] when the chosen workflow
// was not among the search's results or is no longer active. It matches
// [ErrSelectionRejected].
type SelectionError struct {
	DiscoveryID string
	WorkflowID  uuid.UUID
	// Reason is not_offered or no_longer_active.
	Reason string
}

// Error names the discovery, the workflow and the reason.
func (e *SelectionError) Error() string {
	return fmt.Sprintf("datastorage: workflow %s rejected for discovery %s: %s", e.WorkflowID, e.DiscoveryID, e.Reason)
}

// Is matches [ErrSelectionRejected].
func (e *SelectionError) Is(target error) bool { return target == ErrSelectionRejected }

// Discovery is a search an agent chooses from. The results carry no
// workflow content: the way to the chosen version's content is
// [Discovery.Select], which has the server confirm the choice first. So an
// agent that uses a Discovery cannot run a workflow it was not shown, or one
// disabled since, by forgetting a step.
type Discovery struct {
	c *Client
	// ID is the server's discovery_id, the key of the later validation.
	ID string
	// Results are the ranked workflows offered, without Content.
	Results []SearchHit
	// TotalCandidates counts every candidate before min_score and top_k.
	TotalCandidates int
}

// Discover searches the catalog and keeps the answer for a later
// [Discovery.Select]. Set req.RemediationID so the search and its
// validation land in the remediation's audit trail.
func (c *Client) Discover(ctx context.Context, req SearchRequest) (*Discovery, error) {
	res, err := c.SearchWorkflows(ctx, req)
	if err != nil {
		return nil, err
	}
	return &Discovery{c: c, ID: res.DiscoveryID, Results: res.Results, TotalCandidates: res.TotalCandidates}, nil
}

// Best is the top-ranked result; false when nothing matched.
func (d *Discovery) Best() (SearchHit, bool) {
	if len(d.Results) == 0 {
		return SearchHit{}, false
	}
	return d.Results[0], true
}

// Offered returns the result for workflowID; false when the search did not
// offer it.
func (d *Discovery) Offered(workflowID uuid.UUID) (SearchHit, bool) {
	for _, h := range d.Results {
		if h.Workflow.WorkflowID == workflowID {
			return h, true
		}
	}
	return SearchHit{}, false
}

// Validate asks the server whether workflowID may be run as a choice from
// this discovery (offered by it and still active). It records the check in
// the audit trail. A rejection is Valid false, not an error.
func (d *Discovery) Validate(ctx context.Context, workflowID uuid.UUID) (*SelectionValidation, error) {
	return d.c.ValidateSelection(ctx, d.ID, workflowID)
}

// Select validates workflowID against this discovery and returns the chosen
// version with its Content, ready to run. A choice the server rejects is a
// *[SelectionError]; the version is not fetched. Even a workflow that was
// not offered is sent to the server: the rejection belongs in the audit
// trail.
func (d *Discovery) Select(ctx context.Context, workflowID uuid.UUID) (*Workflow, error) {
	v, err := d.Validate(ctx, workflowID)
	if err != nil {
		return nil, err
	}
	if !v.Valid {
		return nil, &SelectionError{DiscoveryID: d.ID, WorkflowID: workflowID, Reason: v.Reason}
	}
	w, err := d.c.GetWorkflow(ctx, workflowID)
	if err != nil {
		return nil, err
	}
	// The version may have left active between the check and the fetch.
	if w.Status != WorkflowActive {
		return nil, &SelectionError{DiscoveryID: d.ID, WorkflowID: workflowID, Reason: SelectionNoLongerActive}
	}
	return w, nil
}
