package schedule

import (
	"fmt"
	"strings"
	"sync"
	"time"

	lcron "github.com/lnquy/cron"
)

// describer is shared by all schedules: building one loads the English
// locale (about 100µs). ToDescription only reads the descriptor's parser and
// locale tables, so concurrent use is safe (TestDescribeConcurrently checks
// this under the race detector).
var describer = sync.OnceValues(func() (*lcron.ExpressionDescriptor, error) {
	return lcron.NewDescriptor(lcron.Use24HourTimeFormat(true))
})

// Describe returns a human-readable description, such as "Every 10
// minutes" or "At 02:30 (Europe/Berlin)". Cron schedules outside UTC name
// their zone; @every does not, because its ticks do not depend on it. If no
// description can be made, Describe returns the schedule as written.
func (s *Schedule) Describe() string {
	s.descOnce.Do(func() {
		if s.every > 0 {
			s.desc = describeEvery(time.Duration(s.every) * time.Second)
			return
		}
		s.desc = describeCron(s.expr, s.spec)
		if s.loc != time.UTC {
			s.desc += " (" + s.loc.String() + ")"
		}
	})
	return s.desc
}

func describeCron(expr, spec string) string {
	d, err := describer()
	if err != nil {
		return spec
	}
	out, err := d.ToDescription(expr, lcron.Locale_en)
	if err != nil || out == "" {
		return spec
	}
	return out
}

// describeEvery spells out a period: "Every 30 seconds", "Every minute",
// "Every 1 hour 30 minutes".
func describeEvery(d time.Duration) string {
	units := []struct {
		size time.Duration
		name string
	}{{24 * time.Hour, "day"}, {time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}}
	var parts []string
	for _, u := range units {
		n := d / u.size
		if n == 0 {
			continue
		}
		d -= n * u.size
		part := fmt.Sprintf("%d %s", n, u.name)
		if n > 1 {
			part += "s"
		}
		parts = append(parts, part)
	}
	if len(parts) == 1 && strings.HasPrefix(parts[0], "1 ") {
		return "Every " + strings.TrimPrefix(parts[0], "1 ")
	}
	return "Every " + strings.Join(parts, " ")
}
