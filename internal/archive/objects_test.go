package archive_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/objstore"
	"kubernaut.ai/datastorage/internal/testenv"
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

// TestRoundTripS3 is the round trip against a real S3-compatible server
// (versitygw, started by testenv), through objstore's s3:// target.
func TestRoundTripS3(t *testing.T) {
	srv := testenv.NewS3(t)
	dir := t.TempDir()
	id, secret := filepath.Join(dir, "id"), filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(id, []byte(srv.AccessKey), 0o600))
	require.NoError(t, os.WriteFile(secret, []byte(srv.SecretKey), 0o600))
	st, err := objstore.Open(context.Background(), "s3://"+srv.Bucket+"/archive", objstore.Options{
		Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true, AccessKeyIDFile: id, SecretAccessKeyFile: secret})
	require.NoError(t, err)
	RoundTrip(t, Objects{st})
}
