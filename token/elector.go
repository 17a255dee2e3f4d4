package token

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/batonhq/baton/internal/backoff"
	"github.com/batonhq/baton/store"
)

// LeaseStore is the part of the store the elector and watchdog use.
type LeaseStore interface {
	EnsureLease(ctx context.Context) error
	Lease(ctx context.Context) (store.Lease, error)
	AcquireLease(ctx context.Context, observed store.Lease, holder, datacenter string, tokenGen int64, now time.Time) (store.Lease, error)
	RenewLease(ctx context.Context, l store.Lease, watermark, now time.Time) (store.Lease, error)
	ReleaseLease(ctx context.Context, l store.Lease, watermark, now time.Time) error
	BumpTokenGen(ctx context.Context, observed store.Lease) (store.Lease, error)
	RotateTokenGen(ctx context.Context, l store.Lease) (store.Lease, error)
}

// Leader is driven by the elector: the executor.
type Leader interface {
	// Lead starts acting under term. It must return promptly and do slow
	// work (loading jobs) in the background, because the elector renews the
	// lease meanwhile. Everything it does must stop when term ends.
	Lead(term *Term)
	// Stop stops all firing of the current term and returns only when no
	// dispatch can start any more, or when ctx ends.
	Stop(ctx context.Context)
}

// Quiescer is a Leader that prepares a handover while its term is still
// valid: on shutdown the elector calls Quiesce, bounded by StopTimeout,
// before it ends the term. The executor sends there the ticks it claimed
// ahead of their time, which the next executor would find claimed.
type Quiescer interface {
	Quiesce(ctx context.Context)
}

// Preparer is a Leader that gets ready to lead while its instance holds the
// token but must wait for the previous lease to end: after a crash that is
// lease.holder_ttl, which the executor spends reading jobs. Prepare gets
// the lease being waited out and must return promptly. If the wait ends in
// leading, Lead is called before ctx ends; otherwise ctx ends with the wait.
type Preparer interface {
	Prepare(ctx context.Context, prev store.Lease)
}

// Roles reported by Status.
const (
	RoleExecutor     = "executor"
	RoleStandby      = "standby"
	RoleDisconnected = "disconnected"
)

// Status is a snapshot of the elector.
type Status struct {
	Role        string    `json:"role"`
	Connected   bool      `json:"connected"`
	Epoch       int64     `json:"epoch,omitempty"`
	Since       time.Time `json:"since,omitzero"`
	Rotations   int64     `json:"rotations"`
	StaleTokens int64     `json:"stale_tokens_removed"`
	StepDowns   int64     `json:"step_downs"`
	// SessionErrors counts broker sessions that ended with an error.
	SessionErrors int64  `json:"session_errors"`
	LastError     string `json:"last_error,omitempty"`
}

// Elector competes for the token and, while it holds the token and the lease,
// runs the Leader. Run it on every instance.
type Elector struct {
	cfg    Config
	store  LeaseStore
	leader Leader
	obs    *Observer
	log    *slog.Logger
	now    func() time.Time

	mu     sync.Mutex
	status Status

	rotations, staleTokens, stepDowns, renewFailures, sessionErrors atomic.Int64
	// OnLeadershipChange, if set, is called with true when a term starts and
	// false when it ends (for metrics).
	OnLeadershipChange func(leading bool)
}

// NewElector returns an elector. obs must be fed by a Watchdog (or another
// reader of the lease) on the same instance, so that a new holder knows how
// long the previous lease has been unchanged.
func NewElector(cfg Config, st LeaseStore, leader Leader, obs *Observer) (*Elector, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Elector{
		cfg: cfg, store: st, leader: leader, obs: obs, now: time.Now,
		log:    cfg.Logger.With("component", "elector"),
		status: Status{Role: RoleDisconnected},
	}, nil
}

// Status returns a snapshot.
func (e *Elector) Status() Status {
	e.mu.Lock()
	s := e.status
	e.mu.Unlock()
	s.Rotations, s.StaleTokens, s.StepDowns = e.rotations.Load(), e.staleTokens.Load(), e.stepDowns.Load()
	s.SessionErrors = e.sessionErrors.Load()
	return s
}

// RenewFailures counts renewals that did not reach the store.
func (e *Elector) RenewFailures() int64 { return e.renewFailures.Load() }

func (e *Elector) setStatus(fn func(*Status)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fn(&e.status)
}

// Run competes for the token until ctx ends, reconnecting with backoff after
// any broker failure. When ctx ends while leading it hands the token over
// gracefully before returning.
func (e *Elector) Run(ctx context.Context) error {
	b := backoff.Backoff{Min: e.cfg.ReconnectMin, Max: e.cfg.ReconnectMax}
	for {
		started := time.Now()
		err := e.session(ctx)
		e.setStatus(func(s *Status) {
			s.Role, s.Connected, s.Epoch, s.Since = RoleDisconnected, false, 0, time.Time{}
			if err != nil {
				s.LastError = err.Error()
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > time.Minute {
			b.Reset()
		}
		delay := b.Next()
		e.sessionErrors.Add(1)
		e.log.Warn("token session ended; reconnecting", "error", err, "retry_in", delay)
		if !backoff.Sleep(ctx, delay) {
			return nil
		}
	}
}

var (
	errDeliveriesClosed = errors.New("token: deliveries channel closed (consumer cancelled by the server)")
	// errNotConsuming: RabbitMQ 3.10 does not cancel the consumers of a
	// quorum queue that is deleted and at once declared again; they stay
	// registered on their channel but the new queue does not know them
	// (measured: consumer count 0, no basic.cancel). Only a new
	// subscription reaches the new queue.
	errNotConsuming = errors.New("token: the token queue has no consumer although this session consumes it (queue re-created)")
	// errStuck: no instance has led for much longer than a takeover takes.
	// Such consumers can also swallow the tokens sent to them; every
	// standby subscribing afresh clears them.
	errStuck        = errors.New("token: no executor for too long; subscribing again")
	errLeaseExpired = errors.New("token: lease not renewed in time")
	errBrokerSilent = errors.New("token: the broker has not confirmed the token's channel in time")
	errShutdown     = errors.New("token: shutting down")
)

// session is one broker connection's life.
type session struct {
	e    *Elector
	conn *amqp.Connection
	ch   *amqp.Channel // consumes the token
	// chCalls serializes requests on ch after setup: amqp091 matches a
	// channel's replies to its requests by order, so two at once may swap.
	chCalls    sync.Mutex
	pub        *amqp.Channel // confirm mode: token publishes and health checks
	deliveries <-chan amqp.Delivery
	lost       chan error
	tag        string
	wg         sync.WaitGroup // notify forwarders and timed broker calls

	held    *amqp.Delivery
	heldGen int64
	// heldSince is when a standby received the token it holds, and
	// requeued whether the broker had delivered it before (see holderGone).
	heldSince time.Time
	requeued  bool

	healthPending atomic.Bool // a broker health check has not answered yet
	notLiveSince  time.Time   // first presence check that saw no live lease
}

func (e *Elector) session(ctx context.Context) error {
	var id [4]byte
	_, _ = rand.Read(id[:])
	s := &session{e: e, lost: make(chan error, 1), tag: e.cfg.InstanceID + "-" + hex.EncodeToString(id[:])}
	defer s.close()
	if err := s.open(); err != nil {
		return err
	}
	e.setStatus(func(st *Status) { st.Role, st.Connected = RoleStandby, true })
	e.log.Info("consuming token queue", "queue", e.cfg.Queue, "consumer", s.tag)
	presence := time.NewTicker(e.cfg.WatchdogInterval)
	defer presence.Stop()
	for {
		select {
		case <-ctx.Done():
			s.giveBack()
			return nil
		case err := <-s.lost:
			return err
		case <-presence.C:
			if err := s.checkPresence(); err != nil {
				return err
			}
			if err := s.checkStuck(); err != nil {
				return err
			}
		case d, ok := <-s.deliveries:
			if !ok {
				return errDeliveriesClosed
			}
			if err := s.onToken(ctx, d); err != nil {
				return err
			}
		}
	}
}

func (s *session) open() error {
	cfg := &s.e.cfg
	conn, err := dial(cfg, "baton-token-"+cfg.InstanceID)
	if err != nil {
		return err
	}
	s.conn = conn
	s.watch(conn.NotifyClose(make(chan *amqp.Error, 1)), "connection closed")
	setup := func() (struct{}, error) {
		if s.ch, err = conn.Channel(); err != nil {
			return struct{}{}, err
		}
		if s.pub, err = conn.Channel(); err != nil {
			return struct{}{}, err
		}
		if err = s.pub.Confirm(false); err != nil {
			return struct{}{}, err
		}
		if err = declare(s.ch, cfg.Queue); err != nil {
			return struct{}{}, err
		}
		// Prefetch 1: the holder of one unacked delivery receives nothing
		// else, so the token cannot pile up on one consumer.
		if err = s.ch.Qos(1, 0, false); err != nil {
			return struct{}{}, err
		}
		s.watch(s.ch.NotifyClose(make(chan *amqp.Error, 1)), "token channel closed")
		s.watch(s.pub.NotifyClose(make(chan *amqp.Error, 1)), "publish channel closed")
		cancels := s.ch.NotifyCancel(make(chan string, 1))
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for tag := range cancels {
				s.signal(fmt.Errorf("token: consumer %s cancelled by the server", tag))
			}
		}()
		s.deliveries, err = s.ch.Consume(cfg.Queue, s.tag, false, false, false, false, nil)
		return struct{}{}, err
	}
	if _, err := s.call(cfg.ConnectTimeout, setup); err != nil {
		return fmt.Errorf("token: set up consumer: %w", err)
	}
	return nil
}

// watch forwards a close notification as a loss of the session. amqp091
// closes the notify channel when the object closes, ending the goroutine.
func (s *session) watch(c chan *amqp.Error, what string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for err := range c {
			s.signal(fmt.Errorf("token: %s: %w", what, err))
		}
		s.signal(fmt.Errorf("token: %s", what))
	}()
}

func (s *session) signal(err error) {
	select {
	case s.lost <- err:
	default:
	}
}

// call runs a broker call that may block forever on a dead link, giving up
// after d. The call's goroutine is waited for in close, after the connection
// is closed, which unblocks it.
func (s *session) call(d time.Duration, fn func() (struct{}, error)) (struct{}, error) {
	type result struct{ err error }
	done := make(chan result, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_, err := fn()
		done <- result{err}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-done:
		return struct{}{}, r.err
	case <-t.C:
		return struct{}{}, fmt.Errorf("token: broker did not answer within %s", d)
	}
}

func (s *session) close() {
	closeConn(s.conn, s.e.cfg.HealthTimeout)
	if s.conn != nil {
		// A close handshake on a dead link cannot complete; make sure the
		// socket is gone so every blocked call returns.
		_ = s.conn.Close()
	}
	s.wg.Wait()
}

// onToken handles a delivery while not leading.
func (s *session) onToken(ctx context.Context, d amqp.Delivery) error {
	e := s.e
	gen, err := generation(d)
	if err != nil {
		e.log.Warn("removing a message that is not a token from the token queue", "message_id", d.MessageId)
		_ = d.Ack(false)
		e.staleTokens.Add(1)
		return nil
	}
	var lease store.Lease
	for {
		lease, err = e.store.Lease(ctx)
		if err == nil {
			break
		}
		// Without the store nobody can lead; keep the token and retry.
		e.log.Warn("cannot read the lease while holding the token", "error", err)
		select {
		case <-ctx.Done():
			s.held, s.heldGen = &d, gen
			s.giveBack()
			return nil
		case err := <-s.lost:
			return err
		case <-time.After(e.cfg.RenewInterval):
		}
	}
	e.obs.Observe(lease)
	if gen != lease.TokenGen {
		e.log.Info("removing a stale token", "token_gen", gen, "current_gen", lease.TokenGen)
		_ = d.Ack(false)
		e.staleTokens.Add(1)
		return nil
	}
	s.held, s.heldGen = &d, gen
	s.heldSince, s.requeued = e.now(), d.Redelivered
	return s.contend(ctx, lease)
}

// contend holds the real token and waits until the previous lease is
// released or expired, or its holder is gone, then takes it.
func (s *session) contend(ctx context.Context, lease store.Lease) error {
	e := s.e
	poll := time.NewTicker(min(e.cfg.RenewInterval/4, 250*time.Millisecond, e.cfg.HolderTTL/8))
	defer poll.Stop()
	logged := false
	endPrepare := func() {}
	defer func() { endPrepare() }()
	for {
		e.obs.Observe(lease)
		if lease.TokenGen != s.heldGen {
			e.log.Info("held token became stale while waiting", "token_gen", s.heldGen, "current_gen", lease.TokenGen)
			_ = s.held.Ack(false)
			s.held = nil
			e.staleTokens.Add(1)
			return nil
		}
		if !lease.Held() || e.obs.Expired(lease) || s.holderGone() {
			start := e.now()
			nl, err := e.store.AcquireLease(ctx, lease, e.cfg.InstanceID, e.cfg.Datacenter, s.heldGen, time.Now().UTC())
			if err == nil {
				return s.lead(ctx, nl, start)
			}
			if !errors.Is(err, store.ErrLeaseConflict) {
				e.log.Warn("acquiring the lease failed", "error", err)
			}
		} else if !logged {
			_, _, unchanged := e.obs.Last()
			wait := e.cfg.LeaseTTL - unchanged
			if s.requeued {
				wait = min(wait, s.holderWait())
			}
			e.log.Info("holding the token; waiting for the previous executor to stop",
				"holder", lease.Holder, "epoch", lease.Epoch, "requeued", s.requeued, "wait", wait)
			logged = true
			if p, ok := e.leader.(Preparer); ok {
				pctx, cancel := context.WithCancel(ctx)
				endPrepare = cancel
				p.Prepare(pctx, lease)
			}
		}
		select {
		case <-ctx.Done():
			s.giveBack()
			return nil
		case err := <-s.lost:
			return err
		case <-poll.C:
		}
		if l, err := e.store.Lease(ctx); err == nil {
			lease = l
		}
	}
}

// holderGone reports whether the lease's holder has stopped acting although
// its lease has not expired: the token this standby holds came back from the
// broker, at least HolderTTL ago, and the lease has not changed for as long.
//
// Why that suffices: the token queue has a single active consumer, so the
// broker delivers to this standby only once the holder's consumer is gone,
// and it requeues the holder's unacked token only after closing its channel
// (a crash, a dead connection, consumer_timeout). A holder acts only within
// HolderTTL minus a margin of the start of a round trip that the broker
// answered on that channel (see confirm), so its last such round trip began
// before the requeue, and it has stopped by now. The unchanged lease covers
// the one case without a closed channel: RabbitMQ 3.10 may leave a deleted
// queue's consumer registered, deaf, on a live channel; its holder, if alive,
// keeps renewing.
func (s *session) holderGone() bool {
	return s.requeued && s.holderWait() <= 0
}

// holderWait is how much longer the held token and the lease must stay
// unmoved before holderGone may report the holder gone.
func (s *session) holderWait() time.Duration {
	_, _, unchanged := s.e.obs.Last()
	return s.e.cfg.HolderTTL - min(unchanged, s.e.now().Sub(s.heldSince))
}

// lead runs one term. It returns nil after a graceful hand-over, or the
// reason leadership was lost.
func (s *session) lead(ctx context.Context, lease store.Lease, acquiredAt time.Time) error {
	e := s.e
	cfg := &e.cfg
	// The broker deadline starts from the acquisition too: a successor
	// judges holderGone from when it saw this epoch appear, after that.
	term := newTerm(context.Background(), lease, acquiredAt.Add(cfg.LeaseTTL-cfg.safetyMargin()),
		acquiredAt.Add(cfg.HolderTTL-cfg.holderMargin()), e.now)
	var confirming sync.WaitGroup
	defer confirming.Wait()
	confirming.Add(1)
	go func() { defer confirming.Done(); s.confirm(term) }()
	e.setStatus(func(st *Status) { st.Role, st.Epoch, st.Since = RoleExecutor, lease.Epoch, lease.Since })
	e.log.Info("became executor", "epoch", lease.Epoch, "token_gen", lease.TokenGen, "watermark", lease.Watermark)
	if e.OnLeadershipChange != nil {
		e.OnLeadershipChange(true)
	}
	e.leader.Lead(term)

	renew := time.NewTicker(cfg.RenewInterval)
	defer renew.Stop()
	rotate := time.NewTimer(cfg.RotateInterval)
	defer rotate.Stop()
	expiry := time.NewTimer(time.Until(term.Deadline()))
	defer expiry.Stop()
	var lastDupCheck time.Time

	for {
		select {
		case <-ctx.Done():
			s.resign(term, &lease)
			return nil
		case err := <-s.lost:
			s.stepDown(term, &lease, err, true)
			return err
		case d, ok := <-s.deliveries:
			if !ok {
				s.stepDown(term, &lease, errDeliveriesClosed, true)
				return errDeliveriesClosed
			}
			// After a rotation the fresh token arrives, possibly behind
			// stale or duplicate ones that are acked away.
			if gen, err := generation(d); err == nil && gen == lease.TokenGen && s.held == nil {
				s.held, s.heldGen = &d, gen
			} else {
				_ = d.Ack(false)
				e.staleTokens.Add(1)
				e.log.Info("removed a stale or duplicate token while leading", "token_gen", gen, "current_gen", lease.TokenGen)
			}
		case <-renew.C:
			ready, err := s.renew(ctx, term, &lease)
			if err != nil {
				s.stepDown(term, &lease, err, !errors.Is(err, store.ErrStaleEpoch))
				return err
			}
			expiry.Reset(time.Until(term.Deadline()))
			// A message waiting in the queue while we hold the real token is
			// a duplicate; a rotation makes it stale and drains it.
			if ready > 0 && s.held != nil && time.Since(lastDupCheck) >= cfg.WatchdogInterval {
				lastDupCheck = time.Now()
				e.log.Warn("duplicate token detected in the queue; rotating", "ready", ready)
				if err := s.rotate(ctx, term, &lease); err != nil {
					s.stepDown(term, &lease, err, !errors.Is(err, store.ErrStaleEpoch))
					return err
				}
			}
		case <-expiry.C:
			if err := term.lapsed(); err != nil {
				s.stepDown(term, &lease, err, true)
				return err
			}
			expiry.Reset(time.Until(term.Deadline()))
		case <-rotate.C:
			if err := s.rotate(ctx, term, &lease); err != nil {
				s.stepDown(term, &lease, err, !errors.Is(err, store.ErrStaleEpoch))
				return err
			}
			rotate.Reset(cfg.RotateInterval)
		}
	}
}

// renew checks the broker channel, then renews the lease. A renewal that
// cannot reach the store is not fatal by itself: the term's deadline lapses
// if it keeps failing. It returns the number of messages waiting in the
// token queue.
func (s *session) renew(ctx context.Context, term *Term, lease *store.Lease) (ready int, err error) {
	e := s.e
	start := e.now()
	// A renewal never revives a term whose deadline passed: by then a
	// successor may have observed the lease unchanged for a full TTL.
	if !term.Valid() {
		return 0, errLeaseExpired
	}
	// A slow answer under load is not a lost broker: skip this renewal and
	// let the term's deadline decide. A dead channel or connection reaches
	// the session through s.lost instead. Only one check is in flight: the
	// channel serialises calls, so a second one would only queue behind it.
	if !s.healthPending.CompareAndSwap(false, true) {
		e.renewFailures.Add(1)
		e.log.Warn("broker health check still pending; lease not renewed", "valid_for", time.Until(term.Deadline()))
		return 0, nil
	}
	var messages atomic.Int64 // written by the call even after a timeout
	if _, err := s.call(e.cfg.HealthTimeout, func() (struct{}, error) {
		defer s.healthPending.Store(false)
		q, err := s.pub.QueueDeclarePassive(e.cfg.Queue, true, false, false, false, nil)
		messages.Store(int64(q.Messages))
		if err == nil && q.Consumers == 0 {
			err = errNotConsuming
		}
		return struct{}{}, err
	}); err != nil {
		if errors.Is(err, errNotConsuming) {
			return 0, err
		}
		var amqpErr *amqp.Error
		if errors.As(err, &amqpErr) {
			// The broker answered with an error (queue deleted, channel
			// closed): leadership is in doubt now.
			return 0, fmt.Errorf("token: broker health check failed: %w", err)
		}
		e.renewFailures.Add(1)
		e.log.Warn("broker health check failed; lease not renewed", "error", err, "valid_for", time.Until(term.Deadline()))
		return 0, nil
	}
	ready = int(messages.Load())
	// The renewal may use all the time the term has left: a store that is
	// merely slow during a burst must not end a term that is still valid.
	// Shutdown does not cut a renewal short: an insert whose answer is lost
	// still lands, and the release that follows must know about it.
	rctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), term.Deadline())
	defer cancel()
	nl, err := e.store.RenewLease(rctx, *lease, term.Watermark(), time.Now().UTC())
	if err != nil {
		if errors.Is(err, store.ErrStaleEpoch) {
			return 0, err
		}
		e.renewFailures.Add(1)
		e.log.Warn("lease renewal failed", "error", err, "valid_for", time.Until(term.Deadline()))
		return ready, nil
	}
	*lease = nl
	term.extend(start.Add(e.cfg.LeaseTTL - e.cfg.safetyMargin()))
	return ready, nil
}

// confirm keeps the term's broker deadline moving while the broker answers
// on the channel that holds the token. A passive declare is a round trip the
// broker answers only while the channel is open, that is while the token is
// still this consumer's. One round trip is in flight at a time; an answer
// that never comes leaves the deadline to lapse. It returns when the term
// ends.
func (s *session) confirm(term *Term) {
	cfg := &s.e.cfg
	tick := time.NewTicker(cfg.confirmInterval())
	defer tick.Stop()
	for {
		start := s.e.now()
		answer := make(chan error, 1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.chCalls.Lock()
			_, err := s.ch.QueueDeclarePassive(cfg.Queue, true, false, false, false, nil)
			s.chCalls.Unlock()
			answer <- err
		}()
		select {
		case <-term.Done():
			return
		case err := <-answer:
			if err != nil {
				// The broker closed the channel (its queue is gone, say):
				// the token is no longer ours.
				s.signal(fmt.Errorf("token: confirm the token's channel: %w", err))
				return
			}
			term.confirm(start.Add(cfg.HolderTTL - cfg.holderMargin()))
		}
		select {
		case <-term.Done():
			return
		case <-tick.C:
		}
	}
}

// checkPresence asks the broker whether the token queue still has a
// consumer. A standby is always one of them; with single active consumer the
// broker counts only the active one, so zero means that this subscription,
// like every other, is attached to a queue that no longer exists. A slow
// answer proves nothing and is ignored; a closed channel reaches the session
// through s.lost.
func (s *session) checkPresence() error {
	if !s.healthPending.CompareAndSwap(false, true) {
		return nil
	}
	var consumers atomic.Int64
	consumers.Store(-1)
	_, err := s.call(s.e.cfg.HealthTimeout, func() (struct{}, error) {
		defer s.healthPending.Store(false)
		q, err := s.pub.QueueDeclarePassive(s.e.cfg.Queue, true, false, false, false, nil)
		if err == nil {
			consumers.Store(int64(q.Consumers))
		}
		return struct{}{}, err
	})
	var amqpErr *amqp.Error
	switch {
	case errors.As(err, &amqpErr):
		return fmt.Errorf("token: queue check: %w", err)
	case consumers.Load() == 0:
		return errNotConsuming
	}
	return nil
}

// checkStuck ends a standby's session once no lease has been live for
// StuckAfter, counted from when this session first saw it so.
func (s *session) checkStuck() error {
	l, ok, _ := s.e.obs.Last()
	if !ok || s.e.obs.Live(l) {
		s.notLiveSince = time.Time{}
		return nil
	}
	if s.notLiveSince.IsZero() {
		s.notLiveSince = time.Now()
	}
	if time.Since(s.notLiveSince) > s.e.cfg.StuckAfter {
		return errStuck
	}
	return nil
}

// rotate replaces the held token with a fresh one so that the broker's
// consumer_timeout never fires: new generation in the store, publish it
// (confirmed), then ack the old delivery. Single active consumer delivers the
// fresh token back to this consumer, so leadership does not move. Any other
// token in the queue is now stale and is acked away on arrival.
func (s *session) rotate(ctx context.Context, term *Term, lease *store.Lease) error {
	e := s.e
	rctx, cancel := context.WithTimeout(ctx, e.cfg.LeaseTTL/2)
	defer cancel()
	nl, err := e.store.RotateTokenGen(rctx, *lease)
	if err != nil {
		if errors.Is(err, store.ErrStaleEpoch) {
			return err
		}
		e.log.Warn("token rotation postponed; retrying at the next renewal", "error", err)
		return nil
	}
	*lease = nl
	if _, err := s.call(e.cfg.HealthTimeout*2, func() (struct{}, error) {
		return struct{}{}, publish(rctx, s.pub, e.cfg.Queue, nl.TokenGen, e.cfg.InstanceID)
	}); err != nil {
		return fmt.Errorf("token: publish rotated token: %w", err)
	}
	if s.held != nil {
		if err := s.held.Ack(false); err != nil {
			return fmt.Errorf("token: ack rotated-out token: %w", err)
		}
		s.held = nil
	}
	e.rotations.Add(1)
	e.log.Debug("token rotated", "token_gen", nl.TokenGen)
	return nil
}

// stepDown ends the term after leadership was lost or put in doubt: stop
// firing first, then, if the store still recognises us, release the lease
// so the next holder need not wait out the TTL.
func (s *session) stepDown(term *Term, lease *store.Lease, cause error, release bool) {
	e := s.e
	term.end(cause)
	// The term is over from here on, whatever stopping still takes: say so.
	e.setStatus(func(st *Status) { st.Role, st.Epoch, st.Since = RoleStandby, 0, time.Time{} })
	e.stepDowns.Add(1)
	e.log.Warn("stepping down as executor", "epoch", lease.Epoch, "reason", cause)
	stopCtx, cancel := context.WithTimeout(context.Background(), e.cfg.StopTimeout)
	e.leader.Stop(stopCtx)
	cancel()
	if release {
		if err := s.release(term, lease); err != nil {
			e.log.Info("could not release the lease; it will expire", "error", err)
		}
	}
	if e.OnLeadershipChange != nil {
		e.OnLeadershipChange(false)
	}
}

// resign hands leadership over on shutdown, in the order that keeps one
// executor at a time and makes the next one start at once: send what was
// claimed (Quiescer), stop firing, release the lease, cancel the consumer,
// nack the token with requeue.
func (s *session) resign(term *Term, lease *store.Lease) {
	e := s.e
	start := time.Now()
	if q, ok := e.leader.(Quiescer); ok && term.Valid() {
		qctx, cancel := context.WithTimeout(context.Background(), e.cfg.StopTimeout)
		q.Quiesce(qctx)
		cancel()
	}
	term.end(errShutdown)
	e.setStatus(func(st *Status) { st.Role, st.Epoch, st.Since = RoleStandby, 0, time.Time{} })
	stopCtx, cancel := context.WithTimeout(context.Background(), e.cfg.StopTimeout)
	e.leader.Stop(stopCtx)
	cancel()
	if err := s.release(term, lease); err != nil {
		e.log.Warn("could not release the lease on shutdown; the next executor waits for it to expire", "error", err)
	}
	s.giveBack()
	if e.OnLeadershipChange != nil {
		e.OnLeadershipChange(false)
	}
	e.log.Info("handed the token over", "epoch", lease.Epoch, "took", time.Since(start))
}

// release marks the lease released. A renewal whose answer was lost may
// have landed, leaving our copy one slot behind: if the store still shows
// this term, unreleased, release that.
func (s *session) release(term *Term, lease *store.Lease) error {
	e := s.e
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.LeaseTTL/2)
	defer cancel()
	err := e.store.ReleaseLease(ctx, *lease, term.Watermark(), time.Now().UTC())
	if !errors.Is(err, store.ErrStaleEpoch) {
		return err
	}
	cur, rerr := e.store.Lease(ctx)
	if rerr != nil || cur.Epoch != lease.Epoch || cur.Holder != lease.Holder || cur.Released {
		return err
	}
	return e.store.ReleaseLease(ctx, cur, term.Watermark(), time.Now().UTC())
}

// giveBack returns a held token to the queue: cancel first, because a nack
// without cancel would hand it straight back to this consumer.
func (s *session) giveBack() {
	if s.held == nil {
		return
	}
	_, _ = s.call(s.e.cfg.HealthTimeout, func() (struct{}, error) {
		s.chCalls.Lock()
		defer s.chCalls.Unlock()
		return struct{}{}, s.ch.Cancel(s.tag, false)
	})
	_ = s.held.Nack(false, true)
	s.held = nil
}
