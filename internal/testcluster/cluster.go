// Package testcluster runs a Baton cluster of real processes for tests and
// tools: it builds the baton binary, starts instances as separate OS
// processes (each optionally behind a fault proxy to the broker), and offers
// a receiver that logs every fire.
package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/batonhq/baton/internal/faultproxy"
)

// ModuleRoot is the directory holding go.mod.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildMu  sync.Mutex
	builtBin = map[bool]string{}
)

// Build compiles the baton binary once per process (with the race detector
// when the caller runs under it) and returns its path.
func Build() (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := builtBin[raceEnabled]; ok {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "baton-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "baton")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, ".")
	cmd := exec.Command("go", args...)
	cmd.Dir = ModuleRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	builtBin[raceEnabled] = bin
	return bin, nil
}

// Options configure a cluster.
type Options struct {
	Name     string // cluster.name, also the database
	MongoURI string
	AMQPURL  string
	// Proxied puts a fault proxy between each instance and the broker.
	Proxied bool
	// MongoProxy, if set, is the address instances use for the store
	// instead of MongoURI's host (a proxy shared by all instances).
	MongoProxy string
	// Env adds BATON_* settings to every instance.
	Env map[string]string
	// LogDir receives one log file per instance (default: a temp dir).
	LogDir string
	// Token is sent as a bearer token by Do and the helpers built on it,
	// for clusters started with auth.tokens.
	Token string
}

// Cluster is a set of instances.
type Cluster struct {
	opts  Options
	bin   string
	mu    sync.Mutex
	Nodes []*Node
}

// Node is one instance process.
type Node struct {
	ID         string
	Datacenter string
	HTTP       string // host:port
	Proxy      *faultproxy.Proxy

	c       *Cluster
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// New prepares a cluster; Add starts instances.
func New(opts Options) (*Cluster, error) {
	bin, err := Build()
	if err != nil {
		return nil, err
	}
	if opts.LogDir == "" {
		if opts.LogDir, err = os.MkdirTemp("", "baton-logs-"); err != nil {
			return nil, err
		}
	}
	return &Cluster{opts: opts, bin: bin}, nil
}

// LogDir is where instance logs are written.
func (c *Cluster) LogDir() string { return c.opts.LogDir }

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Add starts a new instance with the given id and datacenter.
func (c *Cluster) Add(id, datacenter string) (*Node, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	return c.AddAt(id, datacenter, addr)
}

// AddAt starts a new instance serving HTTP on addr.
func (c *Cluster) AddAt(id, datacenter, addr string) (*Node, error) {
	n := &Node{ID: id, Datacenter: datacenter, HTTP: addr, c: c, logPath: filepath.Join(c.opts.LogDir, id+".log")}
	if c.opts.Proxied {
		u, err := url.Parse(c.opts.AMQPURL)
		if err != nil {
			return nil, err
		}
		if n.Proxy, err = faultproxy.Start(u.Host); err != nil {
			return nil, err
		}
	}
	if err := n.Start(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.Nodes = append(c.Nodes, n)
	c.mu.Unlock()
	return n, nil
}

// Env returns the environment an instance runs with.
func (n *Node) Env() []string {
	o := n.c.opts
	amqpURL := o.AMQPURL
	if n.Proxy != nil {
		u, _ := url.Parse(o.AMQPURL)
		u.Host = n.Proxy.Addr()
		amqpURL = u.String()
	}
	mongoURI := o.MongoURI
	if o.MongoProxy != "" {
		u, _ := url.Parse(o.MongoURI)
		u.Host = o.MongoProxy
		mongoURI = u.String()
	}
	env := map[string]string{
		"BATON_CLUSTER_NAME":        o.Name,
		"BATON_INSTANCE_ID":         n.ID,
		"BATON_INSTANCE_DATACENTER": n.Datacenter,
		"BATON_HTTP_LISTEN":         n.HTTP,
		"BATON_AMQP_URL":            amqpURL,
		"BATON_MONGO_URI":           mongoURI,
		"BATON_MONGO_DATABASE":      o.Name,
		"BATON_LOG_FORMAT":          "text",
	}
	for k, v := range o.Env {
		env[k] = v
	}
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// Start (re)starts the instance process.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "\n=== start %s ===\n", time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(n.c.bin, "serve")
	cmd.Env = n.Env()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	n.cmd = cmd
	exited := make(chan struct{})
	n.exited = exited
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	return n.waitHTTP(30 * time.Second)
}

func (n *Node) waitHTTP(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + n.HTTP + "/healthz")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-n.exited:
			return fmt.Errorf("instance %s exited during start; see %s; it ended with:\n%s", n.ID, n.logPath, n.logTail(1500))
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("instance %s did not serve HTTP within %s; see %s", n.ID, timeout, n.logPath)
}

// logTail returns the last max bytes of the instance's log, so that a
// failure report from a run whose logs are gone (CI) still says why.
func (n *Node) logTail(max int) string {
	log := n.Log()
	return log[len(log)-min(len(log), max):]
}

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the process to die.
func (n *Node) Kill() { n.signal(syscall.SIGKILL, 10*time.Second) }

// Term sends SIGTERM and waits up to timeout for a clean exit.
func (n *Node) Term(timeout time.Duration) error {
	if !n.signal(syscall.SIGTERM, timeout) {
		n.Kill()
		return fmt.Errorf("instance %s did not exit within %s of SIGTERM", n.ID, timeout)
	}
	return nil
}

func (n *Node) signal(sig syscall.Signal, wait time.Duration) bool {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return true
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return true
	case <-time.After(wait):
		return false
	}
}

// Freeze stops the process (SIGSTOP) without closing its connections: it
// looks alive to the network but does nothing.
func (n *Node) Freeze() { n.sendSignal(syscall.SIGSTOP) }

// Thaw resumes a frozen process (SIGCONT).
func (n *Node) Thaw() { n.sendSignal(syscall.SIGCONT) }

func (n *Node) sendSignal(sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(sig)
	}
}

// LogOf returns the log of the k-th process started with id (0 is the
// first), including one that failed to start.
func (c *Cluster) LogOf(id string, k int) string {
	b, _ := os.ReadFile(filepath.Join(c.opts.LogDir, id+".log"))
	parts := strings.Split(string(b), "\n=== start ")
	if k+1 < len(parts) {
		return parts[k+1]
	}
	return ""
}

// RaceReports returns the race detector reports found in instance logs.
// Instances built with -race print them but keep running, so a test must
// look for them.
func (c *Cluster) RaceReports() []string {
	var out []string
	files, _ := filepath.Glob(filepath.Join(c.opts.LogDir, "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, part := range strings.Split(string(b), "WARNING: DATA RACE")[1:] {
			out = append(out, filepath.Base(f)+": WARNING: DATA RACE"+part[:min(len(part), 4000)])
		}
	}
	return out
}

// Log returns the instance's log so far.
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.logPath)
	return string(b)
}

// Close stops every instance (SIGTERM, then SIGKILL) and proxy.
func (c *Cluster) Close() {
	c.mu.Lock()
	nodes := append([]*Node(nil), c.Nodes...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = n.Term(15 * time.Second)
			if n.Proxy != nil {
				_ = n.Proxy.Close()
			}
		}()
	}
	wg.Wait()
}

// ClusterInfo is GET /api/v1/cluster.
type ClusterInfo struct {
	Executor *struct {
		Instance string    `json:"instance"`
		Epoch    int64     `json:"epoch"`
		Since    time.Time `json:"since"`
	} `json:"executor"`
	Instances []struct {
		ID         string    `json:"id"`
		Datacenter string    `json:"datacenter"`
		Role       string    `json:"role"`
		LastSeen   time.Time `json:"last_seen"`
	} `json:"instances"`
}

// Cluster asks the node for the cluster's state.
func (n *Node) Cluster() (ClusterInfo, error) {
	var ci ClusterInfo
	_, err := n.Do(http.MethodGet, "/api/v1/cluster", nil, &ci)
	return ci, err
}

// Executor returns the node every running node agrees is the executor.
func (c *Cluster) Executor() (*Node, int64, error) {
	c.mu.Lock()
	nodes := append([]*Node(nil), c.Nodes...)
	c.mu.Unlock()
	var holder string
	var epoch int64
	for _, n := range nodes {
		if !n.Running() {
			continue
		}
		ci, err := n.Cluster()
		if err != nil {
			return nil, 0, err
		}
		if ci.Executor == nil {
			return nil, 0, errors.New("no executor")
		}
		if holder != "" && (ci.Executor.Instance != holder || ci.Executor.Epoch != epoch) {
			return nil, 0, fmt.Errorf("instances disagree: %s@%d vs %s@%d", holder, epoch, ci.Executor.Instance, ci.Executor.Epoch)
		}
		holder, epoch = ci.Executor.Instance, ci.Executor.Epoch
	}
	for _, n := range nodes {
		if n.ID == holder {
			return n, epoch, nil
		}
	}
	return nil, 0, fmt.Errorf("executor %q is not one of this cluster's nodes", holder)
}

// WaitExecutor waits until the nodes agree on an executor.
func (c *Cluster) WaitExecutor(ctx context.Context) (*Node, int64, error) {
	for {
		n, epoch, err := c.Executor()
		if err == nil {
			return n, epoch, nil
		}
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("no agreed executor: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Do calls the node's API. body is JSON-encoded unless it is a string or
// []byte. out, if not nil, receives the decoded response.
func (n *Node) Do(method, path string, body any, out any) (int, error) {
	return n.DoToken(n.c.opts.Token, method, path, body, out)
}

// DoToken is Do with an explicit bearer token; "" sends none.
func (n *Node) DoToken(token, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://"+n.HTTP+path, rd)
	if err != nil {
		return 0, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s %s (%d): %w: %s", method, path, resp.StatusCode, err, data)
		}
	}
	return resp.StatusCode, nil
}

// DeleteQueues deletes a cluster's queues from the broker at url, each on
// its own channel (a failed delete closes its channel). It returns the
// first error.
func DeleteQueues(url string, names ...string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	var first error
	for _, n := range names {
		ch, err := conn.Channel()
		if err == nil {
			_, err = ch.QueueDelete(n, false, false, false)
			_ = ch.Close()
		}
		if first == nil {
			first = err
		}
	}
	return first
}
