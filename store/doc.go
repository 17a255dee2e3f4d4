// Package store owns Baton's state in MongoDB: jobs, the executor lease and
// token generation, instance registrations, tick claims, run results, run
// counters, and forwarded-write records.
//
// Every write the executor makes carries a Fence (its lease epoch). The store
// rejects a fenced write with ErrStaleEpoch when the lease has moved on, and
// job documents carry the epoch of their last writer so that an update under
// an older epoch cannot overwrite a newer one.
//
// The hot path is insert-only and a duplicate key is the compare-and-set,
// so nothing needs a transaction (FerretDB, the test store, has none). A
// scheduled tick is claimed through its cell: one document per schedule
// group, tick and shard of job names, listing the jobs it claims (see
// CellID). A tick its cell does not list is claimed by inserting its run
// document, unique on (job, scheduled_at). Run documents of ticks claimed
// through cells are written after dispatch (RecordClaims), and an outcome
// is a result document whose _id is the fire id. Counters are kept in a few
// shard documents updated with $inc, so a burst of 100,000 results costs a
// few hundred updates, not 100,000.
package store
