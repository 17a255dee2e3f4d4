package e2e

import (
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/testcluster"
)

// scrape reads a node's /metrics in the text exposition format.
func scrape(t *testing.T, n *testcluster.Node) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTP + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

func sum(f *dto.MetricFamily) float64 {
	var s float64
	for _, m := range f.GetMetric() {
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			s += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			s += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			s += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return s
}

func TestMetricsScrape(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		env    map[string]string
		perJob bool
	}{
		{name: "aggregates only"},
		{name: "per-job opt-in", env: map[string]string{"BATON_METRICS_PER_JOB": "true"}, perJob: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, 2, tc.env)
			exec, _ := e.executor(t)
			e.create(t, e.standby(t, exec), jobBody("scraped", "* * * * * *", e.recv.URL("/scraped")))
			require.Eventually(t, func() bool { return len(e.recv.Tally()["scraped"]) >= 3 }, 15*time.Second, 100*time.Millisecond)

			want := map[string]dto.MetricType{
				"baton_fires_total":                    dto.MetricType_COUNTER,
				"baton_fire_lag_seconds":               dto.MetricType_HISTOGRAM,
				"baton_run_duration_seconds":           dto.MetricType_HISTOGRAM,
				"baton_executor":                       dto.MetricType_GAUGE,
				"baton_leadership_changes_total":       dto.MetricType_COUNTER,
				"baton_token_reinserts_total":          dto.MetricType_COUNTER,
				"baton_token_duplicates_removed_total": dto.MetricType_COUNTER,
				"baton_lease_renew_failures_total":     dto.MetricType_COUNTER,
				"baton_crud_requests_total":            dto.MetricType_COUNTER,
				"baton_jobs":                           dto.MetricType_GAUGE,
				"go_goroutines":                        dto.MetricType_GAUGE,
				"process_resident_memory_bytes":        dto.MetricType_GAUGE,
			}
			// The receiver counts a fire when it arrives; the executor
			// observes its duration once the answer is back, a moment later.
			require.Eventually(t, func() bool {
				return sum(scrape(t, exec)["baton_run_duration_seconds"]) >= 3
			}, 5*time.Second, 50*time.Millisecond)
			executors := 0.0
			for _, n := range e.c.Nodes {
				got := scrape(t, n)
				for name, typ := range want {
					f, ok := got[name]
					if !ok && (name == "baton_fires_total" && n != exec || name == "baton_crud_requests_total" && n == exec) {
						continue // a vector appears once it has a series
					}
					require.True(t, ok, "%s: %s missing", n.ID, name)
					require.Equal(t, typ, f.GetType(), "%s: %s type", n.ID, name)
				}
				executors += sum(got["baton_executor"])
				if n == exec {
					// A vector shows once it has a series: on the executor.
					_, perJob := got["baton_job_fires_total"]
					require.Equal(t, tc.perJob, perJob, "per-job series only when opted in")
					require.GreaterOrEqual(t, sum(got["baton_fires_total"]), 3.0)
					require.GreaterOrEqual(t, sum(got["baton_fire_lag_seconds"]), 3.0)
					require.GreaterOrEqual(t, sum(got["baton_run_duration_seconds"]), 3.0)
					require.Equal(t, 1.0, sum(got["baton_jobs"]))
					require.GreaterOrEqual(t, sum(got["baton_leadership_changes_total"]), 1.0)
				} else {
					// The write came through the standby.
					require.Equal(t, 1.0, sum(got["baton_crud_requests_total"]))
				}
			}
			require.Equal(t, 1.0, executors, "baton_executor is 1 on exactly one instance")
		})
	}
}
