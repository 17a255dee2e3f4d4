package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Take hands out whole shards in turn: successive takes cover every job
// exactly once, each holds at least the asked number of jobs (or the rest),
// and no job is split from its shard.
func TestTallyTakeCoversEveryJobOnce(t *testing.T) {
	t.Parallel()
	cases := []struct{ jobs, max int }{
		{0, 10}, {5, 10}, {5000, 1}, {5000, 700}, {5000, 5000},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d jobs by %d", tc.jobs, tc.max), func(t *testing.T) {
			t.Parallel()
			var tally Tally
			now := time.Now()
			for i := range tc.jobs {
				name := fmt.Sprintf("job-%d", i)
				tally.Add([]Run{{Job: name, Status: StatusSucceeded, ClaimedAt: now}, {Job: name, Status: StatusFailed, ClaimedAt: now}})
			}
			require.Equal(t, 2*tc.jobs, tally.Runs())
			seen := map[string]bool{}
			shardsSeen := map[int]bool{}
			runs := 0
			for tally.Runs() > 0 {
				part := tally.Take(tc.max)
				require.True(t, len(part.jobs) >= tc.max || tally.Runs() == 0, "a part is full unless it is the last")
				partShards := map[int]bool{}
				for name, d := range part.jobs {
					require.False(t, seen[name], name)
					seen[name] = true
					require.EqualValues(t, 2, d.run)
					partShards[shardOf(name)] = true
				}
				for sh := range partShards {
					require.False(t, shardsSeen[sh], "shard %d split across parts", sh)
					shardsSeen[sh] = true
				}
				runs += part.Runs()
			}
			require.Len(t, seen, tc.jobs)
			require.Equal(t, 2*tc.jobs, runs)
		})
	}
}
