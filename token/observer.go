package token

import (
	"sync"
	"time"

	"github.com/batonhq/baton/store"
)

// Observer tracks when the lease last changed, on this process's monotonic
// clock. A lease is live while its holder keeps changing it (every renewal
// increments Renewals); once it has not changed for a TTL, it has expired.
//
// Judging expiry from local observation, as Kubernetes' leader election
// does, means no two machines' wall clocks are ever compared: a skewed clock
// cannot make a lease look expired early.
type Observer struct {
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	seen      bool
	last      store.Lease
	changedAt time.Time
}

// NewObserver returns an observer for leases with the given TTL.
func NewObserver(ttl time.Duration) *Observer {
	return &Observer{ttl: ttl, now: time.Now}
}

// Observe records a lease as read at the current moment.
func (o *Observer) Observe(l store.Lease) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.seen || l.Holder != o.last.Holder || l.Epoch != o.last.Epoch ||
		l.Renewals != o.last.Renewals || l.Released != o.last.Released {
		o.changedAt = o.now()
	}
	o.seen = true
	o.last = l
}

// Live reports whether l, which must have been passed to Observe, is held and
// has changed within the TTL.
func (o *Observer) Live(l store.Lease) bool {
	if !l.Held() {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.now().Sub(o.changedAt) < o.ttl
}

// Expired reports whether l is held but has not changed for a TTL.
func (o *Observer) Expired(l store.Lease) bool {
	return l.Held() && !o.Live(l)
}

// Last returns the lease last observed, whether any was, and how long ago
// it last changed.
func (o *Observer) Last() (l store.Lease, ok bool, unchangedFor time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last, o.seen, o.now().Sub(o.changedAt)
}
