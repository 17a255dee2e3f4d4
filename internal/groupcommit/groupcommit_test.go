package groupcommit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/groupcommit"
)

func TestGroupCommit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		callers int
		max     int
		hold    time.Duration // how long each batch runs
		// at most this many batches: a lone caller runs alone, and callers
		// arriving during a batch share the next ones
		maxBatches int
	}{
		{"lone caller", 1, 10, 0, 1},
		{"many callers share batches", 64, 100, 20 * time.Millisecond, 8},
		{"batches never exceed max", 50, 7, 5 * time.Millisecond, 50},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var batches, running atomic.Int64
			var maxSeen atomic.Int64
			g := groupcommit.New(tc.max, func(_ context.Context, items []int) []int {
				require.Equal(t, int64(1), running.Add(1), "one batch at a time")
				defer running.Add(-1)
				batches.Add(1)
				if n := int64(len(items)); n > maxSeen.Load() {
					maxSeen.Store(n)
				}
				time.Sleep(tc.hold)
				out := make([]int, len(items))
				for i, v := range items {
					out[i] = v * 2
				}
				return out
			})
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range tc.callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					require.Equal(t, i*2, g.Do(context.Background(), i), "each caller gets its own result")
				}()
			}
			close(start)
			wg.Wait()
			require.LessOrEqual(t, batches.Load(), int64(tc.maxBatches))
			require.LessOrEqual(t, maxSeen.Load(), int64(tc.max))
			// The group is idle again: a new call runs at once.
			require.Equal(t, 2, g.Do(context.Background(), 1))
		})
	}
}
