package spool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/spool"
)

// Redriving dead letters never pushes the stream past redis.dlqMaxLen: the
// room is what live writes fall back on during an outage (issue 18, item 5).
func TestRedriveStopsAtTheStreamsMaximumLength(t *testing.T) {
	t.Parallel()
	const maxLen = 5
	sp, rdb, _ := newSpool(t, maxLen)
	ctx := context.Background()
	require.NoError(t, sp.Append(ctx, newEvents(3)))
	var ids []string
	for i, e := range newEvents(4) {
		raw, err := json.Marshal(spool.Message{Type: "audit_event", Payload: mustJSON(t, e)})
		require.NoError(t, err)
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: "audit:dead-letter:events", Values: map[string]any{
			"message": string(raw), "source_id": fmt.Sprintf("1-%d", i), "last_error": "refused",
		}}).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}

	n, err := sp.Redrive(ctx, spool.Events, ids[:1])
	require.NoError(t, err)
	assert.Equal(t, 1, n, "room for one more: moved")

	n, err = sp.RedriveAll(ctx, spool.Events)
	require.ErrorIs(t, err, spool.ErrFull)
	assert.Equal(t, 1, n, "only what fits")
	assert.Equal(t, int64(maxLen), xlen(t, rdb, "audit:dlq:events"), "the stream is at its maximum, not past it")
	assert.Equal(t, int64(2), xlen(t, rdb, "audit:dead-letter:events"), "the rest stays dead-lettered, not lost")

	n, err = sp.Redrive(ctx, spool.Events, ids[2:])
	require.ErrorIs(t, err, spool.ErrFull)
	assert.Zero(t, n)
	assert.Equal(t, int64(maxLen), xlen(t, rdb, "audit:dlq:events"))
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
