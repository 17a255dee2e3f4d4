package executor

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/schedule"
	"github.com/batonhq/baton/store"
)

// prefetch is what a standby reads while it holds the token and waits out
// the previous executor's lease: after a crash, lease.holder_ttl (1.2 s),
// in which the test store reads several thousand jobs. The term that
// follows starts with them, so its first fires do not wait for the load to
// reach them, unless the previous executor may have changed a job since
// reading began (see usable).
type prefetch struct {
	stop context.CancelFunc // ends the reading

	mu     sync.Mutex
	got    prefetched
	closed bool // taken, or dropped because this instance did not lead
}

// prefetched is what a term gets from a prefetch.
type prefetched struct {
	prev store.Lease // the lease that was waited out
	// before is the previous executor's writes when reading began; ok that
	// none was under way then, so that what was read is as it stored it.
	before   store.Writes
	ok       bool
	jobs     []*job.Job
	complete bool // every job was read
}

// Prepare implements token.Preparer: it reads jobs until Lead takes them,
// or, if this instance does not lead, until ctx ends, and then drops them.
func (e *Executor) Prepare(ctx context.Context, prev store.Lease) {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return
	}
	rctx, stop := context.WithCancel(ctx)
	p := &prefetch{stop: stop, got: prefetched{prev: prev}}
	e.mu.Lock()
	old := e.prep
	e.prep = p
	e.mu.Unlock()
	if old != nil {
		old.take()
	}
	e.preparing.Add(1)
	go func() {
		defer e.preparing.Done()
		p.read(rctx, e.store, prev.Epoch)
		// Ends when take stops the reading, or when the wait ends without
		// leading: then nothing took the jobs, and take frees them.
		<-rctx.Done()
		p.take()
	}()
}

// read reads jobs in the order a load does, if no write of the previous
// executor is under way. A write cut short by a crash stays under way.
func (p *prefetch) read(ctx context.Context, st Store, prevEpoch int64) {
	w, err := st.WritesOf(ctx, prevEpoch)
	if err != nil || w.Begun != w.Finished {
		return
	}
	p.mu.Lock()
	p.got.before, p.got.ok = w, true
	p.mu.Unlock()
	err = st.EachJob(ctx, func(j *job.Job) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed {
			return errStopped
		}
		p.got.jobs = append(p.got.jobs, j)
		return nil
	})
	p.mu.Lock()
	p.got.complete = err == nil
	p.mu.Unlock()
}

// take stops reading and returns what was read; later calls return nothing.
func (p *prefetch) take() prefetched {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return prefetched{}
	}
	p.closed = true
	p.stop()
	got := p.got
	p.got.jobs = nil
	return got
}

// takePrefetch takes the jobs read ahead, if any, for a new term.
func (e *Executor) takePrefetch() prefetched {
	e.mu.Lock()
	p := e.prep
	e.prep = nil
	e.mu.Unlock()
	if p == nil {
		return prefetched{}
	}
	return p.take()
}

// usable returns the prefetched jobs that the term may start with: read
// while the lease it follows was held, with none of that executor's
// writes under way when reading began and none begun since. Every job
// change is made between a write's begin and finish (see store.Writes),
// so the jobs are as that executor left them. complete reports that they
// are all the jobs. A write that passed its fence check before this term
// began and lands after the check here is missed, as it would be by a load
// that read the job first.
func (ts *termState) usable(pf prefetched) (jobs []*job.Job, complete bool) {
	if !pf.ok || len(pf.jobs) == 0 {
		return nil, false
	}
	if ts.term.Epoch() != pf.prev.Epoch+1 {
		ts.log.Info("not using the jobs read while waiting: another executor led in between",
			"waited_for_epoch", pf.prev.Epoch, "jobs", len(pf.jobs))
		return nil, false
	}
	after, err := ts.e.store.WritesOf(ts.ctx, pf.prev.Epoch)
	if err != nil || after.Begun != pf.before.Begun {
		ts.log.Info("not using the jobs read while waiting: the previous executor wrote meanwhile",
			"jobs", len(pf.jobs), "error", err)
		return nil, false
	}
	return pf.jobs, pf.complete
}

// soonestFirst orders jobs by their first tick after from, paused jobs and
// jobs that do not parse last. The jobs that are overdue since the previous
// executor stopped, or due next, then join the schedule first, wherever the
// store keeps them: with 100,000 jobs the first due one can sit thousands
// of jobs into the store's order, and a term joins about 4,000 a second.
func (ts *termState) soonestFirst(jobs []*job.Job, from time.Time) {
	type keyed struct {
		j     *job.Job
		never bool
		next  time.Time
	}
	next := map[*schedule.Schedule]time.Time{}
	ks := make([]keyed, len(jobs))
	for i, j := range jobs {
		ks[i].j = j
		s, err := ts.parse(j)
		if j.Paused || err != nil {
			ks[i].never = true
			continue
		}
		t, ok := next[s]
		if !ok {
			t = s.Next(from)
			next[s] = t
		}
		ks[i].next = t
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		if a.never != b.never {
			if a.never {
				return 1
			}
			return -1
		}
		return a.next.Compare(b.next)
	})
	for i := range ks {
		jobs[i] = ks[i].j
	}
}
