package archive_test

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
)

// TestArrowReadsTheFiles reads the archive with Apache Arrow's Parquet
// implementation, which did not write it: the same rows, the same values,
// the logical types the issue asks for.
func TestArrowReadsTheFiles(t *testing.T) {
	e := newEnv(t)
	e.fill(40, 12)
	ctx := context.Background()
	root := t.TempDir()
	a := e.archiver(fileTarget(t, root))
	_, err := a.Run(ctx, e.month)
	require.NoError(t, err)
	m, err := a.Manifest(ctx, e.month)
	require.NoError(t, err)

	var rows int64
	seen := map[uuid.UUID]bool{}
	for _, f := range m.Files {
		fh, err := os.Open(filepath.Join(root, filepath.FromSlash(f.Key)))
		require.NoError(t, err)
		pf, err := file.NewParquetReader(fh)
		require.NoError(t, err)
		assert.Equal(t, f.Rows, pf.NumRows())
		assert.Equal(t, f.RowGroups, pf.NumRowGroups())
		// The writer's codec: every column chunk is zstd.
		for i := range pf.NumRowGroups() {
			md := pf.MetaData().RowGroup(i)
			for c := range md.NumColumns() {
				cc, err := md.ColumnChunk(c)
				require.NoError(t, err)
				assert.Equal(t, "ZSTD", cc.Compression().String())
			}
		}
		rd, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		require.NoError(t, err)
		tbl, err := rd.ReadTable(ctx)
		require.NoError(t, err)
		rows += tbl.NumRows()

		col := func(name string) arrow.Array {
			idx := tbl.Schema().FieldIndices(name)
			require.Len(t, idx, 1, name)
			chunks := tbl.Column(idx[0]).Data().Chunks()
			require.Len(t, chunks, 1, "one chunk per column for a small file")
			return chunks[0]
		}
		ts := col("event_timestamp").(*array.Timestamp)
		tsType := ts.DataType().(*arrow.TimestampType)
		assert.Equal(t, arrow.Microsecond, tsType.Unit)
		assert.Equal(t, "UTC", tsType.TimeZone, "adjusted to UTC")
		ids, corr, seq, hash, data := col("event_id"), col("correlation_id").(*array.String),
			col("chain_seq").(*array.Int64), col("event_hash").(*array.Binary), col("event_data")
		for i := range int(tbl.NumRows()) {
			id, err := uuid.FromBytes(bytesAt(t, ids, i))
			require.NoError(t, err)
			want, ok := e.events[id]
			require.True(t, ok, "event %s", id)
			seen[id] = true
			assert.Equal(t, want.CorrelationID, corr.Value(i))
			assert.Equal(t, want.ChainSeq, seq.Value(i))
			assert.Equal(t, want.Hash, hex.EncodeToString(hash.Value(i)))
			assert.Equal(t, want.Timestamp.Std(), time.UnixMicro(int64(ts.Value(i))).UTC())
			assert.JSONEq(t, string(want.Data), string(bytesAt(t, data, i)))
		}
		tbl.Release()
		fh.Close()
	}
	assert.Equal(t, m.Events, rows)
	assert.Len(t, seen, int(m.Events))
	assert.EqualValues(t, len(e.monthEvents()), m.Events)
	_ = archive.ManifestFormat
}

// bytesAt reads a binary-like value, looking through extension types (UUID,
// JSON) to their storage.
func bytesAt(t *testing.T, arr arrow.Array, i int) []byte {
	t.Helper()
	if ext, ok := arr.(array.ExtensionArray); ok {
		arr = ext.Storage()
	}
	switch a := arr.(type) {
	case *array.FixedSizeBinary:
		return a.Value(i)
	case *array.Binary:
		return a.Value(i)
	case *array.String:
		return []byte(a.Value(i))
	}
	t.Fatalf("unexpected array type %T", arr)
	return nil
}
