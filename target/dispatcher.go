package target

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batonhq/baton/internal/backoff"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
)

// DefaultMaxConnsPerHost is the default of Config.MaxConnsPerHost.
const DefaultMaxConnsPerHost = 64

// Config configures a Dispatcher.
type Config struct {
	// AMQPURL is the broker that amqp targets publish to: Baton's own. The
	// connection is made on the first amqp fire, not by New. Empty: amqp
	// fires fail with ErrNoBroker.
	AMQPURL string
	// ShellEnabled allows shell targets. Default false: shell fires fail with
	// job.ErrShellDisabled and run nothing.
	ShellEnabled bool
	// MaxConnsPerHost bounds the HTTP connections, busy or idle, to one
	// target host. A request over the bound waits for a connection within
	// its attempt timeout. Default DefaultMaxConnsPerHost.
	MaxConnsPerHost int
	// Logger receives the dispatcher's logs, tagged component=target.
	// Default slog.Default().
	Logger *slog.Logger
	// Sleep waits d between attempts and returns early with an error when
	// ctx ends. Default: a timer. Tests replace it to skip or record the
	// backoff.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Dispatcher sends fires to their targets. It is safe for concurrent use:
// the executor calls Dispatch from all its workers at once, and they share
// one HTTP transport and one AMQP connection.
type Dispatcher struct {
	log     *slog.Logger
	sleep   func(ctx context.Context, d time.Duration) error
	senders map[string]sender

	amqp      *amqpSender
	http      *httpSender
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// sender makes one attempt at one kind of target. It calls allow after the
// preparation that sends nothing (validating, building the request,
// connecting to the broker) and immediately before anything reaches the
// target, so that the fencing check is as late as it can be. A refusal is
// reported in outcome.refused.
type sender interface {
	send(ctx context.Context, f *Fire, attempt int, allow func() error) outcome
}

// outcome is what one attempt reports.
type outcome struct {
	refused   error // allow refused: nothing was sent
	err       error // the attempt failed
	permanent bool  // retrying cannot help (the target is misconfigured)

	httpStatus int
	confirmed  bool
	exitCode   *int
	output     string
}

// failure is an attempt that failed before sending because of the job
// itself; it is not retried.
func failure(err error) outcome { return outcome{err: err, permanent: true} }

// New returns a Dispatcher. It connects to nothing yet.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.MaxConnsPerHost < 0 {
		return nil, fmt.Errorf("target: MaxConnsPerHost must not be negative, got %d", cfg.MaxConnsPerHost)
	}
	cfg.MaxConnsPerHost = cmp.Or(cfg.MaxConnsPerHost, DefaultMaxConnsPerHost)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	log := cfg.Logger.With("component", "target")
	a, err := newAMQPSender(cfg.AMQPURL, log)
	if err != nil {
		return nil, err
	}
	h := newHTTPSender(cfg.MaxConnsPerHost)
	return &Dispatcher{
		log:   log,
		sleep: cfg.Sleep,
		senders: map[string]sender{
			job.TargetHTTP:  h,
			job.TargetAMQP:  a,
			job.TargetShell: &shellSender{enabled: cfg.ShellEnabled},
		},
		amqp: a,
		http: h,
	}, nil
}

// Close closes the AMQP connection, waits for the goroutines that watch it
// and drops idle HTTP connections. It is idempotent. Fires dispatched after
// Close are cancelled; Close does not wait for Dispatch calls in flight, so
// stop them first (an amqp fire in flight fails when the connection goes).
func (d *Dispatcher) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		d.closeErr = d.amqp.close()
		d.http.close()
	})
	return d.closeErr
}

// Dispatch makes up to f.Job.MaxAttempts() attempts at f's target, each
// under f.Job.AttemptTimeout(), with exponential backoff between them, and
// returns the outcome. It never returns an error: every failure is a
// Result.
//
// allow is called once per attempt, immediately before anything is sent;
// when it returns an error nothing more is sent and the fire is cancelled
// with that error; a nil allow allows every attempt. When ctx ends the attempt in progress is aborted (a
// command is killed) and the fire is cancelled with context.Cause(ctx).
func (d *Dispatcher) Dispatch(ctx context.Context, f Fire, allow func() error) (res Result) {
	defer func() { res.FinishedAt = time.Now().UTC() }()
	if d.closed.Load() {
		return Result{Status: store.StatusCancelled, Error: ErrClosed.Error()}
	}
	if f.Job == nil {
		return Result{Status: store.StatusFailed, Error: "target: the fire has no job"}
	}
	if allow == nil {
		allow = allowAll
	}
	j := f.Job
	s, ok := d.senders[j.Target.Type]
	if !ok {
		return Result{Status: store.StatusFailed, Error: clip(fmt.Sprintf("target: unknown target type %q", j.Target.Type), MaxError)}
	}
	timeout, attempts := j.AttemptTimeout(), j.MaxAttempts()

	for n := 1; ; n++ {
		if ctx.Err() != nil {
			res.Status, res.Error = store.StatusCancelled, cancelled(ctx)
			break
		}
		actx, cancel := context.WithTimeoutCause(ctx, timeout, errAttemptTimeout)
		start := time.Now()
		out := s.send(actx, &f, n, allow)
		timedOut := ctx.Err() == nil && errors.Is(context.Cause(actx), errAttemptTimeout)
		cancel()
		if out.refused != nil {
			res.Status, res.Error = store.StatusCancelled, clip(out.refused.Error(), MaxError)
			break
		}
		if res.StartedAt.IsZero() {
			res.StartedAt = start.UTC()
		}
		a := store.Attempt{Number: n, StartedAt: start.UTC(), FinishedAt: time.Now().UTC(), HTTPStatus: out.httpStatus, ExitCode: out.exitCode}
		res.HTTPStatus, res.AMQPConfirmed, res.ExitCode, res.Output = out.httpStatus, out.confirmed, out.exitCode, out.output
		if out.err == nil {
			res.Attempts = append(res.Attempts, a)
			res.Status, res.Error = store.StatusSucceeded, ""
			break
		}
		if timedOut {
			out.err = fmt.Errorf("timed out after %s: %w", timeout, out.err)
		}
		a.Error = clip(out.err.Error(), MaxError)
		res.Attempts = append(res.Attempts, a)
		if ctx.Err() != nil {
			res.Status, res.Error = store.StatusCancelled, cancelled(ctx)
			break
		}
		if out.permanent || n >= attempts {
			res.Status, res.Error = store.StatusFailed, a.Error
			break
		}
		wait := retryDelay(j.Retry, n)
		if d.log.Enabled(ctx, slog.LevelDebug) {
			d.log.Debug("attempt failed; retrying", "job", j.Name, "fire_id", f.FireID, "target", j.Target.Type,
				"attempt", n, "retry_in", wait, "error", a.Error)
		}
		if err := d.sleep(ctx, wait); err != nil {
			res.Status, res.Error = store.StatusCancelled, cancelled(ctx)
			break
		}
	}

	d.logResult(ctx, &f, &res)
	return res
}

// logResult logs the outcome of a fire. Failures log at Info, not Warn: a
// failing job is its owner's problem, not the operator's, and the run
// records it either way. The level check comes first because this runs for
// every fire and building the attributes allocates.
func (d *Dispatcher) logResult(ctx context.Context, f *Fire, res *Result) {
	level := slog.LevelDebug
	if res.Status == store.StatusFailed {
		level = slog.LevelInfo
	}
	if !d.log.Enabled(ctx, level) {
		return
	}
	attrs := []any{"job", f.Job.Name, "fire_id", f.FireID, "target", f.Job.Target.Type, "attempts", len(res.Attempts)}
	switch res.Status {
	case store.StatusFailed:
		d.log.Log(ctx, level, "fire failed", append(attrs, "error", res.Error)...)
	case store.StatusCancelled:
		d.log.Log(ctx, level, "fire cancelled", append(attrs, "reason", res.Error)...)
	default:
		d.log.Log(ctx, level, "fire succeeded", attrs...)
	}
}

func allowAll() error { return nil }

// errAttemptTimeout is the cause of an attempt's context when the attempt
// timed out, which tells a timeout apart from a deadline on the caller's ctx.
var errAttemptTimeout = errors.New("attempt timeout")

// cancelled is the error text of a fire cancelled through ctx. The caller
// names its reason with context.WithCancelCause.
func cancelled(ctx context.Context) string {
	return clip("cancelled: "+context.Cause(ctx).Error(), MaxError)
}

// retryDelay is the wait after failed attempt n (1-based): Backoff doubled
// n-1 times, capped at MaxBackoff, then "equal jitter", a uniform draw from
// the upper half. The jitter spreads the retries of many jobs that failed
// together (one receiver down) instead of retrying them in lockstep, and the
// wait never exceeds the nominal delay nor the cap.
func retryDelay(r *job.Retry, n int) time.Duration {
	var base, ceil time.Duration
	if r != nil {
		base, ceil = r.Backoff.Std(), r.MaxBackoff.Std()
	}
	base = cmp.Or(base, job.DefaultRetryBackoff.Std())
	ceil = cmp.Or(ceil, job.DefaultRetryMaxBackoff.Std())
	d := base
	for i := 1; i < n && d < ceil; i++ {
		d *= 2 // stops once past the cap, so it cannot overflow
	}
	d = min(d, ceil)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// sleep is the default Config.Sleep.
func sleep(ctx context.Context, d time.Duration) error {
	if !backoff.Sleep(ctx, d) {
		return context.Cause(ctx)
	}
	return nil
}
