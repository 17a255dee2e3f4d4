// Package schedule parses job schedules and computes their ticks: the
// instants at which a job is due.
//
// A schedule is a 5-field cron expression (minute hour day-of-month month
// day-of-week), a 6-field one with a leading seconds field, a descriptor
// (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly), or
// "@every D" with a Go duration D. The field syntax is robfig/cron's: ranges,
// steps, lists and names such as MON-FRI or JAN. The time zone is a separate
// IANA name; a CRON_TZ= or TZ= prefix in the schedule is rejected so that a
// job's zone is stated in exactly one place.
//
// Ticks are computed in the same way by every process that asks, because an
// executor claims a tick in the database by (job, scheduled time): two
// executors that disagreed about a tick's instant would both run it.
//
// # Daylight saving time
//
// Cron fields describe wall-clock times in the job's time zone. Each
// matching wall-clock time is mapped to real instants:
//
//   - Normally a wall-clock time happens once, and that instant is the tick.
//
//   - When clocks go forward, some wall-clock times never happen (02:30 in
//     New York on 2026-03-08, when 02:00 EST is followed by 03:00 EDT). A
//     schedule with a fixed hour, such as "30 2 * * *", fires once, at the
//     first instant after the gap (03:00 EDT), so a daily job is never
//     lost. If several of its times fall into the gap ("*/15 2 * * *"), it
//     still fires only once, at that same instant. A schedule that runs
//     every hour ("0 * * * *", "*/5 * * * *") has no tick for the missing
//     times: no real time passed there.
//
//   - When clocks go back, some wall-clock times happen twice (01:30 in New
//     York on 2026-11-01: first in EDT, an hour later in EST). A schedule
//     with a fixed hour fires once, at the first occurrence, so a daily job
//     never runs twice. A schedule that runs every hour fires at both, since
//     they are an hour apart in real time: an hourly job runs 25 times that
//     day, and a job every 15 minutes runs every 15 real minutes.
//
// "Runs every hour" means that the hour field matches all 24 hours (it is
// "*" or equivalent). Every other hour field, including steps such as "*/2",
// counts as a fixed hour. These rules follow Vixie cron's, stated per tick
// instead of per clock jump, and hold for any size of clock change,
// including the half-hour change on Lord Howe Island and the day Samoa
// skipped in 2011.
//
// # @every
//
// "@every D" ticks at the instants that are whole multiples of D since the
// Unix epoch, 1970-01-01T00:00:00Z. The ticks do not depend on the time
// zone, on when the job was created, or on which process computes them.
// "@every 30s" ticks at :00 and :30 of every minute, and "@every 1h" at the
// top of every UTC hour. D is a whole number of seconds from 1s to MaxEvery;
// a longer period is clearer as a cron expression.
//
// # Keys
//
// Schedule.Key is equal for two schedules exactly when they are known to
// tick at the same instants, so that jobs can share one timer. Equivalent
// spellings share a key where that is cheap to see ("@hourly" and
// "0 * * * *"; "@every 5m" and "*/5 * * * *" in UTC); schedules in
// different time zones do not.
package schedule
