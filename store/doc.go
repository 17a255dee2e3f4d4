// Package store owns Baton's state in MongoDB: jobs, the executor lease and
// token generation, instance registrations, tick claims, run results, run
// counters, and forwarded-write records.
//
// Every write the executor makes carries a Fence (its lease epoch). The store
// rejects a fenced write with ErrStaleEpoch when the lease has moved on, and
// job documents carry the epoch of their last writer so that an update under
// an older epoch cannot overwrite a newer one.
//
// The hot path is insert-only: a tick is claimed by inserting a run document
// whose (job, scheduled_at) is unique, and its outcome by inserting a result
// document whose _id is the fire id. Inserts are cheap everywhere, a duplicate
// key is the compare-and-set, and nothing needs a transaction (FerretDB, the
// test store, has none). Counters are kept in a few shard documents updated
// with $inc, so a burst of 100,000 results costs a few hundred updates, not
// 100,000.
package store
