package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	if os.Getenv(auxEnv) != "" { // this binary is a helper process
		runAux()
		return
	}
	if os.Getenv(gocronEnv) != "" { // this binary is the bare-gocron process
		runGocron()
		return
	}
	os.Exit(m.Run())
}

// TestSmoke runs the benchmark at a tiny size: every row must come out,
// with every fire received once and recorded, and the spread scenario's
// window received in full, with and without jitter. Two rounds: each gets
// its ratios, and their median is printed.
func TestSmoke(t *testing.T) {
	o, err := parseFlags([]string{"-sizes", "50", "-rounds", "2", "-quick", "-scenarios", "ref,burst,crud,spread", "-crud-n", "20",
		"-lead", "4s", "-timeout", "60s", "-spread-n", "600", "-spread-for", "5s",
		"-spread-jitters", "0,1s"})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rows, err := run(ctx, o, &out)
	t.Log("\n" + out.String())
	require.NoError(t, err)
	require.Len(t, rows, 2*3+4+2)
	require.Contains(t, out.String(), "baton-burst-50 over 2 rounds: last vs raw median")
	require.Contains(t, out.String(), "the raw loop's wave of 10 requests")
	require.Contains(t, out.String(), "baton-spread-jitter1s-600: ")
	require.Contains(t, out.String(), "lag at send from each fire's jittered start, by minute p50")
	for _, r := range rows {
		require.NotContains(t, r.Note, "MISMATCH", r.Scenario)
		require.NotContains(t, r.Note, "SHORT", r.Scenario)
		if strings.HasPrefix(r.Scenario, "crud") {
			require.Positive(t, r.Rate, r.Scenario)
			continue
		}
		require.Positive(t, r.P99, r.Scenario)
	}
}
