// Package metrics owns Baton's Prometheus metrics: their names, types and
// labels, the registry of one instance, and the /metrics handler.
//
// Label cardinality stays bounded at 100,000 jobs: every series is an
// aggregate over jobs unless per-job series are opted into, and every label
// value comes from a small fixed set.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/batonhq/baton/crud"
	"github.com/batonhq/baton/executor"
	"github.com/batonhq/baton/token"
)

// Options configures Metrics.
type Options struct {
	// PerJob adds baton_job_fires_total{job,status}: one series per job and
	// status, so off by default.
	PerJob bool
}

// Metrics holds one instance's collectors on its own registry, so that
// several instances can run in one process (tests) without clashing.
type Metrics struct {
	reg *prometheus.Registry

	fires      *prometheus.CounterVec
	jobFires   *prometheus.CounterVec // nil unless Options.PerJob
	lag        prometheus.Histogram
	duration   prometheus.Histogram
	leadership prometheus.Counter
	crud       *prometheus.CounterVec
	storeErr   *prometheus.CounterVec
	brokerErr  *prometheus.CounterVec
}

// lagBuckets span 1ms to a minute: a healthy executor fires within
// milliseconds, a burst of 100,000 jobs within seconds.
var lagBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// New returns Metrics with the process and Go collectors registered.
func New(opts Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.fires = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "baton_fires_total",
		Help: "Runs by outcome: succeeded, failed, cancelled, skipped, missed.",
	}, []string{"status"})
	m.lag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "baton_fire_lag_seconds",
		Help:    "Time from a tick's scheduled instant (plus jitter) to its first attempt.",
		Buckets: lagBuckets,
	})
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "baton_run_duration_seconds",
		Help:    "Duration of dispatched runs, all attempts included.",
		Buckets: prometheus.ExponentialBuckets(0.005, 3, 12), // 5ms to ~15min
	})
	m.leadership = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "baton_leadership_changes_total",
		Help: "Times this instance became the executor or stopped being it.",
	})
	m.crud = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "baton_crud_requests_total",
		Help: "API writes by operation and result (ok or the error code).",
	}, []string{"op", "result"})
	m.storeErr = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "baton_store_errors_total",
		Help: "Failed store operations by operation: claim, record.",
	}, []string{"op"})
	m.brokerErr = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "baton_broker_errors_total",
		Help: "Failed broker operations by operation: crud.",
	}, []string{"op"})
	m.reg.MustRegister(m.fires, m.lag, m.duration, m.leadership, m.crud, m.storeErr, m.brokerErr,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if opts.PerJob {
		m.jobFires = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baton_job_fires_total",
			Help: "Runs by job and outcome (metrics.per_job).",
		}, []string{"job", "status"})
		m.reg.MustRegister(m.jobFires)
	}
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is where further collectors of this instance register.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ExecutorHooks feed the run metrics from the executor's events.
func (m *Metrics) ExecutorHooks() executor.Hooks {
	return executor.Hooks{
		Fired: func(_ string, lag time.Duration) { m.lag.Observe(max(lag, 0).Seconds()) },
		Finished: func(name, status string, d time.Duration) {
			m.duration.Observe(d.Seconds())
			m.outcome(name, status)
		},
		Recorded: m.outcome,
		StoreOp: func(op string, _ int, _ time.Duration, err error) {
			if err != nil {
				m.storeErr.WithLabelValues(op).Inc()
			}
		},
	}
}

func (m *Metrics) outcome(name, status string) {
	m.fires.WithLabelValues(status).Inc()
	if m.jobFires != nil {
		m.jobFires.WithLabelValues(name, status).Inc()
	}
}

// LeadershipChanged counts a term starting or ending on this instance.
func (m *Metrics) LeadershipChanged(bool) { m.leadership.Inc() }

// Writer is the API's write path.
type Writer interface {
	Do(ctx context.Context, req crud.Request) (crud.Reply, error)
}

// CountWrites wraps the API's write path to count requests by operation and
// result. Results are "ok" or the API error code, a fixed set.
func (m *Metrics) CountWrites(w Writer) Writer { return countingWriter{w, m} }

type countingWriter struct {
	next Writer
	m    *Metrics
}

func (c countingWriter) Do(ctx context.Context, req crud.Request) (crud.Reply, error) {
	rep, err := c.next.Do(ctx, req)
	result := "ok"
	switch {
	case err != nil:
		result = "error"
		c.m.brokerErr.WithLabelValues("crud").Inc()
	case rep.Error != nil:
		result = rep.Error.Code
	}
	c.m.crud.WithLabelValues(string(req.Op), result).Inc()
	return rep, err
}

// Instance is what the gauges read at scrape time.
type Instance struct {
	Elector  *token.Elector
	Watchdog *token.Watchdog
	Executor *executor.Executor
}

// Watch registers the gauges and counters that are read from the
// instance's components at scrape time, so that no code path has to
// remember to update them.
func (m *Metrics) Watch(in Instance) {
	b := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "baton_executor",
			Help: "1 while this instance is the executor.",
		}, func() float64 { return b(in.Elector.Status().Role == token.RoleExecutor) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "baton_token_reinserts_total",
			Help: "Tokens this instance's watchdog re-inserted after a loss.",
		}, func() float64 { return float64(in.Watchdog.Status().Reinserts) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "baton_token_duplicates_removed_total",
			Help: "Stale or duplicate tokens this instance removed from the queue.",
		}, func() float64 { return float64(in.Elector.Status().StaleTokens) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "baton_token_rotations_total",
			Help: "Token rotations (kept well inside the broker's consumer_timeout).",
		}, func() float64 { return float64(in.Elector.Status().Rotations) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "baton_lease_renew_failures_total",
			Help: "Lease renewals that did not complete.",
		}, func() float64 { return float64(in.Elector.RenewFailures()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "baton_token_session_errors_total",
			Help: "Token broker sessions that ended with an error and were reconnected.",
		}, func() float64 { return float64(in.Elector.Status().SessionErrors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "baton_jobs",
			Help: "Jobs loaded on this executor (0 on a standby).",
		}, func() float64 { return float64(in.Executor.Status().Jobs) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "baton_executor_degraded",
			Help: "1 while the executor cannot reach the store and claims nothing.",
		}, func() float64 { return b(in.Executor.Status().Degraded) }),
	)
}
