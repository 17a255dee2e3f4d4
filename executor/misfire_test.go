package executor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/schedule"
)

func TestPlanCatchUp(t *testing.T) {
	everyMin, err := schedule.Parse("* * * * *", "UTC")
	require.NoError(t, err)
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	type want struct{ fired, missed, records int }
	tests := []struct {
		name     string
		policy   string
		deadline time.Duration
		from     time.Time
		now      time.Time
		want     want
		lastFire time.Time
	}{
		{"nothing missed", job.MisfireFireOnce, 5 * time.Minute, base, base.Add(30 * time.Second), want{0, 0, 0}, time.Time{}},
		{"fire_once fires the latest", job.MisfireFireOnce, 5 * time.Minute, base, base.Add(3*time.Minute + time.Second), want{1, 2, 3}, base.Add(3 * time.Minute)},
		{"skip records all", job.MisfireSkip, 5 * time.Minute, base, base.Add(3*time.Minute + time.Second), want{0, 3, 3}, time.Time{}},
		{"fire_all fires each", job.MisfireFireAll, 5 * time.Minute, base, base.Add(3*time.Minute + time.Second), want{3, 0, 3}, base.Add(3 * time.Minute)},
		{"past the deadline is missed", job.MisfireFireOnce, 2 * time.Minute, base, base.Add(10*time.Minute + time.Second), want{1, 9, 10}, base.Add(10 * time.Minute)},
		{"all past the deadline", job.MisfireFireAll, time.Second, base, base.Add(3*time.Minute + 30*time.Second), want{0, 3, 3}, time.Time{}},
		{"fire_all is capped", job.MisfireFireAll, 24 * time.Hour, base, base.Add(150*time.Minute + time.Second), want{job.MaxFireAll, 50, 150}, base.Add(100 * time.Minute)},
		// 1998 stale ticks become one summary plus 999 records; 2 fresh ticks skipped.
		{"many missed are summarized", job.MisfireSkip, time.Minute, base, base.Add(2000 * time.Minute), want{0, 2000, maxMissedRecords + 2}, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds := planCatchUp(everyMin, tc.policy, tc.deadline, tc.from, tc.now)
			var got want
			var lastFire time.Time
			for i, d := range ds {
				if i > 0 {
					require.True(t, ds[i-1].At.Before(d.At), "decisions are in tick order")
				}
				got.records++
				if d.Fire {
					got.fired++
					lastFire = d.At
					continue
				}
				require.NotEmpty(t, d.Reason, "a missed tick says why")
				got.missed += max(d.Count, 1)
			}
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.lastFire, lastFire)
		})
	}
}
