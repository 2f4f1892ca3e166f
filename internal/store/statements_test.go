package store_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/store"
)

// The batch INSERT and the COPY share one column order: the INSERT's column
// list must be BatchInsertColumns, one unnest array parameter per column.
func TestBatchInsertSQLNamesBatchInsertColumnsInOrder(t *testing.T) {
	sql := store.BatchInsertSQL()
	_, rest, ok := strings.Cut(sql, "INSERT INTO audit_events (")
	require.True(t, ok, sql)
	list, rest, ok := strings.Cut(rest, ")")
	require.True(t, ok, sql)
	var got []string
	for c := range strings.SplitSeq(list, ",") {
		got = append(got, strings.TrimSpace(c))
	}
	cols := store.BatchInsertColumns()
	assert.Equal(t, cols, got)
	assert.Equal(t, len(cols), strings.Count(rest, "[]"), "one array parameter per column")

	cols[0] = "changed"
	assert.Equal(t, "event_id", store.BatchInsertColumns()[0], "callers get a copy")
}
