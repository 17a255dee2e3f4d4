package testenv

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// storeProcess is the embedded FerretDB store running as its own process
// (internal/devstore/devstored), built without the race detector. In the
// test process, under -race, its SQLite engine was slow enough to starve
// lease renewals of connections on a loaded 2-core machine.
type storeProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	dir   string
	uri   string
}

func startStoreProcess() (*storeProcess, error) {
	dir, err := os.MkdirTemp("", "baton-devstored-")
	if err != nil {
		return nil, fmt.Errorf("testenv: temp dir: %w", err)
	}
	bin := filepath.Join(dir, "devstored")
	build := exec.Command("go", "build", "-o", bin, "github.com/batonhq/baton/internal/devstore/devstored")
	if out, err := build.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("testenv: build the store: %v\n%s", err, out)
	}
	p := &storeProcess{dir: dir, cmd: exec.Command(bin, "-dir", filepath.Join(dir, "data"))}
	p.cmd.Stderr = os.Stderr
	// The store exits when its standard input closes, so it never outlives
	// a test process that is killed.
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("testenv: start the store: %w", err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case p.uri = <-line:
	case <-time.After(time.Minute):
	}
	if !strings.HasPrefix(p.uri, "mongodb://") {
		p.stop()
		return nil, fmt.Errorf("testenv: the store did not start (first line %q)", p.uri)
	}
	return p, nil
}

func (p *storeProcess) stop() {
	_ = p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	_ = os.RemoveAll(p.dir)
}
