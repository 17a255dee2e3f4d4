package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Scheduled ticks are claimed a cell at a time. A cell is one tick of one
// schedule group (Run.Group) and one of cellShards shards of job names; its
// claim is one document whose _id is unique, listing the jobs it claimed.
// A burst of 100,000 jobs on one schedule is then 16 inserts instead of
// 100,000 (on FerretDB each document costs about 0.3 ms of a serialised
// SQLite, which was 37 of burst-100k's 38 s).
//
// A tick (job, t) is claimed by whichever comes first:
//   - the cell document of (group, t, shard(job)), if it lists the job;
//   - otherwise the job's own run document, unique on (job, scheduled_at),
//     inserted only after the cell document is known to exist.
//
// Every claimant of (job, t) tries the same cell _id first, and cell
// documents are never changed after insert, so two claimants always meet on
// one unique key: the cell, or the run document. A claimant that finds the
// cell taken reads which jobs it lists and claims the others one by one
// (a job that joined its group after the group's pass, or a loading batch
// after the first).
//
// The run documents of jobs claimed through a cell are written afterwards,
// off the firing path (RecordClaims); a cell is marked recorded once they
// are. RecordOpenCells writes them for cells an earlier executor left
// unrecorded, so every claimed tick gets its run document.
const cellShards = 16

// maxCellMembers bounds a cell document well under MongoDB's 16 MB: the
// rest of a larger shard is claimed one by one, which the rule allows since
// the cell exists by then. Store.cellCap is this unless a test lowers it.
const maxCellMembers = 10_000

// cellDoc is a cell's claim. A job that fires with the cell's trigger and
// the fire id TickFireID gives is listed by name only, in Jobs: an array of
// strings costs FerretDB a fourteenth of an array of documents (measured:
// 100,000 claims in 16 cells, 0.25 s against 3.5 s). Any other claim, such
// as a tick recorded as missed, is listed in full, in Others.
type cellDoc struct {
	ID          string       `bson:"_id"`
	ScheduledAt time.Time    `bson:"scheduled_at"`
	Trigger     string       `bson:"trigger"`
	Instance    string       `bson:"instance"`
	Epoch       int64        `bson:"epoch"`
	ClaimedAt   time.Time    `bson:"claimed_at"`
	Recorded    bool         `bson:"recorded"`
	Jobs        []string     `bson:"jobs"`
	Others      []cellMember `bson:"others,omitempty"`
}

type cellMember struct {
	Job     string `bson:"j"`
	FireID  string `bson:"f"`
	Trigger string `bson:"t"`
	Status  string `bson:"s"`
	Reason  string `bson:"r,omitempty"`
}

// add lists c in the cell.
func (d *cellDoc) add(c Run) {
	if c.Status == StatusRunning && c.Trigger == d.Trigger && c.FireID == TickFireID(c.Job, c.ScheduledAt) {
		d.Jobs = append(d.Jobs, c.Job)
		return
	}
	d.Others = append(d.Others, cellMember{Job: c.Job, FireID: c.FireID, Trigger: c.Trigger, Status: c.Status, Reason: c.Reason})
}

// runs returns the claims the cell lists.
func (d *cellDoc) runs() []Run {
	out := make([]Run, 0, len(d.Jobs)+len(d.Others))
	claim := func(job, fireID, trigger, status, reason string) Run {
		return Run{FireID: fireID, Job: job, ScheduledAt: d.ScheduledAt, Trigger: trigger, Status: status,
			Reason: reason, Instance: d.Instance, Epoch: d.Epoch, ClaimedAt: d.ClaimedAt}
	}
	for _, j := range d.Jobs {
		out = append(out, claim(j, TickFireID(j, d.ScheduledAt), d.Trigger, StatusRunning, ""))
	}
	for _, m := range d.Others {
		out = append(out, claim(m.Job, m.FireID, m.Trigger, m.Status, m.Reason))
	}
	return out
}

// TickFireID is the fire id of job's tick t: a UUID in version 7's layout,
// its time part t's millisecond and the rest a hash of job and t. Any
// executor derives the same one, so a cell need not store it, and a
// receiver that deduplicates on it sees one id per tick.
func TickFireID(job string, t time.Time) string {
	h := sha256.New()
	_, _ = h.Write([]byte(job))
	_ = binary.Write(h, binary.BigEndian, t.UnixNano())
	var u uuid.UUID
	copy(u[:], h.Sum(nil))
	ms := uint64(t.UnixMilli())
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	u[6] = u[6]&0x0f | 0x70 // version 7
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return u.String()
}

// CellID names the cell that claims r's tick, or "" for a run claimed on
// its own (no group, such as a manual run).
func CellID(r Run) string {
	if r.Group == "" {
		return ""
	}
	return CellOf(r.Group, r.Job, r.ScheduledAt)
}

// CellOf names the cell of job's tick t in schedule group group.
func CellOf(group, job string, t time.Time) string {
	return fmt.Sprintf("%s@%d#%d", group, t.UnixNano(), CellShard(job))
}

// CellShard is the shard of job's cells: the cells of one group and tick
// are those of its jobs' shards. It is FNV-1a, written out so that it
// allocates nothing: a pass of 100,000 jobs asks it for each.
func CellShard(job string) int {
	const offset32, prime32 = 2166136261, 16777619
	h := uint32(offset32)
	for i := 0; i < len(job); i++ {
		h ^= uint32(job[i])
		h *= prime32
	}
	return int(h % cellShards)
}

// claimMode says what claim does with the run documents of ticks claimed
// through cells.
type claimMode int

const (
	// recordLater leaves them to RecordClaims.
	recordLater claimMode = iota
	// recordNow inserts them before returning, and a tick whose run
	// document already exists is reported not claimed.
	recordNow
)

// claim implements Claim and ClaimCells. cells maps each cell this call
// inserted to the indexes of the claims it holds.
func (s *Store) claim(ctx context.Context, f Fence, claims []Run, mode claimMode) (claimed []bool, cells map[string][]int, err error) {
	if err := s.CheckFence(ctx, f); err != nil {
		return nil, nil, err
	}
	claimed = make([]bool, len(claims))
	var order []string
	byCell := map[string][]int{}
	var alone []int
	for i, c := range claims {
		id := CellID(c)
		if id == "" {
			alone = append(alone, i)
			continue
		}
		if _, ok := byCell[id]; !ok {
			order = append(order, id)
		}
		byCell[id] = append(byCell[id], i)
	}

	// Insert the cells, each listing at most maxCellMembers distinct jobs.
	listed := map[string][]int{} // claims a cell lists
	over := map[string][]int{}   // claims beyond maxCellMembers
	docs := make([]any, 0, len(order))
	for _, id := range order {
		first := claims[byCell[id][0]]
		doc := cellDoc{ID: id, ScheduledAt: first.ScheduledAt, Trigger: first.Trigger, Instance: first.Instance,
			Epoch: first.Epoch, ClaimedAt: first.ClaimedAt}
		seen := map[string]bool{}
		for _, i := range byCell[id] {
			c := claims[i]
			switch {
			case seen[c.Job]:
				continue // the same tick twice in one call is claimed once
			case len(listed[id]) == s.cellCap:
				over[id] = append(over[id], i)
			default:
				doc.add(c)
				listed[id] = append(listed[id], i)
			}
			seen[c.Job] = true
		}
		docs = append(docs, doc)
	}
	var taken []string
	if len(docs) > 0 {
		dup, err := s.insertMany(ctx, s.cells, docs)
		if err != nil {
			return claimed, nil, fmt.Errorf("store: claim %d cells: %w", len(docs), err)
		}
		cells = map[string][]int{}
		for k, id := range order {
			if dup[k] {
				taken = append(taken, id)
				continue
			}
			cells[id] = listed[id]
			for _, i := range listed[id] {
				claimed[i] = true
			}
			alone = append(alone, over[id]...)
		}
	}

	// A taken cell claims the jobs it lists; the others are claimed alone.
	if len(taken) > 0 {
		has, err := s.cellJobs(ctx, taken)
		if err != nil {
			return claimed, cells, err
		}
		for _, id := range taken {
			for _, i := range slices.Concat(listed[id], over[id]) {
				if !has[id][claims[i].Job] {
					alone = append(alone, i)
				}
			}
		}
	}
	if err := s.insertRuns(ctx, claims, alone, claimed); err != nil {
		return claimed, cells, err
	}

	if mode == recordNow && len(cells) > 0 {
		var in []int
		for _, id := range order {
			in = append(in, cells[id]...)
		}
		ok := make([]bool, len(claims))
		err := s.insertRuns(ctx, claims, in, ok)
		for _, i := range in {
			// A run document that already exists was inserted by an
			// executor of an earlier version, which claimed ticks alone.
			claimed[i] = ok[i]
		}
		if err != nil {
			return claimed, cells, err
		}
		if err := s.markRecorded(ctx, keys(cells)); err != nil {
			return claimed, cells, err
		}
	}
	return claimed, cells, nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// insertRuns inserts claims[i] for each i in idx as run documents and sets
// ok[i] for those inserted; a duplicate (job, scheduled_at) leaves it false.
// On an error the rest stay false.
func (s *Store) insertRuns(ctx context.Context, claims []Run, idx []int, ok []bool) error {
	for _, c := range chunks(len(idx), insertBatch) {
		docs := make([]any, 0, c[1]-c[0])
		for _, i := range idx[c[0]:c[1]] {
			docs = append(docs, claims[i])
		}
		dup, err := s.insertMany(ctx, s.runs, docs)
		if err != nil {
			return fmt.Errorf("store: claim %d ticks: %w", len(docs), err)
		}
		for k, i := range idx[c[0]:c[1]] {
			ok[i] = !dup[k]
		}
	}
	return nil
}

// cellJobs returns the jobs each of the given cells lists. It reads them
// one by one: FerretDB looks a document up by _id only for an equality,
// and an $in would decode every cell.
func (s *Store) cellJobs(ctx context.Context, ids []string) (map[string]map[string]bool, error) {
	out := make(map[string]map[string]bool, len(ids))
	for _, id := range ids {
		octx, cancel := s.opContext(ctx)
		var d cellDoc
		err := s.cells.FindOne(octx, bson.M{"_id": id}, options.FindOne().SetProjection(bson.M{"jobs": 1, "others.j": 1})).Decode(&d)
		cancel()
		if err != nil {
			// Reported taken, so it exists: a cell not read could list
			// jobs that claiming alone would fire twice.
			return nil, fmt.Errorf("store: read cell %q: %w", id, err)
		}
		jobs := make(map[string]bool, len(d.Jobs)+len(d.Others))
		for _, j := range d.Jobs {
			jobs[j] = true
		}
		for _, m := range d.Others {
			jobs[m.Job] = true
		}
		out[id] = jobs
	}
	return out, nil
}

// RecordClaims writes the run documents of ticks claimed through cells
// (ClaimCells), and marks those cells recorded. A run may already carry its
// outcome, which then costs no result document of its own; recorded[i]
// reports, for such a run, whether this call recorded its outcome (once per
// run, as InsertResults). It may be repeated: a run document already there
// is left as it is, and an outcome that finds one goes to a result
// document. It is not fenced: the claims are facts, whoever holds the lease
// now.
func (s *Store) RecordClaims(ctx context.Context, cells []string, runs []Run) (recorded []bool, err error) {
	idx := make([]int, len(runs))
	for i := range idx {
		idx[i] = i
	}
	recorded = make([]bool, len(runs))
	if err := s.insertRuns(ctx, runs, idx, recorded); err != nil {
		return nil, err
	}
	var late []Run // outcomes whose run document was already there
	var at []int
	for i, r := range runs {
		if !Final(r.Status) {
			recorded[i] = false
		} else if !recorded[i] {
			late, at = append(late, r), append(at, i)
		}
	}
	if len(late) > 0 {
		rec, err := s.InsertResults(ctx, late)
		if err != nil {
			return nil, err
		}
		for k, i := range at {
			recorded[i] = rec[k]
		}
	}
	return recorded, s.markRecorded(ctx, cells)
}

func (s *Store) markRecorded(ctx context.Context, cells []string) error {
	models := make([]mongo.WriteModel, len(cells))
	for i, id := range cells { // one by one, for FerretDB as in cellJobs
		models[i] = mongo.NewUpdateOneModel().SetFilter(bson.M{"_id": id}).
			SetUpdate(bson.M{"$set": bson.M{"recorded": true}})
	}
	for _, c := range chunks(len(models), maxBatch) {
		octx, cancel := s.opContext(ctx)
		_, err := s.cells.BulkWrite(octx, models[c[0]:c[1]], options.BulkWrite().SetOrdered(false))
		cancel()
		if err != nil {
			return fmt.Errorf("store: mark %d cells recorded: %w", c[1]-c[0], err)
		}
	}
	return nil
}

// RecordOpenCells writes the run documents of up to limit cells claimed
// under an epoch older than epoch and never recorded: their executor ended
// first. It returns how many it recorded.
func (s *Store) RecordOpenCells(ctx context.Context, epoch int64, limit int) (int, error) {
	octx, cancel := context.WithTimeout(ctx, 4*s.timeout)
	defer cancel()
	cur, err := s.cells.Find(octx, bson.M{"recorded": false, "epoch": bson.M{"$lt": epoch}},
		options.Find().SetLimit(int64(limit)))
	if err != nil {
		return 0, fmt.Errorf("store: find unrecorded cells: %w", err)
	}
	docs, err := all[cellDoc](octx, cur)
	if err != nil {
		return 0, fmt.Errorf("store: find unrecorded cells: %w", err)
	}
	if len(docs) == 0 {
		return 0, nil
	}
	var ids []string
	var runs []Run
	for _, d := range docs {
		ids = append(ids, d.ID)
		runs = append(runs, d.runs()...)
	}
	_, err = s.RecordClaims(ctx, ids, runs)
	return len(docs), err
}
