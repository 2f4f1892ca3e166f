package maintenance_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
	"kubernaut.ai/datastorage/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is a migrated store with the integrity service over it: retention
// is judged by what verify-chain and legal holds make of its work.
type env struct {
	t   *testing.T
	st  *store.Store
	svc *integrity.Service
}

func newEnv(t *testing.T, hmacKey string) *env {
	t.Helper()
	hasher := audit.NewHasher([]byte(hmacKey))
	st, _ := storetest.New(t, store.Options{MaxConns: 12, Hasher: hasher}, 1)
	signer, err := integrity.GenerateSigner()
	require.NoError(t, err)
	return &env{t: t, st: st, svc: integrity.NewService(st, hasher, signer)}
}

// write stores events directly (no validation): old timestamps are allowed.
func (e *env) write(events ...*audit.Event) {
	e.t.Helper()
	_, err := e.st.InsertEvents(context.Background(), events)
	require.NoError(e.t, err)
}

// old builds an event that bypasses validation, dated ts.
func old(corr string, ts time.Time, retentionDays int32, parent *audit.Event) *audit.Event {
	ev := &audit.Event{
		ID: uuid.New(), Version: "1.0", Type: "workflow.step", Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts),
		Category: "workflow", Action: "run", Outcome: "success", CorrelationID: corr,
		Data:      json.RawMessage(`{"step":1}`),
		ActorType: "service", ActorID: "workflow-service", ResourceType: "workflow", ResourceID: corr,
		Severity: "info", RetentionDays: retentionDays,
	}
	if parent != nil {
		ev.ParentID = &parent.ID
	}
	return ev
}

func (e *env) verify(corr string) integrity.ChainReport {
	e.t.Helper()
	rep, err := e.svc.VerifyChain(context.Background(), corr, false)
	require.NoError(e.t, err)
	return rep
}
