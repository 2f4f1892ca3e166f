package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/testenv"
)

// Guards of smallSQL, and what each replacement takes away.
const (
	smallHeadGuard  = "AND a.last_seq = n.es AND a.last_hash = n.eh AND " + cellUnchanged
	smallCountGuard = "= cardinality($30::text[]) AS ok"
)

// smallSQLWithout returns smallSQL with one of its guards edited out.
func smallSQLWithout(t *testing.T, guard string) string {
	t.Helper()
	require.Contains(t, smallSQL, guard)
	switch guard {
	case smallHeadGuard: // a remembered head (and its cell) moves whatever it is now
		return strings.Replace(smallSQL, guard, "AND n.eh IS NOT NULL", 1)
	case smallCountGuard: // the writes go ahead when some heads did not move
		return strings.Replace(smallSQL, guard, ">= 0 AND cardinality($30::text[]) > 0 AS ok", 1)
	}
	t.Fatalf("no such guard: %s", guard)
	return ""
}

// A commit of events on two chains (a, b) linked to the heads this process
// remembers races a writer of b alone. The winner holds its transaction
// open (b's chain lock and head row with it); the loser, started
// meanwhile, takes a's lock, moves a's head and waits for b's lock inside
// its one statement, whose snapshot is older than the winner's commit.
// Once the winner commits, the loser must write nothing at all: not its
// event on b (b's head is no longer the one it linked to), and not its
// event on a either, nor a's head (the commit is atomic). It fails by the
// marker (guardFailed), and the store would take the reading path.
//
// With the heads' guard edited out, the head's append-only trigger
// (migration 00002) refuses the rewind of b; with that trigger disabled
// too, b forks: two events with one chain_seq. With the count guard edited
// out (the writes go ahead when one head of two moved), b's head stays the
// winner's while the loser's event on b is stored on top of the same
// predecessor: b forks, and a's head moved with it.
func TestASmallCommitThatLostTheRaceForOneOfItsHeadsWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := Open(ctx, testenv.NewDatabase(t), Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)

	for _, c := range []struct {
		name    string
		without string // the guard edited out, if any
		trigger bool
	}{{"guarded", "", true}, {"nohead", smallHeadGuard, true}, {"nohead-notrigger", smallHeadGuard, false}, {"nocount", smallCountGuard, true}} {
		a, b := "rr-srace-a-"+c.name, "rr-srace-b-"+c.name
		if !c.trigger {
			_, err := st.pool.Exec(ctx, `ALTER TABLE audit_chain_heads DISABLE TRIGGER audit_chain_heads_forward`)
			require.NoError(t, err)
		}
		// Heads to race for.
		_, err = st.InsertEvents(ctx, []*audit.Event{overlapEvent(a, time.Now().Add(-time.Minute)), overlapEvent(b, time.Now().Add(-time.Minute))})
		require.NoError(t, err)
		before := st.heads.get([]string{a, b})
		require.Equal(t, []int64{1, 1}, before.seqs)

		statement := func(events ...*audit.Event) (string, []any) {
			canon, err := canonicalForms(events)
			require.NoError(t, err)
			expected := st.heads.get(corrsOf(events))
			args, err := smallArgs(events, expected, linkEvents(st.hasher, expected, events, canon), 1)
			require.NoError(t, err)
			if c.without != "" {
				return smallSQLWithout(t, c.without), args
			}
			return smallSQL, args
		}
		tx, err := st.pool.Begin(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		sql, args := statement(overlapEvent(b, time.Now()))
		var ok bool
		require.NoError(t, tx.QueryRow(ctx, sql, args...).Scan(&ok))
		require.True(t, ok)

		conn, err := st.pool.Acquire(ctx)
		require.NoError(t, err)
		var pid int
		require.NoError(t, conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
		done := make(chan error, 1)
		go func() {
			sql, args := statement(overlapEvent(a, time.Now()), overlapEvent(a, time.Now()), overlapEvent(b, time.Now()))
			var ok bool
			done <- conn.QueryRow(ctx, sql, args...).Scan(&ok)
		}()
		require.Eventually(t, func() bool {
			select {
			case err := <-done:
				require.Failf(t, "the loser did not wait for the winner", "%s: %v", c.name, err)
			default:
			}
			var waiting bool
			err := st.pool.QueryRow(ctx, `SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting)
			return err == nil && waiting
		}, 30*time.Second, 5*time.Millisecond, "the loser never waited for the winner")
		require.NoError(t, tx.Commit(ctx))
		lost := <-done
		conn.Release()

		count := func(corr string) (events, seqs int, head int64) {
			require.NoError(t, st.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT chain_seq),
				(SELECT last_seq FROM audit_chain_heads WHERE correlation_id = $1) FROM audit_events WHERE correlation_id = $1`, corr).
				Scan(&events, &seqs, &head))
			return events, seqs, head
		}
		aEvents, _, aHead := count(a)
		bEvents, bSeqs, bHead := count(b)
		switch c.name {
		case "guarded":
			require.Error(t, lost)
			assert.True(t, guardFailed(lost), "%v", lost)
			assert.Equal(t, 1, aEvents, "the loser wrote on the chain it had locked first")
			assert.EqualValues(t, 1, aHead, "the loser moved a head")
			assert.Equal(t, 2, bEvents)
			assert.Equal(t, 2, bSeqs)
			assert.EqualValues(t, 2, bHead)
			storedRollupsMatch(t, st)
		case "nohead":
			require.Error(t, lost)
			assert.Contains(t, lost.Error(), "append-only")
			assert.Equal(t, 1, aEvents)
			assert.Equal(t, 2, bEvents)
		case "nohead-notrigger", "nocount":
			// What the guarded case's assertions catch when a guard is gone.
			require.NoError(t, lost)
			assert.Equal(t, 3, aEvents)
			assert.Equal(t, 3, bEvents)
			assert.Equal(t, 2, bSeqs, "forked: two events share a chain_seq")
		}
		if !c.trigger {
			_, err := st.pool.Exec(ctx, `ALTER TABLE audit_chain_heads ENABLE TRIGGER audit_chain_heads_forward`)
			require.NoError(t, err)
		}
		st.heads.forget([]string{a, b})
	}
}

// Small commits take smallSQL: one statement, no reading of heads, and the
// same chains, id rows and rollups as the other paths leave.
func TestASmallCommitTakesTheSmallStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	catcher := &sqlCounter{}
	st, err := Open(ctx, testenv.NewDatabase(t), Options{MaxConns: 2, Tracer: catcher})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)
	v := &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 30}
	ids := 0
	for i := range 6 {
		// 2 to 7 events over 1 to 3 chains, the first commit on new chains;
		// every other event without an id (the server makes it).
		var events []*audit.Event
		for j := range 2 + i {
			corr := fmt.Sprintf("rr-small-stmt-%d", j%(1+i%3))
			e := overlapEvent(corr, time.Now())
			if j%2 == 1 {
				var fe audit.FieldErrors
				e, fe, err = v.DecodeOne(fmt.Appendf(nil, `{"version":"1.0","event_type":"gateway.signal.received","event_timestamp":%q,
					"event_category":"gateway","event_action":"received","event_outcome":"success",
					"correlation_id":%q,"event_data":{"n":%d},"namespace":"ns-%d"}`, time.Now().UTC().Format(time.RFC3339Nano), corr, j, i))
				require.NoError(t, err)
				require.Empty(t, fe)
				require.True(t, e.ServerID())
			} else {
				ids++
			}
			events = append(events, e)
		}
		n, err := st.InsertEvents(ctx, events)
		require.NoError(t, err)
		require.EqualValues(t, len(events), n)
	}
	assert.Equal(t, map[string]int{smallSQL: 6}, catcher.counts(), "statements sent")
	var stored int
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT count(*) FROM audit_event_ids`).Scan(&stored))
	assert.Equal(t, ids, stored, "id rows: the client-given ids only")
	var stored64 int64
	for c := range 3 {
		stored64 += verifyChains(t, st, fmt.Sprintf("rr-small-stmt-%d", c))
	}
	assert.EqualValues(t, 2+3+4+5+6+7, stored64)
	storedRollupsMatch(t, st)
}
