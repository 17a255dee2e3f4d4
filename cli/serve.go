package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/batonhq/baton/auth"
	"github.com/batonhq/baton/config"
	"github.com/batonhq/baton/instance"
	"github.com/batonhq/baton/job"
)

func newServe() *cobra.Command {
	var configPath, schedulePath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a Baton instance (start the same command on every machine)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath)
			if err != nil {
				return err
			}
			if schedulePath != "" {
				cfg.Schedule = schedulePath
			}
			log := newLogger(cfg, cmd.ErrOrStderr())
			var jobs []job.Job
			if cfg.Schedule != "" {
				data, err := os.ReadFile(cfg.Schedule)
				if err != nil {
					return fmt.Errorf("schedule: %w", err)
				}
				if jobs, err = job.DecodeFile(data, job.Options{ShellEnabled: cfg.Targets.Shell.Enabled}); err != nil {
					return err
				}
			}
			log.Info("starting", "version", Version, "config", cfg.Redacted())
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return instance.Run(ctx, instanceConfig(cfg, jobs, log))
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (YAML); BATON_* environment variables override it")
	cmd.Flags().StringVar(&schedulePath, "schedule", "", "schedule file whose jobs are created or updated at start (overrides the schedule key)")
	return cmd
}

func instanceConfig(c *config.Config, jobs []job.Job, log *slog.Logger) instance.Config {
	return instance.Config{
		Cluster: c.Cluster.Name, ID: c.Instance.ID, Datacenter: c.Instance.Datacenter, Version: Version,
		HTTPListen: c.HTTP.Listen, HTTPShutdownTimeout: c.HTTP.ShutdownTimeout,
		AMQPURL: c.AMQP.URL, Heartbeat: c.AMQP.Heartbeat, ConnectTimeout: c.AMQP.ConnectTimeout,
		ReconnectMin: c.AMQP.ReconnectMin, ReconnectMax: c.AMQP.ReconnectMax,
		MongoURI: c.Mongo.URI, MongoDatabase: c.Mongo.Database, MongoTimeout: c.Mongo.Timeout, RunsRetention: c.Runs.Retention,
		LeaseTTL: c.Lease.TTL, RenewInterval: c.Lease.RenewInterval, HolderTTL: c.Lease.HolderTTL,
		HealthTimeout:  c.Token.HealthTimeout,
		RotateInterval: c.Token.RotateInterval, WatchdogInterval: c.Watchdog.Interval,
		CRUDTimeout: c.CRUD.Timeout, Workers: c.Executor.Workers, ClaimBatch: c.Executor.ClaimBatch,
		ClaimLead:    c.Executor.ClaimLead,
		ShellEnabled: c.Targets.Shell.Enabled, Schedule: jobs, Logger: log,
		PerJobMetrics: c.Metrics.PerJob,
		Auth:          authConfig(c.Auth, log), AllowInsecureRemote: c.Auth.AllowInsecureRemote,
	}
}

func authConfig(a config.Auth, log *slog.Logger) auth.Config {
	tokens := make([]auth.Token, 0, len(a.Tokens))
	for _, t := range a.Tokens {
		tokens = append(tokens, auth.Token{Value: t.Token, Role: t.Role})
	}
	return auth.Config{Tokens: tokens, TokensFile: a.TokensFile, AnonymousRead: a.AnonymousRead, Logger: log}
}
