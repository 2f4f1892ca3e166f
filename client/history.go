package client

import (
	"context"
	"net/url"
	"time"
)

// HistoryQuery selects a target's remediation history (CONTRACT §16.1).
type HistoryQuery struct {
	// TargetNamespace is empty for a cluster-scoped target.
	TargetNamespace string
	// TargetKind, TargetName and CurrentSpecHash are required.
	TargetKind      string
	TargetName      string
	CurrentSpecHash string
	// Tier1Window and Tier2Window default to 24h and 2160h on the server
	// when zero; tier 2 must be longer than tier 1.
	Tier1Window, Tier2Window time.Duration
	// ClusterID, when set, keeps the remediations of that cluster only.
	ClusterID string
}

func (q HistoryQuery) values() url.Values {
	v := url.Values{}
	v.Set("targetKind", q.TargetKind)
	v.Set("targetName", q.TargetName)
	v.Set("currentSpecHash", q.CurrentSpecHash)
	if q.TargetNamespace != "" {
		v.Set("targetNamespace", q.TargetNamespace)
	}
	if q.Tier1Window != 0 {
		v.Set("tier1Window", q.Tier1Window.String())
	}
	if q.Tier2Window != 0 {
		v.Set("tier2Window", q.Tier2Window.String())
	}
	if q.ClusterID != "" {
		v.Set("clusterId", q.ClusterID)
	}
	return v
}

// Hash match kinds of a history entry.
const (
	HashMatchPreRemediation  = "preRemediation"
	HashMatchPostRemediation = "postRemediation"
	HashMatchNone            = "none"
)

// RemediationHistoryContext is a target's past remediations whose spec hash
// matches, in two tiers. Chains are oldest first: count back from the end.
type RemediationHistoryContext struct {
	TargetResource  string `json:"targetResource"`
	CurrentSpecHash string `json:"currentSpecHash"`
	// RegressionDetected says some entry (tier 1 first, else tier 2) was
	// applied to the current spec itself (HashMatch preRemediation).
	RegressionDetected bool `json:"regressionDetected"`
	Tier1              struct {
		// Window is the window as Go prints a duration.
		Window string                    `json:"window"`
		Chain  []RemediationHistoryEntry `json:"chain"`
	} `json:"tier1"`
	Tier2 struct {
		Window string                      `json:"window"`
		Chain  []RemediationHistorySummary `json:"chain"`
	} `json:"tier2"`
}

// RemediationHistoryEntry is a tier 1 entry; pointer and empty fields were
// absent in the answer.
type RemediationHistoryEntry struct {
	RemediationUID          string              `json:"remediationUID"`
	CompletedAt             time.Time           `json:"completedAt"`
	SignalType              string              `json:"signalType,omitempty"`
	ActionType              string              `json:"actionType,omitempty"`
	Outcome                 string              `json:"outcome,omitempty"`
	SignalFingerprint       string              `json:"signalFingerprint,omitempty"`
	PreRemediationSpecHash  string              `json:"preRemediationSpecHash,omitempty"`
	EffectivenessScore      *float64            `json:"effectivenessScore,omitempty"`
	PostRemediationSpecHash string              `json:"postRemediationSpecHash,omitempty"`
	AssessmentReason        string              `json:"assessmentReason,omitempty"`
	SignalResolved          *bool               `json:"signalResolved,omitempty"`
	HealthChecks            *RemediationHealth  `json:"healthChecks,omitempty"`
	MetricDeltas            *RemediationMetrics `json:"metricDeltas,omitempty"`
	SideEffects             []string            `json:"sideEffects"`
	HashMatch               string              `json:"hashMatch"`
}

// RemediationHistorySummary is a tier 2 entry.
type RemediationHistorySummary struct {
	RemediationUID     string    `json:"remediationUID"`
	CompletedAt        time.Time `json:"completedAt"`
	SignalType         string    `json:"signalType,omitempty"`
	ActionType         string    `json:"actionType,omitempty"`
	Outcome            string    `json:"outcome,omitempty"`
	EffectivenessScore *float64  `json:"effectivenessScore,omitempty"`
	SignalResolved     *bool     `json:"signalResolved,omitempty"`
	HashMatch          string    `json:"hashMatch"`
	AssessmentReason   string    `json:"assessmentReason,omitempty"`
}

// RemediationHealth is the last health assessment's checks.
type RemediationHealth struct {
	PodRunning    *bool  `json:"podRunning,omitempty"`
	ReadinessPass *bool  `json:"readinessPass,omitempty"`
	RestartDelta  *int64 `json:"restartDelta,omitempty"`
	CrashLoops    *bool  `json:"crashLoops,omitempty"`
	OOMKilled     *bool  `json:"oomKilled,omitempty"`
	PendingCount  *int64 `json:"pendingCount,omitempty"`
}

// RemediationMetrics is the last metrics assessment's deltas.
type RemediationMetrics struct {
	CPUBefore                *float64 `json:"cpuBefore,omitempty"`
	CPUAfter                 *float64 `json:"cpuAfter,omitempty"`
	MemoryBefore             *float64 `json:"memoryBefore,omitempty"`
	MemoryAfter              *float64 `json:"memoryAfter,omitempty"`
	LatencyP95BeforeMs       *float64 `json:"latencyP95BeforeMs,omitempty"`
	LatencyP95AfterMs        *float64 `json:"latencyP95AfterMs,omitempty"`
	ErrorRateBefore          *float64 `json:"errorRateBefore,omitempty"`
	ErrorRateAfter           *float64 `json:"errorRateAfter,omitempty"`
	ThroughputBeforeRps      *float64 `json:"throughputBeforeRps,omitempty"`
	ThroughputAfterRps       *float64 `json:"throughputAfterRps,omitempty"`
	NodeNotReadyBefore       *float64 `json:"nodeNotReadyBefore,omitempty"`
	NodeNotReadyAfter        *float64 `json:"nodeNotReadyAfter,omitempty"`
	NodeMemoryPressureBefore *float64 `json:"nodeMemoryPressureBefore,omitempty"`
	NodeMemoryPressureAfter  *float64 `json:"nodeMemoryPressureAfter,omitempty"`
	NodeDiskPressureBefore   *float64 `json:"nodeDiskPressureBefore,omitempty"`
	NodeDiskPressureAfter    *float64 `json:"nodeDiskPressureAfter,omitempty"`
	PVPhaseFailedBefore      *float64 `json:"pvPhaseFailedBefore,omitempty"`
	PVPhaseFailedAfter       *float64 `json:"pvPhaseFailedAfter,omitempty"`
	PVPhasePendingBefore     *float64 `json:"pvPhasePendingBefore,omitempty"`
	PVPhasePendingAfter      *float64 `json:"pvPhasePendingAfter,omitempty"`
	PVUsageRatioBefore       *float64 `json:"pvUsageRatioBefore,omitempty"`
	PVUsageRatioAfter        *float64 `json:"pvUsageRatioAfter,omitempty"`
}

// EffectivenessScore is a remediation's effectiveness (CONTRACT §16.2).
type EffectivenessScore struct {
	CorrelationID string `json:"correlation_id"`
	// Score is nil until an assessed component has a score; 0 for SpecDrift.
	Score      *float64 `json:"score"`
	Components struct {
		HealthAssessed  bool     `json:"health_assessed"`
		HealthScore     *float64 `json:"health_score"`
		HealthDetails   string   `json:"health_details,omitempty"`
		AlertAssessed   bool     `json:"alert_assessed"`
		AlertScore      *float64 `json:"alert_score"`
		AlertDetails    string   `json:"alert_details,omitempty"`
		MetricsAssessed bool     `json:"metrics_assessed"`
		MetricsScore    *float64 `json:"metrics_score"`
		MetricsDetails  string   `json:"metrics_details,omitempty"`
	} `json:"components"`
	HashComparison struct {
		PreRemediationSpecHash  string `json:"pre_remediation_spec_hash,omitempty"`
		PostRemediationSpecHash string `json:"post_remediation_spec_hash,omitempty"`
		HashMatch               *bool  `json:"hash_match,omitempty"`
	} `json:"hash_comparison"`
	// AssessmentStatus is one of no_data, in_progress, Full, Partial,
	// SpecDrift, Expired, NoExecution, MetricsTimedOut, EffectivenessAssessed.
	AssessmentStatus string    `json:"assessment_status"`
	ComputedAt       time.Time `json:"computed_at"`
}

// RemediationHistory returns a target's remediation history context; a
// *Problem naming each bad parameter when q is invalid.
func (c *Client) RemediationHistory(ctx context.Context, q HistoryQuery) (*RemediationHistoryContext, error) {
	var out RemediationHistoryContext
	if err := c.getJSON(ctx, c.endpoint(q.values(), "api", "v1", "remediation-history", "context"), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Effectiveness returns a remediation's effectiveness score; an error
// matching [ErrNotFound] when the correlation has no effectiveness event.
func (c *Client) Effectiveness(ctx context.Context, correlationID string) (*EffectivenessScore, error) {
	var out EffectivenessScore
	if err := c.getJSON(ctx, c.endpoint(nil, "api", "v1", "effectiveness", correlationID), &out); err != nil {
		return nil, err
	}
	return &out, nil
}
