package objstore_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/objstore"
)

func newFileStore(t *testing.T) objstore.Store {
	s, err := objstore.Open(t.Context(), "file://"+t.TempDir(), objstore.Options{})
	require.NoError(t, err)
	return s
}

func TestFileContract(t *testing.T) {
	t.Parallel()
	testContract(t, newFileStore)
}

func TestFileKeysAreFilesBelowTheDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := objstore.Open(t.Context(), "file://"+dir, objstore.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Put(t.Context(), "2026/11/events.parquet", strings.NewReader("pq"), 2))
	b, err := os.ReadFile(filepath.Join(dir, "2026", "11", "events.parquet"))
	require.NoError(t, err)
	assert.Equal(t, "pq", string(b))
	entries, err := os.ReadDir(filepath.Join(dir, "2026", "11"))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left next to the key")
}

// A crash during Put leaves its temporary file behind; it is neither listed nor openable.
func TestFileLeftoverTemporaryFileIsInvisible(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := objstore.Open(t.Context(), "file://"+dir, objstore.Options{})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".objstore-tmp-x.parquet-123"), []byte("half"), 0o600))
	got, err := s.List(t.Context(), "")
	require.NoError(t, err)
	assert.Empty(t, got)
}

func TestFileOpenRefusesBadTargets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	for _, u := range []string{
		"file://relative/dir", // host "relative": two slashes instead of three
		"file:relative",       // opaque, not absolute
		"file://" + dir + "/missing",
		"file://" + file,
		"ftp://host/dir",
		"/no/scheme",
	} {
		_, err := objstore.Open(t.Context(), u, objstore.Options{})
		require.Error(t, err, u)
		assert.Equal(t, failure.Internal, failure.ClassOf(err), u)
		assert.Contains(t, err.Error(), strings.TrimPrefix(u, "file://"), "the error names the target")
	}
}

// A key whose directory is taken by a file is an operator's mess, not an outage: Internal.
func TestFileKeyBelowAFileIsInternal(t *testing.T) {
	t.Parallel()
	s := newFileStore(t)
	require.NoError(t, s.Put(t.Context(), "a", strings.NewReader("x"), 1))
	err := s.Put(t.Context(), "a/b", strings.NewReader("x"), 1)
	require.ErrorIs(t, err, syscall.ENOTDIR)
	assert.Equal(t, failure.Internal, failure.ClassOf(err))
	assert.Contains(t, err.Error(), `"a/b"`)
}

// An open object never mixes versions: once its key is replaced, it keeps reading the file
// it opened (the rename replaced the name, not the file).
func TestFileReadsOfAReplacedObjectSeeTheOpenedVersion(t *testing.T) {
	t.Parallel()
	s := newFileStore(t)
	ctx := t.Context()
	require.NoError(t, s.Put(ctx, "k", strings.NewReader("first"), 5))
	o, err := s.Open(ctx, "k")
	require.NoError(t, err)
	defer o.Close()
	require.NoError(t, s.Put(ctx, "k", strings.NewReader("other"), 5))
	b := make([]byte, 5)
	_, err = o.ReadAt(b, 0)
	require.NoError(t, err)
	assert.Equal(t, "first", string(b))
	assert.Equal(t, "other", readAll(t, s, "k"))
}
