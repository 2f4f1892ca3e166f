package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/config"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
	"kubernaut.ai/datastorage/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// runCLI runs the binary's entry point in-process.
func runCLI(t *testing.T, environ []string, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := run(args, environ, &out, &out)
	return code, out.String()
}

func cliEvent(corr string, ts time.Time, retention int32) *audit.Event {
	return &audit.Event{
		ID: uuid.New(), Version: "1.0", Type: "workflow.step", Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts),
		Category: "workflow", Action: "run", Outcome: "success", CorrelationID: corr,
		Data:      json.RawMessage(`{"step":1,"ratio":0.50}`),
		ActorType: "service", ActorID: "workflow-service", ResourceType: "workflow", ResourceID: corr,
		Severity: "info", RetentionDays: retention,
	}
}

func TestVerifyExportCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()

	// The signing key as an operator makes it (openssl genpkey writes the
	// same PKCS #8 PEM), loaded the way serve loads it.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "export.pem")
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	cfg, err := config.Load("", []string{"DATASTORAGE_INTEGRITY_SIGNINGKEYFILE=" + keyFile})
	require.NoError(t, err)
	signer, err := newSigner(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.False(t, signer.Ephemeral)
	pubFile := filepath.Join(dir, "export.pub")
	require.NoError(t, os.WriteFile(pubFile, []byte(signer.PublicKeyPEM()), 0o644))

	st, err := store.Open(ctx, testenv.NewDatabase(t), store.Options{})
	require.NoError(t, err)
	defer st.Close()
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	var evs []*audit.Event
	for i := range 5 {
		evs = append(evs, cliEvent("rr-cli", time.Now().Add(time.Duration(i-10)*time.Second), 30))
	}
	_, err = st.InsertEvents(ctx, evs)
	require.NoError(t, err)
	svc := integrity.NewService(st, audit.Hasher{}, signer)

	for _, format := range []string{integrity.FormatJSON, integrity.FormatNDJSON} {
		x, err := svc.OpenExport(ctx, integrity.ExportRequest{Format: format, ExportedBy: "auditor"})
		require.NoError(t, err)
		var body bytes.Buffer
		require.NoError(t, x.Stream(ctx, &body, nil))
		x.Close(ctx)
		file := filepath.Join(dir, "export."+format)
		require.NoError(t, os.WriteFile(file, body.Bytes(), 0o644))

		code, out := runCLI(t, nil, "verify-export", file, "--public-key", pubFile)
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "signature: valid (ed25519ph)")
		require.Contains(t, out, "5 event(s) in 1 chain(s)")
		require.Contains(t, out, "\nOK\n")

		// The key inline, flags first.
		code, out = runCLI(t, nil, "verify-export", "--public-key", signer.PublicKeyString(), file)
		require.Equal(t, 0, code, out)

		// One byte changed: the signature fails, and the changed event is
		// named by the chain check.
		changed := bytes.Replace(body.Bytes(), []byte(`"ratio":0.50`), []byte(`"ratio":0.51`), 1)
		require.NotEqual(t, body.Bytes(), changed)
		require.NoError(t, os.WriteFile(file, changed, 0o644))
		code, out = runCLI(t, nil, "verify-export", file, "--public-key", pubFile)
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "signature: INVALID")
		require.Contains(t, out, "event "+evs[0].ID.String())
		require.Contains(t, out, "FAILED")

		// Another key.
		other, err := integrity.GenerateSigner()
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(file, body.Bytes(), 0o644))
		code, out = runCLI(t, nil, "verify-export", file, "--public-key", other.PublicKeyString())
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "not the one given")
	}

	code, out := runCLI(t, nil, "verify-export", filepath.Join(dir, "export.json"))
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "Usage: datastorage verify-export")
}

func TestRetentionCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.NewDatabase(t)
	st, err := store.Open(ctx, url, store.Options{})
	require.NoError(t, err)
	defer st.Close()
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	month := time.Now().UTC().AddDate(-2, 0, 0)
	_, err = st.EnsurePartitions(ctx, month, 0)
	require.NoError(t, err)
	_, err = st.InsertEvents(ctx, []*audit.Event{cliEvent("rr-old", month, 10), cliEvent("rr-old", month.Add(time.Minute), 10)})
	require.NoError(t, err)
	count := func() (n int) {
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&n))
		return n
	}
	env := []string{"DATASTORAGE_DATABASE_URL=" + url, "DATASTORAGE_LOGGING_LEVEL=warn"}

	code, out := runCLI(t, env, "retention", "run", "--dry-run")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "dry run")
	require.Contains(t, out, "would delete 2 event(s), would drop 1 partition(s)")
	require.Equal(t, 2, count())

	code, out = runCLI(t, env, "retention", "run")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "deleted 2 event(s), dropped 1 partition(s)")
	require.Equal(t, 0, count())

	code, out = runCLI(t, env, "retention")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "Usage: datastorage retention run")
}

func TestRollupsRebuildCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, url := storetest.New(t, store.Options{}, 1)
	now := time.Now().UTC()
	_, err := st.InsertEvents(ctx, []*audit.Event{cliEvent("rr-roll", now.Add(-50*time.Hour), 10),
		cliEvent("rr-roll", now.Add(-2*time.Hour), 10), cliEvent("rr-roll", now.Add(-time.Minute), 10)})
	require.NoError(t, err)
	_, err = st.Pool().Exec(ctx, `TRUNCATE audit_rollup_hourly, audit_rollup_correlations`)
	require.NoError(t, err)
	env := []string{"DATASTORAGE_DATABASE_URL=" + url, "DATASTORAGE_LOGGING_LEVEL=warn"}

	code, out := runCLI(t, env, "rollups", "rebuild", "--since", "3d", "--step", "5h")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, ": 3 event(s)")
	storetest.RequireRollupsMatchEvents(t, st)

	code, out = runCLI(t, env, "rollups", "rebuild", "--since", "yesterday")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "--since")
	code, out = runCLI(t, env, "rollups")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "Usage: datastorage rollups rebuild")
}

func TestMigrateDownAndUpCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, url := storetest.New(t, store.Options{}, 1)
	_, err := st.InsertEvents(ctx, []*audit.Event{cliEvent("rr-migrate", time.Now().Add(-time.Minute), 10)})
	require.NoError(t, err)
	env := []string{"DATASTORAGE_DATABASE_URL=" + url, "DATASTORAGE_LOGGING_LEVEL=warn"}

	code, out := runCLI(t, env, "migrate", "down")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "--to is required")
	code, out = runCLI(t, env, "migrate", "down", "--to", "0")
	require.Equal(t, 2, code, out, "rolling back the first migration would drop every event")

	status, err := st.MigrationStatus(ctx)
	require.NoError(t, err)
	latest := status[len(status)-1].Version
	code, out = runCLI(t, env, "migrate", "down", "--to", fmt.Sprint(latest-1))
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "rolled back 1 migration(s)")
	code, out = runCLI(t, env, "migrate", "status")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "pending")

	code, out = runCLI(t, env, "migrate", "up")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "applied 1 migration(s)")
	var n int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE correlation_id = 'rr-migrate'`).Scan(&n))
	require.Equal(t, 1, n)
}
