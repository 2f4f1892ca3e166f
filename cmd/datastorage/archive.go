package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/config"
	"kubernaut.ai/datastorage/internal/objstore"
	"kubernaut.ai/datastorage/internal/store"
)

// killAfterEnv names the archive step after which `archive run` kills
// itself with SIGKILL: the crash tests' hook (internal/archive
// crash_test.go). Unset in production. Not DATASTORAGE_*: those are config
// keys, and the config refuses an unknown one.
const killAfterEnv = "TEST_DATASTORAGE_ARCHIVE_KILL_AFTER"

// objects adapts an objstore.Store to what the archive asks of it.
type objects struct{ objstore.Store }

func (o objects) Open(ctx context.Context, key string) (archive.Object, error) {
	return o.Store.Open(ctx, key)
}

func (o objects) List(ctx context.Context, prefix string) ([]archive.ObjectInfo, error) {
	list, err := o.Store.List(ctx, prefix)
	out := make([]archive.ObjectInfo, len(list))
	for i, x := range list {
		out[i] = archive.ObjectInfo{Key: x.Key, Size: x.Size}
	}
	return out, err
}

func openTarget(ctx context.Context, cfg config.Config) (archive.Objects, error) {
	if cfg.Archive.Target == "" {
		return nil, errors.New("config: archive.target: required by the archive commands")
	}
	s3 := cfg.Archive.S3
	st, err := objstore.Open(ctx, cfg.Archive.Target, objstore.Options{Endpoint: s3.Endpoint, Region: s3.Region,
		PathStyle: s3.PathStyle, AccessKeyIDFile: s3.AccessKeyIDFile, SecretAccessKeyFile: s3.SecretAccessKeyFile})
	if err != nil {
		return nil, fmt.Errorf("archive.target: %w", err)
	}
	return objects{st}, nil
}

// newArchiver builds the archiver of the configuration.
func newArchiver(ctx context.Context, cfg config.Config, st *store.Store, log *slog.Logger, environ []string) (*archive.Archiver, error) {
	objs, err := openTarget(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if len(cfg.Integrity.SigningKey) == 0 {
		// An ephemeral key would sign manifests nobody can verify later.
		return nil, errors.New("config: integrity.signingKeyFile: required to archive (the manifests are signed with it)")
	}
	signer, err := newSigner(cfg, log)
	if err != nil {
		return nil, err
	}
	a := &archive.Archiver{Source: st, Objects: objs, Signer: signer, Hasher: audit.NewHasher(cfg.Integrity.HMACKey),
		Options: archive.Options{After: cfg.Archive.After.Duration, Target: cfg.Archive.Target, Log: log,
			TempDir: cfg.Archive.TempDir, SortMemory: int64(cfg.Archive.SortMemory)}}
	if step := envValue(environ, killAfterEnv); step != "" {
		a.Options.AfterStep = func(s string, _ time.Time) {
			if s == step {
				log.Warn("archive: killed by " + killAfterEnv)
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
	return a, nil
}

func envValue(environ []string, name string) string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// archiveJob is the job serve runs when archive.enabled (nil otherwise).
func archiveJob(ctx context.Context, cfg config.Config, st *store.Store, reg prometheus.Registerer, log *slog.Logger) (*archive.Job, error) {
	metrics := archive.NewMetrics(reg)
	if !cfg.Archive.Enabled {
		return nil, nil
	}
	a, err := newArchiver(ctx, cfg, st, log, nil)
	if err != nil {
		return nil, err
	}
	log.Info("archive job started", "target", cfg.Archive.Target, "after", cfg.Archive.After.Duration.String())
	return &archive.Job{Archiver: a, Metrics: metrics, Log: log}, nil
}

const archiveUsage = `Usage: datastorage archive run|list|verify|restore [--month YYYY-MM] [--config FILE]

  run      archive every due month now (or --month, due or not)
  list     the archived months and their state
  verify   check a month's files and signed manifest (--month)
  restore  load an archived month back into PostgreSQL (--month)
`

// cmdArchive runs the archive commands.
func cmdArchive(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("archive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (default $CONFIG_PATH)")
	monthFlag := fs.String("month", "", "the month, YYYY-MM")
	fs.Usage = func() {
		fmt.Fprint(stderr, archiveUsage)
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return errUsage
	}
	sub := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	var month time.Time
	if *monthFlag != "" {
		m, err := archive.ParseMonth(*monthFlag)
		if err != nil {
			return fmt.Errorf("archive: --month: %w", err)
		}
		month = m
	}
	needMonth := sub == "verify" || sub == "restore"
	if (sub != "run" && sub != "list" && !needMonth) || (needMonth && month.IsZero()) {
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
	if sub == "list" {
		recs, err := st.ArchiveRecords(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MONTH\tSTATUS\tEVENTS\tBYTES\tARCHIVED AT\tMANIFEST")
		for _, r := range recs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", archive.MonthString(r.Month), r.Status, r.Events, r.Bytes,
				r.ArchivedAt.UTC().Format(time.RFC3339), r.ManifestKey)
		}
		return tw.Flush()
	}
	if needMonth {
		if err := removedByRetention(ctx, st, month); err != nil {
			return err
		}
	}
	a, err := newArchiver(ctx, cfg, st, log, environ)
	if err != nil {
		return err
	}
	switch sub {
	case "run":
		rep, err := a.Run(ctx, month)
		if rep.Skipped {
			fmt.Fprintln(stdout, "skipped: another replica is archiving")
		}
		for _, m := range rep.Months {
			fmt.Fprintf(stdout, "%s %s: %d event(s), %d byte(s), dropped=%t %s\n", m.Month, m.Action, m.Events, m.Bytes, m.Dropped, m.Note)
		}
		return err
	case "verify":
		m, err := a.Verify(ctx, month)
		if err != nil {
			fmt.Fprintln(stdout, "FAILED")
			return err
		}
		fmt.Fprintf(stdout, "%s: %d event(s) in %d file(s), %d chain(s): OK\n", m.Month, m.Events, len(m.Files), len(m.Correlations))
		return nil
	default: // restore
		n, err := a.Restore(ctx, month)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d event(s) restored\n", archive.MonthString(month), n)
		return nil
	}
}

// cmdVerifyArchive checks an archived month offline: no database, the
// target and the public key only.
func cmdVerifyArchive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify-archive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "the archive target: file:///abs/dir or s3://bucket/prefix (S3 credentials from the AWS environment)")
	monthFlag := fs.String("month", "", "the month, YYYY-MM")
	pubFlag := fs.String("public-key", "", "the export signing public key: a file (PEM or raw) or the key inline (base64 or hex)")
	hmacFile := fs.String("hmac-key-file", "", "the service's integrity.hmacKeyFile, when its chains use HMAC-SHA256")
	endpoint := fs.String("s3-endpoint", "", "S3-compatible endpoint URL")
	pathStyle := fs.Bool("s3-path-style", false, "path-style S3 addressing")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: datastorage verify-archive --target URL --month YYYY-MM --public-key KEY [--hmac-key-file FILE]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" || *monthFlag == "" || *pubFlag == "" || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	month, err := archive.ParseMonth(*monthFlag)
	if err != nil {
		return fmt.Errorf("verify-archive: --month: %w", err)
	}
	pub, err := readPublicKey(*pubFlag)
	if err != nil {
		return fmt.Errorf("verify-archive: --public-key: %w", err)
	}
	var hasher audit.Hasher
	if *hmacFile != "" {
		key, err := os.ReadFile(*hmacFile)
		if err != nil {
			return fmt.Errorf("verify-archive: --hmac-key-file: %w", err)
		}
		hasher = audit.NewHasher(bytes.TrimRight(key, "\r\n"))
	}
	st, err := objstore.Open(ctx, *target, objstore.Options{Endpoint: *endpoint, PathStyle: *pathStyle})
	if err != nil {
		return fmt.Errorf("verify-archive: %w", err)
	}
	objs := objects{st}
	obj, err := objs.Open(ctx, archive.ManifestKey(month))
	if err != nil {
		return fmt.Errorf("verify-archive: manifest: %w", err)
	}
	mb, err := io.ReadAll(io.NewSectionReader(obj, 0, obj.Size()))
	obj.Close()
	if err != nil {
		return fmt.Errorf("verify-archive: manifest: %w", err)
	}
	m, err := archive.VerifyArchive(ctx, objs, mb, pub, hasher)
	if err != nil {
		fmt.Fprintln(stdout, "FAILED")
		return fmt.Errorf("verify-archive: %w", err)
	}
	fmt.Fprintf(stdout, "%s: %d event(s) in %d file(s), %d chain(s), signature valid: OK\n", m.Month, m.Events, len(m.Files), len(m.Correlations))
	return nil
}

// removedByRetention refuses to verify or restore a month whose files
// retention deleted (or is deleting): say so instead of "manifest not
// found".
func removedByRetention(ctx context.Context, st *store.Store, month time.Time) error {
	recs, err := st.ArchiveRecords(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Month.Equal(month) && (r.Status == archive.StatusExpiring || r.Status == archive.StatusExpired) {
			return fmt.Errorf("%w: %s (status %s): every event in it had expired and its files are deleted",
				archive.ErrRemoved, archive.MonthString(month), r.Status)
		}
	}
	return nil
}
