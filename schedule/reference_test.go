package schedule

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/stretchr/testify/require"
)

// matchesWall reports whether robfig/cron's fields match the wall-clock
// time w (seconds, wall clock read as UTC), with robfig's own day rule.
// It checks one time directly, sharing nothing with nextWall.
func matchesWall(ss *cron.SpecSchedule, w int64) bool {
	t := time.Unix(w, 0).UTC()
	has := func(mask uint64, v int) bool { return mask&(1<<uint(v)) != 0 }
	domOK, dowOK := has(ss.Dom, t.Day()), has(ss.Dow, int(t.Weekday()))
	dayOK := domOK || dowOK
	if ss.Dom&starBit != 0 || ss.Dow&starBit != 0 {
		dayOK = domOK && dowOK
	}
	return dayOK && has(ss.Month, int(t.Month())) && has(ss.Hour, t.Hour()) &&
		has(ss.Minute, t.Minute()) && has(ss.Second, t.Second())
}

func specSchedule(t *testing.T, spec string) (*cron.SpecSchedule, bool) {
	f := strings.Fields(spec)
	seconds := len(f) == 6
	if !seconds {
		f = append([]string{"0"}, f...)
	}
	p, err := parser.Parse(strings.Join(f, " "))
	require.NoError(t, err)
	return p.(*cron.SpecSchedule), seconds
}

// reference returns the ticks of a cron spec in (from, to] by applying the
// package doc's rules literally. It walks real time in steps of a second
// (6 fields) or a minute (5 fields) and reads the wall clock at each
// instant u:
//
//   - if the wall clock shows a matching time, u is a tick, unless the
//     schedule has a fixed hour and the wall clock showed that time before;
//   - if the wall clock jumped forward over a matching time, u is a tick for
//     a fixed-hour schedule.
//
// The walk starts 26 hours early (3 for seconds) so that repeats of earlier
// wall-clock times are recognised; that covers every clock change in the
// zones tested, including Samoa's skipped day for 5-field schedules.
func reference(t *testing.T, spec string, loc *time.Location, from, to time.Time) []time.Time {
	ss, seconds := specSchedule(t, spec)
	step, lead := int64(60), int64(26*3600)
	if seconds {
		step, lead = 1, 3*3600
	}
	const allHours = 1<<24 - 1
	hourly := ss.Hour&allHours == allHours
	wall := func(u int64) int64 {
		_, off := time.Unix(u, 0).In(loc).Zone()
		return u + int64(off)
	}
	seen := map[int64]bool{}
	var out []time.Time
	start := floorDiv(from.Unix()-lead, step) * step
	prev := wall(start - step)
	for u := start; u <= to.Unix(); u += step {
		w := wall(u)
		tick := matchesWall(ss, w) && (hourly || !seen[w])
		if !hourly && w-prev > step {
			for x := prev + step; x < w && !tick; x += step {
				tick = matchesWall(ss, x)
			}
		}
		seen[w], prev = true, w
		if tick && time.Unix(u, 0).After(from) {
			out = append(out, time.Unix(u, 0).UTC())
		}
	}
	return out
}

// testSeed seeds the random tests: fixed, so that a failure reproduces, or
// SCHEDULE_TEST_SEED to explore more cases.
func testSeed(t *testing.T) uint64 {
	seed := uint64(1)
	if v := os.Getenv("SCHEDULE_TEST_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "SCHEDULE_TEST_SEED")
		seed = n
	}
	t.Logf("seed %d (set SCHEDULE_TEST_SEED to change)", seed)
	return seed
}

var (
	propertyZones = []string{
		"America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Australia/Sydney", "America/Havana",
		"America/Santiago", "Antarctica/Troll", "Pacific/Chatham", "America/St_Johns", "Europe/Dublin",
		"Asia/Kolkata", "UTC",
	}
	// Choices per field, weighted towards the hours where clocks change
	// and towards "every hour", whose rules differ.
	secondChoices = []string{"0", "30", "*/20", "15,45", "*", "59"}
	minuteChoices = []string{"*", "0", "30", "*/15", "*/7", "0,30", "45", "5-10", "59", "*/30"}
	hourChoices   = []string{"*", "*", "*", "0-23", "*/1", "2", "1", "3", "0", "1-3", "*/2", "2,3", "23", "0,1"}
	domChoices    = []string{"*", "*", "*", "*", "?", "1-15", "*/2", "8,25", "16-31"}
	monthChoices  = []string{"*", "*", "*", "*", "3", "10,11", "MAR-NOV", "4,9"}
	dowChoices    = []string{"*", "*", "*", "*", "SUN", "MON-FRI", "0,6", "SAT"}
)

func randomSpec(r *rand.Rand, seconds bool) string {
	pick := func(opts []string) string { return opts[r.IntN(len(opts))] }
	f := []string{pick(minuteChoices), pick(hourChoices), pick(domChoices), pick(monthChoices), pick(dowChoices)}
	if seconds {
		f = append([]string{pick(secondChoices)}, f...)
	}
	return strings.Join(f, " ")
}

// randomWindow returns a window of real time in 2005-2035 around one of
// loc's clock changes (when it has one near), starting at a time that is
// not on a whole second.
func randomWindow(r *rand.Rand, loc *time.Location, halfWidth time.Duration) (time.Time, time.Time) {
	at := time.Date(2005, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(30 * 365 * 24 * time.Hour))))
	center := at
	if _, end := at.In(loc).ZoneBounds(); !end.IsZero() && end.Sub(at) < 366*24*time.Hour {
		center = end
	}
	from := center.Add(-time.Duration(r.Int64N(int64(halfWidth)))).Add(time.Duration(r.Int64N(int64(time.Second))))
	to := center.Add(time.Duration(r.Int64N(int64(halfWidth))))
	return from, to
}

// TestNextMatchesReference compares Next with the reference walk for random
// schedules, zones and windows, most of them around clock changes. Ticks
// must match one for one: that is, iterating Next never skips or repeats a
// tick. Next from random instants must return the first reference tick
// after them.
func TestNextMatchesReference(t *testing.T) {
	t.Parallel()
	minuteCases, secondCases := 300, 30
	if testing.Short() {
		minuteCases, secondCases = 60, 6
	}
	r := rand.New(rand.NewPCG(testSeed(t), 2026))
	type tcase struct {
		spec     string
		loc      *time.Location
		from, to time.Time
		starts   []time.Time
	}
	var cases []tcase
	for i := range minuteCases + secondCases {
		seconds := i >= minuteCases
		loc, err := time.LoadLocation(propertyZones[r.IntN(len(propertyZones))])
		require.NoError(t, err)
		half := 40 * time.Hour
		if seconds {
			half = 3 * time.Hour
		}
		from, to := randomWindow(r, loc, half)
		c := tcase{spec: randomSpec(r, seconds), loc: loc, from: from, to: to}
		for range 30 {
			c.starts = append(c.starts, from.Add(time.Duration(r.Int64N(int64(to.Sub(from))))))
		}
		cases = append(cases, c)
	}
	// Fixed cases for what random windows rarely hit.
	apia, err := time.LoadLocation("Pacific/Apia")
	require.NoError(t, err)
	for _, spec := range []string{"30 12 * * *", "0 * * * *", "*/20 0-3 * * *", "0 0 30 * *", "0 0 * * *", "15 23 * * *"} {
		from := time.Date(2011, 12, 28, 0, 0, 0, 0, time.UTC)
		cases = append(cases, tcase{spec: spec, loc: apia, from: from, to: from.Add(96 * time.Hour),
			starts: []time.Time{from.Add(58 * time.Hour), from.Add(58*time.Hour + 1), from.Add(60 * time.Hour)}})
	}

	for _, c := range cases {
		t.Run(fmt.Sprintf("%s in %s from %s", c.spec, c.loc, c.from.Format(time.RFC3339)), func(t *testing.T) {
			t.Parallel()
			s := mustParse(t, c.spec, c.loc.String())
			want := reference(t, c.spec, c.loc, c.from, c.to)
			got := collect(s, c.from, c.to)
			require.Equal(t, formatLocal(want, c.loc), formatLocal(got, c.loc))
			require.Equal(t, want, got)
			for _, start := range c.starts {
				for _, w := range want {
					if w.After(start) {
						next := s.Next(start)
						require.Equal(t, w, next, "Next(%s)", start)
						require.Equal(t, time.UTC, next.Location())
						break
					}
				}
			}
		})
	}
}

// TestNextWallMatchesRobfig checks the wall-clock search against
// robfig/cron's SpecSchedule.Next on UTC, where it has no daylight-saving
// problems.
func TestNextWallMatchesRobfig(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(testSeed(t), 7))
	specs := []string{"0 0 29 2 *", "0 0 31 * *", "0 0 1 * MON", "0 0 13 * FRI", "59 23 31 12 *", "0 0 L * *"}
	for range 500 {
		specs = append(specs, randomSpec(r, r.IntN(3) == 0))
	}
	const year = 365 * 86400
	for _, spec := range specs {
		ss, err := parser.Parse(map[bool]string{true: spec, false: "0 " + spec}[len(strings.Fields(spec)) == 6])
		if err != nil {
			continue // robfig rejects "L"; so does Parse
		}
		sched := ss.(*cron.SpecSchedule)
		f := fieldsOf(sched)
		for range 20 {
			lo := time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC).Unix() + r.Int64N(150*year)
			hi := lo + r.Int64N(4*year)
			got, ok := f.nextWall(lo, hi)
			want := sched.Next(time.Unix(lo-1, 0).UTC())
			if want.IsZero() || want.Unix() > hi {
				require.False(t, ok, "%q in [%s, %s]: got %s, want none", spec, time.Unix(lo, 0).UTC(), time.Unix(hi, 0).UTC(), time.Unix(got, 0).UTC())
				continue
			}
			require.True(t, ok, "%q from %s: want %s", spec, time.Unix(lo, 0).UTC(), want)
			require.Equal(t, want, time.Unix(got, 0).UTC(), "%q from %s", spec, time.Unix(lo, 0).UTC())
		}
	}
}

func TestCivil(t *testing.T) {
	t.Parallel()
	for d := time.Date(1599, 12, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2500; d = d.AddDate(0, 0, 13) {
		days := floorDiv(d.Unix(), 86400)
		y, m, dd := civil(days)
		require.Equal(t, [3]int{d.Year(), int(d.Month()), d.Day()}, [3]int{y, m, dd})
		require.Equal(t, days, daysFromCivil(y, m, dd))
		require.Equal(t, int64(d.Weekday()), floorMod(days+4, 7))
		require.Equal(t, time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day(), daysIn(y, m))
	}
}
