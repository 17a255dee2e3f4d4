package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

const (
	// spreadWarmup is left out after loading: the first ticks meet the
	// aftermath of the load (every timer's first pass, the garbage of
	// reading every job) and say little about the steady state.
	spreadWarmup = 10 * time.Second
	// spreadGrace is how long after the window its last fires may still
	// arrive; what has not arrived by then is reported missing.
	spreadGrace = 30 * time.Second
)

// batonSpread runs an in-process Baton instance as the executor of n jobs
// that fire every minute, spread evenly over its seconds (about n/60 fires
// every second), and measures the fires scheduled in a window of length d
// that starts once the executor has loaded and warmed up: a sustained load
// rather than a burst.
//
// With a jitter, each job starts at a random moment of that long after its
// tick, so each second's fires spread over it rather than come due at once.
// The lag columns are then the lags at send from that moment, which is
// what the job was scheduled for; the receiver's count from the tick.
func batonSpread(ctx context.Context, env *benchEnv, n int, d, jitter time.Duration) (row, error) {
	r := row{Scenario: "baton-spread", N: n, Recorded: -1}
	name := clusterName("spread", n)
	if jitter > 0 {
		r.Scenario += "-jitter" + jitter.String()
		name += "j"
	}
	db, cleanup, err := openDB(ctx, env, name)
	if err != nil {
		return r, err
	}
	defer cleanup()
	wave, err := rawWaves(ctx, env, n/60)
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := insertSpread(ctx, db, "s", n, time.Minute, jitter, env.aux.URL+"/spread"); err != nil {
		return r, err
	}
	insertTook := time.Since(t0)
	tally := newStoreTally(0) // nothing waits for it: the window ends by the clock
	inst, loaded, err := startExecutor(ctx, env, name, "spread", tally, env.o.timeout)
	if err != nil {
		return r, err
	}
	defer inst.Close()

	from := time.Now().Add(spreadWarmup).Truncate(time.Second).UTC()
	to := from.Add(d)
	tally.sent.window(from, to)
	if err := env.aux.Window(ctx, from, to); err != nil {
		return r, err
	}
	if err := sleepUntil(ctx, from); err != nil {
		return r, err
	}
	m := startMeter(env.aux)
	claim0, record0 := tally.claimNS.Load(), tally.recordNS.Load()
	if err := sleepUntil(ctx, to); err != nil {
		return r, err
	}
	m.stop(&r)
	// Claims are serialized: claim s near the window's length means the
	// firing path is saturated.
	r.Claim, r.Record = time.Duration(tally.claimNS.Load()-claim0), time.Duration(tally.recordNS.Load()-record0)
	backlog := tally.finished.Load() - tally.recorded.Load()
	want := spreadTicks(n, from, to)
	st, err := waitReceived(ctx, env.aux, want, to.Add(spreadGrace))
	if err != nil {
		return r, err
	}
	r.fromReceiver(st, from)
	byMinute := "by minute " + byMinuteNote(st.Minutes, n, from, to)
	if jitter > 0 {
		sent := tally.sent.stats()
		r.P50, r.P99, r.Max = sent.P50, sent.P99, sent.Max
		byMinute = "lag at send from each fire's jittered start, by minute " + byMinuteNote(tally.sent.minutes(), n, from, to)
	}
	// Sustained: the window's fires over the time they took to arrive,
	// never less than the window itself (its fires cannot come sooner).
	r.Rate = float64(st.Count) / max(d, r.Last).Seconds()
	notes := []string{
		fmt.Sprintf("sustained %.0f/s, expected %.0f/s", r.Rate, float64(want)/d.Seconds()),
		receivedNote(st.Count, want),
		byMinute,
		tally.sent.note(),
		wave,
		fmt.Sprintf("Baton %.0f%% of a core, store+receiver %.0f%%", 100*r.CPU.Seconds()/d.Seconds(), 100*r.AuxCPU.Seconds()/d.Seconds()),
		fmt.Sprintf("record backlog %d outcomes at the window's end, %d after", backlog, tally.finished.Load()-tally.recorded.Load()),
		fmt.Sprintf("insert %s, elect+load %s", round(insertTook), round(loaded)),
		tally.batches(),
	}
	// Stopped first: the store answers the check sooner without the load.
	inst.Close()
	if check := checkWindow(ctx, db, st, want, from, to); check != "" {
		notes = append(notes, check)
	}
	r.Note = strings.Join(notes, "; ")
	return r, nil
}

// rawWaves is the limit for one second's fires: the raw HTTP loop sends a
// wave of that many requests, the same client and receiver, with the store
// idle, several times over kept-alive connections; it returns their lags
// at the receiver, which the spread's figures compare with.
func rawWaves(ctx context.Context, env *benchEnv, size int) (string, error) {
	const waves = 10
	disp, err := newDispatcher()
	if err != nil {
		return "", err
	}
	defer disp.Close()
	var p99s, lasts []time.Duration
	for i := range waves + 1 {
		w, err := rawLoopWith(ctx, env, disp, size)
		if err != nil {
			return "", fmt.Errorf("raw wave: %w", err)
		}
		if i > 0 { // the first opens the connections, which Baton keeps open
			p99s, lasts = append(p99s, w.P99), append(lasts, w.Last)
		}
		if err := sleepUntil(ctx, time.Now().Add(200*time.Millisecond)); err != nil {
			return "", err
		}
	}
	slices.Sort(p99s)
	slices.Sort(lasts)
	return fmt.Sprintf("the raw loop's wave of %d requests, %d times, store idle: p99 lag p50 %s max %s, last request p50 %s max %s",
		size, waves, round(quantile(p99s, 0.5)), round(quantile(p99s, 1)), round(quantile(lasts, 0.5)), round(quantile(lasts, 1))), nil
}

// spreadTicks is the number of ticks of insertSpread's n per-minute jobs
// due in [from, to), from a whole second: n/60 every second, plus one at
// the seconds below n%60.
func spreadTicks(n int, from, to time.Time) int {
	ticks := 0
	for t := from; t.Before(to); t = t.Add(time.Second) {
		ticks += n / 60
		if t.Second() < n%60 {
			ticks++
		}
	}
	return ticks
}

// waitReceived polls the receiver until want fires have arrived or
// deadline passes, and returns its last figures.
func waitReceived(ctx context.Context, a *aux, want int, deadline time.Time) (recvStats, error) {
	for {
		st, err := a.Stats(ctx)
		if err != nil || st.Count >= want || time.Now().After(deadline) {
			return st, err
		}
		if err := sleepUntil(ctx, time.Now().Add(time.Second)); err != nil {
			return st, err
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(t)):
		return nil
	}
}

// receivedNote says how many of the window's ticks arrived, in capitals
// when some did not.
func receivedNote(got, want int) string {
	if got < want {
		return fmt.Sprintf("SHORT: %d of %d ticks received by %s after the window (%d missing)", got, want, spreadGrace, want-got)
	}
	return fmt.Sprintf("%d of %d ticks received", got, want)
}

// byMinuteNote gives the lag and the fires received of each minute of the
// window, to show lag growing or ticks going missing as the load goes on.
func byMinuteNote(minutes []lagStats, n int, from, to time.Time) string {
	var parts []string
	for k, s := range minutes {
		lo := from.Add(time.Duration(k) * time.Minute)
		hi := lo.Add(time.Minute)
		if hi.After(to) {
			hi = to
		}
		parts = append(parts, fmt.Sprintf("p50 %s p99 %s max %s (%d/%d)", round(s.P50), round(s.P99), round(s.Max), s.Count, spreadTicks(n, lo, hi)))
	}
	return strings.Join(parts, ", ")
}

// checkWindow checks exactly once for the window's ticks: one claim and
// one outcome each in the store, and no fire received twice. It returns a
// note when something is off, or when the store could not say in time (a
// note, not a failure: the figures measured stand).
func checkWindow(ctx context.Context, db *mongo.Database, st recvStats, want int, from, to time.Time) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	in := bson.M{"scheduled_at": bson.M{"$gte": from, "$lt": to}}
	claims, results, err := countRuns(ctx, db, in)
	if err != nil {
		return fmt.Sprintf("counting the window's runs in the store failed: %v", err)
	}
	if claims != int64(want) || st.Dups > 0 || st.Distinct != st.Count {
		return fmt.Sprintf("MISMATCH: %d claims, %d results for %d ticks; %d distinct fires received, %d duplicates",
			claims, results, want, st.Distinct, st.Dups)
	}
	if results != int64(want) {
		return fmt.Sprintf("%d of %d outcomes recorded", results, want)
	}
	return ""
}
