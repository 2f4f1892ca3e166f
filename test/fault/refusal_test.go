package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/testenv"
)

// The tests of this file make PostgreSQL refuse the service in each of the
// ways issue 18 lists, on a running server, and check the answers the
// classification promises (internal/ingest/doc.go): writes are spooled (202
// single, 201 batch), reads answer 503 while the database cannot be reached,
// nothing is dead-lettered, and once the cause is removed every accepted
// event is stored exactly once.

const (
	appRole     = "ds"
	appDB       = "ds_app"
	appPassword = "pw-1"
)

// app is a stack on which the service runs as a non-superuser role that
// owns its database and logs in with a password (scram-sha-256), so that
// privileges, passwords and connection limits apply to it.
type app struct {
	*stack
	env []string // the service's database settings
}

func newApp(t *testing.T, pgOpts ...testenv.PostgresOption) *app {
	t.Helper()
	s := newStack(t, pgOpts...)
	s.admin("postgres",
		`CREATE ROLE `+appRole+` LOGIN PASSWORD '`+appPassword+`'`,
		`CREATE DATABASE `+appDB+` OWNER `+appRole)
	hba := filepath.Join(s.pg.DataDir, "pg_hba.conf")
	old, err := os.ReadFile(hba)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(hba, append([]byte("host all "+appRole+" 127.0.0.1/32 scram-sha-256\n"), old...), 0o600))
	s.admin("postgres", `SELECT pg_reload_conf()`)
	secrets := filepath.Join(t.TempDir(), "db-secrets.yaml")
	require.NoError(t, os.WriteFile(secrets, []byte("password: "+appPassword+"\n"), 0o600))
	s.dbURL = s.pg.URL(appDB) // where the checks look, as superuser
	return &app{stack: s, env: []string{
		fmt.Sprintf("DATASTORAGE_DATABASE_URL=postgres://%s@127.0.0.1:%d/%s?sslmode=disable", appRole, s.pg.Port, appDB),
		"DATASTORAGE_DATABASE_SECRETSFILE=" + secrets,
	}}
}

// admin runs statements as the superuser on database db.
func (s *stack) admin(db string, statements ...string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.pg.URL(db))
	require.NoError(s.t, err)
	defer conn.Close(context.Background())
	for _, q := range statements {
		_, err := conn.Exec(ctx, q)
		require.NoError(s.t, err, q)
	}
}

// terminateApp ends every backend of the service's role, as an operator
// does to make a change to the role or the database take effect. It waits
// for each process to exit: a terminated backend leaves pg_stat_activity
// before it gives its connection slot back, so without the wait a slot
// counted as taken could free a moment later.
func (a *app) terminateApp() {
	a.admin("postgres", `SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = '`+appRole+`'`)
}

// appBackends is the number of backends of the service's role.
func (a *app) appBackends() int {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, a.pg.AdminURL())
	require.NoError(a.t, err)
	defer conn.Close(context.Background())
	var n int
	require.NoError(a.t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = '`+appRole+`'`).Scan(&n))
	return n
}

// answer is one request's outcome.
type answer struct {
	status     int
	retryAfter string
	body       string
}

func (srv *server) send(method, path string, body any) answer {
	srv.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(srv.t, err)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, srv.base+path, r)
	require.NoError(srv.t, err)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 90 * time.Second}
	resp, err := client.Do(req)
	require.NoError(srv.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b)}
}

// writeSome sends singles single writes and batches batches of size events,
// over several correlations (so a batch spans the pipeline's writers), and
// checks each answer against want(batch). It returns the ids sent.
func (srv *server) writeSome(tag string, singles, batches, size int, want func(batch bool) int) []uuid.UUID {
	srv.t.Helper()
	var ids []uuid.UUID
	for i := range singles {
		id := uuid.New()
		ids = append(ids, id)
		a := srv.send("POST", "/api/v1/audit/events", eventBody(id, fmt.Sprintf("%s-s%d", tag, i), i))
		require.Equal(srv.t, want(false), a.status, "single write %d (%s): %s", i, tag, a.body)
	}
	for i := range batches {
		var batch []map[string]any
		for k := range size {
			id := uuid.New()
			ids = append(ids, id)
			batch = append(batch, eventBody(id, fmt.Sprintf("%s-b%d-%d", tag, i, k), k))
		}
		a := srv.send("POST", "/api/v1/audit/events/batch", batch)
		require.Equal(srv.t, want(true), a.status, "batch %d (%s): %s", i, tag, a.body)
	}
	return ids
}

func stored(bool) int { return http.StatusCreated }

// spooled is the answer to a write PostgreSQL could not take: 202 for a
// single event, 201 for a batch (CONTRACT §2, §3).
func spooled(batch bool) int {
	if batch {
		return http.StatusCreated
	}
	return http.StatusAccepted
}

// refusal is one way PostgreSQL refuses the service.
type refusal struct {
	name   string
	pgOpts []testenv.PostgresOption
	// apply makes PostgreSQL refuse; remove undoes it.
	apply, remove func(t *testing.T, a *app)
	// readsRefused: reads answer 503 (the database cannot be reached at
	// all); otherwise reads still work (only writes are refused).
	readsRefused bool
	// dropsData: the cause loses what was stored before it (the database is
	// dropped); only what is accepted during and after is checked.
	dropsData bool
}

func TestEveryRefusalByPostgresSpoolsWritesAndStoresThemOnceAfterwards(t *testing.T) {
	t.Parallel()
	var filler []*pgx.Conn
	for _, rf := range []refusal{
		{
			name: "database dropped and recreated (3D000)", readsRefused: true, dropsData: true,
			apply: func(t *testing.T, a *app) {
				a.admin("postgres", `DROP DATABASE `+appDB+` WITH (FORCE)`)
			},
			remove: func(t *testing.T, a *app) {
				// A restore: a new database, migrated, then put in place.
				a.admin("postgres", `CREATE DATABASE `+appDB+`_new OWNER `+appRole)
				env := append(slicesClone(a.env), strings.Replace(a.env[0], "/"+appDB+"?", "/"+appDB+"_new?", 1))
				code, out, errOut := a.runCLI(env, "migrate")
				require.Zero(t, code, "migrate: %s %s", out, errOut)
				a.admin("postgres", `ALTER DATABASE `+appDB+`_new RENAME TO `+appDB)
			},
		},
		{
			name: "password changed (28P01)", readsRefused: true,
			apply: func(t *testing.T, a *app) {
				a.admin("postgres", `ALTER ROLE `+appRole+` PASSWORD 'rotated'`)
				a.terminateApp()
			},
			remove: func(t *testing.T, a *app) { a.admin("postgres", `ALTER ROLE `+appRole+` PASSWORD '`+appPassword+`'`) },
		},
		{
			name: "database not accepting connections (55000)", readsRefused: true,
			apply: func(t *testing.T, a *app) {
				a.admin("postgres", `ALTER DATABASE `+appDB+` ALLOW_CONNECTIONS false`)
				a.terminateApp()
			},
			remove: func(t *testing.T, a *app) { a.admin("postgres", `ALTER DATABASE `+appDB+` ALLOW_CONNECTIONS true`) },
		},
		{
			name: "max_connections exhausted (53300)", readsRefused: true,
			pgOpts: []testenv.PostgresOption{testenv.WithPostgresSetting("max_connections", "20")},
			apply: func(t *testing.T, a *app) {
				a.admin("postgres", `CREATE ROLE filler LOGIN`)
				url := strings.Replace(a.pg.AdminURL(), "postgres@", "filler@", 1)
				// Take every slot a non-superuser can have; the service's
				// backends go, and it reconnects into a full server.
				// fill takes free slots until the server refuses one and
				// says whether it took any.
				fill := func() bool {
					took := false
					for {
						c, err := pgx.Connect(context.Background(), url)
						var pgErr *pgconn.PgError
						if errors.As(err, &pgErr) && pgErr.Code == "53300" {
							return took
						}
						require.NoError(t, err)
						filler = append(filler, c)
						took = true
					}
				}
				for round := 0; ; round++ {
					require.Less(t, round, 50, "could not take every connection slot")
					a.terminateApp()
					fill()
					if a.appBackends() != 0 {
						continue
					}
					// A slot may still be on its way back (a backend of the
					// service that was starting up when the server filled):
					// full means full a moment later too.
					time.Sleep(300 * time.Millisecond)
					if !fill() && a.appBackends() == 0 {
						return
					}
				}
			},
			remove: func(t *testing.T, a *app) {
				for _, c := range filler {
					_ = c.Close(context.Background())
				}
			},
		},
		{
			name: "INSERT privilege revoked (42501)",
			apply: func(t *testing.T, a *app) {
				a.admin(appDB, `REVOKE INSERT ON audit_events FROM `+appRole)
			},
			remove: func(t *testing.T, a *app) { a.admin(appDB, `GRANT INSERT ON audit_events TO `+appRole) },
		},
		{
			name: "primary turned read-only (25006)",
			apply: func(t *testing.T, a *app) {
				a.admin("postgres", `ALTER DATABASE `+appDB+` SET default_transaction_read_only = on`)
				a.terminateApp()
			},
			remove: func(t *testing.T, a *app) {
				a.admin("postgres", `ALTER DATABASE `+appDB+` RESET default_transaction_read_only`)
				a.terminateApp() // the pool's sessions were opened read-only
			},
		},
	} {
		t.Run(rf.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			phase := func(what string) { t.Logf("%s at %s", what, time.Since(start).Round(time.Millisecond)) }
			a := newApp(t, rf.pgOpts...)
			phase("servers up")
			srv := a.startServer("ds", a.env...)
			phase("service up")
			before := srv.writeSome("before", 2, 1, 4, stored)

			rf.apply(t, a)
			phase("cause applied")
			during := srv.writeSome("during", 6, 3, 5, spooled)
			phase("written during")
			read := srv.send("GET", "/api/v1/audit/events?limit=5", nil)
			if rf.readsRefused {
				assert.Equal(t, http.StatusServiceUnavailable, read.status, "a read while the database refuses: %s", read.body)
				assert.NotEmpty(t, read.retryAfter, "503 with Retry-After")
				status, ready := srv.ready()
				assert.Equal(t, http.StatusOK, status, "the spool keeps the service ready: %v", ready)
				assert.Equal(t, "down", ready["database"])
			} else {
				assert.Equal(t, http.StatusOK, read.status, "reads still work: %s", read.body)
			}
			assert.Positive(t, a.xlen(eventsStream), "the writes were spooled")
			assert.Zero(t, a.xlen(deadLetters), "nothing is dead-lettered for an outage")

			rf.remove(t, a)
			phase("cause removed")
			waitFor(t, 45*time.Second, "the spool drained", func() bool {
				return a.xlen(eventsStream) == 0 && a.pending(eventsStream) == 0
			})
			phase("spool drained")
			after := srv.writeSome("after", 2, 1, 4, stored)
			assert.Zero(t, a.xlen(deadLetters), "nothing was dead-lettered")

			got := a.stored()
			want := append(during, after...)
			if !rf.dropsData {
				want = append(want, before...)
			}
			for _, id := range want {
				assert.Equal(t, 1, got[id], "event %s stored exactly once", id)
			}
			assert.Len(t, got, len(want), "nothing else is stored")
		})
	}
}

// An internal error (here the schema changed under the service: a column it
// writes and reads was renamed) answers 500 on reads and writes, never 503,
// and replay parks the pages instead of retrying them in a loop or
// dead-lettering them; once the schema is put back they are stored once.
func TestAnInternalErrorAnswers500AndReplayParksWithoutLooping(t *testing.T) {
	t.Parallel()
	const claimIdle = 4 * time.Second
	a := newApp(t)
	srv := a.startServer("ds", append(a.env, "DATASTORAGE_REDIS_CLAIMIDLE="+claimIdle.String())...)
	a.admin(appDB, `REVOKE INSERT ON audit_events FROM `+appRole)
	spooledIDs := srv.writeSome("during", 5, 2, 5, spooled)
	depth := a.xlen(eventsStream)
	require.EqualValues(t, len(spooledIDs), depth)

	a.admin(appDB, `ALTER TABLE audit_events RENAME COLUMN actor_ip TO actor_ip_renamed`,
		`GRANT INSERT ON audit_events TO `+appRole)
	parkedAt := time.Now()
	waitFor(t, 30*time.Second, "replay parked every spooled event", func() bool {
		n, _ := srv.metric(`datastorage_replay_parked_total{stream="events"}`)
		return n >= float64(depth)
	})

	w := srv.send("POST", "/api/v1/audit/events", eventBody(uuid.New(), "internal-live", 0))
	assert.Equal(t, http.StatusInternalServerError, w.status, "a live write meeting an internal error: %s", w.body)
	assert.Contains(t, w.body, "internal-error")
	r := srv.send("GET", "/api/v1/audit/events?limit=5", nil)
	assert.Equal(t, http.StatusInternalServerError, r.status, "a read meeting an internal error: %s", r.body)
	assert.Empty(t, r.retryAfter, "not an outage: no Retry-After")

	assert.Equal(t, depth, a.xlen(eventsStream), "parked entries stay in the spool")
	assert.Equal(t, depth, a.pending(eventsStream), "parked entries stay pending")
	assert.Zero(t, a.xlen(deadLetters), "an internal error never dead-letters")
	// No loop: each parked page is tried again at most once per claim
	// timeout (a loop would try it thousands of times).
	parked, _ := srv.metric(`datastorage_replay_parked_total{stream="events"}`)
	bound := float64(depth) * (2 + time.Since(parkedAt).Seconds()/claimIdle.Seconds())
	assert.LessOrEqual(t, parked, bound, "parked pages are retried once per claim timeout, not in a loop")
	assert.Contains(t, srv.log(), "the page is parked")

	a.admin(appDB, `ALTER TABLE audit_events RENAME COLUMN actor_ip_renamed TO actor_ip`)
	waitFor(t, 45*time.Second, "the parked pages committed", func() bool {
		return a.xlen(eventsStream) == 0 && a.pending(eventsStream) == 0
	})
	got := a.stored()
	for _, id := range spooledIDs {
		assert.Equal(t, 1, got[id], "event %s stored exactly once", id)
	}
	assert.Len(t, got, len(spooledIDs), "the live write answered 500 was not stored")
	assert.Zero(t, a.xlen(deadLetters))
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
