package token

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/store"
)

func TestTermIsValidBeforeBothDeadlines(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		confirmAt time.Duration // when confirm runs; 0 for never
		confirmTo time.Duration // the broker deadline it asks for
		at        time.Duration // when Valid is asked
		want      error         // what lapsed, nil for valid
	}{
		{name: "before both", at: 500 * time.Millisecond},
		{name: "broker deadline passed", at: time.Second, want: errBrokerSilent},
		{name: "lease deadline passed first", at: 5 * time.Second, want: errLeaseExpired},
		{name: "a confirmation moves the broker deadline",
			confirmAt: 800 * time.Millisecond, confirmTo: 1700 * time.Millisecond, at: 1500 * time.Millisecond},
		{name: "but not past the lease deadline",
			confirmAt: 800 * time.Millisecond, confirmTo: 9 * time.Second, at: 5 * time.Second, want: errLeaseExpired},
		{name: "a late answer does not revive the term",
			confirmAt: 1200 * time.Millisecond, confirmTo: 2 * time.Second, at: 1500 * time.Millisecond, want: errBrokerSilent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			term := newTerm(context.Background(), store.Lease{Epoch: 1}, t0.Add(4*time.Second), t0.Add(time.Second),
				func() time.Time { return now })
			if tc.confirmAt > 0 {
				now = t0.Add(tc.confirmAt)
				term.confirm(t0.Add(tc.confirmTo))
			}
			now = t0.Add(tc.at)
			require.Equal(t, tc.want, term.lapsed())
			require.Equal(t, tc.want == nil, term.Valid())
		})
	}
}

func TestHolderGoneNeedsARequeuedTokenAndAQuietLease(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name         string
		requeued     bool
		heldFor      time.Duration
		leaseQuietAt time.Duration // the lease last changed this long ago
		want         bool
	}{
		{name: "requeued, held and quiet for the holder TTL", requeued: true, heldFor: 1200 * time.Millisecond, leaseQuietAt: 3 * time.Second, want: true},
		{name: "a fresh publish, not a requeue", requeued: false, heldFor: 3 * time.Second, leaseQuietAt: 3 * time.Second},
		{name: "held too briefly", requeued: true, heldFor: time.Second, leaseQuietAt: 3 * time.Second},
		{name: "the holder renewed meanwhile", requeued: true, heldFor: 3 * time.Second, leaseQuietAt: time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			clock := func() time.Time { return now }
			obs := &Observer{ttl: 5 * time.Second, now: clock}
			obs.Observe(store.Lease{Holder: "old", Epoch: 1, Renewals: 7})
			now = t0.Add(tc.leaseQuietAt)
			s := &session{e: &Elector{cfg: Config{HolderTTL: 1200 * time.Millisecond}, obs: obs, now: clock},
				heldSince: now.Add(-tc.heldFor), requeued: tc.requeued}
			require.Equal(t, tc.want, s.holderGone())
		})
	}
}
