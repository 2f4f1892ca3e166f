package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Standby modes of -standby: what a streaming standby of the benchmark's
// PostgreSQL costs the write path (issue 13).
const (
	standbyNone  = ""
	standbyAsync = "async" // streaming, commits do not wait for it
	standbySync  = "sync"  // synchronous_standby_names = '*': each commit waits for the standby's flush
)

// addStandby starts a streaming standby of e's PostgreSQL (pg_basebackup -R,
// on the same machine and disks, so it competes for them as a standby on
// shared hardware would) and, for sync, makes every commit wait for it.
// It returns the function that stops the standby.
func (e *env) addStandby(ctx context.Context, mode string) (func(), error) {
	if mode == standbyNone {
		return func() {}, nil
	}
	if mode != standbyAsync && mode != standbySync {
		return nil, fmt.Errorf("-standby: want async or sync, got %q", mode)
	}
	logf("starting a streaming standby (%s)", mode)
	st, err := e.pg.StartStandby(ctx)
	if err != nil {
		return nil, err
	}
	stop := func() { _ = st.Close() }
	if mode == standbySync {
		conn, err := pgx.Connect(ctx, e.pg.AdminURL())
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
