package executor_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/executor"
	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
)

// heldReload is a store whose job reads before the test sets leading (the
// reads made while waiting for the lease) run freely, and whose later reads
// wait until released. checked is closed once the first count of writes
// has returned, read once the first job read has ended.
type heldReload struct {
	*store.Store
	leading                atomic.Bool
	reads                  atomic.Int32
	checkOnce, readOnce    sync.Once
	checked, read, release chan struct{}
}

func (s *heldReload) WritesOf(ctx context.Context, epoch int64) (store.Writes, error) {
	defer s.checkOnce.Do(func() { close(s.checked) })
	return s.Store.WritesOf(ctx, epoch)
}

func (s *heldReload) EachJob(ctx context.Context, fn func(*job.Job) error) error {
	s.reads.Add(1)
	if !s.leading.Load() {
		defer s.readOnce.Do(func() { close(s.read) })
		return s.Store.EachJob(ctx, fn)
	}
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Store.EachJob(ctx, fn)
}

// A standby that waits out a crashed executor's lease reads the jobs
// meanwhile, and its term fires them without reading the store again, but
// only if that executor changed no job since the reading began: otherwise
// the term loads the jobs as usual, and a job deleted meanwhile never fires.
func TestLeadStartsWithTheJobsReadWhileWaiting(t *testing.T) {
	t.Parallel()
	// write is one forwarded write of the old executor: its job change
	// lies between the request's begin and finish.
	write := func(st *store.Store, f store.Fence, id string, change func() error, finish bool) error {
		if _, err := st.BeginRequest(context.Background(), f, id, time.Now()); err != nil {
			return err
		}
		if err := change(); err != nil {
			return err
		}
		if !finish {
			return nil
		}
		return st.FinishRequest(context.Background(), f, id, []byte(`{}`), time.Now())
	}
	type rig struct {
		st  *store.Store
		old store.Lease
	}
	cases := []struct {
		name string
		// before runs before the standby starts reading, during after it
		// read every job; either may be nil.
		before, during func(t *testing.T, r rig)
		// unread: the standby does not read jobs at all; prepared: the
		// term starts with the jobs it read.
		unread, prepared bool
		fire             []string
	}{
		{name: "nothing written while waiting", prepared: true, fire: []string{"a", "b"}},
		{name: "a write finished before the reading began", prepared: true, fire: []string{"a", "b"},
			before: func(t *testing.T, r rig) {
				require.NoError(t, write(r.st, r.old.Fence(), "w0", func() error { return nil }, true))
			}},
		{name: "a job deleted while waiting", fire: []string{"a"},
			during: func(t *testing.T, r rig) {
				require.NoError(t, write(r.st, r.old.Fence(), "w1", func() error {
					return r.st.DeleteJob(context.Background(), r.old.Fence(), "b")
				}, true))
			}},
		{name: "a write under way when the reading would begin", unread: true, fire: []string{"a", "b"},
			before: func(t *testing.T, r rig) {
				require.NoError(t, write(r.st, r.old.Fence(), "w2", func() error { return nil }, false))
			}},
		{name: "another executor led in between", fire: []string{"a", "b"},
			during: func(t *testing.T, r rig) {
				l, err := r.st.Lease(context.Background())
				require.NoError(t, err)
				_, err = r.st.AcquireLease(context.Background(), l, "middle", "dc", l.TokenGen, time.Now())
				require.NoError(t, err)
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.Store(t)
			start := time.Date(2026, 1, 1, 0, 0, 0, 900_000_000, time.UTC)
			clock := clockwork.NewFakeClockAt(start)
			old := acquireLease(t, st, "old")
			for _, name := range []string{"a", "b"} {
				require.NoError(t, st.CreateJob(ctx, old.Fence(), catchingUp(name, start)))
			}
			// The old executor claimed every tick up to 23:59:58, then
			// crashed without releasing its lease.
			old, err := st.RenewLease(ctx, old, start.Add(-2*time.Second), time.Now())
			require.NoError(t, err)
			r := rig{st: st, old: old}
			if c.before != nil {
				c.before(t, r)
			}

			held := &heldReload{Store: st, checked: make(chan struct{}), read: make(chan struct{}), release: make(chan struct{})}
			disp := &fakeDispatcher{}
			exec := startExecutor(t, held, executor.Config{Workers: 4, Clock: clock}, disp)
			waiting, endWait := context.WithCancel(ctx)
			exec.Prepare(waiting, old)
			<-held.checked
			if !c.unread {
				<-held.read
			}
			if c.during != nil {
				c.during(t, r)
			}
			l, err := st.Lease(ctx)
			require.NoError(t, err)
			l, err = st.AcquireLease(ctx, l, "exec", "dc", l.TokenGen, time.Now())
			require.NoError(t, err)
			held.leading.Store(true)
			leadUnder(t, exec, l)
			endWait()

			second := func(s int) time.Time { return start.Truncate(time.Second).Add(time.Duration(s) * time.Second) }
			clock.Advance(second(1).Add(100 * time.Millisecond).Sub(clock.Now()))
			fired := func() bool {
				ticks := disp.ticks()
				for _, name := range c.fire {
					if ticks[name][second(1)] != 1 {
						return false
					}
				}
				return true
			}
			if c.prepared {
				require.Eventually(t, fired, 5*time.Second, 5*time.Millisecond,
					"the jobs read while waiting fire without another read: %v", disp.ticks())
				require.Eventually(t, func() bool { return exec.Status().Loaded }, 5*time.Second, 5*time.Millisecond)
				require.EqualValues(t, 1, held.reads.Load(), "every job was read while waiting")
			} else {
				time.Sleep(300 * time.Millisecond)
				require.Empty(t, disp.ticks(), "nothing fires from the jobs read while waiting")
				close(held.release)
				require.Eventually(t, fired, 5*time.Second, 5*time.Millisecond, "the loaded jobs fire: %v", disp.ticks())
			}
			time.Sleep(200 * time.Millisecond) // a duplicate or a deleted job's fire would show now
			ticks := disp.ticks()
			require.Len(t, ticks, len(c.fire), "only these jobs fire: %v", ticks)
			for _, name := range c.fire {
				for s := -1; s <= 1; s++ {
					require.Equal(t, 1, ticks[name][second(s)], "%s at %s: %v", name, second(s), ticks[name])
				}
			}
		})
	}
}
