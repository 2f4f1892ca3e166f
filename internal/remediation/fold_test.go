package remediation

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func assessments(t *testing.T, pairs ...any) []Assessment {
	t.Helper()
	var out []Assessment
	for i := 0; i+1 < len(pairs); i += 2 {
		raw, err := json.Marshal(pairs[i+1])
		require.NoError(t, err)
		out = append(out, Assessment{Type: pairs[i].(string), Data: raw})
	}
	return out
}

func TestScoreOfOneComponentIsItsOwnScore(t *testing.T) {
	for _, typ := range []string{TypeHealthAssessed, TypeAlertAssessed, TypeMetricsAssessed} {
		for _, s := range []float64{0.75, 0.1, 0.3, 1.0 / 3} {
			f := FoldAssessments(assessments(t, typ, map[string]any{"assessed": true, "score": s}))
			require.NotNil(t, f.Score())
			assert.Equal(t, s, *f.Score(), "%s %v", typ, s)
		}
	}
}

func TestScoreThatJSONCannotCarryIsNull(t *testing.T) {
	f := FoldAssessments(assessments(t,
		TypeHealthAssessed, map[string]any{"assessed": true, "score": 1e308},
		TypeAlertAssessed, map[string]any{"assessed": true, "score": 1e308}))
	assert.Nil(t, f.Score())
}

func TestFoldIgnoresWrongTypes(t *testing.T) {
	f := FoldAssessments(assessments(t,
		TypeHealthAssessed, map[string]any{"assessed": "yes", "score": "0.5", "details": 3,
			"health_checks": map[string]any{"pod_running": "true", "restart_delta": 1.5, "pending_count": 2}},
		TypeAlertAssessed, map[string]any{"alert_resolution": map[string]any{"alert_resolved": "true"}},
		TypeAlertAssessed, map[string]any{"alert_resolution": map[string]any{"alert_resolved": false}},
		TypeHashComputed, map[string]any{"pre_remediation_spec_hash": 1, "post_remediation_spec_hash": 2},
	))
	assert.False(t, f.Health.Assessed)
	assert.Nil(t, f.Health.Score)
	assert.Empty(t, f.Health.Details)
	require.NotNil(t, f.HealthChecks)
	assert.Equal(t, HealthChecks{PendingCount: ptr(int64(2))}, *f.HealthChecks)
	require.NotNil(t, f.SignalResolved, "the first event that carries a boolean decides")
	assert.False(t, *f.SignalResolved)
	assert.Equal(t, HashComparison{}, f.HashComparison)
	assert.Equal(t, StatusNoData, f.FinalStatus())
}

func ptr[T any](v T) *T { return &v }

func TestParseContextDefaults(t *testing.T) {
	p, fe := ParseContext(url.Values{"targetKind": {"Node"}, "targetName": {"n"}, "currentSpecHash": {"h"}})
	require.Nil(t, fe)
	assert.Equal(t, "/Node/n", p.Target())
	assert.Equal(t, 24*time.Hour, p.Tier1Window)
	assert.Equal(t, 2160*time.Hour, p.Tier2Window)
}
