package executor

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"
)

func TestBusyBeforeAWaveOfFires(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now := clock.Now()
	tests := []struct {
		name   string
		due    []time.Time // noteDue calls, in order
		queued int
		// sending fires are being sent, the last handed over fedAgo.
		sending int
		fedAgo  time.Duration
		within  time.Duration
		want    bool
	}{
		{name: "nothing claimed ahead", within: time.Second, want: false},
		{name: "a wave due within the write", due: []time.Time{now.Add(100 * time.Millisecond)}, within: 150 * time.Millisecond, want: true},
		{name: "a wave due after the write", due: []time.Time{now.Add(200 * time.Millisecond)}, within: 150 * time.Millisecond, want: false},
		{name: "a wave already due", due: []time.Time{now.Add(-10 * time.Millisecond)}, within: time.Second, want: false},
		{name: "the earlier of two waves counts", due: []time.Time{now.Add(900 * time.Millisecond), now.Add(100 * time.Millisecond)}, within: 150 * time.Millisecond, want: true},
		{name: "a later wave does not hide an earlier one", due: []time.Time{now.Add(100 * time.Millisecond), now.Add(900 * time.Millisecond)}, within: 150 * time.Millisecond, want: true},
		{name: "a past wave is replaced", due: []time.Time{now.Add(-time.Second), now.Add(100 * time.Millisecond)}, within: 150 * time.Millisecond, want: true},
		{name: "fires waiting for the workers", queued: 1, within: 0, want: true},
		{name: "a wave's tail still being sent", sending: 1, fedAgo: 100 * time.Millisecond, want: true},
		{name: "fires sent long after the last was handed over", sending: 1, fedAgo: time.Second, want: false},
		{name: "nothing being sent", fedAgo: 100 * time.Millisecond, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := New(Config{Clock: clock, Workers: 1}, nil, nil)
			for _, d := range tc.due {
				e.noteDue(d)
			}
			for range tc.queued {
				e.fires <- &fire{}
			}
			e.sending.Store(int64(tc.sending))
			if tc.fedAgo > 0 {
				e.lastFed.Store(now.Add(-tc.fedAgo).UnixNano())
			}
			require.Equal(t, tc.want, e.busy(tc.within))
		})
	}
}
