package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/config"
	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/spool"
	"kubernaut.ai/datastorage/internal/store"
)

// openRedis returns the spool's Redis client: a plain client of redis.addr,
// or with redis.sentinel.* a failover client that asks the Sentinels for the
// master and again whenever it changes. Failures must be quick: a write that
// PostgreSQL could not take waits for the spool before it can answer, and
// with Redis down too the client deserves its 503 promptly rather than after
// rounds of redials.
func openRedis(cfg config.Redis) *redis.Client {
	// A spool append that waits for replicas reads the script's and the
	// WAIT's answers in one pipeline, under the read timeout: it must
	// outlast redis.waitTimeout.
	readTimeout := max(5*time.Second, cfg.WaitTimeout.Duration+2*time.Second)
	if s := cfg.Sentinel; s.Enabled() {
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       s.MasterName,
			SentinelAddrs:    s.Addrs,
			SentinelPassword: s.Password,
			Password:         cfg.Password,
			DB:               cfg.DB,
			ClientName:       "datastorage",
			DialTimeout:      2 * time.Second,
			DialerRetries:    1,
			ReadTimeout:      readTimeout,
			WriteTimeout:     5 * time.Second,
			// One retry, as for the plain client: after a failover the
			// first command may meet the old master's closed connection;
			// the retry asks the Sentinels again.
			MaxRetries:            1,
			ContextTimeoutEnabled: true,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr:          cfg.Addr,
		Password:      cfg.Password,
		DB:            cfg.DB,
		ClientName:    "datastorage",
		DialTimeout:   2 * time.Second,
		DialerRetries: 1,
		ReadTimeout:   readTimeout,
		WriteTimeout:  5 * time.Second,
		MaxRetries:    1,
		// Deadlines of the caller (a readiness probe, a commit's timeout)
		// bound the socket waits too, so a hung Redis cannot stall them.
		ContextTimeoutEnabled: true,
		// Cluster maintenance notifications are for managed Redis offerings;
		// the spool talks to one plain server.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// redisLog takes go-redis's own messages (a line per failed dial while Redis
// is down) into the service's log at debug level; the spool and the pipeline
// report an outage themselves, in structured form.
type redisLog struct{ log *slog.Logger }

// Printf logs one go-redis message.
func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// eventReplayer commits spooled events through the pipeline and tells the
// spool which failures are the data's fault.
type eventReplayer struct{ pipeline *ingest.Pipeline }

// Replay commits events; a refused event, a missing parent or an event_id
// already stored with other content is a data error. Other errors keep
// their class (failure.ClassOf), which the worker acts on: unavailable
// waits, internal parks the page.
func (r eventReplayer) Replay(ctx context.Context, events []*audit.Event) error {
	err := r.pipeline.Replay(ctx, events)
	var rejected *ingest.RejectedError
	var missing *ingest.MissingParentsError
	var conflicts *ingest.ConflictsError
	if errors.As(err, &rejected) || errors.As(err, &missing) || errors.As(err, &conflicts) {
		return &spool.DataError{Err: err}
	}
	return err
}

// notificationReplayer stores spooled notifications.
type notificationReplayer struct{ store *store.Store }

// ReplayNotification stores n; a notification_id already stored means an
// earlier delivery (or an earlier request) got there first. Other errors
// keep their class: data is retried and dead-lettered, unavailable waits,
// internal parks.
func (r notificationReplayer) ReplayNotification(ctx context.Context, n audit.Notification) error {
	_, err := r.store.InsertNotification(ctx, n)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, audit.ErrNotificationExists):
		return spool.ErrAlreadyStored
	case failure.ClassOf(err) == failure.Data:
		return &spool.DataError{Err: err}
	default:
		return err
	}
}

const dlqUsage = `Usage: datastorage dlq <command> [flags]

The spool (Redis) holds events PostgreSQL could not take; the replay worker of
every running replica moves them to PostgreSQL. These commands look at it and
act on it directly.

Commands:
  stats                            depth, pending, oldest age and dead letters of each stream
  replay                           replay the spool into PostgreSQL now, once, and report
  dead-letters list                list dead letters (id, age, record id, last error)
  dead-letters redrive ID... | --all
                                   move dead letters back to the spool after a fix

Flags (any command):
  --config FILE                    config file (default $CONFIG_PATH)
  --kind events|notifications      the stream (dead-letters; default events)
  --limit N                        most dead letters listed (default 100)
`

func cmdDLQ(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dlq", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (default $CONFIG_PATH)")
	kindName := fs.String("kind", "events", "stream: events or notifications")
	limit := fs.Int64("limit", 100, "most dead letters listed")
	all := fs.Bool("all", false, "redrive every dead letter")
	fs.Usage = func() { fmt.Fprint(stderr, dlqUsage) }
	words, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	kind, err := spool.ParseKind(*kindName)
	if err != nil {
		fs.Usage()
		return errUsage
	}
	if len(words) == 0 {
		fs.Usage()
		return errUsage
	}
	cmd := words[0]
	if cmd == "dead-letters" && len(words) > 1 {
		cmd, words = "dead-letters "+words[1], words[1:]
	}
	rest := words[1:]
	valid := map[string]bool{"stats": true, "replay": true, "dead-letters list": true, "dead-letters redrive": true}
	if !valid[cmd] || (cmd != "dead-letters redrive" && len(rest) > 0) ||
		(cmd == "dead-letters redrive" && (len(rest) > 0) == *all) {
		fs.Usage()
		return errUsage
	}

	cfg, log, err := loadConfig(*configPath, environ, stderr)
	if err != nil {
		return err
	}
	redis.SetLogger(redisLog{log})
	rdb := openRedis(cfg.Redis)
	defer rdb.Close()
	sp := spool.New(rdb, spool.Options{MaxLen: cfg.Redis.DLQMaxLen})

	switch cmd {
	case "stats":
		return dlqStats(ctx, sp, stdout)
	case "replay":
		return dlqReplay(ctx, cfg, log, sp, stdout, stderr)
	case "dead-letters list":
		return dlqList(ctx, sp, kind, *limit, stdout)
	default:
		var n int
		if *all {
			n, err = sp.RedriveAll(ctx, kind)
		} else {
			n, err = sp.Redrive(ctx, kind, rest)
		}
		fmt.Fprintf(stdout, "moved %d dead letter(s) back to %s\n", n, kind.Stream())
		if err == nil && !*all && n < len(rest) {
			err = fmt.Errorf("%d of the %d ids were not found in %s", len(rest)-n, len(rest), kind.DeadLetters())
		}
		return err
	}
}

// parseInterleaved parses flags placed anywhere among the words, which the
// flag package alone stops at ("dead-letters redrive ID --kind events").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return words, nil
		}
		words = append(words, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func dlqStats(ctx context.Context, sp *spool.Spool, stdout io.Writer) error {
	stats, err := sp.Stats(ctx, spool.Kinds()...)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tDEPTH\tPENDING\tCONSUMERS\tOLDEST AGE\tDEAD LETTERS")
	for _, st := range stats {
		age := "-"
		if !st.Oldest.IsZero() {
			age = time.Since(st.Oldest).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\n", st.Kind.Stream(), st.Depth, st.Pending, st.Consumers, age, st.DeadLetters)
	}
	return tw.Flush()
}

func dlqList(ctx context.Context, sp *spool.Spool, kind spool.Kind, limit int64, stdout io.Writer) error {
	letters, err := sp.DeadLetters(ctx, kind, "", limit)
	if err != nil {
		return err
	}
	idName := "EVENT_ID"
	if kind == spool.Notifications {
		idName = "NOTIFICATION_ID"
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tAGE\t%s\tDELIVERIES\tLAST_ERROR\n", idName)
	for _, d := range letters {
		rec := d.RecordID
		if rec == "" {
			rec = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", d.ID, time.Since(d.At).Round(time.Second), rec, d.Message.RetryCount,
			strings.ReplaceAll(d.LastError, "\n", " "))
	}
	return tw.Flush()
}

// dlqReplay drains both streams once, through the same pipeline code as the
// service (hash chains included), with a consumer of its own in the group so
// it can run beside live replicas.
func dlqReplay(ctx context.Context, cfg config.Config, log *slog.Logger, sp *spool.Spool, stdout, stderr io.Writer) error {
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = st.Ping(pctx)
	cancel()
	if err != nil {
		return fmt.Errorf("the database is not reachable, nothing was replayed: %w", err)
	}
	pipeline := ingest.New(st, nil, ingest.Options{Writers: 1, MaxBatch: cfg.Redis.ReplayBatch}, nil, log)
	if err := pipeline.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = pipeline.Stop(context.Background()) }()
	w, err := newReplayWorker(cfg, sp, pipeline, st, log)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range spool.Kinds() {
		bar := newProgress(stderr, k.String())
		res, err := w.Drain(ctx, k, bar.update)
		bar.finish(res)
		fmt.Fprintf(stdout, "%s: %d committed, %d already stored, %d failed (left for a later attempt), %d dead-lettered",
			k, res.Committed, res.Duplicates, res.Failed, res.DeadLettered)
		if res.Parked > 0 {
			fmt.Fprintf(stdout, ", %d parked (internal error, left pending)", res.Parked)
		}
		fmt.Fprintln(stdout)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// progress reports a drain on stderr: a bar redrawn in place on a terminal,
// a line every few seconds otherwise (logs, CI).
type progress struct {
	out     io.Writer
	name    string
	tty     bool
	start   time.Time
	last    time.Time
	every   time.Duration
	lastLen int
}

func newProgress(out io.Writer, name string) *progress {
	p := &progress{out: out, name: name, start: time.Now(), every: 2 * time.Second}
	if f, ok := out.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty, p.every = true, 100*time.Millisecond
		}
	}
	return p
}

func (p *progress) update(r spool.DrainResult, total int64) {
	if time.Since(p.last) < p.every {
		return
	}
	p.last = time.Now()
	p.draw(r.Done(), total)
}

func (p *progress) draw(done, total int64) {
	elapsed := time.Since(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed
	}
	if !p.tty {
		fmt.Fprintf(p.out, "replay %s: %d/%d (%.0f/s)\n", p.name, done, total, rate)
		return
	}
	const width = 30
	filled := width
	if total > 0 {
		filled = int(int64(width) * min(done, total) / total)
	}
	line := fmt.Sprintf("\rreplay %-13s [%s%s] %d/%d  %.0f/s", p.name,
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total, rate)
	// Pad over the rest of a longer previous line.
	pad := max(0, p.lastLen-len(line))
	p.lastLen = len(line)
	fmt.Fprint(p.out, line+strings.Repeat(" ", pad))
}

func (p *progress) finish(r spool.DrainResult) {
	if p.tty {
		p.draw(r.Done(), r.Done())
		fmt.Fprintln(p.out)
		return
	}
	if r.Done() > 0 {
		p.draw(r.Done(), r.Done())
	}
}
