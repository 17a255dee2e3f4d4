package target

import (
	"strconv"
	"time"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
)

// Fire is one claimed tick of a job, ready to be dispatched.
type Fire struct {
	// FireID is the unique id of the claimed tick. It is sent with every
	// attempt, so receivers can deduplicate retries and redeliveries on it.
	FireID      string
	Job         *job.Job
	ScheduledAt time.Time
	Trigger     string // store.TriggerSchedule, TriggerManual or TriggerCatchUp
	// Instance and Epoch identify the executor and leadership term that
	// fire; they are sent along for tracing.
	Instance string
	Epoch    int64
}

// Result is the outcome of one fire.
type Result struct {
	// Status is store.StatusSucceeded, StatusFailed or StatusCancelled.
	Status string
	// StartedAt is when the first attempt started; it is zero when no attempt
	// was made (a fire cancelled before anything was sent).
	StartedAt  time.Time
	FinishedAt time.Time
	// Attempts lists every attempt made, in order. An attempt that allow
	// refused was never made and is not listed.
	Attempts []store.Attempt
	// The fields below describe the last attempt.
	HTTPStatus    int    // http: the response status, 0 when there was none
	AMQPConfirmed bool   // amqp: the broker confirmed the publish
	ExitCode      *int   // shell: the exit code, -1 when killed by a signal
	Output        string // shell: the tail of stdout+stderr, at most MaxOutput bytes
	// Error says why the fire failed or was cancelled: at most MaxError
	// bytes of valid UTF-8. It is empty on success.
	Error string
}

// Limits on the text a result keeps.
const (
	MaxError  = 4 << 10  // bytes of Result.Error and Attempt.Error
	MaxOutput = 64 << 10 // bytes of Result.Output, truncation marker included
)

// Identification header names, also used for AMQP message headers. Shell
// commands get them as BATON_JOB, BATON_SCHEDULED_AT and so on.
const (
	HeaderJob         = "X-Baton-Job"
	HeaderScheduledAt = "X-Baton-Scheduled-At"
	HeaderFireID      = "X-Baton-Fire-Id"
	HeaderAttempt     = "X-Baton-Attempt"
	HeaderTrigger     = "X-Baton-Trigger"
	HeaderInstance    = "X-Baton-Instance"
	HeaderEpoch       = "X-Baton-Epoch"
)

// identity is the identification of one attempt of a fire. Its keys are
// canonical MIME header keys, so HTTP can use them without canonicalizing.
type identity [7]struct{ header, env, value string }

func identify(f *Fire, attempt int) identity {
	return identity{
		{HeaderJob, "BATON_JOB", f.Job.Name},
		{HeaderScheduledAt, "BATON_SCHEDULED_AT", f.ScheduledAt.UTC().Format(time.RFC3339Nano)},
		{HeaderFireID, "BATON_FIRE_ID", f.FireID},
		{HeaderAttempt, "BATON_ATTEMPT", strconv.Itoa(attempt)},
		{HeaderTrigger, "BATON_TRIGGER", f.Trigger},
		{HeaderInstance, "BATON_INSTANCE", f.Instance},
		{HeaderEpoch, "BATON_EPOCH", strconv.FormatInt(f.Epoch, 10)},
	}
}
