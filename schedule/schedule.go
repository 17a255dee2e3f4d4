package schedule

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// MaxEvery is the longest period "@every" accepts. Ticks are anchored to the
// Unix epoch, so a period of months would fall on dates nobody could guess
// from the schedule; such jobs read better as cron expressions ("0 0 1 * *").
const MaxEvery = 31 * 24 * time.Hour

// Error describes an invalid schedule or time zone.
type Error struct {
	Field  string // "schedule" or "timezone"
	Spec   string // the value that was rejected
	Reason string // what is wrong, e.g. `minute field: end of range (61) above maximum (59)`
}

// Error returns the reason, prefixed with the schedule when there is one to
// quote: `invalid schedule "61 * * * *": minute field: ...`.
func (e *Error) Error() string {
	if e.Field == "schedule" && e.Spec != "" {
		return fmt.Sprintf("invalid schedule %q: %s", e.Spec, e.Reason)
	}
	return e.Reason
}

// Schedule is a parsed schedule in one time zone. It is immutable and safe
// for concurrent use.
type Schedule struct {
	spec  string
	loc   *time.Location
	every int64 // @every period in seconds; 0 for cron schedules

	// Cron schedules only.
	fields fields
	hourly bool   // the hour field matches all 24 hours; see the package doc
	expr   string // the cron expression to describe

	key string

	// Describe is computed on first use: descriptions cost microseconds, and
	// Parse runs for every job whenever an executor loads them.
	descOnce sync.Once
	desc     string
}

// descriptors maps each descriptor to its 5-field cron equivalent.
var descriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// parser parses the 6-field form; 5-field specs get a "0" seconds field.
var parser = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

var fieldNames = [6]string{"second", "minute", "hour", "day-of-month", "month", "day-of-week"}

var fieldRanges = [6]string{"0-59", "0-59", "0-23", "1-31", "1-12 or JAN-DEC", "0-6 or SUN-SAT"}

// Parse parses spec in the IANA time zone tz; "" means UTC. Errors are
// *Error, naming the field ("schedule" or "timezone") that is wrong.
func Parse(spec, tz string) (*Schedule, error) {
	spec = strings.TrimSpace(spec)
	s := &Schedule{spec: spec}
	if err := s.parseSpec(); err != nil {
		return nil, err
	}
	loc, err := loadLocation(tz)
	if err != nil {
		return nil, err
	}
	s.loc = loc
	if s.every > 0 {
		s.key = everyKey(s.every)
	} else {
		s.key = s.fields.key(zoneKey(loc))
	}
	return s, nil
}

// parseSpec fills in everything that does not depend on the time zone.
func (s *Schedule) parseSpec() error {
	fail := func(format string, args ...any) error {
		return &Error{Field: "schedule", Spec: s.spec, Reason: fmt.Sprintf(format, args...)}
	}
	if s.spec == "" {
		return fail("empty schedule")
	}
	if strings.HasPrefix(s.spec, "CRON_TZ=") || strings.HasPrefix(s.spec, "TZ=") {
		return fail("a time zone prefix (CRON_TZ= or TZ=) is not supported; set the job's timezone field instead")
	}
	f := strings.Fields(s.spec)
	if f[0] == "@every" {
		d, err := parseEvery(f[1:])
		if err != nil {
			return fail("%s", err)
		}
		s.every = int64(d / time.Second)
		return nil
	}
	if strings.HasPrefix(f[0], "@") {
		cronSpec, ok := descriptors[f[0]]
		switch {
		case !ok:
			return fail("unknown descriptor %q (use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)", f[0])
		case len(f) > 1:
			return fail("%s takes nothing after it", f[0])
		}
		f = strings.Fields(cronSpec)
	}
	var six []string
	switch len(f) {
	case 5:
		six = append([]string{"0"}, f...)
	case 6:
		six = f
	default:
		return fail("expected 5 fields (or 6 with seconds), found %d", len(f))
	}
	parsed, err := parser.Parse(strings.Join(six, " "))
	if err != nil {
		return fail("%s", explain(six, err))
	}
	s.fields = fieldsOf(parsed.(*cron.SpecSchedule))
	if !s.fields.fires() {
		return fail("never fires: no month in the month field has a day in the day-of-month field (like February 30)")
	}
	const allHours = 1<<24 - 1
	s.hourly = s.fields.hour&allHours == allHours
	// lnquy/cron reads "?" literally ("At ? minutes past the hour"); robfig
	// treats it as "*".
	s.expr = strings.ReplaceAll(strings.Join(f, " "), "?", "*")
	return nil
}

// parseEvery parses the arguments of "@every".
func parseEvery(args []string) (time.Duration, error) {
	if len(args) != 1 {
		return 0, fmt.Errorf("@every needs one duration, such as \"@every 30s\"; found %d", len(args))
	}
	d, err := time.ParseDuration(args[0])
	switch {
	case err != nil:
		return 0, fmt.Errorf("@every needs a Go duration such as 30s, 5m or 1h30m, got %q", args[0])
	case d < time.Second:
		return 0, fmt.Errorf("@every needs a duration of at least 1s, got %s", args[0])
	case d%time.Second != 0:
		return 0, fmt.Errorf("@every needs a whole number of seconds, got %s", args[0])
	case d > MaxEvery:
		return 0, fmt.Errorf("@every allows at most %s (31 days), got %s; use a cron expression for longer periods", MaxEvery, args[0])
	}
	return d, nil
}

// explain turns a robfig/cron error into one that names the field at fault.
// robfig reports neither the field nor, for some errors, the value, so each
// field is parsed alone with every other field set to "*".
func explain(six []string, err error) string {
	for i, value := range six {
		probe := []string{"*", "*", "*", "*", "*", "*"}
		probe[i] = value
		if _, ferr := parser.Parse(strings.Join(probe, " ")); ferr != nil {
			msg := ferr.Error()
			if rest, ok := strings.CutPrefix(msg, "failed to parse int from "); ok {
				bad, _, _ := strings.Cut(rest, ": ")
				return fmt.Sprintf("%s field: %q is not a number in %s", fieldNames[i], bad, fieldRanges[i])
			}
			// Drop robfig's ": <value>" suffix; the whole spec is quoted
			// in the error already.
			if j := strings.LastIndex(msg, ": "); j > 0 {
				msg = msg[:j]
			}
			return fmt.Sprintf("%s field: %s", fieldNames[i], msg)
		}
	}
	return err.Error()
}

// locations caches loaded zones by name: time.LoadLocation reads and parses
// the zone file on every call, and Parse runs for every job an executor
// loads. Only zones that exist are cached, so the cache is bounded by the
// zone database.
var locations sync.Map // string → *time.Location

func loadLocation(tz string) (*time.Location, error) {
	switch tz {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		// The machine's zone differs between hosts; executors must agree.
		return nil, &Error{Field: "timezone", Spec: tz, Reason: `time zone "Local" is not allowed; name an IANA zone such as "Europe/Berlin"`}
	}
	if loc, ok := locations.Load(tz); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, &Error{Field: "timezone", Spec: tz, Reason: fmt.Sprintf("unknown time zone %q", tz)}
	}
	locations.Store(tz, loc)
	return loc, nil
}

// Key identifies the schedule's tick instants: jobs with equal keys tick at
// identical instants and can share one timer. See the package doc.
func (s *Schedule) Key() string { return s.key }

// Location returns the schedule's time zone.
func (s *Schedule) Location() *time.Location { return s.loc }

// String returns the schedule as written, without surrounding space.
func (s *Schedule) String() string { return s.spec }

// HasSeconds reports whether ticks can fall on a second other than :00, so
// that a caller knows whether minute resolution is enough.
func (s *Schedule) HasSeconds() bool {
	if s.every > 0 {
		return s.every%60 != 0
	}
	return s.fields.second != 1
}

// everyKey is the key of "@every" with a period of sec seconds. A period
// that divides a day ticks at the same times of every UTC day, so it is a
// UTC cron schedule too, and shares that key ("@every 5m" and
// "*/5 * * * *" in UTC).
func everyKey(sec int64) string {
	if f, ok := everyFields(sec); ok {
		return f.key(zoneKey(time.UTC))
	}
	return fmt.Sprintf("every:%d", sec)
}

// everyFields returns the cron fields equal to "@every sec", if there are
// any: the ticks must be every n-th second of each minute, every n-th
// minute of each hour, or every n-th hour of each day.
func everyFields(sec int64) (fields, bool) {
	steps := func(n, max int64) uint64 {
		var m uint64
		for v := int64(0); v <= max; v += n {
			m |= 1 << v
		}
		return m
	}
	f := fields{
		second: 1, minute: 1, hour: steps(1, 23),
		dom: steps(1, 31) &^ 1, month: steps(1, 12) &^ 1, dow: steps(1, 6),
		domStar: true, dowStar: true,
	}
	switch {
	case 60%sec == 0:
		f.second, f.minute = steps(sec, 59), steps(1, 59)
	case sec%60 == 0 && 3600%sec == 0:
		f.minute = steps(sec/60, 59)
	case sec%3600 == 0 && 86400%sec == 0:
		f.hour = steps(sec/3600, 23)
	default:
		return fields{}, false
	}
	return f, true
}

// zoneKey names a zone for keys. Zones that never change their offset are
// named by it, so that "UTC" and "Etc/UTC" share keys.
func zoneKey(loc *time.Location) string {
	if loc == time.UTC {
		return "UTC"
	}
	at := time.Unix(0, 0).In(loc)
	if start, end := at.ZoneBounds(); start.IsZero() && end.IsZero() {
		if _, off := at.Zone(); off != 0 {
			return fmt.Sprintf("UTC%+d", off)
		}
		return "UTC"
	}
	return loc.String()
}
