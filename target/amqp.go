package target

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/batonhq/baton/internal/backoff"
	"github.com/batonhq/baton/job"
)

const (
	amqpDialTimeout  = 5 * time.Second // TCP, TLS and AMQP handshake
	amqpCloseTimeout = 2 * time.Second
	// After a failed connect, amqp fires fail at once, without dialing,
	// for a jittered delay between these, so that a burst of fires during a
	// broker outage does not queue up behind one dial timeout after another.
	amqpRetryMin = 200 * time.Millisecond
	amqpRetryMax = 5 * time.Second
	// exchangeRecheck is how long an exchange checked to exist is trusted.
	exchangeRecheck = time.Minute
	// defaultContentType is a message's content type unless the job sets one.
	defaultContentType = "application/octet-stream"
)

// amqpSender publishes through one long-lived connection and one channel in
// confirm mode, shared by every fire: deferred confirms let many fires
// publish and wait for their confirms concurrently on the same channel.
//
// There is no automatic recovery. When the connection or the channel
// closes, the next fire replaces both. After a failed connect, fires fail
// fast until the next connect attempt is due.
type amqpSender struct {
	url    string // holds the password: never logged
	broker string // url with the password redacted, for logs and errors
	log    *slog.Logger

	// cur is the live connection, read without the lock on the hot path.
	cur atomic.Pointer[amqpConn]

	// lock serializes connecting and closing. It is a channel so that a
	// fire can give up waiting for it when its context ends.
	lock    chan struct{}
	closed  bool            // guarded by lock
	bo      backoff.Backoff // guarded by lock
	retryAt time.Time       // guarded by lock: no dial before
	lastErr error           // guarded by lock: why the last dial failed

	goMu    sync.Mutex // orders wg.Add before wg.Wait
	stopped bool       // guarded by goMu
	wg      sync.WaitGroup
}

// amqpConn is one connection with its publishing channel.
type amqpConn struct {
	conn *amqp.Connection
	ch   *amqp.Channel

	chErr    atomic.Pointer[amqp.Error] // why ch closed, once it has
	chClosed chan struct{}              // closed after chErr is set
	blocked  atomic.Pointer[string]     // the reason, while the broker blocks publishers

	mu        sync.Mutex
	exchanges map[string]time.Time // exchanges found to exist, and when
	probes    map[string]*probe    // exchange checks in flight
}

// probe is one check that an exchange exists, shared by the fires that
// wait for it.
type probe struct {
	done chan struct{}
	err  error // set before done is closed
}

func newAMQPSender(rawURL string, log *slog.Logger) (*amqpSender, error) {
	a := &amqpSender{
		url:  rawURL,
		log:  log,
		lock: make(chan struct{}, 1),
		bo:   backoff.Backoff{Min: amqpRetryMin, Max: amqpRetryMax},
	}
	if rawURL == "" {
		return a, nil
	}
	if _, err := amqp.ParseURI(rawURL); err != nil {
		// A url.Error quotes the whole URL, password included.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			return nil, fmt.Errorf("target: AMQPURL cannot be parsed (percent-encode reserved characters in the user and password): %w", ue.Err)
		}
		return nil, fmt.Errorf("target: AMQPURL: %w", err)
	}
	a.broker = redact(rawURL)
	return a, nil
}

// redact returns u without its password.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable url)"
	}
	return p.Redacted()
}

func (a *amqpSender) send(ctx context.Context, f *Fire, attempt int, allow func() error) outcome {
	t := f.Job.Target.AMQP
	switch {
	case t == nil:
		return failure(errors.New("target: the amqp target has no amqp block"))
	case a.url == "":
		return failure(ErrNoBroker)
	}
	c, err := a.conn(ctx)
	if err != nil {
		return outcome{err: err}
	}
	if err := a.checkExchange(ctx, c, t.Exchange); err != nil {
		return outcome{err: err}
	}
	if reason := c.blocked.Load(); reason != nil {
		// A publish now would stall in the socket past the attempt's
		// timeout, where no context reaches it.
		return outcome{err: fmt.Errorf("the broker is blocking publishers: %s", *reason)}
	}
	msg := publishing(t, f, attempt)
	if err := allow(); err != nil {
		return outcome{refused: err}
	}
	// mandatory is false: the broker confirms a message that no queue
	// receives and drops it (or hands it to the exchange's alternate
	// exchange). Success means the broker took the message, not that a
	// consumer will see it.
	conf, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, t.Exchange, t.RoutingKey, false, false, msg)
	switch {
	case err != nil:
		return outcome{err: fmt.Errorf("publish: %w", err)}
	case conf == nil: // only without confirm mode, which ch always has
		return outcome{err: errors.New("publish: the channel is not in confirm mode")}
	}
	ok, err := conf.WaitContext(ctx)
	switch {
	case err != nil:
		return outcome{err: fmt.Errorf("no publisher confirm: %w", err)}
	case !ok:
		return outcome{err: c.nackError(ctx)}
	}
	return outcome{confirmed: true}
}

// publishing is the message of one attempt: the job's headers with the
// fire's identification on top, persistent, with the fire id as message id
// so that consumers can deduplicate retries.
func publishing(t *job.AMQPTarget, f *Fire, attempt int) amqp.Publishing {
	id := identify(f, attempt)
	headers := make(amqp.Table, len(t.Headers)+len(id))
	contentType := defaultContentType
	for k, v := range t.Headers {
		if strings.EqualFold(k, "Content-Type") {
			contentType = v // a message property, not a header
			continue
		}
		headers[k] = v
	}
	for _, kv := range id {
		headers[kv.header] = kv.value
	}
	return amqp.Publishing{
		Headers:      headers,
		ContentType:  contentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    f.FireID,
		Timestamp:    time.Now(),
		Body:         []byte(t.Body),
	}
}

// nackError explains a negative confirm. The library nacks every pending
// publish when the channel closes, so a nack on a closed channel is the
// channel's failure, not the broker rejecting this message.
func (c *amqpConn) nackError(ctx context.Context) error {
	if !c.ch.IsClosed() {
		return errors.New("the broker rejected the message (basic.nack)")
	}
	select {
	case <-c.chClosed: // the reason is recorded
	case <-ctx.Done():
	}
	if e := c.chErr.Load(); e != nil {
		return fmt.Errorf("the channel closed before the broker confirmed: %w", e)
	}
	return errors.New("the channel closed before the broker confirmed")
}

func (c *amqpConn) usable() bool { return !c.conn.IsClosed() && !c.ch.IsClosed() }

// conn returns the live connection, connecting if there is none.
func (a *amqpSender) conn(ctx context.Context) (*amqpConn, error) {
	if c := a.cur.Load(); c != nil && c.usable() {
		return c, nil
	}
	select {
	case a.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting to connect to the broker: %w", ctx.Err())
	}
	defer func() { <-a.lock }()
	if a.closed {
		return nil, ErrClosed
	}
	if c := a.cur.Load(); c != nil {
		if c.usable() {
			return c, nil // another fire reconnected while this one waited
		}
		// The channel can die alone (a channel error); start afresh.
		a.cur.Store(nil)
		_ = c.conn.CloseDeadline(time.Now().Add(amqpCloseTimeout))
	}
	if wait := time.Until(a.retryAt); wait > 0 {
		return nil, fmt.Errorf("the broker is unavailable, next connect attempt in %s: %w", wait.Round(time.Millisecond), a.lastErr)
	}
	c, err := a.dial()
	if err != nil {
		a.lastErr, a.retryAt = err, time.Now().Add(a.bo.Next())
		a.log.Warn("cannot connect to the broker for amqp targets", "broker", a.broker, "error", err)
		return nil, err
	}
	a.bo.Reset()
	a.cur.Store(c)
	a.log.Info("connected to the broker for amqp targets", "broker", a.broker)
	return c, nil
}

// dial opens a connection and its confirm channel, and starts the goroutine
// that watches them. It never enables the library's automatic recovery:
// reconnecting is conn's job, on demand.
func (a *amqpSender) dial() (*amqpConn, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("baton-targets")
	conn, err := amqp.DialConfig(a.url, amqp.Config{Dial: amqp.DefaultDial(amqpDialTimeout), Properties: props})
	if err != nil {
		return nil, fmt.Errorf("connect to the broker %s: %w", a.broker, err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		_ = conn.CloseDeadline(time.Now().Add(amqpCloseTimeout))
		return nil, fmt.Errorf("open a confirm channel on %s: %w", a.broker, err)
	}
	c := &amqpConn{conn: conn, ch: ch, chClosed: make(chan struct{}),
		exchanges: map[string]time.Time{}, probes: map[string]*probe{}}
	// Buffered and always drained: the library must never block on them.
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 1))
	if !a.goFunc(func() { a.watch(c, connClosed, chClosed, blocks) }) {
		_ = conn.CloseDeadline(time.Now().Add(amqpCloseTimeout))
		return nil, ErrClosed
	}
	return c, nil
}

// watch follows c's notifications until the library closes them all, which
// it does when the connection ends.
func (a *amqpSender) watch(c *amqpConn, connClosed, chClosed <-chan *amqp.Error, blocks <-chan amqp.Blocking) {
	for connClosed != nil || chClosed != nil || blocks != nil {
		select {
		case e, ok := <-connClosed:
			if !ok {
				connClosed = nil
				continue
			}
			a.log.Warn("lost the broker connection for amqp targets; reconnecting on the next fire", "broker", a.broker, "error", e)
		case e, ok := <-chClosed:
			if !ok {
				chClosed = nil
				close(c.chClosed)
				continue
			}
			c.chErr.Store(e)
			if !c.conn.IsClosed() {
				a.log.Warn("the broker closed the amqp publishing channel; reopening on the next fire", "broker", a.broker, "error", e)
			}
		case b, ok := <-blocks:
			switch {
			case !ok:
				blocks = nil
			case b.Active:
				c.blocked.Store(&b.Reason)
				a.log.Warn("the broker is blocking publishers; amqp fires fail until it unblocks", "broker", a.broker, "reason", b.Reason)
			default:
				c.blocked.Store(nil)
				a.log.Info("the broker unblocked publishers", "broker", a.broker)
			}
		}
	}
}

// checkExchange makes sure a named exchange exists before publishing to it.
// Publishing to a missing exchange makes the broker close the channel, and
// with it fail every publish in flight on it, other jobs' included; a
// passive declare on a channel of its own fails alone. Checks are shared by
// concurrent fires and their success is trusted for exchangeRecheck. An
// exchange deleted within that window still costs the shared channel once.
func (a *amqpSender) checkExchange(ctx context.Context, c *amqpConn, name string) error {
	if name == "" {
		return nil // the default exchange always exists
	}
	c.mu.Lock()
	if at, ok := c.exchanges[name]; ok && time.Since(at) < exchangeRecheck {
		c.mu.Unlock()
		return nil
	}
	p, running := c.probes[name]
	if !running {
		p = &probe{done: make(chan struct{})}
		c.probes[name] = p
	}
	c.mu.Unlock()
	// The check runs on its own goroutine: the library's call takes no
	// context, and a fire must give up waiting when its attempt ends.
	if !running && !a.goFunc(func() { a.probe(c, name, p) }) {
		p.err = ErrClosed
		c.mu.Lock()
		delete(c.probes, name)
		c.mu.Unlock()
		close(p.done)
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("checking exchange %q: %w", name, ctx.Err())
	}
}

func (a *amqpSender) probe(c *amqpConn, name string, p *probe) {
	p.err = c.exchangeExists(name)
	c.mu.Lock()
	delete(c.probes, name)
	if p.err == nil {
		c.exchanges[name] = time.Now()
	}
	c.mu.Unlock()
	close(p.done)
}

func (c *amqpConn) exchangeExists(name string) error {
	ch, err := c.conn.Channel()
	if err != nil {
		return fmt.Errorf("check exchange %q: open a channel: %w", name, err)
	}
	defer ch.Close()
	// A passive declare ignores the kind and flags.
	err = ch.ExchangeDeclarePassive(name, amqp.ExchangeDirect, false, false, false, false, nil)
	if e := (*amqp.Error)(nil); errors.As(err, &e) && e.Code == amqp.NotFound {
		return fmt.Errorf("exchange %q does not exist", name)
	}
	if err != nil {
		return fmt.Errorf("check exchange %q: %w", name, err)
	}
	return nil
}

// goFunc runs fn on a goroutine that close waits for. It reports false,
// running nothing, once close has begun.
func (a *amqpSender) goFunc(fn func()) bool {
	a.goMu.Lock()
	defer a.goMu.Unlock()
	if a.stopped {
		return false
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		fn()
	}()
	return true
}

// close closes the connection and waits for the goroutines that watch it or
// check exchanges on it; closing the connection ends them all.
func (a *amqpSender) close() error {
	a.lock <- struct{}{} // waits out a dial in progress
	a.closed = true
	c := a.cur.Swap(nil)
	<-a.lock
	a.goMu.Lock()
	a.stopped = true
	a.goMu.Unlock()
	var err error
	if c != nil {
		if cerr := c.conn.CloseDeadline(time.Now().Add(amqpCloseTimeout)); cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
			err = fmt.Errorf("target: close the broker connection: %w", cerr)
		}
	}
	a.wg.Wait()
	return err
}
