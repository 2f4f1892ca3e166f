package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/store"
)

// A refusal by PostgreSQL itself (a check constraint added by an operator,
// so validation cannot know of it) names the first refused event of the
// batch, and nothing of the batch is stored — by unnest and by COPY.
func TestARefusedBatchNamesItsFirstRefusedEventAndStoresNothing(t *testing.T) {
	t.Parallel()
	st, url := newStore(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `ALTER TABLE audit_events ADD CONSTRAINT refuse_probe CHECK (event_action <> 'refused') NOT VALID`)
	require.NoError(t, err)

	for _, tc := range []struct{ size, bad int }{{7, 4}, {1, 0}, {450, 311}} { // 450: by COPY
		t.Run(fmt.Sprint(tc.size), func(t *testing.T) {
			corr := fmt.Sprintf("rr-refused-%d", tc.size)
			events := make([]*audit.Event, tc.size)
			for i := range events {
				events[i] = newEvent(fmt.Sprintf("%s-%d", corr, i%5), time.Now(), 30)
				if i > 0 && i%3 == 0 {
					parent := events[i-1].ID
					events[i].ParentID = &parent // a parent earlier in the batch
				}
			}
			events[tc.bad].Action = "refused"
			_, err := st.InsertEvents(ctx, events)
			var refused *store.RefusedEventError
			require.ErrorAs(t, err, &refused)
			assert.Equal(t, tc.bad, refused.Index)
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr)
			assert.Equal(t, "23514", pgErr.Code)
			assert.Equal(t, failure.Data, failure.ClassOf(err))
			var n int
			require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE correlation_id LIKE $1`, corr+"-%").Scan(&n))
			assert.Zero(t, n, "nothing of the batch is stored")

			// Without the bad event the same batch commits whole.
			events[tc.bad].Action = "received"
			inserted, err := st.InsertEvents(ctx, events)
			require.NoError(t, err)
			assert.EqualValues(t, tc.size, inserted)
		})
	}
}

// An error of ours (here: a column whose type changed under the service, so
// the insert's statement no longer fits) is internal, never an outage.
func TestAStatementThatNoLongerFitsTheSchemaIsInternal(t *testing.T) {
	t.Parallel()
	st, url := newStore(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `ALTER TABLE audit_events ALTER COLUMN duration_ms TYPE interval USING NULL`)
	require.NoError(t, err)
	_, err = st.InsertEvents(ctx, []*audit.Event{newEvent("rr-internal", time.Now(), 30)})
	require.Error(t, err)
	assert.Equal(t, failure.Internal, failure.ClassOf(err), "%v", err)
}
