package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/internal/config"
	"kubernaut.ai/datastorage/internal/maintenance"
	"kubernaut.ai/datastorage/internal/store"
)

// cmdRetention runs retention once from the command line (a CronJob, or
// by hand with --dry-run to see what would go).
func cmdRetention(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("retention", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (default $CONFIG_PATH)")
	dryRun := fs.Bool("dry-run", false, "print what would be deleted; delete nothing")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: datastorage retention run [--dry-run] [--config FILE]")
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "run" {
		fs.Usage()
		return errUsage
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	cfg, log, err := loadConfig(*configPath, environ, stderr)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	opts := retentionOptions(cfg, log)
	opts.DryRun = *dryRun
	rep, err := maintenance.RunRetention(ctx, st, opts)
	printRetention(stdout, rep)
	return err
}

func retentionOptions(cfg config.Config, log *slog.Logger) maintenance.RetentionOptions {
	return maintenance.RetentionOptions{
		BatchSize:    cfg.Retention.BatchSize,
		BatchTimeout: cfg.Retention.BatchTimeout.Duration,
		Log:          log,
	}
}

func printRetention(w io.Writer, rep maintenance.RetentionReport) {
	if rep.Skipped {
		fmt.Fprintln(w, "another replica is running retention; nothing was done")
		return
	}
	verb, dropVerb, title := "deleted", "dropped", "retention run"
	if rep.DryRun {
		verb, dropVerb, title = "would delete", "would drop", "retention run (dry run: nothing is deleted)"
	}
	fmt.Fprintf(w, "%s, expiry judged against %s (UTC)\n", title, rep.Today.Format(time.DateOnly))
	if len(rep.Partitions) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION\tACTION\tEVENTS\tNOTE")
		for _, p := range rep.Partitions {
			action := p.Action
			if p.Action == maintenance.RetentionDrop && !p.Dropped {
				action = "delete (drop refused)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", p.Name, action, p.Deleted, p.Note)
		}
		_ = tw.Flush()
	}
	if rep.HoldsSwept > 0 {
		fmt.Fprintf(w, "flagged %d event(s) written after their correlation was put under legal hold\n", rep.HoldsSwept)
	}
	fmt.Fprintf(w, "%s %d event(s), %s %d partition(s)\n", verb, rep.EventsDeleted, dropVerb, len(rep.PartitionsDropped))
}

// retentionJob is the retention job serve runs in the background when
// retention.enabled (nil otherwise); every replica runs it, an advisory lock
// picks one per run.
func retentionJob(cfg config.Config, st *store.Store, reg prometheus.Registerer, log *slog.Logger) *maintenance.RetentionJob {
	metrics := maintenance.NewRetentionMetrics(reg)
	if !cfg.Retention.Enabled {
		log.Info("retention is disabled (retention.enabled=false): expired events are kept")
		return nil
	}
	log.Info("retention job started", "interval", cfg.Retention.Interval.Duration.String())
	return &maintenance.RetentionJob{
		Store:    st,
		Options:  retentionOptions(cfg, log),
		Interval: cfg.Retention.Interval.Duration,
		Metrics:  metrics,
		Log:      log,
	}
}
