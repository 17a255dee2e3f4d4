package schedule

import (
	"fmt"
	"math/bits"

	"github.com/robfig/cron/v3"
)

// starBit marks a robfig/cron field written as "*" or "?". It matters only
// for the day fields; see dayMatches.
const starBit = 1 << 63

// fields are the cron fields as bitmasks: bit n is set when value n matches.
// Masks hold no star bit; the two that matter are kept as flags.
type fields struct {
	second, minute, hour, dom, month, dow uint64
	domStar, dowStar                      bool
}

func fieldsOf(ss *cron.SpecSchedule) fields {
	return fields{
		second: ss.Second &^ starBit, minute: ss.Minute &^ starBit, hour: ss.Hour &^ starBit,
		dom: ss.Dom &^ starBit, month: ss.Month &^ starBit, dow: ss.Dow &^ starBit,
		domStar: ss.Dom&starBit != 0, dowStar: ss.Dow&starBit != 0,
	}
}

// dayMatches follows robfig/cron (and Vixie cron): when day-of-month or
// day-of-week is "*", a day must match both; when both are restricted, a
// day matching either will do ("0 0 1 * MON" is the 1st and every Monday).
func (f *fields) dayMatches(dom int, dow int) bool {
	d := f.dom&(1<<dom) != 0
	w := f.dow&(1<<dow) != 0
	if f.domStar || f.dowStar {
		return d && w
	}
	return d || w
}

// fires reports whether some day matches. Only "day-of-month restricted,
// day-of-week '*'" can fail: the listed days may not exist in the listed
// months (February 30). Every field mask is non-empty after parsing.
func (f *fields) fires() bool {
	if f.domStar || !f.dowStar {
		return true
	}
	longest := [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	for m := 1; m <= 12; m++ {
		if f.month&(1<<m) != 0 && f.dom&(1<<(longest[m]+1)-1) != 0 {
			return true
		}
	}
	return false
}

// key returns a string that is equal for fields matching the same wall
// times in the zone named zone.
func (f *fields) key(zone string) string {
	const (
		allDom = 1<<32 - 2 // 1-31
		allDow = 1<<7 - 1  // 0-6
	)
	// Canonical day rule: "and" with both masks, or "or" when both are
	// restricted. An "or" with a full mask matches every day.
	day := fmt.Sprintf("and:%x:%x", f.dom, f.dow)
	if !f.domStar && !f.dowStar {
		day = fmt.Sprintf("or:%x:%x", f.dom, f.dow)
		if f.dom == allDom || f.dow == allDow {
			day = fmt.Sprintf("and:%x:%x", uint64(allDom), uint64(allDow))
		}
	}
	return fmt.Sprintf("cron:%x:%x:%x:%s:%x@%s", f.second, f.minute, f.hour, day, f.month, zone)
}

// nextBit returns the lowest set bit of mask at or above from, or 64.
func nextBit(mask uint64, from int) int {
	if from >= 64 {
		return 64
	}
	return bits.TrailingZeros64(mask >> from << from)
}

// nextWall returns the first wall-clock time in [lo, hi] that the fields
// match. Wall-clock times are seconds counted as if the wall clock were
// UTC, so that calendar arithmetic needs no time zone.
//
// It works like robfig/cron's SpecSchedule.Next, but skips to the next set
// bit of a field instead of stepping one unit at a time, and counts days
// with integers instead of time.Date. That makes it a few hundred
// nanoseconds for common schedules.
func (f *fields) nextWall(lo, hi int64) (int64, bool) {
	if lo > hi {
		return 0, false
	}
	day := floorDiv(lo, 86400)
	lastDay := floorDiv(hi, 86400)
	sod := int(lo - day*86400)
	y, mo, d := civil(day)
	h, mi, s := sod/3600, sod/60%60, sod%60
	nextDay := func() {
		day++
		d++
		h, mi, s = 0, 0, 0
		if d > daysIn(y, mo) {
			d = 1
			if mo++; mo > 12 {
				mo = 1
				y++
			}
		}
	}
	for day <= lastDay {
		if f.month&(1<<mo) == 0 {
			if n := nextBit(f.month, mo); n <= 12 {
				mo = n
			} else {
				y, mo = y+1, nextBit(f.month, 1)
			}
			d, h, mi, s = 1, 0, 0, 0
			day = daysFromCivil(y, mo, d)
			continue
		}
		if !f.dayMatches(d, int(floorMod(day+4, 7))) { // 1970-01-01 was a Thursday
			nextDay()
			continue
		}
		if f.hour&(1<<h) == 0 {
			n := nextBit(f.hour, h)
			if n >= 24 {
				nextDay()
				continue
			}
			h, mi, s = n, 0, 0
		}
		if f.minute&(1<<mi) == 0 {
			n := nextBit(f.minute, mi)
			if n >= 60 {
				if h, mi, s = h+1, 0, 0; h == 24 {
					nextDay()
				}
				continue
			}
			mi, s = n, 0
		}
		if f.second&(1<<s) == 0 {
			n := nextBit(f.second, s)
			if n >= 60 {
				if mi, s = mi+1, 0; mi == 60 {
					if h, mi = h+1, 0; h == 24 {
						nextDay()
					}
				}
				continue
			}
			s = n
		}
		w := day*86400 + int64(h*3600+mi*60+s)
		if w > hi {
			return 0, false
		}
		return w, true
	}
	return 0, false
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the number of days from 1970-01-01 to y-m-d in the
// proleptic Gregorian calendar (Howard Hinnant's days_from_civil).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(int64(y), 400)
	yoe := int64(y) - era*400
	mp := int64((m + 9) % 12) // March is 0
	doy := (153*mp+2)/5 + int64(d) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civil is the inverse of daysFromCivil.
func civil(days int64) (y, m, d int) {
	z := days + 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	m = int(mp + 3)
	if m > 12 {
		m -= 12
	}
	y = int(yoe + era*400)
	if m <= 2 {
		y++
	}
	return y, m, d
}
