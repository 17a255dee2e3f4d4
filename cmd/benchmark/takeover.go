package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/batonhq/baton/internal/testcluster"
	"github.com/batonhq/baton/job"
)

// takeover runs instances of the real binary over n jobs and measures two
// takeovers from the new holder's logs and the receiver: from holding the
// token to leading, to every job scheduled ("executor running"), and to its
// first fire. First the executor is SIGKILLed: its successor receives the
// token back from the broker and waits lease.holder_ttl, by when the old
// executor would have stopped even if it were alive. Then the new executor
// is stopped with SIGTERM, and releases the lease for a third instance at
// once.
//
// The jobs are hourly, spread over the hour's seconds (about 28 per second
// at 100,000), so a fire is due every second.
func takeover(ctx context.Context, env *benchEnv, n int) (row, error) {
	r := row{Scenario: "takeover", N: n, P50: -1, P99: -1, Max: -1, Last: -1, Recorded: -1}
	name := clusterName("takeover", n)
	db, cleanup, err := openDB(ctx, env, name)
	if err != nil {
		return r, err
	}
	defer cleanup()
	if err := insertSpread(ctx, db, "t", n, time.Hour, 0, env.aux.URL+"/takeover"); err != nil {
		return r, err
	}
	c, err := testcluster.New(testcluster.Options{Name: name, MongoURI: env.aux.MongoURI, AMQPURL: env.o.amqpURL,
		Env: map[string]string{"BATON_WATCHDOG_INTERVAL": "500ms", "BATON_LOG_LEVEL": "info"}})
	if err != nil {
		return r, err
	}
	defer c.Close()
	first, err := c.Add("t1", "dc1")
	if err != nil {
		return r, err
	}
	if _, err := waitLog(ctx, first, reRunning, env.o.timeout); err != nil {
		return r, fmt.Errorf("first executor: %w", err)
	}
	second, killed, err := handOver(ctx, env, c, "t1", "t2", "dc2", func() { first.Kill() })
	if err != nil {
		return r, err
	}
	_, termed, err := handOver(ctx, env, c, "t2", "t3", "dc3", func() { _ = second.Term(time.Minute) })
	if err != nil {
		return r, err
	}
	r.Note = fmt.Sprintf("after SIGKILL: %s; after SIGTERM: %s", killed, termed)
	return r, nil
}

// handOver adds a standby, stops the executor old with stop, and describes
// the standby's takeover: its times from the token, and whether the fires
// went on without a gap (the old executor's last fire, the new one's first
// and its lag).
func handOver(ctx context.Context, env *benchEnv, c *testcluster.Cluster, old, id, dc string, stop func()) (*testcluster.Node, string, error) {
	next, err := c.Add(id, dc)
	if err != nil {
		return nil, "", err
	}
	time.Sleep(2 * time.Second) // the standby is consuming the token queue
	stopped := time.Now()
	go stop()
	lead, err := waitLog(ctx, next, reBecame, env.o.timeout)
	if err != nil {
		return nil, "", err
	}
	// A holder logs that it holds the token only when it must wait for a
	// live lease; after a release it leads at once.
	token := lead
	if m := reHolding.FindStringSubmatch(next.Log()); m != nil {
		if token, err = time.Parse(time.RFC3339Nano, m[1]); err != nil {
			return nil, "", err
		}
	}
	running, err := waitLog(ctx, next, reRunning, env.o.timeout)
	if err != nil {
		return nil, "", err
	}
	var (
		fired time.Time
		st    recvStats
	)
	for deadline := time.Now().Add(30 * time.Second); fired.IsZero() && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if st, err = env.aux.Stats(ctx); err != nil {
			return nil, "", err
		}
		fired = st.FirstBy[id]
	}
	if fired.IsZero() {
		return nil, "", fmt.Errorf("%s fired nothing within 30s of running", id)
	}
	return next, fmt.Sprintf("stop→token %s, token→lease %s, token→first fire %s (lag %s), lease→first fire %s, token→all jobs scheduled %s; %s; old executor's last fire %s after the stop",
		round(token.Sub(stopped)), round(lead.Sub(token)), round(fired.Sub(token)), round(st.FirstLagBy[id]), round(fired.Sub(lead)),
		round(running.Sub(token)), readAhead(next.Log()), round(st.LastBy[old].Sub(stopped))), nil
}

// readAhead says how many jobs the new executor read while it waited for
// the lease and started with, or why it started with none.
func readAhead(log string) string {
	if m := reReadAhead.FindStringSubmatch(log); m != nil {
		return m[1] + " jobs read while waiting"
	}
	if m := reNotReadAhead.FindStringSubmatch(log); m != nil {
		return "jobs read while waiting not used (" + m[1] + ")"
	}
	return "no jobs read while waiting"
}

// insertSpread inserts n jobs that fire once per period (a minute or an
// hour), spread evenly over its seconds: job i at second i mod the period's
// seconds, so no two seconds differ by more than one fire. A jitter spreads
// each second's fires over it.
func insertSpread(ctx context.Context, db *mongo.Database, prefix string, n int, period, jitter time.Duration, url string) error {
	return insertEach(ctx, db, n, func(i int) *job.Job {
		j := benchJob(prefix+strconv.Itoa(i), spreadCron(i, period), url)
		j.Jitter = job.Duration(jitter)
		return j
	})
}

// spreadCron is the 6-field schedule of job i of insertSpread.
func spreadCron(i int, period time.Duration) string {
	sec := i % int(period/time.Second)
	if period == time.Minute {
		return fmt.Sprintf("%d * * * * *", sec)
	}
	return fmt.Sprintf("%d %d * * * *", sec%60, sec/60)
}

var (
	reHolding = regexp.MustCompile(`time=(\S+) .*msg="holding the token`)
	reBecame  = regexp.MustCompile(`time=(\S+) .*msg="became executor"`)
	reRunning = regexp.MustCompile(`time=(\S+) .*msg="executor running"`)

	reReadAhead    = regexp.MustCompile(`msg="scheduled the jobs read while waiting for the lease".* jobs=(\d+)`)
	reNotReadAhead = regexp.MustCompile(`msg="not using the jobs read while waiting: ([^"]+)"`)
)

// waitLog waits for a line matching re in node's log and returns its time.
func waitLog(ctx context.Context, node *testcluster.Node, re *regexp.Regexp, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(node.Log()); m != nil {
			return time.Parse(time.RFC3339Nano, m[1])
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s: no log line matching %q within %s", node.ID, re, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
