// Package crud carries API writes from any instance to the executor, which
// is the single writer: it validates, writes the store under its epoch,
// applies the change to the live schedule, and replies.
//
// A Client publishes a Request to the "<cluster>.crud" queue and waits for
// the reply on RabbitMQ's direct reply-to. A Server, running only on the
// executor, consumes the queue and hands each request to an Applier.
//
// A write is applied at most once and never behind its caller's back. Each
// request is decided in the store by whoever inserts its record first: the
// executor when it begins applying it, or the caller when it gives up after
// its timeout. A caller told "no executor" can rely on the write never
// happening; a caller whose request the executor had already begun waits for
// and returns its real outcome.
package crud
