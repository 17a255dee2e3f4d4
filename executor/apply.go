package executor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/batonhq/baton/crud"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/token"
)

// Apply applies a forwarded write as the single writer: validate, write the
// store under the term's epoch, and change the live schedule at once.
func (e *Executor) Apply(ctx context.Context, term *token.Term, req crud.Request) crud.Reply {
	ts := e.current(term)
	if ts == nil {
		return crud.Failure(http.StatusServiceUnavailable, crud.CodeNoExecutor, "", "this instance is no longer the executor; the write was not applied")
	}
	// Writes wait for the schedule to be loaded, so that the change is
	// applied to a complete schedule and not overwritten by the load.
	select {
	case <-ts.ready:
	case <-ts.ctx.Done():
		return crud.Failure(http.StatusServiceUnavailable, crud.CodeNoExecutor, "", "the executor stepped down; the write was not applied")
	case <-ctx.Done():
		return crud.Failure(http.StatusServiceUnavailable, crud.CodeNoExecutor, "", "the executor is still loading its schedule; the write was not applied")
	case <-time.After(e.cfg.ApplyReadyTimeout):
		return crud.Failure(http.StatusServiceUnavailable, crud.CodeNoExecutor, "", "the executor is still loading its schedule; the write was not applied")
	}
	r, err := ts.apply(ctx, req)
	if err != nil {
		return failure(err)
	}
	if r.Job != nil {
		r.Job.FillNextRun(ts.now())
	}
	return r
}

func failure(err error) crud.Reply {
	var ve *job.ValidationError
	switch {
	case errors.As(err, &ve):
		return crud.Failure(http.StatusBadRequest, crud.CodeInvalid, ve.Field, ve.Message)
	case errors.Is(err, store.ErrNotFound):
		return crud.Failure(http.StatusNotFound, crud.CodeNotFound, "name", "no such job")
	case errors.Is(err, store.ErrExists):
		return crud.Failure(http.StatusConflict, crud.CodeExists, "name", "a job with this name already exists")
	case errors.Is(err, errAlreadyRunning):
		return crud.Failure(http.StatusConflict, crud.CodeAlreadyRunning, "", err.Error())
	case errors.Is(err, store.ErrStaleEpoch):
		return crud.Failure(http.StatusServiceUnavailable, crud.CodeNoExecutor, "", "the executor lost its lease; the write was not applied")
	case store.IsUnavailable(err):
		return crud.Failure(http.StatusServiceUnavailable, crud.CodeStoreUnavailable, "", "the store is unavailable; the write was not applied")
	}
	return crud.Failure(http.StatusInternalServerError, crud.CodeInternal, "", err.Error())
}

var errAlreadyRunning = errors.New("the job is running and its concurrency policy is forbid")

func (ts *termState) apply(ctx context.Context, req crud.Request) (crud.Reply, error) {
	f := ts.term.Fence()
	st := ts.e.store
	now := ts.now().Truncate(time.Millisecond)
	switch req.Op {
	case crud.OpCreate:
		j, err := ts.validate(req)
		if err != nil {
			return crud.Reply{}, err
		}
		j.CreatedAt, j.UpdatedAt, j.ActiveSince = now, now, now
		if err := st.CreateJob(ctx, f, j); err != nil {
			return crud.Reply{}, err
		}
		if err := ts.join(j); err != nil {
			return crud.Reply{}, err
		}
		return crud.Reply{Status: http.StatusCreated, Result: crud.ResultCreated, Job: j}, nil

	case crud.OpUpdate, crud.OpUpsert:
		j, err := ts.validate(req)
		if err != nil {
			return crud.Reply{}, err
		}
		old, err := st.Job(ctx, j.Name)
		if errors.Is(err, store.ErrNotFound) && req.Op == crud.OpUpsert {
			j.CreatedAt, j.UpdatedAt, j.ActiveSince = now, now, now
			if err := st.CreateJob(ctx, f, j); err != nil {
				return crud.Reply{}, err
			}
			if err := ts.join(j); err != nil {
				return crud.Reply{}, err
			}
			return crud.Reply{Status: http.StatusCreated, Result: crud.ResultCreated, Job: j}, nil
		}
		if err != nil {
			return crud.Reply{}, err
		}
		if req.Op == crud.OpUpsert && job.SpecEqual(old, j) {
			return crud.Reply{Status: http.StatusOK, Result: crud.ResultUnchanged, Job: old}, nil
		}
		j.CreatedAt, j.UpdatedAt, j.ActiveSince = old.CreatedAt, now, old.ActiveSince
		// Ticks of a new schedule, or of a job that was paused, were never
		// due before now; catch-up must not fire them.
		if j.Schedule != old.Schedule || j.Timezone != old.Timezone || (old.Paused && !j.Paused) {
			j.ActiveSince = now
		}
		if err := st.ReplaceJob(ctx, f, j); err != nil {
			return crud.Reply{}, err
		}
		if err := ts.join(j); err != nil {
			return crud.Reply{}, err
		}
		j.Stats = old.Stats
		return crud.Reply{Status: http.StatusOK, Result: crud.ResultUpdated, Job: j}, nil

	case crud.OpDelete:
		if err := st.DeleteJob(ctx, f, req.Name); err != nil {
			return crud.Reply{}, err
		}
		ts.removeEntry(req.Name)
		return crud.Reply{Status: http.StatusNoContent, Result: crud.ResultDeleted}, nil

	case crud.OpPause, crud.OpResume:
		j, err := st.SetPaused(ctx, f, req.Name, req.Op == crud.OpPause, now)
		if err != nil {
			return crud.Reply{}, err
		}
		if err := ts.join(j); err != nil {
			return crud.Reply{}, err
		}
		return crud.Reply{Status: http.StatusOK, Result: crud.ResultUpdated, Job: j}, nil

	case crud.OpTrigger:
		return ts.trigger(ctx, req.Name, now)
	}
	return crud.Reply{}, &job.ValidationError{Field: "op", Message: fmt.Sprintf("unknown operation %q", req.Op)}
}

func (ts *termState) validate(req crud.Request) (*job.Job, error) {
	if req.Job == nil {
		return nil, &job.ValidationError{Message: "a job is required"}
	}
	j := req.Job.Spec()
	j.Normalize()
	if err := j.Validate(job.Options{ShellEnabled: ts.e.cfg.ShellEnabled}); err != nil {
		return nil, err
	}
	return &j, nil
}

// trigger claims and dispatches a manual run of a job now.
func (ts *termState) trigger(ctx context.Context, name string, now time.Time) (crud.Reply, error) {
	j, err := ts.e.store.Job(ctx, name)
	if err != nil {
		return crud.Reply{}, err
	}
	ts.claimMu.Lock()
	defer ts.claimMu.Unlock()
	if ts.overlapping(j) {
		return crud.Reply{}, errAlreadyRunning
	}
	// A manual run is keyed by the moment it was asked for; two triggers in
	// the same millisecond are moved apart.
	for attempt := range 5 {
		at := now.Add(time.Duration(attempt) * time.Millisecond)
		claim := store.Run{FireID: uuid.Must(uuid.NewV7()).String(), Job: name, ScheduledAt: at,
			Trigger: store.TriggerManual, Status: store.StatusRunning,
			Instance: ts.e.cfg.InstanceID, Epoch: ts.term.Epoch(), ClaimedAt: now}
		f := ts.newFire(&claim, j, false)
		f.dueAt = at // no jitter for a manual run
		claimed, err := ts.e.store.Claim(ctx, ts.term.Fence(), []store.Run{claim})
		if err != nil {
			ts.release(f)
			return crud.Reply{}, err
		}
		if !claimed[0] {
			ts.release(f)
			continue
		}
		ts.schedule(f)
		return crud.Reply{Status: http.StatusAccepted, Result: crud.ResultTriggered, Job: j, Run: &claim}, nil
	}
	return crud.Reply{}, errors.New("could not claim a manual run")
}
