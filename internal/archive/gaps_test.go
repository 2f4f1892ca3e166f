package archive_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
)

// A chain whose links in the month are not consecutive: chain_seq 1–3 in
// the old month, 4 stamped now (this month), then 5–7 stamped back in the
// old month (late events). The month holds 1–3 and 5–7, two pieces of one
// chain; it must archive, verify, read back whole and verify as a chain.
// Before the manifest had pieces, the job's read-back refused the month
// ("does not link to chain_seq 3") on every run, and with it every later
// month.
func TestChainWithAGapInTheMonthIsArchived(t *testing.T) {
	e := newEnv(t)
	e.fill(10, 5)
	ctx := context.Background()
	corr := "rr-gapped-" + uuid.NewString()[:8]
	base := e.month.Add(3*24*time.Hour + 7*time.Minute)
	for s := range 7 {
		ts := base.Add(time.Duration(s) * time.Minute)
		if s == 3 {
			ts = time.Now().UTC().Add(-time.Hour)
		}
		ev := &audit.Event{
			ID: uuid.New(), Version: "1.0", Type: "workflowexecution.step.completed", Category: "workflowexecution",
			Action: "step", Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Outcome: "success",
			CorrelationID: corr, Data: json.RawMessage(`{"step":1}`), ActorType: "service", ActorID: "we",
			ResourceType: "pod", ResourceID: corr, Severity: "info", RetentionDays: 2555,
		}
		// One request each, so each link is committed after the one before.
		_, err := e.st.InsertEvents(ctx, []*audit.Event{ev})
		require.NoError(t, err)
	}

	a := e.archiver(fileTarget(t, t.TempDir()))
	rep, err := a.Run(ctx, time.Time{})
	require.NoError(t, err)
	mr := e.monthOf(rep)
	require.True(t, mr.Dropped, "the month is archived and dropped")

	m, err := a.Verify(ctx, e.month)
	require.NoError(t, err)
	var pieces []archive.Chain
	for _, c := range m.Correlations {
		if c.CorrelationID == corr {
			pieces = append(pieces, c)
		}
	}
	require.Len(t, pieces, 2, "one manifest entry per run of consecutive links")
	assert.Equal(t, [2]int64{1, 3}, [2]int64{pieces[0].FirstSeq, pieces[0].LastSeq})
	assert.Equal(t, [2]int64{5, 7}, [2]int64{pieces[1].FirstSeq, pieces[1].LastSeq})

	rd := &archive.Reader{Source: e.st, Objects: a.Objects, PublicKey: e.signer.PublicKey()}
	tl := archive.TimelineStore{TimelineSource: e.st, Reader: rd}
	evs, err := tl.CorrelationEvents(ctx, corr, 100)
	require.NoError(t, err)
	assert.Len(t, evs, 7, "six archived links and one in PostgreSQL")
	svc := integrity.NewService(archive.ChainStore{Store: e.st, Reader: rd}, e.hasher, e.signer)
	vr, err := svc.VerifyChain(ctx, corr, true)
	require.NoError(t, err)
	assert.True(t, vr.IsValid, vr.Message)
	assert.EqualValues(t, 7, vr.TotalEvents)
}
