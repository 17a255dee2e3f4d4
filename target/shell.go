package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/batonhq/baton/job"
)

// outputGrace is how long a finished command's output pipe may stay open.
// Killing the process group closes it; only a process that left the group
// (setsid) can keep it open, and its output is not waited for.
const outputGrace = time.Second

// shellSender runs one command per attempt.
type shellSender struct{ enabled bool }

func (s *shellSender) send(ctx context.Context, f *Fire, attempt int, allow func() error) outcome {
	if !s.enabled {
		return failure(job.ErrShellDisabled)
	}
	t := f.Job.Target.Shell
	if t == nil || len(t.Command) == 0 {
		return failure(errors.New("target: the shell target has no command"))
	}
	var cmd *exec.Cmd
	if t.Shell {
		cmd = exec.Command("/bin/sh", "-c", strings.Join(t.Command, " "))
	} else {
		cmd = exec.Command(t.Command[0], t.Command[1:]...) // no shell: arguments stay literal
	}
	cmd.Dir = t.Dir
	cmd.Env = commandEnv(t.Env, f, attempt)
	// Its own process group, so that a timeout kills everything the
	// command started, not only its first process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// One pipe for stdout and stderr, passed to the command as a file so
	// that Wait returns when the command exits rather than when the last
	// holder of the pipe (a background grandchild) closes it.
	r, w, err := os.Pipe()
	if err != nil {
		return outcome{err: fmt.Errorf("target: create the output pipe: %w", err)}
	}
	defer r.Close()
	cmd.Stdout, cmd.Stderr = w, w

	if err := allow(); err != nil {
		_ = w.Close()
		return outcome{refused: err}
	}
	err = cmd.Start()
	_ = w.Close() // the command has its own copy
	if err != nil {
		return outcome{err: fmt.Errorf("start the command: %w", err)} // err names it
	}
	pgid := cmd.Process.Pid

	out := &tailBuffer{max: MaxOutput}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, r)
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	var werr error
	killed := false
	select {
	case werr = <-waited:
	case <-ctx.Done():
		killed = true
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		werr = <-waited
	}
	// Whatever the command left running in its group goes too: nothing a
	// run starts outlives it, and the output pipe closes.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-copied:
	case <-time.After(outputGrace):
		_ = r.Close() // unblocks the copy
		<-copied
	}

	code := cmd.ProcessState.ExitCode()
	res := outcome{exitCode: &code, output: out.String()}
	switch {
	case killed:
		res.err = fmt.Errorf("killed the process group: %w", ctx.Err())
	case werr != nil:
		res.err = fmt.Errorf("command failed: %w", werr)
	}
	return res
}

// commandEnv is the command's environment: Baton's own, then the job's
// env, then the fire's identification (BATON_JOB, BATON_SCHEDULED_AT,
// BATON_FIRE_ID, BATON_ATTEMPT, BATON_TRIGGER, BATON_INSTANCE,
// BATON_EPOCH). A later entry wins (os/exec keeps the last value of a
// duplicate), so a job can override the process's variables but not its
// identification.
func commandEnv(env map[string]string, f *Fire, attempt int) []string {
	base := os.Environ()
	id := identify(f, attempt)
	out := make([]string, 0, len(base)+len(env)+len(id))
	out = append(out, base...)
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	for _, kv := range id {
		out = append(out, kv.env+"="+kv.value)
	}
	return out
}
