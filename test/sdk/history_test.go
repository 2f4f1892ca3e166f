package sdk

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/client"
)

func TestRemediationHistoryAndEffectivenessAgainstTheServer(t *testing.T) {
	t.Parallel()
	srv := startLiveServer(t)
	c, _ := newSpecClient(t, srv.url)
	ctx := context.Background()
	now := time.Now().UTC()

	rem := newEvent("rr-hist-1")
	rem.Type, rem.Category, rem.Action = "remediation.workflow_created", client.CategoryOrchestration, "created"
	rem.Timestamp = now.Add(-2 * time.Hour)
	rem.Data = map[string]any{"target_resource": "/Node/n1", "pre_remediation_spec_hash": "H",
		"signal_type": "alert", "action_type": "CordonNode"}
	health := newEvent("rr-hist-1")
	health.Type, health.Category, health.Action = "effectiveness.health.assessed", client.CategoryEffectiveness, "assessed"
	health.Timestamp = now.Add(-time.Hour)
	health.Data = map[string]any{"assessed": true, "score": 0.5,
		"health_checks": map[string]any{"pod_running": true, "restart_delta": 3}}
	done := health
	done.Type, done.Timestamp = "effectiveness.assessment.completed", now.Add(-50*time.Minute)
	done.Data = map[string]any{"reason": "Full"}
	_, err := c.WriteEvents(ctx, []client.Event{rem, health, done})
	require.NoError(t, err)

	h, err := c.RemediationHistory(ctx, client.HistoryQuery{TargetKind: "Node", TargetName: "n1", CurrentSpecHash: "H",
		Tier1Window: 3 * time.Hour, Tier2Window: 48 * time.Hour})
	require.NoError(t, err)
	assert.Equal(t, "/Node/n1", h.TargetResource)
	assert.True(t, h.RegressionDetected)
	assert.Equal(t, "3h0m0s", h.Tier1.Window)
	assert.Equal(t, "48h0m0s", h.Tier2.Window)
	require.Len(t, h.Tier1.Chain, 1)
	assert.Empty(t, h.Tier2.Chain)
	e := h.Tier1.Chain[0]
	assert.Equal(t, "rr-hist-1", e.RemediationUID)
	assert.Equal(t, client.HashMatchPreRemediation, e.HashMatch)
	assert.Equal(t, "CordonNode", e.ActionType)
	assert.Equal(t, "Full", e.AssessmentReason)
	require.NotNil(t, e.EffectivenessScore)
	assert.InDelta(t, 0.5, *e.EffectivenessScore, 1e-9)
	require.NotNil(t, e.HealthChecks)
	assert.Equal(t, true, *e.HealthChecks.PodRunning)
	assert.Equal(t, int64(3), *e.HealthChecks.RestartDelta)
	assert.Nil(t, e.HealthChecks.CrashLoops)
	assert.Nil(t, e.SignalResolved)
	assert.NotNil(t, e.SideEffects)
	assert.WithinDuration(t, rem.Timestamp, e.CompletedAt, time.Millisecond)

	eff, err := c.Effectiveness(ctx, "rr-hist-1")
	require.NoError(t, err)
	assert.Equal(t, "Full", eff.AssessmentStatus)
	require.NotNil(t, eff.Score)
	assert.InDelta(t, 0.5, *eff.Score, 1e-9)
	assert.True(t, eff.Components.HealthAssessed)
	assert.Nil(t, eff.Components.AlertScore)
	assert.WithinDuration(t, time.Now(), eff.ComputedAt, time.Minute)

	_, err = c.Effectiveness(ctx, "rr-never")
	assert.True(t, errors.Is(err, client.ErrNotFound), "%v", err)

	_, err = c.RemediationHistory(badRequest(ctx), client.HistoryQuery{TargetName: "n1", CurrentSpecHash: "H", Tier1Window: time.Hour, Tier2Window: time.Hour})
	var p *client.Problem
	require.True(t, errors.As(err, &p), "%v", err)
	assert.Equal(t, "validation-error", p.Slug())
	assert.Contains(t, p.FieldErrors, "targetKind")
	assert.Contains(t, p.FieldErrors, "tier2Window")
}
