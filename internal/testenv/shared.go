package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Environment variables naming servers to use instead of starting private ones.
//
// They share the DATASTORAGE_ prefix of the service's configuration variables, which treats
// any DATASTORAGE_ variable it does not know as an error: a test that runs the service binary
// must not pass them on.
const (
	// EnvPostgresURL is a superuser (or CREATEDB) URL of an existing PostgreSQL server.
	EnvPostgresURL = "DATASTORAGE_TEST_POSTGRES_URL"
	// EnvRedisAddr is host:port of an existing Redis server.
	EnvRedisAddr = "DATASTORAGE_TEST_REDIS_ADDR"
)

// sharedDatabases is the number of logical databases of the private shared Redis, so each
// parallel test can own one (Redis's default is 16).
const sharedDatabases = 1024

var (
	mainCalled atomic.Bool

	sharedMu sync.Mutex
	sharedPG struct {
		started  bool
		server   *Postgres // nil when the environment named a server
		adminURL string
		err      error
		// templates are the template databases of NewTemplatedDatabase, by key,
		// built on this server by this process.
		templates map[string]*templateDB
	}
	sharedRedis struct {
		started bool
		server  *Redis
		addr    string
		err     error
	}
)

// Main runs the tests of a package that uses the shared servers ([NewDatabase], [NewRedisDB],
// [SharedRedis]) and then stops the servers it started for them. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// If a test binary dies without reaching the end of Main (panic, timeout, SIGKILL), its
// servers are killed by the kernel (Pdeathsig) and their directories are removed by the next
// test binary that starts a server.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	if buildPath != "" {
		_ = os.RemoveAll(filepath.Dir(buildPath))
	}
	if err := closeShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func closeShared() error {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	var errs []error
	if sharedPG.server == nil && sharedPG.adminURL != "" {
		// A server named by the environment outlives us: drop our templates. A private
		// server takes them with it when it closes.
		for _, tmpl := range sharedPG.templates {
			if tmpl.name == "" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := dropDatabase(ctx, sharedPG.adminURL, tmpl.name); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
	}
	if s := sharedPG.server; s != nil {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("testenv: shared postgres: %w", err))
		}
	}
	if s := sharedRedis.server; s != nil {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("testenv: shared redis: %w", err))
		}
	}
	return errors.Join(errs...)
}

func requireMain(t testing.TB, helper string) {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatalf("testenv.%s needs testenv.Main to stop the shared servers: add to this package's tests\n\n"+
			"\tfunc TestMain(m *testing.M) { testenv.Main(m) }", helper)
	}
}

// skipIfShort skips integration tests under go test -short (make test-short runs unit tests).
func skipIfShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s; integration tests do not run with -short", what)
	}
}

// sharedPostgresAdminURL returns the admin URL of the shared server, starting it on first use.
func sharedPostgresAdminURL(t testing.TB) string {
	t.Helper()
	requireMain(t, "NewDatabase")
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if !sharedPG.started {
		sharedPG.started = true
		if u := os.Getenv(EnvPostgresURL); u != "" {
			sharedPG.adminURL = u
		} else if pg, err := StartPostgres(WithPostgresSetting("synchronous_commit", "off")); err != nil {
			sharedPG.err = err
		} else {
			sharedPG.server, sharedPG.adminURL = pg, pg.AdminURL()
		}
	}
	if sharedPG.err != nil {
		t.Fatalf("shared PostgreSQL: %v", sharedPG.err)
	}
	return sharedPG.adminURL
}

// NewDatabase creates a fresh, empty database on the test binary's shared PostgreSQL server
// and returns its URL (user postgres, a superuser). t.Cleanup drops it WITH (FORCE), so the
// test need not close its connections first. One database per test lets integration tests
// call t.Parallel().
//
// The shared server is the one named by DATASTORAGE_TEST_POSTGRES_URL (an admin URL), or else
// a private server started on first use and stopped by [Main], which the package must call.
// Under go test -short the test is skipped.
func NewDatabase(t testing.TB) string {
	t.Helper()
	skipIfShort(t, "PostgreSQL")
	adminURL := sharedPostgresAdminURL(t)
	name := uniqueName(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := createDatabase(ctx, adminURL, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := dropDatabase(ctx, adminURL, name); err != nil {
			t.Error(err)
		}
	})
	u, err := databaseURL(adminURL, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// uniqueName returns a database name made of the test's name (for people reading
// pg_stat_activity) and random hex (unique across test processes sharing a server).
func uniqueName(t testing.TB) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(t.Name()) {
		if b.Len() >= 40 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteByte('_')
	b.WriteString(randomHex(6))
	return b.String()
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	rnd := make([]byte, n)
	_, _ = rand.Read(rnd)
	return hex.EncodeToString(rnd)
}

// SharedRedis returns the address of the test binary's shared Redis server: the one named by
// DATASTORAGE_TEST_REDIS_ADDR, or else a private server (AOF off) started on first use and
// stopped by [Main], which the package must call.
//
// Other tests use the same server: prefer [NewRedisDB], which hands the test a logical
// database of its own. A test using SharedRedis directly must keep to its own keys and never
// FLUSHDB/FLUSHALL database 0, which holds the leases of NewRedisDB. Under go test -short the
// test is skipped.
func SharedRedis(t testing.TB) string {
	t.Helper()
	skipIfShort(t, "Redis")
	requireMain(t, "SharedRedis")
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if !sharedRedis.started {
		sharedRedis.started = true
		if a := os.Getenv(EnvRedisAddr); a != "" {
			sharedRedis.addr = a
		} else if r, err := StartRedis(WithRedisArgs("--databases", strconv.Itoa(sharedDatabases))); err != nil {
			sharedRedis.err = err
		} else {
			sharedRedis.server, sharedRedis.addr = r, r.Addr()
		}
	}
	if sharedRedis.err != nil {
		t.Fatalf("shared Redis: %v", sharedRedis.err)
	}
	return sharedRedis.addr
}

// Leases on logical databases live in database 0 of the shared server, which is never handed
// out. A lease expires leaseTTL after its holder stops renewing it (its test binary died).
const (
	leaseKeyPrefix = "datastorage-testenv:db-lease:"
	leaseTTL       = time.Minute
	leaseWait      = 2 * time.Minute
)

var (
	renewLease   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
	releaseLease = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
)

// NewRedisDB gives the test a logical database of its own on the shared Redis server
// ([SharedRedis]): it returns the server address and a database number (connect with
// redis.Options{Addr: addr, DB: db}, or the service's redis.db setting). The database is empty
// when the test starts and is flushed again by t.Cleanup, so tests can use the fixed key
// names of the spool format and still run with t.Parallel().
//
// Databases are leased through database 0 of the server, which also works across test
// processes sharing a server named by DATASTORAGE_TEST_REDIS_ADDR; such a server has 16
// databases by default, so at most 15 tests hold one at a time and the rest wait (up to two
// minutes). Under go test -short the test is skipped.
func NewRedisDB(t testing.TB) (addr string, db int) {
	t.Helper()
	addr = SharedRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), leaseWait)
	defer cancel()

	admin := redis.NewClient(&redis.Options{Addr: addr, DB: 0})
	n := databaseCount(ctx, admin)
	if n < 2 {
		_ = admin.Close()
		t.Fatalf("testenv: Redis at %s has %d logical databases; NewRedisDB needs at least 2", addr, n)
	}
	var tok [12]byte
	_, _ = rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])

	db, err := acquireDB(ctx, admin, n, token)
	if err != nil {
		_ = admin.Close()
		t.Fatalf("testenv: NewRedisDB on %s: %v", addr, err)
	}
	key := leaseKeyPrefix + strconv.Itoa(db)
	client := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	if err := client.FlushDB(ctx).Err(); err != nil {
		_ = releaseLease.Run(context.Background(), admin, []string{key}, token).Err()
		_ = client.Close()
		_ = admin.Close()
		t.Fatalf("testenv: NewRedisDB: flush db %d: %v", db, err)
	}

	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		tick := time.NewTicker(leaseTTL / 4)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = renewLease.Run(ctx, admin, []string{key}, token, leaseTTL.Milliseconds()).Err()
				cancel()
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-renewed
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := client.FlushDB(ctx).Err(); err != nil {
			t.Errorf("testenv: NewRedisDB cleanup: flush db %d: %v", db, err)
		}
		if err := releaseLease.Run(ctx, admin, []string{key}, token).Err(); err != nil {
			t.Errorf("testenv: NewRedisDB cleanup: release db %d: %v", db, err)
		}
		_ = client.Close()
		_ = admin.Close()
	})
	return addr, db
}

func databaseCount(ctx context.Context, c *redis.Client) int {
	res, err := c.ConfigGet(ctx, "databases").Result()
	if err != nil {
		return 16 // CONFIG may be disabled on a managed server
	}
	n, err := strconv.Atoi(res["databases"])
	if err != nil {
		return 16
	}
	return n
}

// acquireDB leases a free logical database in 1..n-1, starting at a random one, and waits for
// one to free up while all are taken.
func acquireDB(ctx context.Context, c *redis.Client, n int, token string) (int, error) {
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	start := int(rnd[0])<<8 | int(rnd[1])
	for {
		for i := range n - 1 {
			db := 1 + (start+i)%(n-1)
			ok, err := c.SetNX(ctx, leaseKeyPrefix+strconv.Itoa(db), token, leaseTTL).Result()
			if err != nil {
				return 0, err
			}
			if ok {
				return db, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("all %d databases stayed leased: %w", n-1, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// NewPostgres starts a private PostgreSQL server for this test alone (for fault tests that
// stop, kill and restart it) and closes it in t.Cleanup. It needs no [Main]. Under go test
// -short the test is skipped.
func NewPostgres(t testing.TB, opts ...PostgresOption) *Postgres {
	t.Helper()
	skipIfShort(t, "PostgreSQL")
	pg, err := StartPostgres(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Close(); err != nil {
			t.Error(err)
		}
	})
	return pg
}

// NewRedis starts a private Redis server for this test alone and closes it in t.Cleanup.
// It needs no [Main]. Under go test -short the test is skipped.
func NewRedis(t testing.TB, opts ...RedisOption) *Redis {
	t.Helper()
	skipIfShort(t, "Redis")
	r, err := StartRedis(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}
