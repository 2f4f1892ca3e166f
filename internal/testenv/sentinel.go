package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultMasterName is the name the Sentinels of [StartRedisHA] monitor the master under.
const DefaultMasterName = "datastorage"

// haReadyTimeout bounds the wait for the replicas to sync and the Sentinels to find each
// other; on a loaded machine that takes a few seconds (Sentinels announce themselves every 2 s).
const haReadyTimeout = 60 * time.Second

// RedisHA is a Redis master, its replicas and three Sentinels watching them, all private to
// one test: the production shape of the spool's Redis (docs/operations.md), on loopback.
// Every server is a [Redis], so a test kills, stops and starts any of them like a lone one.
//
// The Sentinels fail over quickly (see [WithSentinelTimings]) so that a fault test is bounded.
// Servers[0] starts as the master; after a failover ask [RedisHA.MasterAddr] who it is.
type RedisHA struct {
	// MasterName is the name the Sentinels know the master by (redis.sentinel.masterName).
	MasterName string
	// Servers are the data servers; Servers[0] started as the master, the others as its
	// replicas (replicaof).
	Servers []*Redis
	// Sentinels are the three Sentinels, quorum 2.
	Sentinels []*Redis
}

// RedisHAOption configures [StartRedisHA].
type RedisHAOption func(*haConfig)

type haConfig struct {
	replicas        int
	downAfter       time.Duration
	failoverTimeout time.Duration
	serverOpts      []RedisOption
}

// WithReplicas sets how many replicas follow the master (default 1).
func WithReplicas(n int) RedisHAOption {
	return func(c *haConfig) { c.replicas = n }
}

// WithSentinelTimings sets down-after-milliseconds (how long a master may stay silent before a
// Sentinel thinks it down; default 1 s) and failover-timeout (default 10 s). Production keeps
// Redis's defaults (30 s and 3 min): tests take them short to stay bounded.
func WithSentinelTimings(downAfter, failoverTimeout time.Duration) RedisHAOption {
	return func(c *haConfig) { c.downAfter, c.failoverTimeout = downAfter, failoverTimeout }
}

// WithServerOptions applies opts (e.g. [WithAOF]) to the master and every replica.
func WithServerOptions(opts ...RedisOption) RedisHAOption {
	return func(c *haConfig) { c.serverOpts = append(c.serverOpts, opts...) }
}

// StartRedisHA starts the master, its replicas and three Sentinels, and returns once every
// replica is in sync and every Sentinel sees the master, the replicas and the two other
// Sentinels, so that a failover can be authorized the moment a test needs one. The caller must
// Close it. Tests usually want [NewRedisHA].
func StartRedisHA(opts ...RedisHAOption) (h *RedisHA, err error) {
	cfg := haConfig{replicas: 1, downAfter: time.Second, failoverTimeout: 10 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	sentinelBin, sentinelFlags, err := findSentinel()
	if err != nil {
		return nil, err
	}
	h = &RedisHA{MasterName: DefaultMasterName}
	defer func() {
		if err != nil {
			_ = h.Close()
		}
	}()

	master, err := StartRedis(cfg.serverOpts...)
	if err != nil {
		return nil, err
	}
	h.Servers = append(h.Servers, master)
	for range cfg.replicas {
		ropts := append(append([]RedisOption(nil), cfg.serverOpts...),
			WithRedisArgs("--replicaof", master.Host, strconv.Itoa(master.Port)))
		r, err := StartRedis(ropts...)
		if err != nil {
			return nil, err
		}
		h.Servers = append(h.Servers, r)
	}
	deadline := time.Now().Add(haReadyTimeout)
	if err := WaitReplicasOnline(master.Addr(), cfg.replicas, deadline); err != nil {
		return nil, withLogTail(err, master.LogFile)
	}
	for range 3 {
		s, err := startSentinel(sentinelBin, sentinelFlags, h.MasterName, master, cfg)
		if err != nil {
			return nil, err
		}
		h.Sentinels = append(h.Sentinels, s)
	}
	for _, s := range h.Sentinels {
		if err := waitSentinelSees(s.Addr(), h.MasterName, cfg.replicas, len(h.Sentinels)-1, deadline); err != nil {
			return nil, withLogTail(err, s.LogFile)
		}
	}
	return h, nil
}

// NewRedisHA starts a [RedisHA] owned by the test and closed by t.Cleanup. Under go test -short
// it skips the test; missing binaries fail it with [ErrNotInstalled].
func NewRedisHA(t testing.TB, opts ...RedisHAOption) *RedisHA {
	t.Helper()
	skipIfShort(t, "Redis with Sentinel")
	h, err := StartRedisHA(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	return h
}

// SentinelAddrs are the Sentinels' host:port (redis.sentinel.addrs).
func (h *RedisHA) SentinelAddrs() []string {
	addrs := make([]string, len(h.Sentinels))
	for i, s := range h.Sentinels {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Server returns the data server listening on addr, or nil.
func (h *RedisHA) Server(addr string) *Redis {
	for _, r := range h.Servers {
		if r.Addr() == addr {
			return r
		}
	}
	return nil
}

// MasterAddr asks the Sentinels, in turn, which server is the master now; the first that
// answers is believed.
func (h *RedisHA) MasterAddr(ctx context.Context) (string, error) {
	var errs []error
	for _, s := range h.Sentinels {
		addr, err := sentinelMaster(ctx, s.Addr(), h.MasterName)
		if err == nil {
			return addr, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("testenv: no Sentinel named the master: %w", errors.Join(errs...))
}

// WaitFailover waits until every running Sentinel names a master other than old and that
// server says it is a master (role:master), and returns its address. It fails when ctx ends
// first; the caller bounds the wait with ctx.
func (h *RedisHA) WaitFailover(ctx context.Context, old string) (string, error) {
	var last string
	for {
		addr, agreed := "", true
		for _, s := range h.Sentinels {
			if !s.Running() {
				continue
			}
			a, err := sentinelMaster(ctx, s.Addr(), h.MasterName)
			if err != nil || a == old || (addr != "" && a != addr) {
				agreed = false
				last = fmt.Sprintf("sentinel %s: master %q, error %v", s.Addr(), a, err)
				break
			}
			addr = a
		}
		if agreed && addr != "" {
			role, err := redisRole(ctx, addr)
			if err == nil && role == "master" {
				return addr, nil
			}
			last = fmt.Sprintf("new master %s: role %q, error %v", addr, role, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("testenv: no failover away from %s: %w (last seen: %s)", old, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops the Sentinels first, so that taking the servers down does not set off a
// failover, then the servers, and removes their directories.
func (h *RedisHA) Close() error {
	var errs []error
	for _, s := range h.Sentinels {
		errs = append(errs, s.Close())
	}
	for i := len(h.Servers) - 1; i >= 0; i-- {
		errs = append(errs, h.Servers[i].Close())
	}
	return errors.Join(errs...)
}

// findSentinel returns the command that runs a Sentinel, before its config file: Debian's
// redis-sentinel (package redis-sentinel; a link to the server binary that starts in Sentinel
// mode by its name), else redis-server, whose --sentinel flag does the same.
func findSentinel() (bin string, flags []string, err error) {
	if path, err := exec.LookPath("redis-sentinel"); err == nil {
		return path, nil, nil
	}
	if isExecutable("/usr/bin/redis-sentinel") {
		return "/usr/bin/redis-sentinel", nil, nil
	}
	server, err := findRedisServer()
	if err != nil {
		return "", nil, fmt.Errorf("testenv: neither redis-sentinel nor redis-server found: %w", ErrNotInstalled)
	}
	return server, []string{"--sentinel"}, nil
}

// startSentinel starts one Sentinel monitoring master, with its own directory and config file
// (a Sentinel rewrites its file with what it learns, so each needs a writable one).
func startSentinel(bin string, flags []string, name string, master *Redis, cfg haConfig) (*Redis, error) {
	dir, err := makeServerDir("sentinel", false)
	if err != nil {
		return nil, fmt.Errorf("testenv: sentinel dir: %w", err)
	}
	conf := filepath.Join(dir, "sentinel.conf")
	text := strings.Join([]string{
		"sentinel monitor " + name + " " + master.Host + " " + strconv.Itoa(master.Port) + " 2",
		"sentinel down-after-milliseconds " + name + " " + strconv.FormatInt(cfg.downAfter.Milliseconds(), 10),
		"sentinel failover-timeout " + name + " " + strconv.FormatInt(cfg.failoverTimeout.Milliseconds(), 10),
		"sentinel parallel-syncs " + name + " 1",
		"",
	}, "\n")
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("testenv: sentinel config: %w", err)
	}
	s := &Redis{Host: "127.0.0.1", Dir: dir, LogFile: filepath.Join(dir, "sentinel.log"), bin: bin}
	s.lead = append([]string{conf}, flags...)
	s.args = []string{"--bind", "127.0.0.1", "--dir", dir, "--daemonize", "no", "--logfile", ""}
	if s.Port, err = pickPort(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startLocked(true); err != nil {
		releasePort(s.Port)
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func shortClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		MaxRetries: -1, PoolSize: 1, Protocol: 2, DisableIdentity: true,
	})
}

// WaitReplicasOnline waits until the Redis master at addr has n replicas in
// state online (each has the master's data and streams its writes), or
// deadline passes.
func WaitReplicasOnline(addr string, n int, deadline time.Time) error {
	c := shortClient(addr)
	defer c.Close()
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		info, err := c.Info(ctx, "replication").Result()
		cancel()
		if err == nil && strings.Count(info, "state=online") >= n {
			return nil
		}
		last = fmt.Sprintf("%v %q", err, info)
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv: master %s: %d replicas not online by %s: %s", addr, n, deadline.Format(time.TimeOnly), last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSentinelSees waits until the Sentinel at addr knows the master, its replicas and the
// other Sentinels.
func waitSentinelSees(addr, name string, replicas, others int, deadline time.Time) error {
	c := shortClient(addr)
	defer c.Close()
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		m, err := c.Do(ctx, "SENTINEL", "MASTER", name).Result()
		cancel()
		fields := map[string]string{}
		if list, ok := m.([]any); ok {
			for i := 0; i+1 < len(list); i += 2 {
				fields[fmt.Sprint(list[i])] = fmt.Sprint(list[i+1])
			}
		}
		if err == nil && fields["flags"] == "master" &&
			fields["num-slaves"] == strconv.Itoa(replicas) && fields["num-other-sentinels"] == strconv.Itoa(others) {
			return nil
		}
		last = fmt.Sprintf("error %v, flags %q, num-slaves %q, num-other-sentinels %q",
			err, fields["flags"], fields["num-slaves"], fields["num-other-sentinels"])
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv: sentinel %s does not see %d replicas and %d other sentinels after %s: %s",
				addr, replicas, others, haReadyTimeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sentinelMaster(ctx context.Context, addr, name string) (string, error) {
	c := shortClient(addr)
	defer c.Close()
	hp, err := c.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name).StringSlice()
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", addr, err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel %s: unexpected answer %q", addr, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

func redisRole(ctx context.Context, addr string) (string, error) {
	c := shortClient(addr)
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "role:"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no role in INFO replication of %s", addr)
}
