package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Redis is a private Redis server owned by one test process: its own directory, listening on
// 127.0.0.1 only, no RDB snapshots, AOF off unless [WithAOF]. The fields are read-only.
// All methods are safe for concurrent use.
type Redis struct {
	Host    string // always 127.0.0.1
	Port    int
	Dir     string // working directory: AOF files (appendonlydir/) and LogFile
	LogFile string

	bin       string
	lead      []string // arguments before --port: a Sentinel's config file and --sentinel
	args      []string
	fixedPort bool

	mu     sync.Mutex
	proc   *process
	closed bool
}

// RedisOption configures [StartRedis].
type RedisOption func(*redisConfig)

type redisConfig struct {
	port  int
	aof   bool
	extra []string
}

// WithAOF turns AOF persistence on (--appendonly yes --appendfsync everysec), as production
// runs it: data survives Stop/Start and, except for the last second, Kill/Start.
func WithAOF() RedisOption {
	return func(c *redisConfig) { c.aof = true }
}

// WithRedisPort makes the server listen on port instead of a random free one.
func WithRedisPort(port int) RedisOption {
	return func(c *redisConfig) { c.port = port }
}

// WithRedisArgs appends raw redis-server arguments, e.g. WithRedisArgs("--maxmemory", "10mb").
func WithRedisArgs(args ...string) RedisOption {
	return func(c *redisConfig) { c.extra = append(c.extra, args...) }
}

// StartRedis starts redis-server in a fresh temporary directory and waits until it answers
// PING. The caller must Close it. Tests usually want [NewRedis] or [NewRedisDB].
func StartRedis(opts ...RedisOption) (*Redis, error) {
	var cfg redisConfig
	for _, o := range opts {
		o(&cfg)
	}
	bin, err := findRedisServer()
	if err != nil {
		return nil, err
	}
	dir, err := makeServerDir("redis", false)
	if err != nil {
		return nil, fmt.Errorf("testenv: redis dir: %w", err)
	}
	r := &Redis{Host: "127.0.0.1", Dir: dir, LogFile: filepath.Join(dir, "redis.log"), bin: bin}
	r.args = []string{"--bind", "127.0.0.1", "--save", "", "--dir", dir, "--daemonize", "no", "--logfile", ""}
	if cfg.aof {
		r.args = append(r.args, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		r.args = append(r.args, "--appendonly", "no")
	}
	r.args = append(r.args, cfg.extra...)

	if cfg.port != 0 {
		r.Port, r.fixedPort = cfg.port, true
		holdPort(cfg.port)
	} else if r.Port, err = pickPort(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.startLocked(true); err != nil {
		releasePort(r.Port)
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return r, nil
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return net.JoinHostPort(r.Host, strconv.Itoa(r.Port)) }

// Running reports whether the server process is up.
func (r *Redis) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc != nil && !r.proc.exited()
}

// Start starts a stopped or killed server again on the same port and directory (reloading the
// AOF if it is on) and waits until it answers PING. It does nothing if the server is running.
func (r *Redis) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("testenv: redis: Start after Close")
	}
	if r.proc != nil && !r.proc.exited() {
		return nil
	}
	r.proc = nil
	return r.startLocked(false)
}

// Stop shuts the server down cleanly (SIGTERM: the AOF is flushed and fsynced) and waits for
// it. It returns an error if the server had already died on its own.
func (r *Redis) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopLocked()
}

func (r *Redis) stopLocked() error {
	proc := r.proc
	if proc == nil {
		return nil
	}
	r.proc = nil
	if proc.exited() {
		proc.stop(syscall.SIGKILL, 0)
		return withLogTail(fmt.Errorf("testenv: redis on port %d had exited by itself: %v", r.Port, proc.err), r.LogFile)
	}
	proc.stop(syscall.SIGTERM, stopTimeout)
	return nil
}

// Kill sends SIGKILL to the server, as a crash would, and waits until it is gone.
func (r *Redis) Kill() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		r.proc.kill()
		r.proc = nil
	}
	return nil
}

// Close stops the server and removes its directory. Closing twice is harmless.
func (r *Redis) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.stopLocked()
	releasePort(r.Port)
	if rmErr := os.RemoveAll(r.Dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// LogTail returns the last n lines of the server log, for failure messages in tests.
func (r *Redis) LogTail(n int) string { return logTail(r.LogFile, n) }

func (r *Redis) startLocked(first bool) error {
	deadline := time.Now().Add(startTimeout)
	for {
		offset := logSize(r.LogFile)
		args := append(append(slices.Clone(r.lead), "--port", strconv.Itoa(r.Port)), r.args...)
		proc, err := startProcess(command(r.bin, args, r.Dir, os.Environ(), nil), r.LogFile)
		if err != nil {
			return fmt.Errorf("testenv: redis: %w", err)
		}
		err = waitRedisReady(proc, r.Addr(), deadline)
		if err == nil {
			r.proc = proc
			return nil
		}
		proc.kill()
		attempt := readLogFrom(r.LogFile, offset)
		retryable := strings.Contains(attempt, "Address already in use") ||
			strings.Contains(attempt, "Could not create server TCP listening socket")
		if !retryable || time.Now().After(deadline) {
			return withLogTail(fmt.Errorf("testenv: redis did not start on port %d: %w", r.Port, err), r.LogFile)
		}
		if first && !r.fixedPort {
			releasePort(r.Port)
			if r.Port, err = pickPort(); err != nil {
				return err
			}
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// waitRedisReady sends PING until the server answers PONG (not -LOADING while it replays the
// AOF), the process dies or the deadline passes.
func waitRedisReady(proc *process, addr string, deadline time.Time) error {
	var lastErr error
	for {
		if proc.exited() {
			return fmt.Errorf("server exited: %v", proc.err)
		}
		if lastErr = pingRedis(addr); lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG after %s: %w", startTimeout, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pingRedis(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func findRedisServer() (string, error) {
	if path, err := exec.LookPath("redis-server"); err == nil {
		return path, nil
	}
	for _, path := range []string{"/usr/bin/redis-server", "/usr/local/bin/redis-server"} {
		if isExecutable(path) {
			return path, nil
		}
	}
	return "", fmt.Errorf("testenv: redis-server not found in PATH: %w", ErrNotInstalled)
}
