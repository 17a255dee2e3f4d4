package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"

	"github.com/batonhq/baton/schedule"
)

// ValidationError says which field of a job is wrong and why.
type ValidationError struct {
	Field   string // JSON path of the field, such as "target.http.url"
	Message string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// ErrShellDisabled is returned (wrapped in a ValidationError) for a shell job
// while shell targets are disabled.
var ErrShellDisabled = errors.New("shell targets are disabled on this cluster (set targets.shell.enabled: true)")

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)
	// An HTTP method is an RFC 9110 token.
	methodRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// Options carries the cluster settings that validation depends on.
type Options struct {
	ShellEnabled bool
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// ValidName reports whether name is a valid job name.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return invalid("name", "must match [a-z0-9][a-z0-9._-]{0,127}, got %q", name)
	}
	return nil
}

// Normalize fills in defaults. It does not validate.
func (j *Job) Normalize() {
	if j.Timezone == "" {
		j.Timezone = DefaultTimezone
	}
	if j.Misfire == "" {
		j.Misfire = MisfireFireOnce
	}
	if j.StartingDeadline == 0 {
		j.StartingDeadline = DefaultStartingDeadline
	}
	if j.Concurrency == "" {
		j.Concurrency = ConcurrencyForbid
	}
	if j.Target.Type == TargetHTTP && j.Target.HTTP != nil && j.Target.HTTP.Method == "" {
		j.Target.HTTP.Method = DefaultHTTPMethod
	}
	if j.Target.HTTP != nil {
		j.Target.HTTP.Method = strings.ToUpper(j.Target.HTTP.Method)
	}
	if j.Retry != nil {
		if j.Retry.Backoff == 0 {
			j.Retry.Backoff = DefaultRetryBackoff
		}
		if j.Retry.MaxBackoff == 0 {
			j.Retry.MaxBackoff = DefaultRetryMaxBackoff
		}
	}
}

// Validate checks a normalized job. The first problem found is returned as a
// *ValidationError.
func (j *Job) Validate(opts Options) error {
	if err := ValidName(j.Name); err != nil {
		return err
	}
	if strings.TrimSpace(j.Schedule) == "" {
		return invalid("schedule", "is required, for example \"*/10 * * * *\"")
	}
	if _, err := schedule.Parse(j.Schedule, j.Timezone); err != nil {
		var pe *schedule.Error
		if errors.As(err, &pe) && pe.Field == "timezone" {
			return invalid("timezone", "%s", pe.Reason)
		}
		return invalid("schedule", "%v", err)
	}
	switch j.Misfire {
	case MisfireFireOnce, MisfireSkip, MisfireFireAll:
	default:
		return invalid("misfire", "must be one of fire_once, skip, fire_all; got %q", j.Misfire)
	}
	switch j.Concurrency {
	case ConcurrencyForbid, ConcurrencyAllow, ConcurrencyReplace:
	default:
		return invalid("concurrency", "must be one of forbid, allow, replace; got %q", j.Concurrency)
	}
	for _, d := range []struct {
		field string
		v     Duration
	}{{"starting_deadline", j.StartingDeadline}, {"timeout", j.Timeout}, {"jitter", j.Jitter}} {
		if d.v < 0 {
			return invalid(d.field, "must not be negative, got %s", d.v)
		}
	}
	if j.Retry != nil {
		switch {
		case j.Retry.MaxAttempts < 1 || j.Retry.MaxAttempts > 100:
			return invalid("retry.max_attempts", "must be between 1 and 100, got %d", j.Retry.MaxAttempts)
		case j.Retry.Backoff < 0:
			return invalid("retry.backoff", "must not be negative, got %s", j.Retry.Backoff)
		case j.Retry.MaxBackoff < 0:
			return invalid("retry.max_backoff", "must not be negative, got %s", j.Retry.MaxBackoff)
		}
	}
	if len(j.Description) > 4096 {
		return invalid("description", "must be at most 4096 bytes")
	}
	for k, v := range j.Labels {
		if !labelKeyRE.MatchString(k) {
			return invalid("labels", "label key %q must match [A-Za-z0-9][A-Za-z0-9._/-]{0,62}", k)
		}
		if len(v) > 256 || strings.ContainsAny(v, "=,") {
			return invalid("labels."+k, "label value must be at most 256 bytes without '=' or ','")
		}
	}
	return j.Target.validate(opts)
}

func (t *Target) validate(opts Options) error {
	set := 0
	for _, p := range []bool{t.HTTP != nil, t.AMQP != nil, t.Shell != nil} {
		if p {
			set++
		}
	}
	if set > 1 {
		return invalid("target", "set only the block that matches target.type")
	}
	switch t.Type {
	case TargetHTTP:
		h := t.HTTP
		if h == nil {
			return invalid("target.http", "is required for an http target")
		}
		if h.URL == "" {
			return invalid("target.http.url", "is required")
		}
		u, err := url.Parse(h.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("target.http.url", "must be an absolute http:// or https:// URL, got %q", h.URL)
		}
		if !methodRE.MatchString(h.Method) {
			return invalid("target.http.method", "is not a valid HTTP method: %q", h.Method)
		}
		if h.Timeout < 0 {
			return invalid("target.http.timeout", "must not be negative, got %s", h.Timeout)
		}
		for name := range h.Headers {
			if !methodRE.MatchString(name) {
				return invalid("target.http.headers", "invalid header name %q", name)
			}
		}
		for _, c := range h.SuccessCodes {
			if c < 100 || c > 599 {
				return invalid("target.http.success_codes", "%d is not an HTTP status code", c)
			}
		}
	case TargetAMQP:
		a := t.AMQP
		if a == nil {
			return invalid("target.amqp", "is required for an amqp target")
		}
		if a.Exchange == "" && a.RoutingKey == "" {
			return invalid("target.amqp.routing_key", "is required when exchange is empty (the default exchange routes by queue name)")
		}
	case TargetShell:
		if !opts.ShellEnabled {
			return &ValidationError{Field: "target.type", Message: ErrShellDisabled.Error()}
		}
		s := t.Shell
		if s == nil {
			return invalid("target.shell", "is required for a shell target")
		}
		if len(s.Command) == 0 || s.Command[0] == "" {
			return invalid("target.shell.command", "must be a non-empty argv list, such as [\"/usr/bin/backup\", \"--full\"]")
		}
	case "":
		return invalid("target.type", "is required: one of http, amqp, shell")
	default:
		return invalid("target.type", "unknown target type %q: use http, amqp or shell", t.Type)
	}
	return nil
}

// Decode reads one job from JSON. Unknown fields are an error; read-only
// fields are accepted and cleared, so that a job read from the API can be
// sent back as it is.
func Decode(r io.Reader) (*Job, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var j Job
	if err := dec.Decode(&j); err != nil {
		return nil, decodeError(err)
	}
	if dec.More() {
		return nil, invalid("", "the body must hold exactly one JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("", "the body must hold exactly one JSON object")
	}
	spec := j.Spec()
	return &spec, nil
}

func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return invalid(typeErr.Field, "must be of type %s", typeErr.Type)
	case errors.As(err, &syntaxErr):
		return invalid("", "invalid JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case errors.Is(err, io.EOF):
		return invalid("", "the body is empty; send a JSON job")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("", "the JSON body ends early")
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return invalid(strings.Trim(rest, `"`), "unknown field")
	}
	return invalid("", "%s", strings.TrimPrefix(msg, "json: "))
}

// specJSON is the canonical encoding of a job's specification.
func specJSON(j *Job) string {
	s := j.Spec()
	s.Normalize()
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(&s) // maps are encoded with sorted keys
	return buf.String()
}
