// Package groupcommit runs concurrent calls together, as a database commits
// concurrent transactions together: while one batch runs, the calls that
// arrive meanwhile gather into the next. A lone call waits for no one, so
// batching adds no latency when there is nothing to share; under load, one
// store round trip serves many callers.
//
// It starts no goroutine: the call that finds the group idle runs its own
// batch, and whoever finishes a batch hands the next one to one of that
// batch's own callers.
package groupcommit

import (
	"context"
	"sync"
)

// Group batches calls of one kind.
type Group[T, R any] struct {
	run func(ctx context.Context, items []T) []R
	max int

	mu    sync.Mutex
	busy  bool           // a batch is running
	queue []*batch[T, R] // waiting to run, oldest first; the last one gathers
}

type batch[T, R any] struct {
	items   []T
	results []R
	done    chan struct{} // closed once results are set
	lead    chan struct{} // tells one caller of the batch to run it
}

// New returns a group that runs batches of at most max items through run,
// which must return one result per item, in order, and must not panic.
func New[T, R any](max int, run func(ctx context.Context, items []T) []R) *Group[T, R] {
	return &Group[T, R]{run: run, max: max}
}

// Do runs item in a batch with the calls that arrive meanwhile and returns
// its result. It returns only once the item has run: a write is never left
// with its outcome unknown, and its batch may need this caller to run it.
// The batch runs under the values of the context of the caller that runs
// it, without its cancellation: no one caller may abort a shared batch, so
// run must bound its own time.
func (g *Group[T, R]) Do(ctx context.Context, item T) R {
	g.mu.Lock()
	var b *batch[T, R]
	if n := len(g.queue); n > 0 && len(g.queue[n-1].items) < g.max {
		b = g.queue[n-1]
	} else {
		b = &batch[T, R]{done: make(chan struct{}), lead: make(chan struct{}, 1)}
		g.queue = append(g.queue, b)
	}
	i := len(b.items)
	b.items = append(b.items, item)
	if g.busy {
		g.mu.Unlock()
		select {
		case <-b.done:
		case <-b.lead:
			g.runFrom(ctx, b)
		}
		return b.results[i]
	}
	// The group was idle, so its queue held only b.
	g.busy, g.queue = true, g.queue[:0]
	g.mu.Unlock()
	g.runFrom(ctx, b)
	return b.results[i]
}

// runFrom runs b, then hands the oldest waiting batch to one of its
// callers, or leaves the group idle.
func (g *Group[T, R]) runFrom(ctx context.Context, b *batch[T, R]) {
	b.results = g.run(context.WithoutCancel(ctx), b.items)
	close(b.done)
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.busy = false
		return
	}
	next := g.queue[0]
	g.queue = g.queue[1:]
	next.lead <- struct{}{}
}
