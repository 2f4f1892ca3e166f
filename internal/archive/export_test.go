package archive_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/testenv"
)

// exported is an export's body, its events array kept as bytes.
type exported struct {
	Events json.RawMessage `json:"events"`
	Chain  struct {
		Total  int64 `json:"total_events_verified"`
		Broken int64 `json:"broken_chain_events"`
	} `json:"hash_chain_verification"`
	raw []byte
}

func export(t *testing.T, svc *integrity.Service, f integrity.ExportFilter) exported {
	t.Helper()
	ctx := context.Background()
	x, err := svc.OpenExport(ctx, integrity.ExportRequest{Filter: f, Format: integrity.FormatJSON, ExportedBy: "test"})
	require.NoError(t, err)
	defer x.Close(ctx)
	var buf bytes.Buffer
	require.NoError(t, x.Stream(ctx, &buf, nil))
	var out exported
	require.NoError(t, json.Unmarshal(buf.Bytes(), &out))
	out.raw = buf.Bytes()
	return out
}

// TestExportAcrossArchivedMonths: an export whose window reaches an
// archived month lists the same events, byte for byte, as it did before
// the month was archived (the archived ones read from the files, merged in
// chain order with PostgreSQL's), with every chain verified across the
// boundary, whatever the filters, offset and limit; and verify-export
// accepts it.
func TestExportAcrossArchivedMonths(t *testing.T) {
	e := newEnv(t)
	e.fill(60, 9)
	ctx := context.Background()
	root := t.TempDir()
	objs := fileTarget(t, root)
	plain := integrity.NewService(e.st, e.hasher, e.signer)
	filters := map[string]integrity.ExportFilter{
		"window":           {Since: e.month.AddDate(0, 0, -2), Until: time.Now().UTC().Add(time.Hour)},
		"open":             {},
		"category":         {EventCategory: "workflow"},
		"page":             {Offset: 70, Limit: 100},
		"correlation":      {CorrelationID: e.corrs[3]},
		"inside the month": {Since: e.month.AddDate(0, 0, 3).Add(time.Hour), Until: e.month.AddDate(0, 0, 9)},
	}
	before := map[string]exported{}
	for name, f := range filters {
		before[name] = export(t, plain, f)
		require.Zero(t, before[name].Chain.Broken, name)
	}
	require.NotEqual(t, "[]", string(before["category"].Events), "the category filter selects something")

	_, err := e.archiver(objs).Run(ctx, time.Time{})
	require.NoError(t, err)
	require.Equal(t, archive.StatusDropped, e.record(e.month).Status)

	rd := &archive.Reader{Source: e.st, Objects: objs, PublicKey: e.signer.PublicKey(), Holds: e.st}
	svc := integrity.NewService(archive.ChainStore{Store: e.st, Reader: rd, Holds: e.st}, e.hasher, e.signer)
	for name, f := range filters {
		got := export(t, svc, f)
		var want, have []json.RawMessage
		require.NoError(t, json.Unmarshal(before[name].Events, &want))
		require.NoError(t, json.Unmarshal(got.Events, &have))
		assert.Len(t, have, len(want), name)
		assert.True(t, bytes.Equal(before[name].Events, got.Events), "%s: the same bytes (%d events before, %d after)",
			name, len(want), len(have))
		assert.Equal(t, before[name].Chain, got.Chain, name)
	}
	// Without the archive, the archived events are missing.
	assert.False(t, bytes.Equal(before["window"].Events, export(t, plain, filters["window"]).Events))

	// Offline verification of the export that crosses the boundary.
	got := export(t, svc, filters["window"])
	dir := t.TempDir()
	file := filepath.Join(dir, "export.json")
	require.NoError(t, os.WriteFile(file, got.raw, 0o600))
	hmacKey := filepath.Join(dir, "hmac")
	require.NoError(t, os.WriteFile(hmacKey, []byte(testHMACKey), 0o600))
	bin := testenv.ServiceBinary(t)
	out, err := exec.Command(bin, "verify-export", file, "--public-key", e.signer.PublicKeyString(),
		"--hmac-key-file", hmacKey).CombinedOutput()
	require.NoError(t, err, "%s", out)
	// A changed archived event is caught.
	bad := bytes.Replace(got.raw, []byte(`"step":1,`), []byte(`"step":7,`), 1)
	require.NotEqual(t, got.raw, bad)
	require.NoError(t, os.WriteFile(file, bad, 0o600))
	out, err = exec.Command(bin, "verify-export", file, "--public-key", e.signer.PublicKeyString(),
		"--hmac-key-file", hmacKey).CombinedOutput()
	require.Error(t, err, "%s", out)
}
