package token

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/batonhq/baton/store"
)

// WatchdogStatus is a snapshot of the watchdog.
type WatchdogStatus struct {
	LastCheck   time.Time `json:"last_check,omitzero"`
	LeaseLive   bool      `json:"lease_live"`
	StoreOK     bool      `json:"store_ok"`
	BrokerOK    bool      `json:"broker_ok"`
	QueueReady  int       `json:"queue_ready"`
	Reinserts   int64     `json:"reinserts"`  // tokens re-inserted after a loss
	Bootstraps  int64     `json:"bootstraps"` // first tokens of a new cluster
	LastProblem string    `json:"last_problem,omitempty"`
}

// Watchdog makes sure a token exists. It runs on every instance.
//
// The token is gone when no lease is live and the token queue is empty, seen
// on two consecutive checks: then nobody holds it (a holder takes the lease
// within moments of the old one expiring) and nobody can receive it. The
// watchdog then starts a new token generation with a compare-and-set on the
// lease, so that of several watchdogs racing exactly one wins, and publishes
// that token with a confirm. The first token of a new cluster is published
// the same way, without waiting for a second check.
type Watchdog struct {
	cfg   Config
	store LeaseStore
	obs   *Observer
	log   *slog.Logger

	conn *amqp.Connection
	ch   *amqp.Channel

	mu                    sync.Mutex
	status                WatchdogStatus
	reinserts, bootstraps atomic.Int64

	// suspect counts consecutive checks that found no live lease and an
	// empty queue, about the same lease state suspectOf. Suspicion only
	// builds up while the lease stays exactly the same: after another
	// watchdog's re-insert the lease has moved on and its token may still
	// be in flight.
	suspect   int
	suspectOf store.Lease

	// OnReinsert, if set, is called after each re-insert (for metrics).
	OnReinsert func()
}

// NewWatchdog returns a watchdog that also feeds obs with every lease it
// reads.
func NewWatchdog(cfg Config, st LeaseStore, obs *Observer) (*Watchdog, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Watchdog{cfg: cfg, store: st, obs: obs, log: cfg.Logger.With("component", "watchdog")}, nil
}

// Status returns a snapshot.
func (w *Watchdog) Status() WatchdogStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.status
	s.Reinserts, s.Bootstraps = w.reinserts.Load(), w.bootstraps.Load()
	return s
}

// Run checks every WatchdogInterval until ctx ends.
func (w *Watchdog) Run(ctx context.Context) error {
	defer w.closeBroker()
	t := time.NewTicker(w.cfg.WatchdogInterval)
	defer t.Stop()
	for {
		w.check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Observe reads the lease and feeds the observer more often than the
// watchdog checks, so that a standby knows how long the lease has been
// unchanged when it receives the token. It runs until ctx ends.
func (w *Watchdog) Observe(ctx context.Context) error {
	t := time.NewTicker(min(w.cfg.RenewInterval/2, 500*time.Millisecond))
	defer t.Stop()
	for {
		if l, err := w.store.Lease(ctx); err == nil {
			w.obs.Observe(l)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (w *Watchdog) setStatus(fn func(*WatchdogStatus)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fn(&w.status)
}

func (w *Watchdog) check(ctx context.Context) {
	w.setStatus(func(s *WatchdogStatus) { s.LastCheck = time.Now().UTC() })
	if err := w.store.EnsureLease(ctx); err != nil {
		w.problem(fmt.Errorf("store: %w", err), false, true)
		return
	}
	lease, err := w.store.Lease(ctx)
	if err != nil {
		w.problem(fmt.Errorf("store: %w", err), false, true)
		return
	}
	w.obs.Observe(lease)
	live := w.obs.Live(lease)
	w.setStatus(func(s *WatchdogStatus) { s.StoreOK, s.LeaseLive = true, live })
	if live {
		w.suspect = 0
		// Keep the broker connection fresh for when it is needed.
		if _, err := w.queueReady(); err != nil {
			w.problem(err, true, false)
		}
		return
	}
	ready, err := w.queueReady()
	if err != nil {
		// Without the broker's answer the token may well be waiting in the
		// queue; never re-insert on a guess.
		w.problem(err, true, false)
		return
	}
	w.setStatus(func(s *WatchdogStatus) { s.BrokerOK, s.QueueReady, s.LastProblem = true, ready, "" })
	if ready > 0 {
		w.suspect = 0
		return
	}
	if w.suspect == 0 || !sameLease(w.suspectOf, lease) {
		w.suspect, w.suspectOf = 0, lease
	}
	w.suspect++
	if lease.TokenGen != 0 && w.suspect < 2 {
		return
	}
	w.reinsert(ctx, lease)
}

func (w *Watchdog) reinsert(ctx context.Context, observed store.Lease) {
	nl, err := w.store.BumpTokenGen(ctx, observed)
	if errors.Is(err, store.ErrLeaseConflict) {
		w.suspect = 0 // somebody acted; look again next time
		return
	}
	if err != nil {
		w.problem(fmt.Errorf("store: %w", err), false, true)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, w.cfg.ConnectTimeout)
	defer cancel()
	if err := publish(pctx, w.ch, w.cfg.Queue, nl.TokenGen, w.cfg.InstanceID); err != nil {
		// The generation moved on but no token of it exists: the next
		// checks see that and try again with the next generation.
		w.problem(err, true, false)
		w.closeBroker()
		return
	}
	w.suspect = 0
	if observed.TokenGen == 0 {
		w.bootstraps.Add(1)
		w.log.Info("published the first token", "token_gen", nl.TokenGen)
	} else {
		w.reinserts.Add(1)
		if w.OnReinsert != nil {
			w.OnReinsert()
		}
		w.log.Warn("token was lost; re-inserted a new one", "token_gen", nl.TokenGen,
			"last_holder", observed.Holder, "last_epoch", observed.Epoch)
	}
}

// queueReady declares the token queue (re-creating it if it was deleted)
// and returns how many messages wait in it.
func (w *Watchdog) queueReady() (int, error) {
	if w.conn == nil || w.conn.IsClosed() || w.ch == nil || w.ch.IsClosed() {
		w.closeBroker()
		conn, err := dial(&w.cfg, "baton-watchdog-"+w.cfg.InstanceID)
		if err != nil {
			return 0, err
		}
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		if err != nil {
			closeConn(conn, time.Second)
			return 0, fmt.Errorf("token: watchdog channel: %w", err)
		}
		w.conn, w.ch = conn, ch
	}
	type result struct {
		q   amqp.Queue
		err error
	}
	done := make(chan result, 1)
	ch := w.ch
	go func() {
		q, err := ch.QueueDeclare(w.cfg.Queue, true, false, false, false, queueArgs())
		done <- result{q, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			w.closeBroker()
			return 0, fmt.Errorf("token: watchdog declare: %w", r.err)
		}
		return r.q.Messages, nil
	case <-time.After(w.cfg.HealthTimeout * 2):
		// Closing the connection unblocks the declare goroutine.
		w.closeBroker()
		<-done
		return 0, fmt.Errorf("token: watchdog: broker did not answer within %s", w.cfg.HealthTimeout*2)
	}
}

func (w *Watchdog) closeBroker() {
	if w.conn != nil {
		closeConn(w.conn, time.Second)
		_ = w.conn.Close()
	}
	w.conn, w.ch = nil, nil
}

func (w *Watchdog) problem(err error, broker, st bool) {
	w.setStatus(func(s *WatchdogStatus) {
		s.LastProblem = err.Error()
		if broker {
			s.BrokerOK = false
		}
		if st {
			s.StoreOK = false
		}
	})
	w.log.Debug("watchdog check incomplete", "error", err)
}

func sameLease(a, b store.Lease) bool {
	return a.Epoch == b.Epoch && a.Renewals == b.Renewals && a.TokenGen == b.TokenGen && a.Released == b.Released
}
