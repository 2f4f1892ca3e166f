package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"kubernaut.ai/datastorage/internal/store"
)

func cmdMigrate(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (default $CONFIG_PATH)")
	to := fs.Int64("to", 0, "down: roll back the migrations above this version (1 at the lowest)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: datastorage migrate [up|status] [--config FILE]")
		fmt.Fprintln(stderr, "       datastorage migrate down --to VERSION [--config FILE]")
		fs.PrintDefaults()
	}
	// Flags may follow the action (migrate down --to 4).
	action := "up"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		action, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0, action != "up" && action != "status" && action != "down":
		fs.Usage()
		return errUsage
	case action == "down" && *to < store.FirstMigration:
		fmt.Fprintf(stderr, "migrate down: --to is required, %d at the lowest (rolling back %d drops every event)\n",
			store.FirstMigration, store.FirstMigration)
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
	if action == "down" {
		n, err := st.MigrateDownTo(ctx, *to)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rolled back %d migration(s); the schema is at version %d\n", n, *to)
		return nil
	}
	if action == "up" {
		n, err := st.Migrate(ctx, log)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "applied %d migration(s)\n", n)
		return nil
	}
	status, err := st.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tSTATE")
	for _, m := range status {
		state := "pending"
		if m.Applied {
			state = "applied"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", m.Version, m.Name, state)
	}
	return tw.Flush()
}
