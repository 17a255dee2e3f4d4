package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
)

// addAPICommands adds the subcommands that talk to a running instance.
func addAPICommands(root *cobra.Command) {
	f := &clientFlags{}
	api := []*cobra.Command{newStatus(f), newJobs(f), newRuns(f), newSchedule(f)}
	for _, c := range api {
		f.register(c)
		root.AddCommand(c)
	}
}

// render prints v as JSON or YAML, or calls table for the default format.
func render(w io.Writer, format string, v any, table func(*tabwriter.Writer)) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		// Through JSON, so that field names match the API's.
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		var generic any
		if err := json.Unmarshal(data, &generic); err != nil {
			return err
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		return enc.Encode(generic)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func ts(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clusterView is GET /api/v1/cluster.
type clusterView struct {
	Executor *struct {
		Instance   string    `json:"instance"`
		Datacenter string    `json:"datacenter"`
		Epoch      int64     `json:"epoch"`
		Since      time.Time `json:"since"`
	} `json:"executor"`
	Instances []struct {
		ID         string    `json:"id"`
		Datacenter string    `json:"datacenter"`
		Role       string    `json:"role"`
		LastSeen   time.Time `json:"last_seen"`
	} `json:"instances"`
	Token map[string]any `json:"token"`
}

func newStatus(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show which instance is the executor, every instance, and the token's health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			var v clusterView
			if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/cluster", nil, &v); err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), f.output, v, func(w *tabwriter.Writer) {
				if v.Executor == nil {
					fmt.Fprintln(w, "executor:\tnone")
				} else {
					fmt.Fprintf(w, "executor:\t%s (%s), epoch %d, since %s\n", v.Executor.Instance, orDash(v.Executor.Datacenter),
						v.Executor.Epoch, ts(&v.Executor.Since))
				}
				keys := make([]string, 0, len(v.Token))
				for k := range v.Token {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					fmt.Fprintf(w, "token %s:\t%v\n", k, v.Token[k])
				}
				fmt.Fprintln(w)
				fmt.Fprintln(w, "INSTANCE\tDATACENTER\tROLE\tLAST SEEN")
				for _, in := range v.Instances {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", in.ID, orDash(in.Datacenter), in.Role, ts(&in.LastSeen))
				}
			})
		},
	}
}

func targetSummary(t job.Target) string {
	switch {
	case t.HTTP != nil:
		return strings.TrimSpace(t.HTTP.Method + " " + t.HTTP.URL)
	case t.AMQP != nil:
		return "amqp " + t.AMQP.Exchange + "/" + t.AMQP.RoutingKey
	case t.Shell != nil:
		return "shell " + strings.Join(t.Shell.Command, " ")
	}
	return t.Type
}

func jobsTable(w *tabwriter.Writer, jobs []job.Job) {
	fmt.Fprintln(w, "NAME\tSCHEDULE\tTIMEZONE\tTARGET\tNEXT RUN\tLAST STATUS\tRUNS\tOK\tFAILED\tPAUSED")
	for _, j := range jobs {
		last := "-"
		if j.LastRun != nil {
			last = j.LastRun.Status
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%t\n", j.Name, j.Schedule, orDash(j.Timezone), targetSummary(j.Target),
			ts(j.NextRunAt), last, j.RunCount, j.SuccessCount, j.FailureCount, j.Paused)
	}
}

func newJobs(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "jobs", Short: "List, show, apply, delete, pause, resume and trigger jobs"}
	var label, name string
	list := &cobra.Command{
		Use:   "list",
		Short: "List jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if label != "" {
				q.Set("label", label)
			}
			if name != "" {
				q.Set("name", name)
			}
			jobs, err := c.jobs(cmd.Context(), q)
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), f.output, map[string]any{"jobs": jobs}, func(w *tabwriter.Writer) { jobsTable(w, jobs) })
		},
	}
	list.Flags().StringVar(&label, "label", "", "only jobs with this label, as key=value")
	list.Flags().StringVar(&name, "name", "", "only jobs whose name contains this")

	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Show one job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			j, err := c.job(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), f.output, j, func(w *tabwriter.Writer) { jobsTable(w, []job.Job{*j}) })
		},
	}

	simple := func(use, short, method, suffix string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NAME",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := f.client()
				if err != nil {
					return err
				}
				var out map[string]any
				if err := c.do(cmd.Context(), method, "/api/v1/jobs/"+url.PathEscape(args[0])+suffix, nil, &out); err != nil {
					return err
				}
				if out == nil {
					out = map[string]any{"name": args[0], "result": use + "d"}
				}
				return render(cmd.OutOrStdout(), f.output, out, func(w *tabwriter.Writer) {
					fmt.Fprintf(w, "%s: %s\n", args[0], pastTense(use))
				})
			},
		}
	}
	cmd.AddCommand(list, get, newApply(f),
		simple("delete", "Delete a job", http.MethodDelete, ""),
		simple("pause", "Pause a job: its ticks are skipped until it is resumed", http.MethodPost, "/pause"),
		simple("resume", "Resume a paused job", http.MethodPost, "/resume"),
		simple("trigger", "Run a job now, once (recorded as manual)", http.MethodPost, "/trigger"),
	)
	return cmd
}

func pastTense(verb string) string {
	switch verb {
	case "trigger":
		return "triggered"
	case "pause", "resume", "delete":
		return verb + "d"
	}
	return verb
}

// planned is one line of an apply plan.
type planned struct {
	Action string   `json:"action"` // create, update, unchanged, delete
	Name   string   `json:"name"`
	Job    *job.Job `json:"-"`
}

func newApply(f *clientFlags) *cobra.Command {
	var file string
	var prune, dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update the jobs of a schedule file; --prune deletes jobs not in it",
		Long: "apply reads the schedule file format (see README), compares it with the jobs on the\n" +
			"server and prints a plan: create, update, unchanged and, with --prune, delete.\n" +
			"--dry-run stops there. Otherwise each change is applied; the first error stops it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f FILE is required")
			}
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return err
			}
			// The server decides whether shell targets are enabled.
			want, err := job.DecodeFile(data, job.Options{ShellEnabled: true})
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			have, err := c.jobs(ctx, url.Values{})
			if err != nil {
				return err
			}
			plan := makePlan(want, have, prune)
			out := cmd.OutOrStdout()
			if f.output == "table" {
				for _, p := range plan {
					fmt.Fprintf(out, "%-9s %s\n", p.Action, p.Name)
				}
			}
			if dryRun {
				if f.output != "table" {
					return render(out, f.output, map[string]any{"dry_run": true, "plan": plan}, nil)
				}
				fmt.Fprintln(out, "dry run: nothing changed")
				return nil
			}
			for i, p := range plan {
				if err := applyOne(ctx, c, p); err != nil {
					return fmt.Errorf("%s %s: %w (%d of %d changes applied before it)", p.Action, p.Name, err, countChanges(plan[:i]), countChanges(plan))
				}
			}
			if f.output != "table" {
				return render(out, f.output, map[string]any{"dry_run": false, "plan": plan}, nil)
			}
			fmt.Fprintf(out, "applied %d changes\n", countChanges(plan))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "schedule file (YAML or JSON), - for standard input")
	cmd.Flags().BoolVar(&prune, "prune", false, "delete jobs that are not in the file")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	return cmd
}

func makePlan(want, have []job.Job, prune bool) []planned {
	current := make(map[string]*job.Job, len(have))
	for i := range have {
		current[have[i].Name] = &have[i]
	}
	var plan []planned
	inFile := map[string]bool{}
	for i := range want {
		w := &want[i]
		inFile[w.Name] = true
		switch old := current[w.Name]; {
		case old == nil:
			plan = append(plan, planned{Action: "create", Name: w.Name, Job: w})
		case job.SpecEqual(old, w):
			plan = append(plan, planned{Action: "unchanged", Name: w.Name})
		default:
			plan = append(plan, planned{Action: "update", Name: w.Name, Job: w})
		}
	}
	if prune {
		for _, h := range have {
			if !inFile[h.Name] {
				plan = append(plan, planned{Action: "delete", Name: h.Name})
			}
		}
	}
	return plan
}

func countChanges(plan []planned) int {
	n := 0
	for _, p := range plan {
		if p.Action != "unchanged" {
			n++
		}
	}
	return n
}

func applyOne(ctx context.Context, c *apiClient, p planned) error {
	path := "/api/v1/jobs/" + url.PathEscape(p.Name)
	switch p.Action {
	case "create":
		return c.do(ctx, http.MethodPost, "/api/v1/jobs", p.Job, nil)
	case "update":
		return c.do(ctx, http.MethodPut, path, p.Job, nil)
	case "delete":
		return c.do(ctx, http.MethodDelete, path, nil, nil)
	}
	return nil
}

func newRuns(f *clientFlags) *cobra.Command {
	var status string
	var limit int
	cmd := &cobra.Command{
		Use:   "runs NAME",
		Short: "Show a job's run history, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if status != "" {
				q.Set("status", status)
			}
			var page struct {
				Runs       []store.Run `json:"runs"`
				NextBefore string      `json:"next_before,omitempty"`
			}
			if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/jobs/"+url.PathEscape(args[0])+"/runs?"+q.Encode(), nil, &page); err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), f.output, page, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "SCHEDULED\tSTATUS\tTRIGGER\tATTEMPTS\tDURATION\tINSTANCE\tERROR")
				for _, r := range page.Runs {
					msg := r.Error
					if msg == "" {
						msg = r.Reason
					}
					if len(msg) > 80 {
						msg = msg[:77] + "..."
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", ts(&r.ScheduledAt), r.Status, r.Trigger, r.Attempts,
						time.Duration(r.DurationMS)*time.Millisecond, orDash(r.Instance), orDash(msg))
				}
			})
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "only runs with this status (succeeded, failed, running, skipped, missed, cancelled)")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many runs (1 to 1000)")
	return cmd
}

func newSchedule(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "schedule", Short: "Work with schedule expressions"}
	var tz, from string
	var count int
	preview := &cobra.Command{
		Use:   `preview "SCHEDULE"`,
		Short: "Show a schedule's next fire times and a description, as the server computes them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			q := url.Values{"schedule": {args[0]}, "count": {strconv.Itoa(count)}}
			if tz != "" {
				q.Set("timezone", tz)
			}
			if from != "" {
				q.Set("from", from)
			}
			var v struct {
				Next        []time.Time `json:"next"`
				Description string      `json:"description"`
			}
			if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/schedule/preview?"+q.Encode(), nil, &v); err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), f.output, v, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "%s\n", v.Description)
				loc := time.Local
				if tz != "" {
					if l, err := time.LoadLocation(tz); err == nil {
						loc = l
					}
				}
				for _, t := range v.Next {
					fmt.Fprintf(w, "%s\n", t.In(loc).Format("Mon 2006-01-02 15:04:05 MST"))
				}
			})
		},
	}
	preview.Flags().StringVar(&tz, "timezone", "", "IANA time zone, for example Europe/Berlin (default UTC)")
	preview.Flags().StringVar(&from, "from", "", "start from this RFC 3339 time (default now)")
	preview.Flags().IntVar(&count, "count", 5, "how many fire times")
	cmd.AddCommand(preview)
	return cmd
}
