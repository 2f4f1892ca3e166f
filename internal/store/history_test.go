package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/remediation"
)

// remediationAt is a remediation.workflow_created event of corr with data.
func remediationAt(corr string, ts time.Time, data string) *audit.Event {
	e := newEvent(corr, ts, 30)
	e.Type, e.Category, e.Action, e.ActorID, e.ResourceType = "remediation.workflow_created", "orchestration", "created", "orchestration-service", "orchestration"
	e.Data = json.RawMessage(data)
	return e
}

func TestRemediationEventsSelectsAndKeepsTheNewest(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	target := `"target_resource":"ns/Pod/p"`
	var events []*audit.Event
	for i := range 5 { // r0 (oldest) … r4, all matching on the pre hash
		events = append(events, remediationAt("r"+string(rune('0'+i)), now.Add(-time.Duration(10-i)*time.Hour),
			`{`+target+`,"pre_remediation_spec_hash":"H"}`))
	}
	other := remediationAt("other", now.Add(-time.Hour), `{`+target+`,"pre_remediation_spec_hash":"X"}`)
	numeric := remediationAt("numeric", now.Add(-time.Hour), `{`+target+`,"pre_remediation_spec_hash":7}`)
	notString := remediationAt("array", now.Add(-time.Hour), `{"target_resource":["ns/Pod/p"],"pre_remediation_spec_hash":"H"}`)
	clustered := remediationAt("k1", now.Add(-2*time.Hour), `{`+target+`,"pre_remediation_spec_hash":"H"}`)
	clustered.ClusterID = "k1"
	// other matches through a post hash, but only on an effectiveness event.
	post := newEvent("other", now.Add(-30*time.Minute), 30)
	post.Category, post.Data = "effectiveness", json.RawMessage(`{"post_remediation_spec_hash":"H"}`)
	notEff := newEvent("numeric", now.Add(-30*time.Minute), 30) // gateway category: not an assessment
	notEff.Data = json.RawMessage(`{"post_remediation_spec_hash":"H"}`)
	_, err := st.InsertEvents(ctx, append(events, other, numeric, notString, clustered, post, notEff))
	require.NoError(t, err)

	ids := func(evs [][]remediation.RemediationEvent) []string {
		require.Len(t, evs, 1)
		out := []string{}
		for _, e := range evs[0] {
			out = append(out, e.CorrelationID)
		}
		return out
	}
	q := remediation.RemediationQuery{Target: "ns/Pod/p", SpecHash: "H", From: now.Add(-24 * time.Hour), To: now, Limit: 100}
	got, err := st.RemediationEvents(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, []string{"r0", "r1", "r2", "r3", "r4", "k1", "other"}, ids(got), "oldest first; a number is not the hash, an array not the target")

	q.Limit = 3
	got, err = st.RemediationEvents(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, []string{"r4", "k1", "other"}, ids(got), "the newest are kept, still oldest first")

	q.Limit, q.ClusterID = 100, "k1"
	got, err = st.RemediationEvents(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, []string{"k1"}, ids(got))

	q.ClusterID, q.From, q.To = "", events[1].Timestamp.Std(), events[3].Timestamp.Std()
	got, err = st.RemediationEvents(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, []string{"r1", "r2"}, ids(got), "From inclusive, To exclusive")

	q.From = q.To
	got, err = st.RemediationEvents(ctx, q)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Empty(t, got[0], "an empty window")

	// Several queries in one round trip answer in their order.
	q1, q2 := q, q
	q1.From, q1.To = now.Add(-24*time.Hour), now
	q2.From, q2.To = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
	both, err := st.RemediationEvents(ctx, q1, q2, q1)
	require.NoError(t, err)
	require.Len(t, both, 3)
	assert.Len(t, both[0], 7)
	assert.Empty(t, both[1])
	assert.Len(t, both[2], 7)

	as, err := st.AssessmentEvents(ctx, []string{"other", "numeric", "nobody"})
	require.NoError(t, err)
	require.Len(t, as, 1, "only effectiveness events")
	assert.Equal(t, "other", as[0].CorrelationID)
}
