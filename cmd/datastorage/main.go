// Command datastorage is the Data Storage service and its operator tools.
//
//	datastorage serve [--config FILE] [--no-migrate]
//	datastorage migrate [up|status] [--config FILE]
//	datastorage dlq stats|replay|dead-letters [--config FILE]
//	datastorage events [filters] [--output table|json]
//	datastorage timeline CORRELATION_ID [--output tree|json]
//	datastorage history --target NS/KIND/NAME --spec-hash H [--output table|json]
//	datastorage effectiveness CORRELATION_ID [--output table|json]
//	datastorage workflows apply|list|get|versions|search|validate|disable|enable|deprecate|archive
//	datastorage retention run [--dry-run] [--config FILE]
//	datastorage verify-export FILE --public-key KEY [--hmac-key-file FILE]
//	datastorage archive run|list|verify|restore [--month YYYY-MM] [--config FILE]
//	datastorage verify-archive --target URL --month YYYY-MM --public-key KEY
//	datastorage version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"kubernaut.ai/datastorage/internal/version"
)

const usage = `Usage: datastorage <command> [flags]

Commands:
  serve     run the HTTP API (migrates the database first unless --no-migrate)
  migrate   apply pending schema migrations (up, the default) or list them (status)
  dlq       inspect and replay the spool: stats, replay, dead-letters list|redrive
  events    list events through the API, as a table (--output json for scripts)
  timeline  show one remediation as a tree through the API (--output json for scripts)
  history   a target's past remediations on its spec: --target NS/KIND/NAME --spec-hash H (a table; --output json)
  effectiveness CORRELATION_ID: a remediation's effectiveness score (a table; --output json)
  workflows the workflow catalog through the API: apply -f DIR, list, get, versions, search,
            validate, disable|enable|deprecate|archive ("datastorage workflows help")
  retention run: delete expired events now, never held ones (--dry-run previews)
  rollups   rebuild: recount the aggregation rollups from the events (after a restore or bulk load)
  archive   run|list|verify|restore [--month YYYY-MM]: the archive tier (docs/archive.md)
  verify-export FILE --public-key KEY: check a signed export offline
  verify-archive --target URL --month YYYY-MM --public-key KEY: check an archived month offline
  version   print the version

Every command that talks to the database takes --config FILE (or CONFIG_PATH);
every config key can be overridden with DATASTORAGE_<KEY>, e.g. DATASTORAGE_DATABASE_URL.
Run "datastorage <command> -h" for the command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// errUsage marks errors that were already explained by a usage message.
var errUsage = errors.New("usage")

func run(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], environ, stderr)
	case "migrate":
		err = cmdMigrate(ctx, args[1:], environ, stdout, stderr)
	case "dlq":
		err = cmdDLQ(ctx, args[1:], environ, stdout, stderr)
	case "events":
		err = cmdEvents(ctx, args[1:], environ, stdout, stderr)
	case "timeline":
		err = cmdTimeline(ctx, args[1:], environ, stdout, stderr)
	case "history":
		err = cmdHistory(ctx, args[1:], environ, stdout, stderr)
	case "effectiveness":
		err = cmdEffectiveness(ctx, args[1:], environ, stdout, stderr)
	case "workflows":
		err = cmdWorkflows(ctx, args[1:], environ, stdout, stderr)
	case "retention":
		err = cmdRetention(ctx, args[1:], environ, stdout, stderr)
	case "rollups":
		err = cmdRollups(ctx, args[1:], environ, stdout, stderr)
	case "verify-export":
		err = cmdVerifyExport(args[1:], stdout, stderr)
	case "archive":
		err = cmdArchive(ctx, args[1:], environ, stdout, stderr)
	case "verify-archive":
		err = cmdVerifyArchive(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "datastorage", version.Version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "datastorage: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		return 2
	default:
		fmt.Fprintln(stderr, "datastorage:", err)
		return 1
	}
}
