package store_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var ctx = context.Background()

func acquire(t *testing.T, s *store.Store, holder string) store.Lease {
	t.Helper()
	require.NoError(t, s.EnsureLease(ctx))
	l, err := s.Lease(ctx)
	require.NoError(t, err)
	if l.TokenGen == 0 {
		l, err = s.BumpTokenGen(ctx, l)
		require.NoError(t, err)
	}
	nl, err := s.AcquireLease(ctx, l, holder, "dc1", l.TokenGen, time.Now())
	require.NoError(t, err)
	return nl
}

func TestLeaseLifecycle(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	require.NoError(t, s.EnsureLease(ctx))
	require.NoError(t, s.EnsureLease(ctx), "EnsureLease is idempotent")

	l0, err := s.Lease(ctx)
	require.NoError(t, err)
	require.False(t, l0.Held())
	require.Zero(t, l0.Epoch)

	// Ten watchdogs race to publish the first token: one wins.
	var wins int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.BumpTokenGen(ctx, l0); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else {
				require.ErrorIs(t, err, store.ErrLeaseConflict)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, wins)
	l1, err := s.Lease(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, l1.TokenGen)

	// A token of the wrong generation cannot take the lease.
	_, err = s.AcquireLease(ctx, l1, "a", "dc1", 0, time.Now())
	require.ErrorIs(t, err, store.ErrLeaseConflict)

	a, err := s.AcquireLease(ctx, l1, "a", "dc1", 1, time.Now())
	require.NoError(t, err)
	require.EqualValues(t, 1, a.Epoch)
	require.True(t, a.Held())

	// b observed the lease before a renewed: its acquisition must fail.
	wm := time.Now().UTC().Truncate(time.Millisecond)
	a2, err := s.RenewLease(ctx, a, wm, time.Now())
	require.NoError(t, err)
	require.EqualValues(t, 1, a2.Renewals)
	require.True(t, a2.Watermark.Equal(wm))
	_, err = s.AcquireLease(ctx, a, "b", "dc2", 1, time.Now())
	require.ErrorIs(t, err, store.ErrLeaseConflict)

	// b takes over after observing no renewal: a is fenced off.
	b, err := s.AcquireLease(ctx, a2, "b", "dc2", 1, time.Now())
	require.NoError(t, err)
	require.EqualValues(t, 2, b.Epoch)
	require.True(t, b.Watermark.Equal(wm), "the watermark carries over to the next executor")
	_, err = s.RenewLease(ctx, a2, time.Now(), time.Now())
	require.ErrorIs(t, err, store.ErrStaleEpoch)
	require.ErrorIs(t, s.CheckFence(ctx, a2.Fence()), store.ErrStaleEpoch)
	require.NoError(t, s.CheckFence(ctx, b.Fence()))

	// Rotation by the holder, then release.
	b2, err := s.RotateTokenGen(ctx, b)
	require.NoError(t, err)
	require.EqualValues(t, 2, b2.TokenGen)
	_, err = s.RotateTokenGen(ctx, a2)
	require.ErrorIs(t, err, store.ErrStaleEpoch)
	require.NoError(t, s.ReleaseLease(ctx, b2, time.Now(), time.Now()))
	rel, err := s.Lease(ctx)
	require.NoError(t, err)
	require.False(t, rel.Held())
	require.ErrorIs(t, s.CheckFence(ctx, b2.Fence()), store.ErrStaleEpoch, "a released lease fences its old holder")
	c, err := s.AcquireLease(ctx, rel, "c", "dc3", 2, time.Now())
	require.NoError(t, err)
	require.EqualValues(t, 3, c.Epoch)
}

func newJob(name string) *job.Job {
	j := &job.Job{Name: name, Schedule: "* * * * *", Target: job.Target{Type: job.TargetHTTP, HTTP: &job.HTTPTarget{URL: "http://127.0.0.1:1/x"}}}
	j.Normalize()
	now := time.Now().UTC().Truncate(time.Millisecond)
	j.CreatedAt, j.UpdatedAt, j.ActiveSince = now, now, now
	return j
}

func TestJobWritesAreFenced(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	old := acquire(t, s, "old")
	require.NoError(t, s.CreateJob(ctx, old.Fence(), newJob("a")))
	require.ErrorIs(t, s.CreateJob(ctx, old.Fence(), newJob("a")), store.ErrExists)

	// A new executor takes over; the old one's writes are rejected.
	nl, err := s.AcquireLease(ctx, old, "new", "dc", old.TokenGen, time.Now())
	require.NoError(t, err)
	stale := old.Fence()
	tests := []struct {
		name string
		op   func() error
	}{
		{"create", func() error { return s.CreateJob(ctx, stale, newJob("b")) }},
		{"replace", func() error { return s.ReplaceJob(ctx, stale, newJob("a")) }},
		{"delete", func() error { return s.DeleteJob(ctx, stale, "a") }},
		{"pause", func() error { _, err := s.SetPaused(ctx, stale, "a", true, time.Now()); return err }},
		{"claim", func() error { _, err := s.Claim(ctx, stale, []store.Run{{FireID: "x", Job: "a"}}); return err }},
		{"begin request", func() error { _, err := s.BeginRequest(ctx, stale, "r1", time.Now()); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, tc.op(), store.ErrStaleEpoch)
		})
	}
	_, err = s.Job(ctx, "b")
	require.ErrorIs(t, err, store.ErrNotFound, "nothing was written under the stale epoch")

	f := nl.Fence()
	j := newJob("a")
	j.Description = "updated"
	require.NoError(t, s.ReplaceJob(ctx, f, j))
	got, err := s.Job(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, "updated", got.Description)
	require.EqualValues(t, 2, got.Epoch)
	require.ErrorIs(t, s.ReplaceJob(ctx, f, newJob("missing")), store.ErrNotFound)

	p, err := s.SetPaused(ctx, f, "a", true, time.Now())
	require.NoError(t, err)
	require.True(t, p.Paused)
	require.NoError(t, s.DeleteJob(ctx, f, "a"))
	require.ErrorIs(t, s.DeleteJob(ctx, f, "a"), store.ErrNotFound)
}

func TestJobQueries(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	f := acquire(t, s, "x").Fence()
	for i, team := range []string{"pay", "pay", "ops"} {
		j := newJob(fmt.Sprintf("job.%d", i))
		j.Labels = map[string]string{"team": team}
		require.NoError(t, s.CreateJob(ctx, f, j))
	}
	tests := []struct {
		q    store.JobQuery
		want []string
	}{
		{store.JobQuery{}, []string{"job.0", "job.1", "job.2"}},
		{store.JobQuery{Labels: map[string]string{"team": "pay"}}, []string{"job.0", "job.1"}},
		{store.JobQuery{NameContains: ".2"}, []string{"job.2"}},
		{store.JobQuery{After: "job.0", Limit: 1}, []string{"job.1"}},
	}
	for _, tc := range tests {
		jobs, err := s.Jobs(ctx, tc.q)
		require.NoError(t, err)
		var names []string
		for _, j := range jobs {
			names = append(names, j.Name)
		}
		require.Equal(t, tc.want, names, "%+v", tc.q)
	}
	var n int
	require.NoError(t, s.EachJob(ctx, func(*job.Job) error { n++; return nil }))
	require.Equal(t, 3, n)
}

// EachJob reads batches ahead of the caller: every job arrives once, across
// the small first batch and the large ones, and a caller's error stops the
// read and is returned.
func TestEachJobStreamsEveryJobOnce(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	ctx := context.Background()
	f := acquire(t, s, "x").Fence()
	const n = 2345
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- s.CreateJob(ctx, f, newJob(fmt.Sprintf("job-%04d", i))) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	seen := map[string]int{}
	require.NoError(t, s.EachJob(ctx, func(j *job.Job) error { seen[j.Name]++; return nil }))
	require.Len(t, seen, n)
	for name, c := range seen {
		require.Equal(t, 1, c, name)
	}

	stop := errors.New("enough")
	var got int
	err := s.EachJob(ctx, func(*job.Job) error {
		if got++; got == 150 {
			return stop
		}
		return nil
	})
	require.ErrorIs(t, err, stop)
	require.Equal(t, 150, got)
}

func TestClaimsAreUniquePerTick(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	f := acquire(t, s, "x").Fence()
	tick := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	claim := func(id, jobName string, at time.Time) store.Run {
		return store.Run{FireID: id, Job: jobName, ScheduledAt: at, Trigger: store.TriggerSchedule, Status: store.StatusRunning, Epoch: f.Epoch, ClaimedAt: time.Now()}
	}
	got, err := s.Claim(ctx, f, []store.Run{claim("1", "a", tick), claim("2", "b", tick)})
	require.NoError(t, err)
	require.Equal(t, []bool{true, true}, got)
	// Same ticks under new fire ids, as a second executor would try: only the new tick is claimed.
	got, err = s.Claim(ctx, f, []store.Run{claim("3", "a", tick), claim("4", "a", tick.Add(time.Second)), claim("5", "b", tick)})
	require.NoError(t, err)
	require.Equal(t, []bool{false, true, false}, got)

	// Concurrent claimers of one tick: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.Claim(ctx, f, []store.Run{claim(fmt.Sprint("c", i), "race", tick)})
			require.NoError(t, err)
			if c[0] {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, wins)
}

func TestResultsCountersAndRunQueries(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	f := acquire(t, s, "x").Fence()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var claims []store.Run
	for i := range 6 {
		claims = append(claims, store.Run{FireID: fmt.Sprint("f", i), Job: "a.b", ScheduledAt: base.Add(time.Duration(i) * time.Minute),
			Trigger: store.TriggerSchedule, Status: store.StatusRunning, Epoch: f.Epoch, ClaimedAt: base})
	}
	claims = append(claims, store.Run{FireID: "skip", Job: "a.b", ScheduledAt: base.Add(10 * time.Minute), Status: store.StatusSkipped, Reason: "previous run in progress", Epoch: f.Epoch, ClaimedAt: base})
	_, err := s.Claim(ctx, f, claims)
	require.NoError(t, err)

	finish := func(i int, status string) store.Run {
		r := claims[i]
		r.Status = status
		fin := r.ScheduledAt.Add(time.Second)
		r.StartedAt, r.FinishedAt = &r.ScheduledAt, &fin
		return r
	}
	// f0 ok, f1 fail, f2 fail | f3 ok, f4 fail; f5 still running.
	rec, err := s.RecordResults(ctx, []store.Run{finish(0, store.StatusSucceeded), finish(1, store.StatusFailed), finish(2, store.StatusFailed)})
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, true}, rec)
	rec, err = s.RecordResults(ctx, []store.Run{finish(3, store.StatusSucceeded), finish(4, store.StatusFailed), finish(1, store.StatusSucceeded)})
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, false}, rec, "the first outcome recorded wins")

	j := newJob("a.b")
	require.NoError(t, s.CreateJob(ctx, f, j))
	got, err := s.Job(ctx, "a.b")
	require.NoError(t, err)
	require.EqualValues(t, 5, got.RunCount)
	require.EqualValues(t, 2, got.SuccessCount)
	require.EqualValues(t, 3, got.FailureCount)
	require.EqualValues(t, 1, got.ConsecutiveFailures)
	require.NotNil(t, got.LastRun)
	require.Equal(t, "f4", got.LastRun.FireID)
	require.Equal(t, store.StatusFailed, got.LastRun.Status)
	require.True(t, got.LastRun.ScheduledAt.Equal(base.Add(4*time.Minute)), "last run scheduled %s", got.LastRun.ScheduledAt)
	require.True(t, got.LastRun.FinishedAt.Equal(base.Add(4*time.Minute+time.Second)), "last run finished %s", got.LastRun.FinishedAt)
	require.True(t, got.LastSuccessAt.Equal(base.Add(3*time.Minute+time.Second)), "last success %v", got.LastSuccessAt)
	require.True(t, got.LastFailureAt.Equal(base.Add(4*time.Minute+time.Second)), "last failure %v", got.LastFailureAt)

	tests := []struct {
		name string
		q    store.RunQuery
		want []string
	}{
		{"newest first", store.RunQuery{Job: "a.b", Limit: 3}, []string{"skip", "f5", "f4"}},
		{"before cursor", store.RunQuery{Job: "a.b", Before: base.Add(4 * time.Minute), Limit: 2}, []string{"f3", "f2"}},
		{"failed", store.RunQuery{Job: "a.b", Status: store.StatusFailed}, []string{"f4", "f2", "f1"}},
		{"failed since", store.RunQuery{Status: store.StatusFailed, Since: base.Add(2 * time.Minute)}, []string{"f4", "f2"}},
		{"running", store.RunQuery{Job: "a.b", Status: store.StatusRunning}, []string{"f5"}},
		{"skipped", store.RunQuery{Status: store.StatusSkipped}, []string{"skip"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runs, err := s.Runs(ctx, tc.q)
			require.NoError(t, err)
			var ids []string
			for _, r := range runs {
				ids = append(ids, r.FireID)
			}
			require.Equal(t, tc.want, ids)
		})
	}
	runs, err := s.Runs(ctx, store.RunQuery{Job: "a.b", Limit: 10})
	require.NoError(t, err)
	require.Equal(t, store.StatusSucceeded, runs[len(runs)-1].Status, "claims are merged with their outcomes")

	un, err := s.UnfinishedClaims(ctx, f.Epoch+1, base)
	require.NoError(t, err)
	require.Len(t, un, 1)
	require.Equal(t, "f5", un[0].FireID)

	require.NoError(t, s.DeleteJob(ctx, f, "a.b"))
	require.NoError(t, s.CreateJob(ctx, f, newJob("a.b")))
	got, err = s.Job(ctx, "a.b")
	require.NoError(t, err)
	require.Zero(t, got.RunCount, "a re-created job starts with fresh counters")
}

func TestRequestIsDecidedOnce(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	f := acquire(t, s, "x").Fence()

	_, err := s.BeginRequest(ctx, f, "r1", time.Now())
	require.NoError(t, err)
	rec, err := s.AbandonRequest(ctx, "r1", time.Now())
	require.ErrorIs(t, err, store.ErrExists)
	require.Equal(t, store.RequestApplying, rec.State)
	require.NoError(t, s.FinishRequest(ctx, f, "r1", []byte(`{"ok":true}`), time.Now()))
	rec, err = s.Request(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, store.RequestDone, rec.State)
	require.JSONEq(t, `{"ok":true}`, string(rec.Reply))
	require.NoError(t, s.FinishRequest(ctx, f, "r1", []byte(`{"ok":true}`), time.Now()), "a redelivery may finish it again")
	rec, err = s.AbandonRequest(ctx, "r1", time.Now())
	require.ErrorIs(t, err, store.ErrExists, "a finished request is never abandoned")
	require.Equal(t, store.RequestDone, rec.State)
	require.JSONEq(t, `{"ok":true}`, string(rec.Reply))
	rec, err = s.BeginRequest(ctx, f, "r1", time.Now())
	require.ErrorIs(t, err, store.ErrExists, "a redelivered request is not applied again")
	require.Equal(t, store.RequestDone, rec.State)

	_, err = s.AbandonRequest(ctx, "r2", time.Now())
	require.NoError(t, err)
	rec, err = s.BeginRequest(ctx, f, "r2", time.Now())
	require.ErrorIs(t, err, store.ErrExists, "an abandoned request is never applied")
	require.Equal(t, store.RequestAbandoned, rec.State)
}

// WritesOf counts an executor's forwarded writes as begun when it claims
// them and as finished when their replies are stored, and no one else's: a
// successor relies on it to know that jobs it read before taking over did
// not change meanwhile.
func TestWritesOfCountsOneExecutorsWrites(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	old := acquire(t, s, "old").Fence()
	step := func(name string, do func() error, want store.Writes) {
		t.Helper()
		require.NoError(t, do(), name)
		got, err := s.WritesOf(ctx, old.Epoch)
		require.NoError(t, err, name)
		require.Equal(t, want, got, name)
	}
	begin := func(id string) func() error {
		return func() error { _, err := s.BeginRequest(ctx, old, id, time.Now()); return err }
	}
	finish := func(id string) func() error {
		return func() error { return s.FinishRequest(ctx, old, id, []byte(`{}`), time.Now()) }
	}
	step("nothing yet", func() error { return nil }, store.Writes{})
	step("one begun", begin("w1"), store.Writes{Begun: 1})
	step("it finished", finish("w1"), store.Writes{Begun: 1, Finished: 1})
	step("finished again by a redelivery", finish("w1"), store.Writes{Begun: 1, Finished: 1})
	step("a caller gave up on another", func() error { _, err := s.AbandonRequest(ctx, "w2", time.Now()); return err },
		store.Writes{Begun: 1, Finished: 1})
	step("a third begun", begin("w3"), store.Writes{Begun: 2, Finished: 1})

	other, err := s.WritesOf(ctx, old.Epoch+1)
	require.NoError(t, err)
	require.Equal(t, store.Writes{}, other, "another epoch's writes")
}

// A request that the version before separate replies finished, with its
// reply in the request document, reads as done.
func TestRequestFinishedInPlaceIsDone(t *testing.T) {
	t.Parallel()
	name := testenv.Name(t)
	s := testenv.StoreNamed(t, name)
	mc, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)))
	require.NoError(t, err)
	defer func() { _ = mc.Disconnect(ctx) }()
	_, err = mc.Database(name).Collection("crud_requests").InsertOne(ctx, bson.M{"_id": "old",
		"state": store.RequestDone, "epoch": 1, "reply": []byte(`{"ok":true}`), "created_at": time.Now().UTC()})
	require.NoError(t, err)

	rec, err := s.AbandonRequest(ctx, "old", time.Now())
	require.ErrorIs(t, err, store.ErrExists)
	require.Equal(t, store.RequestDone, rec.State)
	require.JSONEq(t, `{"ok":true}`, string(rec.Reply))
}

func TestInstanceIDClash(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	now := time.Now().UTC()
	a := store.Instance{ID: "host-1", Session: "s1", Role: store.RoleStandby, StartedAt: now, LastSeen: now}
	require.NoError(t, s.RegisterInstance(ctx, a, 10*time.Second))

	b := a
	b.Session = "s2"
	err := s.RegisterInstance(ctx, b, 10*time.Second)
	require.ErrorIs(t, err, store.ErrInstanceIDUsed, "a live instance with the same id is a clash")

	b.LastSeen = now.Add(time.Minute)
	require.NoError(t, s.RegisterInstance(ctx, b, 10*time.Second), "a stale registration is taken over")
	err = s.Heartbeat(ctx, a)
	require.True(t, errors.Is(err, store.ErrInstanceIDUsed), "the old session learns it lost its id: %v", err)
	require.NoError(t, s.Heartbeat(ctx, b))
	list, err := s.Instances(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
}

// TestLeaseTransitionsAreAtomic races many takeovers and a renewal for the
// same lease state. Exactly one may win: FerretDB's conditional updates are
// not atomic, so the lease must not depend on them.
func TestLeaseTransitionsAreAtomic(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	a := acquire(t, s, "a")
	for round := range 5 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := []string{}
		for i := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				name := fmt.Sprint("taker", i)
				if i == 0 {
					name = "renewal"
					_, err = s.RenewLease(ctx, a, time.Now(), time.Now())
				} else {
					_, err = s.AcquireLease(ctx, a, name, "dc", a.TokenGen, time.Now())
				}
				if err == nil {
					mu.Lock()
					winners = append(winners, name)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Len(t, winners, 1, "round %d: winners %v", round, winners)
		cur, err := s.Lease(ctx)
		require.NoError(t, err)
		a = cur
	}
}

// TestReopen opens a database that already has Baton's indexes, as every
// instance after the first does.
func TestReopen(t *testing.T) {
	t.Parallel()
	name := testenv.Name(t)
	testenv.StoreNamed(t, name)
	testenv.StoreNamed(t, name)
	testenv.StoreNamed(t, name)
}

// Counters written by versions with integer shard ids are still read and
// continued by the string-keyed shards.
func TestLegacyCounterShardsAreAdded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := testenv.Name(t)
	s := testenv.StoreNamed(t, name)
	f := acquire(t, s, "x").Fence()
	require.NoError(t, s.CreateJob(ctx, f, newJob("a.b")))

	mc, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)))
	require.NoError(t, err)
	defer func() { _ = mc.Disconnect(ctx) }()
	h := fnv.New32a()
	_, _ = h.Write([]byte("a.b"))
	lastOK := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err = mc.Database(name).Collection("job_stats").InsertOne(ctx, bson.M{"_id": int(h.Sum32() % 64),
		"jobs": bson.M{"a~b": bson.M{"run": 10, "ok": 7, "fail": 3, "consec": 2, "last_ok": lastOK}}})
	require.NoError(t, err)

	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	result := func(id, status string, i int) store.Run {
		fin := base.Add(time.Duration(i) * time.Minute)
		return store.Run{FireID: id, Job: "a.b", ScheduledAt: fin, Status: status, Epoch: f.Epoch, FinishedAt: &fin}
	}
	_, err = s.RecordResults(ctx, []store.Run{result("r1", store.StatusFailed, 1)})
	require.NoError(t, err)
	got, err := s.Job(ctx, "a.b")
	require.NoError(t, err)
	require.EqualValues(t, 11, got.RunCount)
	require.EqualValues(t, 7, got.SuccessCount)
	require.EqualValues(t, 4, got.FailureCount)
	require.EqualValues(t, 3, got.ConsecutiveFailures, "the legacy streak continues")
	require.True(t, got.LastSuccessAt.Equal(lastOK))

	_, err = s.RecordResults(ctx, []store.Run{result("r2", store.StatusSucceeded, 2)})
	require.NoError(t, err)
	got, err = s.Job(ctx, "a.b")
	require.NoError(t, err)
	require.EqualValues(t, 12, got.RunCount)
	require.EqualValues(t, 0, got.ConsecutiveFailures)
	require.Equal(t, "r2", got.LastRun.FireID)
}

// An executor that verified its fence keeps checking it with one read; each
// way the lease can change under it, seen through another handle as another
// process would, must still fence it off.
func TestFenceCheckSeesEveryChangeMadeElsewhere(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(t *testing.T, other *store.Store, held store.Lease)
	}{
		{"takeover", func(t *testing.T, other *store.Store, held store.Lease) {
			_, err := other.AcquireLease(ctx, held, "b", "dc2", held.TokenGen, time.Now())
			require.NoError(t, err)
		}},
		{"release", func(t *testing.T, other *store.Store, held store.Lease) {
			require.NoError(t, other.ReleaseLease(ctx, held, time.Now(), time.Now()))
		}},
		{"token re-insert", func(t *testing.T, other *store.Store, held store.Lease) {
			_, err := other.BumpTokenGen(ctx, held)
			require.NoError(t, err)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := testenv.Name(t)
			mine, other := testenv.StoreNamed(t, name), testenv.StoreNamed(t, name)
			held := acquire(t, mine, "a")
			held, err := mine.RenewLease(ctx, held, time.Now(), time.Now())
			require.NoError(t, err)
			for range 3 { // verified, then checked by the one-read path
				require.NoError(t, mine.CheckFence(ctx, held.Fence()))
			}
			seen, err := other.Lease(ctx)
			require.NoError(t, err)
			require.Equal(t, held.Renewals, seen.Renewals)
			tc.change(t, other, seen)
			require.ErrorIs(t, mine.CheckFence(ctx, held.Fence()), store.ErrStaleEpoch)
			_, err = mine.RenewLease(ctx, held, time.Now(), time.Now())
			require.ErrorIs(t, err, store.ErrStaleEpoch)
			require.ErrorIs(t, mine.CheckFence(ctx, held.Fence()), store.ErrStaleEpoch)
		})
	}
}

// Concurrent writes are committed in shared batches; each caller still gets
// its own answer: a duplicate name or request, or a stale fence, fails that
// call alone.
func TestConcurrentWritesGetTheirOwnAnswers(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	old := acquire(t, s, "old")
	cur, err := s.AcquireLease(ctx, old, "cur", "dc1", old.TokenGen, time.Now())
	require.NoError(t, err)
	require.NoError(t, s.CreateJob(ctx, cur.Fence(), newJob("taken")))

	type call struct {
		name   string
		fence  store.Fence
		want   error // nil: success
		reqID  string
		reqErr error
	}
	var calls []call
	for i := range 40 {
		calls = append(calls, call{name: fmt.Sprintf("job-%d", i), fence: cur.Fence(), reqID: fmt.Sprintf("r-%d", i)})
	}
	calls = append(calls,
		call{name: "taken", fence: cur.Fence(), want: store.ErrExists, reqID: "r-taken"},
		call{name: "stale", fence: old.Fence(), want: store.ErrStaleEpoch, reqID: "r-stale", reqErr: store.ErrStaleEpoch},
		call{name: "job-41", fence: cur.Fence(), reqID: "r-0"}, // a redelivered request
	)
	var wg sync.WaitGroup
	var begun atomic.Int64
	start := make(chan struct{})
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.BeginRequest(ctx, c.fence, c.reqID, time.Now())
			switch {
			case c.reqID == "r-0": // begun by exactly one of its two callers
				if err == nil {
					begun.Add(1)
				} else {
					require.ErrorIs(t, err, store.ErrExists)
				}
				return
			case c.reqErr != nil:
				require.ErrorIs(t, err, c.reqErr, c.reqID)
				return
			}
			require.NoError(t, err, c.reqID)
			err = s.CreateJob(ctx, c.fence, newJob(c.name))
			if c.want != nil {
				require.ErrorIs(t, err, c.want, c.name)
			} else {
				require.NoError(t, err, c.name)
			}
			require.NoError(t, s.FinishRequest(ctx, c.fence, c.reqID, []byte(`{"name":"`+c.name+`"}`), time.Now()))
		}()
	}
	close(start)
	wg.Wait()
	require.EqualValues(t, 1, begun.Load())
	for _, c := range calls[:40] {
		if c.reqID == "r-0" {
			continue
		}
		rec, err := s.Request(ctx, c.reqID)
		require.NoError(t, err)
		require.Equal(t, store.RequestDone, rec.State, c.reqID)
		require.JSONEq(t, `{"name":"`+c.name+`"}`, string(rec.Reply))
		_, err = s.Job(ctx, c.name)
		require.NoError(t, err, c.name)
	}
	_, err = s.Job(ctx, "stale")
	require.ErrorIs(t, err, store.ErrNotFound)
}
