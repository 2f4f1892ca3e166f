package harness

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Standby modes of dsbench -standby: what a streaming standby of the
// benchmark's PostgreSQL costs the write path (issue 13).
const (
	StandbyNone  = ""
	StandbyAsync = "async" // streaming; commits do not wait for it
	StandbySync  = "sync"  // synchronous_standby_names = '*': each commit waits for the standby's flush
)

// AddStandby starts a streaming standby of e's PostgreSQL (pg_basebackup -R,
// on the same machine and disks, so it competes for them as a standby on
// shared hardware would) and, for StandbySync, makes every commit wait for
// it. It returns the function that stops the standby.
func (e *Env) AddStandby(ctx context.Context, mode string) (func(), error) {
	if mode == StandbyNone {
		return func() {}, nil
	}
	if mode != StandbyAsync && mode != StandbySync {
		return nil, fmt.Errorf("-standby: want async or sync, got %q", mode)
	}
	Logf("starting a streaming standby (%s)", mode)
	st, err := e.PG.StartStandby(ctx)
	if err != nil {
		return nil, err
	}
	stop := func() { _ = st.Close() }
	if mode == StandbySync {
		conn, err := pgx.Connect(ctx, e.PG.AdminURL())
		if err != nil {
			stop()
			return nil, err
		}
		defer conn.Close(context.Background())
		for _, sql := range []string{`ALTER SYSTEM SET synchronous_standby_names = '*'`, `SELECT pg_reload_conf()`} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				stop()
				return nil, fmt.Errorf("-standby sync: %s: %w", sql, err)
			}
		}
	}
	return stop, nil
}
