package archive_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/objstore"
)

// Objects adapts an objstore.Store (a directory or S3) to archive.Objects,
// for the tests of any target.
type Objects struct{ objstore.Store }

// Open opens key.
func (o Objects) Open(ctx context.Context, key string) (archive.Object, error) {
	return o.Store.Open(ctx, key)
}

// List lists prefix.
func (o Objects) List(ctx context.Context, prefix string) ([]archive.ObjectInfo, error) {
	list, err := o.Store.List(ctx, prefix)
	out := make([]archive.ObjectInfo, len(list))
	for i, x := range list {
		out[i] = archive.ObjectInfo{Key: x.Key, Size: x.Size}
	}
	return out, err
}

// fileTarget opens the file:// target of internal/objstore on root.
func fileTarget(t *testing.T, root string) archive.Objects {
	t.Helper()
	st, err := objstore.Open(context.Background(), "file://"+root, objstore.Options{})
	require.NoError(t, err)
	return Objects{st}
}
