// Package instance assembles one Baton process: store, token election,
// executor, forwarded writes and the HTTP API. It owns their start order and
// the ordered, bounded shutdown.
package instance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batonhq/baton/api"
	"github.com/batonhq/baton/auth"
	"github.com/batonhq/baton/crud"
	"github.com/batonhq/baton/executor"
	"github.com/batonhq/baton/internal/backoff"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/metrics"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/target"
	"github.com/batonhq/baton/token"
	"github.com/batonhq/baton/ui"
)

// Config is everything an instance needs, in plain types.
type Config struct {
	Cluster    string
	ID         string
	Datacenter string
	Version    string

	HTTPListen          string
	HTTPShutdownTimeout time.Duration

	// Auth guards the HTTP server (see package auth). Without tokens every
	// request is allowed, and HTTPListen without a host binds to loopback
	// unless AllowInsecureRemote.
	Auth                auth.Config
	AllowInsecureRemote bool

	AMQPURL        string
	Heartbeat      time.Duration
	ConnectTimeout time.Duration
	ReconnectMin   time.Duration
	ReconnectMax   time.Duration

	MongoURI      string
	MongoDatabase string
	MongoTimeout  time.Duration
	RunsRetention time.Duration

	LeaseTTL         time.Duration
	RenewInterval    time.Duration
	HolderTTL        time.Duration
	HealthTimeout    time.Duration
	RotateInterval   time.Duration
	WatchdogInterval time.Duration

	CRUDTimeout  time.Duration
	Workers      int
	ClaimBatch   int
	ClaimLead    time.Duration
	ShellEnabled bool

	// Schedule holds jobs to upsert at start (from the schedule file).
	Schedule []job.Job

	Logger *slog.Logger
	// Handler wraps the HTTP handler (metrics, auth, UI); nil keeps it.
	Handler func(next http.Handler, inst *Instance) http.Handler
	// PerJobMetrics adds per-job series to /metrics (metrics.per_job).
	PerJobMetrics bool
	// ExecutorHooks, if set, receive the executor's events after the
	// metrics do (the benchmark uses them).
	ExecutorHooks executor.Hooks
}

// Instance is one running Baton process.
type Instance struct {
	cfg     Config
	log     *slog.Logger
	session string

	Store    *store.Store
	Observer *token.Observer
	Watchdog *token.Watchdog
	Elector  *token.Elector
	Executor *executor.Executor
	CRUD     *crud.Client
	API      *api.Server
	Metrics  *metrics.Metrics

	Auth *auth.Authenticator
	UI   *ui.Handler

	dispatcher *target.Dispatcher
	storeOK    atomic.Bool
	ln         net.Listener
}

// Run starts the instance and blocks until ctx ends, then shuts down in
// order. It returns an error if the instance could not start, or if its id
// was taken over by another process.
func Run(ctx context.Context, cfg Config) error {
	inst, err := start(ctx, cfg)
	if err != nil {
		return err
	}
	return inst.run(ctx)
}

// Start starts an instance without blocking, for callers that need its
// parts (the benchmark); Serve must follow.
func Start(ctx context.Context, cfg Config) (*Instance, error) { return start(ctx, cfg) }

// Serve runs an instance returned by Start until ctx ends, then shuts it
// down in order, like Run.
func (inst *Instance) Serve(ctx context.Context) error { return inst.run(ctx) }

func start(ctx context.Context, cfg Config) (*Instance, error) {
	var sid [8]byte
	_, _ = rand.Read(sid[:])
	inst := &Instance{cfg: cfg, session: hex.EncodeToString(sid[:]),
		log: cfg.Logger.With("component", "instance", "instance", cfg.ID)}

	// Tokens first: a bad tokens file is a configuration error, reported
	// before anything is started.
	if cfg.Auth.Logger == nil {
		cfg.Auth.Logger = cfg.Logger
	}
	authn, err := auth.New(cfg.Auth)
	if err != nil {
		return nil, err
	}
	inst.Auth = authn

	// The store next: nothing works without it. Keep trying while it is
	// down, as a restarted cluster may come up before its database.
	b := backoff.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		st, err := store.Open(ctx, store.Config{URI: cfg.MongoURI, Database: cfg.MongoDatabase,
			Timeout: cfg.MongoTimeout, Retention: cfg.RunsRetention, Logger: cfg.Logger})
		if err == nil {
			inst.Store = st
			break
		}
		inst.log.Warn("store unavailable; retrying", "error", err)
		if !backoff.Sleep(ctx, b.Next()) {
			return nil, ctx.Err()
		}
	}
	inst.storeOK.Store(true)

	listen, narrowed := auth.ListenAddr(cfg.HTTPListen, authn.Enabled(), cfg.AllowInsecureRemote)
	if !authn.Enabled() {
		// Loud on purpose: anyone who can reach this port can create jobs,
		// and a job can call any URL the executor can reach.
		inst.log.Warn("AUTHENTICATION IS OFF: every API request, including writes, is allowed; set auth.tokens or auth.tokens_file",
			"listen", listen, "narrowed_to_loopback", narrowed, "allow_insecure_remote", cfg.AllowInsecureRemote)
	}
	if narrowed {
		inst.log.Warn("http.listen has no host and authentication is off: serving on loopback only; set auth.allow_insecure_remote: true to serve on every interface",
			"http_listen", cfg.HTTPListen, "bound", listen)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w", listen, err)
	}
	inst.ln = ln
	if err := inst.register(ctx, ln.Addr().String()); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("instance.id %q: %w", cfg.ID, err)
	}

	tcfg := token.Config{
		URL: cfg.AMQPURL, Queue: cfg.Cluster + ".token", InstanceID: cfg.ID, Datacenter: cfg.Datacenter,
		Heartbeat: cfg.Heartbeat, ConnectTimeout: cfg.ConnectTimeout, ReconnectMin: cfg.ReconnectMin, ReconnectMax: cfg.ReconnectMax,
		LeaseTTL: cfg.LeaseTTL, RenewInterval: cfg.RenewInterval, HolderTTL: cfg.HolderTTL, HealthTimeout: cfg.HealthTimeout,
		RotateInterval: cfg.RotateInterval, WatchdogInterval: cfg.WatchdogInterval, Logger: cfg.Logger,
	}
	disp, err := target.New(target.Config{AMQPURL: cfg.AMQPURL, ShellEnabled: cfg.ShellEnabled, Logger: cfg.Logger})
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("targets: %w", err)
	}
	inst.dispatcher = disp
	inst.Metrics = metrics.New(metrics.Options{PerJob: cfg.PerJobMetrics})
	inst.Executor = executor.New(executor.Config{InstanceID: cfg.ID, Workers: cfg.Workers, ClaimBatch: cfg.ClaimBatch, ClaimLead: cfg.ClaimLead,
		ShellEnabled: cfg.ShellEnabled, Logger: cfg.Logger, Hooks: chainHooks(inst.Metrics.ExecutorHooks(), cfg.ExecutorHooks)}, inst.Store, disp)
	crudServer := crud.NewServer(crud.ServerConfig{URL: cfg.AMQPURL, Queue: cfg.Cluster + ".crud", InstanceID: cfg.ID,
		Heartbeat: cfg.Heartbeat, ConnectTimeout: cfg.ConnectTimeout, Logger: cfg.Logger}, inst.Store, inst.Executor)
	inst.Observer = token.NewObserver(cfg.LeaseTTL)
	if inst.Watchdog, err = token.NewWatchdog(tcfg, inst.Store, inst.Observer); err != nil {
		_ = ln.Close()
		return nil, err
	}
	if inst.Elector, err = token.NewElector(tcfg, inst.Store, leaders{inst.Executor, crudServer}, inst.Observer); err != nil {
		_ = ln.Close()
		return nil, err
	}
	inst.Elector.OnLeadershipChange = inst.Metrics.LeadershipChanged
	inst.Metrics.Watch(metrics.Instance{Elector: inst.Elector, Watchdog: inst.Watchdog, Executor: inst.Executor})
	inst.CRUD = crud.NewClient(crud.ClientConfig{URL: cfg.AMQPURL, Queue: cfg.Cluster + ".crud", InstanceID: cfg.ID,
		Timeout: cfg.CRUDTimeout, Heartbeat: cfg.Heartbeat, ConnectTimeout: cfg.ConnectTimeout,
		ReconnectMin: cfg.ReconnectMin, ReconnectMax: cfg.ReconnectMax, Logger: cfg.Logger}, inst.Store)
	if inst.UI, err = ui.New(ui.Config{InstanceID: cfg.ID, Version: cfg.Version, ShellEnabled: cfg.ShellEnabled,
		AuthEnabled: authn.Enabled(), AnonymousRead: authn.AnonymousRead(), Logger: cfg.Logger}); err != nil {
		_ = ln.Close()
		return nil, err
	}
	inst.API = api.New(api.Config{InstanceID: cfg.ID, ShellEnabled: cfg.ShellEnabled, Logger: cfg.Logger}, inst.Store, inst.Metrics.CountWrites(inst.CRUD), clusterView{inst})
	return inst, nil
}

// leaders drives the executor and the write server as one leader. Writes
// stop before firing does, and start after it, so that no write is applied
// to a schedule that is not running.
type leaders struct {
	exec *executor.Executor
	crud *crud.Server
}

func (l leaders) Lead(t *token.Term) {
	l.exec.Lead(t)
	l.crud.Lead(t)
}

// leaders is a token.Preparer and a token.Quiescer, for the executor.
var (
	_ token.Preparer = leaders{}
	_ token.Quiescer = leaders{}
)

// Prepare lets the executor read jobs while this instance waits to lead.
func (l leaders) Prepare(ctx context.Context, prev store.Lease) { l.exec.Prepare(ctx, prev) }

// Quiesce lets the executor send the ticks it claimed ahead before the
// term ends; the crud server keeps serving writes meanwhile.
func (l leaders) Quiesce(ctx context.Context) { l.exec.Quiesce(ctx) }

func (l leaders) Stop(ctx context.Context) {
	l.crud.Stop(ctx)
	l.exec.Stop(ctx)
}

const (
	heartbeatEvery = time.Second
	// staleAfter is how long a registration stays live without a
	// heartbeat. A process that was killed, or whose last write was lost,
	// leaves its registration live for this long.
	staleAfter = 3 * heartbeatEvery
)

// register claims the instance id. A restart right after a crash (systemd,
// an orchestrator, a deploy that had to SIGKILL) finds the old process's
// registration still live: it waits for that to go stale rather than
// exiting, as a dead process stops heartbeating. A live process with the
// same id keeps it fresh, so that clash is still reported, after
// staleAfter. Store errors are retried like opening the store.
func (inst *Instance) register(ctx context.Context, httpAddr string) error {
	started := time.Now().UTC()
	clashUntil := time.Now().Add(staleAfter + heartbeatEvery)
	b := backoff.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	waiting := false
	for {
		now := time.Now().UTC()
		err := inst.Store.RegisterInstance(ctx, store.Instance{ID: inst.cfg.ID, Session: inst.session,
			Datacenter: inst.cfg.Datacenter, Role: store.RoleStandby, HTTPAddr: httpAddr, Version: inst.cfg.Version,
			StartedAt: started, LastSeen: now}, staleAfter)
		delay := b.Next()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrInstanceIDUsed):
			if time.Now().After(clashUntil) {
				return err
			}
			if !waiting {
				inst.log.Warn("instance.id is registered as live; waiting for it to go stale", "error", err, "up_to", time.Until(clashUntil).Round(time.Millisecond))
			}
			waiting, delay = true, heartbeatEvery/2
		default:
			inst.log.Warn("registering the instance failed; retrying", "error", err, "retry_in", delay)
		}
		if !backoff.Sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

func (inst *Instance) run(ctx context.Context) error {
	cfg := inst.cfg
	inst.Executor.Start()
	// Routing decides what needs a token: the API and metrics do; health
	// checks and the UI's data-less pages do not (see package auth).
	guarded := http.NewServeMux()
	guarded.Handle("GET /metrics", inst.Metrics.Handler())
	guarded.Handle("/api/", inst.API)
	mux := http.NewServeMux()
	mux.Handle("/api/", inst.Auth.Middleware(guarded))
	mux.Handle("/metrics", inst.Auth.Middleware(guarded))
	mux.Handle("/healthz", inst.API)
	mux.Handle("/readyz", inst.API)
	mux.Handle("/", inst.UI)
	handler := auth.CrossOrigin(mux)
	if cfg.Handler != nil {
		handler = cfg.Handler(handler, inst)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}

	// Background work is split by when it must stop: the elector first,
	// so that the token moves on at once; everything else after the HTTP
	// server has drained.
	electCtx, stopElect := context.WithCancel(context.WithoutCancel(ctx))
	bgCtx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var elect, bg sync.WaitGroup
	fatal := make(chan error, 1)
	goTracked := func(wg *sync.WaitGroup, fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	goTracked(&elect, func() { _ = inst.Elector.Run(electCtx) })
	goTracked(&bg, func() { _ = inst.Watchdog.Run(bgCtx) })
	goTracked(&bg, func() { _ = inst.Watchdog.Observe(bgCtx) })
	goTracked(&bg, func() { _ = inst.CRUD.Run(bgCtx) })
	goTracked(&bg, func() {
		if err := inst.heartbeat(bgCtx); err != nil {
			fatal <- err
		}
	})
	goTracked(&bg, func() { inst.applySchedule(bgCtx) })
	goTracked(&bg, func() {
		if err := srv.Serve(inst.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fatal <- fmt.Errorf("http: %w", err)
		}
	})
	inst.log.Info("instance started", "http", inst.ln.Addr().String(), "cluster", cfg.Cluster, "datacenter", cfg.Datacenter)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-fatal:
		inst.log.Error("stopping after a fatal error", "error", runErr)
	}
	start := time.Now()
	// 1. Hand the token over: stop firing, release the lease, cancel,
	//    nack. The next executor starts while this one drains.
	stopElect()
	elect.Wait()
	// 2. Stop taking requests and let those in progress finish.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTPShutdownTimeout)
	_ = srv.Shutdown(sctx)
	cancel()
	// 3. Background loops, then the dispatches still in flight, whose
	//    outcomes are recorded before the store closes.
	stopBG()
	bg.Wait()
	cctx, cancel := context.WithTimeout(context.Background(), cfg.HTTPShutdownTimeout)
	if err := inst.Executor.Close(cctx); err != nil {
		inst.log.Warn("shutdown", "error", err)
	}
	cancel()
	_ = inst.dispatcher.Close()
	inst.markStopped()
	_ = inst.Store.Close(context.Background())
	inst.log.Info("instance stopped", "took", time.Since(start))
	return runErr
}

// heartbeat keeps the registration fresh with the current role. Losing the
// registration to another process with the same id is fatal.
func (inst *Instance) heartbeat(ctx context.Context) error {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := inst.Store.Heartbeat(ctx, inst.registration(inst.Elector.Status().Role))
		switch {
		case errors.Is(err, store.ErrInstanceIDUsed):
			return fmt.Errorf("instance.id %q was taken over by another process: %w", inst.cfg.ID, err)
		case err != nil:
			inst.storeOK.Store(false)
			inst.log.Warn("heartbeat failed", "error", err)
		default:
			inst.storeOK.Store(true)
		}
	}
}

func (inst *Instance) registration(role string) store.Instance {
	return store.Instance{ID: inst.cfg.ID, Session: inst.session, Datacenter: inst.cfg.Datacenter, Role: role,
		HTTPAddr: inst.ln.Addr().String(), LastSeen: time.Now().UTC()}
}

func (inst *Instance) markStopped() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = inst.Store.Heartbeat(ctx, inst.registration(store.RoleStopped))
}

// Addr is the HTTP listen address.
func (inst *Instance) Addr() string { return inst.ln.Addr().String() }

// applySchedule upserts the schedule file's jobs through the write path,
// like sidekiq-cron's load_from_hash: idempotent, so N instances starting
// with the same file change nothing after the first.
func (inst *Instance) applySchedule(ctx context.Context) {
	for i := range inst.cfg.Schedule {
		j := inst.cfg.Schedule[i]
		b := backoff.Backoff{Min: 500 * time.Millisecond, Max: 5 * time.Second}
		for {
			reply, err := inst.CRUD.Do(ctx, crud.Request{Op: crud.OpUpsert, Name: j.Name, Job: &j})
			if err == nil && reply.Error == nil {
				inst.log.Info("schedule file job applied", "job", j.Name, "result", reply.Result)
				break
			}
			if err == nil && reply.Status < 500 {
				inst.log.Error("schedule file job rejected", "job", j.Name, "error", reply.Error.Message, "field", reply.Error.Field)
				break
			}
			if !backoff.Sleep(ctx, b.Next()) {
				return
			}
		}
	}
}

// clusterView answers the API's questions about the cluster.
type clusterView struct{ inst *Instance }

func (c clusterView) Executor(ctx context.Context) (*store.Lease, error) {
	l, err := c.inst.Store.Lease(ctx)
	if err != nil {
		return nil, err
	}
	c.inst.Observer.Observe(l)
	if !c.inst.Observer.Live(l) {
		return nil, nil
	}
	return &l, nil
}

func (c clusterView) Token() any {
	return map[string]any{"watchdog": c.inst.Watchdog.Status(), "elector": c.inst.Elector.Status()}
}

func (c clusterView) Ready(ctx context.Context) error {
	var problems []error
	if !c.inst.storeOK.Load() {
		problems = append(problems, errors.New("store unreachable"))
	}
	if !c.inst.Elector.Status().Connected {
		problems = append(problems, errors.New("broker unreachable (token)"))
	}
	if !c.inst.CRUD.Connected() {
		problems = append(problems, errors.New("broker unreachable (writes)"))
	}
	return errors.Join(problems...)
}

// chainHooks calls a's hooks, then b's.
func chainHooks(a, b executor.Hooks) executor.Hooks {
	return executor.Hooks{
		Fired: chain2(a.Fired, b.Fired),
		Finished: func(name, status string, d time.Duration) {
			call3(a.Finished, name, status, d)
			call3(b.Finished, name, status, d)
		},
		Recorded: chain2(a.Recorded, b.Recorded),
		StoreOp: func(op string, n int, took time.Duration, err error) {
			if a.StoreOp != nil {
				a.StoreOp(op, n, took, err)
			}
			if b.StoreOp != nil {
				b.StoreOp(op, n, took, err)
			}
		},
	}
}

func chain2[A, B any](f, g func(A, B)) func(A, B) {
	switch {
	case f == nil:
		return g
	case g == nil:
		return f
	}
	return func(a A, b B) { f(a, b); g(a, b) }
}

func call3[A, B, C any](f func(A, B, C), a A, b B, c C) {
	if f != nil {
		f(a, b, c)
	}
}
