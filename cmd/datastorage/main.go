// Command datastorage is the Data Storage service and its operator tools.
//
//	datastorage serve [--config FILE] [--no-migrate]
//	datastorage migrate [up|status] [--config FILE]
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
