package crud_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/crud"
	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/token"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type fakeApplier struct {
	applied atomic.Int32
	delay   time.Duration
}

func (f *fakeApplier) Apply(ctx context.Context, term *token.Term, req crud.Request) crud.Reply {
	time.Sleep(f.delay)
	f.applied.Add(1)
	return crud.Reply{Status: http.StatusCreated, Result: crud.ResultCreated, Job: &job.Job{Name: req.Name}}
}

type env struct {
	st     *store.Store
	url    string
	queue  string
	client *crud.Client
}

func setup(t *testing.T, timeout time.Duration) *env {
	t.Helper()
	name := testenv.Name(t)
	e := &env{st: testenv.Store(t), url: testenv.AMQPURL(t), queue: name + ".crud"}
	testenv.DeleteQueues(t, e.queue)
	e.client = crud.NewClient(crud.ClientConfig{URL: e.url, Queue: e.queue, InstanceID: "api", Timeout: timeout}, e.st)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = e.client.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	require.Eventually(t, e.client.Connected, 5*time.Second, 10*time.Millisecond)
	return e
}

// lead starts a server under a real lease, as the executor would.
func (e *env) lead(t *testing.T, a crud.Applier) (stop func()) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, e.st.EnsureLease(ctx))
	l, err := e.st.Lease(ctx)
	require.NoError(t, err)
	l, err = e.st.AcquireLease(ctx, l, "exec", "dc", l.TokenGen, time.Now())
	require.NoError(t, err)
	term, end := token.NewTestTerm(ctx, l)
	srv := crud.NewServer(crud.ServerConfig{URL: e.url, Queue: e.queue, InstanceID: "exec"}, e.st, a)
	srv.Lead(term)
	return func() {
		stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		srv.Stop(stopCtx)
		end()
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	e := setup(t, 5*time.Second)
	a := &fakeApplier{}
	defer e.lead(t, a)()
	for range 20 {
		r, err := e.client.Do(context.Background(), crud.Request{Op: crud.OpCreate, Name: "a"})
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, r.Status)
		require.Equal(t, "exec", r.Executor)
	}
	require.EqualValues(t, 20, a.applied.Load())
}

func TestNoExecutorMeansNeverApplied(t *testing.T) {
	t.Parallel()
	e := setup(t, 500*time.Millisecond)
	start := time.Now()
	_, err := e.client.Do(context.Background(), crud.Request{Op: crud.OpCreate, Name: "late"})
	require.ErrorIs(t, err, crud.ErrNoExecutor)
	require.Less(t, time.Since(start), 2*time.Second)

	// An executor that appears afterwards must not apply it.
	a := &fakeApplier{}
	defer e.lead(t, a)()
	r, err := e.client.Do(context.Background(), crud.Request{Op: crud.OpCreate, Name: "fresh"})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, r.Status)
	time.Sleep(300 * time.Millisecond)
	require.EqualValues(t, 1, a.applied.Load(), "only the fresh request was applied")
}

func TestSlowExecutorStillAnswers(t *testing.T) {
	t.Parallel()
	// The request must reach the executor within the timeout (1 s, loose
	// for a loaded CI box); the write itself then outlasts it.
	e := setup(t, time.Second)
	a := &fakeApplier{delay: 2500 * time.Millisecond}
	defer e.lead(t, a)()
	r, err := e.client.Do(context.Background(), crud.Request{Op: crud.OpCreate, Name: "slow"})
	require.NoError(t, err, "the executor began the write before the caller gave up, so the caller gets its outcome")
	require.Equal(t, http.StatusCreated, r.Status)
	require.EqualValues(t, 1, a.applied.Load())
}
