package store_test

import (
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/testenv"
	"github.com/batonhq/baton/store"
)

// sameCell returns n job names whose ticks of group at t share one cell.
func sameCell(group string, t time.Time, prefix string, n int) []string {
	want := store.CellOf(group, prefix+"0", t)
	names := []string{prefix + "0"}
	for i := 1; len(names) < n; i++ {
		name := fmt.Sprint(prefix, i)
		if store.CellOf(group, name, t) == want {
			names = append(names, name)
		}
	}
	return names
}

type claimer func(f store.Fence, claims []store.Run) ([]bool, error)

func claimers(s *store.Store) map[string]claimer {
	return map[string]claimer{
		"cells": func(f store.Fence, claims []store.Run) ([]bool, error) {
			ok, _, err := s.ClaimCells(ctx, f, claims)
			return ok, err
		},
		"recorded": func(f store.Fence, claims []store.Run) ([]bool, error) {
			return s.Claim(ctx, f, claims)
		},
	}
}

func TestTickFireIDIsAVersion7UUIDOfItsTick(t *testing.T) {
	t.Parallel()
	tick := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id := store.TickFireID("a", tick)
	u, err := uuid.Parse(id)
	require.NoError(t, err)
	require.EqualValues(t, 7, u.Version())
	sec, nsec := u.Time().UnixTime()
	require.Equal(t, tick, time.Unix(sec, nsec).UTC())
	require.Equal(t, id, store.TickFireID("a", tick), "the same for every executor")
	require.NotEqual(t, id, store.TickFireID("b", tick))
	require.NotEqual(t, id, store.TickFireID("a", tick.Add(time.Nanosecond)))
}

// Cell ids are what executors of different versions meet on, so they must
// not change: the shard is FNV-1a of the job name, as it always was.
func TestCellIDsAreStable(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
	for _, name := range []string{"", "a", "job-000001", "billing.nightly-report", "ünïcode"} {
		h := fnv.New32a()
		_, _ = h.Write([]byte(name))
		require.Equal(t, int(h.Sum32()%16), store.CellShard(name), name)
		require.Equal(t, fmt.Sprintf("g@%d#%d", at.UnixNano(), h.Sum32()%16), store.CellOf("g", name, at), name)
	}
}

func TestCellClaimsAreUniquePerTick(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	f := acquire(t, s, "x").Fence()
	tick := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const group = "* * * * *|UTC"
	n := sameCell(group, tick, "j", 6)
	fires := 0
	claim := func(job string) store.Run {
		fires++
		return store.Run{FireID: fmt.Sprint("f", fires), Job: job, ScheduledAt: tick, Group: group,
			Trigger: store.TriggerSchedule, Status: store.StatusRunning, Epoch: f.Epoch, ClaimedAt: tick}
	}
	steps := []struct {
		name  string
		by    string
		jobs  []string
		want  []bool
		about string
	}{
		{"first pass", "cells", []string{n[0], n[1], n[0]}, []bool{true, true, false}, "the cell lists both; a tick twice in one call is claimed once"},
		{"second executor", "cells", []string{n[0], n[2]}, []bool{false, true}, "listed jobs are taken; a job the cell does not list is claimed alone"},
		{"catch-up", "recorded", []string{n[1], n[2], n[3]}, []bool{false, false, true}, "the same rules with run documents written first"},
		{"late joiner", "cells", []string{n[3], n[4]}, []bool{false, true}, "alone claims are unique too"},
	}
	cs := claimers(s)
	for _, st := range steps {
		var claims []store.Run
		for _, j := range st.jobs {
			claims = append(claims, claim(j))
		}
		got, err := cs[st.by](f, claims)
		require.NoError(t, err, st.name)
		require.Equal(t, st.want, got, "%s: %s", st.name, st.about)
	}
}

func TestCellClaimRaceHasOneWinnerPerTick(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	f := acquire(t, s, "x").Fence()
	tick := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
	const group = "* * * * *|UTC"
	n := sameCell(group, tick, "r", 9)
	var (
		mu   sync.Mutex
		wins = map[string]int{}
		wg   sync.WaitGroup
	)
	cs := claimers(s)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			by := cs["cells"]
			if i%2 == 1 {
				by = cs["recorded"]
			}
			// Every claimant wants the shared tick and one of its own.
			claims := []store.Run{
				{FireID: fmt.Sprint("shared", i), Job: n[0], ScheduledAt: tick, Group: group, Status: store.StatusRunning, Epoch: f.Epoch},
				{FireID: fmt.Sprint("own", i), Job: n[i+1], ScheduledAt: tick, Group: group, Status: store.StatusRunning, Epoch: f.Epoch},
			}
			got, err := by(f, claims)
			require.NoError(t, err)
			mu.Lock()
			defer mu.Unlock()
			for k, ok := range got {
				if ok {
					wins[claims[k].Job]++
				}
			}
		}()
	}
	wg.Wait()
	for _, j := range n {
		require.Equal(t, 1, wins[j], "job %s", j)
	}
}

func TestCellOverflowIsClaimedAlone(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	store.SetCellCap(s, 2)
	f := acquire(t, s, "x").Fence()
	tick := time.Date(2026, 1, 1, 0, 2, 0, 0, time.UTC)
	const group = "* * * * *|UTC"
	n := sameCell(group, tick, "o", 4)
	var claims []store.Run
	for i, j := range n {
		claims = append(claims, store.Run{FireID: fmt.Sprint("o", i), Job: j, ScheduledAt: tick, Group: group, Status: store.StatusRunning, Epoch: f.Epoch})
	}
	got, cells, err := s.ClaimCells(ctx, f, claims)
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, true, true}, got)
	require.Len(t, cells, 1)
	require.Len(t, cells[store.CellID(claims[0])], 2, "the cell lists two; two were claimed alone")
	for i := range claims {
		claims[i].FireID += "again"
	}
	got, _, err = s.ClaimCells(ctx, f, claims)
	require.NoError(t, err)
	require.Equal(t, []bool{false, false, false, false}, got)
}

func TestClaimLeavesTicksOfTheVersionBeforeCells(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	f := acquire(t, s, "x").Fence()
	tick := time.Date(2026, 1, 1, 0, 3, 0, 0, time.UTC)
	old := store.Run{FireID: "old", Job: "a", ScheduledAt: tick, Status: store.StatusRunning, Epoch: f.Epoch}
	got, err := s.Claim(ctx, f, []store.Run{old}) // no group: claimed alone, as before cells
	require.NoError(t, err)
	require.Equal(t, []bool{true}, got)

	now := old
	now.FireID, now.Group = "new", "* * * * *|UTC"
	got, err = s.Claim(ctx, f, []store.Run{now})
	require.NoError(t, err)
	require.Equal(t, []bool{false}, got, "its cell was free, but its run document was there")
	now.FireID = "newer"
	got, _, err = s.ClaimCells(ctx, f, []store.Run{now})
	require.NoError(t, err)
	require.Equal(t, []bool{false}, got)
}

func TestClaimsOfCellsAreRecorded(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	f := acquire(t, s, "x").Fence()
	tick := time.Date(2026, 1, 1, 0, 4, 0, 0, time.UTC)
	var claims []store.Run
	for i := range 40 { // several cells
		c := store.Run{FireID: store.TickFireID(fmt.Sprint("job", i), tick), Job: fmt.Sprint("job", i), ScheduledAt: tick,
			Group: "* * * * *|UTC", Trigger: store.TriggerSchedule, Status: store.StatusRunning, Epoch: f.Epoch, ClaimedAt: tick}
		switch i % 4 { // listed in full, not by name only
		case 1:
			c.FireID = fmt.Sprint("own-id-", i)
		case 2:
			c.Status, c.Reason = store.StatusMissed, "late"
		case 3:
			c.Trigger = store.TriggerCatchUp
		}
		claims = append(claims, c)
	}
	got, cells, err := s.ClaimCells(ctx, f, claims)
	require.NoError(t, err)
	require.NotContains(t, got, false)
	require.Greater(t, len(cells), 1)

	runs, err := s.Runs(ctx, store.RunQuery{Since: tick})
	require.NoError(t, err)
	require.Empty(t, runs, "no run documents until they are recorded")

	// The executor records half of its cells before it dies.
	var ids []string
	var done []store.Run
	for id, idx := range cells {
		if len(ids) == len(cells)/2 {
			break
		}
		ids = append(ids, id)
		for _, i := range idx {
			done = append(done, claims[i])
		}
	}
	_, err = s.RecordClaims(ctx, ids, done)
	require.NoError(t, err)
	_, err = s.RecordClaims(ctx, ids, done)
	require.NoError(t, err, "recording again changes nothing")

	n, err := s.RecordOpenCells(ctx, f.Epoch, 100)
	require.NoError(t, err)
	require.Zero(t, n, "its own executor's cells are not open to it")
	n, err = s.RecordOpenCells(ctx, f.Epoch+1, 100)
	require.NoError(t, err)
	require.Equal(t, len(cells)-len(ids), n, "the next executor records the rest")
	n, err = s.RecordOpenCells(ctx, f.Epoch+1, 100)
	require.NoError(t, err)
	require.Zero(t, n)

	runs, err = s.Runs(ctx, store.RunQuery{Since: tick, Limit: 100})
	require.NoError(t, err)
	byID := map[string]store.Run{}
	for _, r := range runs {
		byID[r.FireID] = r
	}
	for _, c := range claims {
		r, ok := byID[c.FireID]
		require.True(t, ok, "the run of %s is recorded under its fire id", c.Job)
		r.ClaimedAt, c.ClaimedAt, c.Group = r.ClaimedAt.UTC(), c.ClaimedAt.UTC(), ""
		r.ScheduledAt, c.ScheduledAt = r.ScheduledAt.UTC(), c.ScheduledAt.UTC()
		require.Equal(t, c, r, "as claimed")
	}
	require.Len(t, runs, len(claims))
	un, err := s.UnfinishedClaims(ctx, f.Epoch+1, tick)
	require.NoError(t, err)
	require.Len(t, un, len(claims)-len(claims)/4, "every fired tick without an outcome is open for reconciling")
}

func TestOutcomesAreRecordedWithTheirClaims(t *testing.T) {
	t.Parallel()
	s := testenv.Store(t)
	f := acquire(t, s, "x").Fence()
	tick := time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC)
	var claims []store.Run
	for _, j := range []string{"a", "b", "c"} {
		claims = append(claims, store.Run{FireID: store.TickFireID(j, tick), Job: j, ScheduledAt: tick, Group: "g",
			Trigger: store.TriggerSchedule, Status: store.StatusRunning, Epoch: f.Epoch, ClaimedAt: tick})
	}
	_, cells, err := s.ClaimCells(ctx, f, claims)
	require.NoError(t, err)
	// Another executor wrote c's claim as running first.
	_, err = s.RecordClaims(ctx, nil, claims[2:])
	require.NoError(t, err)

	finished := func(r store.Run, status string) store.Run {
		fin := tick.Add(time.Second)
		r.Status, r.StartedAt, r.FinishedAt = status, &tick, &fin
		return r
	}
	runs := []store.Run{finished(claims[0], store.StatusSucceeded), finished(claims[1], store.StatusFailed), finished(claims[2], store.StatusFailed)}
	recorded, err := s.RecordClaims(ctx, keys(cells), runs)
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, true}, recorded, "in the run document, or, for c, as a result")

	tests := []struct {
		status string
		want   []string
	}{
		{store.StatusFailed, []string{"c", "b"}},
		{store.StatusSucceeded, []string{"a"}},
		{store.StatusRunning, nil},
		{"", []string{"c", "b", "a"}},
	}
	for _, tc := range tests {
		got, err := s.Runs(ctx, store.RunQuery{Status: tc.status, Since: tick})
		require.NoError(t, err)
		var jobs []string
		for _, r := range got {
			require.NotEqual(t, store.StatusRunning, r.Status)
			jobs = append(jobs, r.Job)
		}
		slices.Sort(tc.want)
		slices.Sort(jobs)
		require.Equal(t, tc.want, jobs, "status %q", tc.status)
	}
	un, err := s.UnfinishedClaims(ctx, f.Epoch+1, tick)
	require.NoError(t, err)
	require.Empty(t, un)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
