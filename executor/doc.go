// Package executor runs jobs while this instance holds the token: it loads
// every job from the store, schedules them with gocron, claims each tick in
// the store before dispatching it, catches up ticks missed while no executor
// ran, and applies forwarded writes as the cluster's single writer.
//
// # Ticks
//
// Jobs that share a schedule and time zone share one gocron job (a group),
// so 100,000 jobs on a handful of schedules need a handful of timers. When a
// group's timer fires, the executor computes the ticks due since the group
// last ran from the schedule itself, so a late or skipped timer never loses
// a tick.
//
// Each tick of each job is claimed by inserting a run whose (job,
// scheduled_at) is unique, under the executor's epoch; only a claimed tick is
// dispatched, and at most once. Two executors that both believe they lead can
// therefore never fire one tick twice. With a claim lead (Config.ClaimLead)
// a group's timer runs that long before its tick and claims it then; the
// fires wait for their time, and a job paused or deleted meanwhile does not
// fire.
//
// # Failover
//
// The executor reports a watermark with every lease renewal: every tick at
// or before it has been claimed or recorded. A new executor starts from the
// previous one's watermark and plans the ticks in between with each job's
// misfire policy (see planCatchUp). If the store fails under a running
// executor, the watermark freezes and the same catch-up runs once it is back.
//
// Jobs are loaded as a stream: each batch joins the running schedule and is
// caught up at once, so the first fire of a takeover does not wait for
// 100,000 jobs to be read. The watermark moves only once all are in. A
// standby that waits out a crashed executor's lease reads jobs meanwhile
// (Prepare), and its term starts with them, the soonest due first, if the
// previous executor changed no job since the reading began.
//
// # Outcomes
//
// Outcomes are inserted behind the workers, in batches, and tallied per job
// into the job counters by a second loop, so neither a slow store nor a
// sustained load makes a worker wait or the backlog grow with the runs.
//
// # Stopping
//
// On a handover, Quiesce first stops the timers and lets the fires already
// claimed go to the workers, within the claim lead and a quarter second. When
// the term ends the scheduler stops at once; fires waiting for their time,
// their jitter delay or a worker are recorded as cancelled rather than sent,
// because every dispatch checks the term just before sending. Requests
// already sent finish and are recorded.
package executor
