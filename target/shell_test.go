package target_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/target"
)

func TestShell(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{cfg: target.Config{ShellEnabled: true}})
	asShell := func(j *job.Job) { j.Target.Shell.Shell = true }
	tests := []struct {
		name   string
		j      *job.Job
		status string
		exit   int
		output string
		err    string
	}{
		{name: "argv stays literal", j: shellJob([]string{"/bin/echo", "a  b", "$HOME", "*"}),
			status: store.StatusSucceeded, output: "a  b $HOME *\n"},
		{name: "argv looked up in PATH", j: shellJob([]string{"echo", "hi"}),
			status: store.StatusSucceeded, output: "hi\n"},
		{name: "shell when asked", j: shellJob([]string{"echo", "$BATON_JOB-$BATON_ATTEMPT", "&&", "exit", "3"}, asShell),
			status: store.StatusFailed, exit: 3, output: "job-1\n", err: "exit status 3"},
		{name: "stderr is captured", j: shellJob([]string{"echo out; echo err >&2"}, asShell),
			status: store.StatusSucceeded, output: "out\nerr\n"},
		{name: "env and dir", j: shellJob([]string{"/bin/sh", "-c", "echo $GREETING ${PATH:+inherited}; pwd"}, func(j *job.Job) {
			j.Target.Shell.Env = map[string]string{"GREETING": "hi"}
			j.Target.Shell.Dir = "/"
		}), status: store.StatusSucceeded, output: "hi inherited\n/\n"},
		{name: "identification", j: shellJob([]string{"env | grep -E '^BATON_(ATTEMPT|EPOCH|FIRE_ID|INSTANCE|JOB|SCHEDULED_AT|TRIGGER)=' | sort"}, asShell, func(j *job.Job) {
			j.Target.Shell.Env = map[string]string{"BATON_FIRE_ID": "spoofed"}
		}), status: store.StatusSucceeded, output: strings.Join([]string{
			"BATON_ATTEMPT=1", "BATON_EPOCH=7", "BATON_FIRE_ID=fire-job", "BATON_INSTANCE=i1",
			"BATON_JOB=job", "BATON_SCHEDULED_AT=" + scheduledHeader, "BATON_TRIGGER=schedule", ""}, "\n")},
		{name: "missing executable", j: shellJob([]string{"/no/such/command"}),
			status: store.StatusFailed, exit: -2, err: "start the command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := b.disp.Dispatch(context.Background(), fireOf(tc.j), allowAll)
			require.Equal(t, tc.status, res.Status, res.Error)
			requireAttempts(t, res, 1)
			if tc.exit == -2 {
				require.Nil(t, res.ExitCode, "it never ran")
			} else {
				require.NotNil(t, res.ExitCode)
				require.Equal(t, tc.exit, *res.ExitCode)
				require.Equal(t, tc.exit, *res.Attempts[0].ExitCode)
			}
			require.Equal(t, tc.output, res.Output)
			require.Contains(t, res.Error, tc.err)
		})
	}
}

func TestShellOutputIsCapped(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{cfg: target.Config{ShellEnabled: true}})
	tests := []struct {
		name   string
		script string
		suffix string
	}{
		{name: "ascii", script: "head -c 300000 /dev/zero | tr '\\0' x; echo END", suffix: "xEND\n"},
		{name: "multi-byte characters", script: "i=0; while [ $i -lt 30000 ]; do printf 'éèê'; i=$((i+1)); done; echo END", suffix: "êEND\n"},
		// Every invalid byte becomes a 3-byte replacement, so the cap applies again.
		{name: "invalid UTF-8", script: "i=0; while [ $i -lt 20000 ]; do printf '\\377a\\377b'; i=$((i+1)); done; echo END", suffix: "\uFFFDbEND\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := b.disp.Dispatch(context.Background(), fireOf(shellJob([]string{"/bin/sh", "-c", tc.script})), allowAll)
			require.Equal(t, store.StatusSucceeded, res.Status, res.Error)
			require.LessOrEqual(t, len(res.Output), target.MaxOutput)
			require.Greater(t, len(res.Output), target.MaxOutput-100)
			require.True(t, strings.HasPrefix(res.Output, "[output truncated"), "the cut is marked")
			require.True(t, strings.HasSuffix(res.Output, tc.suffix), "the end is kept: %q", res.Output[len(res.Output)-20:])
			require.Equal(t, strings.ToValidUTF8(res.Output, "!"), res.Output, "valid UTF-8")
		})
	}
}

// readPID waits for a command to write a process id to path.
func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(data), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	return pid
}

// gone reports whether pid no longer runs. A killed process whose parent
// died may stay a zombie when PID 1 does not reap (as in some containers);
// it runs nothing either.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesized command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// TestShellKillsTheProcessGroup checks that nothing a command starts
// outlives its run, however the run ends, and that a background process
// holding the output pipe does not hold up the result.
func TestShellKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{cfg: target.Config{ShellEnabled: true}})
	tests := []struct {
		name    string
		script  string // %s is the pid file
		timeout time.Duration
		cancel  bool
		status  string
		exit    int
		output  string
		err     string
	}{
		{name: "timeout", script: "sleep 30 & echo $! > %s; sleep 30", timeout: 300 * time.Millisecond,
			status: store.StatusFailed, exit: -1, err: "timed out after 300ms"},
		{name: "cancel", script: "sleep 30 & echo $! > %s; sleep 30", timeout: time.Minute, cancel: true,
			status: store.StatusCancelled, exit: -1, err: "cancelled: context canceled"},
		{name: "exit leaves a background process", script: "sleep 30 & echo $! > %s; echo done", timeout: time.Minute,
			status: store.StatusSucceeded, exit: 0, output: "done\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pidFile := filepath.Join(t.TempDir(), "pid")
			script := strings.ReplaceAll(tc.script, "%s", pidFile)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				go func() {
					readPID(t, pidFile)
					cancel()
				}()
			}
			start := time.Now()
			res := b.disp.Dispatch(ctx, fireOf(shellJob([]string{"/bin/sh", "-c", script}, withTimeout(tc.timeout))), allowAll)
			require.Less(t, time.Since(start), 3*time.Second)
			require.Equal(t, tc.status, res.Status, res.Error)
			require.NotNil(t, res.ExitCode)
			require.Equal(t, tc.exit, *res.ExitCode)
			require.Equal(t, tc.output, res.Output)
			require.Contains(t, res.Error, tc.err)
			pid := readPID(t, pidFile)
			require.Eventually(t, func() bool { return gone(pid) }, 2*time.Second, 10*time.Millisecond, "background process %d is gone", pid)
		})
	}
}

// TestShellNotRun checks that a command that must not run does not: shell
// targets disabled, or allow refusing.
func TestShellNotRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		enabled bool
		allow   func() error
		status  string
		err     string
	}{
		{name: "disabled", enabled: false, allow: allowAll, status: store.StatusFailed, err: "shell targets are disabled"},
		{name: "not allowed", enabled: true, allow: func() error { return errLostLead }, status: store.StatusCancelled, err: errLostLead.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{cfg: target.Config{ShellEnabled: tc.enabled}})
			marker := filepath.Join(t.TempDir(), "ran")
			res := b.disp.Dispatch(context.Background(), fireOf(shellJob([]string{"/usr/bin/touch", marker})), tc.allow)
			require.Equal(t, tc.status, res.Status)
			require.Contains(t, res.Error, tc.err)
			require.Nil(t, res.ExitCode)
			require.NoFileExists(t, marker)
		})
	}
}
