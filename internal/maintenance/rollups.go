package maintenance

import (
	"context"
	"time"
)

// RollupStore recounts the aggregation rollups of a time range from
// audit_events. internal/store implements it.
type RollupStore interface {
	RebuildRollups(ctx context.Context, from, to time.Time) (int64, error)
}

// RebuildRollups recounts the rollups of [from, to) in transactions of step
// each (at least an hour), whole hours so that consecutive steps never
// recount an hour twice, and returns the number of events counted. Writers
// wait on each step's transaction, which is why it is cut into steps. It
// returns the truncated from and step it used.
func RebuildRollups(ctx context.Context, st RollupStore, from, to time.Time, step time.Duration) (total int64, start time.Time, err error) {
	from, step = from.Truncate(time.Hour), max(step.Truncate(time.Hour), time.Hour)
	for t := from; t.Before(to); t = t.Add(step) {
		end := t.Add(step)
		if end.After(to) {
			end = to
		}
		n, err := st.RebuildRollups(ctx, t, end)
		if err != nil {
			return total, from, err
		}
		total += n
	}
	return total, from, nil
}
