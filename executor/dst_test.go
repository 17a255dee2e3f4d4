package executor_test

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/schedule"
)

// TestDaylightSavingWithAFakeClock drives the whole executor (gocron with a
// fake clock, Baton's schedules, claims in the store) through New York's
// two transitions of 2026 in simulated time.
func TestDaylightSavingWithAFakeClock(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	tests := []struct {
		name   string
		start  time.Time
		jobs   map[string]string // name -> schedule
		want   map[string][]string
		within time.Duration
	}{
		{
			name:  "spring forward",
			start: time.Date(2026, 3, 8, 0, 45, 0, 0, ny),
			jobs:  map[string]string{"daily-0230": "30 2 * * *", "hourly": "0 * * * *"},
			want: map[string][]string{
				"daily-0230": {"03:00 EDT"},
				"hourly":     {"01:00 EST", "03:00 EDT", "04:00 EDT", "05:00 EDT"}, // no 02:00: it never existed
			},
			within: 3*time.Hour + 30*time.Minute,
		},
		{
			name:  "fall back",
			start: time.Date(2026, 11, 1, 0, 45, 0, 0, ny),
			jobs:  map[string]string{"daily-0130": "30 1 * * *", "hourly": "0 * * * *"},
			want: map[string][]string{
				"daily-0130": {"01:30 EDT"},
				"hourly":     {"01:00 EDT", "01:00 EST", "02:00 EST", "03:00 EST"},
			},
			within: 3*time.Hour + 30*time.Minute,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := testenv.Store(t)
			clock := clockwork.NewFakeClockAt(tc.start)
			l := acquireLease(t, st, "exec")
			for name, spec := range tc.jobs {
				j := &job.Job{Name: name, Schedule: spec, Timezone: "America/New_York",
					Target: job.Target{Type: job.TargetHTTP, HTTP: &job.HTTPTarget{URL: "http://127.0.0.1:1/"}}}
				j.Normalize()
				j.ActiveSince = tc.start.Add(-time.Hour).UTC()
				require.NoError(t, st.CreateJob(ctx, l.Fence(), j))
			}
			disp := &fakeDispatcher{}
			leadWithClock(t, st, l, clock, disp)

			// Simulated minutes pass; each step waits for gocron's timers to
			// be re-armed so that no tick is skipped by the simulation.
			// Jump from tick to tick (the instants come from the schedules)
			// and wait, in real time, for each one's fire before moving on.
			due := map[time.Time][]string{} // instant -> jobs due then
			for name, spec := range tc.jobs {
				s, err := schedule.Parse(spec, "America/New_York")
				require.NoError(t, err)
				for at := range s.Ticks(tc.start, tc.start.Add(tc.within)) {
					due[at] = append(due[at], name)
				}
			}
			instants := slices.SortedFunc(maps.Keys(due), time.Time.Compare)
			for _, at := range instants {
				clock.Advance(at.Add(100 * time.Millisecond).Sub(clock.Now()))
				// Every job due now must have fired before the clock moves
				// on, or a timer still being re-armed would be jumped over.
				require.Eventually(t, func() bool {
					ticks := disp.ticks()
					for _, name := range due[at] {
						if ticks[name][at] == 0 {
							return false
						}
					}
					return true
				}, 5*time.Second, 2*time.Millisecond, "no fire for %s of %v", at, due[at])
			}
			require.Eventually(t, func() bool {
				got := disp.ticks()
				for name, want := range tc.want {
					if len(got[name]) != len(want) {
						return false
					}
				}
				return true
			}, 5*time.Second, 20*time.Millisecond, "fires: %v", disp.ticks())
			for name, want := range tc.want {
				var got []string
				for at, n := range disp.ticks()[name] {
					require.Equal(t, 1, n, "%s fired twice at %s", name, at)
					got = append(got, at.In(ny).Format("15:04 MST"))
				}
				require.ElementsMatch(t, want, got, name)
			}
		})
	}
}
