// Package e2e tests Baton as users run it: several instances of the real
// binary as separate processes, against the real RabbitMQ and a MongoDB
// wire-protocol store, firing at an HTTP receiver.
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/testcluster"
	"github.com/batonhq/baton/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Short timings keep the tests quick; the defaults are five times longer.
var fastEnv = map[string]string{
	"BATON_LEASE_TTL":            "3s",
	"BATON_LEASE_RENEW_INTERVAL": "500ms",
	"BATON_TOKEN_HEALTH_TIMEOUT": "500ms",
	"BATON_AMQP_HEARTBEAT":       "2s",
	"BATON_WATCHDOG_INTERVAL":    "1s",
	"BATON_CRUD_TIMEOUT":         "3s",
	"BATON_LOG_LEVEL":            "info",
}

const leaseTTL = 3 * time.Second

type env struct {
	c    *testcluster.Cluster
	recv *testcluster.Receiver
	name string
}

func start(t *testing.T, n int, extra map[string]string) *env {
	t.Helper()
	return startWithToken(t, n, extra, "")
}

// startWithToken starts a cluster whose test helpers send token as a bearer
// token (for clusters started with auth.tokens).
func startWithToken(t *testing.T, n int, extra map[string]string, token string) *env {
	t.Helper()
	name := testenv.Name(t)
	mongoURI, amqpURL := testenv.MongoURI(t), testenv.AMQPURL(t)
	testenv.DeleteQueues(t, name+".token", name+".crud")
	e := &env{name: name}
	vars := map[string]string{}
	for k, v := range fastEnv {
		vars[k] = v
	}
	for k, v := range extra {
		vars[k] = v
	}
	var err error
	e.c, err = testcluster.New(testcluster.Options{Name: name, MongoURI: mongoURI, AMQPURL: amqpURL, Env: vars, Token: token})
	require.NoError(t, err)
	e.recv, err = testcluster.StartReceiver()
	require.NoError(t, err)
	t.Cleanup(func() {
		e.c.Close()
		_ = e.recv.Close()
		for _, r := range e.c.RaceReports() {
			t.Errorf("data race in an instance:\n%s", r)
		}
		if t.Failed() {
			for _, n := range e.c.Nodes {
				t.Logf("---- log of %s ----\n%s", n.ID, tail(n.Log(), 60))
			}
		}
	})
	for i := range n {
		_, err := e.c.Add(fmt.Sprintf("i%d", i+1), fmt.Sprintf("dc%d", i+1))
		require.NoError(t, err)
	}
	return e
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

func (e *env) executor(t *testing.T) (*testcluster.Node, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, epoch, err := e.c.WaitExecutor(ctx)
	require.NoError(t, err)
	return n, epoch
}

func (e *env) standby(t *testing.T, not *testcluster.Node) *testcluster.Node {
	for _, n := range e.c.Nodes {
		if n != not && n.Running() {
			return n
		}
	}
	t.Fatal("no standby")
	return nil
}

func jobBody(name, schedule, url string) string {
	return fmt.Sprintf(`{"name":%q,"schedule":%q,"target":{"type":"http","http":{"method":"POST","url":%q,"timeout":"5s"}}}`, name, schedule, url)
}

func (e *env) create(t *testing.T, via *testcluster.Node, body string) map[string]any {
	t.Helper()
	var out map[string]any
	code, err := via.Do(http.MethodPost, "/api/v1/jobs", body, &out)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code, "%v", out)
	return out
}

// ticksBetween lists the whole seconds in (from, to].
func ticksBetween(from, to time.Time) []time.Time {
	var out []time.Time
	for s := from.Truncate(time.Second).Add(time.Second); !s.After(to); s = s.Add(time.Second) {
		out = append(out, s.UTC())
	}
	return out
}

func TestThreeInstancesFireEachTickOnce(t *testing.T) {
	t.Parallel()
	e := start(t, 3, nil)
	exec, _ := e.executor(t)
	// Everyone agrees, and the roles (refreshed every second) say so.
	require.Eventually(t, func() bool {
		ci, err := e.standby(t, exec).Cluster()
		if err != nil {
			return false
		}
		roles := map[string]int{}
		for _, in := range ci.Instances {
			roles[in.Role]++
		}
		return roles["executor"] == 1 && roles["standby"] == 2
	}, 5*time.Second, 100*time.Millisecond)

	created := e.create(t, e.standby(t, exec), jobBody("every-second", "* * * * * *", e.recv.URL("/every-second")))
	require.Equal(t, "every-second", created["name"])
	createdAt, _ := time.Parse(time.RFC3339Nano, created["created_at"].(string))
	time.Sleep(20 * time.Second)
	end := time.Now().UTC().Add(-2 * time.Second) // ignore ticks still in flight

	tally := e.recv.Tally()["every-second"]
	var missing []time.Time
	for _, tick := range ticksBetween(createdAt, end) {
		if tally[tick] == 0 {
			missing = append(missing, tick)
		}
	}
	dups := e.recv.Tally().Duplicates()
	t.Logf("20s: %d distinct ticks fired, %d duplicates, %d missing (created at %s)", len(tally), len(dups), len(missing), createdAt.Format(time.RFC3339Nano))
	if len(missing) > 0 {
		var body map[string]any
		_, err := exec.Do(http.MethodGet, "/api/v1/jobs/every-second/runs?limit=100", nil, &body)
		t.Logf("runs: %v %v", body, err)
	}
	require.Empty(t, dups)
	require.Empty(t, missing)
}

// failover runs a job every second, stops the executor with stop, and
// checks that a new executor fires within bound, with no tick doubled and
// every tick in the gap either fired or recorded.
func failover(t *testing.T, stop func(*testcluster.Node), bound time.Duration) {
	e := start(t, 3, nil)
	exec, epoch := e.executor(t)
	e.create(t, exec, jobBody("ticker", "* * * * * *", e.recv.URL("/ticker")))
	time.Sleep(4 * time.Second)

	// Stop half-way between two ticks: the next tick is then 500 ms away,
	// so a fire within the bound shows a takeover faster than the bound,
	// not a lucky tick phase.
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(1500 * time.Millisecond).Sub(now))
	stopped := time.Now()
	stop(exec)
	var firstNew testcluster.Fire
	require.Eventually(t, func() bool {
		for _, f := range e.recv.Fires() {
			if f.Epoch > epoch {
				firstNew = f
				return true
			}
		}
		return false
	}, bound+10*time.Second, 20*time.Millisecond)
	takeover := firstNew.ReceivedAt.Sub(stopped)
	t.Logf("first fire of the new executor %s (epoch %d) %s after the stop", firstNew.Instance, firstNew.Epoch, takeover)
	require.Less(t, takeover, bound)
	require.NotEqual(t, exec.ID, firstNew.Instance)

	time.Sleep(4 * time.Second)
	dups := e.recv.Tally().Duplicates()
	require.Empty(t, dups, "no tick doubled")

	// Every tick across the failover was fired or recorded with a reason.
	newExec, _ := e.executor(t)
	var body struct {
		Runs []struct {
			ScheduledAt time.Time `json:"scheduled_at"`
			Status      string
			Reason      string
		}
	}
	_, err := newExec.Do(http.MethodGet, "/api/v1/jobs/ticker/runs?limit=200", nil, &body)
	require.NoError(t, err)
	recorded := map[time.Time]string{}
	for _, r := range body.Runs {
		recorded[r.ScheduledAt.UTC()] = r.Status
	}
	fired := e.recv.Tally()["ticker"]
	var unaccounted []time.Time
	for _, tick := range ticksBetween(stopped.Add(-2*time.Second), time.Now().Add(-2*time.Second)) {
		if fired[tick] == 0 && recorded[tick] == "" {
			unaccounted = append(unaccounted, tick)
		}
	}
	require.Empty(t, unaccounted, "ticks neither fired nor recorded")
}

func TestSIGKILLFailover(t *testing.T) {
	t.Parallel()
	// The successor waits lease.holder_ttl (1.2s by default), not the
	// lease's TTL: a first fire within the TTL shows it did not wait it out.
	failover(t, func(n *testcluster.Node) { n.Kill() }, leaseTTL)
}

func TestSIGTERMFailover(t *testing.T) {
	t.Parallel()
	// The hand-over itself takes tens of milliseconds (measured 80 ms from
	// SIGTERM to the new executor running); the next tick is 500 ms away.
	failover(t, func(n *testcluster.Node) { require.NoError(t, n.Term(10*time.Second)) }, time.Second)
}

func TestWritesThroughAStandbyApplyAtOnce(t *testing.T) {
	t.Parallel()
	e := start(t, 2, nil)
	exec, _ := e.executor(t)
	sb := e.standby(t, exec)
	fires := func() int { return len(e.recv.Tally()["w"]) }

	e.create(t, sb, jobBody("w", "0 0 1 1 *", e.recv.URL("/w")))
	time.Sleep(1500 * time.Millisecond)
	require.Zero(t, fires(), "a yearly job does not fire")

	code, err := sb.Do(http.MethodPut, "/api/v1/jobs/w", jobBody("w", "* * * * * *", e.recv.URL("/w")), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.Eventually(t, func() bool { return fires() >= 1 }, 3*time.Second, 20*time.Millisecond, "the update applies at once")

	code, err = sb.Do(http.MethodPost, "/api/v1/jobs/w/pause", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	time.Sleep(300 * time.Millisecond)
	n := fires()
	time.Sleep(2 * time.Second)
	require.Equal(t, n, fires(), "paused at once")

	code, err = sb.Do(http.MethodPost, "/api/v1/jobs/w/trigger", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, code)
	require.Eventually(t, func() bool { return fires() > n }, 3*time.Second, 20*time.Millisecond, "trigger runs even while paused")

	code, err = sb.Do(http.MethodDelete, "/api/v1/jobs/w", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, code)
	code, err = exec.Do(http.MethodGet, "/api/v1/jobs/w", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, code)

	// A duplicate name is a conflict.
	e.create(t, sb, jobBody("dup", "@hourly", e.recv.URL("/dup")))
	code, err = sb.Do(http.MethodPost, "/api/v1/jobs", jobBody("dup", "@hourly", e.recv.URL("/dup")), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, code)
}

func TestNoExecutorWriteIsNeverAppliedLater(t *testing.T) {
	t.Parallel()
	e := start(t, 2, nil)
	exec, _ := e.executor(t)
	sb := e.standby(t, exec)

	// Freeze the executor: it holds the token and the write queue's
	// consumer, but applies nothing.
	exec.Freeze()
	var out struct {
		Error struct{ Code, Message string }
	}
	code, err := sb.Do(http.MethodPost, "/api/v1/jobs", jobBody("late", "@hourly", e.recv.URL("/late")), &out)
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "no_executor", out.Error.Code)

	// Thaw it after the broker has moved the token on; the request it had
	// received must not be applied by either executor.
	time.Sleep(8 * time.Second)
	exec.Thaw()
	newExec, _ := e.executor(t)
	time.Sleep(3 * time.Second)
	code, err = newExec.Do(http.MethodGet, "/api/v1/jobs/late", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, code, "a write reported as not applied is never applied")
}

func TestBadInputThroughARealInstance(t *testing.T) {
	t.Parallel()
	e := start(t, 1, nil)
	n, _ := e.executor(t)
	cases := []struct {
		body  string
		ctype string
		code  int
		field string
	}{
		{jobBody("a", "not a cron", "http://x"), "application/json", 400, "schedule"},
		{strings.Replace(jobBody("a", "* * * * *", "http://x"), `"schedule"`, `"timezone":"Atlantis/Capital","schedule"`, 1), "application/json", 400, "timezone"},
		{jobBody("a", "* * * * *", ""), "application/json", 400, "target.http.url"},
		{jobBody("a", "* * * * *", "http://x"), "text/plain", 415, ""},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(http.MethodPost, "http://"+n.HTTP+"/api/v1/jobs", strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.ctype)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, c.code, resp.StatusCode, c.body)
	}
	var list struct{ Jobs []any }
	_, err := n.Do(http.MethodGet, "/api/v1/jobs", nil, &list)
	require.NoError(t, err)
	require.Empty(t, list.Jobs, "bad input changed nothing")
}

func TestInstanceIDClashIsAnError(t *testing.T) {
	t.Parallel()
	e := start(t, 1, nil)
	_, err := e.c.Add("i1", "dc9")
	require.Error(t, err, "a second live instance with the same id must not start")
	require.Contains(t, e.c.LogOf("i1", 1), "instance.id")
}

// TestRestartRightAfterKill: a process restarted at once after SIGKILL
// (systemd, an orchestrator) finds its old registration still live, and
// must wait for it to go stale instead of exiting.
func TestRestartRightAfterKill(t *testing.T) {
	t.Parallel()
	e := start(t, 1, nil)
	n := e.c.Nodes[0]
	n.Kill()
	began := time.Now()
	require.NoError(t, n.Start(), "a restart after SIGKILL must not be taken for an id clash")
	t.Logf("served again %s after SIGKILL", time.Since(began).Round(time.Millisecond))
	require.Contains(t, e.c.LogOf("i1", 1), "waiting for it to go stale", "the restart found the old registration live")
}

func TestScheduleFileIsIdempotent(t *testing.T) {
	t.Parallel()
	file := t.TempDir() + "/jobs.yaml"
	e := start(t, 0, map[string]string{"BATON_SCHEDULE": file})
	require.NoError(t, writeFile(file, fmt.Sprintf(`
nightly:
  schedule: "0 2 * * *"
  timezone: Europe/Berlin
  target: {type: http, http: {url: %q}}
hourly:
  schedule: "@hourly"
  target: {type: http, http: {url: %q}}
`, e.recv.URL("/n"), e.recv.URL("/h"))))
	for i := range 3 {
		_, err := e.c.Add(fmt.Sprintf("i%d", i+1), "dc")
		require.NoError(t, err)
	}
	n, _ := e.executor(t)
	var list struct {
		Jobs []struct {
			Name      string
			UpdatedAt time.Time `json:"updated_at"`
		}
	}
	require.Eventually(t, func() bool {
		_, err := n.Do(http.MethodGet, "/api/v1/jobs", nil, &list)
		return err == nil && len(list.Jobs) == 2
	}, 20*time.Second, 100*time.Millisecond)
	first := list.Jobs
	time.Sleep(3 * time.Second) // every instance has applied the file by now
	_, err := n.Do(http.MethodGet, "/api/v1/jobs", nil, &list)
	require.NoError(t, err)
	require.Equal(t, first, list.Jobs, "three instances with one file wrote each job once")
	for _, node := range e.c.Nodes {
		require.Contains(t, node.Log(), "schedule file job applied")
	}
}
