package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("TESTENV_CHILD"); mode != "" {
		runChild(mode) // never returns
	}
	Main(m)
}

// integration skips tests that start servers under go test -short (make test-short).
func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts servers; integration tests do not run with -short")
	}
	t.Parallel()
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func exec1(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	_, err := conn.Exec(context.Background(), sql, args...)
	require.NoError(t, err, sql)
}

func count(t *testing.T, url, table string) int {
	t.Helper()
	conn := connect(t, url)
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n))
	require.NoError(t, conn.Close(context.Background()))
	return n
}

func requireUnreachable(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		_ = conn.Close(ctx)
	}
	require.Error(t, err, "server still accepts connections")
}

func postmasterPID(t *testing.T, pg *Postgres) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pg.DataDir, "postmaster.pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	require.NoError(t, err)
	return pid
}

func TestPostgresStopStartKeepsData(t *testing.T) {
	integration(t)
	pg := NewPostgres(t)
	url, err := pg.CreateDatabase(context.Background(), "keep")
	require.NoError(t, err)
	conn := connect(t, url)
	exec1(t, conn, "CREATE TABLE kv (k int PRIMARY KEY)")
	exec1(t, conn, "INSERT INTO kv SELECT generate_series(1, 1000)")
	port, pid := pg.Port, postmasterPID(t, pg)

	require.NoError(t, pg.Stop())
	require.False(t, pg.Running())
	require.False(t, processAlive(pid), "postmaster still alive after Stop")
	requireUnreachable(t, url)
	require.NoError(t, pg.Stop(), "second Stop is a no-op")

	require.NoError(t, pg.Start())
	require.True(t, pg.Running())
	require.Equal(t, port, pg.Port, "restarted on another port")
	require.Equal(t, 1000, count(t, url, "kv"))
	require.NoError(t, pg.Start(), "Start of a running server is a no-op")
}

func TestPostgresKillThenStartRecovers(t *testing.T) {
	integration(t)
	pg := NewPostgres(t)
	url, err := pg.CreateDatabase(context.Background(), "crash")
	require.NoError(t, err)
	conn := connect(t, url)
	exec1(t, conn, "CREATE TABLE kv (k int PRIMARY KEY)")
	exec1(t, conn, "INSERT INTO kv SELECT generate_series(1, 500)")
	// A session in the middle of a transaction dies with the server; its rows must not appear.
	tx, err := conn.Begin(context.Background())
	require.NoError(t, err)
	_, err = tx.Exec(context.Background(), "INSERT INTO kv SELECT generate_series(501, 600)")
	require.NoError(t, err)
	pid := postmasterPID(t, pg)
	tree := descendants(pid)
	var backend int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&backend))
	require.Contains(t, tree, backend)

	require.NoError(t, pg.Kill())
	require.False(t, pg.Running())
	require.False(t, processAlive(pid), "postmaster alive after Kill")
	for _, p := range tree {
		require.False(t, processAlive(p), "server process %d survived Kill", p)
	}
	requireUnreachable(t, url)

	require.NoError(t, pg.Start())
	require.Equal(t, 500, count(t, url, "kv"))
	require.Contains(t, pg.LogTail(200), "database system was interrupted", "no crash recovery in the log")

	// And once more, the clean way, after the recovery.
	require.NoError(t, pg.Stop())
	require.NoError(t, pg.Start())
	require.Equal(t, 500, count(t, url, "kv"))
}

func TestRedisStopStart(t *testing.T) {
	integration(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		opts     []RedisOption
		kill     bool
		wantKept bool
	}{
		{name: "no AOF, Stop", wantKept: false},
		{name: "AOF, Stop", opts: []RedisOption{WithAOF()}, wantKept: true},
		{name: "AOF, Kill", opts: []RedisOption{WithAOF()}, kill: true, wantKept: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := NewRedis(t, tc.opts...)
			c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
			t.Cleanup(func() { _ = c.Close() })
			require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
			addr := r.Addr()

			if tc.kill {
				time.Sleep(1500 * time.Millisecond) // appendfsync everysec may hold the last second
				require.NoError(t, r.Kill())
			} else {
				require.NoError(t, r.Stop())
			}
			require.False(t, r.Running())
			require.Error(t, c.Ping(ctx).Err(), "server still answers")

			require.NoError(t, r.Start())
			require.Equal(t, addr, r.Addr(), "restarted on another address")
			got, err := c.Get(ctx, "k").Result()
			if tc.wantKept {
				require.NoError(t, err)
				require.Equal(t, "v", got)
			} else {
				require.ErrorIs(t, err, redis.Nil)
			}
		})
	}
}

func TestNewDatabaseIsolated(t *testing.T) {
	integration(t)
	var names [2]string
	t.Run("databases", func(t *testing.T) {
		a, b := NewDatabase(t), NewDatabase(t)
		require.NotEqual(t, a, b)
		for i, url := range []string{a, b} {
			conn := connect(t, url)
			exec1(t, conn, "CREATE TABLE events (id int)") // same name in both: no clash
			require.NoError(t, conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&names[i]))
		}
		exec1(t, connect(t, a), "INSERT INTO events VALUES (1), (2)")
		require.Equal(t, 2, count(t, a, "events"))
		require.Equal(t, 0, count(t, b, "events"))
		// Connections left open here must not stop the cleanup from dropping the databases.
	})
	admin := connect(t, sharedPostgresAdminURL(t))
	for _, name := range names {
		require.NotEmpty(t, name)
		var exists bool
		require.NoError(t, admin.QueryRow(context.Background(),
			"SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists))
		require.False(t, exists, "database %s not dropped by cleanup", name)
	}
}

func TestNewDatabaseParallelTests(t *testing.T) {
	integration(t)
	for i := range 8 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			conn := connect(t, NewDatabase(t))
			exec1(t, conn, "CREATE TABLE t (v int)")
			exec1(t, conn, "INSERT INTO t VALUES ($1)", i)
			var v int
			require.NoError(t, conn.QueryRow(context.Background(), "SELECT sum(v) FROM t").Scan(&v))
			require.Equal(t, i, v)
		})
	}
}

func TestNewRedisDBIsolated(t *testing.T) {
	integration(t)
	ctx := context.Background()
	var dbs [2]int
	var addr string
	t.Run("databases", func(t *testing.T) {
		a1, db1 := NewRedisDB(t)
		a2, db2 := NewRedisDB(t)
		require.Equal(t, a1, a2)
		require.NotEqual(t, db1, db2)
		require.NotZero(t, db1, "database 0 holds the leases")
		require.NotZero(t, db2, "database 0 holds the leases")
		c1 := redis.NewClient(&redis.Options{Addr: a1, DB: db1})
		c2 := redis.NewClient(&redis.Options{Addr: a2, DB: db2})
		t.Cleanup(func() { _ = c1.Close(); _ = c2.Close() })
		require.NoError(t, c1.XAdd(ctx, &redis.XAddArgs{Stream: "audit:dlq:events", Values: []any{"message", "x"}}).Err())
		n, err := c2.XLen(ctx, "audit:dlq:events").Result()
		require.NoError(t, err)
		require.Zero(t, n, "stream visible in another test's database")
		dbs, addr = [2]int{db1, db2}, a1
	})
	for _, db := range dbs {
		c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
		n, err := c.DBSize(ctx).Result()
		_ = c.Close()
		require.NoError(t, err)
		require.Zero(t, n, "database %d not flushed by cleanup", db)
		lease := redis.NewClient(&redis.Options{Addr: addr})
		exists, err := lease.Exists(ctx, leaseKeyPrefix+strconv.Itoa(db)).Result()
		_ = lease.Close()
		require.NoError(t, err)
		require.Zero(t, exists, "lease on database %d not released", db)
	}
}

func TestParallelStartsGetDistinctPorts(t *testing.T) {
	integration(t)
	const n = 4
	var (
		wg     sync.WaitGroup
		pgs    [n]*Postgres
		rs     [n]*Redis
		errs   [2 * n]error
		closed = func() {
			for i := range n {
				if pgs[i] != nil {
					_ = pgs[i].Close()
				}
				if rs[i] != nil {
					_ = rs[i].Close()
				}
			}
		}
	)
	t.Cleanup(closed)
	for i := range n {
		wg.Add(2)
		go func() { defer wg.Done(); pgs[i], errs[i] = StartPostgres() }()
		go func() { defer wg.Done(); rs[i], errs[n+i] = StartRedis() }()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs[:]...))

	ports := map[int]bool{}
	for i := range n {
		for _, p := range []int{pgs[i].Port, rs[i].Port} {
			require.False(t, ports[p], "port %d handed out twice", p)
			require.GreaterOrEqual(t, p, 15000)
			require.Less(t, p, 32000)
			ports[p] = true
		}
		conn := connect(t, pgs[i].AdminURL())
		require.NoError(t, conn.Ping(context.Background()))
		require.NoError(t, pingRedis(rs[i].Addr()))
	}
}

func TestMissingBinariesFailWithInstructions(t *testing.T) {
	t.Parallel()
	_, err := StartPostgres(WithPostgresBinDir(t.TempDir()))
	require.ErrorIs(t, err, ErrNotInstalled)
	require.Contains(t, err.Error(), "make test")
}

func TestURLs(t *testing.T) {
	t.Parallel()
	pg := &Postgres{Host: "127.0.0.1", Port: 15432}
	require.Equal(t, "postgres://postgres@127.0.0.1:15432/postgres?sslmode=disable", pg.AdminURL())
	require.Equal(t, "postgres://postgres@127.0.0.1:15432/x?sslmode=disable", pg.URL("x"))
	u, err := databaseURL("postgres://u:p@db:5432/postgres?sslmode=require", "t_1")
	require.NoError(t, err)
	require.Equal(t, "postgres://u:p@db:5432/t_1?sslmode=require", u)
	r := &Redis{Host: "127.0.0.1", Port: 16379}
	require.Equal(t, "127.0.0.1:16379", r.Addr())
}

// TestServersDieWithTestBinary runs this test binary as a child that starts PostgreSQL and
// Redis and then dies without cleaning up, and checks that the kernel took its servers down
// with it and that the next test binary removes the directories it left.
func TestServersDieWithTestBinary(t *testing.T) {
	integration(t)
	for _, mode := range []string{"panic", "sigkill"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "TESTENV_CHILD="+mode)
			cmd.Stderr = new(strings.Builder)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			stdin, err := cmd.StdinPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill() })

			var pgPID, redisPID int
			var pgDir, redisDir string
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if _, err := fmt.Sscanf(sc.Text(), "SERVERS %d %d %s %s", &pgPID, &redisPID, &pgDir, &redisDir); err == nil {
					break
				}
			}
			require.NotZero(t, pgPID, "child did not report its servers; stderr:\n%s", cmd.Stderr)
			servers := append([]int{pgPID, redisPID}, descendants(pgPID)...) // backends, checkpointer, ...
			require.Greater(t, len(servers), 4)
			for _, p := range servers {
				require.True(t, processAlive(p))
			}
			if mode == "sigkill" {
				require.NoError(t, cmd.Process.Kill())
			} else {
				_, err = stdin.Write([]byte("panic now\n"))
				require.NoError(t, err)
			}
			_ = cmd.Wait()
			require.False(t, cmd.ProcessState.Success(), "child should have died")

			require.Eventually(t, func() bool {
				for _, p := range servers {
					if processAlive(p) {
						return false
					}
				}
				return !groupAlive(pgPID) && !groupAlive(redisPID)
			}, 15*time.Second, 20*time.Millisecond, "server processes outlived their test binary")

			// The directories stay behind until another test binary starts a server (a test
			// binary running at the same time may already have removed them).
			sweep := exec.Command(os.Args[0], "-test.run=^$")
			sweep.Env = append(os.Environ(), "TESTENV_CHILD=sweep")
			out, err := sweep.CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.NoDirExists(t, pgDir)
			require.NoDirExists(t, redisDir)
		})
	}
}

// runChild is the child side of TestServersDieWithTestBinary.
func runChild(mode string) {
	if mode == "sweep" {
		r, err := StartRedis() // the first server of a process sweeps stale directories
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_ = r.Close()
		os.Exit(0)
	}
	pg, err := StartPostgres()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	r, err := StartRedis(WithAOF())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Backends too: an open session is a postgres process of its own.
	conn, err := pgx.Connect(context.Background(), pg.AdminURL())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close(context.Background())
	fmt.Printf("SERVERS %d %d %s %s\n", pg.proc.pid(), r.proc.pid(), pg.DataDir, r.Dir)
	// Wait for the parent to look at the servers, then die: by panic, or by the SIGKILL the
	// parent sends.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	panic("testenv: deliberate crash of a test binary")
}

func TestNewTemplatedDatabaseCopiesOneBuild(t *testing.T) {
	integration(t)
	var builds atomic.Int32
	build := func(ctx context.Context, url string) error {
		builds.Add(1)
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "CREATE TABLE seed (v int); INSERT INTO seed VALUES (1), (2), (3)")
		return err
	}
	urls := make([]string, 6)
	t.Run("clones", func(t *testing.T) {
		for i := range urls {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				urls[i] = NewTemplatedDatabase(t, "copies-one-build", build)
				require.Equal(t, 3, count(t, urls[i], "seed"), "the template's rows")
				exec1(t, connect(t, urls[i]), "INSERT INTO seed SELECT generate_series(1, $1::int)", i)
				require.Equal(t, 3+i, count(t, urls[i], "seed"), "a clone's writes stay in the clone")
			})
		}
	})
	require.EqualValues(t, 1, builds.Load(), "parallel first calls share one build")

	sharedMu.Lock()
	name := sharedPG.templates["copies-one-build"].name
	sharedMu.Unlock()
	tmplURL, err := databaseURL(sharedPostgresAdminURL(t), name)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pgx.Connect(ctx, tmplURL)
	require.ErrorContains(t, err, "not currently accepting connections", "the template is sealed")
}

func TestNewTemplatedDatabaseBuildFailureAndLeftoverSessions(t *testing.T) {
	integration(t)
	adminURL := sharedPostgresAdminURL(t)
	_, err := templateFor(adminURL, t.Name()+"-fails", func(context.Context, string) error {
		return errors.New("migration 7 is broken")
	})
	require.ErrorContains(t, err, "migration 7 is broken")
	_, err = templateFor(adminURL, t.Name()+"-fails", func(context.Context, string) error { return nil })
	require.ErrorContains(t, err, "migration 7 is broken", "a failed build is not retried with another build")

	// A build that forgets a connection must not make every clone wait for it.
	var leaked *pgx.Conn
	t.Cleanup(func() {
		if leaked != nil {
			_ = leaked.Close(context.Background())
		}
	})
	url := NewTemplatedDatabase(t, t.Name()+"-leaks", func(ctx context.Context, url string) (err error) {
		leaked, err = pgx.Connect(ctx, url)
		return err
	})
	require.Equal(t, 0, count(t, url, "pg_class WHERE relname = 'seed'"))
}
