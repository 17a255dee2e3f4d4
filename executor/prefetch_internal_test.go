package executor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/schedule"
)

// Jobs read ahead join in the order of their first tick after the
// watermark, whatever order the store kept them in; paused jobs and jobs
// whose schedule does not parse come last, in the store's order.
func TestSoonestFirstOrdersByNextTick(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC) // the watermark
	jobs := []*job.Job{
		{Name: "paused-at-31", Schedule: "31 * * * * *", Paused: true},
		{Name: "at-10", Schedule: "10 * * * * *"},
		{Name: "unparsable", Schedule: "not a schedule"},
		{Name: "at-32", Schedule: "32 * * * * *"},
		{Name: "at-31", Schedule: "31 * * * * *"},
		{Name: "every-minute", Schedule: "* * * * *"},
		{Name: "at-31-too", Schedule: "31 * * * * *"},
		{Name: "at-30", Schedule: "30 * * * * *"},
	}
	ts := &termState{parsed: map[[2]string]*schedule.Schedule{}}
	ts.soonestFirst(jobs, from)
	var got []string
	for _, j := range jobs {
		got = append(got, j.Name)
	}
	require.Equal(t, []string{
		"at-31", "at-31-too", // 00:00:31, in the store's order
		"at-32",
		"every-minute", // 00:01:00
		"at-10",        // 00:01:10
		"at-30",        // 00:01:30: the watermark's own tick was claimed
		"paused-at-31", "unparsable",
	}, got)
}
