package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/batonhq/baton/internal/devstore"
	"github.com/batonhq/baton/target"
)

// The store and the receiver run in a helper process (this binary again,
// with auxEnv set), so that the benchmark process's CPU and RSS are the
// scheduler's and its HTTP client's alone, for Baton and for the reference
// rows alike. The helper's CPU is reported separately.
const auxEnv = "BATON_BENCH_AUX"

// runAux is the helper process: FerretDB plus the receiver. It prints one
// line, "ready <mongo uri> <receiver url>", and runs until stdin closes.
func runAux() {
	if p := os.Getenv("BATON_BENCH_AUX_PROFILE"); p != "" {
		// Profiles the store and the receiver, for looking into the store.
		f, err := os.Create(p)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	st, err := devstore.Start(devstore.Options{Dir: os.Getenv("BATON_BENCH_AUX_DIR")})
	if err != nil {
		fmt.Fprintln(os.Stderr, "aux:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "aux:", err)
		os.Exit(1)
	}
	rc := newReceiver()
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("ready %s http://%s\n", st.URI(), ln.Addr())
	signal.Ignore(syscall.SIGINT) // the parent stops us by closing stdin
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = srv.Close()
	st.Stop()
}

// receiver answers every fire with 200 and records its lag: received time
// minus the X-Baton-Scheduled-At it carries. /_reset and /_stats control it.
type receiver struct {
	mu    sync.Mutex
	lags  []time.Duration
	seen  map[string]struct{}
	dups  int
	first time.Time
	last  time.Time
	// firstBy is each executor instance's first fire.
	firstBy map[string]time.Time
}

func newReceiver() *receiver {
	return &receiver{seen: map[string]struct{}{}, firstBy: map[string]time.Time{}}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch req.URL.Path {
	case "/_reset":
		rc.mu.Lock()
		rc.lags, rc.seen, rc.dups, rc.first, rc.last = nil, map[string]struct{}{}, 0, time.Time{}, time.Time{}
		rc.firstBy = map[string]time.Time{}
		rc.mu.Unlock()
		return
	case "/_stats":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rc.stats())
		return
	}
	now := time.Now()
	_, _ = io.Copy(io.Discard, req.Body)
	at, err := time.Parse(time.RFC3339Nano, req.Header.Get(target.HeaderScheduledAt))
	key := req.Header.Get(target.HeaderJob) + "@" + req.Header.Get(target.HeaderScheduledAt)
	rc.mu.Lock()
	if err == nil {
		rc.lags = append(rc.lags, now.Sub(at))
	}
	if _, ok := rc.seen[key]; ok {
		rc.dups++
	} else {
		rc.seen[key] = struct{}{}
	}
	if rc.first.IsZero() {
		rc.first = now
	}
	rc.last = now
	if id := req.Header.Get(target.HeaderInstance); rc.firstBy[id].IsZero() {
		rc.firstBy[id] = now
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// recvStats summarizes what the receiver got since the last reset.
type recvStats struct {
	Count    int                  `json:"count"`
	Distinct int                  `json:"distinct"`
	Dups     int                  `json:"dups"`
	First    time.Time            `json:"first"`
	Last     time.Time            `json:"last"`
	P50      time.Duration        `json:"p50"`
	P99      time.Duration        `json:"p99"`
	Max      time.Duration        `json:"max"`
	FirstBy  map[string]time.Time `json:"first_by"`
}

func (rc *receiver) stats() recvStats {
	rc.mu.Lock()
	lags := slices.Clone(rc.lags)
	s := recvStats{Count: len(rc.lags), Distinct: len(rc.seen), Dups: rc.dups, First: rc.first, Last: rc.last,
		FirstBy: maps.Clone(rc.firstBy)}
	rc.mu.Unlock()
	slices.Sort(lags)
	s.P50, s.P99, s.Max = quantile(lags, 0.50), quantile(lags, 0.99), quantile(lags, 1)
	return s
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// aux is the driver's handle on the helper process.
type aux struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	MongoURI string
	URL      string // receiver base URL
	ctl      *http.Client
}

func startAux(log *slog.Logger) (*aux, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe) // main (or TestMain) sees auxEnv and runs runAux
	cmd.Env = append(os.Environ(), auxEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 || f[0] != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("aux process did not start: %q %v", line, err)
	}
	log.Debug("aux process running", "pid", cmd.Process.Pid, "mongo", f[1], "receiver", f[2])
	return &aux{cmd: cmd, stdin: stdin, MongoURI: f[1], URL: f[2], ctl: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (a *aux) Close() {
	_ = a.stdin.Close()
	done := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-done
	}
}

func (a *aux) Reset(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+"/_reset", nil)
	resp, err := a.ctl.Do(req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func (a *aux) Stats(ctx context.Context) (recvStats, error) {
	var s recvStats
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+"/_stats", nil)
	resp, err := a.ctl.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// CPU is the helper's CPU time so far (store and receiver).
func (a *aux) CPU() time.Duration { return procCPU(a.cmd.Process.Pid) }

// procCPU reads utime+stime of a process from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}
