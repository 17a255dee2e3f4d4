package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Config configures a Store.
type Config struct {
	URI      string
	Database string
	// Timeout bounds every single operation (default 5s).
	Timeout time.Duration
	// Retention is how long run records are kept (default 30 days).
	Retention time.Duration
	Logger    *slog.Logger
}

// Store is Baton's MongoDB state. It is safe for concurrent use.
type Store struct {
	client  *mongo.Client
	db      *mongo.Database
	timeout time.Duration
	log     *slog.Logger

	retention time.Duration
	// manualTTL is set when the server cannot expire documents itself
	// (FerretDB has no TTL indexes); Prune then deletes old records.
	manualTTL bool

	cache   leaseCache
	cellCap int // members per cell document (maxCellMembers)
	commits commits

	lease, instances, jobs, runs, cells, results, stats, requests, replies *mongo.Collection
}

// maxBatch bounds every multi-statement write. FerretDB 1.24 never answers an
// update command with 100 or more statements (measured here), and smaller
// batches cost MongoDB nothing noticeable.
const maxBatch = 64

// insertBatch bounds insertMany calls; inserts do not have that problem.
const insertBatch = 1000

// Open connects, checks the connection, and creates the indexes.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.Timeout = cmp.Or(cfg.Timeout, 5*time.Second)
	cfg.Retention = cmp.Or(cfg.Retention, 30*24*time.Hour)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Database == "" {
		return nil, errors.New("store: database name is required")
	}
	opts := options.Client().ApplyURI(cfg.URI).
		SetServerSelectionTimeout(cfg.Timeout).
		SetConnectTimeout(cfg.Timeout).
		SetMaxPoolSize(64).
		SetRetryWrites(false) // a retried insert could report a claim as a duplicate of itself
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	db := client.Database(cfg.Database)
	s := &Store{
		client:    client,
		db:        db,
		timeout:   cfg.Timeout,
		log:       cfg.Logger.With("component", "store"),
		retention: cfg.Retention,
		cellCap:   maxCellMembers,
		lease:     db.Collection("lease"),
		instances: db.Collection("instances"),
		jobs:      db.Collection("jobs"),
		runs:      db.Collection("runs"),
		cells:     db.Collection("run_cells"),
		results:   db.Collection("run_results"),
		stats:     db.Collection("job_stats"),
		requests:  db.Collection("crud_requests"),
		replies:   db.Collection("crud_replies"),
	}
	s.initCommits()
	if err := s.Ping(ctx); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	if err := s.ensureIndexes(ctx); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	return s, nil
}

// Close disconnects.
func (s *Store) Close(ctx context.Context) error {
	return s.client.Disconnect(ctx)
}

// Ping checks that the store answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if err := s.db.RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// DropDatabase removes all of Baton's state. Tests use it.
func (s *Store) DropDatabase(ctx context.Context) error {
	return s.db.Drop(ctx)
}

func (s *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

func (s *Store) ensureIndexes(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 4*s.timeout)
	defer cancel()
	idx := []struct {
		c      *mongo.Collection
		models []mongo.IndexModel
	}{
		// The unique (job, scheduled_at) index is what makes a tick claimable
		// exactly once, whichever executor tries.
		{s.runs, []mongo.IndexModel{
			{Keys: bson.D{{Key: "job", Value: 1}, {Key: "scheduled_at", Value: 1}}, Options: options.Index().SetUnique(true).SetName("job_tick_unique")},
			{Keys: bson.D{{Key: "epoch", Value: 1}, {Key: "status", Value: 1}}, Options: options.Index().SetName("epoch_status")},
		}},
		{s.cells, []mongo.IndexModel{
			{Keys: bson.D{{Key: "recorded", Value: 1}, {Key: "epoch", Value: 1}}, Options: options.Index().SetName("recorded_epoch")},
		}},
		{s.results, []mongo.IndexModel{
			{Keys: bson.D{{Key: "job", Value: 1}, {Key: "scheduled_at", Value: -1}}, Options: options.Index().SetName("job_scheduled")},
			{Keys: bson.D{{Key: "status", Value: 1}, {Key: "finished_at", Value: -1}}, Options: options.Index().SetName("status_finished")},
		}},
		{s.jobs, []mongo.IndexModel{
			{Keys: bson.D{{Key: "labels", Value: 1}}, Options: options.Index().SetName("labels")},
		}},
	}
	for _, x := range idx {
		// One at a time: FerretDB 1.24 panics on a createIndexes that
		// names two or more existing indexes (it deletes from the wrong
		// position of its list), which is every start after the first.
		for _, m := range x.models {
			if _, err := x.c.Indexes().CreateOne(ctx, m); err != nil {
				return fmt.Errorf("store: create indexes on %s: %w", x.c.Name(), err)
			}
		}
	}
	// Records expire through TTL indexes where the server has them.
	ttl := []struct {
		c     *mongo.Collection
		field string
		after time.Duration
	}{
		{s.runs, "claimed_at", s.retention},
		{s.cells, "claimed_at", s.retention},
		{s.results, "finished_at", s.retention},
		{s.requests, "created_at", requestRetention},
		{s.replies, "created_at", requestRetention},
	}
	for _, x := range ttl {
		_, err := x.c.Indexes().CreateOne(ctx, mongo.IndexModel{
			Keys:    bson.D{{Key: x.field, Value: 1}},
			Options: options.Index().SetExpireAfterSeconds(int32(x.after / time.Second)).SetName(x.field + "_ttl"),
		})
		var ce mongo.CommandError
		switch {
		case err == nil:
		case errors.As(err, &ce) && ce.Code == 238: // NotImplemented: FerretDB
			s.manualTTL = true
		default:
			return fmt.Errorf("store: create TTL index on %s: %w", x.c.Name(), err)
		}
	}
	if s.manualTTL {
		s.log.Info("the store has no TTL indexes; old records are pruned by the executor")
	}
	return nil
}

// requestRetention is how long forwarded-write records are kept; they only
// need to outlive a request's timeout.
const requestRetention = time.Hour

// Prune deletes records past their retention when the server cannot expire
// them itself. The executor calls it periodically.
func (s *Store) Prune(ctx context.Context, now time.Time) error {
	if !s.manualTTL {
		return nil
	}
	for _, x := range []struct {
		c      *mongo.Collection
		field  string
		before time.Time
	}{
		{s.runs, "claimed_at", now.Add(-s.retention)},
		{s.cells, "claimed_at", now.Add(-s.retention)},
		{s.results, "finished_at", now.Add(-s.retention)},
		{s.requests, "created_at", now.Add(-requestRetention)},
		{s.replies, "created_at", now.Add(-requestRetention)},
	} {
		// A range delete scans the collection on such a server: give it
		// far longer than a lookup.
		octx, cancel := context.WithTimeout(ctx, 20*s.timeout)
		_, err := x.c.DeleteMany(octx, bson.M{x.field: bson.M{"$lt": x.before}})
		cancel()
		if err != nil {
			return fmt.Errorf("store: prune %s: %w", x.c.Name(), err)
		}
	}
	return nil
}

// chunks splits n items into [lo, hi) ranges of at most size.
func chunks(n, size int) [][2]int {
	var out [][2]int
	for lo := 0; lo < n; lo += size {
		out = append(out, [2]int{lo, min(lo+size, n)})
	}
	return out
}

// all decodes every document of cur, and closes it. It decodes with
// bson.Unmarshal, whose read buffers are pooled: the driver's Cursor.All
// and Cursor.Decode allocate a 4 KB buffer for each document (mongo-driver
// v2.9), 800 MB of garbage when an executor loads 100,000 jobs (see
// BenchmarkDecodeJobs).
func all[T any](ctx context.Context, cur *mongo.Cursor) ([]T, error) {
	defer cur.Close(context.WithoutCancel(ctx))
	out := []T{}
	for cur.Next(ctx) {
		var v T
		if err := bson.Unmarshal(cur.Current, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, cur.Err()
}
