package archive_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/audit"
)

// hookedSource gives the archiver sessions whose read of the month calls
// onRead once, when the first row arrives: the read's snapshot is taken
// by then, so a write committed in onRead is not in the files.
type hookedSource struct {
	archive.Source
	onRead func()
}

func (h hookedSource) OpenArchive(ctx context.Context) (archive.Session, bool, error) {
	s, leader, err := h.Source.OpenArchive(ctx)
	if s != nil {
		s = &hookedSession{Session: s, onRead: h.onRead}
	}
	return s, leader, err
}

type hookedSession struct {
	archive.Session
	onRead func()
	once   sync.Once
}

func (h *hookedSession) EachRow(ctx context.Context, month time.Time, o archive.SortOptions, fn func(*archive.Row) error) error {
	return h.Session.EachRow(ctx, month, o, func(r *archive.Row) error {
		h.once.Do(h.onRead)
		return fn(r)
	})
}

// lateEvent is an event of the env's month in a correlation of its own,
// with a retention of one day, so that retention may delete it.
func (e *env) lateEvent(corr string) *audit.Event {
	ts := e.month.Add(50 * time.Hour)
	return &audit.Event{
		ID: uuid.New(), Version: "1.0", Type: "gateway.signal.received", Category: "gateway", Action: "received",
		Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Outcome: "success", CorrelationID: corr,
		Data: json.RawMessage(`{}`), ActorType: "service", ActorID: "gateway-service", ResourceType: "gateway",
		ResourceID: corr, Severity: "info", RetentionDays: 1,
	}
}

// execSet runs one statement on a connection of its own, in a
// transaction that first sets the given settings (SET LOCAL).
func (e *env) execSet(settings map[string]string, sql string, args ...any) {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.url)
	require.NoError(e.t, err)
	defer conn.Close(ctx)
	require.NoError(e.t, pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for k, v := range settings {
			if _, err := tx.Exec(ctx, `SELECT set_config($1, $2, true)`, k, v); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, sql, args...)
		return err
	}))
}

// TestWritesAfterTheWatchIsArmedStopTheDrop: a write to the month (an
// insert, a retention delete, a legal hold placed and released) that
// commits at any moment after the watch was armed makes the drop refuse
// with ErrChanged, the partition and the record stay, and the next run
// archives the month as it is then. After the arming and before the read
// (the write is in the files: a false alarm, which costs a rewrite);
// during the read (after its snapshot: not in the files); after the files
// were written; after the record. The drop proves the month unchanged by
// the watch alone (it does not compare the month in full): with the watch
// ignored, every case here but the false alarm would drop a month that is
// not the archived one.
func TestWritesAfterTheWatchIsArmedStopTheDrop(t *testing.T) {
	type write struct {
		name string
		// do writes to the month; it returns the ids the month gains and
		// loses.
		do func(e *env, expiring *audit.Event) (added, removed []uuid.UUID)
	}
	writes := []write{
		{"insert", func(e *env, _ *audit.Event) ([]uuid.UUID, []uuid.UUID) {
			ev := e.lateEvent("late-" + uuid.NewString()[:8])
			_, err := e.st.InsertEvents(context.Background(), []*audit.Event{ev})
			require.NoError(e.t, err)
			return []uuid.UUID{ev.ID}, nil
		}},
		{"retention delete", func(e *env, expiring *audit.Event) ([]uuid.UUID, []uuid.UUID) {
			e.execSet(map[string]string{"datastorage.retention": "on"},
				`DELETE FROM audit_events WHERE event_id = $1`, expiring.ID)
			return nil, []uuid.UUID{expiring.ID}
		}},
		{"hold placed and released", func(e *env, _ *audit.Event) ([]uuid.UUID, []uuid.UUID) {
			ctx := context.Background()
			_, err := e.st.PlaceHold(ctx, e.corrs[1], "case 9", "legal", time.Now())
			require.NoError(e.t, err)
			_, err = e.st.ReleaseHold(ctx, e.corrs[1], "closed", "legal", time.Now())
			require.NoError(e.t, err)
			return nil, nil
		}},
	}
	for _, when := range []string{archive.StepWatched, "read", archive.StepWritten, archive.StepRecorded} {
		for _, w := range writes {
			t.Run(when+"/"+w.name, func(t *testing.T) {
				e := newEnv(t)
				e.fill(10, 6)
				ctx := context.Background()
				expiring := e.lateEvent("expiring")
				_, err := e.st.InsertEvents(ctx, []*audit.Event{expiring})
				require.NoError(t, err)
				want := map[uuid.UUID]bool{expiring.ID: true}
				for _, id := range e.monthEvents() {
					want[uuid.MustParse(id)] = true
				}

				a := e.archiver(fileTarget(t, t.TempDir()))
				var once sync.Once
				doWrite := func() {
					once.Do(func() {
						added, removed := w.do(e, expiring)
						for _, id := range added {
							want[id] = true
						}
						for _, id := range removed {
							delete(want, id)
						}
					})
				}
				if when == "read" {
					a.Source = hookedSource{Source: e.st, onRead: doWrite}
				} else {
					a.Options.AfterStep = func(step string, month time.Time) {
						if step == when && month.Equal(e.month) {
							doWrite()
						}
					}
				}
				rep, err := a.Run(ctx, e.month)
				require.ErrorIs(t, err, archive.ErrChanged)
				require.ErrorContains(t, err, "not dropping")
				assert.False(t, e.monthOf(rep).Compared, "the watch decided, not a comparison in full")
				assert.True(t, e.partitionExists(e.month), "the month stays in PostgreSQL")
				assert.Equal(t, archive.StatusVerified, e.record(e.month).Status)

				// The next run resumes the recorded archive, finds the month
				// changed, writes it again and drops it: with the month as it
				// is now.
				a.Source, a.Options.AfterStep = e.st, nil
				rep, err = a.Run(ctx, e.month)
				require.NoError(t, err)
				mr := e.monthOf(rep)
				require.True(t, mr.Dropped)
				assert.Equal(t, "archived", mr.Action, "written again")
				assert.False(t, mr.Compared)
				assert.Equal(t, want, e.archivedIDs(a), "the archive holds the month as it was dropped")
				_, err = a.Verify(ctx, e.month)
				require.NoError(t, err, "every event's hash recomputed")
			})
		}
	}
}

// archivedIDs reads the ids of the events in the env's month's archive.
func (e *env) archivedIDs(a *archive.Archiver) map[uuid.UUID]bool {
	e.t.Helper()
	ctx := context.Background()
	m, err := a.Manifest(ctx, e.month)
	require.NoError(e.t, err)
	got := map[uuid.UUID]bool{}
	for _, f := range m.Files {
		obj, err := a.Objects.Open(ctx, f.Key)
		require.NoError(e.t, err)
		_, err = archive.EachRow(obj, obj.Size(), func(r *archive.Row) error {
			got[uuid.UUID(r.EventID)] = true
			return nil
		})
		obj.Close()
		require.NoError(e.t, err)
	}
	return got
}

// TestWriterInFlightWhenTheWatchIsArmed: a transaction that is writing to
// the month when the job arms its watch makes the arming wait (seen as a
// lock waiter in pg_locks), so that when it commits its event is in the
// read, the archive holds it, and the drop proves the month by the watch.
func TestWriterInFlightWhenTheWatchIsArmed(t *testing.T) {
	e := newEnv(t)
	e.fill(10, 6)
	ctx := context.Background()
	part := fmt.Sprintf("audit_events_y%04dm%02d", e.month.Year(), int(e.month.Month()))

	writer, err := pgx.Connect(ctx, e.url)
	require.NoError(t, err)
	defer writer.Close(ctx)
	tx, err := writer.Begin(ctx)
	require.NoError(t, err)
	// A copy of one of the month's events under a new id and correlation:
	// a row of the month like any other for the job, which does not
	// recompute hashes before the drop.
	inflight := uuid.New()
	_, err = tx.Exec(ctx, `INSERT INTO audit_events SELECT (jsonb_populate_record(NULL::audit_events,
		to_jsonb(e) || jsonb_build_object('event_id', $1::uuid, 'correlation_id', 'inflight'))).*
		FROM `+part+` e WHERE correlation_id = $2 AND chain_seq = 1`, inflight, e.corrs[0])
	require.NoError(t, err)

	a := e.archiver(fileTarget(t, t.TempDir()))
	type result struct {
		rep archive.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := a.Run(ctx, e.month)
		done <- result{rep, err}
	}()
	// The arming waits for the writer's lock on the partition.
	probe, err := pgx.Connect(ctx, e.url)
	require.NoError(t, err)
	defer probe.Close(ctx)
	require.Eventually(t, func() bool {
		var waiting bool
		err := probe.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND relation = $1::regclass)`, part).Scan(&waiting)
		return err == nil && waiting
	}, time.Minute, 20*time.Millisecond, "the arming waits for the writer")
	select {
	case r := <-done:
		t.Fatalf("the run finished while a writer of the month was in flight: %+v %v", r.rep, r.err)
	default:
	}
	require.NoError(t, tx.Commit(ctx))

	r := <-done
	require.NoError(t, r.err)
	mr := e.monthOf(r.rep)
	require.True(t, mr.Dropped)
	assert.False(t, mr.Compared, "proved by the watch")
	assert.True(t, e.archivedIDs(a)[inflight], "the writer's event, committed before the read, is archived")
	assert.EqualValues(t, len(e.monthEvents())+1, mr.Events)
}

// TestDropComparesInFullWhenTheWatchCannotProve: when the watch cannot
// speak for the archive, the drop compares the whole month with the files,
// as before the watch: the month was armed again after the files were
// written (a later run that stopped before writing its own), or a trigger
// was disabled (a write may have gone unnoted). A month changed meanwhile
// is then refused by the comparison; an unchanged one is dropped.
func TestDropComparesInFullWhenTheWatchCannotProve(t *testing.T) {
	rearm := func(e *env) {
		_, err := e.exec(`UPDATE audit_archive_watch SET generation = nextval('audit_archive_watch_generation') WHERE month = $1`, e.month)
		require.NoError(e.t, err)
		_, err = e.exec(`DELETE FROM audit_archive_writes WHERE month = $1`, e.month)
		require.NoError(e.t, err)
	}
	disable := func(e *env) {
		_, err := e.exec(fmt.Sprintf(`ALTER TABLE audit_events_y%04dm%02d DISABLE TRIGGER audit_archive_watch`, e.month.Year(), int(e.month.Month())))
		require.NoError(e.t, err)
	}
	for _, c := range []struct {
		name   string
		before func(e *env) // at StepRecorded, before the write
		after  func(e *env) // at StepRecorded, after the write
	}{
		{"armed again", nil, rearm},
		{"trigger disabled", disable, nil},
	} {
		for _, changed := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/changed=%v", c.name, changed), func(t *testing.T) {
				e := newEnv(t)
				e.fill(10, 6)
				ctx := context.Background()
				a := e.archiver(fileTarget(t, t.TempDir()))
				a.Options.AfterStep = func(step string, month time.Time) {
					if step != archive.StepRecorded || !month.Equal(e.month) {
						return
					}
					if c.before != nil {
						c.before(e)
					}
					if changed {
						_, err := e.st.InsertEvents(ctx, []*audit.Event{e.lateEvent("late")})
						require.NoError(t, err)
					}
					if c.after != nil {
						c.after(e)
					}
				}
				rep, err := a.Run(ctx, e.month)
				mr := e.monthOf(rep)
				assert.True(t, mr.Compared, "compared in full")
				if changed {
					require.ErrorIs(t, err, archive.ErrChanged)
					assert.True(t, e.partitionExists(e.month))
					return
				}
				require.NoError(t, err)
				assert.True(t, mr.Dropped)
				assert.False(t, e.partitionExists(e.month))
			})
		}
	}
}
