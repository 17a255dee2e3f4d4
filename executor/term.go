package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/batonhq/baton/internal/backoff"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/schedule"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/token"
)

// termState is everything the executor does during one term.
type termState struct {
	e       *Executor
	term    *token.Term
	log     *slog.Logger
	ctx     context.Context
	stopCtx context.CancelFunc
	wg      sync.WaitGroup

	prep     prefetched    // jobs read before the term began, if any
	ready    chan struct{} // closed once jobs are loaded and scheduled
	loaded   atomic.Bool
	stopping atomic.Bool
	sched    gocron.Scheduler

	// claimMu serializes claim passes: group ticks, catch-up, triggers.
	claimMu sync.Mutex
	// feeders are the goroutines handing a pass's fires to the workers,
	// and firstPasses those running a new group's first pass; both are
	// added under claimMu.
	feeders, firstPasses sync.WaitGroup

	// parsed shares one parsed schedule among the jobs that have it.
	parseMu sync.Mutex
	parsed  map[[2]string]*schedule.Schedule

	mu       sync.Mutex
	jobs     map[string]*entry
	groups   map[string]*group
	running  map[string]map[string]*fire // job -> fire id -> fire in progress
	pending  map[*fire]func() bool       // jitter timers not yet due
	degraded bool
	frozenW  time.Time
}

type entry struct {
	job   *job.Job
	sched *schedule.Schedule
	group *group
	// caughtUp is set for a job loaded while its group's timer already ran:
	// its ticks up to here were claimed by the load's catch-up.
	caughtUp time.Time
}

// group is one gocron job shared by every job with the same schedule key.
type group struct {
	key         string
	sched       *schedule.Schedule
	members     map[string]*entry
	gjob        gocron.Job
	lastHandled time.Time // every tick up to here has been claimed
}

func newTermState(e *Executor, term *token.Term) *termState {
	ctx, cancel := context.WithCancel(term.Context())
	return &termState{
		e: e, term: term, ctx: ctx, stopCtx: cancel,
		log:     e.log.With("epoch", term.Epoch()),
		ready:   make(chan struct{}),
		parsed:  map[[2]string]*schedule.Schedule{},
		jobs:    map[string]*entry{},
		groups:  map[string]*group{},
		running: map[string]map[string]*fire{},
		pending: map[*fire]func() bool{},
	}
}

// scheduler returns the term's gocron scheduler, nil until begin made it.
func (ts *termState) scheduler() gocron.Scheduler {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.sched
}

func (ts *termState) now() time.Time { return ts.e.clock.Now().UTC() }

// parse parses j's schedule, once per distinct schedule and time zone: at
// 100,000 jobs on a few schedules, one copy each instead of 100,000.
func (ts *termState) parse(j *job.Job) (*schedule.Schedule, error) {
	k := [2]string{j.Schedule, j.Timezone}
	ts.parseMu.Lock()
	defer ts.parseMu.Unlock()
	if s := ts.parsed[k]; s != nil {
		return s, nil
	}
	s, err := schedule.Parse(j.Schedule, j.Timezone)
	if err != nil {
		return nil, err
	}
	ts.parsed[k] = s
	return s, nil
}

func (ts *termState) goTracked(fn func()) {
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		fn()
	}()
}

func (ts *termState) start() {
	ts.goTracked(ts.begin)
}

// begin streams every job into the schedule, catching each batch up from
// the previous executor's watermark, and starts the timers at once: a job
// fires as soon as its batch is in, not after the whole store is read. A
// store failure is retried while the term lasts.
func (ts *termState) begin() {
	begun := ts.now()
	sched, err := gocron.NewScheduler(
		gocron.WithClock(ts.e.clock),
		gocron.WithLocation(time.UTC),
		gocron.WithStopTimeout(2*time.Second),
	)
	if err != nil {
		ts.log.Error("starting the scheduler failed", "error", err)
		return
	}
	ts.mu.Lock()
	ts.sched = sched
	ts.mu.Unlock()
	sched.Start()
	from := ts.term.Lease().Watermark
	early, complete := ts.usable(ts.prep)
	ts.prep.jobs = nil
	if len(early) > 0 {
		ts.soonestFirst(early, from)
		err := ts.loadFrom(from, func(_ context.Context, fn func(*job.Job) error) error {
			for _, j := range early {
				if err := fn(j); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return // stopped
		}
		ts.log.Info("scheduled the jobs read while waiting for the lease", "jobs", len(early), "all", complete)
	}
	b := backoff.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	for !complete {
		err := ts.loadFrom(from, ts.e.store.EachJob)
		if err == nil {
			break
		}
		if ts.ctx.Err() != nil || ts.stopping.Load() {
			return
		}
		ts.log.Warn("loading jobs failed; retrying", "error", err)
		if !backoff.Sleep(ts.ctx, b.Next()) {
			return
		}
	}
	ts.loaded.Store(true)
	close(ts.ready)
	ts.mu.Lock() // writes may already be applying
	jobs, timers := len(ts.jobs), len(ts.groups)
	ts.mu.Unlock()
	ts.log.Info("executor running", "jobs", jobs, "timers", timers,
		"caught_up_from", from, "load_took", ts.now().Sub(begun))
	// The watermark moves only now: until every job was caught up, the
	// next executor must catch up from where this one started.
	ts.goTracked(ts.watermarkLoop)
	ts.goTracked(ts.maintenanceLoop)
}

// firstLoadBatch is the size of the first batch of jobs a term loads.
const firstLoadBatch = 100

// loadFrom streams the jobs of each that are not yet loaded into the
// schedule, a batch at a time. A failed attempt keeps what it loaded; the
// next one skips those.
func (ts *termState) loadFrom(from time.Time, each func(context.Context, func(*job.Job) error) error) error {
	// The first batch is small, so the first jobs start at once (the store
	// also sends its first batch early).
	size := min(ts.e.cfg.LoadBatch, firstLoadBatch)
	batch := make([]*job.Job, 0, ts.e.cfg.LoadBatch)
	err := each(ts.ctx, func(j *job.Job) error {
		if ts.stopping.Load() {
			return errStopped
		}
		ts.mu.Lock()
		_, loaded := ts.jobs[j.Name]
		ts.mu.Unlock()
		if !loaded {
			j.ShareStrings()
			batch = append(batch, j)
		}
		if len(batch) == size {
			ts.joinLoaded(batch, from)
			batch, size = batch[:0], ts.e.cfg.LoadBatch
		}
		return nil
	})
	ts.joinLoaded(batch, from)
	return err
}

// joinLoaded adds loaded jobs to the running schedule and claims their ticks
// since from with their misfire policies. Their groups' passes skip what
// this caught up. It holds claimMu, so no pass runs in between.
func (ts *termState) joinLoaded(jobs []*job.Job, from time.Time) {
	if len(jobs) == 0 {
		return
	}
	ts.claimMu.Lock()
	defer ts.claimMu.Unlock()
	now := ts.now()
	entries := make([]*entry, 0, len(jobs))
	for _, j := range jobs {
		en, err := ts.addLoaded(j, now)
		if err != nil {
			// A job the store accepted but this version cannot parse is
			// skipped, not fatal for every other job.
			ts.log.Error("cannot schedule job", "job", j.Name, "error", err)
			continue
		}
		if !j.Paused {
			entries = append(entries, en)
		}
	}
	if err := ts.catchUpEntries(entries, from, now); err != nil {
		ts.log.Warn("catch-up failed; retrying once the store answers", "error", err)
		if errors.Is(err, store.ErrStaleEpoch) {
			ts.claimFailed(err)
			return
		}
		ts.markDegraded(from)
	}
}

// join adds or replaces a job's entry while the timers run, and claims the
// job's ticks that its group handled before the job joined: a job stored
// just before a tick may join after the group's pass for that tick. It holds
// claimMu, so no pass runs between joining and claiming.
func (ts *termState) join(j *job.Job) error {
	ts.claimMu.Lock()
	defer ts.claimMu.Unlock()
	en, gap, err := ts.addEntryGap(j)
	if err != nil || en == nil || gap[0].IsZero() || !ts.loaded.Load() ||
		ts.stopping.Load() || !ts.term.Valid() {
		return err
	}
	now := ts.now()
	var plan []planned
	for t := range en.sched.Ticks(gap[0], gap[1]) {
		if !t.After(en.job.ActiveSince) {
			continue // the job did not exist, or was paused, then
		}
		p := planned{en: en, at: t, trigger: store.TriggerSchedule}
		if now.Sub(t) > en.job.StartingDeadline.Std() {
			p.status, p.reason = store.StatusMissed, fmt.Sprintf("the executor reached this tick after its starting deadline (%s)", en.job.StartingDeadline)
		}
		plan = append(plan, p)
	}
	if err := ts.claimAndDispatch(plan, recordAfter); err != nil {
		ts.claimFailed(err)
	}
	return nil
}

// addEntryGap adds or replaces a job's entry while the timers run. When
// the job joins a group that already handled ticks after the job became
// active, it also returns that span.
func (ts *termState) addEntryGap(j *job.Job) (*entry, [2]time.Time, error) {
	var gap [2]time.Time
	s, err := ts.parse(j)
	if err != nil {
		return nil, gap, err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	// A new group starts counting ticks where the job's own history left
	// off: a job that already had a timer keeps its last handled tick, and a
	// job that just became active (created, resumed, rescheduled) counts
	// from then. Starting at "now" would lose a tick that fell while the
	// write was stored.
	handledFrom := ts.now()
	if old := ts.jobs[j.Name]; old != nil && old.group != nil {
		if old.group.lastHandled.Before(handledFrom) {
			handledFrom = old.group.lastHandled
		}
	} else if !j.ActiveSince.IsZero() && j.ActiveSince.Before(handledFrom) {
		handledFrom = j.ActiveSince
	}
	en, err := ts.addLocked(j, s, handledFrom)
	if err != nil || en.group == nil {
		return en, gap, err
	}
	if g := en.group; g.lastHandled.After(handledFrom) {
		gap = [2]time.Time{handledFrom, g.lastHandled}
	}
	return en, gap, nil
}

// addLoaded adds a job read from the store while loading, caught up to now
// by the caller: its group, if new, counts from now, and an existing
// group's passes skip its ticks up to now.
func (ts *termState) addLoaded(j *job.Job, now time.Time) (*entry, error) {
	s, err := ts.parse(j)
	if err != nil {
		return nil, err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	en, err := ts.addLocked(j, s, now)
	if err != nil {
		return nil, err
	}
	en.caughtUp = now
	return en, nil
}

// addLocked replaces j's entry and puts it in its schedule's group, which
// it creates, with its timer, if needed. A new group counts its ticks as
// handled up to handledFrom.
func (ts *termState) addLocked(j *job.Job, s *schedule.Schedule, handledFrom time.Time) (*entry, error) {
	ts.removeLocked(j.Name)
	en := &entry{job: j, sched: s}
	ts.jobs[j.Name] = en
	if j.Paused {
		return en, nil
	}
	key := s.Key()
	g := ts.groups[key]
	if g == nil {
		g = &group{key: key, sched: s, members: map[string]*entry{}, lastHandled: handledFrom}
		if err := ts.startGroup(g); err != nil {
			delete(ts.jobs, j.Name)
			return nil, err
		}
		ts.groups[key] = g
	}
	g.members[j.Name] = en
	en.group = g
	return en, nil
}

func (ts *termState) removeEntry(name string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.removeLocked(name)
}

func (ts *termState) removeLocked(name string) {
	en := ts.jobs[name]
	if en == nil {
		return
	}
	delete(ts.jobs, name)
	if g := en.group; g != nil {
		delete(g.members, name)
		if len(g.members) == 0 {
			delete(ts.groups, g.key)
			if g.gjob != nil {
				_ = ts.sched.RemoveJob(g.gjob.ID())
			}
		}
	}
}

// cronAdapter lets gocron time a group with Baton's own schedule, whose
// daylight-saving rules and anchoring are tested independently of gocron.
// Times are returned in UTC so gocron's own wall-clock adjustments never
// apply.
//
// With a claim lead the timer runs that long before each tick, and the
// pass claims the ticks due up to then.
type cronAdapter struct {
	s    *schedule.Schedule
	lead time.Duration
}

func (c cronAdapter) IsValid(string, *time.Location, time.Time) error { return nil }
func (c cronAdapter) Next(last time.Time) time.Time {
	next := c.s.Next(last.Add(c.lead))
	if next.IsZero() {
		return next
	}
	return next.Add(-c.lead)
}

func (ts *termState) startGroup(g *group) error {
	gj, err := ts.sched.NewJob(
		gocron.CronJob(g.key, true),
		gocron.NewTask(func() { ts.tick(g) }),
		gocron.WithCronImplementation(cronAdapter{g.sched, ts.e.cfg.ClaimLead}),
		// A slow pass must not queue up behind itself: the next one claims
		// every tick since the last, so nothing is lost.
		gocron.WithSingletonMode(gocron.LimitModeReschedule),
		gocron.WithName(g.key),
	)
	if err != nil {
		return fmt.Errorf("executor: schedule %q: %w", g.key, err)
	}
	g.gjob = gj
	// Claim at once whatever came due since lastHandled: a job created
	// 50 ms before a tick whose timer starts after that tick would
	// otherwise wait a whole period, and its two ticks would meet in one
	// pass, where forbid skips the second.
	//
	// With a claim lead, also run the first timed pass here: gocron skips
	// a run in the same wall-clock second as the time it computes it from
	// (its rule for daylight-saving fall-back), so a group created at
	// 10.5 s with its first pass due at 10.8 s would wait until 11.8 s, and
	// fire the tick of 11 s late (a takeover fired its first tick 1.3 s
	// after SIGTERM). A pass that gocron runs as well finds nothing left.
	created := ts.now()
	ts.firstPasses.Add(1) // under claimMu, as addLocked is
	go func() {           // owned by the term, whose stop waits for firstPasses
		defer ts.firstPasses.Done()
		ts.tick(g)
		lead := ts.e.cfg.ClaimLead
		if lead == 0 {
			return
		}
		first := g.sched.Next(created.Add(lead))
		if first.IsZero() || first.Sub(created) > lead+time.Second {
			return
		}
		select {
		case <-ts.e.clock.After(first.Add(-lead).Sub(ts.now())):
			ts.tick(g)
		case <-ts.ctx.Done():
		}
	}()
	return nil
}

// tick claims and dispatches every tick of g due since it last ran, and
// up to a claim lead ahead.
func (ts *termState) tick(g *group) {
	ts.claimMu.Lock()
	defer ts.claimMu.Unlock()
	if ts.stopping.Load() || !ts.term.Valid() {
		return
	}
	now := ts.now()
	ts.mu.Lock()
	if ts.groups[g.key] != g {
		ts.mu.Unlock()
		return
	}
	from := g.lastHandled
	var ticks []time.Time
	for t := range g.sched.Ticks(from, now.Add(ts.e.cfg.ClaimLead)) {
		ticks = append(ticks, t)
	}
	members := make([]*entry, 0, len(g.members))
	for _, en := range g.members {
		members = append(members, en)
	}
	ts.mu.Unlock()
	if len(ticks) == 0 {
		return
	}
	plan := make([]planned, 0, len(ticks)*len(members))
	for _, t := range ticks {
		for _, en := range members {
			if !t.After(en.job.ActiveSince) || !t.After(en.caughtUp) {
				continue // the job did not exist, or was paused, then; or it was caught up
			}
			if now.Sub(t) > en.job.StartingDeadline.Std() {
				plan = append(plan, planned{en: en, at: t, status: store.StatusMissed, trigger: store.TriggerSchedule,
					reason: fmt.Sprintf("the executor reached this tick after its starting deadline (%s)", en.job.StartingDeadline)})
				continue
			}
			plan = append(plan, planned{en: en, at: t, trigger: store.TriggerSchedule})
		}
	}
	if err := ts.claimAndDispatch(plan, recordAfter); err != nil {
		ts.claimFailed(err)
		// lastHandled advances anyway: the catch-up that runs when the
		// store answers again covers these ticks from the frozen watermark.
	}
	ts.mu.Lock()
	g.lastHandled = ticks[len(ticks)-1]
	ts.mu.Unlock()
}

// catchUp plans and claims the ticks in (from, now] for every job with its
// misfire policy. It runs with claimMu held.
func (ts *termState) catchUp(from, now time.Time) error {
	ts.mu.Lock()
	entries := make([]*entry, 0, len(ts.jobs))
	for _, en := range ts.jobs {
		if !en.job.Paused {
			entries = append(entries, en)
		}
	}
	ts.mu.Unlock()
	return ts.catchUpEntries(entries, from, now)
}

// catchUpEntries is catchUp for some jobs. It runs with claimMu held.
func (ts *termState) catchUpEntries(entries []*entry, from, now time.Time) error {
	if from.IsZero() || !from.Before(now) {
		return nil
	}
	var plan []planned
	for _, en := range entries {
		start := from
		if en.job.ActiveSince.After(start) {
			start = en.job.ActiveSince
		}
		for _, d := range planCatchUp(en.sched, en.job.Misfire, en.job.StartingDeadline.Std(), start, now) {
			p := planned{en: en, at: d.At, trigger: store.TriggerCatchUp}
			if !d.Fire {
				p.status, p.reason = store.StatusMissed, d.Reason
			}
			plan = append(plan, p)
		}
	}
	if len(plan) > 0 {
		ts.log.Info("catching up missed ticks", "from", from, "to", now, "ticks", len(plan))
	}
	return ts.claimAndDispatch(plan, recordBefore)
}

func (ts *termState) claimFailed(err error) {
	if errors.Is(err, store.ErrStaleEpoch) {
		ts.log.Warn("the store fenced this executor off; stopping", "error", err)
		ts.stopping.Store(true)
		return
	}
	ts.log.Warn("claiming ticks failed; they will be caught up when the store answers", "error", err)
	ts.markDegraded(ts.term.Watermark())
}

func (ts *termState) markDegraded(w time.Time) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if !ts.degraded {
		ts.degraded, ts.frozenW = true, w
	}
}

// watermarkLoop reports, several times per renewal, the latest instant up
// to which every tick has been claimed.
func (ts *termState) watermarkLoop() {
	t := ts.e.clock.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ts.ctx.Done():
			return
		case <-t.Chan():
		}
		if w, ok := ts.watermark(); ok {
			ts.term.SetWatermark(w)
		}
	}
}

// watermark is the minimum over groups of the instant just before each
// group's next unclaimed tick, and never later than now.
func (ts *termState) watermark() (time.Time, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.degraded {
		return time.Time{}, false
	}
	w := ts.now()
	for _, g := range ts.groups {
		next := g.sched.Next(g.lastHandled)
		if !next.IsZero() && next.Add(-time.Millisecond).Before(w) {
			w = next.Add(-time.Millisecond)
		}
	}
	return w, true
}

// maintenanceLoop recovers from store outages, records runs interrupted by
// a previous executor, and prunes old records where the store cannot.
func (ts *termState) maintenanceLoop() {
	t := ts.e.clock.NewTicker(time.Second)
	defer t.Stop()
	nextReconcile := ts.now()
	reconcileEvery := 10 * time.Second
	// Pruning scans whole collections on a store without TTL indexes; the
	// first waits until the takeover's catch-up and reconciling are done.
	nextPrune := ts.now().Add(10 * time.Minute)
	for {
		select {
		case <-ts.ctx.Done():
			return
		case <-t.Chan():
		}
		ts.mu.Lock()
		degraded, frozen := ts.degraded, ts.frozenW
		ts.mu.Unlock()
		if degraded && ts.e.store.Ping(ts.ctx) == nil {
			ts.claimMu.Lock()
			err := ts.catchUp(frozen, ts.now())
			ts.claimMu.Unlock()
			if err == nil {
				ts.mu.Lock()
				ts.degraded = false
				ts.mu.Unlock()
				ts.log.Info("store is back; caught up", "from", frozen)
			}
		}
		if now := ts.now(); now.After(nextReconcile) {
			remaining, err := ts.reconcile(now)
			if err != nil {
				ts.log.Debug("reconciling interrupted runs failed", "error", err)
			}
			// Keep looking while a previous executor's runs are open, then
			// back off: new ones cannot appear during this term.
			if remaining == 0 && err == nil {
				reconcileEvery = min(reconcileEvery*2, 30*time.Minute)
			}
			nextReconcile = now.Add(reconcileEvery)
		}
		if now := ts.now(); now.After(nextPrune) {
			if err := ts.e.store.Prune(ts.ctx, now); err != nil {
				ts.log.Warn("pruning old records failed", "error", err)
			}
			nextPrune = now.Add(time.Hour)
		}
	}
}

// reconcile records runs that a previous executor claimed and dispatched
// (or was about to) but never recorded an outcome for. It waits until such a
// run would certainly have finished.
func (ts *termState) reconcile(now time.Time) (remaining int, err error) {
	// First the run documents of cells a previous executor claimed but did
	// not record, so that their ticks are among the unfinished claims.
	for {
		n, err := ts.e.store.RecordOpenCells(ts.ctx, ts.term.Epoch(), 64)
		if err != nil {
			return 1, err
		}
		if n > 0 {
			ts.log.Info("recorded the claims of cells a previous executor left", "cells", n)
		}
		if n < 64 {
			break
		}
	}
	open, err := ts.e.store.UnfinishedClaims(ts.ctx, ts.term.Epoch(), now.Add(-24*time.Hour))
	if err != nil || len(open) == 0 {
		return 0, err
	}
	var done []store.Run
	for _, r := range open {
		grace := 5 * time.Minute
		ts.mu.Lock()
		if en := ts.jobs[r.Job]; en != nil {
			grace = maxRunTime(en.job) + 30*time.Second
		}
		ts.mu.Unlock()
		if now.Sub(r.ClaimedAt) < grace {
			remaining++
			continue
		}
		fin := now
		r.Status, r.FinishedAt = store.StatusFailed, &fin
		r.Error = fmt.Sprintf("interrupted: executor %s (epoch %d) ended before recording an outcome; the target may or may not have been called", r.Instance, r.Epoch)
		done = append(done, r)
	}
	if len(done) > 0 {
		if _, err := ts.e.store.RecordResults(ts.ctx, done); err != nil {
			return remaining + len(done), err
		}
		ts.log.Warn("recorded runs interrupted by a previous executor", "runs", len(done))
	}
	return remaining, nil
}

// maxRunTime bounds how long one fire of j can take, retries included.
func maxRunTime(j *job.Job) time.Duration {
	d := time.Duration(j.MaxAttempts()) * j.AttemptTimeout()
	if j.Retry != nil {
		d += time.Duration(j.MaxAttempts()) * j.Retry.MaxBackoff.Std()
	}
	return d + j.Jitter.Std()
}

func (ts *termState) status() Status {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return Status{Leading: true, Epoch: ts.term.Epoch(), Loaded: ts.loaded.Load(), Jobs: len(ts.jobs),
		Groups: len(ts.groups), Degraded: ts.degraded, Watermark: ts.term.Watermark()}
}

// stop stops the timers and everything of this term that could still
// dispatch.
func (ts *termState) stop(ctx context.Context) {
	ts.stopping.Store(true)
	ts.stopCtx()
	if sched := ts.scheduler(); sched != nil {
		_ = sched.StopJobs() // stops timers at once; Shutdown would wait
	}
	ts.cancelPending("the executor stepped down before this fire's jittered start")
	done := make(chan struct{})
	go func() {
		ts.wg.Wait()
		ts.claimMu.Lock() // a claim pass in progress finishes first
		ts.claimMu.Unlock()
		ts.firstPasses.Wait()
		ts.feeders.Wait()
		if sched := ts.scheduler(); sched != nil {
			_ = sched.Shutdown()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		ts.log.Warn("stopping the executor took too long; continuing")
	}
}
