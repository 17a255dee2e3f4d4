package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/batonhq/baton/internal/devstore"
	"github.com/batonhq/baton/internal/faultproxy"
	"github.com/batonhq/baton/internal/testcluster"
	"github.com/batonhq/baton/store"
)

// Timings of the cluster under test: short, so that many faults fit in a
// run. Rotation every 2s keeps the consumer_timeout fault meaningful and
// exercises token rotation throughout.
var clusterEnv = map[string]string{
	"BATON_LEASE_TTL":             "3s",
	"BATON_LEASE_RENEW_INTERVAL":  "500ms",
	"BATON_TOKEN_HEALTH_TIMEOUT":  "500ms",
	"BATON_TOKEN_ROTATE_INTERVAL": "2s",
	"BATON_AMQP_HEARTBEAT":        "2s",
	"BATON_AMQP_RECONNECT_MAX":    "2s",
	"BATON_WATCHDOG_INTERVAL":     "1s",
	"BATON_MONGO_TIMEOUT":         "2s",
	"BATON_CRUD_TIMEOUT":          "3s",
	"BATON_LOG_LEVEL":             "info",
}

const leaseTTL = 3 * time.Second

type chaos struct {
	o     options
	log   *slog.Logger
	rng   *rand.Rand
	name  string
	st    *devstore.Server
	mongo *faultproxy.Proxy
	c     *testcluster.Cluster
	recv  *testcluster.Receiver
	db    *store.Store
	mon   *monitor
	rep   *report
}

func run(ctx context.Context, o options, log *slog.Logger) (*report, error) {
	x := &chaos{o: o, log: log, rng: rand.New(rand.NewPCG(uint64(o.seed), 0xba70)),
		name: fmt.Sprintf("chaos-%d-%d", o.seed, time.Now().Unix()%100000), rep: newReport()}
	if err := x.setup(ctx); err != nil {
		x.teardown()
		return nil, err
	}
	defer x.teardown()
	faults := pickFaults(o)
	x.log.Info("running", "faults", len(faults), "seed", o.seed, "instances", o.instances, "logs", x.c.LogDir())
	x.settle(ctx, 6*time.Second)
	// Faults come in rounds, each a seeded shuffle of every type, so that a
	// run of ten covers all of them.
	var round []fault
	for i := 0; i < o.faults && ctx.Err() == nil; i++ {
		if len(round) == 0 {
			round = append(round, faults...)
			x.rng.Shuffle(len(round), func(a, b int) { round[a], round[b] = round[b], round[a] })
		}
		f := round[0]
		round = round[1:]
		start := time.Now()
		x.log.Info("fault", "n", i+1, "type", f.name)
		holder, epoch, err := x.waitExecutor(ctx, 30*time.Second)
		if err == nil {
			err = f.run(ctx, x, holder, epoch)
		}
		if err != nil {
			x.rep.errorf("fault %d (%s): %v", i+1, f.name, err)
		}
		x.rep.faults = append(x.rep.faults, injected{kind: f.name, at: start})
		x.settle(ctx, o.settle+time.Duration(x.rng.IntN(2000))*time.Millisecond)
	}
	x.settle(ctx, 5*time.Second)
	end := time.Now().Add(-3 * time.Second)
	x.mon.stop()
	x.rep.doubles = x.mon.doubles
	return x.rep, x.audit(ctx, end)
}

func (x *chaos) setup(ctx context.Context) error {
	if err := exec.Command("rabbitmqctl", "eval", "application:set_env(rabbit, consumer_timeout, 1800000).").Run(); err != nil {
		return fmt.Errorf("rabbitmqctl: %w (is rabbitmq-server running? run scripts/services)", err)
	}
	var err error
	if x.st, err = devstore.Start(devstore.Options{}); err != nil {
		return err
	}
	u, _ := url.Parse(x.st.URI())
	if x.mongo, err = faultproxy.Start(u.Host); err != nil {
		return err
	}
	if x.db, err = store.Open(ctx, store.Config{URI: x.st.URI(), Database: x.name, Logger: quiet()}); err != nil {
		return err
	}
	if x.recv, err = testcluster.StartReceiver(); err != nil {
		return err
	}
	x.c, err = testcluster.New(testcluster.Options{Name: x.name, MongoURI: x.st.URI(), AMQPURL: x.o.amqpURL,
		Proxied: true, MongoProxy: x.mongo.Addr(), Env: clusterEnv})
	if err != nil {
		return err
	}
	for i := range x.o.instances {
		if _, err := x.c.Add(fmt.Sprintf("n%d", i+1), fmt.Sprintf("dc%d", i%3+1)); err != nil {
			return err
		}
	}
	exec, _, err := x.waitExecutor(ctx, 30*time.Second)
	if err != nil {
		return err
	}
	for j := range x.o.jobs {
		body := fmt.Sprintf(`{"name":"job-%d","schedule":"* * * * * *","target":{"type":"http","http":{"url":%q,"timeout":"5s"}}}`,
			j, x.recv.URL(fmt.Sprintf("/job-%d", j)))
		var out map[string]any
		code, err := exec.Do(http.MethodPost, "/api/v1/jobs", body, &out)
		if err != nil || code != http.StatusCreated {
			return fmt.Errorf("create job-%d: %d %v %v", j, code, out, err)
		}
		name := fmt.Sprintf("job-%d", j)
		created, _ := out["created_at"].(string)
		if x.rep.created[name], err = time.Parse(time.RFC3339Nano, created); err != nil {
			return fmt.Errorf("create %s: created_at %q: %w", name, created, err)
		}
		x.rep.jobs = append(x.rep.jobs, name)
	}
	x.mon = startMonitor(x.c, x.log)
	return nil
}

func (x *chaos) teardown() {
	_ = exec.Command("rabbitmqctl", "eval", "application:set_env(rabbit, consumer_timeout, 1800000), application:set_env(rabbit, channel_tick_interval, 60000).").Run()
	if x.mon != nil {
		x.mon.stop()
	}
	if x.c != nil {
		x.c.Close()
	}
	if x.recv != nil {
		_ = x.recv.Close()
	}
	if x.db != nil {
		_ = x.db.DropDatabase(context.Background())
		_ = x.db.Close(context.Background())
	}
	if x.mongo != nil {
		_ = x.mongo.Close()
	}
	if x.st != nil {
		x.st.Stop()
	}
	if x.c != nil {
		_ = testcluster.DeleteQueues(x.o.amqpURL, x.name+".token", x.name+".crud")
	}
}

// settle waits, restarting any instance that is down.
func (x *chaos) settle(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for _, n := range x.c.Nodes {
			if !n.Running() {
				if err := n.Start(); err != nil {
					x.log.Debug("restart failed; will retry", "node", n.ID, "error", err)
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitExecutor waits until the running instances agree on an executor.
func (x *chaos) waitExecutor(ctx context.Context, timeout time.Duration) (*testcluster.Node, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return x.c.WaitExecutor(ctx)
}

// takeover waits for an executor with an epoch above epoch and records how
// long after start it began.
func (x *chaos) takeover(ctx context.Context, kind string, start time.Time, epoch int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if since, e, ok := x.mon.executorAfter(epoch); ok {
			x.rep.takeover(kind, since.Sub(start))
			x.log.Info("new executor", "type", kind, "epoch", e, "after", since.Sub(start).Round(time.Millisecond))
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no new executor within %s", timeout)
}

func (x *chaos) standby(exec *testcluster.Node) *testcluster.Node {
	var out []*testcluster.Node
	for _, n := range x.c.Nodes {
		if n != exec && n.Running() {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out[x.rng.IntN(len(out))]
}

// fault is one kind of failure and how to inject it.
type fault struct {
	name string
	// run injects the fault into a cluster whose executor is exec, holding
	// epoch, and waits for its effect.
	run func(ctx context.Context, x *chaos, holder *testcluster.Node, epoch int64) error
}

func allFaults() []fault {
	return []fault{
		{"sigkill-executor", func(ctx context.Context, x *chaos, holder *testcluster.Node, epoch int64) error {
			start := time.Now()
			holder.Kill()
			return x.takeover(ctx, "sigkill-executor", start, epoch, leaseTTL+15*time.Second)
		}},
		{"sigterm-executor", func(ctx context.Context, x *chaos, holder *testcluster.Node, epoch int64) error {
			start := time.Now()
			go func() { _ = holder.Term(15 * time.Second) }()
			return x.takeover(ctx, "sigterm-executor", start, epoch, 15*time.Second)
		}},
		{"blackhole-executor-broker", func(ctx context.Context, x *chaos, holder *testcluster.Node, epoch int64) error {
			start := time.Now()
			holder.Proxy.Blackhole()
			defer holder.Proxy.Restore()
			x.rep.blackholes = append(x.rep.blackholes, blackhole{node: holder.ID, epoch: epoch, at: start})
			return x.takeover(ctx, "blackhole-executor-broker", start, epoch, 30*time.Second)
		}},
		{"broker-restart", func(ctx context.Context, x *chaos, holder *testcluster.Node, epoch int64) error {
			start := time.Now()
			if out, err := exec.Command("rabbitmqctl", "stop_app").CombinedOutput(); err != nil {
				return fmt.Errorf("stop_app: %v %s", err, out)
			}
			time.Sleep(time.Second)
			if out, err := exec.Command("rabbitmqctl", "start_app").CombinedOutput(); err != nil {
				return fmt.Errorf("start_app: %v %s", err, out)
			}
			return x.takeover(ctx, "broker-restart", start, epoch, 60*time.Second)
		}},
		{"token-purge", func(ctx context.Context, x *chaos, holder *testcluster.Node, epoch int64) error {
			// The held token cannot be purged from a queue, so the queue is
			// deleted (taking the token with it) and re-declared by the
			// instances: the token is lost and must be re-inserted.
			start := time.Now()
			if err := testcluster.DeleteQueues(x.o.amqpURL, x.name+".token"); err != nil {
				return err
			}
			err := x.takeover(ctx, "token-purge", start, epoch, 20*time.Second)
			if err == nil {
				return nil
			}
			// RabbitMQ 3.10 may not cancel the holder's consumer when the
			// queue is re-declared at once: the executor then keeps leading
			// on its delivery, fenced by its lease, and must keep firing.
			if _, e, werr := x.waitExecutor(ctx, 5*time.Second); werr == nil && e == epoch {
				for _, f := range x.recv.Fires() {
					if f.Epoch == epoch && f.ReceivedAt.After(start.Add(10*time.Second)) {
						x.log.Info("the executor kept leading on its delivery; no takeover needed", "epoch", epoch)
						return nil
					}
				}
			}
			return err
		}},
		{"duplicate-token", func(ctx context.Context, x *chaos, holder *testcluster.Node, epoch int64) error {
			l, err := x.db.Lease(ctx)
			if err != nil {
				return err
			}
			if err := publishToken(x.o.amqpURL, x.name+".token", l.TokenGen); err != nil {
				return err
			}
			// The duplicate must be drained and leadership must not move.
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if n, err := queueReady(x.o.amqpURL, x.name+".token"); err == nil && n == 0 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if n, _ := queueReady(x.o.amqpURL, x.name+".token"); n != 0 {
				return fmt.Errorf("duplicate token still in the queue after 10s")
			}
			if _, e, ok := x.mon.executorAfter(epoch); ok {
				x.log.Warn("leadership moved while removing a duplicate token", "epoch", e)
			}
			return nil
		}},
		{"mongo-pause-10s", func(ctx context.Context, x *chaos, holder *testcluster.Node, epoch int64) error {
			start := time.Now()
			x.mongo.Refuse()
			time.Sleep(10 * time.Second)
			x.mongo.Restore()
			if err := x.takeover(ctx, "mongo-pause-10s", start, epoch, 30*time.Second); err != nil {
				// A pause shorter than the lease may leave the executor in
				// place; that is fine as long as it catches up.
				x.log.Info("executor kept its lease through the store outage")
			}
			return nil
		}},
		{"sigkill-standby", func(ctx context.Context, x *chaos, holder *testcluster.Node, epoch int64) error {
			if sb := x.standby(holder); sb != nil {
				sb.Kill()
			}
			return nil
		}},
		{"restart-all", func(ctx context.Context, x *chaos, holder *testcluster.Node, epoch int64) error {
			start := time.Now()
			var wg sync.WaitGroup
			for _, n := range x.c.Nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := n.Term(15 * time.Second); err != nil {
						x.log.Warn("restart-all: killed after SIGTERM", "node", n.ID, "error", err)
					}
				}()
			}
			wg.Wait()
			for _, n := range x.c.Nodes {
				if err := n.Start(); err != nil {
					return err
				}
			}
			return x.takeover(ctx, "restart-all", start, epoch, 30*time.Second)
		}},
		{"consumer-timeout", func(ctx context.Context, x *chaos, holder *testcluster.Node, epoch int64) error {
			// The broker closes a channel whose delivery stays unacked for
			// 4s, checking every second; rotation (every 2s) must keep the
			// executor in place for three such periods.
			set := func(timeout, tick int) error {
				return exec.Command("rabbitmqctl", "eval", fmt.Sprintf(
					"application:set_env(rabbit, consumer_timeout, %d), application:set_env(rabbit, channel_tick_interval, %d).", timeout, tick)).Run()
			}
			if err := set(4000, 1000); err != nil {
				return err
			}
			time.Sleep(13 * time.Second)
			if err := set(1800000, 60000); err != nil {
				return err
			}
			if _, e, ok := x.mon.executorAfter(epoch); ok {
				x.rep.flaps++
				return fmt.Errorf("leadership moved to epoch %d under a 4s consumer_timeout", e)
			}
			return nil
		}},
	}
}

func pickFaults(o options) []fault {
	all := allFaults()
	if o.only == "" {
		return all
	}
	var out []fault
	for _, f := range all {
		for _, want := range strings.Split(o.only, ",") {
			if f.name == strings.TrimSpace(want) {
				out = append(out, f)
			}
		}
	}
	return out
}

// monitor samples every instance's view about five times a second.
type monitor struct {
	c    *testcluster.Cluster
	log  *slog.Logger
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	epochs  map[int64]time.Time // epoch -> when its executor began (lease since)
	doubles int
}

type nodeView struct {
	Executor *struct {
		Instance string
		Epoch    int64
		Since    time.Time
	}
	Token struct {
		Elector struct {
			Role  string
			Epoch int64
		}
	}
}

func startMonitor(c *testcluster.Cluster, log *slog.Logger) *monitor {
	m := &monitor{c: c, log: log, done: make(chan struct{}), epochs: map[int64]time.Time{}}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-t.C:
				m.sample()
			}
		}
	}()
	return m
}

func (m *monitor) stop() {
	select {
	case <-m.done:
	default:
		close(m.done)
	}
	m.wg.Wait()
}

func (m *monitor) sample() {
	type result struct {
		id string
		v  nodeView
		ok bool
	}
	nodes := append([]*testcluster.Node(nil), m.c.Nodes...)
	results := make(chan result, len(nodes))
	for _, n := range nodes {
		go func() {
			var v nodeView
			client := http.Client{Timeout: time.Second}
			resp, err := client.Get("http://" + n.HTTP + "/api/v1/cluster")
			if err != nil {
				results <- result{id: n.ID}
				return
			}
			defer resp.Body.Close()
			results <- result{id: n.ID, v: v, ok: json.NewDecoder(resp.Body).Decode(&v) == nil}
		}()
	}
	executors := map[int64]string{}
	m.mu.Lock()
	defer m.mu.Unlock()
	for range nodes {
		r := <-results
		if !r.ok {
			continue
		}
		if r.v.Token.Elector.Role == "executor" {
			executors[r.v.Token.Elector.Epoch] = r.id
		}
		if e := r.v.Executor; e != nil {
			if _, seen := m.epochs[e.Epoch]; !seen {
				m.epochs[e.Epoch] = e.Since
			}
		}
	}
	if len(executors) > 1 {
		m.doubles++
		m.log.Error("two instances act as executor at once", "executors", executors)
	}
}

// executorAfter returns the start of the first executor with an epoch
// above epoch, if one has been seen.
func (m *monitor) executorAfter(epoch int64) (time.Time, int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var best int64
	for e := range m.epochs {
		if e > epoch && (best == 0 || e < best) {
			best = e
		}
	}
	if best == 0 {
		return time.Time{}, 0, false
	}
	return m.epochs[best], best, true
}

func publishToken(url, queue string, gen int64) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	return ch.PublishWithContext(context.Background(), "", queue, false, false, amqp.Publishing{
		Headers: amqp.Table{"x-baton-token-gen": gen}, DeliveryMode: amqp.Persistent, Body: []byte(`{"injected":true}`)})
}

func queueReady(url, queue string) (int, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	return q.Messages, nil
}

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(discard{}, nil))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

var _ = errors.New
