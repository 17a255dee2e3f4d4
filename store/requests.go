package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Request states. A forwarded write is decided exactly once: either the
// executor begins applying it, or the caller abandons it after its timeout.
// Whoever inserts the record first wins; that is what guarantees a write the
// caller was told failed is never applied later.
const (
	RequestApplying  = "applying"
	RequestDone      = "done"
	RequestAbandoned = "abandoned"
)

// Request is the record of one forwarded write.
type Request struct {
	ID        string    `bson:"_id"`
	State     string    `bson:"state"`
	Epoch     int64     `bson:"epoch,omitempty"`
	Reply     []byte    `bson:"reply,omitempty"`
	CreatedAt time.Time `bson:"created_at"`
}

// BeginRequest claims request id for applying under fence f. If the request
// was already decided it returns the existing record and ErrExists.
func (s *Store) BeginRequest(ctx context.Context, f Fence, id string, now time.Time) (*Request, error) {
	if err := s.CheckFence(ctx, f); err != nil {
		return nil, err
	}
	return s.decideRequest(ctx, Request{ID: id, State: RequestApplying, Epoch: f.Epoch, CreatedAt: now})
}

// AbandonRequest marks request id abandoned unless the executor began it
// first, in which case it returns that record and ErrExists.
func (s *Store) AbandonRequest(ctx context.Context, id string, now time.Time) (*Request, error) {
	return s.decideRequest(ctx, Request{ID: id, State: RequestAbandoned, CreatedAt: now})
}

func (s *Store) decideRequest(ctx context.Context, r Request) (*Request, error) {
	octx, cancel := s.opContext(ctx)
	defer cancel()
	_, err := s.requests.InsertOne(octx, r)
	if err == nil {
		return &r, nil
	}
	if !isDuplicateKey(err) {
		return nil, fmt.Errorf("store: decide request %s: %w", r.ID, err)
	}
	existing, err := s.Request(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return existing, fmt.Errorf("store: request %s is %s: %w", r.ID, existing.State, ErrExists)
}

// FinishRequest stores the reply of an applied request, so that a caller
// that timed out after the executor began can still learn the outcome.
func (s *Store) FinishRequest(ctx context.Context, id string, reply []byte) error {
	octx, cancel := s.opContext(ctx)
	defer cancel()
	_, err := s.requests.UpdateOne(octx, bson.M{"_id": id}, bson.M{"$set": bson.M{"state": RequestDone, "reply": reply}})
	if err != nil {
		return fmt.Errorf("store: finish request %s: %w", id, err)
	}
	return nil
}

// Request reads the record of request id.
func (s *Store) Request(ctx context.Context, id string) (*Request, error) {
	octx, cancel := s.opContext(ctx)
	defer cancel()
	var r Request
	if err := s.requests.FindOne(octx, bson.M{"_id": id}).Decode(&r); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, fmt.Errorf("store: request %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("store: read request %s: %w", id, err)
	}
	return &r, nil
}
