package crud

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/batonhq/baton/internal/backoff"
	"github.com/batonhq/baton/store"
)

// ClientStore is what a Client needs from the store: deciding a request
// it gave up on, and reading the outcome of one the executor began.
type ClientStore interface {
	AbandonRequest(ctx context.Context, id string, now time.Time) (*store.Request, error)
	Request(ctx context.Context, id string) (*store.Request, error)
}

// ClientConfig configures a Client.
type ClientConfig struct {
	URL        string
	Queue      string // "<cluster>.crud"
	InstanceID string
	// Timeout is how long a request may wait for the executor (10s).
	Timeout        time.Duration
	Heartbeat      time.Duration // 5s
	ConnectTimeout time.Duration // 5s
	ReconnectMin   time.Duration // 100ms
	ReconnectMax   time.Duration // 10s
	Logger         *slog.Logger
}

// Client sends writes to the executor. It is safe for concurrent use.
type Client struct {
	cfg   ClientConfig
	store ClientStore
	log   *slog.Logger

	mu        sync.Mutex
	ch        *amqp.Channel // publishes requests and receives replies
	connected chan struct{} // closed while ch is usable
	pending   map[string]chan Reply
}

const replyQueue = "amq.rabbitmq.reply-to"

// NewClient returns a client; Run connects it.
func NewClient(cfg ClientConfig, st ClientStore) *Client {
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	cfg.Heartbeat = cmp.Or(cfg.Heartbeat, 5*time.Second)
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, 5*time.Second)
	cfg.ReconnectMin = cmp.Or(cfg.ReconnectMin, 100*time.Millisecond)
	cfg.ReconnectMax = cmp.Or(cfg.ReconnectMax, 10*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Client{cfg: cfg, store: st, log: cfg.Logger.With("component", "crud_client"),
		connected: make(chan struct{}), pending: map[string]chan Reply{}}
}

// Connected reports whether the client can send requests now.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch != nil
}

// Run keeps the client connected until ctx ends.
func (c *Client) Run(ctx context.Context) error {
	b := backoff.Backoff{Min: c.cfg.ReconnectMin, Max: c.cfg.ReconnectMax}
	for {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		d := b.Next()
		c.log.Warn("crud client disconnected; reconnecting", "error", err, "retry_in", d)
		if !backoff.Sleep(ctx, d) {
			return nil
		}
	}
}

func (c *Client) session(ctx context.Context) error {
	conn, err := dialAMQP(c.cfg.URL, "baton-crud-client-"+c.cfg.InstanceID, c.cfg.Heartbeat, c.cfg.ConnectTimeout)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("crud: channel: %w", err)
	}
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := declareQueue(ch, c.cfg.Queue); err != nil {
		return err
	}
	replies, err := ch.Consume(replyQueue, "", true, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("crud: consume replies: %w", err)
	}
	c.mu.Lock()
	c.ch = ch
	close(c.connected)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.ch = nil
		c.connected = make(chan struct{})
		c.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-closed:
			return fmt.Errorf("crud: connection closed: %v", err)
		case err := <-chClosed:
			return fmt.Errorf("crud: channel closed: %v", err)
		case d, ok := <-replies:
			if !ok {
				return errors.New("crud: reply consumer closed")
			}
			var r Reply
			if err := json.Unmarshal(d.Body, &r); err != nil {
				c.log.Warn("ignoring an unreadable reply", "error", err)
				continue
			}
			c.mu.Lock()
			w := c.pending[d.CorrelationId]
			delete(c.pending, d.CorrelationId)
			c.mu.Unlock()
			if w != nil {
				w <- r
			}
		}
	}
}

// Do sends req to the executor and returns its reply. It returns
// ErrNoExecutor when no executor applied the request in time (it then never
// will), and ErrUnknownOutcome when that cannot be decided.
func (c *Client) Do(ctx context.Context, req Request) (Reply, error) {
	req.ID = uuid.NewString()
	req.Origin = c.cfg.InstanceID
	req.SentAt = time.Now().UTC()
	req.Timeout = c.cfg.Timeout
	body, err := json.Marshal(req)
	if err != nil {
		return Reply{}, fmt.Errorf("crud: encode request: %w", err)
	}
	deadline := time.NewTimer(c.cfg.Timeout)
	defer deadline.Stop()
	wait := make(chan Reply, 1)

	if err := c.publish(ctx, deadline.C, req.ID, body, wait); err != nil {
		if !errors.Is(err, errTimedOut) {
			return Reply{}, err
		}
		return c.abandon(ctx, req.ID)
	}
	select {
	case r := <-wait:
		return r, nil
	case <-ctx.Done():
		c.forget(req.ID)
		return c.abandon(context.WithoutCancel(ctx), req.ID)
	case <-deadline.C:
		c.forget(req.ID)
		return c.abandon(ctx, req.ID)
	}
}

var errTimedOut = errors.New("crud: timed out before the request could be sent")

func (c *Client) publish(ctx context.Context, deadline <-chan time.Time, id string, body []byte, wait chan Reply) error {
	for {
		c.mu.Lock()
		ch, connected := c.ch, c.connected
		if ch != nil {
			c.pending[id] = wait
		}
		c.mu.Unlock()
		if ch != nil {
			err := ch.PublishWithContext(ctx, "", c.cfg.Queue, false, false, amqp.Publishing{
				ContentType:   "application/json",
				CorrelationId: id,
				ReplyTo:       replyQueue,
				MessageId:     id,
				Timestamp:     time.Now(),
				// The broker drops the request if nobody consumes it in
				// time; the executor also checks, and the store decides.
				Expiration: strconv.FormatInt(c.cfg.Timeout.Milliseconds(), 10),
				Body:       body,
			})
			if err == nil {
				return nil
			}
			c.forget(id)
			c.log.Warn("publishing a request failed; retrying", "error", err)
		}
		select {
		case <-ctx.Done():
			return errTimedOut
		case <-deadline:
			return errTimedOut
		case <-connected:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Client) forget(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// abandon decides a request the executor did not answer in time. If the
// executor began it first, abandon waits for and returns its outcome.
func (c *Client) abandon(ctx context.Context, id string) (Reply, error) {
	// Once begun, a write normally finishes within milliseconds; the wait
	// is bounded in case the executor died while applying it.
	ctx, cancel := context.WithTimeout(ctx, 2*c.cfg.Timeout+5*time.Second)
	defer cancel()
	rec, err := c.store.AbandonRequest(ctx, id, time.Now().UTC())
	if err == nil {
		return Reply{}, ErrNoExecutor
	}
	if !errors.Is(err, store.ErrExists) {
		return Reply{}, fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
	}
	// The executor began the request: its outcome is coming.
	for {
		if rec != nil && rec.State == store.RequestDone {
			var r Reply
			if err := json.Unmarshal(rec.Reply, &r); err != nil {
				return Reply{}, fmt.Errorf("crud: decode stored reply: %w", err)
			}
			return r, nil
		}
		select {
		case <-ctx.Done():
			return Reply{}, fmt.Errorf("%w: the executor began the request but its reply did not arrive", ErrUnknownOutcome)
		case <-time.After(100 * time.Millisecond):
		}
		if rec, err = c.store.Request(ctx, id); err != nil && !store.IsUnavailable(err) {
			return Reply{}, fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
		}
	}
}
