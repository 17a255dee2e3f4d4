package target

import "errors"

// ErrClosed is the error of a fire dispatched after Close. Such a fire is
// cancelled: nothing is sent.
var ErrClosed = errors.New("target: the dispatcher is closed")

// ErrNoBroker is the error of an amqp fire when no broker is configured.
var ErrNoBroker = errors.New("target: no broker is configured for amqp targets")

// Shell fires while shell targets are off fail with job.ErrShellDisabled, the
// same error job validation reports, so that errors.Is works on both paths.
