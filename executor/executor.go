package executor

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/target"
	"github.com/batonhq/baton/token"
)

// Store is the part of the store the executor uses.
type Store interface {
	EachJob(ctx context.Context, fn func(*job.Job) error) error
	Job(ctx context.Context, name string) (*job.Job, error)
	CreateJob(ctx context.Context, f store.Fence, j *job.Job) error
	ReplaceJob(ctx context.Context, f store.Fence, j *job.Job) error
	DeleteJob(ctx context.Context, f store.Fence, name string) error
	SetPaused(ctx context.Context, f store.Fence, name string, paused bool, now time.Time) (*job.Job, error)
	Claim(ctx context.Context, f store.Fence, claims []store.Run) ([]bool, error)
	ClaimCells(ctx context.Context, f store.Fence, claims []store.Run) ([]bool, map[string][]int, error)
	RecordClaims(ctx context.Context, cells []string, runs []store.Run) ([]bool, error)
	RecordOpenCells(ctx context.Context, epoch int64, limit int) (int, error)
	RecordResults(ctx context.Context, runs []store.Run) ([]bool, error)
	InsertResults(ctx context.Context, runs []store.Run) ([]bool, error)
	CountTally(ctx context.Context, t *store.Tally) error
	UnfinishedClaims(ctx context.Context, epoch int64, since time.Time) ([]store.Run, error)
	WritesOf(ctx context.Context, epoch int64) (store.Writes, error)
	Prune(ctx context.Context, now time.Time) error
	Ping(ctx context.Context) error
}

// Dispatcher sends one fire to its target.
type Dispatcher interface {
	Dispatch(ctx context.Context, f target.Fire, allow func() error) target.Result
}

// Hooks receive events for metrics. Every field is optional.
type Hooks struct {
	// Fired is called when a fire's first attempt starts, with its lag
	// behind the scheduled (plus jitter) time.
	Fired func(jobName string, lag time.Duration)
	// Finished is called when a run's outcome is known.
	Finished func(jobName, status string, duration time.Duration)
	// Recorded is called for claims and runs recorded without a dispatch
	// (skipped, missed, cancelled).
	Recorded func(jobName, status string)
	// StoreOp is called after each store batch: "claim", "record" or
	// "count".
	StoreOp func(op string, n int, took time.Duration, err error)
}

// Config configures an Executor. Zero values take the noted defaults.
type Config struct {
	InstanceID string
	// Workers is the number of concurrent dispatches (256).
	Workers int
	// ClaimBatch is about the number of ticks claimed per store call
	// (4000); see claimParts.
	ClaimBatch int
	// LoadBatch is how many jobs join the schedule at a time when a term
	// loads them (1000): a job can fire once its batch is in.
	LoadBatch int
	// ShellEnabled allows shell targets (validated on writes).
	ShellEnabled bool
	// RecordBatch and RecordInterval bound how results are batched (500,
	// 100ms).
	RecordBatch    int
	RecordInterval time.Duration
	// ClaimHold is how long the recorder holds a cell's claims for their
	// outcomes before writing them as running (1s).
	ClaimHold time.Duration
	// ClaimLead is how long before its time a scheduled tick is claimed
	// (0: at its time). The fire still waits for its time, but the store
	// work is done by then: at 10,000 jobs due in one second, the first
	// fire went out 33 ms late without it and 1 ms late with 200ms. A
	// tick claimed ahead is this executor's to send: if it crashes in
	// between, the tick is recorded as interrupted, like a fire that was
	// waiting for a worker.
	ClaimLead time.Duration
	// CountInterval is the least time between writes of the job counters
	// (500ms), and CountBatch the jobs' counters one write takes (2000);
	// see counts.
	CountInterval time.Duration
	CountBatch    int
	// ApplyReadyTimeout bounds how long a write waits for a new term to
	// finish loading its jobs (30s).
	ApplyReadyTimeout time.Duration
	Clock             clockwork.Clock
	Logger            *slog.Logger
	Hooks             Hooks
}

// Executor runs jobs while this instance is the executor. It implements
// token.Leader and crud.Applier.
type Executor struct {
	cfg   Config
	store Store
	disp  Dispatcher
	log   *slog.Logger
	clock clockwork.Clock

	fires     chan *fire
	results   chan toRecord
	workers   sync.WaitGroup
	recorder  sync.WaitGroup
	closeMu   sync.RWMutex // guards sends on fires and results against Close
	closed    bool
	closeOnce sync.Once
	closeDone chan struct{} // closed when the workers and recorder ended
	// abandoned is set when Close gave up: what the recorder still holds
	// is left to the next executor, rather than tried against a store
	// that is being closed.
	abandoned atomic.Bool
	// unfed counts claimed fires not yet handed to the workers: waiting
	// for their time (ClaimLead) or for room in the queue.
	unfed atomic.Int64
	// unstarted counts fires handed to the workers whose first attempt has
	// not yet checked the term: Quiesce waits for them too, or a fire taken
	// by a worker just before the term ends would be refused.
	unstarted atomic.Int64
	// nextDue is when the next fires claimed ahead come due (unix ns).
	nextDue atomic.Int64
	// sending counts fires the workers are dispatching, and lastFed is
	// when a fire was last handed to them (unix ns): see busy.
	sending atomic.Int64
	lastFed atomic.Int64

	// preparing waits for the goroutine reading jobs ahead of a term.
	preparing sync.WaitGroup

	mu   sync.Mutex
	cur  *termState
	prep *prefetch // jobs read while waiting to lead, not yet taken
}

// New returns an executor. Start must be called before it can lead.
func New(cfg Config, st Store, disp Dispatcher) *Executor {
	cfg.Workers = cmp.Or(cfg.Workers, 256)
	cfg.ClaimBatch = cmp.Or(cfg.ClaimBatch, 4000)
	cfg.LoadBatch = cmp.Or(cfg.LoadBatch, 1000)
	cfg.RecordBatch = cmp.Or(cfg.RecordBatch, 500)
	cfg.RecordInterval = cmp.Or(cfg.RecordInterval, 100*time.Millisecond)
	cfg.ClaimHold = cmp.Or(cfg.ClaimHold, time.Second)
	cfg.CountInterval = cmp.Or(cfg.CountInterval, 500*time.Millisecond)
	cfg.CountBatch = cmp.Or(cfg.CountBatch, 2000)
	cfg.ApplyReadyTimeout = cmp.Or(cfg.ApplyReadyTimeout, 30*time.Second)
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Executor{
		cfg: cfg, store: st, disp: disp, clock: cfg.Clock,
		log:     cfg.Logger.With("component", "executor"),
		fires:   make(chan *fire, cfg.Workers*4),
		results: make(chan toRecord, cfg.RecordBatch*8),
	}
}

// Start starts the dispatch workers and the result recorder. They outlive
// terms: a dispatch sent under a term that has since ended still has its
// outcome recorded. Close stops them.
func (e *Executor) Start() {
	for range e.cfg.Workers {
		e.workers.Add(1)
		go func() {
			defer e.workers.Done()
			e.work()
		}()
	}
	e.recorder.Add(1)
	go func() {
		defer e.recorder.Done()
		e.record()
	}()
}

// Close waits for dispatches in flight and records their outcomes, or gives
// up when ctx ends. Call it after the last term has stopped. Calling it
// again waits for the same shutdown.
func (e *Executor) Close(ctx context.Context) error {
	e.closeOnce.Do(func() {
		e.closeMu.Lock()
		e.closed = true
		close(e.fires)
		e.closeMu.Unlock()
		e.closeDone = make(chan struct{})
		// Stops the reading ahead of a term, which preparing waits for.
		e.takePrefetch()
		go func() { // ends once the workers and the recorder have
			// Workers first: each sends its outcome to the recorder, which
			// then flushes everything and exits.
			e.workers.Wait()
			close(e.results)
			e.recorder.Wait()
			e.preparing.Wait()
			close(e.closeDone)
		}()
	})
	select {
	case <-e.closeDone:
		return nil
	case <-ctx.Done():
		e.abandoned.Store(true)
		return errors.New("executor: shutdown gave up with dispatches in flight or outcomes not yet recorded; the next executor records those runs as interrupted")
	}
}

// Status is a snapshot of the executor.
type Status struct {
	Leading   bool      `json:"leading"`
	Epoch     int64     `json:"epoch,omitempty"`
	Loaded    bool      `json:"loaded"`
	Jobs      int       `json:"jobs"`
	Groups    int       `json:"timers"`
	Degraded  bool      `json:"degraded"`
	Watermark time.Time `json:"watermark,omitzero"`
}

// Status returns a snapshot.
func (e *Executor) Status() Status {
	e.mu.Lock()
	ts := e.cur
	e.mu.Unlock()
	if ts == nil {
		return Status{}
	}
	return ts.status()
}

// Lead starts running jobs under term. Loading happens in the background.
func (e *Executor) Lead(term *token.Term) {
	ts := newTermState(e, term)
	// Taken now, before the elector ends the wait, which would drop it.
	ts.prep = e.takePrefetch()
	e.mu.Lock()
	e.cur = ts
	e.mu.Unlock()
	ts.start()
}

// Stop stops all firing of the current term and returns when no dispatch
// can start any more.
func (e *Executor) Stop(ctx context.Context) {
	e.mu.Lock()
	ts := e.cur
	e.cur = nil
	e.mu.Unlock()
	if ts != nil {
		ts.stop(ctx)
	}
}

// Quiesce prepares a handover while the term is still valid: it stops the
// timers, so that nothing more is claimed, and waits, for at most the
// claim lead and a quarter second, until every fire already claimed has
// gone to a worker. Without it, ticks claimed ahead of their time would be
// recorded as cancelled on every deploy, and the next executor would find
// them claimed. Stop must still follow.
func (e *Executor) Quiesce(ctx context.Context) {
	e.mu.Lock()
	ts := e.cur
	e.mu.Unlock()
	if ts == nil {
		return
	}
	if sched := ts.scheduler(); sched != nil {
		_ = sched.StopJobs()
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ClaimLead+250*time.Millisecond)
	defer cancel()
	t := e.clock.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for (e.unfed.Load() > 0 || e.unstarted.Load() > 0) && ts.term.Valid() {
		select {
		case <-ctx.Done():
			e.log.Info("handing over with claimed fires not yet sent; they are recorded as cancelled",
				"unsent", e.unfed.Load()+e.unstarted.Load())
			return
		case <-t.Chan():
		}
	}
}

// current returns the term state for term, if it is the current one.
func (e *Executor) current(term *token.Term) *termState {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur == nil || e.cur.term != term {
		return nil
	}
	return e.cur
}
