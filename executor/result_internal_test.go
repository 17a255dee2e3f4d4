package executor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/target"
)

func TestResultRunKeepsTheAttemptLogOnlyForRetries(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC)
	attempt := func(n, status int) store.Attempt {
		at := t0.Add(time.Duration(n) * time.Second)
		return store.Attempt{Number: n, StartedAt: at, FinishedAt: at.Add(10 * time.Millisecond), HTTPStatus: status}
	}
	tests := []struct {
		name     string
		attempts []store.Attempt
		wantLog  int
	}{
		{"none made", nil, 0},
		{"one: the run's own fields", []store.Attempt{attempt(1, 200)}, 0},
		{"retried: every attempt", []store.Attempt{attempt(1, 500), attempt(2, 500), attempt(3, 200)}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := target.Result{Status: store.StatusSucceeded, Attempts: tc.attempts, FinishedAt: t0.Add(5 * time.Second)}
			if len(tc.attempts) > 0 {
				res.StartedAt = tc.attempts[0].StartedAt
				res.HTTPStatus = tc.attempts[len(tc.attempts)-1].HTTPStatus
			}
			r := resultRun(store.Run{FireID: "f", Job: "j", ScheduledAt: t0}, res)
			require.Equal(t, len(tc.attempts), r.Attempts)
			require.Len(t, r.AttemptLog, tc.wantLog)
			require.Equal(t, res.HTTPStatus, r.HTTPStatus)
			if len(tc.attempts) > 0 {
				require.Equal(t, tc.attempts[0].StartedAt, *r.StartedAt)
			}
		})
	}
}
