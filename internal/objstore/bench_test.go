package objstore_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/objstore"
	"kubernaut.ai/datastorage/internal/testenv"
)

// The archive writes files of tens to hundreds of MiB and reads them back by row groups of
// about 1 MiB; these measure both on each target (go test -run '^$' -bench . ./internal/objstore/).
func BenchmarkTargets(b *testing.B) {
	targets := map[string]func(b *testing.B) objstore.Store{
		"file": func(b *testing.B) objstore.Store {
			s, err := objstore.Open(b.Context(), "file://"+b.TempDir(), objstore.Options{})
			require.NoError(b, err)
			return s
		},
		"s3": func(b *testing.B) objstore.Store {
			srv := testenv.NewS3(b)
			s, err := objstore.Open(b.Context(), "s3://"+srv.Bucket, objstore.Options{
				Endpoint: srv.Endpoint, PathStyle: true, AccessKeyIDFile: writeSecret(b, srv.AccessKey), SecretAccessKeyFile: writeSecret(b, srv.SecretKey)})
			require.NoError(b, err)
			return s
		},
	}
	for _, name := range []string{"file", "s3"} {
		b.Run(name+"/Put64MiB", func(b *testing.B) {
			s := targets[name](b)
			const size = 64 << 20
			b.SetBytes(size)
			for b.Loop() {
				require.NoError(b, s.Put(b.Context(), "big", pattern(size), size))
			}
		})
		b.Run(name+"/ReadAt1MiB", func(b *testing.B) {
			s := targets[name](b)
			const size = 64 << 20
			require.NoError(b, s.Put(b.Context(), "big", pattern(size), size))
			o, err := s.Open(b.Context(), "big")
			require.NoError(b, err)
			defer o.Close()
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			off := int64(0)
			for b.Loop() {
				if _, err := o.ReadAt(buf, off); err != nil && err != io.EOF {
					b.Fatal(err)
				}
				off = (off + 7<<20 + 12345) % (size - int64(len(buf)))
			}
		})
	}
}

func writeSecret(b *testing.B, v string) string {
	p := filepath.Join(b.TempDir(), "secret")
	require.NoError(b, os.WriteFile(p, []byte(v), 0o600))
	return p
}
