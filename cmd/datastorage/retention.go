package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/internal/archive"
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
	opts, err := retentionOptions(ctx, cfg, st, log, environ)
	if err != nil {
		return err
	}
	opts.DryRun = *dryRun
	rep, err := maintenance.RunRetention(ctx, st, opts)
	printRetention(stdout, rep)
	return err
}

// retentionKillAfterEnv names the step of an archived month's retention
// after which `retention run` kills itself with SIGKILL: the crash tests'
// hook (internal/archive expire_test.go). Unset in production.
const retentionKillAfterEnv = "TEST_DATASTORAGE_RETENTION_KILL_AFTER"

// retentionOptions builds a run's options; with an archive target, the run
// also removes the archived months whose events have all expired, which
// needs the signing key to verify their manifests.
func retentionOptions(ctx context.Context, cfg config.Config, st *store.Store, log *slog.Logger,
	environ []string) (maintenance.RetentionOptions, error) {
	opts := maintenance.RetentionOptions{
		BatchSize:    cfg.Retention.BatchSize,
		BatchTimeout: cfg.Retention.BatchTimeout.Duration,
		Log:          log,
	}
	if cfg.Archive.Target == "" {
		return opts, nil
	}
	if len(cfg.Integrity.SigningKey) == 0 {
		return opts, errors.New("config: integrity.signingKeyFile: required when archive.target is set and retention runs " +
			"(the archived months' manifests are verified with it before their files are deleted)")
	}
	objs, err := openTarget(ctx, cfg)
	if err != nil {
		return opts, err
	}
	signer, err := newSigner(cfg, log)
	if err != nil {
		return opts, err
	}
	x := &archive.Expirer{Source: st, Objects: objs, PublicKey: signer.PublicKey(), Log: log}
	if step := envValue(environ, retentionKillAfterEnv); step != "" {
		x.AfterStep = func(s string, _ time.Time) {
			if s == step {
				log.Warn("retention: killed by " + retentionKillAfterEnv)
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
	opts.Archive = x
	return opts, nil
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
	if rep.ArchiveSkipped {
		fmt.Fprintln(w, "archived months: skipped (the archive job or a restore is running); the next run will look at them")
	}
	if len(rep.Archived) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ARCHIVED MONTH\tACTION\tEVENTS\tLAST RETAINED\tNOTE")
		for _, a := range rep.Archived {
			last := ""
			if !a.LastRetained.IsZero() {
				last = a.LastRetained.Format(time.DateOnly)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", a.Month, a.Action, a.Events, last, a.Note)
		}
		_ = tw.Flush()
		fmt.Fprintf(w, "archived months: %s %d event(s) of %d month(s)\n", verb, rep.ArchivedEventsDeleted,
			rep.ArchivedMonthsDeleted()+countAction(rep.Archived, maintenance.ArchivedWould))
	}
}

func countAction(months []maintenance.ArchivedRetention, action string) int {
	n := 0
	for _, m := range months {
		if m.Action == action {
			n++
		}
	}
	return n
}

// retentionJob is the retention job serve runs in the background when
// retention.enabled (nil otherwise); every replica runs it, an advisory lock
// picks one per run.
func retentionJob(ctx context.Context, cfg config.Config, st *store.Store, reg prometheus.Registerer,
	log *slog.Logger) (*maintenance.RetentionJob, error) {
	metrics := maintenance.NewRetentionMetrics(reg)
	if !cfg.Retention.Enabled {
		log.Info("retention is disabled (retention.enabled=false): expired events are kept")
		return nil, nil
	}
	opts, err := retentionOptions(ctx, cfg, st, log, nil)
	if err != nil {
		return nil, err
	}
	log.Info("retention job started", "interval", cfg.Retention.Interval.Duration.String(),
		"archived_months", opts.Archive != nil)
	return &maintenance.RetentionJob{
		Store:    st,
		Options:  opts,
		Interval: cfg.Retention.Interval.Duration,
		Metrics:  metrics,
		Log:      log,
	}, nil
}
