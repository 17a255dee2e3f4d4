// Package target owns the dispatch of one fire: it sends a job's HTTP
// request, publishes its AMQP message or runs its command, with a timeout per
// attempt and retries with backoff, and reports the outcome as a Result. It
// does not decide when to fire, and it stores nothing: the executor claims
// the tick, calls Dispatch, and records the Result.
//
// # Attempts and status
//
// Dispatch makes up to Job.MaxAttempts() attempts, each under
// Job.AttemptTimeout(). After a failed attempt it waits Retry.Backoff,
// doubled for each further attempt and capped at Retry.MaxBackoff, with
// equal jitter (a uniform draw between half and all of that delay). Every
// attempt made is listed in Result.Attempts. The status is:
//
//   - succeeded: an attempt succeeded (the last one listed).
//   - failed: the last attempt failed and no more were allowed, or the target
//     is misconfigured (no URL, no command, shell targets disabled, unknown
//     type), which is not retried. Error is the last attempt's error.
//   - cancelled: allow refused an attempt, or ctx ended. Error says why.
//
// # Fencing and cancellation
//
// allow is called once per attempt, after the local preparation that sends
// nothing (building the request, connecting to the broker, checking the
// exchange) and immediately before anything reaches the target. When it
// returns an error, that attempt is not made and not listed, nothing more is
// sent, and the fire is cancelled with allow's error as Result.Error. The
// executor passes a check of its leadership term, so that an executor that
// lost the lead never sends again; a request already in flight when the lead
// is lost completes.
//
// When ctx ends, the attempt in progress is aborted (the request or the
// confirm wait is abandoned, a command's process group is killed), no further
// attempt or backoff wait happens, and the fire is cancelled with Error
// "cancelled: " followed by context.Cause(ctx); callers name their reason
// with context.WithCancelCause. An attempt's own timeout is a failure of that
// attempt, not a cancellation. A fire dispatched after Close is cancelled.
//
// # Identification
//
// Every attempt carries the fire's identity so that receivers can
// deduplicate retries: the fire id is the same for every attempt of a fire
// and unique to the tick.
//
//   - HTTP headers X-Baton-Job, X-Baton-Scheduled-At (RFC 3339 with
//     nanoseconds, UTC), X-Baton-Fire-Id, X-Baton-Attempt (from 1),
//     X-Baton-Trigger, X-Baton-Instance and X-Baton-Epoch. They override a
//     job header of the same name.
//   - AMQP message headers of the same names and values, plus message_id =
//     fire id, timestamp, delivery mode persistent, and content type from the
//     job header Content-Type (default application/octet-stream).
//   - Environment variables BATON_JOB, BATON_SCHEDULED_AT, BATON_FIRE_ID,
//     BATON_ATTEMPT, BATON_TRIGGER, BATON_INSTANCE and BATON_EPOCH. A command
//     inherits Baton's environment, then the job's env on top, then these.
//
// # HTTP
//
// One client and transport serve every job, so that fires to one host reuse
// kept-alive connections; MaxConnsPerHost bounds them per host. Success is a
// 2xx status, or one listed in success_codes. Redirects are not followed: a
// 3xx is the outcome. A response body is drained up to 64 KiB, so the
// connection can be reused; a failing response's first 512 bytes are quoted
// in the error.
//
// # AMQP
//
// Fires publish to Config.AMQPURL through one connection and one channel in
// publisher-confirm mode, shared by all fires. Success is the broker's ack;
// a nack, a closed channel or no confirm within the attempt's timeout is a
// failure. Messages are not mandatory: the broker confirms, and drops, a
// message that no queue receives (unless the exchange has an alternate
// exchange), so success means the broker took the message, not that a
// consumer will see it. A named exchange is checked to exist, on a channel
// of its own, before the first publish to it (and again each minute),
// because publishing to a missing exchange makes the broker close the shared
// channel and fail every publish in flight on it. The library's automatic
// recovery is never enabled: when the connection or channel closes, the next
// fire reconnects, and after a failed connect fires fail fast, without
// dialing, for a short jittered delay. While the broker blocks publishers
// (a resource alarm), fires fail at once rather than stall.
//
// # Shell
//
// Shell targets run only when Config.ShellEnabled is set; otherwise a shell
// fire fails with job.ErrShellDisabled. The command is executed directly
// from its argv, so arguments stay literal, unless its shell flag is set:
// then "/bin/sh -c" runs the argv joined by spaces. It runs in a process
// group of its own. On timeout or cancellation the whole group is killed
// with SIGKILL, and when the command exits, whatever it left running in its
// group is killed too: nothing a run starts outlives it. The exit code is
// recorded (-1 when killed by a signal) and a non-zero code is a failure.
// Output is stdout and stderr combined; its last 64 KiB are kept, behind a
// marker line when the beginning was dropped, since the end of a log is
// where a command says why it failed.
//
// # Secrets
//
// Nothing here logs a header (so the values named by secret_headers never
// appear in logs) or a request body, and the broker URL is logged with its
// password redacted. Errors name an HTTP URL without its password.
package target
