package token

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// genHeader carries a token's generation. Only the token whose generation
// equals the lease's token generation is real; any other is a stale or
// duplicate token and is acked away by whoever receives it.
const genHeader = "x-baton-token-gen"

// DeliveryLimit is the token queue's x-delivery-limit: effectively
// unlimited, a failover a second for 30 years.
const DeliveryLimit = 1_000_000_000

// queueArgs are the token queue's arguments. Every instance declares the
// queue with exactly these, or the broker refuses the declaration.
func queueArgs() amqp.Table {
	return amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeQuorum,
		// Only one consumer receives messages; the others wait their turn,
		// so the token always goes to one instance.
		amqp.SingleActiveConsumerArg: true,
		// RabbitMQ 4.0-4.2 drop a quorum-queue message after 20 returns by
		// default, and a token is returned on every failover. 4.x reads -1
		// as unlimited, but 3.10 (measured here) reads it literally and
		// drops the token on its first return. A limit no cluster will ever
		// reach works on both, and survives an upgrade from 3.x to 4.x.
		"x-delivery-limit": int64(DeliveryLimit),
	}
}

// declare declares the token queue.
func declare(ch *amqp.Channel, queue string) error {
	_, err := ch.QueueDeclare(queue, true, false, false, false, queueArgs())
	if err != nil {
		return fmt.Errorf("token: declare queue %s: %w", queue, err)
	}
	return nil
}

type tokenBody struct {
	Gen         int64     `json:"gen"`
	PublishedBy string    `json:"published_by"`
	PublishedAt time.Time `json:"published_at"`
}

// publish publishes a token of generation gen and waits for the broker's
// confirm. ch must be in confirm mode.
func publish(ctx context.Context, ch *amqp.Channel, queue string, gen int64, by string) error {
	body, _ := json.Marshal(tokenBody{Gen: gen, PublishedBy: by, PublishedAt: time.Now().UTC()})
	var id [8]byte
	_, _ = rand.Read(id[:])
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    fmt.Sprintf("token-%d-%s", gen, hex.EncodeToString(id[:])),
		Timestamp:    time.Now(),
		Headers:      amqp.Table{genHeader: gen},
		Body:         body,
	})
	if err != nil {
		return fmt.Errorf("token: publish generation %d: %w", gen, err)
	}
	ok, err := conf.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("token: confirm of generation %d: %w", gen, err)
	}
	if !ok {
		return fmt.Errorf("token: broker nacked generation %d", gen)
	}
	return nil
}

var errNotAToken = errors.New("message is not a token")

// generation reads a delivery's token generation.
func generation(d amqp.Delivery) (int64, error) {
	switch v := d.Headers[genHeader].(type) {
	case int64:
		return v, nil
	case int32:
		return int64(v), nil
	case int:
		return int64(v), nil
	}
	return 0, errNotAToken
}

// dial opens a connection with a bounded dial and the configured heartbeat.
// Automatic recovery stays off: a reconnect must never look like continued
// leadership.
func dial(cfg *Config, name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	conn, err := amqp.DialConfig(cfg.URL, amqp.Config{
		Heartbeat:  cfg.Heartbeat,
		Dial:       amqp.DefaultDial(cfg.ConnectTimeout),
		Properties: props,
	})
	if err != nil {
		return nil, fmt.Errorf("token: dial broker: %w", err)
	}
	return conn, nil
}

// closeConn closes conn without blocking longer than d; on a dead link the
// close handshake cannot complete.
func closeConn(conn *amqp.Connection, d time.Duration) {
	if conn == nil || conn.IsClosed() {
		return
	}
	_ = conn.CloseDeadline(time.Now().Add(d))
}
