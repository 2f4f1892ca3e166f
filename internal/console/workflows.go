package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// workflow is a catalog version as the API returns it (CONTRACT §15.1).
type workflow struct {
	ID          string `json:"workflow_id"`
	Name        string `json:"workflow_name"`
	Version     string `json:"version"`
	Title       string `json:"title"`
	Description struct {
		What          string `json:"what"`
		WhenToUse     string `json:"when_to_use"`
		WhenNotToUse  string `json:"when_not_to_use"`
		Preconditions string `json:"preconditions"`
	} `json:"description"`
	ActionType     string              `json:"action_type"`
	Labels         map[string][]string `json:"labels"`
	DetectedLabels map[string]any      `json:"detected_labels"`
	CustomLabels   map[string][]string `json:"custom_labels"`
	Execution      map[string]any      `json:"execution"`
	Parameters     []map[string]any    `json:"parameters"`
	Content        string              `json:"content"`
	ContentHash    string              `json:"content_hash"`
	Status         string              `json:"status"`
	StatusReason   string              `json:"status_reason"`
	IsLatest       bool                `json:"is_latest"`
	CreatedAt      string              `json:"created_at"`
	CreatedBy      string              `json:"created_by"`
	UpdatedAt      string              `json:"updated_at"`
	UpdatedBy      string              `json:"updated_by"`
}

// workflowStatuses are the statuses of §15.2, in the order the forms offer them.
var workflowStatuses = []string{"active", "disabled", "deprecated", "archived"}

type workflowsPage struct {
	Filters   []filterField
	Latest    bool
	Workflows []workflow
	OlderURL  string
	Error     string
	Statuses  []string
}

// workflows lists catalog versions with the API's filters and cursor.
func (c *Console) workflows(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok {
		return
	}
	in := r.URL.Query()
	q := url.Values{}
	page := workflowsPage{Statuses: workflowStatuses, Latest: in.Get("latest") == "true"}
	for _, name := range []string{"workflow_name", "status", "action_type", "signal_type"} {
		v := in.Get(name)
		page.Filters = append(page.Filters, filterField{Name: name, Label: strings.ReplaceAll(name, "_", " "), Value: v})
		if v != "" {
			q.Set(name, v)
		}
	}
	if page.Latest {
		q.Set("latest", "true")
	}
	filter := cloneValues(q)
	if cur := in.Get("cursor"); cur != "" {
		q.Set("cursor", cur)
	}
	q.Set("limit", strconv.Itoa(pageSize))
	var ans struct {
		Workflows  []workflow `json:"workflows"`
		Pagination struct {
			HasMore    bool   `json:"has_more"`
			NextCursor string `json:"next_cursor"`
		} `json:"pagination"`
	}
	status, err := c.get(r.Context(), s, "/api/v1/workflows?"+q.Encode(), &ans)
	if err != nil {
		if status == http.StatusBadRequest {
			page.Error = err.Error()
			c.render(w, r, http.StatusBadRequest, "workflows", s, page)
			return
		}
		c.failAPI(w, r, s, status, err)
		return
	}
	page.Workflows = ans.Workflows
	if ans.Pagination.HasMore {
		filter.Set("cursor", ans.Pagination.NextCursor)
		page.OlderURL = Prefix + "workflows?" + filter.Encode()
	}
	c.render(w, r, http.StatusOK, "workflows", s, page)
}

type workflowPage struct {
	Workflow workflow
	Versions []workflow
	Moves    []string
	Message  string
	Error    string
}

// workflowVersion shows one version with its content, its siblings and the
// status form.
func (c *Console) workflowVersion(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok {
		return
	}
	c.workflowPage(w, r, s, http.StatusOK, workflowPage{Message: r.URL.Query().Get("done")})
}

func (c *Console) workflowPage(w http.ResponseWriter, r *http.Request, s *session, status int, page workflowPage) {
	id := r.PathValue("workflow_id")
	if st, err := c.get(r.Context(), s, "/api/v1/workflows/"+url.PathEscape(id), &page.Workflow); err != nil {
		c.failAPI(w, r, s, st, err)
		return
	}
	var versions struct {
		Versions []workflow `json:"versions"`
	}
	if _, err := c.get(r.Context(), s, "/api/v1/workflows/by-name/"+url.PathEscape(page.Workflow.Name)+"/versions", &versions); err == nil {
		page.Versions = versions.Versions
	}
	// The moves §15.2 allows from the current status; archived is final.
	if page.Workflow.Status != "archived" {
		for _, st := range workflowStatuses {
			if st != page.Workflow.Status {
				page.Moves = append(page.Moves, st)
			}
		}
	}
	c.render(w, r, status, "workflow", s, page)
}

// workflowStatus changes a version's status (verb update) with a reason.
func (c *Console) workflowStatus(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok || !c.checkPost(w, r, s) {
		return
	}
	id := r.PathValue("workflow_id")
	res := c.call(r.Context(), s, http.MethodPatch, "/api/v1/workflows/"+url.PathEscape(id),
		map[string]string{"status": r.PostForm.Get("status"), "reason": r.PostForm.Get("reason")})
	switch {
	case res.Status == http.StatusOK:
		http.Redirect(w, r, Prefix+"workflows/"+url.PathEscape(id)+"?"+url.Values{"done": {"Status changed to " + r.PostForm.Get("status") + "."}}.Encode(), http.StatusSeeOther)
	case res.Status >= 500:
		c.fail(w, r, s, res.Status, res.problem())
	default:
		c.workflowPage(w, r, s, res.Status, workflowPage{Error: res.problem()})
	}
}

// searchContext are the context keys of §15.4, in the form's order.
var searchContext = []string{"signal_type", "severity", "component", "environment", "priority", "risk_tolerance", "business_category"}

type searchPage struct {
	Context     []filterField
	Text        string
	ActionType  string
	Explain     bool
	Searched    bool
	DiscoveryID string
	Total       int
	Results     []searchResult
	Error       string
}

type searchResult struct {
	Rank     int      `json:"rank"`
	Score    float64  `json:"score"`
	Workflow workflow `json:"workflow"`
	Terms    []struct {
		Term         string  `json:"term"`
		Requested    any     `json:"requested"`
		Offered      any     `json:"offered"`
		Match        float64 `json:"match"`
		Weight       float64 `json:"weight"`
		Contribution float64 `json:"contribution"`
	} `json:"terms"`
}

// workflowSearch is the agent's search as a form: a GET (so a search can be
// shared as a link) that the console turns into the API's POST search.
// Searching records a discovery, as the agent's would.
func (c *Console) workflowSearch(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok {
		return
	}
	in := r.URL.Query()
	page := searchPage{Text: in.Get("text"), ActionType: in.Get("action_type"), Explain: in.Get("explain") != ""}
	ctx := map[string]string{}
	for _, k := range searchContext {
		v := in.Get(k)
		page.Context = append(page.Context, filterField{Name: k, Label: strings.ReplaceAll(k, "_", " "), Value: v})
		if v != "" {
			ctx[k] = v
		}
	}
	if len(ctx) == 0 && page.Text == "" {
		c.render(w, r, http.StatusOK, "search", s, page)
		return
	}
	page.Searched = true
	body := map[string]any{"context": ctx, "explain": page.Explain, "top_k": 20}
	if page.Text != "" {
		body["text"] = page.Text
	}
	if page.ActionType != "" {
		body["action_type"] = page.ActionType
	}
	res := c.call(r.Context(), s, http.MethodPost, "/api/v1/workflows/search", body)
	if res.Status != http.StatusOK {
		if res.Status >= 500 {
			c.fail(w, r, s, res.Status, res.problem())
			return
		}
		page.Error = res.problem()
		c.render(w, r, res.Status, "search", s, page)
		return
	}
	var ans struct {
		DiscoveryID string         `json:"discovery_id"`
		Results     []searchResult `json:"results"`
		Total       int            `json:"total_candidates"`
	}
	if err := json.Unmarshal(res.Body, &ans); err != nil {
		c.failAPI(w, r, s, http.StatusInternalServerError, err)
		return
	}
	page.DiscoveryID, page.Results, page.Total = ans.DiscoveryID, ans.Results, ans.Total
	c.render(w, r, http.StatusOK, "search", s, page)
}
