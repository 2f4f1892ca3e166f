package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/store"
)

// apiForms returns every stored event as the API writes it (its JSON), by
// event_id.
func apiForms(t *testing.T, st *store.Store) map[string]string {
	t.Helper()
	evs, err := st.ListEvents(context.Background(), query.EventFilter{}, query.Page{Limit: 1000})
	require.NoError(t, err)
	out := make(map[string]string, len(evs))
	for _, e := range evs {
		b, err := json.Marshal(e)
		require.NoError(t, err)
		out[e.ID.String()] = string(b)
	}
	return out
}

// storedColumns is one row's columns that migration 00005 changes, as text.
type storedColumns struct {
	ID                                           string
	ActorType, ActorID, ResourceType, ResourceID *string
	Hash, PreviousHash                           string
}

func readStoredColumns(t *testing.T, st *store.Store, hashAsText string) map[string]storedColumns {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT event_id::text, actor_type, actor_id, resource_type, resource_id, `+
		hashAsText+` FROM audit_events`)
	require.NoError(t, err)
	cols, err := pgx.CollectRows(rows, pgx.RowToStructByPos[storedColumns])
	require.NoError(t, err)
	out := map[string]storedColumns{}
	for _, c := range cols {
		out[c.ID] = c
	}
	return out
}

// TestMigration00005KeepsEveryEventAsTheAPIReturnsIt writes events under
// 00005, migrates down to 00004 (whose form they must then have), writes
// more as 00004's store did, migrates up again, and checks every event reads
// exactly as before and every chain still verifies.
func TestMigration00005KeepsEveryEventAsTheAPIReturnsIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newStore(t)
	now := time.Now().UTC().Add(-time.Hour)

	defaults := newEvent("rr-mig-a", now, 30)
	explicit := newEvent("rr-mig-a", now.Add(time.Second), 30)
	explicit.ActorType, explicit.ActorID, explicit.ResourceType, explicit.ResourceID = "user", "alice", "Pod", "web-1"
	explicit.Namespace, explicit.ClusterID, explicit.ErrorCode, explicit.ErrorMessage = "prod", "eu-1", "E1", "boom"
	elsewhere := newEvent("rr-mig-b", now.Add(2*time.Second), 30)
	elsewhere.Category = "workflow" // gateway-service and gateway are values here
	child := childOf(defaults, "rr-mig-a", now.Add(3*time.Second))
	child.ActorType = "controller"
	_, err := st.InsertEvents(ctx, []*audit.Event{defaults, explicit, elsewhere, child})
	require.NoError(t, err)
	before := apiForms(t, st)
	require.Len(t, before, 4)

	_, err = st.MigrateDownTo(ctx, 4)
	require.NoError(t, err)
	t.Run("down restores the form of 00004", func(t *testing.T) {
		cols := readStoredColumns(t, st, "event_hash, previous_event_hash")
		for id, js := range before {
			var e audit.Event
			require.NoError(t, json.Unmarshal([]byte(js), &e))
			c := cols[id]
			for _, f := range []struct {
				stored *string
				api    string
			}{{c.ActorType, e.ActorType}, {c.ActorID, e.ActorID}, {c.ResourceType, e.ResourceType}, {c.ResourceID, e.ResourceID}} {
				require.NotNil(t, f.stored, "%s: every default is stored", id)
				assert.Equal(t, f.api, *f.stored, id)
			}
			assert.Equal(t, e.Hash, c.Hash, "%s: hex text", id)
			assert.Equal(t, *e.PreviousHash, c.PreviousHash, id)
		}
		var def string
		require.NoError(t, st.Pool().QueryRow(ctx,
			`SELECT indexdef FROM pg_indexes WHERE indexname = 'audit_events_resource_idx'`).Scan(&def))
		assert.Contains(t, def, "(resource_id, event_timestamp DESC, event_id DESC)")
		assert.NotContains(t, def, "WHERE")
	})

	// Events written as 00004's store wrote them: hex hashes, every
	// default stored.
	hasher := audit.NewHasher(nil)
	var old []*audit.Event
	prev := ""
	for i := range 3 {
		e := newEvent("rr-mig-old", now.Add(time.Duration(10+i)*time.Second), 30)
		if i == 1 {
			e.ActorType, e.ActorID = "user", "bob"
		}
		canon, err := e.Canonical()
		require.NoError(t, err)
		p := prev
		e.ChainSeq, e.PreviousHash, e.HashAlgorithm = int64(i+1), &p, audit.AlgSHA256
		e.Hash = hasher.Link(prev, canon)
		prev = e.Hash
		_, err = st.Pool().Exec(ctx, `INSERT INTO audit_events (event_id, event_date, event_timestamp, version,
			event_type, event_category, event_action, event_outcome, correlation_id, event_data, actor_type, actor_id,
			resource_type, resource_id, severity, retention_days, chain_seq, event_hash, previous_event_hash, hash_algorithm)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)`,
			e.ID, e.Date.Std(), e.Timestamp.Std(), e.Version, e.Type, e.Category, e.Action, e.Outcome, e.CorrelationID,
			[]byte(e.Data), e.ActorType, e.ActorID, e.ResourceType, e.ResourceID, e.Severity, e.RetentionDays,
			e.ChainSeq, e.Hash, *e.PreviousHash, e.HashAlgorithm)
		require.NoError(t, err)
		old = append(old, e)
	}
	_, err = st.Pool().Exec(ctx, `INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash) VALUES ($1, 3, $2)`,
		"rr-mig-old", prev)
	require.NoError(t, err)

	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	after := apiForms(t, st)
	t.Run("up keeps every event's API output", func(t *testing.T) {
		for id, js := range before {
			assert.Equal(t, js, after[id], id)
		}
		for _, e := range old {
			got, err := st.GetEvent(ctx, e.ID)
			require.NoError(t, err)
			assert.Equal(t, [6]string{e.ActorType, e.ActorID, e.ResourceType, e.ResourceID, e.Hash, *e.PreviousHash},
				[6]string{got.ActorType, got.ActorID, got.ResourceType, got.ResourceID, got.Hash, *got.PreviousHash})
		}
		for _, corr := range []string{"rr-mig-a", "rr-mig-b", "rr-mig-old"} {
			verifyChain(t, st, corr)
		}
	})
	t.Run("up stores the compact form", func(t *testing.T) {
		cols := readStoredColumns(t, st, "encode(event_hash, 'hex'), encode(previous_event_hash, 'hex')")
		nulls := func(id string) [4]bool {
			c := cols[id]
			return [4]bool{c.ActorType == nil, c.ActorID == nil, c.ResourceType == nil, c.ResourceID == nil}
		}
		assert.Equal(t, [4]bool{true, true, true, true}, nulls(defaults.ID.String()))
		assert.Equal(t, [4]bool{false, false, false, false}, nulls(explicit.ID.String()))
		assert.Equal(t, [4]bool{true, false, false, true}, nulls(elsewhere.ID.String()))
		assert.Equal(t, [4]bool{false, true, true, true}, nulls(child.ID.String()))
		assert.Equal(t, [4]bool{true, true, true, true}, nulls(old[0].ID.String()))
		assert.Equal(t, [4]bool{false, false, true, true}, nulls(old[1].ID.String()))
		var short int
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events
			WHERE octet_length(event_hash) <> 32 OR octet_length(previous_event_hash) NOT IN (0, 32)`).Scan(&short))
		assert.Zero(t, short)
	})
	t.Run("the store writes after the migration", func(t *testing.T) {
		next := newEvent("rr-mig-old", now.Add(time.Minute), 30)
		_, err := st.InsertEvents(ctx, []*audit.Event{next})
		require.NoError(t, err)
		assert.Equal(t, int64(4), verifyChain(t, st, "rr-mig-old"))
	})
}
