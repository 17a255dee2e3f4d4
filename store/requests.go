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

// Request is the record of one forwarded write. Its reply is stored as a
// document of its own (see finishRequests); Request reads both.
type Request struct {
	ID        string    `bson:"_id"`
	State     string    `bson:"state"`
	Epoch     int64     `bson:"epoch,omitempty"`
	Reply     []byte    `bson:"reply,omitempty"`
	CreatedAt time.Time `bson:"created_at"`
}

// BeginRequest claims request id for applying under fence f. If the request
// was already decided it returns the existing record and ErrExists.
// Concurrent calls share one fence check and one insert.
func (s *Store) BeginRequest(ctx context.Context, f Fence, id string, now time.Time) (*Request, error) {
	res := s.commits.beginRequest.Do(ctx, fencedRequest{f: f, r: Request{ID: id, State: RequestApplying, Epoch: f.Epoch, CreatedAt: now}})
	return res.r, res.err
}

// AbandonRequest marks request id abandoned unless the executor began it
// first, in which case it returns that record and ErrExists.
func (s *Store) AbandonRequest(ctx context.Context, id string, now time.Time) (*Request, error) {
	r := Request{ID: id, State: RequestAbandoned, CreatedAt: now}
	octx, cancel := s.opContext(ctx)
	defer cancel()
	_, err := s.requests.InsertOne(octx, r)
	if err == nil {
		return &r, nil
	}
	if !isDuplicateKey(err) {
		return nil, fmt.Errorf("store: decide request %s: %w", r.ID, err)
	}
	return s.decided(ctx, id)
}

// decided returns the record of a request someone else decided first, and
// ErrExists.
func (s *Store) decided(ctx context.Context, id string) (*Request, error) {
	existing, err := s.Request(ctx, id)
	if err != nil {
		return nil, err
	}
	return existing, fmt.Errorf("store: request %s is %s: %w", id, existing.State, ErrExists)
}

// FinishRequest stores the reply of a request applied under fence f, which
// makes it done, so that a caller that timed out after the executor began
// can still learn the outcome. Concurrent calls share one write.
func (s *Store) FinishRequest(ctx context.Context, f Fence, id string, reply []byte, now time.Time) error {
	return s.commits.finishRequest.Do(ctx, finishedRequest{id: id, epoch: f.Epoch, reply: reply, at: now})
}

// requestReply is the reply of a finished request.
type requestReply struct {
	ID    string `bson:"_id"`
	Epoch int64  `bson:"epoch,omitempty"`
	Reply []byte `bson:"reply"`
	// CreatedAt is when the reply was stored.
	CreatedAt time.Time `bson:"created_at"`
}

// Writes counts the forwarded writes an executor began applying, and those
// it finished. Every change to a job is made between the two, so a reader
// of the jobs knows that no change of that executor's was under way when
// Begun equalled Finished, and that none began since while Begun stays the
// same.
type Writes struct {
	Begun, Finished int64
}

// WritesOf counts the forwarded writes of the executor of epoch. Replies
// stored by versions that did not record the epoch are not counted, so
// Finished is then short, never over.
func (s *Store) WritesOf(ctx context.Context, epoch int64) (Writes, error) {
	octx, cancel := s.opContext(ctx)
	defer cancel()
	var w Writes
	var err error
	if w.Begun, err = s.requests.CountDocuments(octx, bson.M{"epoch": epoch}); err != nil {
		return w, fmt.Errorf("store: count the writes of epoch %d: %w", epoch, err)
	}
	if w.Finished, err = s.replies.CountDocuments(octx, bson.M{"epoch": epoch}); err != nil {
		return w, fmt.Errorf("store: count the finished writes of epoch %d: %w", epoch, err)
	}
	return w, nil
}

// Request reads the record of request id: done once its reply is stored.
// Earlier versions stored the reply in the request document itself.
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
	if r.State != RequestApplying {
		return &r, nil
	}
	var reply requestReply
	switch err := s.replies.FindOne(octx, bson.M{"_id": id}).Decode(&reply); {
	case errors.Is(err, mongo.ErrNoDocuments):
	case err != nil:
		return nil, fmt.Errorf("store: read the reply of request %s: %w", id, err)
	default:
		r.State, r.Reply = RequestDone, reply.Reply
	}
	return &r, nil
}
