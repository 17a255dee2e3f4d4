package executor

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/schedule"
	"github.com/batonhq/baton/store"
)

// groupPlan is one pass of a group of n jobs: n ticks at the same time.
func groupPlan(t testing.TB, n int) []planned {
	sched, err := schedule.Parse("0 * * * * *", "UTC")
	require.NoError(t, err)
	at := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
	plan := make([]planned, n)
	for i := range plan {
		plan[i] = planned{en: &entry{job: &job.Job{Name: fmt.Sprintf("job-%06d", i)}, sched: sched}, at: at}
	}
	return plan
}

// Every tick lands in the part of its cell, each cell whole in one part,
// and no part but a lone cell's exceeds the batch.
func TestClaimPartsKeepCellsWhole(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ n, batch int }{{10, 4000}, {5000, 4000}, {100_000, 4000}, {100_000, 100}} {
		t.Run(fmt.Sprintf("%d in %d", tc.n, tc.batch), func(t *testing.T) {
			ts := &termState{e: &Executor{cfg: Config{ClaimBatch: tc.batch}}}
			plan := groupPlan(t, tc.n)
			parts := ts.claimParts(plan)
			partOf := map[string]int{}
			total := 0
			for k, part := range parts {
				cells := map[string]bool{}
				for _, p := range part {
					id := store.CellOf(p.en.sched.Key(), p.en.job.Name, p.at)
					if prev, ok := partOf[id]; ok {
						require.Equal(t, prev, k, "cell %s split across parts", id)
					}
					partOf[id] = k
					cells[id] = true
				}
				if len(cells) > 1 {
					require.LessOrEqual(t, len(part), tc.batch)
				}
				total += len(part)
			}
			require.Equal(t, tc.n, total)
		})
	}
}

func BenchmarkClaimParts100k(b *testing.B) {
	ts := &termState{e: &Executor{cfg: Config{ClaimBatch: 4000}}}
	plan := groupPlan(b, 100_000)
	b.ResetTimer()
	for range b.N {
		ts.claimParts(plan)
	}
}
