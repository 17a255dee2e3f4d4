package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/target"
)

// benchJob is the job every scenario fires: a POST to the receiver, with
// Baton's defaults.
func benchJob(name, schedule, url string) *job.Job {
	j := &job.Job{Name: name, Schedule: schedule, Timezone: "UTC",
		Target: job.Target{Type: job.TargetHTTP, HTTP: &job.HTTPTarget{URL: url}}}
	j.Normalize()
	return j
}

// newDispatcher is the HTTP client of both reference rows: Baton's own
// dispatcher with the settings an instance uses (target.New's defaults:
// DefaultMaxConnsPerHost kept-alive connections to one host), so that the
// references differ from Baton only in what schedules the requests.
func newDispatcher() (*target.Dispatcher, error) {
	return target.New(target.Config{Logger: quietLogger()})
}

// rawLoop sends n requests from `workers` goroutines as fast as they go: no
// scheduler, no store. Each request carries the loop's start as its
// scheduled time, so its "lag" is how long it waited for the client.
func rawLoop(ctx context.Context, env *benchEnv, n int) (row, error) {
	disp, err := newDispatcher()
	if err != nil {
		return row{Scenario: "ref-raw-http", N: n}, err
	}
	defer disp.Close()
	return rawLoopWith(ctx, env, disp, n)
}

// rawLoopWith is rawLoop with a given client, whose connections may be
// open already.
func rawLoopWith(ctx context.Context, env *benchEnv, disp *target.Dispatcher, n int) (row, error) {
	r := row{Scenario: "ref-raw-http", N: n}
	j := benchJob("raw", "* * * * *", env.aux.URL+"/raw")
	if err := env.aux.Reset(ctx); err != nil {
		return r, err
	}
	resetPeakRSS()
	m := startMeter(env.aux)
	start := time.Now().UTC()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range env.o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				res := disp.Dispatch(ctx, target.Fire{FireID: strconv.FormatInt(i, 10), Job: j, ScheduledAt: start,
					Trigger: "bench", Instance: "raw"}, nil)
				if res.Status != "succeeded" {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return finishReference(ctx, env, r, m, start, failed.Load())
}

// gocronEnv, when set, makes this binary the bare-gocron process: its
// value is a gocronRun, and it prints one gocronResult line as JSON.
//
// Bare gocron runs in a process of its own because the Go runtime never
// frees a finished goroutine's descriptor: after one gocron burst of 100,000
// tasks, about 120,000 of them (55 MB) stay live in the process for good,
// and the collector marks them during every later row run in it.
const gocronEnv = "BATON_BENCH_GOCRON"

// gocronRun is what the bare-gocron process is asked to do: n tasks, all
// due at one second, each POSTing to url.
type gocronRun struct {
	N       int
	URL     string
	Timeout time.Duration
}

// gocronResult is what it reports: the second its tasks were due, its CPU
// time from just before that second to the last task's end, its peak RSS,
// and how many requests failed.
type gocronResult struct {
	At     time.Time
	CPU    time.Duration
	RSS    int64
	Failed int64
	Error  string `json:",omitempty"`
}

// bareGocron is what a user would write instead of Baton: gocron v2 with
// one gocron job per task, every one due at the same second, each task
// sending the same request. No store, no token. It runs in a process of
// its own (see gocronEnv); the receiver measures its lag.
func bareGocron(ctx context.Context, env *benchEnv, n int) (row, error) {
	r := row{Scenario: "ref-gocron", N: n}
	if err := env.aux.Reset(ctx); err != nil {
		return r, err
	}
	spec, err := json.Marshal(gocronRun{N: n, URL: env.aux.URL + "/gocron", Timeout: env.o.timeout})
	if err != nil {
		return r, err
	}
	cmd, err := selfCommand(ctx, gocronEnv, string(spec))
	if err != nil {
		return r, err
	}
	auxCPU := env.aux.CPU()
	out, err := cmd.Output()
	if err != nil {
		return r, fmt.Errorf("the bare gocron process: %w", err)
	}
	var res gocronResult
	if err := json.Unmarshal(out, &res); err != nil {
		return r, fmt.Errorf("the bare gocron process printed %q: %w", out, err)
	}
	r.CPU, r.RSS, r.AuxCPU = res.CPU, res.RSS, env.aux.CPU()-auxCPU
	if res.Error != "" {
		return r, errors.New(res.Error)
	}
	st, err := env.aux.Stats(ctx)
	if err != nil {
		return r, err
	}
	r.fromReceiver(st, res.At)
	r.Recorded = -1
	if res.Failed > 0 {
		r.Note = fmt.Sprintf("%d failed", res.Failed)
	}
	return r, nil
}

// runGocron is the bare-gocron process's main.
func runGocron() {
	var run gocronRun
	res, err := func() (gocronResult, error) {
		if err := json.Unmarshal([]byte(os.Getenv(gocronEnv)), &run); err != nil {
			return gocronResult{}, fmt.Errorf("%s: %w", gocronEnv, err)
		}
		return runBareGocron(context.Background(), run)
	}()
	if err != nil {
		res.Error = err.Error()
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

// runBareGocron schedules run.N gocron jobs due at one second and waits
// for them all to finish.
func runBareGocron(ctx context.Context, run gocronRun) (gocronResult, error) {
	var res gocronResult
	disp, err := newDispatcher()
	if err != nil {
		return res, err
	}
	defer disp.Close()
	s, err := gocron.NewScheduler(gocron.WithLocation(time.UTC))
	if err != nil {
		return res, err
	}
	defer func() { _ = s.Shutdown() }()
	n := run.N
	at := burstInstant(time.Now(), 2*time.Second+time.Duration(n)*20*time.Microsecond)
	res.At = at
	cron := cronAt(at)
	var done, failed atomic.Int64
	all := make(chan struct{})
	for i := range n {
		j := benchJob("g"+strconv.Itoa(i), cron, run.URL)
		_, err := s.NewJob(gocron.CronJob(cron, true), gocron.NewTask(func() {
			out := disp.Dispatch(ctx, target.Fire{FireID: j.Name, Job: j, ScheduledAt: at, Trigger: "bench", Instance: "gocron"}, nil)
			if out.Status != "succeeded" {
				failed.Add(1)
			}
			if done.Add(1) == int64(n) {
				close(all)
			}
		}))
		if err != nil {
			return res, err
		}
	}
	s.Start()
	if late := time.Since(at); late > -200*time.Millisecond {
		return res, fmt.Errorf("gocron: adding %d jobs took until %s after the burst instant; raise -lead", n, late)
	}
	time.Sleep(time.Until(at) - 100*time.Millisecond)
	u := snapshot()
	select {
	case <-all:
	case <-time.After(run.Timeout):
		return res, fmt.Errorf("gocron: %d of %d tasks finished within %s", done.Load(), n, run.Timeout)
	}
	res.CPU, res.RSS, res.Failed = snapshot().cpu-u.cpu, peakRSS(), failed.Load()
	return res, nil
}

// burstInstant is the first whole second at least lead after now.
func burstInstant(now time.Time, lead time.Duration) time.Time {
	return now.Add(lead).Truncate(time.Second).Add(time.Second).UTC()
}

// cronAt is a 6-field schedule that fires at t's second, minute and hour
// (UTC): once during a benchmark.
func cronAt(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%d %d %d * * *", t.Second(), t.Minute(), t.Hour())
}

// finishReference completes a reference row from the meter and the
// receiver: lag is measured from the instant the requests were due.
func finishReference(ctx context.Context, env *benchEnv, r row, m meter, due time.Time, failed int64) (row, error) {
	m.stop(&r)
	st, err := env.aux.Stats(ctx)
	if err != nil {
		return r, err
	}
	r.fromReceiver(st, due)
	r.Recorded = -1
	if failed > 0 {
		r.Note = fmt.Sprintf("%d failed", failed)
	}
	return r, nil
}
