// Package testenv gives tests real PostgreSQL and Redis servers, with no containers: the
// server binaries installed from Debian packages (make test installs them through
// scripts/deps.sh), run as child processes of the test binary on loopback ports.
//
// # Integration tests: one database per test
//
// A package whose tests need a database calls [Main] from TestMain, then each test asks for
// its own empty database on the binary's shared server and may run in parallel:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestAppendThenQuery(t *testing.T) {
//		t.Parallel()
//		url := testenv.NewDatabase(t)        // dropped by t.Cleanup
//		addr, db := testenv.NewRedisDB(t)    // logical Redis database, flushed by t.Cleanup
//		...
//	}
//
// The shared servers start on first use, once per test binary (go test runs each package as
// its own binary, in parallel), and [Main] stops them when the tests are done. Set
// DATASTORAGE_TEST_POSTGRES_URL (an admin URL) and DATASTORAGE_TEST_REDIS_ADDR to use
// existing servers instead.
//
// # Fault tests: a private server to break
//
// [NewPostgres] and [NewRedis] start servers owned by one test (closed by t.Cleanup, no Main
// needed) that the test can take away and bring back on the same port with the same data:
// Stop (clean shutdown), Kill (SIGKILL of every server process, as a crash), Start. Use
// [WithAOF] for a Redis that keeps its data like production's.
//
// [NewS3] starts a private S3-compatible server (versitygw over a local directory, with one
// account and one bucket) that a test can Kill and Start the same way. versitygw is not a
// Debian package: the first use on a machine builds the pinned [VersityGWVersion] from the Go
// module proxy with go install into the user cache directory (several minutes on a loaded
// machine; one build at a time, under a file lock; not part of this module's go.mod). Set
// DATASTORAGE_TEST_VERSITYGW to use a binary built elsewhere.
//
// [NewRedisHA] starts the production shape of the spool's Redis: a master, its replicas
// (replicaof) and three Sentinels (Debian's redis-sentinel) with failover timings short enough
// for a bounded test; every server in it is a [Redis] to kill and start. A replica restarted
// after a failover comes back as a replica of the first master, until a Sentinel reconfigures it.
//
// Private PostgreSQL servers run with fsync=off (safe: only a machine crash loses data) but
// keep synchronous_commit=on, so a commit acknowledged before Kill is there after Start, as in
// production. The shared server, which no test kills, runs with synchronous_commit=off.
//
// # Failing, not skipping
//
// Missing server binaries fail the test with [ErrNotInstalled], which tells to run make test:
// an integration test that skips itself when its database is missing cannot fail. Under
// go test -short (make test-short) the helpers skip the test, so unit tests run alone.
//
// # No servers left behind
//
// Servers run in their own process group (so a terminal's Ctrl-C reaches only the test binary)
// with Pdeathsig set, so the kernel kills them if the test binary dies, even by panic, timeout
// or SIGKILL; Main and t.Cleanup stop them otherwise. Each server's files live in a temporary
// directory named after the test binary's pid, removed on Close, or by the next test binary
// that starts a server if the owner died first. Server logs are kept in that directory
// (Postgres.LogFile, Redis.LogFile) and their tail is part of every start error.
//
// When the tests run as root, PostgreSQL (which refuses root) runs as the postgres user that
// the Debian package creates.
//
// Ports are random in [15000, 32000), below Linux's ephemeral port range, checked free by
// binding them, never handed twice within a process, and a start that loses a race for its
// port to another process retries on a new one.
package testenv
