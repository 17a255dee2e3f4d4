package schedule

import (
	"iter"
	"time"
)

// horizon is how far Next looks ahead. Every schedule that Parse accepts
// fires within it, except February 29 across a skipped leap year (2100).
const horizon = 5 // years

// Next returns the first tick strictly after t, in UTC, or the zero time if
// there is none within five years of t.
func (s *Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		// t.Unix rounds down, so this is the first multiple after t even
		// when t has a fraction of a second.
		return time.Unix((floorDiv(t.Unix(), s.every)+1)*s.every, 0).UTC()
	}
	return s.nextCron(t)
}

// nextCron implements the daylight-saving rules of the package doc.
//
// A zone's history is a sequence of periods [start, end), each with one UTC
// offset. Within a period, wall-clock time is real time plus the offset, so
// the ticks in it are the matching wall-clock times in [start+offset,
// end+offset), shifted back by the offset. Next walks the periods from the
// one containing t; at the start of a period, with the previous offset
// prev:
//
//   - prev < offset: clocks went forward, and wall-clock times [start+prev,
//     start+offset) never happen. For a fixed-hour schedule, if any of them
//     match, start is a tick.
//   - prev > offset: clocks went back, and wall-clock times [start+offset,
//     start+prev) happen a second time. A fixed-hour schedule ticked at
//     their first occurrence in the previous period, so they are skipped.
//
// Hourly schedules take every matching wall-clock time in every period,
// which is both rules' real-time reading. Working per period instead of
// guessing how far back a clock change reaches makes the result exact for a
// clock change of any size, and Next(t) is by construction the smallest
// tick after t, so iterating Next never skips or repeats one.
func (s *Schedule) nextCron(t time.Time) time.Time {
	first := t.Unix() + 1 // ticks are whole seconds
	limit := t.AddDate(horizon, 0, 0).Unix()
	for x := first; x <= limit; {
		at := time.Unix(x, 0).In(s.loc)
		_, off := at.Zone()
		start, end := at.ZoneBounds()
		o := int64(off)
		lo, hi := x, limit // real-time bounds for ticks in this period
		if !end.IsZero() {
			hi = min(hi, end.Unix()-1)
		}
		if !start.IsZero() && !s.hourly {
			st := start.Unix()
			_, prevOff := time.Unix(st-1, 0).In(s.loc).Zone()
			p := int64(prevOff)
			switch {
			case p < o && st >= first:
				if _, ok := s.fields.nextWall(st+p, st+o-1); ok {
					return time.Unix(st, 0).UTC()
				}
			case p > o:
				// The instant whose wall-clock time is start+prev.
				lo = max(lo, st+p-o)
			}
		}
		if w, ok := s.fields.nextWall(lo+o, hi+o); ok {
			return time.Unix(w-o, 0).UTC()
		}
		if end.IsZero() {
			break
		}
		x = end.Unix()
	}
	return time.Time{}
}

// Ticks yields the ticks in (after, until], oldest first. It computes each
// tick only when the previous one has been consumed, so a long range costs
// nothing until it is iterated.
func (s *Schedule) Ticks(after, until time.Time) iter.Seq[time.Time] {
	return func(yield func(time.Time) bool) {
		for t := s.Next(after); !t.IsZero() && !t.After(until); t = s.Next(t) {
			if !yield(t) {
				return
			}
		}
	}
}
