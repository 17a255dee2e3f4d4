package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Run statuses.
const (
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	StatusSkipped   = "skipped"
	StatusMissed    = "missed"
)

// Run triggers.
const (
	TriggerSchedule = "schedule"
	TriggerManual   = "manual"
	TriggerCatchUp  = "catch_up"
)

// Run is one tick of one job: its claim and, once it finished, its outcome.
//
// A run document is stored in the runs collection, unique on (job,
// scheduled_at). A tick claimed on its own is claimed by inserting it; a
// tick claimed through its cell (see CellID) gets it after dispatch,
// usually together with its outcome. Otherwise the outcome is a second
// document, in run_results, with the same _id, and readers merge the two.
type Run struct {
	FireID      string    `bson:"_id" json:"fire_id"`
	Job         string    `bson:"job" json:"job"`
	ScheduledAt time.Time `bson:"scheduled_at" json:"scheduled_at"`
	Trigger     string    `bson:"trigger" json:"trigger"`
	Status      string    `bson:"status" json:"status"`
	Reason      string    `bson:"reason,omitempty" json:"reason,omitempty"`
	Instance    string    `bson:"instance" json:"instance"`
	Epoch       int64     `bson:"epoch" json:"epoch"`
	ClaimedAt   time.Time `bson:"claimed_at" json:"claimed_at"`
	// Group is the schedule group whose cell claims this tick (see
	// CellID); empty for a tick claimed alone. It is not stored.
	Group      string     `bson:"-" json:"-"`
	StartedAt  *time.Time `bson:"started_at,omitempty" json:"started_at,omitempty"`
	FinishedAt *time.Time `bson:"finished_at,omitempty" json:"finished_at,omitempty"`
	Attempts   int        `bson:"attempts,omitempty" json:"attempts"`
	// AttemptLog lists the attempts when there was more than one; a lone
	// attempt is described by the run's own fields.
	AttemptLog    []Attempt `bson:"attempt_log,omitempty" json:"attempt_log,omitempty"`
	DurationMS    int64     `bson:"duration_ms,omitempty" json:"duration_ms"`
	HTTPStatus    int       `bson:"http_status,omitempty" json:"http_status,omitempty"`
	AMQPConfirmed *bool     `bson:"amqp_confirmed,omitempty" json:"amqp_confirmed,omitempty"`
	ExitCode      *int      `bson:"exit_code,omitempty" json:"exit_code,omitempty"`
	Output        string    `bson:"output,omitempty" json:"output,omitempty"`
	Error         string    `bson:"error,omitempty" json:"error,omitempty"`
}

// Attempt is one try of a fired tick.
type Attempt struct {
	Number     int       `bson:"n" json:"number"`
	StartedAt  time.Time `bson:"started_at" json:"started_at"`
	FinishedAt time.Time `bson:"finished_at" json:"finished_at"`
	HTTPStatus int       `bson:"http_status,omitempty" json:"http_status,omitempty"`
	ExitCode   *int      `bson:"exit_code,omitempty" json:"exit_code,omitempty"`
	Error      string    `bson:"error,omitempty" json:"error,omitempty"`
}

// Final reports whether status is an outcome (stored in run_results).
func Final(status string) bool {
	return status == StatusSucceeded || status == StatusFailed || status == StatusCancelled
}

// Claim claims ticks under fence f: through their cells (see CellID) where
// they have a Group, alone otherwise, and writes their run documents before
// it returns. claimed[i] reports whether claims[i] is this call's; false
// means another executor, or an earlier attempt, has that (job,
// scheduled_at). On an error that leaves the outcome unknown, the affected
// claims are reported as not claimed: the tick is then never dispatched,
// and if the claim did land it shows as an interrupted run rather than a
// silent gap.
//
// A tick whose run document exists is not claimed even when its cell was
// free: an executor of the version before cells claimed it. Catch-up uses
// Claim for that reason.
func (s *Store) Claim(ctx context.Context, f Fence, claims []Run) (claimed []bool, err error) {
	claimed, _, err = s.claim(ctx, f, claims, recordNow)
	return claimed, err
}

// ClaimCells is Claim without writing the run documents of ticks claimed
// through cells: one insert per cell is all that stands between a tick and
// its dispatch. cells maps each cell it inserted to the indexes of the
// claims it holds; the caller passes them to RecordClaims. Until then the
// ticks are visible only in their cells, and if the caller never records
// them the next executor does (RecordOpenCells).
func (s *Store) ClaimCells(ctx context.Context, f Fence, claims []Run) (claimed []bool, cells map[string][]int, err error) {
	return s.claim(ctx, f, claims, recordLater)
}

// insertMany inserts docs unordered. dup[i] reports a duplicate key for
// docs[i]; any other write error fails the call.
func (s *Store) insertMany(ctx context.Context, c *mongo.Collection, docs []any) (dup []bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.timeout)
	defer cancel()
	dup = make([]bool, len(docs))
	_, err = c.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return dup, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return nil, err
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 {
			return nil, err
		}
		dup[we.Index] = true
	}
	return dup, nil
}

// RecordResults stores the outcomes of fired ticks and counts them in the job
// counters: InsertResults, then CountRuns of the runs it recorded.
// recorded[i] is false when runs[i] already had an outcome (the first one
// recorded wins and is the only one counted).
//
// It is not fenced: an outcome is a fact about a dispatch that happened, and
// an executor that lost the lead still records the runs it had started.
func (s *Store) RecordResults(ctx context.Context, runs []Run) (recorded []bool, err error) {
	recorded, err = s.InsertResults(ctx, runs)
	if err != nil {
		return recorded, err
	}
	return recorded, s.CountRuns(ctx, Recorded(runs, recorded))
}

// InsertResults stores the outcomes of fired ticks without counting them.
// recorded[i] is false when runs[i] already had an outcome. The caller
// passes the recorded ones to CountRuns, possibly later and together with
// others: counting is then one update per counter shard, whatever the
// number of runs.
func (s *Store) InsertResults(ctx context.Context, runs []Run) (recorded []bool, err error) {
	recorded = make([]bool, len(runs))
	for _, c := range chunks(len(runs), insertBatch) {
		docs := make([]any, 0, c[1]-c[0])
		for i := c[0]; i < c[1]; i++ {
			docs = append(docs, runs[i])
		}
		dup, err := s.insertMany(ctx, s.results, docs)
		if err != nil {
			return recorded, fmt.Errorf("store: record %d results: %w", len(docs), err)
		}
		for i := c[0]; i < c[1]; i++ {
			recorded[i] = !dup[i-c[0]]
		}
	}
	return recorded, nil
}

// Recorded returns the runs[i] whose recorded[i] is true.
func Recorded(runs []Run, recorded []bool) []Run {
	var out []Run
	for i, ok := range recorded {
		if ok {
			out = append(out, runs[i])
		}
	}
	return out
}

// RunQuery selects runs, newest scheduled first.
type RunQuery struct {
	Job    string    // empty: all jobs
	Status string    // empty: any
	Before time.Time // scheduled strictly before (paging cursor)
	Since  time.Time // scheduled at or after
	Limit  int       // default 50, at most 1000
}

// Runs lists runs with their outcomes merged in.
func (s *Store) Runs(ctx context.Context, q RunQuery) ([]Run, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	q.Limit = min(q.Limit, 1000)
	filter := bson.M{}
	if q.Job != "" {
		filter["job"] = q.Job
	}
	window := bson.M{}
	if !q.Before.IsZero() {
		window["$lt"] = q.Before
	}
	if !q.Since.IsZero() {
		window["$gte"] = q.Since
	}
	if len(window) > 0 {
		filter["scheduled_at"] = window
	}
	ctx, cancel := context.WithTimeout(ctx, 4*s.timeout)
	defer cancel()

	if Final(q.Status) {
		// An outcome is a result document, or the run document itself
		// when its claim was recorded together with it (RecordClaims).
		filter["status"] = q.Status
		results, err := s.findRuns(ctx, s.results, filter, q.Limit)
		if err != nil {
			return nil, err
		}
		runs, err := s.findRuns(ctx, s.runs, filter, q.Limit)
		if err != nil {
			return nil, err
		}
		merged := append(results, runs...)
		slices.SortFunc(merged, func(a, b Run) int {
			if c := b.ScheduledAt.Compare(a.ScheduledAt); c != 0 {
				return c
			}
			return strings.Compare(b.FireID, a.FireID)
		})
		// A retried write can leave an outcome in both; show it once.
		merged = slices.CompactFunc(merged, func(a, b Run) bool { return a.FireID == b.FireID })
		return merged[:min(len(merged), q.Limit)], nil
	}
	if q.Status != "" {
		filter["status"] = q.Status
	}
	fetch := q.Limit
	if q.Status == StatusRunning {
		fetch = q.Limit * 4 // some of these finished; over-fetch and drop those
	}
	claims, err := s.findRuns(ctx, s.runs, filter, fetch)
	if err != nil {
		return nil, err
	}
	merged, err := s.mergeResults(ctx, claims)
	if err != nil {
		return nil, err
	}
	if q.Status == StatusRunning {
		out := merged[:0]
		for _, r := range merged {
			if r.Status == StatusRunning {
				out = append(out, r)
			}
		}
		merged = out
	}
	if len(merged) > q.Limit {
		merged = merged[:q.Limit]
	}
	return merged, nil
}

func (s *Store) findRuns(ctx context.Context, c *mongo.Collection, filter bson.M, limit int) ([]Run, error) {
	cur, err := c.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "scheduled_at", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("store: list runs: %w", err)
	}
	runs, err := all[Run](ctx, cur)
	if err != nil {
		return nil, fmt.Errorf("store: list runs: %w", err)
	}
	return runs, nil
}

// mergeResults replaces each running claim by its outcome where one exists.
func (s *Store) mergeResults(ctx context.Context, claims []Run) ([]Run, error) {
	var ids []string
	for _, c := range claims {
		if c.Status == StatusRunning {
			ids = append(ids, c.FireID)
		}
	}
	if len(ids) == 0 {
		return claims, nil
	}
	cur, err := s.results.Find(ctx, bson.M{"_id": bson.M{"$in": ids}})
	if err != nil {
		return nil, fmt.Errorf("store: read results: %w", err)
	}
	results, err := all[Run](ctx, cur)
	if err != nil {
		return nil, fmt.Errorf("store: read results: %w", err)
	}
	byID := make(map[string]Run, len(results))
	for _, r := range results {
		byID[r.FireID] = r
	}
	for i, c := range claims {
		if r, ok := byID[c.FireID]; ok {
			claims[i] = r
		}
	}
	return claims, nil
}

// UnfinishedClaims returns fired ticks claimed under an epoch older than
// epoch, scheduled at or after since, that have no outcome. They belong to an
// executor that ended before recording one.
func (s *Store) UnfinishedClaims(ctx context.Context, epoch int64, since time.Time) ([]Run, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.timeout)
	defer cancel()
	claims, err := s.findRuns(ctx, s.runs, bson.M{
		"epoch":        bson.M{"$lt": epoch},
		"status":       StatusRunning,
		"scheduled_at": bson.M{"$gte": since},
	}, 100_000)
	if err != nil {
		return nil, err
	}
	merged, err := s.mergeResults(ctx, claims)
	if err != nil {
		return nil, err
	}
	var out []Run
	for _, r := range merged {
		if r.Status == StatusRunning {
			out = append(out, r)
		}
	}
	return out, nil
}

// Claimed returns the claims of job at the given ticks, keyed by tick (UTC).
func (s *Store) Claimed(ctx context.Context, jobName string, ticks []time.Time) (map[time.Time]Run, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.timeout)
	defer cancel()
	cur, err := s.runs.Find(ctx, bson.M{"job": jobName, "scheduled_at": bson.M{"$in": ticks}})
	if err != nil {
		return nil, fmt.Errorf("store: read claims of %q: %w", jobName, err)
	}
	runs, err := all[Run](ctx, cur)
	if err != nil {
		return nil, fmt.Errorf("store: read claims of %q: %w", jobName, err)
	}
	out := make(map[time.Time]Run, len(runs))
	for _, r := range runs {
		out[r.ScheduledAt.UTC()] = r
	}
	return out, nil
}
