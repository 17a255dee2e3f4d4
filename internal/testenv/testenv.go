// Package testenv gives tests the real services they need: a RabbitMQ broker
// and a MongoDB-compatible store. Each test gets its own database and
// cluster name, so tests run in parallel without sharing state.
//
// The store is the embedded FerretDB, started once per test process as a
// child process, unless BATON_TEST_MONGO_URI points at a real MongoDB. The broker is the RabbitMQ at
// BATON_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/). A test
// that cannot reach either fails; it never skips.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/batonhq/baton/internal/testcluster"
	"github.com/batonhq/baton/store"
)

// DefaultAMQPURL is the broker tests use unless BATON_TEST_AMQP_URL is set.
const DefaultAMQPURL = "amqp://guest:guest@127.0.0.1:5672/"

var (
	mongoOnce sync.Once
	mongoURI  string
	mongoErr  error
	ferret    *storeProcess

	amqpOnce sync.Once
	amqpErr  error
)

// Main runs the tests of a package and stops the embedded store afterwards.
// Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if ferret != nil {
		ferret.stop()
	}
	os.Exit(code)
}

// MongoURI returns the URI of the test store, starting it on first use.
func MongoURI(t testing.TB) string {
	t.Helper()
	mongoOnce.Do(func() {
		if uri := os.Getenv("BATON_TEST_MONGO_URI"); uri != "" {
			mongoURI = uri
			return
		}
		ferret, mongoErr = startStoreProcess()
		if mongoErr == nil {
			mongoURI = ferret.uri
		}
	})
	if mongoErr != nil {
		t.Fatalf("testenv: cannot start the embedded FerretDB store: %v", mongoErr)
	}
	return mongoURI
}

// AMQPURL returns the test broker's URL after checking that it answers.
func AMQPURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("BATON_TEST_AMQP_URL")
	if url == "" {
		url = DefaultAMQPURL
	}
	amqpOnce.Do(func() {
		conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err != nil {
			amqpErr = err
			return
		}
		_ = conn.Close()
	})
	if amqpErr != nil {
		t.Fatalf("testenv: cannot reach RabbitMQ at %s: %v. Is rabbitmq-server running? (start it with `rabbitmq-server -detached`)", redactURL(url), amqpErr)
	}
	return url
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// Name returns a name unique to this test run, derived from the test's
// name: use it as a cluster name, database name or queue prefix.
func Name(t testing.TB) string {
	t.Helper()
	base := unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-")
	base = strings.Trim(base, "-")
	if len(base) > 30 {
		base = base[len(base)-30:]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "t-" + strings.Trim(base, "-") + "-" + hex.EncodeToString(b[:])
}

// Store opens a store on a fresh database and drops it when the test ends.
func Store(t testing.TB) *store.Store {
	t.Helper()
	return StoreNamed(t, Name(t))
}

// StoreNamed opens a store on database db and drops it when the test ends.
func StoreNamed(t testing.TB, db string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.Open(ctx, store.Config{URI: MongoURI(t), Database: db, Timeout: 10 * time.Second, Logger: Logger()})
	if err != nil {
		t.Fatalf("testenv: open store: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.DropDatabase(ctx)
		_ = s.Close(ctx)
	})
	return s
}

// Logger returns a logger for components under test: warnings and errors
// only, unless BATON_TEST_LOG sets a level (debug, info, warn, error).
func Logger() *slog.Logger {
	level := slog.LevelWarn
	if v := os.Getenv("BATON_TEST_LOG"); v != "" {
		_ = level.UnmarshalText([]byte(v))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// DeleteQueues removes the named queues when the test ends.
func DeleteQueues(t testing.TB, names ...string) {
	t.Helper()
	url := AMQPURL(t)
	t.Cleanup(func() { _ = testcluster.DeleteQueues(url, names...) })
}

func redactURL(u string) string {
	if i := strings.Index(u, "@"); i > 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "xxxxx" + u[i:]
		}
	}
	return fmt.Sprint(u)
}
