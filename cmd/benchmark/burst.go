package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	mopts "go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/batonhq/baton/executor"
	"github.com/batonhq/baton/instance"
	"github.com/batonhq/baton/internal/testcluster"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
)

// storeTally adds up the executor's store batches and finished fires, from
// its hooks.
type storeTally struct {
	claimNS, recordNS, claimOps, recordOps atomic.Int64
	countNS, countOps                      atomic.Int64
	finished, recorded, failed             atomic.Int64
	unfired                                atomic.Int64 // claimed as skipped, missed or cancelled
	lastRecorded                           atomic.Int64 // unix ns
	want                                   int64
	all                                    chan struct{}
	once                                   sync.Once
	sent                                   sendLags
}

// sendLags gathers, from the executor's Fired hook, the lag of each fire
// scheduled in a window at the moment its request is sent, which is how the
// issue defines lag; the receiver's figures add the trip to it. The worst
// seconds show whether a tail is spread out or made by a few moments.
type sendLags struct {
	on       atomic.Bool // a window is set: other scenarios pay nothing
	mu       sync.Mutex
	from, to time.Time
	lags     []time.Duration
	byMinute [][]time.Duration           // by minute of the window
	worst    map[time.Time]time.Duration // by scheduled second
	first    map[time.Time]time.Duration // the least lag by scheduled second
	writes   []span                      // the executor's store writes in the window
}

// span is a stretch of work that competes with a second's fires: a store
// write of the executor, or a garbage collection of its process.
type span struct {
	what  string
	start time.Time
	took  time.Duration
}

// wrote notes a store write of the executor that has just ended.
func (s *sendLags) wrote(what string, took time.Duration) {
	if !s.on.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes = append(s.writes, span{what, time.Now().Add(-took), took})
}

// gcsSince returns this process's garbage collections that ended after
// from, each as its pause (the last 256 only): the executor runs in this
// process, and a collection's mark phase, before the pause, takes CPU from
// its fires.
func gcsSince(from time.Time) []span {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var out []span
	for i := range min(ms.NumGC, uint32(len(ms.PauseEnd))) {
		k := (ms.NumGC - 1 - i) % uint32(len(ms.PauseEnd))
		end := time.Unix(0, int64(ms.PauseEnd[k]))
		if end.Before(from) {
			break
		}
		out = append(out, span{"gc pause", end.Add(-time.Duration(ms.PauseNs[k])), time.Duration(ms.PauseNs[k])})
	}
	return out
}

// around lists the spans that ran in the second before sec's fires went
// out, or while they did: what a slow second may have waited for.
func around(spans []span, sec time.Time, lag time.Duration) string {
	var out []string
	for _, o := range spans {
		if o.start.Add(o.took).After(sec.Add(-time.Second)) && o.start.Before(sec.Add(lag)) {
			out = append(out, fmt.Sprintf("%s %s at %+.2fs", o.what, round(o.took), o.start.Sub(sec).Seconds()))
		}
	}
	if len(out) == 0 {
		return "no store write or gc near"
	}
	return strings.Join(out, ", ")
}

func (s *sendLags) window(from, to time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.from, s.to, s.lags, s.worst, s.first, s.writes = from, to, nil, map[time.Time]time.Duration{}, map[time.Time]time.Duration{}, nil
	s.byMinute = make([][]time.Duration, (to.Sub(from)+time.Minute-1)/time.Minute)
	s.on.Store(true)
}

func (s *sendLags) add(lag time.Duration) {
	if !s.on.Load() {
		return
	}
	at := time.Now().Add(-lag)
	s.mu.Lock()
	defer s.mu.Unlock()
	if at.Before(s.from) || !at.Before(s.to) {
		return
	}
	s.lags = append(s.lags, lag)
	m := int(at.Sub(s.from) / time.Minute)
	s.byMinute[m] = append(s.byMinute[m], lag)
	sec := at.Truncate(time.Second)
	s.worst[sec] = max(s.worst[sec], lag)
	if f, ok := s.first[sec]; !ok || lag < f {
		s.first[sec] = lag
	}
}

// stats sums up the window's lags.
func (s *sendLags) stats() lagStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return summarize(s.lags)
}

// minutes sums up each minute of the window.
func (s *sendLags) minutes() []lagStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]lagStats, len(s.byMinute))
	for i, lags := range s.byMinute {
		out[i] = summarize(lags)
	}
	return out
}

// note sums the window up: all fires, each second's first and last, and
// the five worst seconds, each with the store writes and collections near
// it.
func (s *sendLags) note() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := summarize(s.lags)
	spans := append(slices.Clone(s.writes), gcsSince(s.from)...)
	secs := slices.SortedFunc(maps.Keys(s.worst), func(a, b time.Time) int { return cmp.Compare(s.worst[b], s.worst[a]) })
	var worst []string
	for _, sec := range secs[:min(5, len(secs))] {
		worst = append(worst, fmt.Sprintf("%s %s (%s)", sec.Format("15:04:05"), round(s.worst[sec]), around(spans, sec, s.worst[sec])))
	}
	// Per second: when its first fire went out, and its last; a wave's
	// own length is the difference.
	firsts, lasts := slices.Collect(maps.Values(s.first)), slices.Collect(maps.Values(s.worst))
	slices.Sort(firsts)
	slices.Sort(lasts)
	return fmt.Sprintf("at send p50 %s p99 %s max %s; per second, first fire p50 %s p90 %s, last fire p50 %s p90 %s; worst seconds %s",
		round(st.P50), round(st.P99), round(st.Max), round(quantile(firsts, 0.5)), round(quantile(firsts, 0.9)), round(quantile(lasts, 0.5)), round(quantile(lasts, 0.9)), strings.Join(worst, ", "))
}

func newStoreTally(want int) *storeTally {
	return &storeTally{want: int64(want), all: make(chan struct{})}
}

func (t *storeTally) hooks() executor.Hooks {
	return executor.Hooks{
		Fired:    func(_ string, lag time.Duration) { t.sent.add(lag) },
		Recorded: func(string, string) { t.unfired.Add(1) },
		Finished: func(_, status string, _ time.Duration) {
			t.finished.Add(1)
			if status != store.StatusSucceeded {
				t.failed.Add(1)
			}
		},
		StoreOp: func(op string, n int, took time.Duration, err error) {
			t.sent.wrote(op, took)
			switch op {
			case "claim":
				t.claimNS.Add(int64(took))
				t.claimOps.Add(1)
			case "count":
				t.countNS.Add(int64(took))
				t.countOps.Add(1)
			case "record":
				t.recordNS.Add(int64(took))
				t.recordOps.Add(1)
				if err == nil {
					t.lastRecorded.Store(time.Now().UnixNano())
					if t.recorded.Add(int64(n)) >= t.want {
						t.once.Do(func() { close(t.all) })
					}
				}
			}
		},
	}
}

// batches sums up the executor's store work, for a row's note.
func (t *storeTally) batches() string {
	s := fmt.Sprintf("%d claim, %d record, %d count batches (count %.2fs)",
		t.claimOps.Load(), t.recordOps.Load(), t.countOps.Load(), time.Duration(t.countNS.Load()).Seconds())
	if f := t.failed.Load(); f > 0 {
		s += fmt.Sprintf("; %d failed", f)
	}
	if u := t.unfired.Load(); u > 0 {
		s += fmt.Sprintf("; %d recorded unfired (skipped, missed or cancelled)", u)
	}
	return s
}

// instanceConfig is an in-process instance with the defaults of
// config.yaml, except a faster first election (watchdog interval).
func instanceConfig(env *benchEnv, cluster, id string, hooks executor.Hooks) instance.Config {
	return instance.Config{
		Cluster: cluster, ID: id, Version: "bench",
		HTTPListen: "127.0.0.1:0", HTTPShutdownTimeout: 10 * time.Second,
		AMQPURL: env.o.amqpURL, Heartbeat: 5 * time.Second, ConnectTimeout: 5 * time.Second,
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: 10 * time.Second,
		MongoURI: env.aux.MongoURI, MongoDatabase: cluster, MongoTimeout: 5 * time.Second, RunsRetention: 720 * time.Hour,
		LeaseTTL: 5 * time.Second, RenewInterval: time.Second, HolderTTL: 1200 * time.Millisecond, HealthTimeout: time.Second,
		RotateInterval: 10 * time.Minute, WatchdogInterval: 500 * time.Millisecond,
		CRUDTimeout: 10 * time.Second, Workers: env.o.workers, ClaimBatch: env.o.claimBatch, ClaimLead: env.o.claimLead,
		Logger: env.log, ExecutorHooks: hooks,
	}
}

// clusterName is unique per run and scenario: it names the database and
// the queues.
func clusterName(scenario string, n int) string {
	return fmt.Sprintf("bench-%d-%s-%d", os.Getpid(), scenario, n)
}

// insertJobs writes n jobs straight into the store's jobs collection, as
// the executor would have (creating 100,000 through the API takes long),
// all with the same schedule.
func insertJobs(ctx context.Context, db *mongo.Database, prefix string, n int, schedule, url string) error {
	return insertEach(ctx, db, n, func(i int) *job.Job { return benchJob(prefix+strconv.Itoa(i), schedule, url) })
}

// insertEach inserts the jobs mk(0) .. mk(n-1), active from now, in
// batches.
func insertEach(ctx context.Context, db *mongo.Database, n int, mk func(i int) *job.Job) error {
	const batch = 1000
	now := time.Now().UTC().Truncate(time.Millisecond)
	docs := make([]any, 0, batch)
	for i := range n {
		j := mk(i)
		j.CreatedAt, j.UpdatedAt, j.ActiveSince = now, now, now
		docs = append(docs, j)
		if len(docs) == batch || i == n-1 {
			if _, err := db.Collection("jobs").InsertMany(ctx, docs); err != nil {
				return fmt.Errorf("insert jobs: %w", err)
			}
			docs = docs[:0]
		}
	}
	return nil
}

// openDB connects to the benchmark's store directly (for setup and checks,
// not through Baton) and drops the database on cleanup.
func openDB(ctx context.Context, env *benchEnv, name string) (*mongo.Database, func(), error) {
	mc, err := mongo.Connect(mopts.Client().ApplyURI(env.aux.MongoURI))
	if err != nil {
		return nil, nil, err
	}
	db := mc.Database(name)
	return db, func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = db.Drop(cctx)
		_ = mc.Disconnect(cctx)
		_ = testcluster.DeleteQueues(env.o.amqpURL, name+".token", name+".crud")
	}, nil
}

// running is an in-process instance.
type running struct {
	*instance.Instance
	stop   context.CancelFunc
	served chan error
	closed sync.Once
}

func startInstance(ctx context.Context, cfg instance.Config) (*running, error) {
	ictx, stop := context.WithCancel(ctx)
	inst, err := instance.Start(ictx, cfg)
	if err != nil {
		stop()
		return nil, err
	}
	r := &running{Instance: inst, stop: stop, served: make(chan error, 1)}
	go func() { r.served <- inst.Serve(ictx) }()
	return r, nil
}

// Close stops the instance and waits for it; it may be called again.
func (r *running) Close() {
	r.closed.Do(func() {
		r.stop()
		<-r.served
	})
}

// waitLoaded waits until the instance leads and has scheduled every job.
func waitLoaded(ctx context.Context, exec *executor.Executor, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !exec.Status().Loaded {
		if time.Now().After(deadline) {
			return fmt.Errorf("the executor did not load its jobs within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// startExecutor starts an in-process instance over the jobs already in the
// store and waits until it leads and has scheduled every one of them. The
// peak RSS is reset first, so that it covers the loaded jobs. It returns
// how long electing and loading took.
func startExecutor(ctx context.Context, env *benchEnv, cluster, id string, tally *storeTally, timeout time.Duration) (*running, time.Duration, error) {
	resetPeakRSS()
	t0 := time.Now()
	inst, err := startInstance(ctx, instanceConfig(env, cluster, id, tally.hooks()))
	if err != nil {
		return nil, 0, err
	}
	if err := waitLoaded(ctx, inst.Executor, timeout); err != nil {
		inst.Close()
		return nil, 0, err
	}
	return inst, time.Since(t0), nil
}

// burstProfiles names the files for profiles of a burst; empty: none.
type burstProfiles struct{ cpu, heap string }

// batonBurst runs an in-process Baton instance as the executor of n jobs
// that are all due at the same second, and measures at the receiver.
//
// In-process rather than the binary: the process's CPU time and peak RSS
// are then Baton's (the store and the receiver run in helper processes),
// and -cpuprofile and -memprofile profile Baton itself.
func batonBurst(ctx context.Context, env *benchEnv, n int, profiles burstProfiles) (row, error) {
	profile := profiles.cpu
	r := row{Scenario: "baton-burst", N: n}
	name := clusterName("burst", n)
	db, cleanup, err := openDB(ctx, env, name)
	if err != nil {
		return r, err
	}
	defer cleanup()
	lead := env.o.lead
	if lead == 0 {
		// Inserting runs at 2,000 to 4,000 jobs/s on FerretDB here, loading
		// faster; the election takes a second or two.
		lead = 8*time.Second + time.Duration(n)*700*time.Microsecond
	}
	at := burstInstant(time.Now(), lead)
	t0 := time.Now()
	if err := insertJobs(ctx, db, "b", n, cronAt(at), env.aux.URL+"/baton"); err != nil {
		return r, err
	}
	insertTook := time.Since(t0)

	tally := newStoreTally(n)
	inst, loaded, err := startExecutor(ctx, env, name, "burst", tally, time.Until(at))
	if err != nil {
		return r, fmt.Errorf("%w (raise -lead)", err)
	}
	defer inst.Close()
	if time.Until(at) < 300*time.Millisecond {
		return r, fmt.Errorf("loading took until %s before the burst instant; raise -lead", time.Until(at))
	}
	if err := env.aux.Reset(ctx); err != nil {
		return r, err
	}
	time.Sleep(time.Until(at) - 200*time.Millisecond)
	stopProfile := func() {}
	if profile != "" {
		if stopProfile, err = startCPUProfile(profile); err != nil {
			return r, err
		}
		defer stopProfile()
	}
	if profiles.heap != "" {
		defer profileHeapPeak(profiles.heap)()
	}
	m, stopLive, work := startMeter(env.aux), sampleLiveHeap(), readHeapWork()
	var timedOut error
	select {
	case <-tally.all:
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(env.o.timeout):
		// Report what was measured: a partial row says more than none.
		timedOut = fmt.Errorf("%d of %d runs recorded within %s", tally.recorded.Load(), n, env.o.timeout)
	}
	m.stop(&r)
	liveHeap, worked := stopLive(), readHeapWork().since(work)
	stopProfile()
	r.Recorded = time.Unix(0, tally.lastRecorded.Load()).Sub(at)
	r.Claim, r.Record = time.Duration(tally.claimNS.Load()), time.Duration(tally.recordNS.Load())
	st, err := env.aux.Stats(ctx)
	if err != nil {
		return r, err
	}
	r.fromReceiver(st, at)
	r.Note = fmt.Sprintf("insert %s, elect+load %s; %s; live heap peak %d MiB", round(insertTook), round(loaded), tally.batches(), liveHeap>>20) + "; " + worked
	if timedOut != nil {
		r.Note += fmt.Sprintf("; received %d", st.Count)
		return r, timedOut
	}
	// Exactly once: one claim and one outcome per job in the store.
	claims, results, err := countRuns(ctx, db, bson.M{})
	if err != nil {
		return r, err
	}
	if claims != int64(n) || results != int64(n) || st.Dups > 0 || st.Distinct != n {
		r.Note += fmt.Sprintf("; MISMATCH: %d claims, %d results, %d distinct fires, %d duplicates", claims, results, st.Distinct, st.Dups)
	}
	return r, nil
}

// countRuns counts the run documents (claims) matching filter, and their
// outcomes: result documents, and run documents written with their outcome.
func countRuns(ctx context.Context, db *mongo.Database, filter bson.M) (claims, outcomes int64, err error) {
	claims, err1 := db.Collection("runs").CountDocuments(ctx, filter)
	results, err2 := db.Collection("run_results").CountDocuments(ctx, filter)
	final := bson.M{"status": bson.M{"$in": []string{store.StatusSucceeded, store.StatusFailed, store.StatusCancelled}}}
	for k, v := range filter {
		final[k] = v
	}
	finished, err3 := db.Collection("runs").CountDocuments(ctx, final)
	return claims, results + finished, errors.Join(err1, err2, err3)
}
