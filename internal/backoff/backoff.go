// Package backoff computes capped exponential delays with full jitter, for
// reconnect loops. Jitter spreads the reconnects of many instances after a
// broker restart instead of having them arrive in lockstep.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields delays in [0, min(Max, Min·2^n)) for the n-th consecutive
// failure. The zero value is not usable; set Min and Max.
type Backoff struct {
	Min, Max time.Duration
	n        int
}

// Next returns the next delay and counts a failure.
func (b *Backoff) Next() time.Duration {
	ceil := b.Min << min(b.n, 30)
	if ceil <= 0 || ceil > b.Max {
		ceil = b.Max
	}
	b.n++
	// Full jitter, but never below Min/2 so that a tight failure loop
	// cannot spin.
	return b.Min/2 + rand.N(max(ceil-b.Min/2, 1))
}

// Reset forgets past failures.
func (b *Backoff) Reset() { b.n = 0 }

// Sleep waits d or until ctx ends; it reports whether the full delay passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
