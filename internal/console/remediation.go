package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"kubernaut.ai/datastorage/internal/query"
)

// effectiveness is a remediation's score (CONTRACT §16.2).
type effectiveness struct {
	Score      *float64 `json:"score"`
	Status     string   `json:"assessment_status"`
	ComputedAt string   `json:"computed_at"`
	Components struct {
		HealthAssessed  bool     `json:"health_assessed"`
		HealthScore     *float64 `json:"health_score"`
		HealthDetails   string   `json:"health_details"`
		AlertAssessed   bool     `json:"alert_assessed"`
		AlertScore      *float64 `json:"alert_score"`
		AlertDetails    string   `json:"alert_details"`
		MetricsAssessed bool     `json:"metrics_assessed"`
		MetricsScore    *float64 `json:"metrics_score"`
		MetricsDetails  string   `json:"metrics_details"`
	} `json:"components"`
	HashComparison map[string]any `json:"hash_comparison"`
}

// target is what a remediation acted on, from its
// remediation.workflow_created event, for the link to the target's history.
type target struct {
	Resource, SpecHash string
}

// timelineExtras are the remediation read models shown on a timeline.
type timelineExtras struct {
	Effectiveness *effectiveness
	Target        *target
}

// remediationExtras reads the effectiveness of a remediation (absent
// without effectiveness events) and finds its target in the timeline.
func (c *Console) remediationExtras(r *http.Request, s *session, tl *query.Timeline) timelineExtras {
	var out timelineExtras
	var eff effectiveness
	if _, err := c.get(r.Context(), s, "/api/v1/effectiveness/"+url.PathEscape(tl.CorrelationID), &eff); err == nil {
		out.Effectiveness = &eff
	}
	walkTimeline(tl.Events, nil, func(n, _ *query.TimelineNode) {
		if out.Target != nil || n.Type != "remediation.workflow_created" {
			return
		}
		var d struct {
			Target string `json:"target_resource"`
			Hash   string `json:"pre_remediation_spec_hash"`
		}
		if json.Unmarshal(n.Data, &d) == nil && d.Target != "" && d.Hash != "" {
			out.Target = &target{Resource: d.Target, SpecHash: d.Hash}
		}
	})
	return out
}

type historyPage struct {
	Target, SpecHash string
	Answer           *historyAnswer
	Error            string
}

type historyAnswer struct {
	TargetResource     string `json:"targetResource"`
	RegressionDetected bool   `json:"regressionDetected"`
	Tier1              struct {
		Window string         `json:"window"`
		Chain  []historyEntry `json:"chain"`
	} `json:"tier1"`
	Tier2 struct {
		Window string         `json:"window"`
		Chain  []historyEntry `json:"chain"`
	} `json:"tier2"`
}

type historyEntry struct {
	RemediationUID     string   `json:"remediationUID"`
	CompletedAt        string   `json:"completedAt"`
	SignalType         string   `json:"signalType"`
	ActionType         string   `json:"actionType"`
	Outcome            string   `json:"outcome"`
	EffectivenessScore *float64 `json:"effectivenessScore"`
	HashMatch          string   `json:"hashMatch"`
	AssessmentReason   string   `json:"assessmentReason"`
	SignalResolved     *bool    `json:"signalResolved"`
}

// history shows a target's past remediations (CONTRACT §16.1): target is
// NAMESPACE/KIND/NAME (an empty namespace for cluster-scoped targets).
func (c *Console) history(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r)
	if !ok {
		return
	}
	page := historyPage{Target: r.URL.Query().Get("target"), SpecHash: r.URL.Query().Get("spec_hash")}
	if page.Target == "" || page.SpecHash == "" {
		c.render(w, r, http.StatusOK, "history", s, page)
		return
	}
	parts := strings.Split(page.Target, "/")
	if len(parts) != 3 {
		page.Error = "target must be NAMESPACE/KIND/NAME (empty namespace: /KIND/NAME)"
		c.render(w, r, http.StatusBadRequest, "history", s, page)
		return
	}
	q := url.Values{"targetNamespace": {parts[0]}, "targetKind": {parts[1]}, "targetName": {parts[2]}, "currentSpecHash": {page.SpecHash}}
	var ans historyAnswer
	status, err := c.get(r.Context(), s, "/api/v1/remediation-history/context?"+q.Encode(), &ans)
	if err != nil {
		if status == http.StatusBadRequest {
			page.Error = err.Error()
			c.render(w, r, status, "history", s, page)
			return
		}
		c.failAPI(w, r, s, status, err)
		return
	}
	page.Answer = &ans
	c.render(w, r, http.StatusOK, "history", s, page)
}
