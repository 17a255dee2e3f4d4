// Command benchmark measures Baton against the machine's limit and against
// bare gocron, in one run, and prints one table.
//
//	go run ./cmd/benchmark                      # every scenario at 350, 10000, 100000
//	go run ./cmd/benchmark -sizes 50 -quick     # a smoke run
//	go run ./cmd/benchmark -rounds 3            # burst ratios as medians of 3 interleaved rounds
//
// Scenarios (-scenarios, comma-separated):
//
//   - ref: per size N, (a) a raw HTTP loop, N requests from as many
//     goroutines as Baton has dispatch workers, through Baton's own HTTP
//     client, with no scheduler: the physical limit; (b) bare gocron v2 with
//     one gocron job per task, all due at the same second, each task sending
//     the same request: what a user would write instead.
//   - burst: per size N, N Baton jobs due at the same second, run by an
//     in-process instance as the executor, against the real RabbitMQ and the
//     FerretDB store. Jobs are inserted straight into the store first.
//   - crud: forwarded writes through a standby and through the executor,
//     at concurrency 1 and 32.
//   - takeover: the executor of -takeover-n jobs (a process of the real
//     binary) is SIGKILLed; the new holder's time to load and to first fire.
//   - spread: -spread-n jobs that fire every minute, spread evenly over its
//     seconds, run by an in-process executor; the fires scheduled in a
//     window of -spread-for after loading and a warm-up are measured:
//     sustained rate, lag, and ticks missing. Before it, the raw loop sends
//     waves of one second's fires: the limit for a second's last fire.
//
// The store (FerretDB) and the receiver run in helper processes of their own,
// so this process's CPU time and peak RSS are the scheduler's and its HTTP
// client's, and the store's collections do not stall the receiver.
// Bare gocron runs in a process of its own, which reports its CPU time and
// peak RSS: goroutines it leaves behind would weigh on the rows after it.
// Lag is measured at the receiver: time received minus the scheduled time
// the request carries (X-Baton-Scheduled-At).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type options struct {
	sizes       []int
	rounds      int
	scenarios   map[string]bool
	workers     int
	claimBatch  int
	claimLead   time.Duration
	lead        time.Duration
	timeout     time.Duration
	cpuprofile  string
	crudProfile string
	memprofile  string
	memLimitMiB int
	amqpURL     string
	quick       bool
	crudN       int
	takeoverN   int
	spreadN     int
	spreadFor   time.Duration
	spreadJits  []time.Duration
	verbose     bool
}

// benchEnv is what every scenario shares.
type benchEnv struct {
	o   options
	aux *aux
	log *slog.Logger
}

func main() {
	if os.Getenv(auxEnv) != "" {
		runAux()
		return
	}
	if os.Getenv(gocronEnv) != "" {
		runGocron()
		return
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.memLimitMiB > 0 {
		// This process only: the helper processes keep their own.
		debug.SetMemoryLimit(int64(o.memLimitMiB) << 20)
	}
	rows, err := run(ctx, o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmark:", err)
	}
	if err != nil || len(rows) == 0 {
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("benchmark", flag.ContinueOnError)
	sizes := fs.String("sizes", "350,10000,100000", "burst sizes N (comma-separated)")
	scen := fs.String("scenarios", "ref,burst,crud,takeover,spread", "scenarios to run")
	fs.IntVar(&o.rounds, "rounds", 1, "how many times each size's ref and burst rows run, interleaved; ratios are taken within a round, and their median over rounds is printed")
	fs.IntVar(&o.workers, "workers", 256, "Baton's executor.workers, and the raw loop's concurrency")
	fs.IntVar(&o.claimBatch, "claim-batch", 4000, "Baton's executor.claim_batch")
	fs.DurationVar(&o.claimLead, "claim-lead", 200*time.Millisecond, "Baton's executor.claim_lead")
	fs.DurationVar(&o.lead, "lead", 0, "time from inserting a burst's jobs to its due second (0: from N)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "limit per scenario")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the largest Baton burst to this file")
	fs.IntVar(&o.memLimitMiB, "memlimit-mib", 0, "a soft memory limit for Baton's process, as GOMEMLIMIT sets (0: none)")
	fs.StringVar(&o.memprofile, "memprofile", "", "write a heap profile near the peak of the largest Baton burst to this file")
	fs.StringVar(&o.crudProfile, "crud-cpuprofile", "", "write a CPU profile of the crud rows (both instances) to this file")
	fs.StringVar(&o.amqpURL, "amqp", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL")
	fs.BoolVar(&o.quick, "quick", false, "fewer writes in crud, takeover at the largest size only if asked")
	fs.IntVar(&o.crudN, "crud-n", 1000, "writes per crud row")
	fs.IntVar(&o.takeoverN, "takeover-n", 100000, "jobs in the takeover scenario")
	fs.IntVar(&o.spreadN, "spread-n", 100000, "jobs in the spread scenario")
	fs.DurationVar(&o.spreadFor, "spread-for", 3*time.Minute, "the spread scenario's measured window")
	jitters := fs.String("spread-jitters", "0,1s", "one spread row per jitter of its jobs (0: each second's fires are due at its start; 1s: spread over it)")
	fs.BoolVar(&o.verbose, "v", false, "log Baton's info messages")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for s := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return o, fmt.Errorf("-sizes: bad size %q", s)
		}
		o.sizes = append(o.sizes, n)
	}
	for s := range strings.SplitSeq(*jitters, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < 0 {
			return o, fmt.Errorf("-spread-jitters: bad jitter %q", s)
		}
		o.spreadJits = append(o.spreadJits, d)
	}
	o.scenarios = map[string]bool{}
	for s := range strings.SplitSeq(*scen, ",") {
		switch s = strings.TrimSpace(s); s {
		case "ref", "burst", "crud", "takeover", "spread":
			o.scenarios[s] = true
		default:
			return o, fmt.Errorf("-scenarios: unknown scenario %q", s)
		}
	}
	if o.rounds < 1 {
		return o, fmt.Errorf("-rounds must be at least 1")
	}
	if o.spreadN <= 0 || o.spreadFor < time.Second {
		return o, fmt.Errorf("-spread-n must be positive and -spread-for at least 1s")
	}
	if o.quick {
		o.crudN = min(o.crudN, 100)
	}
	return o, nil
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// run runs the chosen scenarios and prints the table to w.
func run(ctx context.Context, o options, w io.Writer) ([]row, error) {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	env := &benchEnv{o: o, log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}
	a, err := startAux(env.log)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	env.aux = a
	var rows []row
	var errs []string
	add := func(r row, err error) {
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s-%d: %v", r.Scenario, r.N, err))
			env.log.Error("scenario failed", "scenario", r.Scenario, "n", r.N, "error", err)
			r.Note = "FAILED: " + err.Error() + "; " + r.Note
		}
		rows = append(rows, r)
		fmt.Fprintf(os.Stderr, "done: %s\n", r.brief())
	}
	largest := 0
	for _, n := range o.sizes {
		largest = max(largest, n)
	}
	// Rounds interleave the rows they compare, so that a slow or fast
	// stretch of this shared machine falls on all three alike.
	for _, n := range o.sizes {
		for round := 1; round <= o.rounds && ctx.Err() == nil; round++ {
			inRound := func(r row, err error) (row, error) {
				if o.rounds > 1 {
					r.Round = round
				}
				return r, err
			}
			if o.scenarios["ref"] {
				add(inRound(rawLoop(ctx, env, n)))
				add(inRound(bareGocron(ctx, env, n)))
			}
			if o.scenarios["burst"] {
				var profiles burstProfiles
				if n == largest && round == 1 {
					profiles = burstProfiles{cpu: o.cpuprofile, heap: o.memprofile}
				}
				add(inRound(batonBurst(ctx, env, n, profiles)))
			}
		}
	}
	if o.scenarios["crud"] && ctx.Err() == nil {
		rs, err := crudRows(ctx, env)
		for _, r := range rs {
			add(r, nil)
		}
		if err != nil {
			add(row{Scenario: "crud"}, err)
		}
	}
	if o.scenarios["takeover"] && ctx.Err() == nil {
		add(takeover(ctx, env, o.takeoverN))
	}
	for _, jitter := range o.spreadJits {
		if o.scenarios["spread"] && ctx.Err() == nil {
			add(batonSpread(ctx, env, o.spreadN, o.spreadFor, jitter))
		}
	}
	printTable(w, rows)
	if len(errs) > 0 {
		return rows, fmt.Errorf("%d scenarios failed:\n  %s", len(errs), strings.Join(errs, "\n  "))
	}
	return rows, ctx.Err()
}

// row is one line of the table. Durations left negative are not
// applicable.
type row struct {
	Scenario string
	N        int
	Round    int // of -rounds, when more than one
	// Lag at the receiver (or latency, for crud).
	P50, P99, Max time.Duration
	// Last is from the scheduled instant to the last request received;
	// Recorded to the last outcome recorded in the store.
	Last, Recorded time.Duration
	Rate           float64 // requests (or writes) per second over Last
	CPU, AuxCPU    time.Duration
	RSS            int64
	// Claim and Record are the executor's store time: the sum of its claim
	// batches (on the firing path) and of its record batches (beside it).
	Claim, Record time.Duration
	Note          string
}

func (r *row) fromReceiver(st recvStats, at time.Time) {
	r.P50, r.P99, r.Max = st.P50, st.P99, st.Max
	if !st.Last.IsZero() {
		r.Last = st.Last.Sub(at)
		if r.Last > 0 {
			r.Rate = float64(st.Count) / r.Last.Seconds()
		}
	}
}

func (r row) brief() string {
	return fmt.Sprintf("%s n=%d p50=%s p99=%s max=%s last=%s recorded=%s cpu=%s rss=%dMB %s",
		r.Scenario, r.N, round(r.P50), round(r.P99), round(r.Max), round(r.Last), round(r.Recorded), round(r.CPU), r.RSS>>20, r.Note)
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	if d == 0 {
		return "0"
	}
	return round(d).String()
}

func fmtSec(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", d.Seconds())
}

func ratio(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a.Seconds()/b.Seconds())
}

// printTable prints every row; Baton's burst rows get their ratios to the
// reference rows of the same N: "vs raw" compares the time to the last
// request, "vs gocron" the p99 lag.
func printTable(w io.Writer, rows []row) {
	ref := map[string]row{}
	key := func(scenario string, r row) string { return fmt.Sprintf("%s/%d/%d", scenario, r.N, r.Round) }
	for _, r := range rows {
		ref[key(r.Scenario, r)] = r
	}
	type ratios struct{ vsRaw, vsGocron []float64 }
	bySize := map[int]*ratios{}
	var sizes []int
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tn\tp50\tp99\tmax\tlast fire\trecorded\tper s\tcpu s\taux cpu s\tpeak RSS MB\tclaim s\trecord s\tlast vs raw\tp99 vs gocron\t")
	for _, r := range rows {
		vsRaw, vsGocron := "-", "-"
		if r.Scenario == "baton-burst" {
			rs := bySize[r.N]
			if rs == nil {
				rs = &ratios{}
				bySize[r.N] = rs
				sizes = append(sizes, r.N)
			}
			if raw, ok := ref[key("ref-raw-http", r)]; ok && raw.Last > 0 && r.Last > 0 {
				vsRaw = ratio(r.Last, raw.Last)
				rs.vsRaw = append(rs.vsRaw, r.Last.Seconds()/raw.Last.Seconds())
			}
			if g, ok := ref[key("ref-gocron", r)]; ok && g.P99 > 0 && r.P99 > 0 {
				vsGocron = ratio(r.P99, g.P99)
				rs.vsGocron = append(rs.vsGocron, r.P99.Seconds()/g.P99.Seconds())
			}
		}
		name := r.Scenario
		if r.Round > 0 {
			name = fmt.Sprintf("%s #%d", r.Scenario, r.Round)
		}
		rate := "-"
		if r.Rate > 0 {
			rate = fmt.Sprintf("%.0f", r.Rate)
		}
		rss := "-"
		if r.RSS > 0 {
			rss = strconv.FormatInt(r.RSS>>20, 10)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, r.N,
			fmtDur(r.P50), fmtDur(r.P99), fmtDur(r.Max), fmtDur(r.Last), fmtDur(r.Recorded), rate,
			fmtSec(r.CPU), fmtSec(r.AuxCPU), rss, fmtSec(r.Claim), fmtSec(r.Record), vsRaw, vsGocron)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, n := range sizes {
		if rs := bySize[n]; len(rs.vsRaw) > 1 || len(rs.vsGocron) > 1 {
			fmt.Fprintf(w, "baton-burst-%d over %d rounds: last vs raw median %s (%s), p99 vs gocron median %s (%s)\n",
				n, max(len(rs.vsRaw), len(rs.vsGocron)), medianRatio(rs.vsRaw), ratioList(rs.vsRaw), medianRatio(rs.vsGocron), ratioList(rs.vsGocron))
		}
	}
	for _, r := range rows {
		if r.Note != "" {
			if r.Round > 0 {
				fmt.Fprintf(w, "%s-%d #%d: %s\n", r.Scenario, r.N, r.Round, r.Note)
				continue
			}
			fmt.Fprintf(w, "%s-%d: %s\n", r.Scenario, r.N, r.Note)
		}
	}
}

// medianRatio is the median of rs (the lower middle of an even count).
func medianRatio(rs []float64) string {
	if len(rs) == 0 {
		return "-"
	}
	s := slices.Sorted(slices.Values(rs))
	return fmt.Sprintf("%.2fx", s[(len(s)-1)/2])
}

func ratioList(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2fx", r)
	}
	return strings.Join(parts, ", ")
}
