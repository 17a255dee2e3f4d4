package crud

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/token"
)

// Applier applies a decided request under a term: the executor.
type Applier interface {
	Apply(ctx context.Context, term *token.Term, req Request) Reply
}

// ServerStore is what a Server needs from the store.
type ServerStore interface {
	BeginRequest(ctx context.Context, f store.Fence, id string, now time.Time) (*store.Request, error)
	FinishRequest(ctx context.Context, f store.Fence, id string, reply []byte, now time.Time) error
}

// ServerConfig configures a Server.
type ServerConfig struct {
	URL            string
	Queue          string
	InstanceID     string
	Heartbeat      time.Duration // 5s
	ConnectTimeout time.Duration // 5s
	// Concurrency is how many requests are applied at once (64): concurrent
	// store writes share batches, so more in flight means fewer round trips
	// each. Requests for the same job are always applied one at a time, in
	// arrival order.
	Concurrency int
	Logger      *slog.Logger
}

// Server consumes write requests while this instance is the executor. It
// implements token.Leader: Lead starts consuming under a term, Stop stops.
type Server struct {
	cfg     ServerConfig
	store   ServerStore
	applier Applier
	log     *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewServer returns a server.
func NewServer(cfg ServerConfig, st ServerStore, a Applier) *Server {
	cfg.Heartbeat = cmp.Or(cfg.Heartbeat, 5*time.Second)
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, 5*time.Second)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 64)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, store: st, applier: a, log: cfg.Logger.With("component", "crud_server")}
}

// Lead starts consuming requests for the duration of term.
func (s *Server) Lead(term *token.Term) {
	ctx, cancel := context.WithCancel(term.Context())
	done := make(chan struct{})
	s.mu.Lock()
	s.cancel, s.done = cancel, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		s.serve(ctx, term)
	}()
}

// Stop stops consuming and waits for requests being applied. Unacked
// requests go back to the queue for the next executor.
func (s *Server) Stop(ctx context.Context) {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel, s.done = nil, nil
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// serve keeps a consumer running while the term lasts.
func (s *Server) serve(ctx context.Context, term *token.Term) {
	for ctx.Err() == nil {
		err := s.consume(ctx, term)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("crud consumer ended; restarting", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Server) consume(ctx context.Context, term *token.Term) error {
	conn, err := dialAMQP(s.cfg.URL, "baton-crud-server-"+s.cfg.InstanceID, s.cfg.Heartbeat, s.cfg.ConnectTimeout)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("crud: channel: %w", err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := declareQueue(ch, s.cfg.Queue); err != nil {
		return err
	}
	if err := ch.Qos(s.cfg.Concurrency*2, 0, false); err != nil {
		return fmt.Errorf("crud: qos: %w", err)
	}
	deliveries, err := ch.Consume(s.cfg.Queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("crud: consume: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, s.cfg.Concurrency)
	locks := newKeyedMutex()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-closed:
			return fmt.Errorf("crud: channel closed: %v", err)
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("crud: consumer cancelled")
			}
			var req Request
			if err := json.Unmarshal(d.Body, &req); err != nil || req.ID == "" {
				s.log.Warn("dropping an unreadable request", "error", err)
				_ = d.Ack(false)
				continue
			}
			unlock := locks.lock(req.Name) // taken in arrival order
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				unlock()
				return nil
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				defer unlock()
				s.handle(ctx, term, ch, d, req)
			}()
		}
	}
}

func (s *Server) handle(ctx context.Context, term *token.Term, ch *amqp.Channel, d amqp.Delivery, req Request) {
	log := s.log.With("request_id", req.ID, "op", req.Op, "job", req.Name)
	if req.Timeout > 0 && time.Since(req.SentAt) > req.Timeout {
		// Its caller has given up; applying it now would act behind its back.
		log.Info("dropping an expired request", "age", time.Since(req.SentAt))
		_ = d.Ack(false)
		return
	}
	if !term.Valid() {
		_ = d.Nack(false, true) // the next executor takes it
		return
	}
	rec, err := s.store.BeginRequest(ctx, term.Fence(), req.ID, time.Now().UTC())
	switch {
	case errors.Is(err, store.ErrExists):
		if rec.State == store.RequestDone {
			s.reply(ctx, ch, d, rec.Reply) // a redelivery of a request we answered
		} else {
			log.Info("request already decided; not applying it", "state", rec.State)
		}
		_ = d.Ack(false)
		return
	case errors.Is(err, store.ErrStaleEpoch):
		_ = d.Nack(false, true)
		return
	case err != nil:
		body, _ := json.Marshal(Failure(http.StatusServiceUnavailable, CodeStoreUnavailable, "",
			"the store is unavailable; the write was not applied"))
		s.reply(ctx, ch, d, body)
		_ = d.Ack(false)
		return
	}
	r := s.applier.Apply(ctx, term, req)
	r.Executor, r.Epoch = s.cfg.InstanceID, term.Epoch()
	body, err := json.Marshal(r)
	if err != nil {
		body, _ = json.Marshal(Failure(http.StatusInternalServerError, CodeInternal, "", err.Error()))
	}
	// The caller waiting for the reply gets it first; the record, which a
	// caller that timed out meanwhile reads, follows. Acked only after it:
	// a redelivery then finds the request done and replies again.
	s.reply(ctx, ch, d, body)
	if err := s.store.FinishRequest(context.WithoutCancel(ctx), term.Fence(), req.ID, body, time.Now().UTC()); err != nil {
		log.Warn("could not record the reply", "error", err)
	}
	_ = d.Ack(false)
}

func (s *Server) reply(ctx context.Context, ch *amqp.Channel, d amqp.Delivery, body []byte) {
	if d.ReplyTo == "" {
		return
	}
	err := ch.PublishWithContext(context.WithoutCancel(ctx), "", d.ReplyTo, false, false, amqp.Publishing{
		ContentType: "application/json", CorrelationId: d.CorrelationId, Body: body,
	})
	if err != nil {
		s.log.Warn("could not send a reply", "error", err)
	}
}

// keyedMutex serializes work per key, in the order lock is called.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func newKeyedMutex() *keyedMutex { return &keyedMutex{locks: map[string]*keyedEntry{}} }

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
