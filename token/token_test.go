package token_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/faultproxy"
	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/token"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// cluster is a set of in-process instances competing for one token.
type cluster struct {
	t        *testing.T
	st       *store.Store
	url      string
	queue    string
	cfg      token.Config
	active   atomic.Int32 // terms currently running across all nodes
	overlaps atomic.Int32
	quiesced atomic.Int32 // Quiesce calls made while the term was valid

	mu     sync.Mutex
	events []event
}

type event struct {
	node  string
	lead  bool // false: stop
	epoch int64
	at    time.Time
}

type fakeLeader struct {
	c    *cluster
	name string
	mu   sync.Mutex
	term *token.Term
	// prepared is the epoch of the lease last waited out, and prepareCtx
	// what Prepare got; preparedLead that a Lead came while it was live.
	prepared     int64
	prepareCtx   context.Context
	preparedLead bool
}

func (f *fakeLeader) Prepare(ctx context.Context, prev store.Lease) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prepared, f.prepareCtx = prev.Epoch, ctx
}

// preparedFor returns the epoch last waited out, and whether this node's
// last Lead came while Prepare's context was live.
func (f *fakeLeader) preparedFor() (epoch int64, ledWhilePrepared bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.prepared, f.preparedLead
}

func (f *fakeLeader) Lead(term *token.Term) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.c.active.Add(1) > 1 {
		f.c.overlaps.Add(1)
	}
	f.term = term
	f.preparedLead = f.prepareCtx != nil && f.prepareCtx.Err() == nil
	f.c.record(event{node: f.name, lead: true, epoch: term.Epoch(), at: time.Now()})
}

func (f *fakeLeader) Quiesce(context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.term != nil && f.term.Valid() {
		f.c.quiesced.Add(1)
	}
}

func (f *fakeLeader) Stop(context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.term == nil {
		return
	}
	f.c.active.Add(-1)
	f.c.record(event{node: f.name, lead: false, epoch: f.term.Epoch(), at: time.Now()})
	f.term = nil
}

func (c *cluster) record(e event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, e)
}

func (c *cluster) leads() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []event
	for _, e := range c.events {
		if e.lead {
			out = append(out, e)
		}
	}
	return out
}

func (c *cluster) lastStop(node string) (event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.events) - 1; i >= 0; i-- {
		if !c.events[i].lead && c.events[i].node == node {
			return c.events[i], true
		}
	}
	return event{}, false
}

type node struct {
	name   string
	leader *fakeLeader
	el     *token.Elector
	wd     *token.Watchdog
	proxy  *faultproxy.Proxy
	store  *crashableStore
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// crashableStore is a node's link to the store, which a simulated crash
// cuts: a dead process releases nothing.
type crashableStore struct {
	token.LeaseStore
	dead atomic.Bool
}

var errCrashed = errors.New("test: the instance has crashed")

func (s *crashableStore) Lease(ctx context.Context) (store.Lease, error) {
	if s.dead.Load() {
		return store.Lease{}, errCrashed
	}
	return s.LeaseStore.Lease(ctx)
}

func (s *crashableStore) AcquireLease(ctx context.Context, observed store.Lease, holder, dc string, gen int64, now time.Time) (store.Lease, error) {
	if s.dead.Load() {
		return store.Lease{}, errCrashed
	}
	return s.LeaseStore.AcquireLease(ctx, observed, holder, dc, gen, now)
}

func (s *crashableStore) RenewLease(ctx context.Context, l store.Lease, watermark, now time.Time) (store.Lease, error) {
	if s.dead.Load() {
		return store.Lease{}, errCrashed
	}
	return s.LeaseStore.RenewLease(ctx, l, watermark, now)
}

func (s *crashableStore) ReleaseLease(ctx context.Context, l store.Lease, watermark, now time.Time) error {
	if s.dead.Load() {
		return errCrashed
	}
	return s.LeaseStore.ReleaseLease(ctx, l, watermark, now)
}

func (s *crashableStore) BumpTokenGen(ctx context.Context, observed store.Lease) (store.Lease, error) {
	if s.dead.Load() {
		return store.Lease{}, errCrashed
	}
	return s.LeaseStore.BumpTokenGen(ctx, observed)
}

func (s *crashableStore) RotateTokenGen(ctx context.Context, l store.Lease) (store.Lease, error) {
	if s.dead.Load() {
		return store.Lease{}, errCrashed
	}
	return s.LeaseStore.RotateTokenGen(ctx, l)
}

// crash simulates SIGKILL of a proxied node: its store link dies, and the
// kernel resets its broker connection, which makes the broker requeue the
// token at once. The process then stays unreachable.
func (n *node) crash() {
	n.store.dead.Store(true)
	n.proxy.Reset()
	n.proxy.Blackhole()
}

func newCluster(t *testing.T, tweak func(*token.Config)) *cluster {
	name := testenv.Name(t)
	c := &cluster{t: t, st: testenv.Store(t), url: testenv.AMQPURL(t), queue: name + ".token"}
	testenv.DeleteQueues(t, c.queue)
	c.cfg = token.Config{
		Queue: c.queue, Heartbeat: time.Second, ConnectTimeout: 2 * time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
		LeaseTTL: 2 * time.Second, RenewInterval: 400 * time.Millisecond, HealthTimeout: 500 * time.Millisecond,
		RotateInterval: 10 * time.Minute, WatchdogInterval: 500 * time.Millisecond,
		Logger: testenv.Logger(),
	}
	if tweak != nil {
		tweak(&c.cfg)
	}
	t.Cleanup(func() {
		require.Zero(t, c.overlaps.Load(), "two executors were active at once")
	})
	return c
}

// start starts an instance. With proxied, its broker link goes through a
// fault proxy.
func (c *cluster) start(name string, proxied bool) *node {
	t := c.t
	cfg := c.cfg
	cfg.InstanceID = name
	cfg.URL = c.url
	n := &node{name: name}
	if proxied {
		u := strings.TrimPrefix(c.url, "amqp://")
		at := strings.LastIndex(u, "@")
		hostPort := strings.TrimSuffix(u[at+1:], "/")
		p, err := faultproxy.Start(hostPort)
		require.NoError(t, err)
		n.proxy = p
		cfg.URL = "amqp://" + u[:at+1] + p.Addr() + "/"
	}
	obs := token.NewObserver(cfg.LeaseTTL)
	n.store = &crashableStore{LeaseStore: c.st}
	var err error
	n.leader = &fakeLeader{c: c, name: name}
	n.el, err = token.NewElector(cfg, n.store, n.leader, obs)
	require.NoError(t, err)
	n.wd, err = token.NewWatchdog(cfg, n.store, obs)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	for _, run := range []func(context.Context) error{n.el.Run, n.wd.Run, n.wd.Observe} {
		n.done.Add(1)
		go func() { defer n.done.Done(); _ = run(ctx) }()
	}
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	n.done.Wait()
	if n.proxy != nil {
		_ = n.proxy.Close()
	}
}

func (c *cluster) waitLeader(nodes []*node, timeout time.Duration) *node {
	c.t.Helper()
	var leader *node
	require.Eventually(c.t, func() bool {
		for _, n := range nodes {
			// The status says executor just before Lead is called: wait
			// for the Lead event too, so callers count events from here.
			if n.el.Status().Role == token.RoleExecutor {
				if l := c.leads(); len(l) > 0 && l[len(l)-1].node == n.name {
					leader = n
					return true
				}
			}
		}
		return false
	}, timeout, 20*time.Millisecond, "no executor was elected")
	return leader
}

func (c *cluster) queueReady() int {
	conn, err := amqp.Dial(c.url)
	require.NoError(c.t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(c.t, err)
	q, err := ch.QueueDeclarePassive(c.queue, true, false, false, false, nil)
	if err != nil {
		return -1 // not declared yet
	}
	return q.Messages
}

func (c *cluster) publishRaw(gen int64, body string) {
	conn, err := amqp.Dial(c.url)
	require.NoError(c.t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(c.t, err)
	headers := amqp.Table{}
	if gen >= 0 {
		headers["x-baton-token-gen"] = gen
	}
	require.NoError(c.t, ch.PublishWithContext(context.Background(), "", c.queue, false, false,
		amqp.Publishing{Headers: headers, Body: []byte(body), DeliveryMode: amqp.Persistent}))
}

func countRoles(nodes []*node) (executors int) {
	for _, n := range nodes {
		if n.el.Status().Role == token.RoleExecutor {
			executors++
		}
	}
	return executors
}

func TestOneExecutorAndGracefulHandover(t *testing.T) {
	t.Parallel()
	// A long TTL keeps "did not wait for the TTL" apart from "slow under
	// load": a hand-over takes milliseconds, a TTL wait six seconds.
	c := newCluster(t, func(cfg *token.Config) { cfg.LeaseTTL, cfg.RenewInterval = 6*time.Second, time.Second })
	nodes := []*node{c.start("a", false), c.start("b", false), c.start("c", false)}
	leader := c.waitLeader(nodes, 10*time.Second)

	// Exactly one executor, steadily.
	for range 20 {
		require.Equal(t, 1, countRoles(nodes))
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, 0, c.queueReady(), "the token is held, not waiting in the queue")

	// Graceful shutdown hands over at once: no waiting for the lease TTL.
	before := len(c.leads())
	stopped := time.Now()
	leader.stop()
	require.Eventually(t, func() bool { return len(c.leads()) > before }, 2*time.Second, 5*time.Millisecond)
	takeover := c.leads()[before].at.Sub(stopped)
	t.Logf("graceful takeover after %s", takeover)
	require.Less(t, takeover, 2*time.Second, "takeover must not wait for the lease TTL (%s)", c.cfg.LeaseTTL)
	last, ok := c.lastStop(leader.name)
	require.True(t, ok)
	require.True(t, last.at.Before(c.leads()[before].at), "the old executor stopped before the new one started")
	require.EqualValues(t, 1, c.quiesced.Load(), "the old executor quiesced while its term was still valid")
	c.requireNoReinserts(nodes)
}

// requireNoReinserts checks that the token itself moved: a watchdog
// re-insert would hide a token the broker dropped.
func (c *cluster) requireNoReinserts(nodes []*node) {
	c.t.Helper()
	for _, n := range nodes {
		require.Zero(c.t, n.wd.Status().Reinserts, "node %s re-inserted a token", n.name)
	}
	l, err := c.st.Lease(context.Background())
	require.NoError(c.t, err)
	require.EqualValues(c.t, 1, l.TokenGen, "the first token is still the token")
}

func TestTenWatchdogsPublishOneToken(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	start := make(chan struct{})
	for i := range 10 {
		cfg := c.cfg
		cfg.URL, cfg.InstanceID = c.url, fmt.Sprint("w", i)
		wd, err := token.NewWatchdog(cfg, c.st, token.NewObserver(cfg.LeaseTTL))
		require.NoError(t, err)
		wg.Add(1)
		go func() { defer wg.Done(); <-start; _ = wd.Run(ctx) }()
	}
	close(start)
	time.Sleep(3 * time.Second) // several watchdog rounds
	cancel()
	wg.Wait()
	require.Equal(t, 1, c.queueReady(), "exactly one token was published")
	l, err := c.st.Lease(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 1, l.TokenGen)
}

func TestBlackholedExecutorStopsBeforeTakeover(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	nodes := []*node{c.start("a", true), c.start("b", true), c.start("c", true)}
	leader := c.waitLeader(nodes, 10*time.Second)
	before := len(c.leads())

	cut := time.Now()
	leader.proxy.Blackhole()
	require.Eventually(t, func() bool { return len(c.leads()) > before }, 30*time.Second, 10*time.Millisecond)
	next := c.leads()[before]
	stop, ok := c.lastStop(leader.name)
	require.True(t, ok, "the partitioned executor stepped down")
	t.Logf("partitioned executor stopped %s after the cut; new executor %s started %s after the cut (gap %s)",
		stop.at.Sub(cut), next.node, next.at.Sub(cut), next.at.Sub(stop.at))
	require.True(t, stop.at.Before(next.at), "the old executor's last moment precedes the new one's first")
	require.NotEqual(t, leader.name, next.node)
	require.Greater(t, next.epoch, stop.epoch)

	leader.proxy.Restore()
	time.Sleep(2 * time.Second)
	require.Equal(t, 1, countRoles(nodes))
}

// A crashed executor cannot release its lease. The broker requeues its token
// when the connection dies, and the successor takes over once HolderTTL has
// passed, well before the lease's TTL.
func TestCrashedExecutorIsReplacedAfterHolderTTL(t *testing.T) {
	t.Parallel()
	c := newCluster(t, func(cfg *token.Config) {
		cfg.LeaseTTL, cfg.RenewInterval, cfg.HolderTTL = 6*time.Second, time.Second, time.Second
	})
	nodes := []*node{c.start("a", true), c.start("b", true)}
	leader := c.waitLeader(nodes, 10*time.Second)
	before := len(c.leads())
	crashed := time.Now()
	leader.crash()
	require.Eventually(t, func() bool { return len(c.leads()) > before }, 15*time.Second, 5*time.Millisecond)
	next := c.leads()[before]
	took := next.at.Sub(crashed)
	t.Logf("takeover %s after the crash (holder TTL %s, lease TTL %s)", took, c.cfg.HolderTTL, c.cfg.LeaseTTL)
	require.NotEqual(t, leader.name, next.node)
	require.GreaterOrEqual(t, took, c.cfg.HolderTTL, "the successor waited for the crashed executor to stop")
	require.Less(t, took, c.cfg.LeaseTTL-time.Second, "the successor did not wait out the lease")
	l, err := c.st.Lease(context.Background())
	require.NoError(t, err)
	require.Equal(t, next.epoch, l.Epoch)
	for _, n := range nodes {
		if n.name == next.node {
			waited, prepared := n.leader.preparedFor()
			require.Equal(t, next.epoch-1, waited, "the successor prepared while it waited out the crashed executor's lease")
			require.True(t, prepared, "the successor led before its preparation was called off")
		}
	}
}

func TestConnectionResetMovesLeadership(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	nodes := []*node{c.start("a", true), c.start("b", true)}
	leader := c.waitLeader(nodes, 10*time.Second)
	before := len(c.leads())
	cut := time.Now()
	leader.proxy.Reset()
	require.Eventually(t, func() bool { return len(c.leads()) > before }, 10*time.Second, 5*time.Millisecond)
	t.Logf("takeover after a connection reset: %s", c.leads()[before].at.Sub(cut))
	require.Eventually(t, func() bool { return countRoles(nodes) == 1 }, 5*time.Second, 20*time.Millisecond)
}

func TestDuplicateAndForeignTokensAreRemoved(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	nodes := []*node{c.start("a", false), c.start("b", false)}
	leader := c.waitLeader(nodes, 10*time.Second)
	epoch := leader.el.Status().Epoch
	l, err := c.st.Lease(context.Background())
	require.NoError(t, err)

	c.publishRaw(l.TokenGen, "a copy of the real token")
	c.publishRaw(-1, "not a token at all")
	c.publishRaw(l.TokenGen-1, "an old generation")
	require.Eventually(t, func() bool { return c.queueReady() == 0 }, 10*time.Second, 100*time.Millisecond,
		"duplicates must be drained")
	require.Equal(t, 1, countRoles(nodes))
	require.Equal(t, epoch, leader.el.Status().Epoch, "removing duplicates does not move leadership")
	require.GreaterOrEqual(t, leader.el.Status().StaleTokens, int64(3))

	// After a failover exactly one token remains and one executor runs.
	for _, n := range nodes {
		require.Zero(t, n.wd.Status().Reinserts)
	}
	leader.stop()
	c.waitLeader(nodes, 10*time.Second)
	for _, n := range nodes {
		require.Zero(t, n.wd.Status().Reinserts, "the failover used the existing token")
	}
	require.Eventually(t, func() bool { return c.queueReady() == 0 }, 2*time.Second, 10*time.Millisecond)
}

func TestRotationKeepsLeadership(t *testing.T) {
	t.Parallel()
	c := newCluster(t, func(cfg *token.Config) { cfg.RotateInterval = 200 * time.Millisecond })
	nodes := []*node{c.start("a", false), c.start("b", false)}
	leader := c.waitLeader(nodes, 10*time.Second)
	epoch := leader.el.Status().Epoch
	time.Sleep(3 * time.Second)
	st := leader.el.Status()
	require.Equal(t, token.RoleExecutor, st.Role)
	require.Equal(t, epoch, st.Epoch, "rotation must not move leadership")
	// About 15 at this interval on an idle machine; a loaded CI box
	// manages fewer, and any number proves the point.
	require.GreaterOrEqual(t, st.Rotations, int64(3))
	require.Len(t, c.leads(), 1)
	// The fresh token may be in flight at any instant; it must not linger.
	require.Eventually(t, func() bool { return c.queueReady() == 0 }, 2*time.Second, 10*time.Millisecond)
}

func TestLostTokenIsReinserted(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	nodes := []*node{c.start("a", false), c.start("b", false)}
	leader := c.waitLeader(nodes, 10*time.Second)

	// Deleting the queue cancels the holder's consumer: leadership is lost
	// at once, and the token with it.
	conn, err := amqp.Dial(c.url)
	require.NoError(t, err)
	ch, err := conn.Channel()
	require.NoError(t, err)
	deleted := time.Now()
	_, err = ch.QueueDelete(c.queue, false, false, false)
	require.NoError(t, err)
	conn.Close()
	before := len(c.leads())
	require.Eventually(t, func() bool { return len(c.leads()) > before }, 15*time.Second, 20*time.Millisecond)
	t.Logf("executor again %s after the queue was deleted (old executor %s)", time.Since(deleted), leader.name)
	require.Eventually(t, func() bool { return countRoles(nodes) == 1 }, 5*time.Second, 20*time.Millisecond)

	// Stop everyone gracefully (the token goes back to the queue), purge it,
	// start again: the watchdog re-inserts it.
	for _, n := range nodes {
		n.stop()
	}
	// The nack is asynchronous: the quorum queue counts the token once the
	// return is applied.
	require.Eventually(t, func() bool { return c.queueReady() == 1 }, 2*time.Second, 10*time.Millisecond)
	conn, err = amqp.Dial(c.url)
	require.NoError(t, err)
	ch, err = conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueuePurge(c.queue, false)
	require.NoError(t, err)
	conn.Close()
	purged := time.Now()
	n2 := []*node{c.start("c", false)}
	c.waitLeader(n2, 15*time.Second)
	t.Logf("executor again %s after the token was purged", time.Since(purged))
	require.EqualValues(t, 1, n2[0].wd.Status().Reinserts)
}

func TestFiveWatchdogsReinsertOneToken(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	ctx := context.Background()
	// A cluster that had a token, whose executor released the lease, and
	// whose token was then lost.
	require.NoError(t, c.st.EnsureLease(ctx))
	l, err := c.st.Lease(ctx)
	require.NoError(t, err)
	l, err = c.st.BumpTokenGen(ctx, l)
	require.NoError(t, err)
	l, err = c.st.AcquireLease(ctx, l, "gone", "dc", l.TokenGen, time.Now())
	require.NoError(t, err)
	require.NoError(t, c.st.ReleaseLease(ctx, l, time.Now(), time.Now()))

	var wds []*token.Watchdog
	var wg sync.WaitGroup
	wctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	for i := range 5 {
		cfg := c.cfg
		cfg.URL, cfg.InstanceID = c.url, fmt.Sprint("w", i)
		wd, err := token.NewWatchdog(cfg, c.st, token.NewObserver(cfg.LeaseTTL))
		require.NoError(t, err)
		wds = append(wds, wd)
		wg.Add(1)
		go func() { defer wg.Done(); _ = wd.Run(wctx) }()
	}
	require.Eventually(t, func() bool { return c.queueReady() == 1 }, 10*time.Second, 50*time.Millisecond)
	t.Logf("token re-inserted %s after the watchdogs started (interval %s)", time.Since(start), c.cfg.WatchdogInterval)
	time.Sleep(3 * c.cfg.WatchdogInterval)
	cancel()
	wg.Wait()
	var reinserts int64
	for _, wd := range wds {
		reinserts += wd.Status().Reinserts
	}
	require.EqualValues(t, 1, reinserts, "exactly one watchdog re-inserted")
	require.Equal(t, 1, c.queueReady(), "exactly one token")
}

// RabbitMQ 3.10 does not cancel the consumers of a quorum queue that is
// deleted and at once declared again (here by the test, in production by an
// operator racing the instances): they stay registered on their channels.
// The executor may keep leading on its old delivery, fenced by its lease; but
// when it leaves, another instance must still get the token.
func TestQueueDeletedAndRedeclaredAtOnce(t *testing.T) {
	t.Parallel()
	c := newCluster(t, func(cfg *token.Config) { cfg.StuckAfter = 4 * time.Second })
	nodes := []*node{c.start("a", false), c.start("b", false), c.start("c", false)}
	leader := c.waitLeader(nodes, 10*time.Second)
	conn, err := amqp.Dial(c.url)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	// One round: repeated fast re-creation drives RabbitMQ 3.10 into
	// answering basic.consume with 541 INTERNAL_ERROR for a while, which
	// tests the broker more than Baton.
	for round := range 1 {
		_, err = ch.QueueDelete(c.queue, false, false, false)
		require.NoError(t, err)
		_, err = ch.QueueDeclare(c.queue, true, false, false, false, amqp.Table{
			amqp.QueueTypeArg: amqp.QueueTypeQuorum, amqp.SingleActiveConsumerArg: true, "x-delivery-limit": int64(token.DeliveryLimit)})
		require.NoError(t, err)
		time.Sleep(time.Second)

		before := len(c.leads())
		start := time.Now()
		leader.stop()
		var rest []*node
		for _, n := range nodes {
			if n != leader {
				rest = append(rest, n)
			}
		}
		require.Eventually(t, func() bool { return len(c.leads()) > before },
			c.cfg.StuckAfter+c.cfg.LeaseTTL+20*time.Second, 20*time.Millisecond, "round %d: no executor", round)
		t.Logf("round %d: executor again %s after the executor left a re-created queue", round, time.Since(start).Round(time.Millisecond))
		nodes = append(rest, c.start(fmt.Sprint("n", round), false))
		leader = c.waitLeader(nodes, 5*time.Second)
		require.Equal(t, 1, countRoles(nodes))
	}
}
