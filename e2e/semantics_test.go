package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/testcluster"
)

type run struct {
	FireID      string     `json:"fire_id"`
	ScheduledAt time.Time  `json:"scheduled_at"`
	Status      string     `json:"status"`
	Trigger     string     `json:"trigger"`
	Reason      string     `json:"reason"`
	Attempts    int        `json:"attempts"`
	Error       string     `json:"error"`
	HTTPStatus  int        `json:"http_status"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	AttemptLog  []struct {
		Number     int `json:"number"`
		HTTPStatus int `json:"http_status"`
	} `json:"attempt_log"`
}

func runsOf(t *testing.T, n *testcluster.Node, job string) []run {
	t.Helper()
	var body struct{ Runs []run }
	code, err := n.Do(http.MethodGet, "/api/v1/jobs/"+job+"/runs?limit=500", nil, &body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	return body.Runs
}

func countStatus(runs []run) map[string]int {
	out := map[string]int{}
	for _, r := range runs {
		out[r.Status]++
	}
	return out
}

func TestOverlapPolicies(t *testing.T) {
	t.Parallel()
	e := start(t, 2, nil)
	exec, _ := e.executor(t)
	slow := func(name, policy string) string {
		return fmt.Sprintf(`{"name":%q,"schedule":"* * * * * *","concurrency":%q,"timeout":"10s",
			"target":{"type":"http","http":{"url":%q}}}`, name, policy, e.recv.URL("/"+name+"?sleep=2500ms"))
	}
	e.create(t, exec, slow("forbid", "forbid"))
	e.create(t, exec, slow("replace", "replace"))
	e.create(t, exec, slow("allow", "allow"))
	time.Sleep(7 * time.Second)

	forbid := countStatus(runsOf(t, exec, "forbid"))
	t.Logf("forbid: %v", forbid)
	require.GreaterOrEqual(t, forbid["skipped"], 3, "ticks that find the job running are recorded as skipped")
	require.LessOrEqual(t, forbid["running"]+forbid["succeeded"], 3, "never overlapping itself")

	replace := countStatus(runsOf(t, exec, "replace"))
	t.Logf("replace: %v", replace)
	require.GreaterOrEqual(t, replace["cancelled"], 3, "each tick cancels the running attempt")
	require.Zero(t, replace["skipped"])

	allow := countStatus(runsOf(t, exec, "allow"))
	t.Logf("allow: %v", allow)
	require.Zero(t, allow["skipped"]+allow["cancelled"])
	require.True(t, overlapping(runsOf(t, exec, "allow")), "runs overlap")
}

// overlapping reports whether two of runs were in progress at once. A run
// in progress shows in the list about a second after it started (its
// claim is written with its outcome when that comes soon), so this reads
// the runs' times rather than counting those running now.
func overlapping(runs []run) bool {
	var started []run
	for _, r := range runs {
		if r.StartedAt != nil {
			started = append(started, r)
		}
	}
	slices.SortFunc(started, func(a, b run) int { return a.StartedAt.Compare(*b.StartedAt) })
	for i := 1; i < len(started); i++ {
		prev := started[i-1]
		if prev.FinishedAt == nil || started[i].StartedAt.Before(*prev.FinishedAt) {
			return true
		}
	}
	return false
}

func TestRetriesAgainstAFlakyReceiver(t *testing.T) {
	t.Parallel()
	e := start(t, 2, nil)
	exec, _ := e.executor(t)
	e.create(t, e.standby(t, exec), fmt.Sprintf(`{"name":"flaky","schedule":"@every 60s",
		"retry":{"max_attempts":4,"backoff":"100ms","max_backoff":"1s"},
		"target":{"type":"http","http":{"url":%q}}}`, e.recv.URL("/flaky/fail/2")))
	code, err := exec.Do(http.MethodPost, "/api/v1/jobs/flaky/trigger", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, code)
	var r run
	require.Eventually(t, func() bool {
		for _, x := range runsOf(t, exec, "flaky") {
			if x.Trigger == "manual" && x.Status != "running" {
				r = x
				return true
			}
		}
		return false
	}, 15*time.Second, 100*time.Millisecond)
	require.Equal(t, "succeeded", r.Status, r.Error)
	require.Equal(t, 3, r.Attempts)
	require.Len(t, r.AttemptLog, 3)
	require.Equal(t, []int{500, 500, 200}, []int{r.AttemptLog[0].HTTPStatus, r.AttemptLog[1].HTTPStatus, r.AttemptLog[2].HTTPStatus})
	var j struct {
		RunCount     int64 `json:"run_count"`
		SuccessCount int64 `json:"success_count"`
	}
	require.Eventually(t, func() bool {
		_, err := exec.Do(http.MethodGet, "/api/v1/jobs/flaky", nil, &j)
		return err == nil && j.RunCount == 1
	}, 5*time.Second, 100*time.Millisecond)
	require.EqualValues(t, 1, j.SuccessCount, "retries count as one run")
}

func TestFailoverLandingOnATick(t *testing.T) {
	t.Parallel()
	e := start(t, 3, nil)
	exec, _ := e.executor(t)
	e.create(t, exec, jobBody("on-tick", "*/2 * * * * *", e.recv.URL("/on-tick")))
	time.Sleep(3 * time.Second)
	// Stop the executor 30ms before an even second: the tick lands in the
	// middle of the hand-over.
	now := time.Now()
	next := now.Truncate(2 * time.Second).Add(2 * time.Second)
	if next.Sub(now) < 500*time.Millisecond {
		next = next.Add(2 * time.Second)
	}
	time.Sleep(next.Sub(now) - 30*time.Millisecond)
	require.NoError(t, exec.Term(10*time.Second))
	time.Sleep(5 * time.Second)
	tally := e.recv.Tally()["on-tick"]
	require.Equal(t, 1, tally[next.UTC()], "the tick at the hand-over fired exactly once")
	require.Empty(t, e.recv.Tally().Duplicates())
}

func TestAllInstancesDownMisfirePolicies(t *testing.T) {
	t.Parallel()
	e := start(t, 2, nil)
	exec, _ := e.executor(t)
	for _, p := range []string{"fire_once", "skip", "fire_all"} {
		name := strings.ReplaceAll(p, "_", "-")
		e.create(t, exec, fmt.Sprintf(`{"name":%q,"schedule":"* * * * * *","misfire":%q,"target":{"type":"http","http":{"url":%q}}}`,
			name, p, e.recv.URL("/"+name)))
	}
	time.Sleep(2 * time.Second)
	var wg sync.WaitGroup
	for _, n := range e.c.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, n.Term(10*time.Second)) }()
	}
	wg.Wait()
	down := time.Now()
	time.Sleep(6 * time.Second)
	for _, n := range e.c.Nodes {
		require.NoError(t, n.Start())
	}
	up := time.Now()
	exec, _ = e.executor(t)
	time.Sleep(3 * time.Second)

	for _, tc := range []struct {
		job               string
		catchUpFired, max int
		missed            bool
	}{
		{"fire-once", 1, 1, true},
		{"skip", 0, 0, true},
		{"fire-all", 5, 15, false},
	} {
		runs := runsOf(t, exec, tc.job)
		fired := e.recv.Tally()[tc.job]
		var catchUp, missed int
		for _, r := range runs {
			if r.Trigger == "catch_up" {
				if r.Status == "missed" {
					missed++
					require.NotEmpty(t, r.Reason)
				} else {
					catchUp++
				}
			}
		}
		t.Logf("%s: %d fired by catch-up, %d recorded missed", tc.job, catchUp, missed)
		require.GreaterOrEqual(t, catchUp, tc.catchUpFired, tc.job)
		require.LessOrEqual(t, catchUp, tc.max, tc.job)
		require.Equal(t, tc.missed, missed > 0, tc.job)
		// Every tick while all instances were down is accounted for.
		recorded := map[time.Time]bool{}
		for _, r := range runs {
			recorded[r.ScheduledAt.UTC()] = true
		}
		for _, tick := range ticksBetween(down.Add(time.Second), up) {
			require.True(t, recorded[tick] || fired[tick] > 0, "%s: tick %s neither fired nor recorded", tc.job, tick)
		}
	}
	require.Empty(t, e.recv.Tally().Duplicates())
}
