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

// takeover runs two instances of the real binary over n jobs, SIGKILLs the
// executor, and measures the standby's takeover from its logs and the
// receiver: from holding the token to leading (the wait for the dead
// executor's lease), to every job scheduled ("executor running"), and to
// its first fire.
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
	if err := insertSpread(ctx, db, "t", n, time.Hour, env.aux.URL+"/takeover"); err != nil {
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
	second, err := c.Add("t2", "dc2")
	if err != nil {
		return r, err
	}
	time.Sleep(2 * time.Second) // the standby is consuming the token queue
	killed := time.Now()
	first.Kill()
	token, err := waitLog(ctx, second, reHolding, env.o.timeout)
	if err != nil {
		return r, err
	}
	lead, err := waitLog(ctx, second, reBecame, env.o.timeout)
	if err != nil {
		return r, err
	}
	running, err := waitLog(ctx, second, reRunning, env.o.timeout)
	if err != nil {
		return r, err
	}
	var fired time.Time
	for deadline := time.Now().Add(30 * time.Second); fired.IsZero() && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		st, err := env.aux.Stats(ctx)
		if err != nil {
			return r, err
		}
		fired = st.FirstBy["t2"]
	}
	if fired.IsZero() {
		return r, fmt.Errorf("the new executor fired nothing within 30s of running")
	}
	r.Note = fmt.Sprintf("kill→token %s; token→lease %s (the dead lease's TTL); token→all %d jobs scheduled %s; token→first fire %s; lease→first fire %s",
		round(token.Sub(killed)), round(lead.Sub(token)), n, round(running.Sub(token)), round(fired.Sub(token)), round(fired.Sub(lead)))
	return r, nil
}

// insertSpread inserts n jobs that fire once per period (a minute or an
// hour), spread evenly over its seconds: job i at second i mod the period's
// seconds, so no two seconds differ by more than one fire.
func insertSpread(ctx context.Context, db *mongo.Database, prefix string, n int, period time.Duration, url string) error {
	return insertEach(ctx, db, n, func(i int) *job.Job {
		return benchJob(prefix+strconv.Itoa(i), spreadCron(i, period), url)
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
