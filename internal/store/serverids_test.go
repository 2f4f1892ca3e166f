package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/store"
)

// serverMade decodes an event sent without event_id, as POST /events does:
// the server makes its id (audit.NewServerID).
func serverMade(t *testing.T, corr string, ts time.Time) *audit.Event {
	t.Helper()
	v := &audit.Validator{MaxAge: 400 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 30}
	ev, fe, err := v.DecodeOne(fmt.Appendf(nil, `{"version":"1.0","event_type":"gateway.signal.received",
		"event_timestamp":%q,"event_category":"gateway","event_action":"received","event_outcome":"success",
		"correlation_id":%q,"event_data":{"signal":"OOMKilled","n":1.50}}`, ts.UTC().Format(time.RFC3339Nano), corr))
	require.NoError(t, err)
	require.Empty(t, fe)
	require.True(t, ev.ServerID())
	return ev
}

func idRows(t *testing.T, st *store.Store, ids ...uuid.UUID) int {
	t.Helper()
	var n int
	require.NoError(t, st.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM audit_event_ids WHERE event_id = ANY($1)`, ids).Scan(&n))
	return n
}

func idsOf(events []*audit.Event) []uuid.UUID {
	out := make([]uuid.UUID, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

func TestServerMadeIDsKeepNoIDRowAndAreFoundByID(t *testing.T) {
	t.Parallel()
	st, url := newStore(t)
	ctx := context.Background()
	_, err := st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 3)
	require.NoError(t, err)

	// One event (the one-round-trip commit), then the next of its chain,
	// then a small batch mixing a client-given id, then a batch big enough
	// for COPY.
	first := serverMade(t, "rr-sid", time.Now().Add(-time.Hour))
	next := serverMade(t, "rr-sid", time.Now().Add(-time.Minute))
	client := newEvent("rr-sid", time.Now(), 30)
	small := []*audit.Event{serverMade(t, "rr-sid-2", time.Now()), client, serverMade(t, "rr-sid-3", time.Now().AddDate(0, 0, -3))}
	var big []*audit.Event
	for i := range 250 {
		big = append(big, serverMade(t, fmt.Sprintf("rr-sid-big-%d", i%40), time.Now().Add(-time.Duration(i)*time.Minute)))
	}
	var all []*audit.Event
	for _, batch := range [][]*audit.Event{{first}, {next}, small, big} {
		n, err := st.InsertEvents(ctx, batch)
		require.NoError(t, err)
		require.EqualValues(t, len(batch), n)
		all = append(all, batch...)
	}
	assert.Equal(t, 1, idRows(t, st, idsOf(all)...), "only the client-given id has a row")
	assert.Equal(t, 1, idRows(t, st, client.ID))

	// Found by id, from this store and from another replica's.
	other := openStore(t, url)
	for _, s := range []*store.Store{st, other} {
		for _, e := range []*audit.Event{first, next, small[0], client, small[2], big[0], big[249]} {
			got, err := s.GetEvent(ctx, e.ID)
			require.NoError(t, err, e.ID)
			assert.Equal(t, e.CorrelationID, got.CorrelationID)
			assert.Equal(t, e.Date, got.Date)
			assert.Equal(t, e.Hash, got.Hash)
		}
	}
	// A v7 id never stored, on a date with events: not found.
	_, err = other.GetEvent(ctx, audit.NewServerID(first.Timestamp))
	assert.ErrorIs(t, err, query.ErrNotFound)

	// The chains verify across the three kinds of commit.
	assert.EqualValues(t, 3, verifyChain(t, other, "rr-sid"))
}

func TestAClientRepeatingAServerMadeIDIsARetryOrAConflict(t *testing.T) {
	t.Parallel()
	st, url := newStore(t)
	ctx := context.Background()
	_, err := st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 3)
	require.NoError(t, err)
	orig := serverMade(t, "rr-sid-retry", time.Now().Add(-time.Hour))
	_, err = st.InsertEvents(ctx, []*audit.Event{orig})
	require.NoError(t, err)
	// This store remembers the chain head (its next commit takes one round
	// trip); another replica's does not.
	other := openStore(t, url)

	for _, s := range []struct {
		name string
		st   *store.Store
	}{{"same replica", st}, {"another replica", other}} {
		t.Run(s.name, func(t *testing.T) {
			t.Run("the same content is a retry", func(t *testing.T) {
				n, err := s.st.InsertEvents(ctx, []*audit.Event{copyOf(orig)})
				require.NoError(t, err)
				assert.Zero(t, n)
				assert.Equal(t, 1, countRows(t, s.st, orig))
				assert.Zero(t, idRows(t, s.st, orig.ID), "a retry adds no id row")
			})
			t.Run("other content on the same date is a conflict", func(t *testing.T) {
				forged := copyOf(orig)
				forged.Data = json.RawMessage(`{"signal":"forged"}`)
				_, err := s.st.InsertEvents(ctx, []*audit.Event{newEvent("rr-sid-retry", time.Now(), 30), forged})
				var conflict *audit.ConflictError
				require.ErrorAs(t, err, &conflict)
				assert.Equal(t, []int{1}, conflict.Indices)
			})
			t.Run("other content in a new chain on the same date is a conflict", func(t *testing.T) {
				// Nothing in the chain heads betrays it: only the event's
				// own primary key, then the reading path's probe.
				forged := copyOf(orig)
				forged.CorrelationID = "rr-sid-forger-" + s.name
				_, err := s.st.InsertEvents(ctx, []*audit.Event{forged})
				var conflict *audit.ConflictError
				require.ErrorAs(t, err, &conflict)
				assert.Equal(t, []int{0}, conflict.Indices)
			})
			t.Run("the same id on another date is a conflict", func(t *testing.T) {
				forged := copyOf(orig)
				ts := time.Now().AddDate(0, 0, -20)
				forged.Timestamp, forged.Date = audit.NewTime(ts), audit.DateOf(ts)
				forged.CorrelationID = "rr-sid-forger2-" + s.name
				_, err := s.st.InsertEvents(ctx, []*audit.Event{forged})
				var conflict *audit.ConflictError
				require.ErrorAs(t, err, &conflict)
				assert.Equal(t, []int{0}, conflict.Indices)
			})
			assert.Equal(t, 1, countRows(t, s.st, orig), "the original is the only row")
			assert.Zero(t, idRows(t, s.st, orig.ID))
			got, err := s.st.GetEvent(ctx, orig.ID)
			require.NoError(t, err)
			assert.Equal(t, orig.Hash, got.Hash)
		})
	}
}

func TestAParentGivenByServerMadeIDIsFound(t *testing.T) {
	t.Parallel()
	st, url := newStore(t)
	ctx := context.Background()
	_, err := st.EnsurePartitions(ctx, time.Now().AddDate(0, -2, 0), 4)
	require.NoError(t, err)
	recent := serverMade(t, "rr-sid-parent", time.Now().Add(-time.Hour))
	old := serverMade(t, "rr-sid-parent", time.Now().AddDate(0, 0, -40)) // outside the 8-day window
	_, err = st.InsertEvents(ctx, []*audit.Event{old, recent})
	require.NoError(t, err)
	require.Zero(t, idRows(t, st, old.ID, recent.ID))

	// Another replica's store knows neither (no recent-events memory).
	other := openStore(t, url)
	for _, p := range []*audit.Event{recent, old} {
		child := childOf(p, "rr-sid-parent", time.Now())
		require.NoError(t, other.ResolveParents(ctx, []*audit.Event{child}), "ResolveParents")
		require.NotNil(t, child.ParentDate)
		assert.Equal(t, p.Date.Std(), child.ParentDate.Std())

		// And on the write path itself, unresolved (the chain's lookup),
		// the child server-made too.
		child2 := serverMade(t, "rr-sid-parent-2", time.Now())
		id := p.ID
		child2.ParentID = &id
		third := openStore(t, url)
		n, err := third.InsertEvents(ctx, []*audit.Event{child2})
		require.NoError(t, err)
		assert.EqualValues(t, 1, n)
		got, err := third.GetEvent(ctx, child2.ID)
		require.NoError(t, err)
		require.NotNil(t, got.ParentDate)
		assert.Equal(t, p.Date.Std(), got.ParentDate.Std())
	}

	// A v7 id never stored is a missing parent, not a parent on its date.
	ghost := audit.NewServerID(recent.Timestamp)
	child := newEvent("rr-sid-parent", time.Now(), 30)
	child.ParentID = &ghost
	var missing *audit.MissingParentError
	require.ErrorAs(t, other.ResolveParents(ctx, []*audit.Event{child}), &missing)
	_, err = openStore(t, url).InsertEvents(ctx, []*audit.Event{child})
	require.ErrorAs(t, err, &missing)
}

// A client's v7 id on another date than it names (an event stamped days
// before it was sent): the id table holds it, and stays the authority over a
// row of the same id on the named date (one written around it, as before
// migration 00006 allowed).
func TestAClientV7IDOnAnotherDateThanItNamesResolvesThroughItsRow(t *testing.T) {
	t.Parallel()
	st, url := newStore(t)
	ctx := context.Background()
	_, err := st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 3)
	require.NoError(t, err)
	ev := newEvent("rr-v7-late", time.Now().AddDate(0, 0, -3), 30)
	ev.ID = uuid.Must(uuid.NewV7()) // names today
	n, err := st.InsertEvents(ctx, []*audit.Event{ev})
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Equal(t, 1, idRows(t, st, ev.ID))

	other := openStore(t, url)
	got, err := other.GetEvent(ctx, ev.ID)
	require.NoError(t, err)
	assert.Equal(t, ev.Date, got.Date)

	_, err = st.Pool().Exec(ctx, `INSERT INTO audit_events (event_id, event_date, event_timestamp, version, event_type,
		event_category, event_action, event_outcome, correlation_id, event_data, actor_type, actor_id,
		resource_type, resource_id, severity, retention_days, chain_seq, event_hash, previous_event_hash, hash_algorithm)
		VALUES ($1, $2, $3, '1.0', 't', 'gateway', 'a', 'success', 'rr-v7-forger', '{}', 'service', 's',
		'gateway', 'r', 'info', 30, 1, '\x00', '\x00', 'sha256')`, ev.ID, time.Now().UTC().Truncate(24*time.Hour), time.Now())
	require.NoError(t, err)
	got, err = other.GetEvent(ctx, ev.ID)
	require.NoError(t, err)
	assert.Equal(t, "rr-v7-late", got.CorrelationID, "the id table's row, not the one on the date the id names")
	child := childOf(ev, "rr-v7-late", time.Now())
	require.NoError(t, openStore(t, url).ResolveParents(ctx, []*audit.Event{child}))
	assert.Equal(t, ev.Date.Std(), child.ParentDate.Std())
	forged := copyOf(ev)
	forged.Data = []byte(`{"x":1}`)
	_, err = other.InsertEvents(ctx, []*audit.Event{forged})
	var conflict *audit.ConflictError
	require.ErrorAs(t, err, &conflict)
}
