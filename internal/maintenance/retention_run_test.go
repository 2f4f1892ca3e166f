package maintenance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// blockSession is a RetentionSession over one expired month whose heap
// blocks time out when asked together and one of which is referenced by a
// row written meanwhile. Only the methods that path needs are implemented.
type blockSession struct {
	RetentionSession // nil: any other method panics
	blocks           int64
	referenced       int64
	deleted          map[int64]bool
	spans            []int64
	closed           bool
}

func (s *blockSession) Close(context.Context) { s.closed = true }
func (s *blockSession) Today(context.Context) (time.Time, error) {
	return time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC), nil
}
func (s *blockSession) Partitions(context.Context) ([]PartitionRef, error) {
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return []PartitionRef{{Partition: Partition{Name: "audit_events_y2026m01", From: from, To: from.AddDate(0, 1, 0)}}}, nil
}
func (s *blockSession) DetachedTables(context.Context) ([]string, error) { return nil, nil }
func (s *blockSession) SweepHolds(context.Context) (int64, error)        { return 0, nil }
func (s *blockSession) Assess(context.Context, Partition, time.Time) (bool, bool, bool, error) {
	return true, true, false, nil // expired rows, and rows that stay: not droppable
}
func (s *blockSession) Blocks(context.Context, Partition) (int64, int64, error) {
	return s.blocks, 1000, nil
}
func (s *blockSession) DeleteBlocks(_ context.Context, _ Partition, _ time.Time, from, to int64, _ time.Duration) (int64, error) {
	s.spans = append(s.spans, to-from)
	switch {
	case to-from > 1:
		return 0, fmt.Errorf("delete: %w", ErrBatchTimeout)
	case from == s.referenced:
		return 0, fmt.Errorf("delete: %w", ErrStillReferenced)
	case s.deleted[from]:
		return 0, nil
	}
	s.deleted[from] = true
	return 1, nil
}

type oneSession struct{ s RetentionSession }

func (o oneSession) OpenRetention(context.Context) (RetentionSession, bool, error) {
	return o.s, true, nil
}

// The policy, without PostgreSQL: a batch that times out is halved until a
// single block goes alone, a block that still cannot go (timed out alone,
// or referenced by a row written meanwhile) is skipped for this run, and
// the run goes on with the rest.
func TestRetentionShrinksTimedOutBatchesAndSkipsWhatCannotGo(t *testing.T) {
	t.Parallel()
	s := &blockSession{blocks: 4, referenced: 2, deleted: map[int64]bool{}}
	rep, err := RunRetention(context.Background(), oneSession{s}, RetentionOptions{BatchSize: 4000})
	require.NoError(t, err)
	assert.True(t, s.closed, "the session (and its leader lock) is released")
	assert.Equal(t, map[int64]bool{0: true, 1: true, 3: true}, s.deleted)
	assert.Equal(t, int64(3), rep.EventsDeleted)
	require.Len(t, rep.Partitions, 1)
	assert.Equal(t, PartitionRetention{Name: "audit_events_y2026m01", Action: RetentionDelete, Deleted: 3}, rep.Partitions[0])
	assert.Equal(t, int64(4), s.spans[0], "the first batch is BatchSize rows: four blocks")
	assert.Equal(t, int64(2), s.spans[1], "then half")
	assert.Equal(t, int64(1), s.spans[2], "then a block alone")
}
