package executor_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/executor"
	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
)

// unrecorded is a store that never takes a run document or an outcome, as
// one the executor loses right after claiming.
type unrecorded struct{ *store.Store }

var errUnrecorded = errors.New("test: the store does not take records")

func (unrecorded) RecordClaims(context.Context, []string, []store.Run) ([]bool, error) {
	return nil, errUnrecorded
}

func (unrecorded) InsertResults(_ context.Context, runs []store.Run) ([]bool, error) {
	return make([]bool, len(runs)), errUnrecorded
}

// Ticks claimed through cells get their run documents after they are
// dispatched. An executor that ends before writing them leaves them in its
// cells, and the next executor records them as interrupted: no claimed tick
// is left without a record.
func TestTicksAnExecutorLeftInItsCellsAreRecorded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	l1 := acquireLease(t, st, "first")
	require.NoError(t, st.CreateJob(ctx, l1.Fence(), everySecond("a", nil)))

	disp := &fakeDispatcher{}
	first, _ := lead(t, unrecorded{st}, l1, executor.Config{Workers: 2}, disp)
	require.Eventually(t, func() bool { return len(disp.ticks()["a"]) >= 2 }, 10*time.Second, 10*time.Millisecond)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	first.Stop(sctx)
	cancel()
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	require.Error(t, first.Close(cctx), "the recorder cannot finish")
	cancel()
	fired := disp.ticks()["a"]
	require.Empty(t, runsOf(t, st, "a"), "nothing was recorded")

	require.NoError(t, st.ReleaseLease(ctx, l1, time.Time{}, time.Now()))
	l2 := acquireLease(t, st, "second")
	_, err := st.SetPaused(ctx, l2.Fence(), "a", true, time.Now())
	require.NoError(t, err)
	// Late enough that every run of the first executor is surely over.
	clock := clockwork.NewFakeClockAt(time.Now().Add(10 * time.Minute))
	leadWithClock(t, st, l2, clock, &fakeDispatcher{})

	require.Eventually(t, func() bool {
		clock.Advance(time.Second)
		runs := runsOf(t, st, "a")
		for _, r := range runs {
			if r.Status != store.StatusFailed {
				return false
			}
			require.Contains(t, r.Error, "interrupted")
		}
		return len(runs) == len(fired)
	}, 20*time.Second, 50*time.Millisecond, "every tick the first executor fired is recorded as interrupted")
	for _, r := range runsOf(t, st, "a") {
		require.Equal(t, 1, fired[r.ScheduledAt], "fired %v, recorded %v", fired, r.ScheduledAt)
	}
}

// The recorder leaves the store to the dispatch while the workers have a
// backlog, but not for long: with targets slower than the schedule the
// backlog never ends, and outcomes must still be recorded.
func TestOutcomesAreRecordedWhileTheWorkersHaveABacklog(t *testing.T) {
	t.Parallel()
	var jobs []*job.Job
	for i := range 20 {
		jobs = append(jobs, everySecond(fmt.Sprint("busy-", i), nil))
	}
	b := setup(t, time.Second, time.Time{}, jobs...) // 20 fires a second, 8 workers of 1 a second each
	require.Eventually(t, func() bool {
		for _, r := range runsOf(t, b.st, "busy-0") {
			if r.Status == store.StatusSucceeded {
				return true
			}
		}
		return false
	}, 15*time.Second, 100*time.Millisecond)
}

// failAfterClaim is a store whose first cell claim lands but reports an
// error, as a claim call whose last step failed.
type failAfterClaim struct {
	*store.Store
	mu     sync.Mutex
	failed []time.Time // the ticks of the failed call
}

func (s *failAfterClaim) ClaimCells(ctx context.Context, f store.Fence, claims []store.Run) ([]bool, map[string][]int, error) {
	claimed, cells, err := s.Store.ClaimCells(ctx, f, claims)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || s.failed != nil || len(cells) == 0 {
		return claimed, cells, err
	}
	for _, c := range claims {
		s.failed = append(s.failed, c.ScheduledAt)
	}
	return claimed, cells, errors.New("test: the store failed after the claim landed")
}

// A tick whose claim landed is sent even when the claim call then failed:
// catch-up finds it claimed and would never send it.
func TestTicksClaimedBeforeAStoreErrorStillFire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	l := acquireLease(t, st, "exec")
	require.NoError(t, st.CreateJob(ctx, l.Fence(), everySecond("a", nil)))
	fail := &failAfterClaim{Store: st}
	disp := &fakeDispatcher{}
	lead(t, fail, l, executor.Config{Workers: 2}, disp)

	require.Eventually(t, func() bool {
		fail.mu.Lock()
		defer fail.mu.Unlock()
		return fail.failed != nil && len(disp.ticks()["a"]) >= 3
	}, 15*time.Second, 10*time.Millisecond)
	fail.mu.Lock()
	tick := fail.failed[0]
	fail.mu.Unlock()
	require.Equal(t, 1, disp.ticks()["a"][tick], "the tick of the failed call fired once")
	for at, n := range disp.ticks()["a"] {
		require.Equal(t, 1, n, "tick %v", at)
	}
}

// A group pass larger than the claim batch is claimed in parts of whole
// cells, each handed to the recorder as it is claimed and completed with
// its outcomes there: every tick fires once and is recorded once, with its
// outcome, whatever the split.
func TestTicksClaimedInPartsAreRecordedOnce(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{1, 7, 1000} {
		t.Run(fmt.Sprint("claim batch ", batch), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.Store(t)
			l := acquireLease(t, st, "exec")
			var names []string
			for i := range 40 {
				names = append(names, fmt.Sprint("j-", i))
				require.NoError(t, st.CreateJob(ctx, l.Fence(), everySecond(names[i], nil)))
			}
			disp := &fakeDispatcher{}
			exec, _ := lead(t, st, l, executor.Config{Workers: 8, ClaimBatch: batch}, disp)
			require.Eventually(t, func() bool { return len(disp.ticks()["j-39"]) >= 3 }, 15*time.Second, 10*time.Millisecond)
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			exec.Stop(sctx)
			require.NoError(t, exec.Close(sctx))

			ticks := disp.ticks()
			for _, name := range names {
				recorded := map[time.Time]bool{}
				for _, r := range runsOf(t, st, name) {
					require.False(t, recorded[r.ScheduledAt], "%s at %s: one run", name, r.ScheduledAt)
					recorded[r.ScheduledAt] = true
					if ticks[name][r.ScheduledAt] == 0 {
						// Claimed as the executor stepped down.
						require.Equal(t, store.StatusCancelled, r.Status, "%s at %s", name, r.ScheduledAt)
						continue
					}
					require.Equal(t, 1, ticks[name][r.ScheduledAt], "%s fired once at %s", name, r.ScheduledAt)
					require.Equal(t, store.StatusSucceeded, r.Status, "%s at %s", name, r.ScheduledAt)
				}
				for at := range ticks[name] {
					require.True(t, recorded[at], "%s at %s fired without a run", name, at)
				}
			}
		})
	}
}
