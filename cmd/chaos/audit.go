package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/batonhq/baton/store"
)

type injected struct {
	kind string
	at   time.Time
}

type blackhole struct {
	node  string
	epoch int64
	at    time.Time
}

type report struct {
	faults     []injected
	jobs       []string
	created    map[string]time.Time // a job's ticks count only after it was created
	takeovers  map[string][]time.Duration
	blackholes []blackhole
	doubles    int
	flaps      int
	errs       []string

	window                      [2]time.Time
	expected, fired, recorded   int
	duplicates, missed          int
	maxGap                      time.Duration
	lateFires, blackholeBreaks  int
	missedExamples, dupExamples []string
}

func newReport() *report {
	return &report{takeovers: map[string][]time.Duration{}, created: map[string]time.Time{}}
}

func (r *report) takeover(kind string, d time.Duration) {
	r.takeovers[kind] = append(r.takeovers[kind], d)
}

func (r *report) errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// audit compares the receiver's log with the schedule and the run records,
// for each job's ticks from just after it was created until end. Jobs are
// created one by one, so a later job's first due tick can be seconds after
// the first job's.
func (x *chaos) audit(ctx context.Context, end time.Time) error {
	r := x.rep
	tally := x.recv.Tally()
	fires := x.recv.Fires()
	for i, name := range r.jobs {
		// The executor fires ticks strictly after a job became active.
		from := r.created[name].Truncate(time.Second).Add(time.Second)
		if i == 0 {
			r.window = [2]time.Time{from, end}
		}
		records, err := x.allRuns(ctx, name, from)
		if err != nil {
			return err
		}
		fired := tally[name]
		gap := time.Duration(0)
		for tick := from; !tick.After(end); tick = tick.Add(time.Second) {
			r.expected++
			switch n := fired[tick]; {
			case n > 1:
				r.duplicates++
				r.dupExamples = append(r.dupExamples, fmt.Sprintf("%s@%s x%d", name, tick.Format(time.TimeOnly), n))
				fallthrough
			case n == 1:
				r.fired++
				gap = 0
				continue
			}
			gap += time.Second
			r.maxGap = max(r.maxGap, gap)
			if _, ok := records[tick]; ok {
				r.recorded++
				continue
			}
			r.missed++
			r.missedExamples = append(r.missedExamples, fmt.Sprintf("%s@%s", name, tick.Format(time.TimeOnly)))
		}
	}
	// An executor's fires must all come before the first fire of any newer
	// executor.
	first := map[int64]time.Time{}
	for _, f := range fires {
		if t, ok := first[f.Epoch]; !ok || f.ReceivedAt.Before(t) {
			first[f.Epoch] = f.ReceivedAt
		}
	}
	for _, f := range fires {
		for e, t := range first {
			if e > f.Epoch && t.Before(f.ReceivedAt) {
				r.lateFires++
				break
			}
		}
	}
	for _, b := range r.blackholes {
		var lastOld, firstNew time.Time
		for _, f := range fires {
			if f.Epoch == b.epoch && f.ReceivedAt.After(lastOld) {
				lastOld = f.ReceivedAt
			}
			if f.Epoch > b.epoch && (firstNew.IsZero() || f.ReceivedAt.Before(firstNew)) {
				firstNew = f.ReceivedAt
			}
		}
		if !firstNew.IsZero() && !lastOld.Before(firstNew) {
			r.blackholeBreaks++
		}
	}
	return nil
}

// allRuns returns every run record of a job from since on, by tick.
func (x *chaos) allRuns(ctx context.Context, name string, since time.Time) (map[time.Time]store.Run, error) {
	out := map[time.Time]store.Run{}
	var before time.Time
	for {
		runs, err := x.db.Runs(ctx, store.RunQuery{Job: name, Since: since, Before: before, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, run := range runs {
			out[run.ScheduledAt.UTC()] = run
		}
		if len(runs) < 1000 {
			return out, nil
		}
		before = runs[len(runs)-1].ScheduledAt
	}
}

func (r *report) problems() []string {
	var p []string
	if r.duplicates > 0 {
		p = append(p, fmt.Sprintf("%d doubled ticks (%s)", r.duplicates, strings.Join(first(r.dupExamples, 5), ", ")))
	}
	if r.missed > 0 {
		p = append(p, fmt.Sprintf("%d ticks neither fired nor recorded (%s)", r.missed, strings.Join(first(r.missedExamples, 5), ", ")))
	}
	if r.doubles > 0 {
		p = append(p, fmt.Sprintf("%d moments with two executors", r.doubles))
	}
	if r.lateFires > 0 {
		p = append(p, fmt.Sprintf("%d fires by an old executor after a newer one began", r.lateFires))
	}
	if r.flaps > 0 {
		p = append(p, fmt.Sprintf("%d leadership flaps under consumer_timeout", r.flaps))
	}
	p = append(p, r.errs...)
	return p
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

func (r *report) print(w io.Writer, o options) {
	counts := map[string]int{}
	for _, f := range r.faults {
		counts[f.kind]++
	}
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\nBaton fault-injection run: seed %d, %d instances, %d jobs firing every second\n", o.seed, o.instances, len(r.jobs))
	fmt.Fprintf(tw, "window\t%s .. %s (%s)\n", r.window[0].Format(time.TimeOnly), r.window[1].Format(time.TimeOnly), r.window[1].Sub(r.window[0]).Round(time.Second))
	fmt.Fprintf(tw, "faults injected\t%d\n", len(r.faults))
	fmt.Fprintf(tw, "ticks expected\t%d\n", r.expected)
	fmt.Fprintf(tw, "ticks fired\t%d\n", r.fired)
	fmt.Fprintf(tw, "ticks recorded, not fired\t%d\t(missed or skipped by policy, with a reason)\n", r.recorded)
	fmt.Fprintf(tw, "duplicates\t%d\n", r.duplicates)
	fmt.Fprintf(tw, "missed (neither fired nor recorded)\t%d\n", r.missed)
	fmt.Fprintf(tw, "max gap without a fire\t%s\n", r.maxGap)
	fmt.Fprintf(tw, "moments with two executors\t%d\n", r.doubles)
	fmt.Fprintf(tw, "fires by an old executor after a new one\t%d\n", r.lateFires)
	fmt.Fprintf(tw, "blackholes: old fired after new\t%d of %d\n", r.blackholeBreaks, len(r.blackholes))
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fault type\tinjected\ttakeovers\ttakeover p50\ttakeover max\t")
	for _, k := range kinds {
		d := r.takeovers[k]
		p50, mx := "-", "-"
		if len(d) > 0 {
			slices.Sort(d)
			p50 = d[(len(d)+1)/2-1].Round(time.Millisecond).String() // nearest rank
			mx = d[len(d)-1].Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t\n", k, counts[k], len(d), p50, mx)
	}
	tw.Flush()
	for _, e := range r.errs {
		fmt.Fprintln(w, "error:", e)
	}
}
