// Package token elects Baton's executor. It owns the token queue in
// RabbitMQ, the executor lease in the store, and the watchdog that keeps
// exactly one token in existence.
//
// # The token and the lease
//
// The token is one message in a durable quorum queue with single active
// consumer. Every instance consumes it (manual ack, prefetch 1); the broker
// delivers it to one of them, which holds it unacked. Holding the token is
// the right to try to lead, not leadership itself: the holder must also own
// the current epoch of the lease in the store (see store.Lease), and every
// effect of leading (claiming a tick, writing a job) is checked against that
// epoch. A token whose generation is not the lease's current generation is
// stale and is acked away by whoever receives it.
//
// # States of one instance
//
//	          connect, declare, consume
//	┌──────────────┐        ┌──────────┐ token delivered ┌────────────┐
//	│ disconnected ├───────►│ standby  ├────────────────►│ holding    │
//	└──────▲───────┘        └────▲─────┘  (stale: ack,   │ (waiting   │
//	       │                     │         stay standby) │  for lease)│
//	       │ any close, cancel,  │                       └─────┬──────┘
//	       │ deliveries closed,  │ resign on shutdown:         │ lease released,
//	       │ failed health check │ stop firing, release,       │ unchanged for a
//	       │ or lapsed deadline: │ cancel, nack (requeue)      │ TTL, or holder
//	       │ stop firing first   │                             │ gone: epoch N+1
//	       │                ┌────┴─────┐                       │
//	       └────────────────┤ executor │◄──────────────────────┘
//	                        │ epoch N  │──┐ every renew_interval: broker health
//	                        └──────────┘◄─┘ check, then renew (slot N/k+1);
//	                                        every rotate_interval: rotate
//
// # Transitions
//
//   - Acquire. The holder waits until the lease is released or has not
//     changed for LeaseTTL, judged on its own monotonic clock from when it
//     last saw the lease change (the watchdog's Observe loop keeps that
//     current), then claims the next slot of the old epoch and creates epoch
//     N+1. The slot insert is the compare-and-set: the old holder renewing and
//     the new one taking over race for the same slot; one wins. A token that
//     arrives redelivered came back from a consumer whose channel the broker
//     closed; its holder waits only HolderTTL, with the lease unchanged as
//     long (see holderGone for why that is safe).
//   - Renew. Before each renewal the executor checks the broker channel
//     (a passive declare with HealthTimeout): renewals need a working broker,
//     not only a reachable store. A successful renewal moves the term's
//     deadline to the renewal's start plus LeaseTTL minus a margin; a
//     successor waits a full TTL after it last saw a change, so the
//     executor's deadline always passes first. A renewal never revives a
//     term whose deadline passed.
//   - Confirm. Every HolderTTL/6 the executor makes a round trip on the
//     channel that holds the token, which the broker answers only while the
//     channel is open. Each answer moves the term's second deadline, the
//     broker deadline, to the round trip's start plus HolderTTL minus a
//     margin. The term is valid only before both deadlines.
//   - Rotate. Every RotateInterval the executor issues a new token
//     generation, publishes the new token with a confirm, then acks the old
//     delivery. Single active consumer hands the new token straight back to
//     the same consumer, so RabbitMQ's consumer_timeout (30 minutes) never
//     fires and leadership never moves. Rotation also drains duplicates:
//     whenever the executor sees a message waiting in the token queue while
//     it holds the real token, it rotates, and every waiting copy, now stale,
//     is acked away as it arrives.
//   - Step down. Any channel or connection close, server cancel, closed
//     deliveries channel, failed health check, lapsed deadline, or a store
//     answer that the epoch is stale ends the term at once: its context is
//     cancelled and Valid turns false before anything else happens, then the
//     executor stops firing, and then (if the store still knows us) the lease
//     is released so the successor need not wait out the TTL.
//   - Resign (shutdown). Stop firing, release the lease, cancel the consumer,
//     nack the token with requeue: the next consumer gets it in milliseconds
//     and sees a released lease.
//
// # What each fault does
//
//   - Executor crash (SIGKILL): the broker requeues the token when the
//     connection dies; the next holder receives it redelivered, waits
//     HolderTTL, and catches up from the watermark.
//   - Deploy (SIGTERM): resign; takeover in milliseconds.
//   - Silent partition between the executor and RabbitMQ: the broker stops
//     confirming the token's channel; the executor stops firing within
//     HolderTTL and releases the lease (the store is still reachable). The broker notices the dead connection after about three
//     heartbeats and gives the token to another instance, which then leads.
//     The old executor's last fire precedes the new one's first.
//   - Executor cut off from the store: renewals fail, the term lapses after
//     LeaseTTL minus the margin, and firing stops (claims fail earlier, and
//     are caught up when the store returns).
//   - Broker restart: every connection drops; the executor steps down and
//     releases the lease; all instances reconnect with capped, jittered
//     backoff; the first consumer the quorum queue serves takes over.
//   - Token lost (purged, queue deleted, broker data loss): the watchdog
//     sees no live lease and an empty queue twice in a row and re-inserts
//     one token, winning a compare-and-set on the generation in the store;
//     racing watchdogs publish exactly one.
//   - Queue deleted and at once declared again: RabbitMQ 3.10 leaves the
//     old queue's consumers registered on their channels without a
//     basic.cancel, and tokens sent to them vanish. A standby subscribes
//     again when the queue reports no consumer, or when no lease has been
//     live for StuckAfter (2 x LeaseTTL); then the watchdog's re-insert
//     reaches a real consumer. An executor that keeps its old delivery
//     keeps leading, fenced by its lease as always.
//   - Duplicate token (manual publish, retried publish, crash between a
//     rotation's publish and ack): stale copies are acked on arrival; a copy
//     of the current generation is drained by the executor's next rotation.
//   - consumer_timeout: prevented by rotation; if the broker closes the
//     channel anyway, that is a step-down like any other, and the next
//     executor catches up.
package token
