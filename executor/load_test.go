package executor_test

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/executor"
	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
)

// pausedLoad is a store whose job cursor stops before its second job until
// released, as a load of many jobs from a slow store does.
type pausedLoad struct {
	*store.Store
	paused, release chan struct{}
}

func (s pausedLoad) EachJob(ctx context.Context, fn func(*job.Job) error) error {
	n := 0
	return s.Store.EachJob(ctx, func(j *job.Job) error {
		if n++; n == 2 {
			close(s.paused)
			select {
			case <-s.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return fn(j)
	})
}

// A new executor runs the jobs it has loaded while it loads the rest: the
// first fire of a takeover does not wait for the whole store. Every job is
// still caught up from the previous executor's watermark, once, even when
// it joins a schedule group whose timer already runs.
func TestJobsFireWhileTheRestLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	start := time.Date(2026, 1, 1, 0, 0, 0, 900_000_000, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	names := []string{"a", "b", "c"}
	l := acquireLease(t, st, "old")
	for _, name := range names {
		require.NoError(t, st.CreateJob(ctx, l.Fence(), catchingUp(name, start)))
	}
	// The old executor claimed every tick up to 23:59:58.
	watermark := start.Add(-2 * time.Second)
	l, err := st.RenewLease(ctx, l, watermark, time.Now())
	require.NoError(t, err)
	require.NoError(t, st.ReleaseLease(ctx, l, watermark, time.Now()))
	l, err = st.Lease(ctx)
	require.NoError(t, err)
	l, err = st.AcquireLease(ctx, l, "exec", "dc", l.TokenGen, time.Now())
	require.NoError(t, err)

	paused := pausedLoad{Store: st, paused: make(chan struct{}), release: make(chan struct{})}
	disp := &fakeDispatcher{}
	exec, _ := lead(t, paused, l, executor.Config{Workers: 4, Clock: clock, LoadBatch: 1}, disp)
	<-paused.paused // one job is in the schedule; the others are not yet read

	second := func(s int) time.Time { return start.Truncate(time.Second).Add(time.Duration(s) * time.Second) }
	clock.Advance(second(1).Add(100 * time.Millisecond).Sub(clock.Now()))
	firedEarly := func() (name string) {
		for n, ticks := range disp.ticks() {
			if ticks[second(1)] == 1 {
				name = n
			}
		}
		return name
	}
	require.Eventually(t, func() bool { return firedEarly() != "" }, 5*time.Second, 2*time.Millisecond,
		"the loaded job fires its tick while the load is paused")
	require.False(t, exec.Status().Loaded)
	require.Equal(t, 1, len(disp.ticks()), "only the loaded job has fired: %v", disp.ticks())

	close(paused.release)
	require.Eventually(t, func() bool { return exec.Status().Loaded }, 10*time.Second, 10*time.Millisecond)
	clock.Advance(second(2).Add(100 * time.Millisecond).Sub(clock.Now()))

	want := []time.Time{second(-1), second(0), second(1), second(2)}
	require.Eventually(t, func() bool {
		ticks := disp.ticks()
		for _, name := range names {
			if len(ticks[name]) != len(want) {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "every job fires each tick since the watermark: %v", disp.ticks())
	time.Sleep(200 * time.Millisecond) // a duplicate would show now
	ticks := disp.ticks()
	for _, name := range names {
		for _, at := range want {
			require.Equal(t, 1, ticks[name][at], "%s at %s: %v", name, at, ticks[name])
		}
		require.Len(t, ticks[name], len(want), name)
	}
}
