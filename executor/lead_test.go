package executor_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/crud"
	"github.com/batonhq/baton/executor"
	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/schedule"
	"github.com/batonhq/baton/store"
)

// claimSpan is when a claim began and ended.
type claimSpan struct{ start, end time.Time }

type aheadRig struct {
	exec   *executor.Executor
	disp   *fakeDispatcher
	st     *store.Store
	claims <-chan claimSpan
	apply  func(crud.Request) crud.Reply
}

// leadAhead starts an executor with a claim lead over the job j (if not
// nil), whose dispatches take delay.
func leadAhead(t *testing.T, claimLead time.Duration, j *job.Job, delay ...time.Duration) aheadRig {
	t.Helper()
	st := testenv.Store(t)
	l := acquireLease(t, st, "exec")
	if j != nil {
		require.NoError(t, st.CreateJob(context.Background(), l.Fence(), j))
	}
	claims := make(chan claimSpan, 100)
	disp := &fakeDispatcher{}
	if len(delay) > 0 {
		disp.delay = delay[0]
	}
	cfg := executor.Config{Workers: 4, ClaimLead: claimLead, Hooks: executor.Hooks{
		StoreOp: func(op string, _ int, took time.Duration, err error) {
			if op == "claim" && err == nil {
				end := time.Now()
				claims <- claimSpan{end.Add(-took), end}
			}
		},
	}}
	exec, term := lead(t, st, l, cfg, disp)
	require.Eventually(t, func() bool { return exec.Status().Loaded }, 10*time.Second, 10*time.Millisecond)
	apply := func(req crud.Request) crud.Reply { return exec.Apply(context.Background(), term, req) }
	return aheadRig{exec: exec, disp: disp, st: st, claims: claims, apply: apply}
}

// claimedTick waits for a claim of a tick ahead, one that began at most
// the lead before the tick and ended before it, and returns that tick. It
// passes over the other claims: those of ticks already due (a new group's
// first pass catches up) and, on a loaded machine, a claim that ended
// after its tick. A lead that claimed too early would never qualify.
func claimedTick(t *testing.T, claims <-chan claimSpan, j *job.Job, lead time.Duration) time.Time {
	t.Helper()
	s, err := schedule.Parse(j.Schedule, j.Timezone)
	require.NoError(t, err)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case c := <-claims:
			if tick := s.Next(c.start); tick.Sub(c.start) <= lead && c.end.Before(tick) {
				return tick
			}
		case <-deadline:
			t.Fatal("no tick was claimed at most the lead ahead")
		}
	}
}

func TestTicksClaimedAheadFireAtTheirTime(t *testing.T) {
	t.Parallel()
	const lead = 300 * time.Millisecond
	j := everySecond("ahead", nil)
	rig := leadAhead(t, lead, j)
	disp := rig.disp
	claimedTick(t, rig.claims, j, lead)
	require.Eventually(t, func() bool { return len(disp.ticks()["ahead"]) >= 3 }, 5*time.Second, 10*time.Millisecond)
	disp.mu.Lock()
	for i, f := range disp.fires {
		require.False(t, disp.at[i].Before(f.ScheduledAt), "a tick claimed ahead is not sent before its time: %s at %s", f.ScheduledAt, disp.at[i])
	}
	disp.mu.Unlock()
	for tick, n := range disp.ticks()["ahead"] {
		require.Equal(t, 1, n, "tick %s", tick)
	}
}

func TestAPauseAfterTheClaimCancelsTheTick(t *testing.T) {
	t.Parallel()
	const lead = 900 * time.Millisecond
	j := everySecond("paused", func(j *job.Job) { j.Schedule = "*/2 * * * * *" })
	rig := leadAhead(t, lead, j)
	var tick time.Time
	// The pause must land between a claim and its tick; on a loaded
	// machine a write may take longer than the lead, so try a few ticks.
	for attempt := 0; ; attempt++ {
		tick = claimedTick(t, rig.claims, j, lead)
		r := rig.apply(crud.Request{Op: crud.OpPause, Name: "paused"})
		require.Equal(t, http.StatusOK, r.Status, r.Error)
		if time.Now().Before(tick) {
			break
		}
		require.Less(t, attempt, 3, "the pause never landed between a claim and its tick")
		r = rig.apply(crud.Request{Op: crud.OpResume, Name: "paused"})
		require.Equal(t, http.StatusOK, r.Status, r.Error)
		for len(rig.claims) > 0 {
			<-rig.claims
		}
	}
	time.Sleep(time.Until(tick) + 300*time.Millisecond)
	require.Zero(t, rig.disp.ticks()["paused"][tick], "a job paused before its tick does not fire at it")
	require.Eventually(t, func() bool {
		for _, run := range runsOf(t, rig.st, "paused") {
			if run.ScheduledAt.Equal(tick) {
				return run.Status == store.StatusCancelled && strings.Contains(run.Error, "paused or deleted")
			}
		}
		return false
	}, 5*time.Second, 20*time.Millisecond, "the claimed tick is recorded as cancelled, with the reason")
}

func TestQuiesceSendsTheTicksClaimedAhead(t *testing.T) {
	t.Parallel()
	const lead = 900 * time.Millisecond
	j := everySecond("handover", func(j *job.Job) { j.Schedule = "*/2 * * * * *" })
	rig := leadAhead(t, lead, j)
	tick := claimedTick(t, rig.claims, j, lead)
	require.True(t, time.Now().Before(tick))
	start := time.Now()
	rig.exec.Quiesce(context.Background())
	require.Less(t, time.Since(start), lead+time.Second, "Quiesce is bounded by the lead")
	require.Equal(t, 1, rig.disp.ticks()["handover"][tick],
		"a tick claimed ahead is sent before the handover, not left claimed for the next executor")
}

// consecutive requires the job's fired ticks to be whole seconds in a row,
// at least n of them.
func consecutive(t *testing.T, disp *fakeDispatcher, name string, n int) {
	t.Helper()
	var ticks []time.Time
	for tick, k := range disp.ticks()[name] {
		require.Equal(t, 1, k, "tick %s", tick)
		ticks = append(ticks, tick)
	}
	slices.SortFunc(ticks, time.Time.Compare)
	require.GreaterOrEqual(t, len(ticks), n, "fired: %v", ticks)
	for i := 1; i < len(ticks); i++ {
		require.Equal(t, time.Second, ticks[i].Sub(ticks[i-1]), "no tick is skipped or left to a later pass: %v", ticks)
	}
}

// gocron skips a run in the same wall-clock second as the time it is
// computed from: a group created at x.3 s, whose first pass is due at
// x.5 s, must still claim the tick of x+1 s then, not a second late.
func TestANewJobFiresItsFirstTickOnTime(t *testing.T) {
	t.Parallel()
	rig := leadAhead(t, 500*time.Millisecond, nil)
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 300*time.Millisecond).Sub(now))
	created := time.Now()
	j := everySecond("first", func(j *job.Job) { j.Concurrency = job.ConcurrencyForbid })
	j.ActiveSince = time.Time{}
	r := rig.apply(crud.Request{Op: crud.OpCreate, Name: "first", Job: j})
	require.Equal(t, http.StatusCreated, r.Status, r.Error)
	first := created.Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(first) + 2500*time.Millisecond)
	consecutive(t, rig.disp, "first", 3)
	rig.disp.mu.Lock()
	defer rig.disp.mu.Unlock()
	for i, f := range rig.disp.fires {
		if f.ScheduledAt.Equal(first) {
			require.Less(t, rig.disp.at[i].Sub(first), 400*time.Millisecond, "the first tick after the job was created fires on time")
			return
		}
	}
	t.Fatalf("the tick of %s did not fire", first)
}

// Overlap rules apply at a tick's time, not at its claim: a run that ends
// between the claim of the next tick and that tick does not overlap it.
func TestForbidJudgesOverlapAtTheTicksTime(t *testing.T) {
	t.Parallel()
	j := everySecond("forbid", func(j *job.Job) { j.Concurrency = job.ConcurrencyForbid })
	rig := leadAhead(t, 700*time.Millisecond, j, 400*time.Millisecond)
	time.Sleep(4500 * time.Millisecond)
	consecutive(t, rig.disp, "forbid", 3)
}
