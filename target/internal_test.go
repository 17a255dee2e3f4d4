package target

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
)

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	ms := func(n int) job.Duration { return job.Duration(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name    string
		retry   *job.Retry
		attempt int
		nominal time.Duration
	}{
		{name: "first retry waits the backoff", retry: &job.Retry{Backoff: ms(100), MaxBackoff: ms(1000)}, attempt: 1, nominal: 100 * time.Millisecond},
		{name: "doubles", retry: &job.Retry{Backoff: ms(100), MaxBackoff: ms(1000)}, attempt: 3, nominal: 400 * time.Millisecond},
		{name: "capped", retry: &job.Retry{Backoff: ms(100), MaxBackoff: ms(1000)}, attempt: 5, nominal: time.Second},
		{name: "no overflow after many attempts", retry: &job.Retry{Backoff: job.Duration(time.Hour), MaxBackoff: job.Duration(1000 * time.Hour)}, attempt: 200, nominal: 1000 * time.Hour},
		{name: "cap below the backoff", retry: &job.Retry{Backoff: ms(500), MaxBackoff: ms(200)}, attempt: 1, nominal: 200 * time.Millisecond},
		{name: "defaults when unset", retry: &job.Retry{}, attempt: 1, nominal: job.DefaultRetryBackoff.Std()},
		{name: "defaults without a retry block", retry: nil, attempt: 30, nominal: job.DefaultRetryMaxBackoff.Std()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for range 100 {
				d := retryDelay(tc.retry, tc.attempt)
				require.GreaterOrEqual(t, d, tc.nominal/2)
				require.LessOrEqual(t, d, tc.nominal)
			}
		})
	}
}

func TestClip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		n        int
		want     string
	}{
		{name: "short", in: "boom", n: 20, want: "boom"},
		{name: "cut and marked", in: strings.Repeat("a", 30), n: 20, want: strings.Repeat("a", 20-len(clipMarker)) + clipMarker},
		{name: "not inside a character", in: strings.Repeat("é", 20), n: len(clipMarker) + 7, want: "ééé" + clipMarker},
		{name: "invalid bytes replaced", in: "a\xffb", n: 20, want: "a\uFFFDb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := clip(tc.in, tc.n)
			require.Equal(t, tc.want, got)
			require.LessOrEqual(t, len(got), tc.n)
			require.True(t, utf8.ValidString(got))
		})
	}
}

func TestTailBuffer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		writes []string
		max    int
		want   string
	}{
		{name: "fits", writes: []string{"ab", "cd"}, max: 100, want: "abcd"},
		{name: "exactly max", writes: []string{strings.Repeat("x", 100)}, max: 100, want: strings.Repeat("x", 100)},
		{name: "keeps the tail", writes: []string{strings.Repeat("a", 150), strings.Repeat("b", 100)}, max: 100,
			want: outputMarker + strings.Repeat("b", 100-len(outputMarker))},
		{name: "compacted many times", writes: strings.Split(strings.Repeat("0123456789", 100), ""), max: 100,
			want: outputMarker + strings.Repeat("0123456789", 10)[len(outputMarker):]},
		{name: "starts on a character", writes: []string{"x" + strings.Repeat("é", 100)}, max: 101,
			want: outputMarker + strings.Repeat("é", (101-len(outputMarker))/2)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &tailBuffer{max: tc.max}
			for _, w := range tc.writes {
				n, err := b.Write([]byte(w))
				require.NoError(t, err)
				require.Equal(t, len(w), n)
			}
			got := b.String()
			require.Equal(t, tc.want, got)
			require.LessOrEqual(t, len(got), tc.max)
			require.LessOrEqual(t, len(b.buf), 2*tc.max+1, "memory stays bounded")
		})
	}
}

func TestTrimPartialRune(t *testing.T) {
	t.Parallel()
	e := "é"    // 2 bytes
	euro := "€" // 3 bytes
	tests := []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"a" + e, "a" + e},
		{"a" + e[:1], "a"},
		{"a" + euro[:2], "a"},
		{"a" + euro, "a" + euro},
		{"a\xff", "a\xff"}, // invalid, not partial: left for ToValidUTF8
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, string(trimPartialRune([]byte(tc.in))), "%q", tc.in)
	}
}

func amqpTestJob(queue string) *job.Job {
	j := &job.Job{Name: "j", Schedule: "* * * * *", Target: job.Target{Type: job.TargetAMQP, AMQP: &job.AMQPTarget{RoutingKey: queue}}}
	j.Normalize()
	return j
}

// TestAMQPReconnects breaks the dispatcher's connection or channel behind
// its back and checks that the next fire replaces them, and that a broker
// that blocks publishers fails fires at once.
func TestAMQPReconnects(t *testing.T) {
	t.Parallel()
	url := testenv.AMQPURL(t)
	tests := []struct {
		name     string
		sabotage func(c *amqpConn)
	}{
		{name: "connection closed", sabotage: func(c *amqpConn) { _ = c.conn.Close() }},
		{name: "channel closed", sabotage: func(c *amqpConn) { _ = c.ch.Close() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			queue := testenv.Name(t)
			testenv.DeleteQueues(t, queue)
			d, err := New(Config{AMQPURL: url, Logger: testenv.Logger()})
			require.NoError(t, err)
			defer func() { require.NoError(t, d.Close()) }()
			f := Fire{FireID: "f1", Job: amqpTestJob(queue), ScheduledAt: time.Now(), Trigger: store.TriggerSchedule}
			allow := func() error { return nil }

			res := d.Dispatch(context.Background(), f, allow)
			require.Equal(t, store.StatusSucceeded, res.Status, res.Error)
			first := d.amqp.cur.Load()
			require.NotNil(t, first)
			tc.sabotage(first)
			require.Eventually(t, func() bool { return !first.usable() }, time.Second, time.Millisecond)

			res = d.Dispatch(context.Background(), f, allow)
			require.Equal(t, store.StatusSucceeded, res.Status, res.Error)
			second := d.amqp.cur.Load()
			require.NotSame(t, first, second)
			require.True(t, first.conn.IsClosed(), "the old connection is closed")

			reason := "low on memory"
			second.blocked.Store(&reason)
			res = d.Dispatch(context.Background(), f, allow)
			require.Equal(t, store.StatusFailed, res.Status)
			require.Contains(t, res.Error, "blocking publishers: low on memory")
		})
	}
}
