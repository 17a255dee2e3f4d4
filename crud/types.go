package crud

import (
	"errors"
	"net/http"
	"time"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
)

// Op is a kind of write.
type Op string

// Write operations.
const (
	OpCreate  Op = "create"
	OpUpdate  Op = "update" // full replace
	OpDelete  Op = "delete"
	OpPause   Op = "pause"
	OpResume  Op = "resume"
	OpTrigger Op = "trigger"
	OpUpsert  Op = "upsert" // create or replace; unchanged if equal (schedule files)
)

// Request is one forwarded write.
type Request struct {
	ID      string        `json:"id"`
	Op      Op            `json:"op"`
	Name    string        `json:"name"`
	Job     *job.Job      `json:"job,omitempty"`
	Origin  string        `json:"origin"`
	SentAt  time.Time     `json:"sent_at"`
	Timeout time.Duration `json:"timeout"`
}

// Outcomes reported in Reply.Result.
const (
	ResultCreated   = "created"
	ResultUpdated   = "updated"
	ResultUnchanged = "unchanged"
	ResultDeleted   = "deleted"
	ResultTriggered = "triggered"
)

// Reply is the executor's answer.
type Reply struct {
	Status int        `json:"status"` // the HTTP status the API returns
	Result string     `json:"result,omitempty"`
	Job    *job.Job   `json:"job,omitempty"`
	Run    *store.Run `json:"run,omitempty"`
	Error  *Error     `json:"error,omitempty"`
	// Executor and Epoch identify who applied the write.
	Executor string `json:"executor,omitempty"`
	Epoch    int64  `json:"epoch,omitempty"`
}

// Error is an API error body: {"error":{"code","message","field"}}.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes.
const (
	CodeInvalid          = "invalid_argument"
	CodeNotFound         = "not_found"
	CodeExists           = "already_exists"
	CodeAlreadyRunning   = "already_running"
	CodeNoExecutor       = "no_executor"
	CodeStoreUnavailable = "store_unavailable"
	CodeInternal         = "internal"
)

// Failure builds an error reply.
func Failure(status int, code, field, format string) Reply {
	return Reply{Status: status, Error: &Error{Code: code, Message: format, Field: field}}
}

// Sentinel errors of Client.Do.
var (
	// ErrNoExecutor means no executor applied the request in time; it never
	// will be.
	ErrNoExecutor = errors.New("no executor applied the request in time; it was not applied and never will be")
	// ErrUnknownOutcome means the request's fate could not be learned (the
	// store was unreachable, or the executor died while applying it): it may
	// or may not have been applied.
	ErrUnknownOutcome = errors.New("the outcome of the request is unknown")
)

// StatusFor maps a Client.Do error to an HTTP status.
func StatusFor(err error) int {
	switch {
	case errors.Is(err, ErrNoExecutor), errors.Is(err, ErrUnknownOutcome):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}
