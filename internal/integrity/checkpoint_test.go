package integrity_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
)

// more appends n events to corr's chain.
func more(e *env, corr string, n, from int) []*audit.Event {
	e.t.Helper()
	base := time.Now().Add(-30 * time.Minute)
	evs := make([]*audit.Event, n)
	for i := range evs {
		evs[i] = request(e.t, corr, base.Add(time.Duration(from+i)*time.Second), fmt.Sprintf(`{"i":%d}`, from+i))
	}
	e.write(evs...)
	return evs
}

func (e *env) verifyFull(corr string) integrity.ChainReport {
	e.t.Helper()
	rep, err := e.svc.VerifyChain(context.Background(), corr, true)
	require.NoError(e.t, err)
	return rep
}

func (e *env) checkpointSeq(corr string) int64 {
	e.t.Helper()
	var seq int64
	require.NoError(e.t, e.st.Pool().QueryRow(context.Background(),
		`SELECT chain_seq FROM audit_chain_checkpoints WHERE correlation_id = $1`, corr).Scan(&seq))
	return seq
}

func TestVerifyChainStartsAfterItsCheckpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	chainOf(e, "rr-cp", 50)

	first := e.verify("rr-cp")
	require.True(t, first.IsValid, first.Message)
	assert.EqualValues(t, 50, first.EventsRead, "no checkpoint yet: every link is read")
	assert.Nil(t, first.VerifiedFrom)
	assert.EqualValues(t, 50, e.checkpointSeq("rr-cp"))

	more(e, "rr-cp", 7, 50)
	second := e.verify("rr-cp")
	require.True(t, second.IsValid, second.Message)
	assert.EqualValues(t, 7, second.EventsRead, "only the links past the checkpoint are read")
	require.NotNil(t, second.VerifiedFrom)
	assert.EqualValues(t, 50, second.VerifiedFrom.ChainSeq)
	assert.EqualValues(t, 57, second.TotalEvents)
	assert.EqualValues(t, 57, second.VerifiedEvents)
	assert.Contains(t, second.Message, `verify with "full": true`)

	third := e.verify("rr-cp")
	assert.True(t, third.IsValid)
	assert.Zero(t, third.EventsRead)
	assert.EqualValues(t, 57, third.TotalEvents)

	full := e.verifyFull("rr-cp")
	assert.True(t, full.IsValid)
	assert.EqualValues(t, 57, full.EventsRead)
	assert.Nil(t, full.VerifiedFrom)
}

func TestTamperingAfterTheCheckpointIsFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	chainOf(e, "rr-after", 20)
	require.True(t, e.verify("rr-after").IsValid)
	later := more(e, "rr-after", 5, 20)
	e.tamper(`UPDATE audit_events SET event_data = '{"i":999}' WHERE event_id = $1`, later[2].ID)

	rep := e.verify("rr-after")
	require.NotNil(t, rep.VerifiedFrom)
	assert.EqualValues(t, 5, rep.EventsRead)
	assert.False(t, rep.IsValid)
	require.Len(t, rep.TamperedEvents, 1)
	assert.Equal(t, later[2].ID.String(), rep.TamperedEvents[0].EventID)
	assert.EqualValues(t, 20, e.checkpointSeq("rr-after"), "a broken chain does not move the checkpoint")

	// A missing link right after the checkpoint is found too.
	e.tamper(`DELETE FROM audit_events WHERE event_id = $1`, later[0].ID)
	rep = e.verify("rr-after")
	assert.False(t, rep.IsValid)
	assert.Contains(t, rep.Message, "chain_seq 21 is missing")
}

func TestTamperingBeforeTheCheckpointIsFoundByAFullVerification(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	evs := chainOf(e, "rr-before", 20)
	require.True(t, e.verify("rr-before").IsValid)
	e.tamper(`UPDATE audit_events SET event_outcome = 'failure' WHERE event_id = $1`, evs[4].ID)

	// The incremental verification does not read the sealed prefix again
	// (documented in docs/integrity.md); the full one does.
	inc := e.verify("rr-before")
	assert.True(t, inc.IsValid)
	assert.Zero(t, inc.EventsRead)

	full := e.verifyFull("rr-before")
	assert.False(t, full.IsValid)
	require.Len(t, full.TamperedEvents, 1)
	assert.Equal(t, evs[4].ID.String(), full.TamperedEvents[0].EventID)
	assert.EqualValues(t, 20, full.EventsRead)
	assert.EqualValues(t, 20, e.checkpointSeq("rr-before"), "the checkpoint never moves back")
}

func TestACheckpointWithoutTheServersSealIsIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	evs := chainOf(e, "rr-forged", 10)
	require.True(t, e.verify("rr-forged").IsValid)
	e.tamper(`UPDATE audit_events SET event_outcome = 'failure' WHERE event_id = $1`, evs[3].ID)
	// Someone with write access moves the checkpoint's seal (or writes
	// their own): the service no longer trusts it and reads everything.
	e.tamper(`UPDATE audit_chain_checkpoints SET seal = 'AAAA' WHERE correlation_id = 'rr-forged'`)
	rep := e.verify("rr-forged")
	assert.Nil(t, rep.VerifiedFrom)
	assert.EqualValues(t, 10, rep.EventsRead)
	assert.False(t, rep.IsValid)

	// A checkpoint cannot be moved back or rewritten by the API role's
	// statements: the trigger refuses.
	_, err := e.st.Pool().Exec(context.Background(), `UPDATE audit_chain_checkpoints SET chain_seq = 1 WHERE correlation_id = 'rr-forged'`)
	require.ErrorContains(t, err, "append-only")
	_, err = e.st.Pool().Exec(context.Background(), `DELETE FROM audit_chain_checkpoints WHERE correlation_id = 'rr-forged'`)
	require.ErrorContains(t, err, "append-only")
}

func TestAVerificationRecordsCheckpointsAsItGoes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	integrity.SetCheckpointEvery(e.svc, 10)
	evs := chainOf(e, "rr-progress", 35)
	e.tamper(`UPDATE audit_events SET event_data = '{"i":-1}' WHERE event_id = $1`, evs[24].ID)

	rep := e.verify("rr-progress")
	assert.False(t, rep.IsValid)
	assert.EqualValues(t, 20, e.checkpointSeq("rr-progress"),
		"links 1..20 were proved intact before the broken one at 25, and stay proved")

	again := e.verify("rr-progress")
	require.NotNil(t, again.VerifiedFrom)
	assert.EqualValues(t, 20, again.VerifiedFrom.ChainSeq)
	assert.EqualValues(t, 15, again.EventsRead)
	assert.False(t, again.IsValid, "the broken link past the checkpoint is still found")
	assert.EqualValues(t, 35, again.TotalEvents)
}
