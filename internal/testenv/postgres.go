package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotInstalled is returned by [StartPostgres] and [StartRedis] when the server binaries
// cannot be found. Test with errors.Is. The helpers that take a testing.TB fail the test with
// it: an integration test that skips when its database is missing is a test that cannot fail.
var ErrNotInstalled = errors.New("run `make test` (it installs postgresql-15 and redis-server through scripts/deps.sh)")

// DefaultPostgresBinDir is where Debian's postgresql-15 package puts the server binaries.
// The environment variable TESTENV_PG_BINDIR overrides it.
const DefaultPostgresBinDir = "/usr/lib/postgresql/15/bin"

const (
	startTimeout = 30 * time.Second // bound on one Start, including retries on port clashes
	stopTimeout  = 60 * time.Second // bound on a clean shutdown before the group is killed
)

// Postgres is a private PostgreSQL server owned by one test process: its own data directory
// in a fresh temporary directory, listening on 127.0.0.1 only, superuser "postgres" with trust
// authentication. The fields are read-only.
//
// Stop, Start and Kill let fault tests take the server away and bring it back on the same
// port with the same data. All methods are safe for concurrent use.
type Postgres struct {
	Host    string // always 127.0.0.1
	Port    int
	DataDir string // the cluster's data directory; also holds LogFile
	LogFile string // the server's stdout and stderr, appended across restarts

	binDir    string
	args      []string
	env       []string
	cred      *syscall.Credential // non-nil when we are root: run as the postgres user
	fixedPort bool

	mu     sync.Mutex
	proc   *process
	closed bool
}

// PostgresOption configures [StartPostgres].
type PostgresOption func(*pgConfig)

type pgConfig struct {
	port     int
	binDir   string
	settings map[string]string
}

// WithPostgresPort makes the server listen on port instead of a random free one.
func WithPostgresPort(port int) PostgresOption {
	return func(c *pgConfig) { c.port = port }
}

// WithPostgresSetting sets a server parameter (postgres -c name=value), overriding the
// defaults (fsync=off, full_page_writes=off, max_connections=200, shared_buffers=128MB).
// listen_addresses, port and unix_socket_directories are fixed.
//
// synchronous_commit stays on by default: with it off, a commit is acknowledged while its WAL
// record is still in shared memory, and Kill loses it, so a fault test would see acknowledged
// writes vanish for a reason production (synchronous_commit=on) does not have. fsync=off and
// full_page_writes=off are safe for Kill: they only lose data when the machine goes down.
// The shared server of [NewDatabase], which is never killed, runs with synchronous_commit=off.
func WithPostgresSetting(name, value string) PostgresOption {
	return func(c *pgConfig) { c.settings[name] = value }
}

// WithPostgresBinDir sets the directory holding initdb and postgres.
func WithPostgresBinDir(dir string) PostgresOption {
	return func(c *pgConfig) { c.binDir = dir }
}

// StartPostgres runs initdb into a fresh temporary directory, starts the server and waits
// until it accepts connections. The caller must Close it. Tests usually want [NewPostgres]
// (private server, closed by t.Cleanup) or [NewDatabase] (a database on the shared server).
func StartPostgres(opts ...PostgresOption) (*Postgres, error) {
	cfg := pgConfig{settings: map[string]string{
		"fsync":            "off",
		"full_page_writes": "off",
		"max_connections":  "200",
		"shared_buffers":   "128MB",
	}}
	if dir := os.Getenv("TESTENV_PG_BINDIR"); dir != "" {
		cfg.binDir = dir
	}
	for _, o := range opts {
		o(&cfg)
	}
	binDir, err := findPostgresBinDir(cfg.binDir)
	if err != nil {
		return nil, err
	}

	p := &Postgres{Host: "127.0.0.1", binDir: binDir, env: postgresEnv()}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		if p.cred, err = postgresUser(); err != nil {
			return nil, err
		}
	}
	dir, err := makeServerDir("pg", p.cred != nil)
	if err != nil {
		return nil, fmt.Errorf("testenv: postgres data dir: %w", err)
	}
	p.DataDir = dir
	p.LogFile = filepath.Join(dir, "postgres.log")
	if p.cred != nil {
		if err := os.Chown(dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("testenv: chown postgres data dir: %w", err)
		}
	}

	initdb := command(filepath.Join(binDir, "initdb"), []string{
		"-D", dir, "-N", "--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-instructions",
	}, dir, p.env, p.cred)
	if out, err := runToCompletion(initdb); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("testenv: initdb: %w\n%s", err, out)
	}

	for name, value := range map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": dir,
	} {
		cfg.settings[name] = value
	}
	names := make([]string, 0, len(cfg.settings))
	for name := range cfg.settings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p.args = append(p.args, "-c", name+"="+cfg.settings[name])
	}

	if cfg.port != 0 {
		p.Port, p.fixedPort = cfg.port, true
		holdPort(cfg.port)
	} else if p.Port, err = pickPort(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.startLocked(true); err != nil {
		releasePort(p.Port)
		_ = removeStaleSharedMemory(dir)
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// AdminURL is the superuser's URL for the "postgres" database.
func (p *Postgres) AdminURL() string { return p.URL("postgres") }

// URL is the superuser's URL for database db.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable",
		net.JoinHostPort(p.Host, strconv.Itoa(p.Port)), url.PathEscape(db))
}

// CreateDatabase creates an empty database and returns its URL.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	if err := createDatabase(ctx, p.AdminURL(), name); err != nil {
		return "", err
	}
	return p.URL(name), nil
}

// Running reports whether the server process is up (it may not accept connections yet).
func (p *Postgres) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc != nil && !p.proc.exited()
}

// Start starts a stopped or killed server again on the same port and data directory and waits
// until it accepts connections (after a Kill that includes crash recovery). It does nothing if
// the server is running.
func (p *Postgres) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("testenv: postgres: Start after Close")
	}
	if p.proc != nil && !p.proc.exited() {
		return nil
	}
	p.proc = nil
	return p.startLocked(false)
}

// Stop shuts the server down the fast way (SIGINT: open transactions roll back, sessions are
// disconnected, a checkpoint is written) and waits for it; the data directory is kept, so Start
// brings the same data back. It returns an error if the server had already died on its own.
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopLocked()
}

func (p *Postgres) stopLocked() error {
	proc := p.proc
	if proc == nil {
		return nil
	}
	p.proc = nil
	if proc.exited() {
		proc.stop(syscall.SIGKILL, 0) // reap whatever it left in its group
		return withLogTail(fmt.Errorf("testenv: postgres on port %d had exited by itself: %v", p.Port, proc.err), p.LogFile)
	}
	proc.stop(syscall.SIGINT, stopTimeout)
	return nil
}

// Kill sends SIGKILL to the server and all its processes, as a crash would, and waits until
// they are gone. Start then runs crash recovery. Committed data survives (fsync=off only loses
// data when the machine, not the server, goes down) unless synchronous_commit was turned off.
func (p *Postgres) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		p.proc.kill()
		p.proc = nil
	}
	return nil
}

// Close stops the server and removes its data directory. Closing twice is harmless.
func (p *Postgres) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	err := p.stopLocked()
	_ = removeStaleSharedMemory(p.DataDir) // after a Kill: the processes are gone, the segment is not
	releasePort(p.Port)
	if rmErr := os.RemoveAll(p.DataDir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// LogTail returns the last n lines of the server log, for failure messages in tests.
func (p *Postgres) LogTail(n int) string { return logTail(p.LogFile, n) }

// startLocked starts the postmaster and waits until it accepts connections, retrying for up to
// startTimeout when the port is taken (by another test process that raced us to it, on the
// first start only with a new port) or the previous instance's processes still hold its
// shared memory.
func (p *Postgres) startLocked(first bool) error {
	deadline := time.Now().Add(startTimeout)
	for {
		offset := logSize(p.LogFile)
		args := append([]string{"-D", p.DataDir, "-c", "port=" + strconv.Itoa(p.Port)}, p.args...)
		proc, err := startProcess(command(filepath.Join(p.binDir, "postgres"), args, p.DataDir, p.env, p.cred), p.LogFile)
		if err != nil {
			return fmt.Errorf("testenv: postgres: %w", err)
		}
		err = waitPostgresReady(proc, p.AdminURL(), deadline)
		if err == nil {
			p.proc = proc
			return nil
		}
		proc.kill()
		attempt := readLogFrom(p.LogFile, offset)
		retryable := strings.Contains(attempt, "could not bind") ||
			strings.Contains(attempt, "could not create any TCP/IP sockets") ||
			strings.Contains(attempt, "pre-existing shared memory block")
		if !retryable || time.Now().After(deadline) {
			return withLogTail(fmt.Errorf("testenv: postgres did not start on port %d: %w", p.Port, err), p.LogFile)
		}
		if first && !p.fixedPort && !strings.Contains(attempt, "shared memory") {
			releasePort(p.Port)
			if p.Port, err = pickPort(); err != nil {
				return err
			}
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// waitPostgresReady connects until the server answers, the process dies or the deadline passes.
func waitPostgresReady(proc *process, adminURL string, deadline time.Time) error {
	var lastErr error
	for {
		if proc.exited() {
			return fmt.Errorf("server exited: %v", proc.err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgconn.Connect(ctx, adminURL)
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections after %s: %w", startTimeout, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func findPostgresBinDir(dir string) (string, error) {
	candidates := []string{dir}
	if dir == "" {
		candidates = []string{DefaultPostgresBinDir}
		if path, err := exec.LookPath("postgres"); err == nil {
			candidates = append(candidates, filepath.Dir(path))
		}
	}
	for _, d := range candidates {
		if isExecutable(filepath.Join(d, "postgres")) && isExecutable(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("testenv: PostgreSQL server binaries (initdb, postgres) not found in %s: %w",
		strings.Join(candidates, ", "), ErrNotInstalled)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0
}

// postgresUser returns the credentials of the postgres system user (created by Debian's
// postgresql-common package) for running the server when we are root.
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("testenv: running as root, PostgreSQL must run as the postgres user: %w; %w", err, ErrNotInstalled)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("testenv: postgres user has non-numeric uid/gid %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// postgresEnv is the environment of initdb and postgres: ours without libpq/server variables
// and locale settings that could change their behaviour, plus UTC and the C locale.
func postgresEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PG") || strings.HasPrefix(name, "LC_") || name == "LANG" || name == "LANGUAGE" || name == "TZ" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LANG=C", "LC_ALL=C", "TZ=UTC")
}

// createDatabase creates database name through the admin URL, retrying while the template is
// busy (another session briefly connected to template1).
func createDatabase(ctx context.Context, adminURL, name string) error {
	return createDatabaseFrom(ctx, adminURL, name, "")
}

// createDatabaseFrom creates database name as a copy of database template (template1 if
// empty), retrying while the template is busy.
func createDatabaseFrom(ctx context.Context, adminURL, name, template string) error {
	conn, err := pgconn.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("testenv: connect to create database %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	for {
		_, err = conn.Exec(ctx, sql).ReadAll()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" { // object_in_use
			select {
			case <-ctx.Done():
				return fmt.Errorf("testenv: create database %s: %w", name, err)
			case <-time.After(50 * time.Millisecond):
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("testenv: create database %s: %w", name, err)
		}
		return nil
	}
}

// dropDatabase drops database name, disconnecting its sessions.
func dropDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgconn.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("testenv: connect to drop database %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)").ReadAll()
	if err != nil {
		return fmt.Errorf("testenv: drop database %s: %w", name, err)
	}
	return nil
}

// databaseURL returns adminURL with its database replaced by name.
func databaseURL(adminURL, name string) (string, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", fmt.Errorf("testenv: bad PostgreSQL URL: %w", err)
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}
