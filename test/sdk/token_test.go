package sdk

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/client"
)

// TestTokenFileFollowsRotation rotates the token the way the kubelet does
// for a projected service-account token: the file is a symlink into a
// timestamped directory, and rotation swaps the symlink ..data atomically.
func TestTokenFileFollowsRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(gen, token string) {
		d := filepath.Join(dir, "..2026_"+gen)
		require.NoError(t, os.Mkdir(d, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(d, "token"), []byte(token+"\n"), 0o600))
		tmp := filepath.Join(dir, "..data_tmp")
		require.NoError(t, os.Symlink(filepath.Base(d), tmp))
		require.NoError(t, os.Rename(tmp, filepath.Join(dir, "..data")))
	}
	write("01", "token-one")
	require.NoError(t, os.Symlink("..data/token", filepath.Join(dir, "token")))

	var seen []string
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		seen = append(seen, r.Header.Get("Authorization"))
		writeJSON(w, 200, `{"status":"healthy"}`)
	})
	c, err := client.New(f.URL, client.WithTokenFile(filepath.Join(dir, "token")))
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, c.Live(ctx))
	require.NoError(t, c.Live(ctx))
	write("02", "token-two")
	require.NoError(t, c.Live(ctx))
	assert.Equal(t, []string{"Bearer token-one", "Bearer token-one", "Bearer token-two"}, seen)
}

// TestTokenFileIsReReadAfter401 covers a rotation that kept size and
// modification time (a coarse file system clock): the 401 makes the client
// read the file again and retry once.
func TestTokenFileIsReReadAfter401(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(path, []byte("old-token"), 0o600))
	mtime := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(path, mtime, mtime))

	var calls atomic.Int32
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer new-token" {
			writeProblem(w, 401, `{"type":"about:blank","title":"Unauthorized","status":401}`)
			return
		}
		writeJSON(w, 200, `{"holds":[],"total":0}`)
	})
	c, err := client.New(f.URL, client.WithTokenFile(path))
	require.NoError(t, err)
	_, err = c.LegalHolds(context.Background())
	assert.ErrorIs(t, err, client.ErrUnauthorized)
	assert.EqualValues(t, 2, calls.Load(), "one retry with the file read again")

	require.NoError(t, os.WriteFile(path, []byte("new-token"), 0o600))
	require.NoError(t, os.Chtimes(path, mtime, mtime))
	_, err = c.LegalHolds(context.Background())
	require.NoError(t, err)
}

func TestTokenFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ft := client.NewFileToken(filepath.Join(dir, "missing"))
	_, err := ft.Token(context.Background())
	assert.Error(t, err)

	path := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(path, []byte("  \n"), 0o600))
	_, err = client.NewFileToken(path).Token(context.Background())
	assert.ErrorContains(t, err, "empty")

	// Once read, a token survives the file vanishing for a moment.
	require.NoError(t, os.WriteFile(path, []byte("tok"), 0o600))
	ft = client.NewFileToken(path)
	tok, err := ft.Token(context.Background())
	require.NoError(t, err)
	require.NoError(t, os.Remove(path))
	tok2, err := ft.Token(context.Background())
	require.NoError(t, err)
	assert.Equal(t, tok, tok2)
}
