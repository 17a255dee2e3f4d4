package executor_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/crud"
	"github.com/batonhq/baton/executor"
	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/target"
	"github.com/batonhq/baton/token"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fakeDispatcher records fires; a job named "slow-*" takes delay, and
// honours cancellation.
type fakeDispatcher struct {
	delay time.Duration
	mu    sync.Mutex
	fires []target.Fire
	at    []time.Time // when each fire was dispatched
}

func (d *fakeDispatcher) Dispatch(ctx context.Context, f target.Fire, allow func() error) target.Result {
	res := target.Result{StartedAt: time.Now()}
	if err := allow(); err != nil {
		return target.Result{Status: store.StatusCancelled, Error: err.Error(), FinishedAt: time.Now()}
	}
	d.mu.Lock()
	d.fires = append(d.fires, f)
	d.at = append(d.at, res.StartedAt)
	d.mu.Unlock()
	res.Attempts = []store.Attempt{{Number: 1, StartedAt: res.StartedAt}}
	select {
	case <-time.After(d.delay):
		res.Status = store.StatusSucceeded
	case <-ctx.Done():
		res.Status = store.StatusCancelled
	}
	res.FinishedAt = time.Now()
	return res
}

// ticks returns, per job, how many fires each scheduled time got.
func (d *fakeDispatcher) ticks() map[string]map[time.Time]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]map[time.Time]int{}
	for _, f := range d.fires {
		if out[f.Job.Name] == nil {
			out[f.Job.Name] = map[time.Time]int{}
		}
		out[f.Job.Name][f.ScheduledAt]++
	}
	return out
}

type bundle struct {
	st   *store.Store
	disp *fakeDispatcher
	exec *executor.Executor
	term *token.Term
	end  func()
}

// setup starts an executor leading under a real lease whose watermark is
// watermark (zero: a new cluster).
func setup(t *testing.T, delay time.Duration, watermark time.Time, jobs ...*job.Job) *bundle {
	t.Helper()
	ctx := context.Background()
	b := &bundle{st: testenv.Store(t), disp: &fakeDispatcher{delay: delay}}
	require.NoError(t, b.st.EnsureLease(ctx))
	l, err := b.st.Lease(ctx)
	require.NoError(t, err)
	l, err = b.st.AcquireLease(ctx, l, "setup", "dc", l.TokenGen, time.Now())
	require.NoError(t, err)
	for _, j := range jobs {
		require.NoError(t, b.st.CreateJob(ctx, l.Fence(), j))
	}
	if !watermark.IsZero() {
		l, err = b.st.RenewLease(ctx, l, watermark, time.Now())
		require.NoError(t, err)
	}
	require.NoError(t, b.st.ReleaseLease(ctx, l, watermark, time.Now()))
	l, err = b.st.Lease(ctx)
	require.NoError(t, err)
	l, err = b.st.AcquireLease(ctx, l, "exec", "dc", l.TokenGen, time.Now())
	require.NoError(t, err)
	b.exec = executor.New(executor.Config{InstanceID: "exec", Workers: 8, Logger: testenv.Logger()}, b.st, b.disp)
	b.exec.Start()
	b.term, b.end = token.NewTestTerm(ctx, l)
	b.exec.Lead(b.term)
	t.Cleanup(func() {
		b.stop()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = b.exec.Close(cctx)
	})
	require.Eventually(t, func() bool { return b.exec.Status().Loaded }, 10*time.Second, 10*time.Millisecond)
	return b
}

func (b *bundle) stop() {
	b.end()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.exec.Stop(ctx)
}

func everySecond(name string, mut func(*job.Job)) *job.Job {
	j := &job.Job{Name: name, Schedule: "* * * * * *", Target: job.Target{Type: job.TargetHTTP, HTTP: &job.HTTPTarget{URL: "http://127.0.0.1:1/"}}}
	if mut != nil {
		mut(j)
	}
	j.Normalize()
	now := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	j.CreatedAt, j.UpdatedAt, j.ActiveSince = now, now, now
	return j
}

func runsOf(t *testing.T, st *store.Store, name string) []store.Run {
	t.Helper()
	runs, err := st.Runs(context.Background(), store.RunQuery{Job: name, Limit: 1000})
	require.NoError(t, err)
	return runs
}

func TestEachTickFiresOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, time.Time{}, everySecond("a", nil), everySecond("b", nil), everySecond("c", func(j *job.Job) { j.Schedule = "*/2 * * * * *" }))
	time.Sleep(4200 * time.Millisecond)
	require.Equal(t, 2, b.exec.Status().Groups, "jobs with one schedule share one timer")
	b.stop()
	ticks := b.disp.ticks()
	for _, name := range []string{"a", "b"} {
		require.GreaterOrEqual(t, len(ticks[name]), 3, name)
		for at, n := range ticks[name] {
			require.Equal(t, 1, n, "%s fired %d times at %s", name, n, at)
			require.Zero(t, at.Nanosecond(), "ticks are whole seconds")
		}
	}
	require.GreaterOrEqual(t, len(ticks["c"]), 2)

	// No fire after the term ended.
	n := len(b.disp.ticks()["a"])
	time.Sleep(1500 * time.Millisecond)
	require.Equal(t, n, len(b.disp.ticks()["a"]))
	require.Eventually(t, func() bool {
		for _, r := range runsOf(t, b.st, "a") {
			if r.Status == store.StatusRunning {
				return false
			}
		}
		return true
	}, 5*time.Second, 50*time.Millisecond, "every fire's outcome is recorded")
}

func TestForbidSkipsOverlappingTicks(t *testing.T) {
	t.Parallel()
	b := setup(t, 2500*time.Millisecond, time.Time{}, everySecond("slow", nil))
	time.Sleep(4500 * time.Millisecond)
	var skipped, fired int
	for _, r := range runsOf(t, b.st, "slow") {
		switch r.Status {
		case store.StatusSkipped:
			skipped++
			require.Contains(t, r.Reason, "in progress")
		case store.StatusRunning, store.StatusSucceeded:
			fired++
		}
	}
	require.GreaterOrEqual(t, skipped, 2)
	require.LessOrEqual(t, fired, 2, "never two runs of the job at once")
}

func TestReplaceCancelsTheRunningAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t, 10*time.Second, time.Time{}, everySecond("replaced", func(j *job.Job) { j.Concurrency = job.ConcurrencyReplace }))
	require.Eventually(t, func() bool {
		for _, r := range runsOf(t, b.st, "replaced") {
			if r.Status == store.StatusCancelled {
				return true
			}
		}
		return false
	}, 6*time.Second, 100*time.Millisecond, "a new tick cancels the running attempt")
}

func TestJitterSpreadsFiresWithinTheBound(t *testing.T) {
	t.Parallel()
	const jitter = 700 * time.Millisecond
	var jobs []*job.Job
	for i := range 20 {
		jobs = append(jobs, everySecond(fmt.Sprintf("j%02d", i), func(j *job.Job) { j.Jitter = job.Duration(jitter) }))
	}
	b := setup(t, 0, time.Time{}, jobs...)
	time.Sleep(3500 * time.Millisecond)
	b.stop()
	b.disp.mu.Lock()
	defer b.disp.mu.Unlock()
	require.NotEmpty(t, b.disp.fires)
	byTick := map[time.Time][]time.Duration{}
	seen := map[string]bool{}
	for i, f := range b.disp.fires {
		key := f.Job.Name + f.ScheduledAt.String()
		require.False(t, seen[key], "%s fired twice", key)
		seen[key] = true
		offset := b.disp.at[i].Sub(f.ScheduledAt)
		require.GreaterOrEqual(t, offset, time.Duration(0), "a jittered fire never starts early")
		require.Less(t, offset, jitter+300*time.Millisecond, "a jittered fire starts within the bound")
		byTick[f.ScheduledAt] = append(byTick[f.ScheduledAt], offset)
	}
	spread := false
	for _, offsets := range byTick {
		if len(offsets) >= 10 && slices.Max(offsets)-slices.Min(offsets) > jitter/4 {
			spread = true
		}
	}
	require.True(t, spread, "jobs due at one tick start at different offsets: %v", byTick)
}

func TestCatchUpFollowsTheMisfirePolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy string
		// fired and missed catch-up records, given n ticks in the gap
		fired, missed func(n int) int
	}{
		{job.MisfireFireOnce, func(int) int { return 1 }, func(n int) int { return n - 1 }},
		{job.MisfireSkip, func(int) int { return 0 }, func(n int) int { return n }},
		{job.MisfireFireAll, func(n int) int { return n }, func(int) int { return 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			// The previous executor's watermark is 5.5s ago: at least 5
			// ticks fell while no executor ran (more when setup is slow).
			wm := time.Now().UTC().Add(-5500 * time.Millisecond)
			b := setup(t, 0, wm, everySecond("j", func(j *job.Job) { j.Misfire = tc.policy }))
			var fired, missed int
			var gap []time.Time
			for _, r := range runsOf(t, b.st, "j") {
				if r.Trigger != store.TriggerCatchUp {
					continue
				}
				gap = append(gap, r.ScheduledAt)
				if r.Status == store.StatusMissed {
					missed++
					require.Contains(t, r.Reason, tc.policy)
				} else {
					fired++
				}
			}
			n := len(gap)
			require.GreaterOrEqual(t, n, 5, "every tick in the gap is accounted for")
			// The gap's ticks are the whole seconds right after the
			// watermark, each once, with no hole.
			slices.SortFunc(gap, time.Time.Compare)
			first := wm.Truncate(time.Second).Add(time.Second)
			for i, at := range gap {
				require.True(t, at.Equal(first.Add(time.Duration(i)*time.Second)), "tick %d of the gap is %s", i, at)
			}
			require.Equal(t, tc.fired(n), fired, "fired")
			require.Equal(t, tc.missed(n), missed, "missed")
		})
	}
}

func TestWritesChangeTheScheduleAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, time.Time{})
	ctx := context.Background()
	apply := func(req crud.Request) crud.Reply {
		return b.exec.Apply(ctx, b.term, req)
	}
	j := everySecond("live", nil)
	r := apply(crud.Request{Op: crud.OpCreate, Name: "live", Job: j})
	require.Equal(t, http.StatusCreated, r.Status, r.Error)
	require.NotNil(t, r.Job.NextRunAt)
	require.Eventually(t, func() bool { return len(b.disp.ticks()["live"]) >= 1 }, 3*time.Second, 20*time.Millisecond, "a new job fires without a restart")

	r = apply(crud.Request{Op: crud.OpCreate, Name: "live", Job: j})
	require.Equal(t, http.StatusConflict, r.Status)

	r = apply(crud.Request{Op: crud.OpPause, Name: "live"})
	require.Equal(t, http.StatusOK, r.Status)
	require.True(t, r.Job.Paused)
	time.Sleep(300 * time.Millisecond)
	n := len(b.disp.ticks()["live"])
	time.Sleep(2 * time.Second)
	require.Equal(t, n, len(b.disp.ticks()["live"]), "a paused job does not fire")

	r = apply(crud.Request{Op: crud.OpResume, Name: "live"})
	require.Equal(t, http.StatusOK, r.Status)
	require.Eventually(t, func() bool { return len(b.disp.ticks()["live"]) > n }, 3*time.Second, 20*time.Millisecond)

	up := everySecond("live", func(j *job.Job) { j.Schedule = "0 0 1 1 *" })
	r = apply(crud.Request{Op: crud.OpUpdate, Name: "live", Job: up})
	require.Equal(t, http.StatusOK, r.Status)
	time.Sleep(300 * time.Millisecond)
	n = len(b.disp.ticks()["live"])
	time.Sleep(1500 * time.Millisecond)
	require.Equal(t, n, len(b.disp.ticks()["live"]), "the new schedule applies at once")

	r = apply(crud.Request{Op: crud.OpUpsert, Name: "live", Job: up})
	require.Equal(t, crud.ResultUnchanged, r.Result, "an identical upsert changes nothing")

	r = apply(crud.Request{Op: crud.OpTrigger, Name: "live"})
	require.Equal(t, http.StatusAccepted, r.Status)
	require.Equal(t, store.TriggerManual, r.Run.Trigger)
	require.Eventually(t, func() bool { return len(b.disp.ticks()["live"]) > n }, 3*time.Second, 20*time.Millisecond, "trigger runs now")

	r = apply(crud.Request{Op: crud.OpDelete, Name: "live"})
	require.Equal(t, http.StatusNoContent, r.Status)
	_, err := b.st.Job(ctx, "live")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Zero(t, b.exec.Status().Jobs)

	bad := everySecond("bad", func(j *job.Job) { j.Schedule = "nope" })
	r = apply(crud.Request{Op: crud.OpCreate, Name: "bad", Job: bad})
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "schedule", r.Error.Field)
}
