package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"kubernaut.ai/datastorage/internal/testenv"
)

// SpoolEnv is the set-up of the spool benchmark (issue 13: what WAIT
// costs): a Redis master with one streaming replica (AOF everysec on both,
// as in production), a PostgreSQL, and one server per redis.minReplicas
// value, all writing to the same master. StopPostgres then sends every
// write to the spool, as an outage of the database would.
type SpoolEnv struct {
	PG      *testenv.Postgres
	Master  *testenv.Redis
	Replica *testenv.Redis
	DBURL   string
	// Servers are the servers, in the order of the minReplicas values
	// given to StartSpoolEnv; each is an Env sharing PG and Master.
	Servers []*Env
}

// StartSpoolEnv starts PostgreSQL (default settings: it is stopped before
// anything is measured), the Redis master and its replica, waits until the
// replica is online, and starts bin once per entry of minReplicas with
// DATASTORAGE_REDIS_MINREPLICAS set to it. Close stops everything; on an
// error nothing is left running.
func StartSpoolEnv(ctx context.Context, bin, workDir string, minReplicas []int) (_ *SpoolEnv, err error) {
	s := &SpoolEnv{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	Logf("spool benchmark: starting PostgreSQL, a Redis master and its replica")
	if s.PG, err = testenv.StartPostgres(); err != nil {
		return nil, err
	}
	if s.Master, err = testenv.StartRedis(testenv.WithAOF()); err != nil {
		return nil, err
	}
	if s.Replica, err = testenv.StartRedis(testenv.WithAOF(),
		testenv.WithRedisArgs("--replicaof", s.Master.Host, strconv.Itoa(s.Master.Port))); err != nil {
		return nil, err
	}
	if err = testenv.WaitReplicasOnline(s.Master.Addr(), 1, time.Now().Add(30*time.Second)); err != nil {
		return nil, err
	}
	if s.DBURL, err = s.PG.CreateDatabase(ctx, benchDB); err != nil {
		return nil, err
	}
	for i, n := range minReplicas {
		dir := filepath.Join(workDir, fmt.Sprintf("spool-server-%d", i))
		if err = os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		e := &Env{PG: s.PG, Redis: s.Master, DBURL: s.DBURL, Bin: bin}
		// The servers start one after the other: the first migrates the
		// database, the others find it migrated.
		if err = e.startServer(ctx, dir, []string{
			"DATASTORAGE_REDIS_MINREPLICAS=" + strconv.Itoa(n),
			"DATASTORAGE_REDIS_WAITTIMEOUT=2s",
		}); err != nil {
			return nil, fmt.Errorf("server with redis.minReplicas %d: %w", n, err)
		}
		s.Servers = append(s.Servers, e)
	}
	return s, nil
}

// StopPostgres stops PostgreSQL: from then on every write the servers take
// goes to the spool (202).
func (s *SpoolEnv) StopPostgres() error {
	Logf("spool benchmark: stopping PostgreSQL, so that writes go to the spool")
	return s.PG.Stop()
}

// Close stops the servers, Redis and PostgreSQL.
func (s *SpoolEnv) Close() {
	for _, e := range s.Servers {
		if err := e.stopServer(); err != nil {
			Logf("server stop: %v", err)
		}
	}
	for _, r := range []*testenv.Redis{s.Replica, s.Master} {
		if r != nil {
			_ = r.Close()
		}
	}
	if s.PG != nil {
		_ = s.PG.Close()
	}
}
