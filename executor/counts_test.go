package executor_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/executor"
	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
)

// Job counters add up every recorded outcome exactly once, whether they are
// written while the executor runs or only by the last write at shutdown.
func TestCountersMatchTheRecordedRuns(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		interval time.Duration // least time between counter writes
		batch    int           // jobs per counter write
	}{
		{"written as it runs", 100 * time.Millisecond, 0},
		{"written as it runs, a job at a time", 100 * time.Millisecond, 1},
		{"written at shutdown", time.Hour, 0},
		{"written at shutdown, a job at a time", time.Hour, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.Store(t)
			l := acquireLease(t, st, "exec")
			names := []string{"a", "b", "c"}
			for _, name := range names {
				require.NoError(t, st.CreateJob(ctx, l.Fence(), everySecond(name, func(j *job.Job) {
					j.Concurrency = job.ConcurrencyAllow
				})))
			}
			disp := &fakeDispatcher{}
			exec, _ := lead(t, st, l, executor.Config{Workers: 4, CountInterval: tc.interval, CountBatch: tc.batch}, disp)
			require.Eventually(t, func() bool { return exec.Status().Loaded }, 10*time.Second, 10*time.Millisecond)
			time.Sleep(3500 * time.Millisecond)
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			exec.Stop(sctx)
			require.NoError(t, exec.Close(sctx))
			for _, name := range names {
				var succeeded int64
				for _, r := range runsOf(t, st, name) {
					if r.Status == store.StatusSucceeded {
						succeeded++
					}
				}
				require.GreaterOrEqual(t, succeeded, int64(3), name)
				j, err := st.Job(ctx, name)
				require.NoError(t, err)
				require.Equal(t, succeeded, j.Stats.RunCount, name)
				require.Equal(t, succeeded, j.Stats.SuccessCount, name)
				require.NotNil(t, j.Stats.LastRun, name)
			}
		})
	}
}
