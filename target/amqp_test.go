package target_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/target"
)

// broker is a test's own connection to RabbitMQ, to declare and read queues.
// Its channel must not be shared by parallel subtests: a channel matches
// replies to synchronous calls in order, so concurrent calls on it fail with
// "unexpected command received".
type broker struct {
	url string
	ch  *amqp.Channel
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	url := testenv.AMQPURL(t)
	conn, err := amqp.Dial(url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	return &broker{url: url, ch: ch}
}

// queue declares a queue that is deleted when the test ends.
func (br *broker) queue(t *testing.T) string {
	t.Helper()
	name := testenv.Name(t)
	testenv.DeleteQueues(t, name)
	_, err := br.ch.QueueDeclare(name, false, false, false, false, nil)
	require.NoError(t, err)
	return name
}

// exchange declares a direct exchange bound to queue, deleted when the test
// ends.
func (br *broker) exchange(t *testing.T, queue string) string {
	t.Helper()
	name := testenv.Name(t) + "-x"
	require.NoError(t, br.ch.ExchangeDeclare(name, amqp.ExchangeDirect, false, true, false, false, nil))
	t.Cleanup(func() { _ = br.ch.ExchangeDelete(name, false, false) })
	require.NoError(t, br.ch.QueueBind(queue, "rk", name, false, nil))
	return name
}

func (br *broker) get(t *testing.T, queue string) amqp.Delivery {
	t.Helper()
	msg, ok, err := br.ch.Get(queue, true)
	require.NoError(t, err)
	require.True(t, ok, "a message in %s", queue)
	return msg
}

func (br *broker) count(t *testing.T, queue string) int {
	t.Helper()
	q, err := br.ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	require.NoError(t, err)
	return q.Messages
}

func TestAMQPPublish(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{cfg: target.Config{AMQPURL: testenv.AMQPURL(t)}})
	tests := []struct {
		name        string
		headers     map[string]string
		viaExchange bool
		contentType string
	}{
		{name: "default exchange, default content type", contentType: "application/octet-stream"},
		{name: "named exchange, job content type", viaExchange: true, contentType: "application/json",
			headers: map[string]string{"content-type": "application/json", "tenant": "t1", "X-Baton-Fire-Id": "spoofed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			br := newBroker(t) // its own channel: see broker
			queue := br.queue(t)
			exchange, key := "", queue
			if tc.viaExchange {
				exchange, key = br.exchange(t, queue), "rk"
			}
			j := amqpJob(exchange, key, func(j *job.Job) {
				j.Name = "reports"
				j.Target.AMQP.Body = `{"x":1}`
				j.Target.AMQP.Headers = tc.headers
			})
			before := time.Now().Truncate(time.Second)
			res := b.disp.Dispatch(context.Background(), fireOf(j), allowAll)
			require.Equal(t, store.StatusSucceeded, res.Status, res.Error)
			require.True(t, res.AMQPConfirmed)
			requireAttempts(t, res, 1)

			msg := br.get(t, queue)
			require.Equal(t, "fire-reports", msg.MessageId)
			require.Equal(t, amqp.Persistent, msg.DeliveryMode)
			require.Equal(t, tc.contentType, msg.ContentType)
			require.Equal(t, `{"x":1}`, string(msg.Body))
			require.False(t, msg.Timestamp.Before(before))
			for k, v := range map[string]string{
				"X-Baton-Job":          "reports",
				"X-Baton-Scheduled-At": scheduledHeader,
				"X-Baton-Fire-Id":      "fire-reports",
				"X-Baton-Attempt":      "1",
				"X-Baton-Trigger":      "schedule",
				"X-Baton-Instance":     "i1",
				"X-Baton-Epoch":        "7",
			} {
				require.Equal(t, v, msg.Headers[k], k)
			}
			if tc.headers != nil {
				require.Equal(t, "t1", msg.Headers["tenant"])
				require.NotContains(t, msg.Headers, "content-type", "a property, not a header")
			}
		})
	}
}

// TestAMQPUnroutable documents the chosen behaviour: the broker confirms a
// message that no queue receives.
func TestAMQPUnroutable(t *testing.T) {
	t.Parallel()
	br := newBroker(t)
	b := setup(t, setupOpts{cfg: target.Config{AMQPURL: br.url}})
	res := b.disp.Dispatch(context.Background(), fireOf(amqpJob("", testenv.Name(t)+"-nobody")), allowAll)
	require.Equal(t, store.StatusSucceeded, res.Status, res.Error)
	require.True(t, res.AMQPConfirmed)
}

// TestAMQPMissingExchange checks that a job publishing to a missing exchange
// fails alone: the fires of other jobs in flight on the shared channel
// still succeed.
func TestAMQPMissingExchange(t *testing.T) {
	t.Parallel()
	br := newBroker(t)
	b := setup(t, setupOpts{cfg: target.Config{AMQPURL: br.url}})
	queue := br.queue(t)
	const good, bad = 300, 30
	var wg sync.WaitGroup
	results := make([]target.Result, good+bad)
	for i := range good + bad {
		wg.Go(func() {
			j := amqpJob("", queue)
			if i >= good {
				j = amqpJob("no-such-exchange-"+testenv.Name(t), "rk")
			}
			f := fireOf(j)
			f.FireID = fmt.Sprintf("fire-%d", i)
			results[i] = b.disp.Dispatch(context.Background(), f, allowAll)
		})
	}
	wg.Wait()
	for i, res := range results {
		if i < good {
			require.Equal(t, store.StatusSucceeded, res.Status, "fire %d: %s", i, res.Error)
			continue
		}
		require.Equal(t, store.StatusFailed, res.Status)
		require.Contains(t, res.Error, "does not exist")
		require.False(t, res.AMQPConfirmed)
	}
	require.Equal(t, good, br.count(t, queue))
}

func TestAMQPConcurrent(t *testing.T) {
	t.Parallel()
	br := newBroker(t)
	b := setup(t, setupOpts{cfg: target.Config{AMQPURL: br.url}})
	queue := br.queue(t)
	exchange := br.exchange(t, queue)
	const fires = 1000
	var wg sync.WaitGroup
	results := make([]target.Result, fires)
	for i := range fires {
		wg.Go(func() {
			f := fireOf(amqpJob(exchange, "rk"))
			f.FireID = fmt.Sprintf("fire-%d", i)
			results[i] = b.disp.Dispatch(context.Background(), f, allowAll)
		})
	}
	wg.Wait()
	for _, res := range results {
		require.Equal(t, store.StatusSucceeded, res.Status, res.Error)
	}
	require.Equal(t, fires, br.count(t, queue))
}

func TestAMQPBrokerDown(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{cfg: target.Config{AMQPURL: "amqp://guest:guest@127.0.0.1:1/"}})
	start := time.Now()
	res := b.disp.Dispatch(context.Background(), fireOf(amqpJob("", "q")), allowAll)
	require.Equal(t, store.StatusFailed, res.Status)
	require.Contains(t, res.Error, "connect to the broker")
	res = b.disp.Dispatch(context.Background(), fireOf(amqpJob("", "q")), allowAll)
	require.Equal(t, store.StatusFailed, res.Status)
	require.Contains(t, res.Error, "next connect attempt in", "fails fast after a failed connect")
	require.Less(t, time.Since(start), 2*time.Second)
}
