package catalog

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
)

// SearchRequest is a decoded search (CONTRACT §15.4).
type SearchRequest struct {
	// Context holds the signal's labels by mandatory label key.
	Context        map[string]string   `json:"context"`
	DetectedLabels DetectedLabels      `json:"detected_labels"`
	CustomLabels   map[string][]string `json:"custom_labels"`
	Text           string              `json:"text,omitempty"`
	ActionType     string              `json:"action_type,omitempty"`
	TopK           int                 `json:"top_k"`
	MinScore       float64             `json:"min_score"`
	Explain        bool                `json:"explain"`
	RemediationID  string              `json:"remediation_id,omitempty"`
}

// Term is one scored term of a result, as explain shows it.
type Term struct {
	Term         string  `json:"term"`
	Requested    any     `json:"requested"`
	Offered      any     `json:"offered"`
	Match        float64 `json:"match"`
	Weight       float64 `json:"weight"`
	Contribution float64 `json:"contribution"`
}

// Result is one ranked workflow of a search.
type Result struct {
	Rank     int      `json:"rank"`
	Score    float64  `json:"score"`
	Workflow Workflow `json:"workflow"`
	Terms    []Term   `json:"terms,omitempty"`
}

// SearchResult is a search's answer.
type SearchResult struct {
	DiscoveryID     uuid.UUID `json:"discovery_id"`
	Results         []Result  `json:"results"`
	TotalCandidates int       `json:"total_candidates"`
}

const (
	defaultTopK = 10
	maxTopK     = 100
	maxText     = 1000
)

// DecodeSearch reads and checks a search request. Errors: *ValidationError.
func DecodeSearch(body []byte) (SearchRequest, error) {
	r := SearchRequest{Context: map[string]string{}, TopK: defaultTopK}
	m, err := object(body)
	if err != nil {
		return r, err
	}
	fe := fieldErrors{}
	if !present(m["context"]) {
		fe.add("context.signal_type", "is required")
	} else {
		var c map[string]json.RawMessage
		if err := json.Unmarshal(m["context"], &c); err != nil || c == nil {
			fe.add("context", "must be an object of signal labels")
		}
		for k := range c {
			if !slices.Contains(MandatoryLabels, k) {
				fe.add("context."+k, "is not a context label (%s)", strings.Join(MandatoryLabels, ", "))
			}
		}
		for _, k := range MandatoryLabels {
			v := str(fe, c, k, "context."+k, maxLabelValue, k == "signal_type")
			if present(c[k]) && v == "" {
				fe.add("context."+k, "must not be empty")
			}
			if v == "*" {
				fe.add("context."+k, "must be the signal's value; * is for workflows")
			}
			if v != "" {
				r.Context[k] = v
			}
		}
	}
	r.DetectedLabels = decodeDetected(fe, m["detected_labels"], "detected_labels", false)
	r.CustomLabels = decodeCustom(fe, m["custom_labels"], "custom_labels")
	r.Text = str(fe, m, "text", "text", maxText, false)
	r.ActionType = str(fe, m, "action_type", "action_type", maxActionType, false)
	r.RemediationID = str(fe, m, "remediation_id", "remediation_id", 255, false)
	if present(m["top_k"]) {
		var n float64
		if err := json.Unmarshal(m["top_k"], &n); err != nil || n != math.Trunc(n) || n < 1 || n > maxTopK {
			fe.add("top_k", "must be an integer from 1 to %d", maxTopK)
		} else {
			r.TopK = int(n)
		}
	}
	if present(m["min_score"]) {
		if err := json.Unmarshal(m["min_score"], &r.MinScore); err != nil || r.MinScore < 0 || r.MinScore > 1 {
			fe.add("min_score", "must be a number from 0 to 1")
		}
	}
	if present(m["explain"]) {
		if err := json.Unmarshal(m["explain"], &r.Explain); err != nil {
			fe.add("explain", "must be a boolean")
		}
	}
	return r, fe.err()
}

// query is the candidate filter of r.
func (r SearchRequest) query() store.SearchQuery {
	q := store.SearchQuery{
		Require:    []string{"signal_type=" + strings.ToLower(r.Context["signal_type"])},
		ActionType: r.ActionType,
		Text:       r.Text,
		Bools:      map[string]bool{},
		Named:      map[string]string{},
	}
	for _, k := range MandatoryLabels[1:] {
		if v, ok := r.Context[k]; ok {
			q.AnyOf = append(q.AnyOf, []string{k + "=" + strings.ToLower(v), k + "=*"})
		}
	}
	d := r.DetectedLabels
	for _, b := range d.boolKeys() {
		if *b.v != nil {
			q.Bools[b.key] = **b.v
		}
	}
	if d.GitopsTool != "" {
		q.Named["gitops_tool"] = d.GitopsTool
	}
	if d.ServiceMesh != "" {
		q.Named["service_mesh"] = d.ServiceMesh
	}
	return q
}

// labelMatch is 1 when values hold want (case-insensitively), 0.5 when
// they hold "*", else 0.
func labelMatch(values []string, want ...string) float64 {
	m := 0.0
	for _, v := range values {
		if v == "*" {
			m = max(m, 0.5)
		}
		for _, w := range want {
			if strings.EqualFold(v, w) {
				return 1
			}
		}
	}
	return m
}

// score computes a candidate's terms (CONTRACT §15.4). The score is the sum
// of the contributions, so explain adds up by construction.
func (s *Service) score(r SearchRequest, w Workflow, textRank float64) (float64, []Term) {
	var terms []Term
	add := func(name string, requested, offered any, match, weight float64) {
		terms = append(terms, Term{Term: name, Requested: requested, Offered: offered, Match: match, Weight: weight})
	}
	for _, k := range MandatoryLabels[1:] {
		if v, ok := r.Context[k]; ok {
			add("context."+k, v, w.Labels[k], labelMatch(w.Labels[k], v), s.weights.Context)
		}
	}
	req, wd := r.DetectedLabels, w.DetectedLabels
	rb, wb := req.boolKeys(), wd.boolKeys()
	for i, b := range rb {
		if *b.v == nil {
			continue
		}
		var offered any
		m := 0.5
		if o := *wb[i].v; o != nil {
			offered = *o
			if *o == **b.v {
				m = 1
			}
		}
		add("detected."+b.key, **b.v, offered, m, s.weights.Detected)
	}
	for _, n := range []struct{ key, want, have string }{
		{"gitops_tool", req.GitopsTool, wd.GitopsTool}, {"service_mesh", req.ServiceMesh, wd.ServiceMesh}} {
		if n.want == "" {
			continue
		}
		var offered any
		m := 0.5
		if n.have != "" {
			offered = n.have
			if n.have == n.want {
				m = 1
			}
		}
		add("detected."+n.key, n.want, offered, m, s.weights.Detected)
	}
	keys := make([]string, 0, len(r.CustomLabels))
	for k := range r.CustomLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vs, declared := w.CustomLabels[k]
		var offered any
		m := 0.5
		if declared {
			offered = vs
			m = labelMatch(vs, r.CustomLabels[k]...)
		}
		add("custom."+k, r.CustomLabels[k], offered, m, s.weights.Custom)
	}
	if r.Text != "" {
		add("text", r.Text, textRank, textRank, s.weights.Text)
	}
	var total float64
	for _, t := range terms {
		total += t.Weight
	}
	if total == 0 {
		// No term (or only zero weights): every candidate fits equally.
		return 1, terms
	}
	var score float64
	for i := range terms {
		terms[i].Contribution = terms[i].Weight * terms[i].Match / total
		score += terms[i].Contribution
	}
	return min(score, 1), terms
}

// Search finds and ranks workflows for a signal's context, records the
// answer as a discovery and emits workflow.catalog.search_completed.
// Errors: *ValidationError, ErrUnavailable.
func (s *Service) Search(ctx context.Context, body []byte, by Actor) (SearchResult, error) {
	r, err := DecodeSearch(body)
	if err != nil {
		return SearchResult{}, err
	}
	start := time.Now()
	recs, err := s.store.SearchWorkflows(ctx, r.query())
	if err != nil {
		return SearchResult{}, storeErr("search", err)
	}
	type scored struct {
		Result
		key float64
	}
	all := make([]scored, 0, len(recs))
	for _, rec := range recs {
		w, err := fromRecord(rec)
		if err != nil {
			return SearchResult{}, err
		}
		score, terms := s.score(r, w, rec.TextRank)
		res := Result{Score: score, Workflow: w}
		if r.Explain {
			res.Terms = terms
		}
		// Scores equal but for float noise must tie, and ties go by name.
		all = append(all, scored{Result: res, key: math.Round(score*1e9) / 1e9})
	}
	slices.SortFunc(all, func(a, b scored) int {
		return cmp.Or(cmp.Compare(b.key, a.key), strings.Compare(a.Workflow.Name, b.Workflow.Name))
	})
	out := SearchResult{DiscoveryID: uuid.Must(uuid.NewV7()), Results: []Result{}, TotalCandidates: len(recs)}
	var offered []uuid.UUID
	for _, sc := range all {
		if sc.Score < r.MinScore || len(out.Results) == r.TopK {
			continue
		}
		sc.Rank = len(out.Results) + 1
		out.Results = append(out.Results, sc.Result)
		offered = append(offered, sc.Workflow.ID)
	}
	reqJSON, err := json.Marshal(r)
	if err != nil {
		return SearchResult{}, fmt.Errorf("catalog: search: %w", err)
	}
	now := s.clock()
	if err := s.store.InsertDiscovery(ctx, store.Discovery{ID: out.DiscoveryID, CreatedAt: now, Request: reqJSON, Offered: offered}); err != nil {
		return SearchResult{}, storeErr("search", err)
	}
	s.metrics.searchSeconds.Observe(time.Since(start).Seconds())
	s.metrics.candidates.Observe(float64(len(recs)))
	ids := make([]string, len(offered))
	for i, id := range offered {
		ids[i] = id.String()
	}
	ev, err := s.event(eventSpec{typ: "workflow.catalog.search_completed", action: "search", outcome: "success",
		correlation: discoveryCorrelation(r.RemediationID, out.DiscoveryID), by: by, at: now,
		data: map[string]any{"event_type": "workflow.catalog.search_completed", "discovery_id": out.DiscoveryID.String(),
			"context": r.Context, "action_type": r.ActionType, "text": r.Text, "workflow_ids": ids,
			"total_candidates": len(recs), "top_k": r.TopK, "min_score": r.MinScore}})
	if err != nil {
		return SearchResult{}, err
	}
	if err := s.sink.Emit(ctx, []*audit.Event{ev}); err != nil {
		s.metrics.searchEvents.WithLabelValues("search_completed").Inc()
		return SearchResult{}, fmt.Errorf("catalog: search event: %w: %w", ErrUnavailable, err)
	}
	return out, nil
}

// discoveryCorrelation is the correlation of a discovery's events: the
// remediation's, or the discovery's own.
func discoveryCorrelation(remediationID string, id uuid.UUID) string {
	if remediationID != "" {
		return remediationID
	}
	return "workflow-discovery/" + id.String()
}

// Verdict is the answer of ValidateSelection.
type Verdict struct {
	Valid  bool   `json:"valid"`
	Reason string `json:"reason"`
}

// ValidateSelection checks that a workflow was among a discovery's results
// and is still active, and emits workflow.catalog.selection_validated.
// Errors: *ValidationError, ErrNotFound (unknown, expired or malformed
// discovery id), ErrUnavailable.
func (s *Service) ValidateSelection(ctx context.Context, rawDiscovery string, body []byte, by Actor) (Verdict, error) {
	did, err := uuid.Parse(rawDiscovery)
	if err != nil {
		return Verdict{}, fmt.Errorf("catalog: validate: %w", ErrNotFound)
	}
	m, err := object(body)
	if err != nil {
		return Verdict{}, err
	}
	fe := fieldErrors{}
	raw := str(fe, m, "workflow_id", "workflow_id", 36, true)
	wid, perr := uuid.Parse(raw)
	if raw != "" && perr != nil {
		fe.add("workflow_id", "must be a UUID")
	}
	if err := fe.err(); err != nil {
		return Verdict{}, err
	}
	d, err := s.store.GetDiscovery(ctx, did, s.clock().Add(-s.ttl))
	if err != nil {
		return Verdict{}, storeErr("validate", err)
	}
	v := Verdict{Valid: true, Reason: "ok"}
	if !slices.Contains(d.Offered, wid) {
		v = Verdict{Reason: "not_offered"}
	} else {
		rec, err := s.store.GetWorkflow(ctx, wid)
		if err != nil {
			return Verdict{}, storeErr("validate", err)
		}
		if rec.Status != StatusActive {
			v = Verdict{Reason: "no_longer_active"}
		}
	}
	var req SearchRequest
	_ = json.Unmarshal(d.Request, &req)
	outcome := "success"
	if !v.Valid {
		outcome = "failure"
	}
	ev, err := s.event(eventSpec{typ: "workflow.catalog.selection_validated", action: "validate", outcome: outcome,
		correlation: discoveryCorrelation(req.RemediationID, did), by: by, at: s.clock(),
		data: map[string]any{"event_type": "workflow.catalog.selection_validated", "discovery_id": did.String(),
			"workflow_id": wid.String(), "valid": v.Valid, "reason": v.Reason}})
	if err != nil {
		return Verdict{}, err
	}
	if err := s.sink.Emit(ctx, []*audit.Event{ev}); err != nil {
		s.metrics.searchEvents.WithLabelValues("selection_validated").Inc()
		return Verdict{}, fmt.Errorf("catalog: validation event: %w: %w", ErrUnavailable, err)
	}
	return v, nil
}

// SweepDiscoveries deletes the discoveries older than the TTL and returns
// how many it deleted.
func (s *Service) SweepDiscoveries(ctx context.Context) (int64, error) {
	n, err := s.store.DeleteDiscoveriesBefore(ctx, s.clock().Add(-s.ttl))
	if err != nil {
		return 0, storeErr("sweep discoveries", err)
	}
	return n, nil
}

// RunSweeper sweeps expired discoveries every TTL/24 (between a minute and
// an hour) until ctx ends.
func (s *Service) RunSweeper(ctx context.Context) {
	every := min(max(s.ttl/24, time.Minute), time.Hour)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := s.SweepDiscoveries(ctx); err != nil {
				s.log.WarnContext(ctx, "could not delete expired workflow discoveries", "error", err.Error())
			} else if n > 0 {
				s.log.InfoContext(ctx, "deleted expired workflow discoveries", "count", n)
			}
		}
	}
}
