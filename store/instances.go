package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Instance is one running Baton process as it registers itself.
type Instance struct {
	ID         string    `bson:"_id" json:"id"`
	Session    string    `bson:"session" json:"-"`
	Datacenter string    `bson:"datacenter" json:"datacenter"`
	Role       string    `bson:"role" json:"role"`
	HTTPAddr   string    `bson:"http_addr" json:"http_addr,omitempty"`
	Version    string    `bson:"version" json:"version,omitempty"`
	StartedAt  time.Time `bson:"started_at" json:"started_at"`
	LastSeen   time.Time `bson:"last_seen" json:"last_seen"`
}

// RegisterInstance records inst as live. An id that another session used
// within staleAfter is a clash and fails with ErrInstanceIDUsed; an older
// registration under the same id is taken over.
func (s *Store) RegisterInstance(ctx context.Context, inst Instance, staleAfter time.Duration) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	_, err := s.instances.InsertOne(ctx, inst)
	if err == nil {
		return nil
	}
	if !isDuplicateKey(err) {
		return fmt.Errorf("store: register instance %q: %w", inst.ID, err)
	}
	var old Instance
	if err := s.instances.FindOne(ctx, bson.M{"_id": inst.ID}).Decode(&old); err != nil {
		return fmt.Errorf("store: register instance %q: %w", inst.ID, err)
	}
	if inst.LastSeen.Sub(old.LastSeen) < staleAfter && old.Role != RoleStopped {
		return fmt.Errorf("store: instance %q (last seen %s, started %s): %w",
			inst.ID, old.LastSeen.Format(time.RFC3339), old.StartedAt.Format(time.RFC3339), ErrInstanceIDUsed)
	}
	res, err := s.instances.ReplaceOne(ctx, bson.M{"_id": inst.ID, "session": old.Session}, inst)
	if err != nil {
		return fmt.Errorf("store: take over instance %q: %w", inst.ID, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("store: instance %q registered concurrently: %w", inst.ID, ErrInstanceIDUsed)
	}
	return nil
}

// Roles an instance reports.
const (
	RoleExecutor = "executor"
	RoleStandby  = "standby"
	RoleStopped  = "stopped"
)

// Heartbeat refreshes inst's registration. ErrInstanceIDUsed means another
// process has taken the id over.
func (s *Store) Heartbeat(ctx context.Context, inst Instance) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	res, err := s.instances.UpdateOne(ctx, bson.M{"_id": inst.ID, "session": inst.Session},
		bson.M{"$set": bson.M{"last_seen": inst.LastSeen, "role": inst.Role, "datacenter": inst.Datacenter, "http_addr": inst.HTTPAddr}})
	if err != nil {
		return fmt.Errorf("store: heartbeat %q: %w", inst.ID, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("store: heartbeat %q: %w", inst.ID, ErrInstanceIDUsed)
	}
	return nil
}

// Instances lists registered instances, most recently seen first.
func (s *Store) Instances(ctx context.Context) ([]Instance, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	cur, err := s.instances.Find(ctx, bson.M{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("store: list instances: %w", err)
	}
	out, err := all[Instance](ctx, cur)
	if err != nil {
		return nil, fmt.Errorf("store: list instances: %w", err)
	}
	return out, nil
}

// PruneInstances removes registrations not seen since before.
func (s *Store) PruneInstances(ctx context.Context, before time.Time) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	_, err := s.instances.DeleteMany(ctx, bson.M{"last_seen": bson.M{"$lt": before}})
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("store: prune instances: %w", err)
	}
	return nil
}
