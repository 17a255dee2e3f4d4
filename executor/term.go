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

	ready    chan struct{} // closed once jobs are loaded and scheduled
	loaded   atomic.Bool
	stopping atomic.Bool
	sched    gocron.Scheduler

	// claimMu serializes claim passes: group ticks, catch-up, triggers.
	claimMu sync.Mutex

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
		jobs:    map[string]*entry{},
		groups:  map[string]*group{},
		running: map[string]map[string]*fire{},
		pending: map[*fire]func() bool{},
	}
}

func (ts *termState) now() time.Time { return ts.e.clock.Now().UTC() }

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

// begin loads every job, catches up from the previous executor's watermark,
// and starts the timers. A store failure is retried while the term lasts.
func (ts *termState) begin() {
	begun := ts.now()
	b := backoff.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := ts.load()
		if err == nil {
			break
		}
		ts.log.Warn("loading jobs failed; retrying", "error", err)
		if !backoff.Sleep(ts.ctx, b.Next()) {
			return
		}
	}
	started := ts.now()
	from := ts.term.Lease().Watermark
	ts.claimMu.Lock()
	ts.mu.Lock()
	for _, g := range ts.groups {
		g.lastHandled = started
	}
	ts.mu.Unlock()
	err := ts.catchUp(from, started)
	ts.claimMu.Unlock()
	if err != nil {
		ts.log.Warn("catch-up failed; retrying once the store answers", "error", err)
		ts.markDegraded(from)
	}
	if err := ts.startTimers(); err != nil {
		ts.log.Error("starting the scheduler failed", "error", err)
		return
	}
	ts.loaded.Store(true)
	close(ts.ready)
	ts.mu.Lock() // writes may already be applying
	jobs, timers := len(ts.jobs), len(ts.groups)
	ts.mu.Unlock()
	ts.log.Info("executor running", "jobs", jobs, "timers", timers,
		"caught_up_from", from, "load_took", ts.now().Sub(begun))
	ts.goTracked(ts.watermarkLoop)
	ts.goTracked(ts.maintenanceLoop)
}

func (ts *termState) load() error {
	sched, err := gocron.NewScheduler(
		gocron.WithClock(ts.e.clock),
		gocron.WithLocation(time.UTC),
		gocron.WithStopTimeout(2*time.Second),
	)
	if err != nil {
		return fmt.Errorf("executor: new scheduler: %w", err)
	}
	ts.sched = sched
	n := 0
	err = ts.e.store.EachJob(ts.ctx, func(j *job.Job) error {
		n++
		if err := ts.addEntry(j); err != nil {
			// A job the store accepted but this version cannot parse is
			// skipped, not fatal for every other job.
			ts.log.Error("cannot schedule job", "job", j.Name, "error", err)
		}
		return nil
	})
	if err != nil {
		_ = sched.Shutdown()
		ts.mu.Lock()
		ts.jobs, ts.groups = map[string]*entry{}, map[string]*group{}
		ts.mu.Unlock()
		return err
	}
	return nil
}

// addEntry adds or replaces a job's entry and its group membership.
func (ts *termState) addEntry(j *job.Job) error {
	_, _, err := ts.addEntryGap(j)
	return err
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
	if err := ts.claimAndDispatch(plan); err != nil {
		ts.claimFailed(err)
	}
	return nil
}

// addEntryGap is addEntry that also returns, when the job joins a group
// that already handled ticks after the job became active, that span.
func (ts *termState) addEntryGap(j *job.Job) (*entry, [2]time.Time, error) {
	var gap [2]time.Time
	s, err := schedule.Parse(j.Schedule, j.Timezone)
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
	ts.removeLocked(j.Name)
	en := &entry{job: j, sched: s}
	ts.jobs[j.Name] = en
	if j.Paused {
		return en, gap, nil
	}
	key := s.Key()
	g := ts.groups[key]
	if g == nil {
		g = &group{key: key, sched: s, members: map[string]*entry{}, lastHandled: handledFrom}
		ts.groups[key] = g
		if ts.loaded.Load() {
			if err := ts.startGroup(g); err != nil {
				delete(ts.groups, key)
				return nil, gap, err
			}
		}
	} else if g.lastHandled.After(handledFrom) {
		gap = [2]time.Time{handledFrom, g.lastHandled}
	}
	g.members[j.Name] = en
	en.group = g
	return en, gap, nil
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
type cronAdapter struct{ s *schedule.Schedule }

func (c cronAdapter) IsValid(string, *time.Location, time.Time) error { return nil }
func (c cronAdapter) Next(last time.Time) time.Time                   { return c.s.Next(last) }

func (ts *termState) startGroup(g *group) error {
	gj, err := ts.sched.NewJob(
		gocron.CronJob(g.key, true),
		gocron.NewTask(func() { ts.tick(g) }),
		gocron.WithCronImplementation(cronAdapter{g.sched}),
		// A slow pass must not queue up behind itself: the next one claims
		// every tick since the last, so nothing is lost.
		gocron.WithSingletonMode(gocron.LimitModeReschedule),
		// Claim at once whatever came due since lastHandled: a job created
		// 50 ms before a tick whose timer starts after that tick would
		// otherwise wait a whole period, and its two ticks would meet in
		// one pass, where forbid skips the second.
		gocron.WithStartAt(gocron.WithStartImmediately()),
		gocron.WithName(g.key),
	)
	if err != nil {
		return fmt.Errorf("executor: schedule %q: %w", g.key, err)
	}
	g.gjob = gj
	return nil
}

func (ts *termState) startTimers() error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, g := range ts.groups {
		if err := ts.startGroup(g); err != nil {
			return err
		}
	}
	ts.sched.Start()
	return nil
}

// tick claims and dispatches every tick of g due since it last ran.
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
	for t := range g.sched.Ticks(from, now) {
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
	var plan []planned
	for _, t := range ticks {
		for _, en := range members {
			if !t.After(en.job.ActiveSince) {
				continue // the job did not exist, or was paused, then
			}
			if now.Sub(t) > en.job.StartingDeadline.Std() {
				plan = append(plan, planned{en: en, at: t, status: store.StatusMissed, trigger: store.TriggerSchedule,
					reason: fmt.Sprintf("the executor reached this tick after its starting deadline (%s)", en.job.StartingDeadline)})
				continue
			}
			plan = append(plan, planned{en: en, at: t, trigger: store.TriggerSchedule})
		}
	}
	if err := ts.claimAndDispatch(plan); err != nil {
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
	if from.IsZero() || !from.Before(now) {
		return nil
	}
	ts.mu.Lock()
	entries := make([]*entry, 0, len(ts.jobs))
	for _, en := range ts.jobs {
		if !en.job.Paused {
			entries = append(entries, en)
		}
	}
	ts.mu.Unlock()
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
	return ts.claimAndDispatch(plan)
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
	nextPrune := ts.now().Add(time.Minute)
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
	if ts.sched != nil {
		_ = ts.sched.StopJobs() // stops timers at once; Shutdown would wait
	}
	ts.cancelPending("the executor stepped down before this fire's jittered start")
	done := make(chan struct{})
	go func() {
		ts.wg.Wait()
		ts.claimMu.Lock() // a claim pass in progress finishes first
		ts.claimMu.Unlock()
		if ts.sched != nil {
			_ = ts.sched.Shutdown()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		ts.log.Warn("stopping the executor took too long; continuing")
	}
}
