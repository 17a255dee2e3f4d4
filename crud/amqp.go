package crud

import (
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func dialAMQP(url, name string, heartbeat, timeout time.Duration) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	conn, err := amqp.DialConfig(url, amqp.Config{Heartbeat: heartbeat, Dial: amqp.DefaultDial(timeout), Properties: props})
	if err != nil {
		return nil, fmt.Errorf("crud: dial broker: %w", err)
	}
	return conn, nil
}

// declareQueue declares the request queue. Requests are short-lived and
// carry their own expiry, so a classic durable queue is enough.
func declareQueue(ch *amqp.Channel, queue string) error {
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("crud: declare queue %s: %w", queue, err)
	}
	return nil
}

func closeConn(conn *amqp.Connection) {
	if conn != nil && !conn.IsClosed() {
		_ = conn.CloseDeadline(time.Now().Add(time.Second))
	}
}
