package schedule

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func mustParse(tb testing.TB, spec, tz string) *Schedule {
	tb.Helper()
	s, err := Parse(spec, tz)
	require.NoError(tb, err)
	return s
}

// collect returns the ticks in (after, until].
func collect(s *Schedule, after, until time.Time) []time.Time {
	var out []time.Time
	for tk := range s.Ticks(after, until) {
		out = append(out, tk)
	}
	return out
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, spec, tz string
		field, want    string // want: a fragment of err.Error()
	}{
		{"empty", "", "", "schedule", "empty schedule"},
		{"blank", "  \t ", "", "schedule", "empty schedule"},
		{"too few fields", "* * *", "", "schedule", `invalid schedule "* * *": expected 5 fields (or 6 with seconds), found 3`},
		{"too many fields", "* * * * * * *", "", "schedule", "found 7"},
		{"minute out of range", "61 * * * *", "", "schedule", `invalid schedule "61 * * * *": minute field: end of range (61) above maximum (59)`},
		{"minute in a list", "0,61 * * * *", "", "schedule", "minute field: end of range (61) above maximum (59)"},
		{"hour out of range", "0 24 * * *", "", "schedule", "hour field: end of range (24) above maximum (23)"},
		{"day zero", "0 0 0 * *", "", "schedule", "day-of-month field: beginning of range (0) below minimum (1)"},
		{"seconds out of range", "60 * * * * *", "", "schedule", "second field: end of range (60)"},
		{"backwards range", "0 5-2 * * *", "", "schedule", "hour field: beginning of range (5) beyond end of range (2)"},
		{"zero step", "*/0 * * * *", "", "schedule", "minute field: step of range should be a positive number"},
		{"bad day name", "0 0 * * FOO", "", "schedule", `day-of-week field: "FOO" is not a number in 0-6 or SUN-SAT`},
		{"bad month name", "0 0 1 JANUARY *", "", "schedule", `month field: "JANUARY" is not a number in 1-12 or JAN-DEC`},
		{"not a number", "x * * * *", "", "schedule", `minute field: "x" is not a number in 0-59`},
		{"unknown descriptor", "@foo", "", "schedule", `unknown descriptor "@foo"`},
		{"descriptor with more", "@daily 3", "", "schedule", "@daily takes nothing after it"},
		{"every without duration", "@every", "", "schedule", "@every needs one duration"},
		{"every with two durations", "@every 1m 2m", "", "schedule", "found 2"},
		{"every not a duration", "@every soon", "", "schedule", `@every needs a Go duration such as 30s, 5m or 1h30m, got "soon"`},
		{"every days", "@every 1d", "", "schedule", "Go duration"},
		{"every too short", "@every 500ms", "", "schedule", "@every needs a duration of at least 1s"},
		{"every zero", "@every 0s", "", "schedule", "at least 1s"},
		{"every negative", "@every -5m", "", "schedule", "at least 1s"},
		{"every fraction", "@every 1500ms", "", "schedule", "whole number of seconds"},
		{"every too long", "@every 745h", "", "schedule", "at most 744h0m0s (31 days)"},
		{"CRON_TZ prefix", "CRON_TZ=Europe/Berlin 0 2 * * *", "", "schedule", "timezone field"},
		{"TZ prefix", "TZ=UTC * * * * *", "", "schedule", "CRON_TZ= or TZ="},
		{"February 30", "0 0 30 2 *", "", "schedule", `invalid schedule "0 0 30 2 *": never fires`},
		{"April 31 in seconds form", "0 0 0 31 4 *", "", "schedule", "never fires"},
		{"unknown zone", "* * * * *", "Mars/Base", "timezone", `unknown time zone "Mars/Base"`},
		{"Local", "* * * * *", "Local", "timezone", `time zone "Local" is not allowed`},
		{"zone path", "* * * * *", "../etc/passwd", "timezone", "unknown time zone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := Parse(tc.spec, tc.tz)
			require.Nil(t, s)
			var se *Error
			require.True(t, errors.As(err, &se), "error %v is %T, not *Error", err, err)
			require.Equal(t, tc.field, se.Field)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestErrorReasonForTimezone(t *testing.T) {
	t.Parallel()
	_, err := Parse("* * * * *", "Mars/Base")
	require.Equal(t, &Error{Field: "timezone", Spec: "Mars/Base", Reason: `unknown time zone "Mars/Base"`}, err)
}

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec, tz    string
		str         string // String(); "" means spec
		hasSeconds  bool
		zone        string
		firstAfter  time.Time
		wantFirstAt time.Time
	}{
		{spec: "0 9 * * MON-FRI", zone: "UTC",
			firstAfter: time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC), wantFirstAt: time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)},
		{spec: "0 0 1 JAN *", zone: "UTC",
			firstAfter: time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC), wantFirstAt: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{spec: "*/5 * * * * *", hasSeconds: true, zone: "UTC",
			firstAfter: time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC), wantFirstAt: time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC)},
		{spec: "30 0 * * * *", hasSeconds: true, zone: "UTC",
			firstAfter: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), wantFirstAt: time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)},
		{spec: "@every 1h30m", zone: "UTC",
			firstAfter: time.Unix(0, 0), wantFirstAt: time.Unix(5400, 0)},
		{spec: "@every 90s", hasSeconds: true, zone: "UTC",
			firstAfter: time.Unix(0, 0), wantFirstAt: time.Unix(90, 0)},
		{spec: "@annually", zone: "UTC",
			firstAfter: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), wantFirstAt: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{spec: "@weekly", tz: "America/New_York", zone: "America/New_York", // Sunday 00:00 EST
			firstAfter: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), wantFirstAt: time.Date(2026, 1, 4, 5, 0, 0, 0, time.UTC)},
		{spec: "  0 0 * * *\t", str: "0 0 * * *", tz: "UTC", zone: "UTC",
			firstAfter: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), wantFirstAt: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
		{spec: "0 0 29 2 *", zone: "UTC", // accepted: it fires in leap years
			firstAfter: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), wantFirstAt: time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC)},
		{spec: "0 0 1 * MON", zone: "UTC", // both day fields restricted: either matches
			firstAfter: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), wantFirstAt: time.Date(2026, 6, 8, 0, 0, 0, 0, time.UTC)},
		{spec: "0 12 ? * *", tz: "Asia/Kolkata", zone: "Asia/Kolkata",
			firstAfter: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), wantFirstAt: time.Date(2026, 1, 1, 6, 30, 0, 0, time.UTC)},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			t.Parallel()
			s := mustParse(t, tc.spec, tc.tz)
			require.Equal(t, tc.zone, s.Location().String())
			require.Equal(t, tc.hasSeconds, s.HasSeconds())
			if tc.str == "" {
				tc.str = tc.spec
			}
			require.Equal(t, tc.str, s.String())
			next := s.Next(tc.firstAfter)
			require.Equal(t, tc.wantFirstAt.UTC(), next)
			require.Equal(t, time.UTC, next.Location())
		})
	}
}

func TestNextBeyondHorizon(t *testing.T) {
	t.Parallel()
	// 2100 is not a leap year, so after 2096-02-29 the next February 29
	// is in 2104, more than five years away.
	s := mustParse(t, "0 0 29 2 *", "")
	after := time.Date(2097, 1, 1, 0, 0, 0, 0, time.UTC)
	require.True(t, s.Next(after).IsZero())
	require.Empty(t, collect(s, after, after.AddDate(20, 0, 0)), "Ticks stops at a zero Next")
	require.Equal(t, time.Date(2104, 2, 29, 0, 0, 0, 0, time.UTC), s.Next(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)))
}

func TestEveryIsAnchoredToTheEpoch(t *testing.T) {
	t.Parallel()
	at := func(h, m, s, ns int) time.Time { return time.Date(2026, 1, 1, h, m, s, ns, time.UTC) }
	tests := []struct {
		spec, tz    string
		after, want time.Time
	}{
		{"@every 30s", "", at(10, 0, 7, 123), at(10, 0, 30, 0)},
		{"@every 30s", "", at(10, 0, 29, 999999999), at(10, 0, 30, 0)},
		{"@every 30s", "", at(10, 0, 30, 0), at(10, 1, 0, 0)},
		{"@every 30s", "", at(10, 0, 30, 1), at(10, 1, 0, 0)},
		{"@every 30s", "", at(9, 59, 59, 999999999), at(10, 0, 0, 0)},
		{"@every 30s", "Asia/Tokyo", at(10, 0, 7, 0), at(10, 0, 30, 0)}, // the zone does not matter
		{"@every 1h", "Asia/Kolkata", at(10, 0, 0, 0), at(11, 0, 0, 0)}, // on UTC hours, not :30 local
		{"@every 7m", "", time.Unix(-1, 0), time.Unix(0, 0).UTC()},
		{"@every 7m", "", time.Unix(-421, 0), time.Unix(-420, 0).UTC()},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %s after %s", tc.spec, tc.tz, tc.after.Format(time.RFC3339Nano)), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, mustParse(t, tc.spec, tc.tz).Next(tc.after))
		})
	}

	t.Run("same ticks from different starts", func(t *testing.T) {
		t.Parallel()
		s := mustParse(t, "@every 7m", "")
		base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
		end := base.Add(3 * time.Hour)
		a := collect(s, base, end)
		b := collect(s, base.Add(3*time.Minute+17*time.Second+5), end)
		require.NotEmpty(t, b)
		require.Equal(t, a[len(a)-len(b):], b, "a later start sees a suffix of the same ticks")
		for _, tk := range a {
			require.Zero(t, tk.Unix()%(7*60), "%s is a multiple of 7 minutes since the epoch", tk)
		}
		require.Equal(t, 7*time.Minute, a[1].Sub(a[0]))
	})
}

func TestTicksBoundaries(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "* * * * *", "")
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := func(n int) time.Time { return at.Add(time.Duration(n) * time.Minute) }
	tests := []struct {
		name         string
		after, until time.Time
		want         []time.Time
	}{
		{"after exclusive, until inclusive", m(0), m(3), []time.Time{m(1), m(2), m(3)}},
		{"between ticks", m(0).Add(time.Second), m(3).Add(-time.Second), []time.Time{m(1), m(2)}},
		{"single tick", m(0), m(1), []time.Time{m(1)}},
		{"empty range", m(1), m(1), nil},
		{"reversed range", m(3), m(1), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, collect(s, tc.after, tc.until))
		})
	}

	t.Run("stops when the consumer does", func(t *testing.T) {
		t.Parallel()
		var got []time.Time
		for tk := range s.Ticks(at, at.AddDate(100, 0, 0)) {
			if got = append(got, tk); len(got) == 2 {
				break
			}
		}
		require.Equal(t, []time.Time{m(1), m(2)}, got)
	})
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	tests := []struct{ spec, tz, want string }{
		{"*/10 * * * *", "", "Every 10 minutes"},
		{"* * * * *", "", "Every minute"},
		{"*/5 * * * * *", "", "Every 5 seconds"},
		{"0 9 * * MON-FRI", "", "At 09:00, Monday through Friday"},
		{"? * * * *", "", "Every minute"},
		{"@hourly", "", "Every hour"},
		{"@weekly", "", "At 00:00, only on Sunday"},
		{"@yearly", "", "At 00:00, on day 1 of the month, only in January"},
		{"30 2 * * *", "Europe/Berlin", "At 02:30 (Europe/Berlin)"},
		{"30 2 * * *", "UTC", "At 02:30"},
		{"@every 30s", "", "Every 30 seconds"},
		{"@every 30s", "Europe/Berlin", "Every 30 seconds"},
		{"@every 1s", "", "Every second"},
		{"@every 60s", "", "Every minute"},
		{"@every 5m", "", "Every 5 minutes"},
		{"@every 90m", "", "Every 1 hour 30 minutes"},
		{"@every 36h0m5s", "", "Every 1 day 12 hours 5 seconds"},
	}
	for _, tc := range tests {
		t.Run(tc.spec+" "+tc.tz, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, mustParse(t, tc.spec, tc.tz).Describe())
		})
	}
}

// TestDescribeConcurrently backs the claim that one lnquy/cron descriptor
// can serve all goroutines; run it with -race.
func TestDescribeConcurrently(t *testing.T) {
	t.Parallel()
	shared := mustParse(t, "15 10 1,15 JAN,JUL *", "Europe/Berlin")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			own := mustParse(t, fmt.Sprintf("%d 3 * * MON-FRI", i), "")
			for range 20 {
				require.Equal(t, "At 10:15, on day 1 and 15 of the month, only in January and July (Europe/Berlin)", shared.Describe())
				require.Equal(t, fmt.Sprintf("At 03:%02d, Monday through Friday", i), own.Describe())
			}
		})
	}
	wg.Wait()
}

func TestKey(t *testing.T) {
	t.Parallel()
	type sched struct{ spec, tz string }
	same := []struct{ a, b sched }{
		{sched{"@hourly", ""}, sched{"0 * * * *", ""}},
		{sched{"* * * * *", ""}, sched{"0 * * * * *", ""}},
		{sched{"@daily", ""}, sched{"0 0 * * *", ""}},
		{sched{"@midnight", ""}, sched{"@daily", ""}},
		{sched{"@yearly", ""}, sched{"0 0 1 JAN *", ""}},
		{sched{"*/15 * * * *", ""}, sched{"0,15,30,45 * * * *", ""}},
		{sched{"0 0 * * *", ""}, sched{"0 0-0 1-31 * *", ""}},
		{sched{"0 0 * * MON-FRI", ""}, sched{"0 0 * * 1-5", ""}},
		{sched{"0 0 ? * *", ""}, sched{"0 0 * * *", ""}},
		{sched{"0 0 1-31 * MON", ""}, sched{"0 0 * * *", ""}}, // "either day field" with a full day-of-month
		{sched{"0 * * * *", "Europe/Berlin"}, sched{"0 0-23 * * *", "Europe/Berlin"}},
		{sched{"* * * * *", ""}, sched{"* * * * *", "UTC"}},
		{sched{"* * * * *", ""}, sched{"* * * * *", "Etc/UTC"}},
		{sched{"@every 60s", ""}, sched{"@every 1m", ""}},
		{sched{"@every 7m", ""}, sched{"@every 7m", "Europe/Berlin"}}, // @every ignores the zone
		{sched{"@every 1m", ""}, sched{"* * * * *", ""}},
		{sched{"@every 5m", ""}, sched{"*/5 * * * *", ""}},
		{sched{"@every 30s", ""}, sched{"*/30 * * * * *", ""}},
		{sched{"@every 1h", "Asia/Tokyo"}, sched{"@hourly", ""}},
		{sched{"@every 6h", ""}, sched{"0 */6 * * *", ""}},
		{sched{"@every 24h", ""}, sched{"@daily", ""}},
	}
	for _, p := range same {
		t.Run(fmt.Sprintf("%v equals %v", p.a, p.b), func(t *testing.T) {
			t.Parallel()
			a, b := mustParse(t, p.a.spec, p.a.tz), mustParse(t, p.b.spec, p.b.tz)
			require.Equal(t, a.Key(), b.Key())
			from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			require.Equal(t, collect(a, from, from.Add(72*time.Hour)), collect(b, from, from.Add(72*time.Hour)))
		})
	}
	differ := []struct{ a, b sched }{
		{sched{"* * * * *", ""}, sched{"* * * * *", "Europe/Berlin"}},
		{sched{"0 0 * * *", "America/New_York"}, sched{"0 0 * * *", "America/Chicago"}},
		{sched{"0 * * * *", ""}, sched{"5 * * * *", ""}},
		{sched{"0 0 1 * MON", ""}, sched{"0 0 1 * *", ""}},
		{sched{"0 0 1 * MON", ""}, sched{"0 0 * * MON", ""}},
		{sched{"* * * * *", ""}, sched{"* * * * * *", ""}},
		{sched{"@every 60s", ""}, sched{"@every 61s", ""}},
		{sched{"@every 90s", ""}, sched{"*/30 * * * * *", ""}},
		{sched{"@every 7m", ""}, sched{"*/7 * * * *", ""}}, // */7 restarts at each hour
		{sched{"@every 5h", ""}, sched{"0 */5 * * *", ""}}, // */5 restarts at each day
	}
	for _, p := range differ {
		t.Run(fmt.Sprintf("%v differs from %v", p.a, p.b), func(t *testing.T) {
			t.Parallel()
			require.NotEqual(t, mustParse(t, p.a.spec, p.a.tz).Key(), mustParse(t, p.b.spec, p.b.tz).Key())
		})
	}
}

// TestEqualKeysTickTogether checks the promise executors rely on when they
// put jobs on one timer: equal keys mean identical ticks, here across a
// spring-forward and a fall-back day.
func TestEqualKeysTickTogether(t *testing.T) {
	t.Parallel()
	specs := []string{"@hourly", "0 * * * *", "0 0-23 * * *", "@every 1h", "@every 3600s", "@daily", "0 0 * * *",
		"@every 24h", "*/30 * * * *", "0,30 * * * *", "@every 30m", "30 2 * * *", "30 2 * * * ", "0 30 2 * * *",
		"0 0 1-31 * SUN", "0 0 * * *", "* * * * *", "@every 1m", "0 * * * * *", "@every 2h", "0 */2 * * *", "0 0,2,4,6,8,10,12,14,16,18,20,22 * * *"}
	zones := []string{"", "UTC", "Etc/UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"}
	windows := [][2]time.Time{
		{time.Date(2026, 3, 7, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)},
		{time.Date(2026, 10, 24, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)},
	}
	byKey := map[string][]*Schedule{}
	for _, spec := range specs {
		for _, tz := range zones {
			s := mustParse(t, spec, tz)
			byKey[s.Key()] = append(byKey[s.Key()], s)
		}
	}
	shared := 0
	for key, group := range byKey {
		for _, s := range group[1:] {
			shared++
			for _, w := range windows {
				require.Equal(t, collect(group[0], w[0], w[1]), collect(s, w[0], w[1]),
					"key %s: %q in %s and %q in %s", key, group[0], group[0].Location(), s, s.Location())
			}
		}
	}
	require.Greater(t, shared, len(specs), "the table exercises shared keys")
}

func BenchmarkNext(b *testing.B) {
	cases := []struct{ spec, tz string }{
		{"*/5 * * * *", "Europe/Berlin"},
		{"@every 30s", ""},
		{"0 3 * * *", "America/New_York"},
		{"30 2 * * *", "America/New_York"},
		{"*/10 * * * * *", "UTC"},
		{"0 0 29 2 *", "Europe/Berlin"},
	}
	for _, c := range cases {
		b.Run(c.spec+" "+c.tz, func(b *testing.B) {
			s := mustParse(b, c.spec, c.tz)
			start := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
			at := start
			for b.Loop() {
				if at = s.Next(at); at.Year() > 2100 {
					at = start
				}
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, c := range []struct{ spec, tz string }{{"*/5 * * * *", "Europe/Berlin"}, {"@every 30s", ""}} {
		b.Run(c.spec+" "+c.tz, func(b *testing.B) {
			for b.Loop() {
				if _, err := Parse(c.spec, c.tz); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
