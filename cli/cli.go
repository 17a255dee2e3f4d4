// Package cli is Baton's command line: "baton serve" runs an instance, and
// the other subcommands talk to a running instance's API.
package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/batonhq/baton/config"
)

// Version is set at build time with -ldflags "-X github.com/batonhq/baton/cli.Version=…".
var Version = "dev"

// Execute runs the command line and returns the process exit code.
func Execute() int {
	root := newRoot(os.Stdout, os.Stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "baton:", err)
		return 1
	}
	return 0
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "baton",
		Short:         "Baton is a highly available cron service: identical instances, one executor, elected by a RabbitMQ token",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServe(), newAuth())
	addAPICommands(root)
	return root
}

// newLogger builds the service logger from the log.* settings.
func newLogger(c *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToLower(c.Log.Level)))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if c.Log.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With("instance", c.Instance.ID)
}
