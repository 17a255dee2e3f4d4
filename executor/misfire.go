package executor

import (
	"fmt"
	"time"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/schedule"
)

// decision is what catch-up does with one missed tick.
type decision struct {
	At     time.Time
	Fire   bool
	Reason string // why it is recorded as missed
	// Count > 1 marks a summary record standing for Count ticks from At to
	// Until, written instead of one record each when very many were missed.
	Count int
	Until time.Time
}

// maxMissedRecords bounds the individual missed records catch-up writes
// for one job; older ticks beyond it are recorded as one summary record.
const maxMissedRecords = 1000

// planCatchUp decides, for the ticks of s in (from, now], which to fire and
// which to record as missed, following the job's misfire policy:
//
//   - a tick older than the starting deadline is missed ("past deadline");
//   - fire_once fires the latest tick within the deadline and records the
//     others as missed;
//   - fire_all fires every tick within the deadline, oldest first, up to
//     job.MaxFireAll, and records the rest as missed;
//   - skip records every tick as missed.
//
// Every tick is accounted for: nothing is dropped silently.
func planCatchUp(s *schedule.Schedule, policy string, deadline time.Duration, from, now time.Time) []decision {
	var ticks []time.Time
	for t := range s.Ticks(from, now) {
		ticks = append(ticks, t)
	}
	if len(ticks) == 0 {
		return nil
	}
	cutoff := now.Add(-deadline)
	var stale, fresh []time.Time
	for _, t := range ticks {
		if t.Before(cutoff) {
			stale = append(stale, t)
		} else {
			fresh = append(fresh, t)
		}
	}
	out := make([]decision, 0, len(ticks))
	out = append(out, summarize(stale, fmt.Sprintf("missed while no executor ran; older than the starting deadline (%s)", deadline))...)
	switch policy {
	case job.MisfireSkip:
		out = append(out, summarize(fresh, "missed while no executor ran; misfire policy skip")...)
	case job.MisfireFireAll:
		n := min(len(fresh), job.MaxFireAll)
		for _, t := range fresh[:n] {
			out = append(out, decision{At: t, Fire: true})
		}
		out = append(out, summarize(fresh[n:], fmt.Sprintf("missed while no executor ran; misfire policy fire_all fires at most %d", job.MaxFireAll))...)
	default: // fire_once
		if len(fresh) > 0 {
			out = append(out, summarize(fresh[:len(fresh)-1], "missed while no executor ran; misfire policy fire_once fires only the latest")...)
			out = append(out, decision{At: fresh[len(fresh)-1], Fire: true})
		}
	}
	return out
}

// summarize records ticks as missed, one record each, except that beyond
// maxMissedRecords the oldest are folded into one summary record.
func summarize(ticks []time.Time, reason string) []decision {
	var out []decision
	if extra := len(ticks) - maxMissedRecords; extra > 0 {
		out = append(out, decision{At: ticks[0], Until: ticks[extra], Count: extra + 1,
			Reason: fmt.Sprintf("%s (%d ticks from %s to %s, recorded as one)", reason, extra+1,
				ticks[0].Format(time.RFC3339), ticks[extra].Format(time.RFC3339))})
		ticks = ticks[extra+1:]
	}
	for _, t := range ticks {
		out = append(out, decision{At: t, Reason: reason})
	}
	return out
}
