package job

import (
	"time"
	"unique"

	"github.com/batonhq/baton/schedule"
)

// Target types.
const (
	TargetHTTP  = "http"
	TargetAMQP  = "amqp"
	TargetShell = "shell"
)

// Misfire policies decide what happens to ticks that came due while no
// executor could fire them (failover, all instances down, store outage).
const (
	MisfireFireOnce = "fire_once" // fire the latest missed tick, record the rest as missed
	MisfireSkip     = "skip"      // record every missed tick as missed
	MisfireFireAll  = "fire_all"  // fire every missed tick, oldest first, capped
)

// Concurrency policies decide what a tick does while the previous run of the
// same job is still in progress.
const (
	ConcurrencyForbid  = "forbid"  // record the tick as skipped
	ConcurrencyAllow   = "allow"   // run both
	ConcurrencyReplace = "replace" // cancel the running attempt, then start
)

// Defaults applied by Normalize.
const (
	DefaultTimezone         = "UTC"
	DefaultStartingDeadline = Duration(5 * time.Minute)
	DefaultTimeout          = Duration(30 * time.Second)
	DefaultHTTPMethod       = "POST"
	DefaultRetryBackoff     = Duration(10 * time.Second)
	DefaultRetryMaxBackoff  = Duration(5 * time.Minute)
	MaxFireAll              = 100 // fire_all fires at most this many missed ticks
)

// Job is a scheduled job as stored and as returned by the API.
//
// The fields up to Jitter are the specification a user writes; the rest are
// read-only and filled in by the store. A job's name is its identity.
type Job struct {
	Name             string            `json:"name" yaml:"name" bson:"_id"`
	Schedule         string            `json:"schedule" yaml:"schedule" bson:"schedule"`
	Timezone         string            `json:"timezone,omitempty" yaml:"timezone,omitempty" bson:"timezone"`
	Paused           bool              `json:"paused" yaml:"paused,omitempty" bson:"paused"`
	Description      string            `json:"description,omitempty" yaml:"description,omitempty" bson:"description,omitempty"`
	Labels           map[string]string `json:"labels,omitempty" yaml:"labels,omitempty" bson:"labels,omitempty"`
	Target           Target            `json:"target" yaml:"target" bson:"target"`
	Misfire          string            `json:"misfire,omitempty" yaml:"misfire,omitempty" bson:"misfire"`
	StartingDeadline Duration          `json:"starting_deadline,omitempty" yaml:"starting_deadline,omitempty" bson:"starting_deadline"`
	Concurrency      string            `json:"concurrency,omitempty" yaml:"concurrency,omitempty" bson:"concurrency"`
	Retry            *Retry            `json:"retry,omitempty" yaml:"retry,omitempty" bson:"retry,omitempty"`
	Timeout          Duration          `json:"timeout,omitempty" yaml:"timeout,omitempty" bson:"timeout"`
	Jitter           Duration          `json:"jitter,omitempty" yaml:"jitter,omitempty" bson:"jitter"`

	// Read-only fields. They are ignored on input.
	CreatedAt time.Time  `json:"created_at" yaml:"-" bson:"created_at"`
	UpdatedAt time.Time  `json:"updated_at" yaml:"-" bson:"updated_at"`
	NextRunAt *time.Time `json:"next_run_at" yaml:"-" bson:"-"`
	// ActiveSince is when the job last became schedulable (created, its
	// schedule changed, or resumed). Ticks before it were never due.
	ActiveSince time.Time `json:"-" yaml:"-" bson:"active_since"`
	// Epoch is the executor epoch that last wrote the document; a write under
	// an older epoch is rejected.
	Epoch int64 `json:"-" yaml:"-" bson:"epoch"`
	Stats `yaml:"-" bson:"-"`
}

// Stats are a job's run counters, kept by the store with atomic increments.
type Stats struct {
	RunCount            int64       `json:"run_count"`
	SuccessCount        int64       `json:"success_count"`
	FailureCount        int64       `json:"failure_count"`
	ConsecutiveFailures int64       `json:"consecutive_failures"`
	LastSuccessAt       *time.Time  `json:"last_success_at"`
	LastFailureAt       *time.Time  `json:"last_failure_at"`
	LastRun             *RunSummary `json:"last_run"`
}

// RunSummary is the short form of a job's latest finished run.
type RunSummary struct {
	FireID      string    `json:"fire_id" bson:"fire_id"`
	ScheduledAt time.Time `json:"scheduled_at" bson:"scheduled_at"`
	FinishedAt  time.Time `json:"finished_at" bson:"finished_at"`
	Status      string    `json:"status" bson:"status"`
}

// Target says what a tick does.
type Target struct {
	Type  string       `json:"type" yaml:"type" bson:"type"`
	HTTP  *HTTPTarget  `json:"http,omitempty" yaml:"http,omitempty" bson:"http,omitempty"`
	AMQP  *AMQPTarget  `json:"amqp,omitempty" yaml:"amqp,omitempty" bson:"amqp,omitempty"`
	Shell *ShellTarget `json:"shell,omitempty" yaml:"shell,omitempty" bson:"shell,omitempty"`
}

// HTTPTarget sends one HTTP request per attempt.
type HTTPTarget struct {
	Method  string            `json:"method,omitempty" yaml:"method,omitempty" bson:"method"`
	URL     string            `json:"url" yaml:"url" bson:"url"`
	Headers map[string]string `json:"headers,omitempty" yaml:"headers,omitempty" bson:"headers,omitempty"`
	// SecretHeaders names headers whose values are never logged and are
	// redacted in API output.
	SecretHeaders []string `json:"secret_headers,omitempty" yaml:"secret_headers,omitempty" bson:"secret_headers,omitempty"`
	Body          string   `json:"body,omitempty" yaml:"body,omitempty" bson:"body,omitempty"`
	// Timeout is kept for compatibility; the job's Timeout wins when set.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty" bson:"timeout"`
	// SuccessCodes lists the statuses that count as success; empty means 2xx.
	SuccessCodes []int `json:"success_codes,omitempty" yaml:"success_codes,omitempty" bson:"success_codes,omitempty"`
}

// AMQPTarget publishes one persistent message per attempt and waits for the
// publisher confirm.
type AMQPTarget struct {
	Exchange   string            `json:"exchange" yaml:"exchange" bson:"exchange"`
	RoutingKey string            `json:"routing_key" yaml:"routing_key" bson:"routing_key"`
	Body       string            `json:"body,omitempty" yaml:"body,omitempty" bson:"body,omitempty"`
	Headers    map[string]string `json:"headers,omitempty" yaml:"headers,omitempty" bson:"headers,omitempty"`
}

// ShellTarget runs a command. It is disabled unless the operator enables shell
// targets in the configuration.
type ShellTarget struct {
	// Command is the argv; Command[0] is executed directly unless Shell is set.
	Command []string          `json:"command" yaml:"command" bson:"command"`
	Env     map[string]string `json:"env,omitempty" yaml:"env,omitempty" bson:"env,omitempty"`
	Dir     string            `json:"dir,omitempty" yaml:"dir,omitempty" bson:"dir,omitempty"`
	// Shell runs Command joined by spaces through /bin/sh -c.
	Shell bool `json:"shell,omitempty" yaml:"shell,omitempty" bson:"shell,omitempty"`
}

// Retry configures retries of a failed attempt within one tick.
type Retry struct {
	MaxAttempts int      `json:"max_attempts" yaml:"max_attempts" bson:"max_attempts"`
	Backoff     Duration `json:"backoff,omitempty" yaml:"backoff,omitempty" bson:"backoff"`
	MaxBackoff  Duration `json:"max_backoff,omitempty" yaml:"max_backoff,omitempty" bson:"max_backoff"`
}

// AttemptTimeout is the timeout of one attempt of this job's target.
func (j *Job) AttemptTimeout() time.Duration {
	switch {
	case j.Timeout > 0:
		return j.Timeout.Std()
	case j.Target.HTTP != nil && j.Target.HTTP.Timeout > 0:
		return j.Target.HTTP.Timeout.Std()
	}
	return DefaultTimeout.Std()
}

// MaxAttempts is the number of attempts one tick may make.
func (j *Job) MaxAttempts() int {
	if j.Retry == nil || j.Retry.MaxAttempts < 1 {
		return 1
	}
	return j.Retry.MaxAttempts
}

// SpecEqual reports whether a and b have the same user-written specification,
// ignoring read-only fields. The executor uses it to make upserts idempotent.
func SpecEqual(a, b *Job) bool {
	return specJSON(a) == specJSON(b)
}

// Spec returns a copy of j without its read-only fields.
func (j *Job) Spec() Job {
	c := *j
	c.CreatedAt, c.UpdatedAt, c.ActiveSince = time.Time{}, time.Time{}, time.Time{}
	c.NextRunAt = nil
	c.Epoch = 0
	c.Stats = Stats{}
	return c
}

// FillNextRun sets NextRunAt to the job's next tick after now, or nil for a
// paused job.
func (j *Job) FillNextRun(now time.Time) {
	j.NextRunAt = nil
	if j.Paused {
		return
	}
	if s, err := schedule.Parse(j.Schedule, j.Timezone); err == nil {
		if next := s.Next(now); !next.IsZero() {
			j.NextRunAt = &next
		}
	}
}

// ShareStrings makes the strings that many jobs tend to have in common
// (schedule, timezone, policies, target type, method, URL) share one copy
// with every other job's equal string. An executor holds every job; at
// 100,000 jobs decoded strings are a tenth of its live heap.
func (j *Job) ShareStrings() {
	for _, s := range []*string{&j.Schedule, &j.Timezone, &j.Misfire, &j.Concurrency, &j.Target.Type} {
		*s = unique.Make(*s).Value()
	}
	if h := j.Target.HTTP; h != nil {
		h.Method = unique.Make(h.Method).Value()
		h.URL = unique.Make(h.URL).Value()
	}
}
