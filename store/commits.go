package store

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/batonhq/baton/internal/groupcommit"
	"github.com/batonhq/baton/job"
)

// commits group the single-document writes that forwarded API writes make
// concurrently: a burst of job creates costs one fence check and one
// insert per batch instead of two round trips each.
type commits struct {
	createJob     *groupcommit.Group[fencedJob, error]
	beginRequest  *groupcommit.Group[fencedRequest, requestResult]
	finishRequest *groupcommit.Group[finishedRequest, error]
}

type fencedJob struct {
	f Fence
	j *job.Job
}

type fencedRequest struct {
	f Fence
	r Request
}

type requestResult struct {
	r   *Request
	err error
}

type finishedRequest struct {
	id    string
	reply []byte
}

func (s *Store) initCommits() {
	s.commits = commits{
		createJob:     groupcommit.New(maxBatch, s.createJobs),
		beginRequest:  groupcommit.New(maxBatch, s.beginRequests),
		finishRequest: groupcommit.New(maxBatch, s.finishRequests),
	}
}

// byFence calls fn for each run of consecutive items with the same fence:
// a batch spans two terms only at a handover.
func byFence[T any](items []T, fence func(T) Fence, fn func(f Fence, lo, hi int)) {
	for lo := 0; lo < len(items); {
		hi := lo + 1
		for hi < len(items) && fence(items[hi]) == fence(items[lo]) {
			hi++
		}
		fn(fence(items[lo]), lo, hi)
		lo = hi
	}
}

func (s *Store) createJobs(ctx context.Context, items []fencedJob) []error {
	errs := make([]error, len(items))
	byFence(items, func(it fencedJob) Fence { return it.f }, func(f Fence, lo, hi int) {
		fail := func(err error) {
			for i := lo; i < hi; i++ {
				errs[i] = err
			}
		}
		if err := s.CheckFence(ctx, f); err != nil {
			fail(err)
			return
		}
		docs := make([]any, 0, hi-lo)
		for _, it := range items[lo:hi] {
			it.j.Epoch = f.Epoch
			docs = append(docs, it.j)
		}
		dup, err := s.insertMany(ctx, s.jobs, docs)
		if err != nil {
			fail(fmt.Errorf("store: create %d jobs: %w", hi-lo, err))
			return
		}
		for i := lo; i < hi; i++ {
			if dup[i-lo] {
				errs[i] = fmt.Errorf("store: job %q: %w", items[i].j.Name, ErrExists)
			}
		}
	})
	return errs
}

func (s *Store) beginRequests(ctx context.Context, items []fencedRequest) []requestResult {
	out := make([]requestResult, len(items))
	byFence(items, func(it fencedRequest) Fence { return it.f }, func(f Fence, lo, hi int) {
		fail := func(err error) {
			for i := lo; i < hi; i++ {
				out[i].err = err
			}
		}
		if err := s.CheckFence(ctx, f); err != nil {
			fail(err)
			return
		}
		docs := make([]any, 0, hi-lo)
		for _, it := range items[lo:hi] {
			docs = append(docs, it.r)
		}
		dup, err := s.insertMany(ctx, s.requests, docs)
		if err != nil {
			fail(fmt.Errorf("store: decide %d requests: %w", hi-lo, err))
			return
		}
		for i := lo; i < hi; i++ {
			if r := items[i].r; !dup[i-lo] {
				out[i].r = &r
			} else {
				out[i].r, out[i].err = s.decided(ctx, r.ID)
			}
		}
	})
	return out
}

func (s *Store) finishRequests(ctx context.Context, items []finishedRequest) []error {
	models := make([]mongo.WriteModel, len(items))
	for i, it := range items {
		models[i] = mongo.NewUpdateOneModel().SetFilter(bson.M{"_id": it.id}).
			SetUpdate(bson.M{"$set": bson.M{"state": RequestDone, "reply": it.reply}})
	}
	octx, cancel := s.opContext(ctx)
	defer cancel()
	errs := make([]error, len(items))
	if _, err := s.requests.BulkWrite(octx, models, options.BulkWrite().SetOrdered(false)); err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("store: finish %d requests: %w", len(items), err)
		}
	}
	return errs
}
