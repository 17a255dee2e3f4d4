package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/batonhq/baton/internal/devstore"
	"github.com/batonhq/baton/target"
)

// The store and the receiver run in helper processes (this binary again,
// with auxEnv set to auxStore or auxReceiver), so that the benchmark
// process's CPU and RSS are the scheduler's and its HTTP client's alone,
// for Baton and for the reference rows alike, and so that the store's
// collections do not stall the receiver, which in production is another
// machine. The helpers' CPU is reported together.
const (
	auxEnv      = "BATON_BENCH_AUX"
	auxStore    = "store"
	auxReceiver = "receiver"
)

// runAux is a helper process: FerretDB or the receiver, as auxEnv says. It
// prints one line, "ready <address>", and runs until stdin closes.
func runAux() {
	var addr string
	var stop func()
	switch role := os.Getenv(auxEnv); role {
	case auxStore:
		if p := os.Getenv("BATON_BENCH_AUX_PROFILE"); p != "" {
			// Profiles the store, for looking into it.
			if stopProfile, err := startCPUProfile(p); err == nil {
				defer stopProfile()
			}
		}
		st, err := devstore.Start(devstore.Options{Dir: os.Getenv("BATON_BENCH_AUX_DIR")})
		if err != nil {
			fmt.Fprintln(os.Stderr, "aux:", err)
			os.Exit(1)
		}
		addr, stop = st.URI(), st.Stop
	case auxReceiver:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "aux:", err)
			os.Exit(1)
		}
		srv := &http.Server{Handler: newReceiver(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		addr, stop = "http://"+ln.Addr().String(), func() { _ = srv.Close() }
	default:
		fmt.Fprintf(os.Stderr, "aux: %s=%q: want %q or %q\n", auxEnv, role, auxStore, auxReceiver)
		os.Exit(2)
	}
	fmt.Printf("ready %s\n", addr)
	signal.Ignore(syscall.SIGINT) // the parent stops us by closing stdin
	_, _ = io.Copy(io.Discard, os.Stdin)
	stop()
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
	// firstBy is each executor instance's first fire, firstLagBy its lag,
	// and lastBy its last fire.
	firstBy, lastBy map[string]time.Time
	firstLagBy      map[string]time.Duration
	// from and to, when set by /_reset, window what is counted by
	// scheduled time: a sustained load is measured over ticks due in a
	// window, not over whatever arrives while it lasts. byMinute holds the
	// window's lags by minute since from, to show lag growing.
	from, to time.Time
	byMinute [][]time.Duration
}

func newReceiver() *receiver {
	return &receiver{seen: map[string]struct{}{}, firstBy: map[string]time.Time{}, lastBy: map[string]time.Time{},
		firstLagBy: map[string]time.Duration{}}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch req.URL.Path {
	case "/_reset":
		from, err1 := optTime(req, "from")
		to, err2 := optTime(req, "to")
		if err := errors.Join(err1, err2); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.lags, rc.seen, rc.dups, rc.first, rc.last = nil, map[string]struct{}{}, 0, time.Time{}, time.Time{}
		rc.firstBy, rc.lastBy, rc.firstLagBy = map[string]time.Time{}, map[string]time.Time{}, map[string]time.Duration{}
		rc.from, rc.to, rc.byMinute = from, to, nil
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
	if !rc.from.IsZero() && (err != nil || at.Before(rc.from) || !at.Before(rc.to)) {
		rc.mu.Unlock() // outside the window: answered, not counted
		w.WriteHeader(http.StatusOK)
		return
	}
	if err == nil {
		rc.lags = append(rc.lags, now.Sub(at))
		rc.addByMinute(at, now.Sub(at))
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
	id := req.Header.Get(target.HeaderInstance)
	if rc.firstBy[id].IsZero() {
		rc.firstBy[id] = now
		if err == nil {
			rc.firstLagBy[id] = now.Sub(at)
		}
	}
	rc.lastBy[id] = now
	rc.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// addByMinute files a windowed fire's lag under its minute of the window.
// Called with mu held.
func (rc *receiver) addByMinute(at time.Time, lag time.Duration) {
	if rc.from.IsZero() {
		return
	}
	k := int(at.Sub(rc.from) / time.Minute)
	for len(rc.byMinute) <= k {
		rc.byMinute = append(rc.byMinute, nil)
	}
	rc.byMinute[k] = append(rc.byMinute[k], lag)
}

// optTime is the RFC 3339 time in req's query parameter key, or zero when
// it is absent.
func optTime(req *http.Request, key string) (time.Time, error) {
	v := req.URL.Query().Get(key)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, fmt.Errorf("%s: %w", key, err)
	}
	return t, nil
}

// lagStats sums up a set of lags.
type lagStats struct {
	Count int           `json:"count"`
	P50   time.Duration `json:"p50"`
	P99   time.Duration `json:"p99"`
	Max   time.Duration `json:"max"`
}

// summarize sorts lags in place and sums them up.
func summarize(lags []time.Duration) lagStats {
	slices.Sort(lags)
	return lagStats{Count: len(lags), P50: quantile(lags, 0.50), P99: quantile(lags, 0.99), Max: quantile(lags, 1)}
}

// recvStats summarizes what the receiver got since the last reset.
type recvStats struct {
	lagStats
	Distinct int                  `json:"distinct"`
	Dups     int                  `json:"dups"`
	First    time.Time            `json:"first"`
	Last     time.Time            `json:"last"`
	FirstBy  map[string]time.Time `json:"first_by"`
	// FirstLagBy is the lag of each instance's first fire, LastBy its last
	// fire.
	FirstLagBy map[string]time.Duration `json:"first_lag_by"`
	LastBy     map[string]time.Time     `json:"last_by"`
	// Minutes are the window's lags by minute of scheduled time, when
	// the reset set a window.
	Minutes []lagStats `json:"minutes,omitempty"`
}

func (rc *receiver) stats() recvStats {
	rc.mu.Lock()
	lags := slices.Clone(rc.lags)
	byMinute := make([][]time.Duration, len(rc.byMinute))
	for k, l := range rc.byMinute {
		byMinute[k] = slices.Clone(l)
	}
	s := recvStats{Distinct: len(rc.seen), Dups: rc.dups, First: rc.first, Last: rc.last,
		FirstBy: maps.Clone(rc.firstBy), FirstLagBy: maps.Clone(rc.firstLagBy), LastBy: maps.Clone(rc.lastBy)}
	rc.mu.Unlock()
	s.lagStats = summarize(lags)
	for _, l := range byMinute {
		s.Minutes = append(s.Minutes, summarize(l))
	}
	return s
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// aux is the driver's handle on the helper processes.
type aux struct {
	store, recv *helper
	MongoURI    string
	URL         string // receiver base URL
	ctl         *http.Client
}

func startAux(log *slog.Logger) (*aux, error) {
	store, mongoURI, err := startHelper(auxStore)
	if err != nil {
		return nil, err
	}
	recv, url, err := startHelper(auxReceiver)
	if err != nil {
		store.close()
		return nil, err
	}
	log.Debug("aux processes running", "store_pid", store.cmd.Process.Pid, "mongo", mongoURI,
		"receiver_pid", recv.cmd.Process.Pid, "receiver", url)
	return &aux{store: store, recv: recv, MongoURI: mongoURI, URL: url, ctl: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (a *aux) Close() {
	a.recv.close()
	a.store.close()
}

// helper is one helper process.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startHelper starts the helper process of role and returns it with the
// address it serves.
func startHelper(role string) (*helper, string, error) {
	cmd, err := selfCommand(context.Background(), auxEnv, role) // stopped by close
	if err != nil {
		return nil, "", err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 2 || f[0] != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, "", fmt.Errorf("the %s process did not start: %q %v", role, line, err)
	}
	return &helper{cmd: cmd, stdin: stdin}, f[1], nil
}

// selfCommand runs this binary again with env set to value; main (or
// TestMain) sees env and runs that process's part.
func selfCommand(ctx context.Context, env, value string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), env+"="+value)
	cmd.Stderr = os.Stderr
	return cmd, nil
}

// close stops the process by closing its stdin, and kills it after 10 s.
func (h *helper) close() {
	_ = h.stdin.Close()
	done := make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = h.cmd.Process.Kill()
		<-done
	}
}

// Reset clears the receiver's figures.
func (a *aux) Reset(ctx context.Context) error { return a.Window(ctx, time.Time{}, time.Time{}) }

// Window clears the receiver's figures and, unless from is zero, has it
// count only the fires scheduled in [from, to).
func (a *aux) Window(ctx context.Context, from, to time.Time) error {
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.Format(time.RFC3339Nano))
		q.Set("to", to.Format(time.RFC3339Nano))
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+"/_reset?"+q.Encode(), nil)
	resp, err := a.ctl.Do(req)
	if err != nil {
		return fmt.Errorf("reset the receiver: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("reset the receiver: %s: %s", resp.Status, b)
	}
	return nil
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

// CPU is the helpers' CPU time so far (store and receiver).
func (a *aux) CPU() time.Duration {
	return procCPU(a.store.cmd.Process.Pid) + procCPU(a.recv.cmd.Process.Pid)
}

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
