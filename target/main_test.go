package target_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/target"
)

// TestMain checks that no test leaves a goroutine behind: the dispatcher
// owns the goroutines of its AMQP connection and of every command it runs.
// It replaces testenv.Main, which would exit before the check; these tests
// use the broker but not the embedded store that testenv.Main stops.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// scheduled is not in UTC, to check that identification converts it.
var scheduled = time.Date(2026, 3, 29, 2, 30, 0, 123456789, time.FixedZone("CEST", 2*60*60))

const scheduledHeader = "2026-03-29T00:30:00.123456789Z"

type testBundle struct {
	disp *target.Dispatcher
	logs *syncBuffer
}

type setupOpts struct {
	cfg    target.Config
	noWait bool // replace the backoff wait by an immediate return
}

func setup(t *testing.T, o setupOpts) *testBundle {
	t.Helper()
	b := &testBundle{logs: &syncBuffer{}}
	cfg := o.cfg
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.noWait {
		cfg.Sleep = func(ctx context.Context, _ time.Duration) error { return context.Cause(ctx) }
	}
	d, err := target.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	b.disp = d
	return b
}

func allowAll() error { return nil }

func fireOf(j *job.Job) target.Fire {
	return target.Fire{FireID: "fire-" + j.Name, Job: j, ScheduledAt: scheduled, Trigger: store.TriggerSchedule, Instance: "i1", Epoch: 7}
}

func normalized(j *job.Job, opts []func(*job.Job)) *job.Job {
	if j.Name == "" {
		j.Name = "job"
	}
	j.Schedule = "* * * * *"
	for _, o := range opts {
		o(j)
	}
	j.Normalize()
	return j
}

func httpJob(url string, opts ...func(*job.Job)) *job.Job {
	return normalized(&job.Job{Target: job.Target{Type: job.TargetHTTP, HTTP: &job.HTTPTarget{URL: url}}}, opts)
}

func amqpJob(exchange, key string, opts ...func(*job.Job)) *job.Job {
	return normalized(&job.Job{Target: job.Target{Type: job.TargetAMQP, AMQP: &job.AMQPTarget{Exchange: exchange, RoutingKey: key}}}, opts)
}

func shellJob(cmd []string, opts ...func(*job.Job)) *job.Job {
	return normalized(&job.Job{Target: job.Target{Type: job.TargetShell, Shell: &job.ShellTarget{Command: cmd}}}, opts)
}

func withTimeout(d time.Duration) func(*job.Job) {
	return func(j *job.Job) { j.Timeout = job.Duration(d) }
}

func withRetry(attempts int, backoff, maxBackoff time.Duration) func(*job.Job) {
	return func(j *job.Job) {
		j.Retry = &job.Retry{MaxAttempts: attempts, Backoff: job.Duration(backoff), MaxBackoff: job.Duration(maxBackoff)}
	}
}

// requireAttempts checks that res lists n attempts, numbered from 1, in
// order, each failed but the last when it succeeded.
func requireAttempts(t *testing.T, res target.Result, n int) {
	t.Helper()
	require.Len(t, res.Attempts, n, "attempts: %+v", res.Attempts)
	for i, a := range res.Attempts {
		require.Equal(t, i+1, a.Number)
		require.False(t, a.StartedAt.IsZero())
		require.False(t, a.FinishedAt.Before(a.StartedAt))
		if i < n-1 || res.Status != store.StatusSucceeded {
			require.NotEmpty(t, a.Error, "attempt %d", a.Number)
		} else {
			require.Empty(t, a.Error)
		}
	}
	if n > 0 {
		require.Equal(t, res.Attempts[0].StartedAt, res.StartedAt)
	} else {
		require.True(t, res.StartedAt.IsZero(), "nothing was started")
	}
	require.False(t, res.FinishedAt.IsZero())
}

// countingAllow allows the first n calls and refuses the rest.
type countingAllow struct {
	mu    sync.Mutex
	calls int
	n     int
}

var errLostLead = errors.New("this executor lost the lead")

func (c *countingAllow) allow() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.calls > c.n {
		return errLostLead
	}
	return nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
