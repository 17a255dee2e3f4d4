package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/batonhq/baton/job"
)

// statShards is the number of counter documents. Jobs hash onto them, so a
// count of any number of results costs at most this many updates. It
// balances the updates per count against the size of each document: on
// FerretDB an update costs about 2ms plus a term quadratic in the
// document's size, so at 100,000 jobs 64 shards (1,560 jobs each) cost
// over a minute per count and 1,024 shards (100 jobs each) a few seconds.
const statShards = 1024

// legacyShards is the number of counter documents of earlier versions,
// whose ids were the shard numbers; statsFor still reads them.
const legacyShards = 64

type jobCounters struct {
	Run      int64           `bson:"run"`
	OK       int64           `bson:"ok"`
	Fail     int64           `bson:"fail"`
	Consec   int64           `bson:"consec"`
	LastOK   *time.Time      `bson:"last_ok,omitempty"`
	LastFail *time.Time      `bson:"last_fail,omitempty"`
	Last     *job.RunSummary `bson:"last,omitempty"`
}

type statShard struct {
	ID   any                    `bson:"_id"`
	Jobs map[string]jobCounters `bson:"jobs"`
}

func shardOf(name string) int { return int(nameHash(name) % statShards) }

func legacyShardOf(name string) int { return int(nameHash(name) % legacyShards) }

func nameHash(name string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return h.Sum32()
}

// shardID is a shard's _id. It is a string because FerretDB looks a
// document up by _id only for string and ObjectID ids; with an integer id
// every counter update read and decoded every shard, all 100,000 jobs'
// counters, which made recording a burst quadratic (measured: 40s per
// 500 results at 10,000 jobs). Earlier versions used the shard number of
// legacyShardOf; statsFor still reads those documents and adds them in.
func shardID(sh int) string { return fmt.Sprintf("s%04d", sh) }

// fieldKey encodes a job name as a document key: update paths treat '.' as
// a separator, and '~' cannot occur in a job name.
func fieldKey(name string) string { return strings.ReplaceAll(name, ".", "~") }
func fieldName(key string) string { return strings.ReplaceAll(key, "~", ".") }

// Tally adds up finished runs per job, so that any number of runs is
// counted with one update per touched counter shard. Its size is bounded by
// the number of jobs, not of runs. The zero value is empty.
type Tally struct {
	jobs   map[string]*tallied
	runs   int
	cursor int // the shard the next Take starts at
}

// tallied is one job's part of a tally. A tally holds every job that ran
// since its counters were last written (at 100,000 jobs, minutes on the
// test store), so times are kept as Unix nanoseconds: 112 bytes a job
// instead of 176 with time.Time and a job.RunSummary.
type tallied struct {
	run, ok, fail   int64
	failsAfterOK    int64
	lastOK, lastErr int64 // finished, Unix ns; set when ok, fail > 0
	// The latest finished run, for the job's last_run.
	lastFireID              string
	lastStatus              string
	lastScheduled, lastDone int64 // Unix ns
	sawOK                   bool
}

func (d *tallied) lastRun() job.RunSummary {
	return job.RunSummary{FireID: d.lastFireID, Status: d.lastStatus,
		ScheduledAt: time.Unix(0, d.lastScheduled).UTC(), FinishedAt: time.Unix(0, d.lastDone).UTC()}
}

// Add adds runs, each recorded once (by InsertResults), to the tally.
func (t *Tally) Add(runs []Run) {
	if t.jobs == nil {
		t.jobs = map[string]*tallied{}
	}
	runs = slices.Clone(runs)
	sort.SliceStable(runs, func(a, b int) bool { return finishedAt(runs[a]).Before(finishedAt(runs[b])) })
	for _, r := range runs {
		d := t.jobs[r.Job]
		if d == nil {
			d = &tallied{}
			t.jobs[r.Job] = d
		}
		fin := finishedAt(r).UnixNano()
		if d.run == 0 || fin >= d.lastDone {
			d.lastFireID, d.lastStatus = r.FireID, r.Status
			d.lastScheduled, d.lastDone = r.ScheduledAt.UnixNano(), fin
		}
		d.run++
		switch r.Status {
		case StatusSucceeded:
			d.ok++
			d.sawOK, d.failsAfterOK = true, 0
			d.lastOK = fin
		case StatusFailed:
			d.fail++
			d.failsAfterOK++
			d.lastErr = fin
		}
	}
	t.runs += len(runs)
}

// Runs is the number of runs added.
func (t *Tally) Runs() int { return t.runs }

// Take removes and returns the tally of whole counter shards, taken in
// turn from where the last Take stopped, until it holds at least maxJobs
// jobs or all of them. The cost of counting is in the shards' size, so this
// bounds one write without starving any shard.
func (t *Tally) Take(maxJobs int) Tally {
	if len(t.jobs) <= maxJobs {
		all := *t
		*t = Tally{cursor: t.cursor}
		return all
	}
	byShard := map[int][]string{}
	for name := range t.jobs {
		sh := shardOf(name)
		byShard[sh] = append(byShard[sh], name)
	}
	out := Tally{jobs: map[string]*tallied{}}
	sh := t.cursor
	for len(out.jobs) < maxJobs {
		for _, name := range byShard[sh] {
			d := t.jobs[name]
			delete(t.jobs, name)
			out.jobs[name] = d
			out.runs += int(d.run)
		}
		sh = (sh + 1) % statShards
	}
	t.runs -= out.runs
	t.cursor = sh
	return out
}

// CountRuns adds finished runs to their jobs' counters: CountTally of a
// tally of runs.
func (s *Store) CountRuns(ctx context.Context, runs []Run) error {
	var t Tally
	t.Add(runs)
	return s.CountTally(ctx, &t)
}

// CountTally adds a tally to the job counters with atomic updates, one per
// touched shard. Count each run once, after InsertResults recorded it: a
// failed call may have applied some shards, so a retry can count those
// twice, and giving up leaves the counters (not the run records) short.
func (s *Store) CountTally(ctx context.Context, t *Tally) error {
	if t.runs == 0 {
		return nil
	}
	byShard := map[int]map[string]*tallied{}
	for name, d := range t.jobs {
		sh := shardOf(name)
		if byShard[sh] == nil {
			byShard[sh] = map[string]*tallied{}
		}
		byShard[sh][name] = d
	}
	models := make([]mongo.WriteModel, 0, len(byShard))
	for sh, jobs := range byShard {
		inc, set, maxes := bson.M{}, bson.M{}, bson.M{}
		for name, d := range jobs {
			p := "jobs." + fieldKey(name) + "."
			inc[p+"run"] = d.run
			if d.ok > 0 {
				inc[p+"ok"] = d.ok
				maxes[p+"last_ok"] = time.Unix(0, d.lastOK).UTC()
			}
			if d.fail > 0 {
				inc[p+"fail"] = d.fail
				maxes[p+"last_fail"] = time.Unix(0, d.lastErr).UTC()
			}
			// A success in the batch resets the streak to the failures after it.
			if d.sawOK {
				set[p+"consec"] = d.failsAfterOK
			} else if d.failsAfterOK > 0 {
				inc[p+"consec"] = d.failsAfterOK
			}
			set[p+"last"] = d.lastRun()
		}
		update := bson.M{"$inc": inc, "$set": set}
		if len(maxes) > 0 {
			update["$max"] = maxes
		}
		models = append(models, mongo.NewUpdateOneModel().SetFilter(bson.M{"_id": shardID(sh)}).SetUpdate(update).SetUpsert(true))
	}
	for _, c := range chunks(len(models), maxBatch) {
		octx, cancel := context.WithTimeout(ctx, 4*s.timeout)
		_, err := s.stats.BulkWrite(octx, models[c[0]:c[1]], options.BulkWrite().SetOrdered(false))
		cancel()
		if err != nil {
			return fmt.Errorf("store: count %d runs: %w", t.runs, err)
		}
	}
	return nil
}

func finishedAt(r Run) time.Time {
	if r.FinishedAt != nil {
		return *r.FinishedAt
	}
	return r.ClaimedAt
}

// statsFor returns the counters of the named jobs.
func (s *Store) statsFor(ctx context.Context, names []string) (map[string]job.Stats, error) {
	want := map[any]bool{}
	for _, n := range names {
		want[shardID(shardOf(n))] = true
		want[legacyShardOf(n)] = true
	}
	ids := make([]any, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	octx, cancel := s.opContext(ctx)
	defer cancel()
	cur, err := s.stats.Find(octx, bson.M{"_id": bson.M{"$in": ids}})
	if err != nil {
		return nil, fmt.Errorf("store: read counters: %w", err)
	}
	shards, err := all[statShard](octx, cur)
	if err != nil {
		return nil, fmt.Errorf("store: read counters: %w", err)
	}
	// Legacy shards first: the current shard's counters continue them.
	sort.SliceStable(shards, func(a, b int) bool {
		_, sa := shards[a].ID.(string)
		_, sb := shards[b].ID.(string)
		return !sa && sb
	})
	out := make(map[string]job.Stats, len(names))
	for _, sh := range shards {
		for key, c := range sh.Jobs {
			name := fieldName(key)
			out[name] = addStats(out[name], c)
		}
	}
	return out, nil
}

// addStats continues st with the later counters c.
func addStats(st job.Stats, c jobCounters) job.Stats {
	st.RunCount += c.Run
	st.SuccessCount += c.OK
	st.FailureCount += c.Fail
	if c.LastOK != nil {
		st.ConsecutiveFailures = c.Consec // c saw a success: its streak is the whole streak
	} else {
		st.ConsecutiveFailures += c.Consec
	}
	st.LastSuccessAt = later(st.LastSuccessAt, c.LastOK)
	st.LastFailureAt = later(st.LastFailureAt, c.LastFail)
	if c.Last != nil && (st.LastRun == nil || !c.Last.FinishedAt.Before(st.LastRun.FinishedAt)) {
		st.LastRun = c.Last
	}
	return st
}

func later(a, b *time.Time) *time.Time {
	if a == nil || (b != nil && b.After(*a)) {
		return b
	}
	return a
}

func (s *Store) clearStats(ctx context.Context, name string) error {
	octx, cancel := s.opContext(ctx)
	defer cancel()
	_, err := s.stats.UpdateMany(octx, bson.M{"_id": bson.M{"$in": []any{shardID(shardOf(name)), legacyShardOf(name)}}},
		bson.M{"$unset": bson.M{"jobs." + fieldKey(name): ""}})
	if err != nil {
		return fmt.Errorf("store: clear counters of %q: %w", name, err)
	}
	return nil
}
