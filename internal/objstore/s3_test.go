package objstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/objstore"
	"kubernaut.ai/datastorage/internal/testenv"
)

// s3Options returns the options that reach srv, with its credentials in files as the
// service's configuration gives them.
func s3Options(t *testing.T, srv *testenv.S3) objstore.Options {
	t.Helper()
	dir := t.TempDir()
	id, secret := filepath.Join(dir, "access-key-id"), filepath.Join(dir, "secret-access-key")
	require.NoError(t, os.WriteFile(id, []byte(srv.AccessKey+"\n"), 0o600))
	require.NoError(t, os.WriteFile(secret, []byte(srv.SecretKey+"\n"), 0o600))
	return objstore.Options{Endpoint: srv.Endpoint, PathStyle: true, AccessKeyIDFile: id, SecretAccessKeyFile: secret}
}

func randomPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Every subtest gets its own prefix of one bucket, which also shows that a store sees only
// the keys below its prefix.
func TestS3Contract(t *testing.T) {
	t.Parallel()
	srv := testenv.NewS3(t)
	opts := s3Options(t, srv)
	testContract(t, func(t *testing.T) objstore.Store {
		s, err := objstore.Open(t.Context(), "s3://"+srv.Bucket+"/archive/"+randomPrefix(), opts)
		require.NoError(t, err)
		return s
	})
}

func TestS3KeysAreObjectsBelowThePrefix(t *testing.T) {
	t.Parallel()
	srv := testenv.NewS3(t)
	ctx := t.Context()
	s, err := objstore.Open(ctx, "s3://"+srv.Bucket+"/archive/", s3Options(t, srv))
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, "2026/11/events.parquet", strings.NewReader("pq"), 2))

	out, err := srv.Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket)})
	require.NoError(t, err)
	require.Len(t, out.Contents, 1)
	assert.Equal(t, "archive/2026/11/events.parquet", aws.ToString(out.Contents[0].Key))

	// A store at the bucket's root sees the same object under its full name, and nothing
	// of another prefix leaks into a sibling store.
	root, err := objstore.Open(ctx, "s3://"+srv.Bucket, s3Options(t, srv))
	require.NoError(t, err)
	got, err := root.List(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, []objstore.Info{{Key: "archive/2026/11/events.parquet", Size: 2}}, got)
	sibling, err := objstore.Open(ctx, "s3://"+srv.Bucket+"/archive2", s3Options(t, srv))
	require.NoError(t, err)
	got, err = sibling.List(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, got)
}

// A failed multipart Put aborts its upload: no part is left in the bucket.
func TestS3FailedMultipartPutLeavesNoUpload(t *testing.T) {
	t.Parallel()
	srv := testenv.NewS3(t)
	ctx := t.Context()
	s, err := objstore.Open(ctx, "s3://"+srv.Bucket, s3Options(t, srv))
	require.NoError(t, err)
	// 20 MiB announced, 12 MiB given: the first part (8 MiB) is uploaded before the body ends.
	err = s.Put(ctx, "short", pattern(12<<20), 20<<20)
	require.Error(t, err)
	assert.Equal(t, failure.Data, failure.ClassOf(err))
	ups, err := srv.Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(srv.Bucket)})
	require.NoError(t, err)
	assert.Empty(t, ups.Uploads)
}

func TestS3OpenRefusesBadTargets(t *testing.T) {
	t.Parallel()
	srv := testenv.NewS3(t)
	opts := s3Options(t, srv)
	ctx := t.Context()

	_, err := objstore.Open(ctx, "s3://no-such-bucket/p", opts)
	require.ErrorContains(t, err, `bucket "no-such-bucket" does not exist`)
	assert.Equal(t, failure.Internal, failure.ClassOf(err))

	wrong := opts
	dir := t.TempDir()
	wrong.SecretAccessKeyFile = filepath.Join(dir, "wrong-secret")
	require.NoError(t, os.WriteFile(wrong.SecretAccessKeyFile, []byte("not-the-secret"), 0o600))
	_, err = objstore.Open(ctx, "s3://"+srv.Bucket, wrong)
	require.Error(t, err)
	assert.Equal(t, failure.Internal, failure.ClassOf(err), "bad credentials need an operator: %v", err)

	half := opts
	half.SecretAccessKeyFile = ""
	_, err = objstore.Open(ctx, "s3://"+srv.Bucket, half)
	require.ErrorContains(t, err, "secret access key file is not set")

	missing := opts
	missing.AccessKeyIDFile = filepath.Join(dir, "absent")
	_, err = objstore.Open(ctx, "s3://"+srv.Bucket, missing)
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.Equal(t, failure.Internal, failure.ClassOf(err))

	for _, u := range []string{"s3:///prefix", "s3://key:secret@" + srv.Bucket, "s3://" + srv.Bucket + "/a/../b"} {
		_, err = objstore.Open(ctx, u, opts)
		require.Error(t, err, u)
		assert.Equal(t, failure.Internal, failure.ClassOf(err), u)
	}
}

// Without credential files the standard AWS environment is used.
func TestS3CredentialsFromTheAWSEnvironment(t *testing.T) {
	srv := testenv.NewS3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_REGION", srv.Region)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	s, err := objstore.Open(t.Context(), "s3://"+srv.Bucket, objstore.Options{Endpoint: srv.Endpoint, PathStyle: true})
	require.NoError(t, err)
	require.NoError(t, s.Put(t.Context(), "k", strings.NewReader("v"), 1))
	assert.Equal(t, "v", readAll(t, s, "k"))
}

// With the server gone every operation fails as Unavailable (retry later), not Internal;
// once it is back the same store works again and the objects are still there.
func TestS3ServerKilledIsUnavailable(t *testing.T) {
	t.Parallel()
	srv := testenv.NewS3(t)
	ctx := t.Context()
	s, err := objstore.Open(ctx, "s3://"+srv.Bucket+"/p", s3Options(t, srv))
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, "before", strings.NewReader("kept"), 4))
	o, err := s.Open(ctx, "before")
	require.NoError(t, err)

	require.NoError(t, srv.Kill())
	checks := map[string]error{}
	checks["put"] = s.Put(ctx, "during", strings.NewReader("x"), 1)
	checks["put multipart"] = s.Put(ctx, "during-big", pattern(9<<20), 9<<20)
	_, checks["open"] = s.Open(ctx, "before")
	_, checks["list"] = s.List(ctx, "")
	checks["delete"] = s.Delete(ctx, "before")
	_, checks["read"] = o.ReadAt(make([]byte, 2), 0)
	_, checks["open target"] = objstore.Open(ctx, "s3://"+srv.Bucket, s3Options(t, srv))
	for name, err := range checks {
		require.Error(t, err, name)
		assert.Equal(t, failure.Unavailable, failure.ClassOf(err), "%s: %v", name, err)
	}

	require.NoError(t, srv.Start())
	assert.Equal(t, "kept", readAll(t, s, "before"))
	got, err := s.List(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, []objstore.Info{{Key: "before", Size: 4}}, got, "nothing of the failed puts is visible")
}

// Reading from an object whose Open context has ended stops.
func TestS3ReadsUseTheOpenContext(t *testing.T) {
	t.Parallel()
	srv := testenv.NewS3(t)
	s, err := objstore.Open(t.Context(), "s3://"+srv.Bucket, s3Options(t, srv))
	require.NoError(t, err)
	require.NoError(t, s.Put(t.Context(), "k", strings.NewReader("value"), 5))
	ctx, cancel := context.WithCancel(t.Context())
	o, err := s.Open(ctx, "k")
	require.NoError(t, err)
	cancel()
	_, err = o.ReadAt(make([]byte, 2), 0)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, failure.Unavailable, failure.ClassOf(err))
}

// An open object never mixes versions: once its key is replaced, its reads fail.
func TestS3ReadsOfAReplacedObjectFail(t *testing.T) {
	t.Parallel()
	srv := testenv.NewS3(t)
	ctx := t.Context()
	s, err := objstore.Open(ctx, "s3://"+srv.Bucket, s3Options(t, srv))
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, "k", strings.NewReader("first"), 5))
	o, err := s.Open(ctx, "k")
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, "k", strings.NewReader("other"), 5))
	_, err = o.ReadAt(make([]byte, 5), 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "412")
}

// The credential files are read again when they change, as a rotated Kubernetes Secret
// needs: a wrong key written in place fails the next call (Internal: an operator's mistake),
// the right one written back makes it work again, with the same Store. (A new key pair has a
// new access key id; the SDK's signer keeps a derived signing key per key id and day, so a
// secret changed under the same id would be picked up only the next day.)
func TestS3CredentialFilesAreReadAgainWhenTheyChange(t *testing.T) {
	t.Parallel()
	srv := testenv.NewS3(t)
	ctx := t.Context()
	opts := s3Options(t, srv)
	s, err := objstore.Open(ctx, "s3://"+srv.Bucket, opts)
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, "a", strings.NewReader("1"), 1))

	require.NoError(t, os.WriteFile(opts.AccessKeyIDFile, []byte("AKIA-NOT-A-KEY\n"), 0o600))
	err = s.Put(ctx, "b", strings.NewReader("2"), 1)
	require.Error(t, err, "the changed key was not read")
	assert.Equal(t, failure.Internal, failure.ClassOf(err), "%v", err)

	require.NoError(t, os.WriteFile(opts.AccessKeyIDFile, []byte(srv.AccessKey+"\n"), 0o600))
	require.NoError(t, s.Put(ctx, "b", strings.NewReader("2"), 1))
}
