package main

import (
	"context"
	"fmt"
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

// bareGocron is what a user would write instead of Baton: gocron v2 with
// one gocron job per task, every one due at the same second, each task
// sending the same request. No store, no token.
func bareGocron(ctx context.Context, env *benchEnv, n int) (row, error) {
	r := row{Scenario: "ref-gocron", N: n}
	disp, err := newDispatcher()
	if err != nil {
		return r, err
	}
	defer disp.Close()
	if err := env.aux.Reset(ctx); err != nil {
		return r, err
	}
	s, err := gocron.NewScheduler(gocron.WithLocation(time.UTC))
	if err != nil {
		return r, err
	}
	defer func() { _ = s.Shutdown() }()
	resetPeakRSS()
	at := burstInstant(time.Now(), 2*time.Second+time.Duration(n)*20*time.Microsecond)
	cron := cronAt(at)
	var done, failed atomic.Int64
	all := make(chan struct{})
	for i := range n {
		j := benchJob("g"+strconv.Itoa(i), cron, env.aux.URL+"/gocron")
		_, err := s.NewJob(gocron.CronJob(cron, true), gocron.NewTask(func() {
			res := disp.Dispatch(ctx, target.Fire{FireID: j.Name, Job: j, ScheduledAt: at, Trigger: "bench", Instance: "gocron"}, nil)
			if res.Status != "succeeded" {
				failed.Add(1)
			}
			if done.Add(1) == int64(n) {
				close(all)
			}
		}))
		if err != nil {
			return r, err
		}
	}
	s.Start()
	if late := time.Since(at); late > -200*time.Millisecond {
		return r, fmt.Errorf("gocron: adding %d jobs took until %s after the burst instant; raise -lead", n, late)
	}
	time.Sleep(time.Until(at) - 100*time.Millisecond)
	m := startMeter(env.aux)
	select {
	case <-all:
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(env.o.timeout):
		return r, fmt.Errorf("gocron: %d of %d tasks finished within %s", done.Load(), n, env.o.timeout)
	}
	return finishReference(ctx, env, r, m, at, failed.Load())
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
