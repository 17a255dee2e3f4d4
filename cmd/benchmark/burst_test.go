package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// around names the spans that overlap the second before a slow second's
// fires, or their sending, and nothing else.
func TestAroundListsWhatOverlapsASecond(t *testing.T) {
	t.Parallel()
	sec := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	at := func(d time.Duration) time.Time { return sec.Add(d) }
	ms := time.Millisecond
	tests := []struct {
		name  string
		spans []span
		lag   time.Duration
		want  string
	}{
		{name: "nothing", lag: 200 * ms, want: "no store write or gc near"},
		{name: "ended before the second before", spans: []span{{"record", at(-1500 * ms), 400 * ms}}, lag: 200 * ms, want: "no store write or gc near"},
		{name: "began after the last fire", spans: []span{{"count", at(300 * ms), 100 * ms}}, lag: 200 * ms, want: "no store write or gc near"},
		{name: "ran into the second before", spans: []span{{"record", at(-1200 * ms), 400 * ms}}, lag: 200 * ms, want: "record 400ms at -1.20s"},
		{name: "ran while fires went out", spans: []span{{"count", at(-170 * ms), 800 * ms}, {"gc pause", at(100 * ms), ms}}, lag: 200 * ms,
			want: "count 800ms at -0.17s, gc pause 1ms at +0.10s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, around(tc.spans, sec, tc.lag))
		})
	}
}
