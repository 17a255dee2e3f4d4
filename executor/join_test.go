package executor_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/crud"
	"github.com/batonhq/baton/executor"
	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/token"
)

// slowCreate is a store whose CreateJob waits until released, as a store
// write that straddles a tick does.
type slowCreate struct {
	*store.Store
	entered, release chan struct{}
}

func (s slowCreate) CreateJob(ctx context.Context, f store.Fence, j *job.Job) error {
	close(s.entered)
	<-s.release
	return s.Store.CreateJob(ctx, f, j)
}

// A job stored just before a tick can join its schedule group after the
// group's pass for that tick has run: it must still get that tick (CI:
// a chaos run's job-3 lost its first tick this way).
func TestAJobStoredAcrossATickGetsThatTick(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	start := time.Date(2026, 1, 1, 0, 0, 0, 900_000_000, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	l := acquireLease(t, st, "exec")
	a := everySecond("a", nil)
	a.ActiveSince = start.Add(-time.Hour)
	require.NoError(t, st.CreateJob(ctx, l.Fence(), a))

	slow := slowCreate{Store: st, entered: make(chan struct{}), release: make(chan struct{})}
	disp := &fakeDispatcher{}
	exec, term := leadWithClock(t, slow, l, clock, disp)

	replied := make(chan crud.Reply, 1)
	go func() {
		replied <- exec.Apply(ctx, term, crud.Request{Op: crud.OpCreate, Name: "b", Job: everySecond("b", nil)})
	}()
	<-slow.entered // b is active from 00:00:00.900 but not yet in the schedule
	tick := start.Truncate(time.Second).Add(time.Second)
	clock.Advance(tick.Add(100 * time.Millisecond).Sub(clock.Now()))
	require.Eventually(t, func() bool { return disp.ticks()["a"][tick] == 1 }, 5*time.Second, 2*time.Millisecond)

	close(slow.release)
	r := <-replied
	require.Equal(t, http.StatusCreated, r.Status, r.Error)
	require.Eventually(t, func() bool { return disp.ticks()["b"][tick] == 1 }, 5*time.Second, 10*time.Millisecond,
		"b's first tick, handled by its group before b joined, still fires: %v", disp.ticks())
}

// leadWithClock starts an executor on st, leading under l and timed by
// clock, waits until it has loaded its jobs, and stops it when the test
// ends.
func leadWithClock(t *testing.T, st executor.Store, l store.Lease, clock clockwork.Clock, disp *fakeDispatcher) (*executor.Executor, *token.Term) {
	t.Helper()
	exec, term := lead(t, st, l, executor.Config{Workers: 4, Clock: clock}, disp)
	require.Eventually(t, func() bool { return exec.Status().Loaded }, 10*time.Second, 10*time.Millisecond)
	return exec, term
}

// lead starts an executor on st with cfg, leading under l, and stops it
// when the test ends.
func lead(t *testing.T, st executor.Store, l store.Lease, cfg executor.Config, disp *fakeDispatcher) (*executor.Executor, *token.Term) {
	t.Helper()
	exec := startExecutor(t, st, cfg, disp)
	return exec, leadUnder(t, exec, l)
}

// startExecutor starts an executor on st with cfg, not yet leading, and
// stops it when the test ends.
func startExecutor(t *testing.T, st executor.Store, cfg executor.Config, disp *fakeDispatcher) *executor.Executor {
	t.Helper()
	cfg.InstanceID, cfg.Logger = "exec", testenv.Logger()
	exec := executor.New(cfg, st, disp)
	exec.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		exec.Stop(ctx)
		_ = exec.Close(ctx)
	})
	return exec
}

// leadUnder makes exec lead under l until the test ends.
func leadUnder(t *testing.T, exec *executor.Executor, l store.Lease) *token.Term {
	t.Helper()
	term, end := token.NewTestTerm(context.Background(), l)
	exec.Lead(term)
	t.Cleanup(end) // before the executor stops: cleanups run last first
	return term
}

// catchingUp is a job that fires every second since an hour before start,
// every missed tick included, each fire independent of the last.
func catchingUp(name string, start time.Time) *job.Job {
	j := everySecond(name, func(j *job.Job) {
		j.Misfire, j.StartingDeadline = job.MisfireFireAll, job.Duration(time.Hour)
		j.Concurrency = job.ConcurrencyAllow
	})
	j.ActiveSince = start.Add(-time.Hour)
	return j
}

// acquireLease makes holder the executor of st's lease and returns it.
func acquireLease(t *testing.T, st *store.Store, holder string) store.Lease {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, st.EnsureLease(ctx))
	l, err := st.Lease(ctx)
	require.NoError(t, err)
	l, err = st.AcquireLease(ctx, l, holder, "dc", l.TokenGen, time.Now())
	require.NoError(t, err)
	return l
}
