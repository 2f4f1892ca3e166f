package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// WithReplication makes a private server ready to feed a streaming standby
// ([Postgres.StartStandby]): wal_level=replica and room for WAL senders and
// replication slots. PostgreSQL 15's defaults already allow it; the option
// says so explicitly, so a test does not depend on a default that an
// installation may have changed.
func WithReplication() PostgresOption {
	return func(c *pgConfig) {
		c.settings["wal_level"] = "replica"
		c.settings["max_wal_senders"] = "10"
		c.settings["max_replication_slots"] = "10"
	}
}

// StartStandby makes a streaming hot standby of p, as an operator would
// build one: pg_basebackup -R (which writes standby.signal and
// primary_conninfo) from p into a new data directory, through a physical
// replication slot (so p keeps the WAL the standby has not received yet,
// even while it is stopped), then starts it on its own port with
// hot_standby=on and p's other settings. The standby is a [Postgres]: Stop,
// Start, Kill and Close work as on a primary, plus [Postgres.Promote] and
// the replay controls. The caller must Close it.
func (p *Postgres) StartStandby(ctx context.Context) (*Postgres, error) {
	if err := p.checkReplication(ctx); err != nil {
		return nil, err
	}
	s := &Postgres{Host: p.Host, binDir: p.binDir, env: p.env, cred: p.cred}
	dir, err := makeServerDir("pg", p.cred != nil)
	if err != nil {
		return nil, fmt.Errorf("testenv: standby data dir: %w", err)
	}
	s.DataDir = dir
	s.LogFile = filepath.Join(dir, "postgres.log")
	fail := func(err error) (*Postgres, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if p.cred != nil {
		if err := os.Chown(dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return fail(fmt.Errorf("testenv: chown standby data dir: %w", err))
		}
	}
	if s.Port, err = pickPort(); err != nil {
		return fail(err)
	}
	slot := "standby_" + strconv.Itoa(s.Port)
	// pg_basebackup refuses a non-empty directory; the log goes into it once
	// the copy is done.
	backup := command(filepath.Join(p.binDir, "pg_basebackup"), []string{
		"-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", "postgres", "-D", dir,
		"-R", "-X", "stream", "-C", "-S", slot, "--checkpoint=fast", "--no-sync",
	}, os.TempDir(), p.env, p.cred)
	if out, err := runToCompletion(backup); err != nil {
		releasePort(s.Port)
		return fail(fmt.Errorf("testenv: pg_basebackup from port %d: %w\n%s", p.Port, err, out))
	}
	// The primary's settings, but this directory's socket, and a hot
	// standby (the default, stated because the tests read from it).
	for i := 0; i+1 < len(p.args); i += 2 {
		if strings.HasPrefix(p.args[i+1], "unix_socket_directories=") || strings.HasPrefix(p.args[i+1], "hot_standby=") {
			continue
		}
		s.args = append(s.args, p.args[i], p.args[i+1])
	}
	s.args = append(s.args, "-c", "unix_socket_directories="+dir, "-c", "hot_standby=on")

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startLocked(false); err != nil {
		releasePort(s.Port)
		_ = removeStaleSharedMemory(dir)
		_ = dropSlot(ctx, p.AdminURL(), slot)
		return fail(err)
	}
	return s, nil
}

// NewStandby is [Postgres.StartStandby] for a test: the standby is closed by
// t.Cleanup and a failure to start fails the test.
func NewStandby(t testing.TB, primary *Postgres) *Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := primary.StartStandby(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// checkReplication fails with a clear message when p cannot feed a standby.
func (p *Postgres) checkReplication(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, p.AdminURL())
	if err != nil {
		return fmt.Errorf("testenv: standby: connect to the primary: %w", err)
	}
	defer conn.Close(context.Background())
	var level, senders string
	if err := conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_setting('max_wal_senders')`).Scan(&level, &senders); err != nil {
		return fmt.Errorf("testenv: standby: read the primary's settings: %w", err)
	}
	if level == "minimal" || senders == "0" {
		return fmt.Errorf("testenv: standby: the primary has wal_level=%s max_wal_senders=%s; start it WithReplication()", level, senders)
	}
	return nil
}

func dropSlot(ctx context.Context, adminURL, slot string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
	return err
}

// Promote turns a standby into a primary with `pg_ctl promote -w`: it
// returns once the server accepts writes on its new timeline. The old
// primary, if still running, is not told (as after a real failover, it
// must not come back as a primary).
func (p *Postgres) Promote() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil || p.proc.exited() {
		return errors.New("testenv: promote: the server is not running")
	}
	cmd := command(filepath.Join(p.binDir, "pg_ctl"), []string{"promote", "-D", p.DataDir, "-w", "-t", "60"}, p.DataDir, p.env, p.cred)
	if out, err := runToCompletion(cmd); err != nil {
		return withLogTail(fmt.Errorf("testenv: pg_ctl promote on port %d: %w\n%s", p.Port, err, out), p.LogFile)
	}
	return nil
}

// InRecovery reports whether the server is a standby (pg_is_in_recovery()).
func (p *Postgres) InRecovery(ctx context.Context) (bool, error) {
	var in bool
	err := p.adminQueryRow(ctx, `SELECT pg_is_in_recovery()`, &in)
	return in, err
}

// PauseReplay stops a standby from applying the WAL it keeps receiving
// (pg_wal_replay_pause()), so it falls behind its primary as a slow or
// overloaded standby would; ResumeReplay lets it catch up.
func (p *Postgres) PauseReplay(ctx context.Context) error {
	return p.adminExec(ctx, `SELECT pg_wal_replay_pause()`)
}

// ResumeReplay undoes PauseReplay (pg_wal_replay_resume()).
func (p *Postgres) ResumeReplay(ctx context.Context) error {
	return p.adminExec(ctx, `SELECT pg_wal_replay_resume()`)
}

// WaitReplayed waits until the standby p has replayed everything primary
// has written so far (its current WAL position when WaitReplayed starts),
// or ctx ends.
func (p *Postgres) WaitReplayed(ctx context.Context, primary *Postgres) error {
	var target string
	if err := primary.adminQueryRow(ctx, `SELECT pg_current_wal_lsn()::text`, &target); err != nil {
		return fmt.Errorf("testenv: primary's WAL position: %w", err)
	}
	for {
		var done bool
		err := p.adminQueryRow(ctx, `SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)`, &done, target)
		if err == nil && done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testenv: standby on port %d did not replay up to %s: %w (last error: %v)", p.Port, target, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// SetReadOnly turns a running primary read-only, or back, the way a
// switchover fences the old primary before the standby is promoted:
// ALTER SYSTEM SET default_transaction_read_only and a configuration
// reload. Sessions are not terminated: an open connection stays open and its
// next write fails with SQLSTATE 25006 (read_only_sql_transaction), which is
// what a client sees from a demoted primary whose connections it kept (a
// server restarted as a hot standby answers new connections read-only the
// same way). It returns once a new session sees the new value; existing
// sessions apply it at their next statement after the reload signal.
func (p *Postgres) SetReadOnly(ctx context.Context, on bool) error {
	stmt := `ALTER SYSTEM SET default_transaction_read_only = on`
	if !on {
		stmt = `ALTER SYSTEM RESET default_transaction_read_only`
	}
	if err := p.adminExec(ctx, stmt); err != nil {
		return err
	}
	if err := p.adminExec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return err
	}
	want := map[bool]string{true: "on", false: "off"}[on]
	for {
		var got string
		err := p.adminQueryRow(ctx, `SHOW default_transaction_read_only`, &got)
		if err == nil && got == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testenv: default_transaction_read_only did not become %s: %w", want, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *Postgres) adminExec(ctx context.Context, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, p.AdminURL())
	if err != nil {
		return fmt.Errorf("testenv: connect to port %d: %w", p.Port, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("testenv: %s on port %d: %w", sql, p.Port, err)
	}
	return nil
}

func (p *Postgres) adminQueryRow(ctx context.Context, sql string, dest any, args ...any) error {
	conn, err := pgx.Connect(ctx, p.AdminURL())
	if err != nil {
		return fmt.Errorf("testenv: connect to port %d: %w", p.Port, err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, sql, args...).Scan(dest); err != nil {
		return fmt.Errorf("testenv: %s on port %d: %w", sql, p.Port, err)
	}
	return nil
}
