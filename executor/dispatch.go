package executor

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/target"
)

// planned is a tick about to be claimed: fired (status empty) or recorded
// as missed or skipped.
type planned struct {
	en      *entry
	at      time.Time
	trigger string
	status  string
	reason  string
}

// fire is a claimed tick on its way to a worker.
type fire struct {
	ts *termState
	// run points at the tick's claim, in the claims its part hands to the
	// recorder: a copy per fire was a third of a burst's fires' memory.
	// The recorder replaces the claim with the outcome only after the
	// fire has handed that over, so it is read-only while the fire lives.
	run    *store.Run
	job    *job.Job
	dueAt  time.Time // scheduled time plus jitter
	ahead  bool      // claimed before its scheduled time
	ctx    context.Context
	cancel context.CancelFunc
}

var (
	errLostLead = errors.New("the executor lost leadership before sending")
	errStopped  = errors.New("the executor stepped down before sending")
)

// claimMode says when the run documents of ticks claimed through cells
// are written.
type claimMode int

const (
	// recordAfter hands them to the recorder: the fires go out after one
	// insert per cell. Group passes and joins use it.
	recordAfter claimMode = iota
	// recordBefore writes them before dispatching, and a tick whose run
	// document is already there is not fired: an executor of the version
	// before cells claimed it. Catch-up, which covers the previous
	// executor's last moments, uses it.
	recordBefore
)

// claimAndDispatch claims planned ticks in batches and sends the claimed
// fires on. Overlap rules are applied here: a tick that finds the job's
// previous run in progress is recorded as skipped (forbid), replaces it
// (replace), or runs beside it (allow). Called with claimMu held.
func (ts *termState) claimAndDispatch(plan []planned, mode claimMode) error {
	// A part's fires are handed to the workers while the next part is
	// claimed: the workers' queue holds a fraction of a part, and they
	// would otherwise wait for every claim but the first (measured at
	// 100,000 jobs: 16 claims of about 90 ms each). Parts claimed ahead of
	// their time are claimed one after the other, so that the store's work
	// is done when they come due (burst-10k: p99 lag 326 to 268 ms), and
	// the pass does not wait for their time: claimMu would hold up writes.
	var feeding chan struct{} // the last part's feeder
	ahead := false            // whether its fires wait for their time
	defer func() {
		if feeding != nil && !ahead {
			<-feeding
		}
	}()
	for _, part := range ts.claimParts(plan) {
		if ts.stopping.Load() || !ts.term.Valid() {
			return errLostLead
		}
		claims := make([]store.Run, len(part))
		fires := make([]*fire, len(part))
		now := ts.now()
		for i, p := range part {
			status, reason := p.status, p.reason
			early := p.at.After(now) // overlap rules apply at its time (feedOne)
			if status == "" {
				status = store.StatusRunning
				if !early && ts.overlapping(p.en.job) {
					status, reason = store.StatusSkipped, reasonForbid
				}
			}
			claims[i] = store.Run{
				FireID: store.TickFireID(p.en.job.Name, p.at), Job: p.en.job.Name, ScheduledAt: p.at,
				Trigger: p.trigger, Status: status, Reason: reason,
				Instance: ts.e.cfg.InstanceID, Epoch: ts.term.Epoch(), ClaimedAt: now,
				Group: p.en.sched.Key(),
			}
			if status == store.StatusRunning {
				fires[i] = ts.newFire(&claims[i], p.en.job, early)
			}
		}
		start := time.Now()
		var (
			claimed []bool
			cells   map[string][]int
			err     error
		)
		if mode == recordBefore {
			claimed, err = ts.e.store.Claim(ts.ctx, ts.term.Fence(), claims)
		} else {
			claimed, cells, err = ts.e.store.ClaimCells(ts.ctx, ts.term.Fence(), claims)
		}
		if h := ts.e.cfg.Hooks.StoreOp; h != nil {
			h("claim", len(claims), time.Since(start), err)
		}
		if err != nil && claimed == nil {
			for _, f := range fires {
				if f != nil {
					ts.release(f)
				}
			}
			return err
		}
		// After an error, the ticks reported claimed are still this
		// call's, and are sent; catch-up finds the others.
		for id, idx := range cells {
			ts.e.emit(toRecord{cell: id, claims: cellClaims(claims, idx)})
		}
		var send []*fire
		for i, ok := range claimed {
			f := fires[i]
			switch {
			case !ok && f != nil:
				ts.release(f) // another executor, or an earlier pass, has it
			case !ok:
			case f != nil:
				send = append(send, f)
			default:
				if h := ts.e.cfg.Hooks.Recorded; h != nil {
					h(claims[i].Job, claims[i].Status)
				}
			}
		}
		prev := feeding
		fed := make(chan struct{})
		feeding = fed
		ahead = len(send) > 0 && send[0].dueAt.After(ts.now())
		if ahead {
			ts.e.noteDue(send[0].dueAt)
		}
		ts.e.unfed.Add(int64(len(send)))
		ts.feeders.Add(1)
		go func() { // owned by the term, whose stop waits for feeders
			defer ts.feeders.Done()
			defer close(fed)
			if prev != nil {
				<-prev // in claim order
			}
			ts.feed(send)
		}()
		if prev != nil && !ahead {
			<-prev
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// feed hands claimed fires to the workers, each when its time comes. A
// fire claimed ahead of its time whose job was paused or deleted meanwhile
// is recorded as cancelled instead: the write was answered before the tick.
func (ts *termState) feed(fires []*fire) {
	for _, f := range fires {
		ts.feedOne(f)
		ts.e.unfed.Add(-1)
	}
}

func (ts *termState) feedOne(f *fire) {
	if f.ahead {
		if d := f.run.ScheduledAt.Sub(ts.now()); d > 0 {
			select {
			case <-ts.e.clock.After(d):
			case <-ts.ctx.Done():
				ts.cancelled(f, errStopped.Error()) // nothing else of the job's is touched
				return
			}
		}
		if status, reason := ts.atItsTime(f); status != "" {
			ts.unsent(f, status, reason)
			return
		}
	}
	ts.schedule(f)
}

// reasonForbid is why a tick that finds its job's previous run in progress
// is skipped.
const reasonForbid = "the previous run was still in progress (concurrency forbid)"

// atItsTime applies to a fire claimed ahead, at its time, what a claim then
// would have: a job paused or deleted since does not fire, and the overlap
// rules judge the runs of earlier ticks (forbid skips, replace cancels
// them). It returns the status and reason to record instead of sending, or
// an empty status to send.
func (ts *termState) atItsTime(f *fire) (status, reason string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if en := ts.jobs[f.job.Name]; en == nil || en.job.Paused {
		return store.StatusCancelled, "the job was paused or deleted after this tick was claimed"
	}
	if f.job.Concurrency != job.ConcurrencyForbid && f.job.Concurrency != job.ConcurrencyReplace {
		return "", ""
	}
	for _, other := range ts.running[f.job.Name] {
		if !other.run.ScheduledAt.Before(f.run.ScheduledAt) {
			continue
		}
		if f.job.Concurrency == job.ConcurrencyForbid {
			return store.StatusSkipped, reasonForbid
		}
		other.cancel()
	}
	return "", ""
}

// cellClaims returns the claims at idx, a cell's, for the recorder. Where
// they are consecutive, as claimParts leaves them in a plan of more than
// one part, it returns a view of claims instead of a copy (burst-100k: 20 MB
// less at the peak). The recorder replaces only the running claims, with
// their outcomes, and claimAndDispatch reads only the others once they are
// handed over.
func cellClaims(claims []store.Run, idx []int) []store.Run {
	lo, hi := idx[0], idx[0]+len(idx)
	for k, i := range idx {
		if i != lo+k {
			runs := make([]store.Run, len(idx))
			for k, i := range idx {
				runs[k] = claims[i]
			}
			return runs
		}
	}
	return claims[lo:hi:hi]
}

// claimParts splits plan into parts of about ClaimBatch ticks, keeping each
// cell's ticks in one part: a cell split across two calls would leave the
// second to claim its ticks one by one. A cell larger than a part is a
// part of its own. Cells keep the order in which the plan first names them,
// so earlier ticks are claimed first. The parts share one array, the plan
// sorted by cell, and cells are told apart without naming them: at 100,000
// jobs, naming each tick's cell took 52 ms and 300,000 allocations, all
// before the first claim.
func (ts *termState) claimParts(plan []planned) [][]planned {
	size := ts.e.cfg.ClaimBatch
	if len(plan) <= size {
		return [][]planned{plan}
	}
	type cellKey struct {
		group string
		at    int64
		shard int
	}
	cellIndex := map[cellKey]int{}
	cellOf := make([]int, len(plan))
	var counts []int // ticks per cell, in order of first mention
	for i, p := range plan {
		k := cellKey{p.en.sched.Key(), p.at.UnixNano(), store.CellShard(p.en.job.Name)}
		c, ok := cellIndex[k]
		if !ok {
			c = len(counts)
			cellIndex[k] = c
			counts = append(counts, 0)
		}
		cellOf[i] = c
		counts[c]++
	}
	next := make([]int, len(counts)) // where each cell's next tick goes
	for c, off := 1, 0; c < len(counts); c++ {
		off += counts[c-1]
		next[c] = off
	}
	sorted := make([]planned, len(plan))
	for i, p := range plan {
		sorted[next[cellOf[i]]] = p
		next[cellOf[i]]++
	}
	var parts [][]planned
	lo, cur := 0, 0
	for _, n := range counts {
		if cur > 0 && cur+n > size {
			parts = append(parts, sorted[lo:lo+cur:lo+cur])
			lo, cur = lo+cur, 0
		}
		cur += n
	}
	if cur > 0 {
		parts = append(parts, sorted[lo:lo+cur:lo+cur])
	}
	return parts
}

// overlapping reports whether j has a run in progress under this term, for
// the forbid policy. Runs of earlier terms do not count: their state ended
// with their executor.
func (ts *termState) overlapping(j *job.Job) bool {
	if j.Concurrency != job.ConcurrencyForbid {
		return false
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.running[j.Name]) > 0
}

// newFire registers a fire as running for j. Under replace it cancels the
// runs in progress first, unless the fire is claimed ahead of its time:
// then feedOne does, at its time.
func (ts *termState) newFire(r *store.Run, j *job.Job, ahead bool) *fire {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fire{ts: ts, run: r, job: j, ctx: ctx, cancel: cancel, dueAt: r.ScheduledAt, ahead: ahead}
	if j.Jitter > 0 {
		f.dueAt = f.dueAt.Add(rand.N(j.Jitter.Std()))
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if j.Concurrency == job.ConcurrencyReplace && !ahead {
		for _, old := range ts.running[j.Name] {
			old.cancel()
		}
	}
	if ts.running[j.Name] == nil {
		ts.running[j.Name] = map[string]*fire{}
	}
	ts.running[j.Name][r.FireID] = f
	return f
}

// release forgets a fire that will not run or has finished.
func (ts *termState) release(f *fire) {
	f.cancel()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if m := ts.running[f.job.Name]; m != nil {
		delete(m, f.run.FireID)
		if len(m) == 0 {
			delete(ts.running, f.job.Name)
		}
	}
}

// schedule hands f to the workers now, or when its jitter delay is over.
func (ts *termState) schedule(f *fire) {
	delay := f.dueAt.Sub(ts.now())
	if delay <= 0 {
		ts.e.enqueue(f)
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.stopping.Load() {
		go ts.cancelled(f, errStopped.Error())
		return
	}
	var timer interface{ Stop() bool }
	timer = ts.e.clock.AfterFunc(delay, func() {
		ts.mu.Lock()
		_, ok := ts.pending[f]
		delete(ts.pending, f)
		ts.mu.Unlock()
		if ok {
			ts.e.enqueue(f)
		}
	})
	ts.pending[f] = timer.Stop
}

// cancelPending records every fire still waiting for its jitter delay as
// cancelled.
func (ts *termState) cancelPending(reason string) {
	ts.mu.Lock()
	var stopped []*fire
	for f, stop := range ts.pending {
		if stop() {
			stopped = append(stopped, f)
		}
		delete(ts.pending, f)
	}
	ts.mu.Unlock()
	for _, f := range stopped {
		ts.cancelled(f, reason)
	}
}

func (ts *termState) cancelled(f *fire, reason string) {
	ts.unsent(f, store.StatusCancelled, reason)
}

// unsent records a claimed fire that is not sent: cancelled, or skipped by
// the overlap rules at its time.
func (ts *termState) unsent(f *fire, status, reason string) {
	ts.release(f)
	r := *f.run
	fin := ts.now()
	r.Status, r.FinishedAt = status, &fin
	if status == store.StatusSkipped {
		r.Reason = reason
	} else {
		r.Error = reason
	}
	if h := ts.e.cfg.Hooks.Recorded; h != nil {
		h(r.Job, r.Status)
	}
	ts.e.emit(toRecord{outcome: r})
}

// enqueue hands f to a worker, or records it as cancelled if the executor
// is closing.
func (e *Executor) enqueue(f *fire) {
	e.closeMu.RLock()
	if !e.closed {
		e.unstarted.Add(1)
		e.lastFed.Store(e.clock.Now().UnixNano())
		e.fires <- f
		e.closeMu.RUnlock()
		return
	}
	e.closeMu.RUnlock()
	f.ts.cancelled(f, errStopped.Error())
}

// toRecord is one item for the recorder: a fire's outcome, or the claims
// of one cell whose run documents are still to be written.
type toRecord struct {
	outcome store.Run
	cell    string
	claims  []store.Run
}

func (r toRecord) runs() int {
	if r.cell != "" {
		return len(r.claims)
	}
	return 1
}

// emit hands an outcome, or a cell's claims, to the recorder.
func (e *Executor) emit(r toRecord) {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		e.log.Warn("outcome or claims produced after shutdown; the next executor records them", "fire_id", r.outcome.FireID, "cell", r.cell)
		return
	}
	e.results <- r
}

// work runs fires until the fires channel is closed.
func (e *Executor) work() {
	for f := range e.fires {
		e.dispatch(f)
	}
}

func (e *Executor) dispatch(f *fire) {
	e.sending.Add(1)
	ts, term := f.ts, f.ts.term
	started, decided := false, false
	decide := func() {
		if !decided {
			decided = true
			e.unstarted.Add(-1)
		}
	}
	defer decide()
	allow := func() error {
		defer decide()
		switch {
		case ts.stopping.Load():
			return errStopped
		case !term.Valid():
			return errLostLead
		}
		if !started {
			started = true
			if h := e.cfg.Hooks.Fired; h != nil {
				h(f.job.Name, e.clock.Since(f.dueAt))
			}
		}
		return nil
	}
	res := e.disp.Dispatch(f.ctx, target.Fire{FireID: f.run.FireID, Job: f.job, ScheduledAt: f.run.ScheduledAt, Trigger: f.run.Trigger, Instance: e.cfg.InstanceID, Epoch: term.Epoch()}, allow)
	r := resultRun(*f.run, res)
	if r.Status == store.StatusCancelled && f.ctx.Err() != nil && r.Error == "" {
		r.Error = "cancelled by a newer run (concurrency replace)"
	}
	e.sending.Add(-1)
	// The run is over once the target answered: a slow store recording it
	// must not make the next tick look overlapping.
	ts.release(f)
	if h := e.cfg.Hooks.Finished; h != nil {
		h(r.Job, r.Status, time.Duration(r.DurationMS)*time.Millisecond)
	}
	e.results <- toRecord{outcome: r} // workers stop before the results channel closes
}

// resultRun merges a dispatch result into its claim.
func resultRun(claim store.Run, res target.Result) store.Run {
	r := claim
	r.Status = res.Status
	if !res.StartedAt.IsZero() {
		st := res.StartedAt
		r.StartedAt = &st
	}
	fin := res.FinishedAt
	r.FinishedAt = &fin
	if r.StartedAt != nil {
		r.DurationMS = fin.Sub(*r.StartedAt).Milliseconds()
	}
	r.Attempts = len(res.Attempts)
	if len(res.Attempts) > 1 {
		// A lone attempt is the run's own fields. Leaving it out makes a
		// run's document a fifth cheaper to insert on the test store, and
		// its slice is not held while a burst's outcomes wait.
		r.AttemptLog = res.Attempts
	}
	r.HTTPStatus = res.HTTPStatus
	if claim.Job != "" && res.AMQPConfirmed {
		ok := true
		r.AMQPConfirmed = &ok
	}
	r.ExitCode = res.ExitCode
	r.Output = res.Output
	r.Error = res.Error
	return r
}

// record writes outcomes and cells' claims in batches until the results
// channel is closed (after the workers stop). They are collected as fast as
// they are produced, so a slow store never makes a worker wait to hand one
// over (measured: with a bounded hand-over, a 10,000-job burst's p99 lag
// was dominated by workers blocked on the recorder). A cell's claims are
// held until their outcomes arrive, or for Config.ClaimHold, so that a run
// is usually one document, its claim and outcome together, instead of two.
// Each batch writes its claims first, then its outcomes; each write is
// retried whole until it succeeds (both are insert-once, so a retry never
// records one twice). Recorded outcomes are added to the counts, which a
// second loop writes to the job counters.
func (e *Executor) record() {
	q := &recordQueue{held: map[string]heldRef{}, full: make(chan struct{}, 1), batch: e.cfg.RecordBatch}
	done := make(chan struct{})
	go func() { // owned by record, which waits for done
		defer close(done)
		for r := range e.results {
			q.add(r, e.clock.Now())
		}
		q.close()
	}()
	c := &counts{e: e}
	stopCounting, counted := make(chan struct{}), make(chan struct{})
	go func() { // owned by record, which waits for counted
		defer close(counted)
		c.run(stopCounting)
	}()
	t := e.clock.NewTicker(e.cfg.RecordInterval)
	defer t.Stop()
	dropped := 0
	wrote := e.clock.Now()
	var took time.Duration // the last write
	// While fires are being dispatched, or claimed fires come due before a
	// write would end, leave the store's time, and the CPU it takes, to
	// them (burst-10k: p99 lag 1.47 s to 0.74 s), for a while.
	wait := func() bool {
		return e.busy(took) && q.size() < maxDeferred && !q.isClosed() && e.clock.Since(wrote) < maxDefer
	}
	for {
		select {
		case <-q.full:
		case <-t.Chan():
		}
		q.ripen(e.clock.Now().Add(-e.cfg.ClaimHold))
		if wait() {
			continue
		}
		// Deferred too long (or too much): write all there is, busy or not.
		forced := e.busy(took)
		wrote = e.clock.Now()
		for n := 0; ; n++ {
			if n > 0 && !forced && wait() {
				break // the rest after the wave
			}
			start := e.clock.Now()
			batch, size, final := q.take(4 * e.cfg.RecordBatch)
			if len(batch) == 0 {
				if final {
					<-done
					close(stopCounting)
					<-counted
					if dropped > 0 {
						e.log.Warn("shutdown gave up before recording some outcomes and claims; the next executor records them", "runs", dropped)
					}
					return
				}
				break
			}
			if e.abandoned.Load() {
				dropped += size
			} else {
				c.add(e.writeRecords(batch, final))
			}
			q.done(len(batch), size)
			took = e.clock.Since(start)
		}
	}
}

// recordQueue is the recorder's backlog: items ready to write, and cells'
// claims held for their outcomes.
type recordQueue struct {
	mu      sync.Mutex
	pending []toRecord
	runs    int // in pending
	cells   []*heldCell
	held    map[string]heldRef // fire id of a held claim still running
	closed  bool
	full    chan struct{} // signalled when pending reaches batch runs
	batch   int
}

type heldCell struct {
	rec  toRecord
	at   time.Time
	open int // claims still waiting for their outcome
	gone bool
}

type heldRef struct {
	cell *heldCell
	i    int
}

func (q *recordQueue) add(r toRecord, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case r.cell != "":
		hc := &heldCell{rec: r, at: now}
		for i, c := range r.claims {
			if c.Status == store.StatusRunning {
				q.held[c.FireID] = heldRef{hc, i}
				hc.open++
			}
		}
		if hc.open == 0 {
			q.ready(r)
			return
		}
		q.cells = append(q.cells, hc)
	default:
		ref, ok := q.held[r.outcome.FireID]
		if !ok {
			q.ready(r)
			return
		}
		delete(q.held, r.outcome.FireID)
		ref.cell.rec.claims[ref.i] = r.outcome
		if ref.cell.open--; ref.cell.open == 0 {
			ref.cell.gone = true
			q.ready(ref.cell.rec)
		}
	}
}

// ready queues r for writing. Called with mu held.
func (q *recordQueue) ready(r toRecord) {
	q.pending = append(q.pending, r)
	q.runs += r.runs()
	if q.runs >= q.batch {
		select {
		case q.full <- struct{}{}:
		default:
		}
	}
}

// ripen queues the cells held since before cutoff, or every cell once the
// queue is closed; their claims still running are written as running.
func (q *recordQueue) ripen(cutoff time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	kept := q.cells[:0]
	for _, hc := range q.cells {
		switch {
		case hc.gone:
		case q.closed || !hc.at.After(cutoff):
			for _, c := range hc.rec.claims {
				if c.Status == store.StatusRunning {
					delete(q.held, c.FireID)
				}
			}
			q.ready(hc.rec)
		default:
			kept = append(kept, hc)
		}
	}
	clear(q.cells[len(kept):])
	q.cells = kept
}

func (q *recordQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.full <- struct{}{}:
	default:
	}
}

// take returns up to about max runs' worth of pending items, their runs,
// and whether the queue is closed with nothing held.
func (q *recordQueue) take(max int) (batch []toRecord, size int, final bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for n < len(q.pending) && size < max {
		size += q.pending[n].runs()
		n++
	}
	return q.pending[:n:n], size, q.closed && len(q.cells) == 0
}

// size returns the runs pending.
func (q *recordQueue) size() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.runs
}

func (q *recordQueue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// busy reports whether fires wait for the workers, a wave of fires is still
// being sent, or fires claimed ahead come due within d: a store write
// started now would compete with their dispatch for the CPU (the test store
// and the receivers share it).
//
// A wave is still being sent while the workers hold fires and one was
// handed to them within waveTail. Its last few hundred requests are held by
// the workers, not queued, and they make its tail: spread-100k wrote a
// batch of records during each second's tail. The bound keeps fires that
// run long (slow targets) from holding the store off.
func (e *Executor) busy(d time.Duration) bool {
	if len(e.fires) > 0 {
		return true
	}
	now := e.clock.Now().UnixNano()
	if e.sending.Load() > 0 && now-e.lastFed.Load() < int64(waveTail) {
		return true
	}
	due := e.nextDue.Load()
	if due == 0 {
		return false
	}
	until := time.Duration(due - now)
	return until > 0 && until < d
}

// waveTail bounds how long after the last fire handed to the workers busy
// still counts the fires they are sending.
const waveTail = 500 * time.Millisecond

// noteDue records that fires claimed ahead come due at t, for busy.
func (e *Executor) noteDue(t time.Time) {
	for {
		cur := e.nextDue.Load()
		if cur != 0 && cur > e.clock.Now().UnixNano() && cur <= t.UnixNano() {
			return // an earlier wave is still to come
		}
		if e.nextDue.CompareAndSwap(cur, t.UnixNano()) {
			return
		}
	}
}

// maxDeferred and maxDefer bound the runs the recorder keeps, and for how
// long it keeps them, while the workers have a backlog: with slow targets
// that may be always.
const (
	maxDeferred = 200_000
	maxDefer    = 5 * time.Second
)

// done drops the first n pending items, of size runs, once written.
func (q *recordQueue) done(n, size int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending = q.pending[n:]
	q.runs -= size
}

// writeRecords writes one batch: the claims' run documents, then the
// outcomes. It returns the outcomes recorded by this call.
func (e *Executor) writeRecords(batch []toRecord, final bool) []store.Run {
	var cells []string
	var claims, outcomes []store.Run
	for _, r := range batch {
		if r.cell != "" {
			cells = append(cells, r.cell)
			claims = append(claims, r.claims...)
		} else {
			outcomes = append(outcomes, r.outcome)
		}
	}
	var done []store.Run
	if len(cells) > 0 {
		finished := 0
		for _, r := range claims {
			if store.Final(r.Status) {
				finished++
			}
		}
		// Reported as "record" of the outcomes among the claims. A
		// failure at shutdown leaves the cells unrecorded, for the next
		// executor's RecordOpenCells.
		e.retryStoreOp("record", finished, final, func(ctx context.Context) error {
			recorded, err := e.store.RecordClaims(ctx, cells, claims)
			if err == nil {
				done = store.Recorded(claims, recorded)
			}
			return err
		})
	}
	if len(outcomes) == 0 {
		return done
	}
	if recorded, ok := e.insertResults(outcomes, final); ok {
		done = append(done, store.Recorded(outcomes, recorded)...)
	}
	return done
}

// insertResults stores one batch of outcomes, retried until it succeeds,
// or tried once only when final (at shutdown the next executor records
// what is left as interrupted).
func (e *Executor) insertResults(batch []store.Run, final bool) (recorded []bool, ok bool) {
	ok = e.retryStoreOp("record", len(batch), final, func(ctx context.Context) (err error) {
		recorded, err = e.store.InsertResults(ctx, batch)
		return err
	})
	return recorded, ok
}

// countPause is how many times as long as a counter write took the next
// one waits. Measured under spread-100k (100,000 jobs firing every minute),
// over 2 minutes: at 2 the counter writes took 50 s of the store's time,
// at 9 16 s, and the p99 lag went from 311 ms to 250 ms.
const countPause = 9

// counts adds recorded outcomes to the job counters. Outcomes are tallied
// per job in memory, so the backlog is bounded by the number of jobs, not
// of runs, and one write per touched counter shard counts any number of
// them. A write takes at most Config.CountBatch jobs' counters, whole
// shards in turn, because FerretDB takes seconds per thousand jobs at
// 100,000 (measured: the whole tally at once timed out, again and again,
// and starved the lease of the store). It waits between writes at least
// countPause times as long as the last one took: counters never take more
// than a tenth of the store's time from leases, claims and records, and
// the longer the tally gathers, the more runs each shard's update counts.
// On a slow store and many jobs counters lag behind the run records, which
// are always current.
type counts struct {
	e     *Executor
	mu    sync.Mutex
	tally store.Tally
}

func (c *counts) add(runs []store.Run) {
	if len(runs) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tally.Add(runs)
}

// run writes the tally until stop is closed, then writes what is left,
// trying each part once.
func (c *counts) run(stop <-chan struct{}) {
	pause := c.e.cfg.CountInterval
	var last time.Duration // the last write
	for {
		select {
		case <-stop:
			for {
				if _, ok := c.flush(true); !ok {
					break
				}
			}
			c.mu.Lock()
			left := c.tally.Runs()
			c.mu.Unlock()
			if left > 0 {
				c.e.log.Warn("stopped before counting some recorded runs; their jobs' counters stay short by them", "runs", left)
			}
			return
		case <-c.e.clock.After(pause):
		}
		c.waitQuiet(stop, last)
		took, _ := c.flush(false)
		last = took
		pause = max(c.e.cfg.CountInterval, countPause*took)
	}
}

// waitQuiet waits, for at most 2 s, while a counter write that takes d
// would overlap a wave of fires (spread-100k: a write took 450 ms).
func (c *counts) waitQuiet(stop <-chan struct{}, d time.Duration) {
	for i := 0; i < 100 && c.e.busy(d); i++ {
		select {
		case <-stop:
			return
		case <-c.e.clock.After(20 * time.Millisecond):
		}
	}
}

// flush writes one part of the tally, retried until it succeeds unless
// final, and returns how long that took. ok is false when there was
// nothing to write or the write failed.
func (c *counts) flush(final bool) (took time.Duration, ok bool) {
	if c.e.abandoned.Load() {
		return 0, false
	}
	c.mu.Lock()
	t := c.tally.Take(c.e.cfg.CountBatch)
	c.mu.Unlock()
	if t.Runs() == 0 {
		return 0, false
	}
	start := time.Now()
	ok = c.e.retryStoreOp("count", t.Runs(), final, func(ctx context.Context) error {
		return c.e.store.CountTally(ctx, &t)
	})
	return time.Since(start), ok
}

// retryStoreOp runs op on n outcomes until it succeeds, reporting each try
// to the StoreOp hook; when final it tries once. It reports success.
func (e *Executor) retryStoreOp(name string, n int, final bool, op func(context.Context) error) bool {
	for {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := op(ctx)
		cancel()
		if h := e.cfg.Hooks.StoreOp; h != nil {
			h(name, n, time.Since(start), err)
		}
		if err == nil {
			return true
		}
		if final || e.abandoned.Load() {
			e.log.Warn("storing run outcomes failed at shutdown", "op", name, "runs", n, "error", err)
			return false
		}
		e.log.Warn("storing run outcomes failed; retrying", "op", name, "runs", n, "error", err)
		time.Sleep(time.Second)
	}
}
