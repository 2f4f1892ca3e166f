package remediation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"kubernaut.ai/datastorage/internal/audit"
)

// MaxChainEntries bounds each tier's chain (CONTRACT §16.1). Beyond it the
// newest entries are kept: callers count back from the end of the chain.
const MaxChainEntries = 10_000

// Hash match kinds of a history entry.
const (
	HashMatchPre  = "preRemediation"
	HashMatchPost = "postRemediation"
	HashMatchNone = "none"
)

// ErrNoAssessment is returned (wrapped) by [Service.Effectiveness] when the
// correlation has no effectiveness event; the API answers 404. Test with
// errors.Is.
var ErrNoAssessment = errors.New("no effectiveness events for this correlation")

// Store is what the read models need of the store; *store.Store has it.
type Store interface {
	// RemediationEvents returns, for each query, the matching remediation
	// events, oldest first, the newest q.Limit when there are more.
	RemediationEvents(ctx context.Context, qs ...RemediationQuery) ([][]RemediationEvent, error)
	// AssessmentEvents returns the effectiveness events of the
	// correlations, grouped by correlation, each group in
	// (event_timestamp, event_id) order.
	AssessmentEvents(ctx context.Context, correlationIDs []string) ([]AssessmentEvent, error)
}

// Service answers the remediation read models.
type Service struct {
	store Store
}

// New returns a Service reading from st.
func New(st Store) *Service { return &Service{store: st} }

// HistoryContext is the body of GET /remediation-history/context.
type HistoryContext struct {
	TargetResource     string               `json:"targetResource"`
	CurrentSpecHash    string               `json:"currentSpecHash"`
	RegressionDetected bool                 `json:"regressionDetected"`
	Tier1              Tier[HistoryEntry]   `json:"tier1"`
	Tier2              Tier[HistorySummary] `json:"tier2"`
}

// Tier is one window of the history and its chain, oldest first.
type Tier[E any] struct {
	// Window is the tier's window as Go prints a duration (24h0m0s).
	Window string `json:"window"`
	Chain  []E    `json:"chain"`
}

// HistoryEntry is a tier 1 entry (RemediationHistoryEntry).
type HistoryEntry struct {
	RemediationUID          string        `json:"remediationUID"`
	CompletedAt             audit.Time    `json:"completedAt"`
	SignalType              string        `json:"signalType,omitempty"`
	ActionType              string        `json:"actionType,omitempty"`
	Outcome                 string        `json:"outcome,omitempty"`
	SignalFingerprint       string        `json:"signalFingerprint,omitempty"`
	PreRemediationSpecHash  string        `json:"preRemediationSpecHash,omitempty"`
	EffectivenessScore      *float64      `json:"effectivenessScore,omitempty"`
	PostRemediationSpecHash string        `json:"postRemediationSpecHash,omitempty"`
	AssessmentReason        string        `json:"assessmentReason,omitempty"`
	SignalResolved          *bool         `json:"signalResolved,omitempty"`
	HealthChecks            *HealthChecks `json:"healthChecks,omitempty"`
	MetricDeltas            *MetricDeltas `json:"metricDeltas,omitempty"`
	SideEffects             []string      `json:"sideEffects"`
	HashMatch               string        `json:"hashMatch"`
}

// HistorySummary is a tier 2 entry (RemediationHistorySummary).
type HistorySummary struct {
	RemediationUID     string     `json:"remediationUID"`
	CompletedAt        audit.Time `json:"completedAt"`
	SignalType         string     `json:"signalType,omitempty"`
	ActionType         string     `json:"actionType,omitempty"`
	Outcome            string     `json:"outcome,omitempty"`
	EffectivenessScore *float64   `json:"effectivenessScore,omitempty"`
	SignalResolved     *bool      `json:"signalResolved,omitempty"`
	HashMatch          string     `json:"hashMatch"`
	AssessmentReason   string     `json:"assessmentReason,omitempty"`
}

// HistoryContext returns the target's past remediations that match the
// spec hash, tier 1 in [now − tier1Window, now) and tier 2 in
// [now − tier2Window, now − tier1Window).
func (s *Service) HistoryContext(ctx context.Context, p ContextParams, now time.Time) (*HistoryContext, error) {
	target := p.Target()
	q := RemediationQuery{Target: target, ClusterID: p.ClusterID, SpecHash: p.CurrentSpecHash, Limit: MaxChainEntries}
	q1, q2 := q, q
	q1.From, q1.To = now.Add(-p.Tier1Window), now
	q2.From, q2.To = now.Add(-p.Tier2Window), q1.From
	tiers, err := s.store.RemediationEvents(ctx, q1, q2)
	if err != nil {
		return nil, fmt.Errorf("remediation: history of %q: %w", target, err)
	}
	tier1, tier2 := tiers[0], tiers[1]
	folds, err := s.folds(ctx, append(append([]RemediationEvent{}, tier1...), tier2...))
	if err != nil {
		return nil, fmt.Errorf("remediation: assessments of %q: %w", target, err)
	}
	out := &HistoryContext{
		TargetResource:  target,
		CurrentSpecHash: p.CurrentSpecHash,
		Tier1:           Tier[HistoryEntry]{Window: p.Tier1Window.String(), Chain: make([]HistoryEntry, 0, len(tier1))},
		Tier2:           Tier[HistorySummary]{Window: p.Tier2Window.String(), Chain: make([]HistorySummary, 0, len(tier2))},
	}
	for _, ev := range tier1 {
		e := entry(ev, folds[ev.CorrelationID], p.CurrentSpecHash)
		out.Tier1.Chain = append(out.Tier1.Chain, e)
		out.RegressionDetected = out.RegressionDetected || e.HashMatch == HashMatchPre
	}
	for _, ev := range tier2 {
		e := entry(ev, folds[ev.CorrelationID], p.CurrentSpecHash)
		out.Tier2.Chain = append(out.Tier2.Chain, HistorySummary{
			RemediationUID: e.RemediationUID, SignalType: e.SignalType, ActionType: e.ActionType,
			Outcome: e.Outcome, EffectivenessScore: e.EffectivenessScore, SignalResolved: e.SignalResolved,
			HashMatch: e.HashMatch, AssessmentReason: e.AssessmentReason, CompletedAt: e.CompletedAt,
		})
		out.RegressionDetected = out.RegressionDetected || e.HashMatch == HashMatchPre
	}
	return out, nil
}

// folds folds the assessment events of every remediation's correlation.
func (s *Service) folds(ctx context.Context, events []RemediationEvent) (map[string]*Fold, error) {
	if len(events) == 0 {
		return nil, nil
	}
	seen := make(map[string]bool, len(events))
	ids := make([]string, 0, len(events))
	for _, ev := range events {
		if !seen[ev.CorrelationID] {
			seen[ev.CorrelationID] = true
			ids = append(ids, ev.CorrelationID)
		}
	}
	assessments, err := s.store.AssessmentEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	byCorrelation := make(map[string][]Assessment, len(ids))
	for _, a := range assessments {
		byCorrelation[a.CorrelationID] = append(byCorrelation[a.CorrelationID], Assessment{Type: a.Type, Data: a.Data})
	}
	folds := make(map[string]*Fold, len(ids))
	for _, id := range ids {
		f := FoldAssessments(byCorrelation[id])
		folds[id] = &f
	}
	return folds, nil
}

// entry assembles a tier 1 entry from a remediation event and the fold of
// its correlation's assessments.
func entry(ev RemediationEvent, f *Fold, specHash string) HistoryEntry {
	var data map[string]json.RawMessage
	_ = json.Unmarshal(ev.Data, &data) // always an object (CONTRACT §2.1)
	text := func(key string) string { s, _ := str(data[key]); return s }
	e := HistoryEntry{
		RemediationUID:          ev.CorrelationID,
		SignalType:              text("signal_type"),
		SignalFingerprint:       text("signal_fingerprint"),
		ActionType:              text("action_type"),
		Outcome:                 text("outcome"),
		PreRemediationSpecHash:  text("pre_remediation_spec_hash"),
		PostRemediationSpecHash: f.PostHash,
		EffectivenessScore:      f.Score(),
		SignalResolved:          f.SignalResolved,
		HealthChecks:            f.HealthChecks,
		MetricDeltas:            f.MetricDeltas,
		SideEffects:             []string{},
		AssessmentReason:        f.Reason(),
		CompletedAt:             audit.NewTime(ev.Timestamp),
	}
	switch {
	case e.PreRemediationSpecHash == specHash:
		e.HashMatch = HashMatchPre
	case f.PostHash == specHash || f.PostHash == "":
		// An unknown post hash counts as a match (docs/remediation.md).
		e.HashMatch = HashMatchPost
	default:
		e.HashMatch = HashMatchNone
	}
	return e
}

// Effectiveness is the body of GET /effectiveness/{correlation_id}.
type Effectiveness struct {
	CorrelationID    string         `json:"correlation_id"`
	Score            *float64       `json:"score"`
	Components       Components     `json:"components"`
	HashComparison   HashComparison `json:"hash_comparison"`
	AssessmentStatus string         `json:"assessment_status"`
	ComputedAt       audit.Time     `json:"computed_at"`
}

// Components are the three assessed components; scores are null until one
// arrives, details omitted when empty.
type Components struct {
	HealthAssessed  bool     `json:"health_assessed"`
	HealthScore     *float64 `json:"health_score"`
	HealthDetails   string   `json:"health_details,omitempty"`
	AlertAssessed   bool     `json:"alert_assessed"`
	AlertScore      *float64 `json:"alert_score"`
	AlertDetails    string   `json:"alert_details,omitempty"`
	MetricsAssessed bool     `json:"metrics_assessed"`
	MetricsScore    *float64 `json:"metrics_score"`
	MetricsDetails  string   `json:"metrics_details,omitempty"`
}

// Effectiveness folds a correlation's assessment events into its score; an
// error wrapping [ErrNoAssessment] when it has none.
func (s *Service) Effectiveness(ctx context.Context, correlationID string, now time.Time) (*Effectiveness, error) {
	events, err := s.store.AssessmentEvents(ctx, []string{correlationID})
	if err != nil {
		return nil, fmt.Errorf("remediation: effectiveness of %q: %w", correlationID, err)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("remediation: effectiveness of %q: %w", correlationID, ErrNoAssessment)
	}
	as := make([]Assessment, len(events))
	for i, e := range events {
		as[i] = Assessment{Type: e.Type, Data: e.Data}
	}
	f := FoldAssessments(as)
	return &Effectiveness{
		CorrelationID: correlationID,
		Score:         f.Score(),
		Components: Components{
			HealthAssessed: f.Health.Assessed, HealthScore: f.Health.Score, HealthDetails: f.Health.Details,
			AlertAssessed: f.Alert.Assessed, AlertScore: f.Alert.Score, AlertDetails: f.Alert.Details,
			MetricsAssessed: f.Metrics.Assessed, MetricsScore: f.Metrics.Score, MetricsDetails: f.Metrics.Details,
		},
		HashComparison:   f.HashComparison,
		AssessmentStatus: f.FinalStatus(),
		ComputedAt:       audit.NewTime(now),
	}, nil
}
