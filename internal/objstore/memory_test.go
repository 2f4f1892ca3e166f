package objstore_test

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/objstore"
	"kubernaut.ai/datastorage/internal/testenv"
)

// Put streams: what it allocates for an object of 48 MiB stays well below the object's size
// (the S3 target holds one 8 MiB part at a time). The tests are not parallel, so that no
// other test allocates while they count (parallel tests wait for the sequential ones).
func TestPutDoesNotHoldTheObjectInMemory(t *testing.T) {
	const size = 48 << 20
	measure := func(t *testing.T, s objstore.Store) uint64 {
		t.Helper()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		require.NoError(t, s.Put(t.Context(), "big", pattern(size), size))
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	t.Run("file", func(t *testing.T) {
		allocated := measure(t, newFileStore(t))
		t.Logf("file: %d KiB allocated to put %d MiB", allocated>>10, size>>20)
		assert.Less(t, allocated, uint64(1<<20))
	})
	t.Run("s3", func(t *testing.T) {
		srv := testenv.NewS3(t)
		s, err := objstore.Open(t.Context(), "s3://"+srv.Bucket, s3Options(t, srv))
		require.NoError(t, err)
		allocated := measure(t, s)
		t.Logf("s3: %d KiB allocated to put %d MiB", allocated>>10, size>>20)
		assert.Less(t, allocated, uint64(size/2))
	})
}
