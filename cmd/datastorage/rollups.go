package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"kubernaut.ai/datastorage/internal/maintenance"
	"kubernaut.ai/datastorage/internal/query"
)

// cmdRollups recounts the aggregation rollups from audit_events, for rows
// that reached the table around the write path: a restore, a bulk load, or
// writes by a version from before the rollups.
func cmdRollups(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rollups", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (default $CONFIG_PATH)")
	since := fs.String("since", "30d", "first hour to recount: a duration back from now (30d, 12h) or a timestamp")
	until := fs.String("until", "", "end of the range (default now)")
	step := fs.Duration("step", 24*time.Hour, "recount this much per transaction (writers wait on each one)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: datastorage rollups rebuild [--since 30d] [--until TIME] [--step 24h] [--config FILE]")
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "rebuild" {
		fs.Usage()
		return errUsage
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	now := time.Now().UTC()
	from, err := query.ParseTime(*since, now)
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	to := now.Add(time.Hour)
	if *until != "" {
		if to, err = query.ParseTime(*until, now); err != nil {
			return fmt.Errorf("--until: %w", err)
		}
	}
	if fs.NArg() > 0 || *step < time.Hour || !from.Before(to) {
		fs.Usage()
		return errUsage
	}
	cfg, _, err := loadConfig(*configPath, environ, stderr)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	total, from, err := maintenance.RebuildRollups(ctx, st, from, to, *step)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rollups recounted from %s to %s: %d event(s)\n",
		from.Format(time.RFC3339), to.Format(time.RFC3339), total)
	return nil
}
