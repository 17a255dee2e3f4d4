package token

import (
	"context"
	"sync"
	"time"

	"github.com/batonhq/baton/store"
)

// Term is one continuous period of leadership under one lease epoch. The
// elector hands it to the Leader when the lease is acquired.
//
// A term ends the moment leadership is in doubt: its context is cancelled
// and Valid turns false. Valid also turns false on its own when the lease has
// not been renewed in time, even if nothing else noticed yet, because by then
// another instance may take over.
type Term struct {
	lease  store.Lease
	ctx    context.Context
	cancel context.CancelCauseFunc
	now    func() time.Time

	mu sync.Mutex
	// No fire may start after either deadline (monotonic). The lease
	// deadline follows the last renewal in the store, the broker deadline
	// the last answer on the channel that holds the token.
	deadline       time.Time
	brokerDeadline time.Time
	watermark      time.Time
}

func newTerm(parent context.Context, l store.Lease, deadline, brokerDeadline time.Time, now func() time.Time) *Term {
	ctx, cancel := context.WithCancelCause(parent)
	return &Term{lease: l, ctx: ctx, cancel: cancel, deadline: deadline, brokerDeadline: brokerDeadline,
		now: now, watermark: l.Watermark}
}

// Epoch is the lease epoch of this term.
func (t *Term) Epoch() int64 { return t.lease.Epoch }

// Fence is what store writes made during this term carry.
func (t *Term) Fence() store.Fence { return t.lease.Fence() }

// Lease is the lease as acquired. Its Watermark is where the previous
// executor left off.
func (t *Term) Lease() store.Lease { return t.lease }

// Context is cancelled when the term ends.
func (t *Term) Context() context.Context { return t.ctx }

// Done is closed when the term ends.
func (t *Term) Done() <-chan struct{} { return t.ctx.Done() }

// Valid reports whether the holder may still act: the term has not ended,
// the lease was renewed recently enough that nobody else can have taken it,
// and the broker answered on the token's channel recently enough that the
// token cannot have moved on a while ago.
func (t *Term) Valid() bool {
	return t.ctx.Err() == nil && t.lapsed() == nil
}

// lapsed returns which deadline has passed, if one has.
func (t *Term) lapsed() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	switch {
	case !now.Before(t.deadline):
		return errLeaseExpired
	case !now.Before(t.brokerDeadline):
		return errBrokerSilent
	}
	return nil
}

// Deadline is the instant after which the term is no longer valid unless
// renewed, or confirmed by the broker.
func (t *Term) Deadline() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.brokerDeadline.Before(t.deadline) {
		return t.brokerDeadline
	}
	return t.deadline
}

// SetWatermark records that every tick at or before w has been claimed or
// recorded. It is written to the store with the next renewal.
func (t *Term) SetWatermark(w time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w.After(t.watermark) {
		t.watermark = w
	}
}

// Watermark returns the latest watermark set.
func (t *Term) Watermark() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.watermark
}

// extend moves the deadline later. The lease the term was acquired with
// never changes: it is read without locks by everything the term runs.
func (t *Term) extend(deadline time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if deadline.After(t.deadline) {
		t.deadline = deadline
	}
}

// confirm moves the broker deadline later, unless it has passed: like a
// renewal, a late answer never revives a term, because fires may have been
// refused meanwhile, and the term's end is what makes them caught up.
func (t *Term) confirm(deadline time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.now().Before(t.brokerDeadline) && deadline.After(t.brokerDeadline) {
		t.brokerDeadline = deadline
	}
}

func (t *Term) end(cause error) { t.cancel(cause) }

// NewTestTerm returns a term that is valid until it is ended by the returned
// function. It lets other packages test their Leader without a broker.
func NewTestTerm(parent context.Context, l store.Lease) (*Term, func()) {
	never := time.Now().Add(100 * 365 * 24 * time.Hour)
	t := newTerm(parent, l, never, never, time.Now)
	return t, func() { t.end(context.Canceled) }
}
