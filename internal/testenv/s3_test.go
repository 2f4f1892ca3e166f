package testenv

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
)

func TestS3StopKillStartKeepsObjects(t *testing.T) {
	integration(t)
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "Stop", true: "Kill"}[kill], func(t *testing.T) {
			t.Parallel()
			srv := NewS3(t)
			ctx := t.Context()
			c := srv.Client()
			_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String("a/b"),
				Body: strings.NewReader("kept")})
			require.NoError(t, err)
			port := srv.Port

			if kill {
				require.NoError(t, srv.Kill())
			} else {
				require.NoError(t, srv.Stop())
			}
			require.False(t, srv.Running())
			_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(srv.Bucket)})
			require.Error(t, err, "server still answers")

			require.NoError(t, srv.Start())
			require.Equal(t, port, srv.Port, "restarted on another port")
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String("a/b")})
			require.NoError(t, err)
			defer out.Body.Close()
			b, err := io.ReadAll(out.Body)
			require.NoError(t, err)
			require.Equal(t, "kept", string(b))
		})
	}
}

func TestS3CloseRemovesItsDirectory(t *testing.T) {
	integration(t)
	srv, err := StartS3()
	require.NoError(t, err)
	require.DirExists(t, filepath.Join(srv.Dir, "data", srv.Bucket))
	require.NoError(t, srv.Close())
	require.NoError(t, srv.Close(), "closing twice is harmless")
	_, err = os.Stat(srv.Dir)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Error(t, srv.Start())
}

// A binary named by the environment is used as it is; a wrong one fails clearly instead of
// falling back to a build.
func TestS3BinaryFromTheEnvironmentMustExist(t *testing.T) {
	t.Setenv(EnvVersityGW, filepath.Join(t.TempDir(), "no-versitygw"))
	_, err := buildVersityGW(VersityGWVersion)
	require.ErrorContains(t, err, "DATASTORAGE_TEST_VERSITYGW=")
	require.ErrorContains(t, err, "is not an executable file")
}

// A build that fails (here: a version the module proxy does not have) says what it ran and
// why, and leaves no binary in the cache for the next run to trust.
func TestS3BuildFailureIsReported(t *testing.T) {
	if testing.Short() {
		t.Skip("asks the Go module proxy")
	}
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv(EnvVersityGW, "")
	_, err := buildVersityGW("v0.0.0-no-such-version")
	require.ErrorContains(t, err, "testenv: building versitygw v0.0.0-no-such-version (go install github.com/versity/versitygw/cmd/versitygw@v0.0.0-no-such-version")
	require.ErrorContains(t, err, "\ngo: ", "the go command's own output follows")
	require.NoFileExists(t, filepath.Join(cache, "kubernaut-datastorage", "testenv", "versitygw-v0.0.0-no-such-version", "versitygw"))
}
