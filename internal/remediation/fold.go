package remediation

import (
	"encoding/json"
	"math"
)

// Assessment event types the fold knows (CONTRACT §16.2); any other
// effectiveness event changes nothing.
const (
	TypeHealthAssessed     = "effectiveness.health.assessed"
	TypeAlertAssessed      = "effectiveness.alert.assessed"
	TypeMetricsAssessed    = "effectiveness.metrics.assessed"
	TypeHashComputed       = "effectiveness.hash.computed"
	TypeAssessmentComplete = "effectiveness.assessment.completed"
)

// Statuses of the fold that the rules name.
const (
	StatusNoData     = "no_data"
	StatusInProgress = "in_progress"
	StatusPartial    = "Partial"
	StatusSpecDrift  = "SpecDrift"
)

// Component weights of the score (0.40, 0.35, 0.25), in hundredths: whole
// weights add up exactly (0.40+0.35 is not 0.75 in float64).
const (
	weightHealth  = 40
	weightAlert   = 35
	weightMetrics = 25
)

// clientStatuses are the assessment_status values the platform's generated
// client accepts; any other final status is answered as Partial.
var clientStatuses = map[string]bool{
	StatusNoData: true, StatusInProgress: true, "Full": true, StatusPartial: true, StatusSpecDrift: true,
	"Expired": true, "NoExecution": true, "MetricsTimedOut": true, "EffectivenessAssessed": true,
}

// reasonStatuses are the statuses a history entry shows as assessmentReason.
var reasonStatuses = map[string]bool{
	"Full": true, StatusPartial: true, StatusSpecDrift: true, "Expired": true, "NoExecution": true,
	"MetricsTimedOut": true, "AlertDecayTimeout": true, "Unrecoverable": true,
}

// Assessment is one effectiveness event of a correlation, as the fold reads it.
type Assessment struct {
	Type string
	Data json.RawMessage
}

// Component is what the fold knows of one assessed component.
type Component struct {
	// Assessed is set by the first event that says assessed: true; nothing
	// unsets it.
	Assessed bool
	// Score is the last numeric score; nil until one arrives.
	Score *float64
	// Details is the last string details.
	Details string
}

// HashComparison is the spec hashes of the last hash.computed event that
// carried one. Empty hashes are omitted.
type HashComparison struct {
	PreRemediationSpecHash  string `json:"pre_remediation_spec_hash,omitempty"`
	PostRemediationSpecHash string `json:"post_remediation_spec_hash,omitempty"`
	HashMatch               *bool  `json:"hash_match,omitempty"`
}

// HealthChecks are the health checks of the last health assessment that
// carried them; keys the event did not carry (or carried with another type)
// are omitted.
type HealthChecks struct {
	PodRunning    *bool  `json:"podRunning,omitempty"`
	ReadinessPass *bool  `json:"readinessPass,omitempty"`
	RestartDelta  *int64 `json:"restartDelta,omitempty"`
	CrashLoops    *bool  `json:"crashLoops,omitempty"`
	OOMKilled     *bool  `json:"oomKilled,omitempty"`
	PendingCount  *int64 `json:"pendingCount,omitempty"`
}

// MetricDeltas are the metric deltas of the last metrics assessment that
// carried them; keys the event did not carry (or not as numbers) are
// omitted.
type MetricDeltas struct {
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

// Fold is the state of a correlation's assessment events folded in order.
type Fold struct {
	Health, Alert, Metrics Component
	// HashComparison is replaced by each hash.computed event with a hash.
	HashComparison HashComparison
	// PostHash is the post-remediation hash of that event; empty when unknown.
	PostHash string
	// Status is the last reason of an assessment.completed event (SpecDrift
	// sticks), before the in_progress and Partial rules of [Fold.FinalStatus].
	Status string
	// SignalResolved is the alert resolution of the first alert assessment
	// that carries it as a boolean.
	SignalResolved *bool
	// HealthChecks and MetricDeltas come from the last event carrying them.
	HealthChecks *HealthChecks
	MetricDeltas *MetricDeltas
}

// FoldAssessments folds a correlation's effectiveness events, given in
// (event_timestamp, event_id) order, starting from status no_data.
func FoldAssessments(events []Assessment) Fold {
	f := Fold{Status: StatusNoData}
	for _, ev := range events {
		var data map[string]json.RawMessage
		if json.Unmarshal(ev.Data, &data) != nil {
			continue // event_data is always an object; nothing to read otherwise
		}
		switch ev.Type {
		case TypeHealthAssessed:
			f.Health.apply(data)
			if hc, ok := healthChecks(data["health_checks"]); ok {
				f.HealthChecks = hc
			}
		case TypeAlertAssessed:
			f.Alert.apply(data)
			if f.SignalResolved == nil {
				f.SignalResolved = alertResolved(data["alert_resolution"])
			}
		case TypeMetricsAssessed:
			f.Metrics.apply(data)
			if md, ok := metricDeltas(data["metric_deltas"]); ok {
				f.MetricDeltas = md
			}
		case TypeHashComputed:
			pre, _ := str(data["pre_remediation_spec_hash"])
			post, _ := str(data["post_remediation_spec_hash"])
			if pre == "" && post == "" {
				continue
			}
			f.HashComparison = HashComparison{PreRemediationSpecHash: pre, PostRemediationSpecHash: post,
				HashMatch: boolean(data["hash_match"])}
			f.PostHash = post
		case TypeAssessmentComplete:
			if reason, ok := str(data["reason"]); ok && f.Status != StatusSpecDrift {
				f.Status = reason
			}
		}
	}
	return f
}

// apply reads one component assessment into c.
func (c *Component) apply(data map[string]json.RawMessage) {
	if b := boolean(data["assessed"]); b != nil && *b {
		c.Assessed = true
	}
	if s, ok := number(data["score"]); ok {
		c.Score = &s
	}
	if d, ok := str(data["details"]); ok {
		c.Details = d
	}
}

// Score is the weighted score: 0 for SpecDrift, else the weighted mean of the
// assessed components that have a score, nil when there is none. A
// component's weight goes to the others while it is not assessed.
func (f *Fold) Score() *float64 {
	if f.Status == StatusSpecDrift {
		zero := 0.0
		return &zero
	}
	var sum, weights float64
	var counted []float64
	for _, c := range []struct {
		Component
		w float64
	}{{f.Health, weightHealth}, {f.Alert, weightAlert}, {f.Metrics, weightMetrics}} {
		if c.Assessed && c.Score != nil {
			sum += c.w * *c.Score
			weights += c.w
			counted = append(counted, *c.Score)
		}
	}
	switch len(counted) {
	case 0:
		return nil
	case 1:
		// w·s/w is s mathematically but not always in float64 (25·⅓/25).
		return &counted[0]
	}
	s := sum / weights
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return nil // scores near the float64 limit; JSON cannot carry the sum
	}
	return &s
}

// FinalStatus is the status the effectiveness read answers: in_progress
// while no reason has come but a component is assessed, and Partial for a
// status the platform's client would refuse.
func (f *Fold) FinalStatus() string {
	s := f.Status
	if s == StatusNoData && (f.Health.Assessed || f.Alert.Assessed || f.Metrics.Assessed) {
		s = StatusInProgress
	}
	if !clientStatuses[s] {
		s = StatusPartial
	}
	return s
}

// Reason is the status a history entry shows as assessmentReason; empty
// when the status is not one of the reasons it names.
func (f *Fold) Reason() string {
	if reasonStatuses[f.Status] {
		return f.Status
	}
	return ""
}

// str returns a JSON string's value.
func str(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// boolean returns a JSON boolean's value, nil for anything else.
func boolean(raw json.RawMessage) *bool {
	var b bool
	switch string(raw) {
	case "true":
		b = true
	case "false":
	default:
		return nil
	}
	return &b
}

// number returns a JSON number's value (null, strings and the rest are not).
func number(raw json.RawMessage) (float64, bool) {
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		return 0, false
	}
	var n float64
	if json.Unmarshal(raw, &n) != nil || math.IsInf(n, 0) {
		return 0, false
	}
	return n, true
}

// integer returns a JSON number that is a whole number.
func integer(raw json.RawMessage) *int64 {
	n, ok := number(raw)
	if !ok || n != math.Trunc(n) || math.Abs(n) > 1<<53 {
		return nil
	}
	i := int64(n)
	return &i
}

// object decodes a JSON object; ok is false for anything else.
func object(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil, false
	}
	return m, true
}

func alertResolved(raw json.RawMessage) *bool {
	m, ok := object(raw)
	if !ok {
		return nil
	}
	return boolean(m["alert_resolved"])
}

func healthChecks(raw json.RawMessage) (*HealthChecks, bool) {
	m, ok := object(raw)
	if !ok {
		return nil, false
	}
	return &HealthChecks{
		PodRunning:    boolean(m["pod_running"]),
		ReadinessPass: boolean(m["readiness_pass"]),
		RestartDelta:  integer(m["restart_delta"]),
		CrashLoops:    boolean(m["crash_loops"]),
		OOMKilled:     boolean(m["oom_killed"]),
		PendingCount:  integer(m["pending_count"]),
	}, true
}

func metricDeltas(raw json.RawMessage) (*MetricDeltas, bool) {
	m, ok := object(raw)
	if !ok {
		return nil, false
	}
	num := func(key string) *float64 {
		if n, ok := number(m[key]); ok {
			return &n
		}
		return nil
	}
	return &MetricDeltas{
		CPUBefore: num("cpu_before"), CPUAfter: num("cpu_after"),
		MemoryBefore: num("memory_before"), MemoryAfter: num("memory_after"),
		LatencyP95BeforeMs: num("latency_p95_before_ms"), LatencyP95AfterMs: num("latency_p95_after_ms"),
		ErrorRateBefore: num("error_rate_before"), ErrorRateAfter: num("error_rate_after"),
		ThroughputBeforeRps: num("throughput_before_rps"), ThroughputAfterRps: num("throughput_after_rps"),
		NodeNotReadyBefore: num("node_not_ready_before"), NodeNotReadyAfter: num("node_not_ready_after"),
		NodeMemoryPressureBefore: num("node_memory_pressure_before"), NodeMemoryPressureAfter: num("node_memory_pressure_after"),
		NodeDiskPressureBefore: num("node_disk_pressure_before"), NodeDiskPressureAfter: num("node_disk_pressure_after"),
		PVPhaseFailedBefore: num("pv_phase_failed_before"), PVPhaseFailedAfter: num("pv_phase_failed_after"),
		PVPhasePendingBefore: num("pv_phase_pending_before"), PVPhasePendingAfter: num("pv_phase_pending_after"),
		PVUsageRatioBefore: num("pv_usage_ratio_before"), PVUsageRatioAfter: num("pv_usage_ratio_after"),
	}, true
}
