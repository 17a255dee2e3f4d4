package schedule

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	newYork = "America/New_York" // 2026-03-08 02:00 EST → 03:00 EDT; 2026-11-01 02:00 EDT → 01:00 EST
	berlin  = "Europe/Berlin"    // 2026-03-29 02:00 CET → 03:00 CEST; 2026-10-25 03:00 CEST → 02:00 CET
)

// localDays returns [midnight of the first day, midnight after the last
// day) in tz.
func localDays(t *testing.T, tz string, y int, m time.Month, d, days int) (time.Time, time.Time) {
	loc, err := time.LoadLocation(tz)
	require.NoError(t, err)
	return time.Date(y, m, d, 0, 0, 0, 0, loc), time.Date(y, m, d+days, 0, 0, 0, 0, loc)
}

func formatLocal(ticks []time.Time, loc *time.Location) []string {
	var out []string
	for _, tk := range ticks {
		out = append(out, tk.In(loc).Format("Jan 2 15:04 MST"))
	}
	return out
}

func TestDaylightSavingTicks(t *testing.T) {
	t.Parallel()
	type day struct {
		y    int
		m    time.Month
		d    int
		days int
	}
	tests := []struct {
		name, spec, tz string
		day            day
		want           []string // the ticks in local time, or nil to check count only
		count          int
	}{
		// Spring forward: a fixed-hour time in the gap fires once, at the
		// first instant after it; the days around are normal.
		{"NY daily in the gap", "30 2 * * *", newYork, day{2026, 3, 7, 3},
			[]string{"Mar 7 02:30 EST", "Mar 8 03:00 EDT", "Mar 9 02:30 EDT"}, 3},
		{"Berlin daily in the gap", "30 2 * * *", berlin, day{2026, 3, 28, 3},
			[]string{"Mar 28 02:30 CET", "Mar 29 03:00 CEST", "Mar 30 02:30 CEST"}, 3},
		{"NY quarter hours of the gap hour fire once", "*/15 2 * * *", newYork, day{2026, 3, 8, 1},
			[]string{"Mar 8 03:00 EDT"}, 1},
		{"Berlin every minute of the gap hour fires once", "* 2 * * *", berlin, day{2026, 3, 29, 1},
			[]string{"Mar 29 03:00 CEST"}, 1},
		{"a gap tick and a 03:00 tick are one instant", "0 2,3 * * *", newYork, day{2026, 3, 8, 1},
			[]string{"Mar 8 03:00 EDT"}, 1},
		{"a time just after the gap is normal", "0 3 * * *", newYork, day{2026, 3, 8, 1},
			[]string{"Mar 8 03:00 EDT"}, 1},
		{"two-hourly in the gap", "0 */2 * * *", newYork, day{2026, 3, 8, 1},
			[]string{"Mar 8 00:00 EST", "Mar 8 03:00 EDT", "Mar 8 04:00 EDT", "Mar 8 06:00 EDT", "Mar 8 08:00 EDT", "Mar 8 10:00 EDT",
				"Mar 8 12:00 EDT", "Mar 8 14:00 EDT", "Mar 8 16:00 EDT", "Mar 8 18:00 EDT", "Mar 8 20:00 EDT", "Mar 8 22:00 EDT"}, 12},

		// Fall back: a fixed-hour time that happens twice fires once, at
		// its first occurrence.
		{"NY daily in the repeat", "30 1 * * *", newYork, day{2026, 10, 31, 3},
			[]string{"Oct 31 01:30 EDT", "Nov 1 01:30 EDT", "Nov 2 01:30 EST"}, 3},
		{"Berlin daily in the repeat", "30 2 * * *", berlin, day{2026, 10, 24, 3},
			[]string{"Oct 24 02:30 CEST", "Oct 25 02:30 CEST", "Oct 26 02:30 CET"}, 3},
		{"Berlin every minute of the repeated hour fires once", "* 2 * * *", berlin, day{2026, 10, 25, 1}, nil, 60},
		{"Berlin two-hourly fires once in the repeat", "0 */2 * * *", berlin, day{2026, 10, 25, 1}, nil, 12},

		// Hourly schedules follow real time.
		{"NY hourly spring", "0 * * * *", newYork, day{2026, 3, 8, 1}, nil, 23},
		{"NY hourly fall", "0 * * * *", newYork, day{2026, 11, 1, 1}, nil, 25},
		{"Berlin hourly spring", "@hourly", berlin, day{2026, 3, 29, 1}, nil, 23},
		{"Berlin hourly fall", "@hourly", berlin, day{2026, 10, 25, 1}, nil, 25},
		{"NY hourly at :30 in the repeat", "30 * * * *", newYork, day{2026, 11, 1, 1}, nil, 25},
		{"NY quarter hours spring", "*/15 * * * *", newYork, day{2026, 3, 8, 1}, nil, 23 * 4},
		{"NY quarter hours fall", "*/15 * * * *", newYork, day{2026, 11, 1, 1}, nil, 25 * 4},
		{"Berlin quarter hours spring", "*/15 * * * *", berlin, day{2026, 3, 29, 1}, nil, 23 * 4},
		{"Berlin quarter hours fall", "*/15 * * * *", berlin, day{2026, 10, 25, 1}, nil, 25 * 4},
		{"NY every minute fall", "* * * * *", newYork, day{2026, 11, 1, 1}, nil, 25 * 60},
		{"NY every 20 seconds spring", "*/20 * * * * *", newYork, day{2026, 3, 8, 1}, nil, 23 * 60 * 3},
		{"hours 0-23 count as every hour", "0 0-23 * * *", newYork, day{2026, 11, 1, 1}, nil, 25},

		// Zones with other clock changes.
		{"Lord Howe: a 30-minute gap", "15 2 * * *", "Australia/Lord_Howe", day{2026, 10, 4, 1},
			[]string{"Oct 4 02:30 +11"}, 1},
		{"Lord Howe: a 30-minute repeat", "45 1 * * *", "Australia/Lord_Howe", day{2026, 4, 5, 1},
			[]string{"Apr 5 01:45 +11"}, 1},
		{"Lord Howe hourly at :45 on the repeat day", "45 * * * *", "Australia/Lord_Howe", day{2026, 4, 5, 1}, nil, 25},
		{"Havana: midnight does not exist", "@daily", "America/Havana", day{2026, 3, 7, 3},
			[]string{"Mar 7 00:00 CST", "Mar 8 01:00 CDT", "Mar 9 00:00 CDT"}, 3},
		{"Samoa skipped 2011-12-30", "30 12 * * *", "Pacific/Apia", day{2011, 12, 29, 3},
			[]string{"Dec 29 12:30 -10", "Dec 31 00:00 +14", "Dec 31 12:30 +14"}, 3},
		{"Samoa hourly on the skipped day", "0 * * * *", "Pacific/Apia", day{2011, 12, 29, 3}, nil, 48},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustParse(t, tc.spec, tc.tz)
			from, to := localDays(t, tc.tz, tc.day.y, tc.day.m, tc.day.d, tc.day.days)
			got := collect(s, from.Add(-time.Nanosecond), to.Add(-time.Nanosecond)) // [from, to)
			local := formatLocal(got, s.Location())
			require.Len(t, got, tc.count, "%v", local)
			if tc.want != nil {
				require.Equal(t, tc.want, local)
			}
			for i := 1; i < len(got); i++ {
				require.True(t, got[i].After(got[i-1]), "ticks strictly increase: %v", local)
			}
		})
	}
}

func TestHourlyTicksAreAnHourApart(t *testing.T) {
	t.Parallel()
	for _, tz := range []string{newYork, berlin} {
		s := mustParse(t, "0 * * * *", tz)
		for _, m := range []time.Month{3, 10, 11} {
			from := time.Date(2026, m, 1, 0, 0, 0, 0, time.UTC)
			got := collect(s, from, from.AddDate(0, 1, 0))
			for i := 1; i < len(got); i++ {
				require.Equal(t, time.Hour, got[i].Sub(got[i-1]), "%s %s", tz, got[i])
			}
		}
	}
}

func TestNextAroundTheGap(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "30 2 * * *", newYork)
	transition := time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC) // 03:00 EDT
	tests := []struct {
		after, want time.Time
	}{
		{transition.Add(-time.Hour), transition},
		{transition.Add(-time.Nanosecond), transition},
		{transition, time.Date(2026, 3, 9, 6, 30, 0, 0, time.UTC)},
		{transition.Add(30 * time.Minute), time.Date(2026, 3, 9, 6, 30, 0, 0, time.UTC)},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, s.Next(tc.after), "Next(%s)", tc.after)
	}
}
