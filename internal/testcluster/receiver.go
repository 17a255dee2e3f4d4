package testcluster

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Fire is one request a Receiver got from Baton.
type Fire struct {
	Job         string    `json:"job"`
	ScheduledAt time.Time `json:"scheduled_at"`
	FireID      string    `json:"fire_id"`
	Instance    string    `json:"instance"`
	Epoch       int64     `json:"epoch"`
	Attempt     int       `json:"attempt"`
	Trigger     string    `json:"trigger"`
	ReceivedAt  time.Time `json:"received_at"`
}

// Receiver is an HTTP target that logs every fire. A job's URL may end in
// /fail/N to make its first N attempts per fire fail with 500, or carry
// ?sleep=DURATION to answer slowly.
type Receiver struct {
	ln  net.Listener
	srv *http.Server

	mu    sync.Mutex
	fires []Fire
	fails map[string]int // fire id -> failures served
	count atomic.Int64
}

// StartReceiver listens on 127.0.0.1.
func StartReceiver() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{ln: ln, fails: map[string]int{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// URL returns the receiver's URL for a path.
func (r *Receiver) URL(path string) string { return "http://" + r.ln.Addr().String() + path }

// Close stops the receiver.
func (r *Receiver) Close() error { return r.srv.Close() }

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	_, _ = io.Copy(io.Discard, req.Body)
	f := Fire{
		Job:        req.Header.Get("X-Baton-Job"),
		FireID:     req.Header.Get("X-Baton-Fire-Id"),
		Instance:   req.Header.Get("X-Baton-Instance"),
		Trigger:    req.Header.Get("X-Baton-Trigger"),
		ReceivedAt: time.Now().UTC(),
	}
	f.ScheduledAt, _ = time.Parse(time.RFC3339Nano, req.Header.Get("X-Baton-Scheduled-At"))
	f.Epoch, _ = strconv.ParseInt(req.Header.Get("X-Baton-Epoch"), 10, 64)
	f.Attempt, _ = strconv.Atoi(req.Header.Get("X-Baton-Attempt"))
	if d, err := time.ParseDuration(req.URL.Query().Get("sleep")); err == nil {
		time.Sleep(d)
	}
	r.mu.Lock()
	r.fires = append(r.fires, f)
	var failFirst int
	if _, err := fmt.Sscanf(lastSegment(req.URL.Path, "/fail/"), "%d", &failFirst); err == nil && r.fails[f.FireID] < failFirst {
		r.fails[f.FireID]++
		r.mu.Unlock()
		r.count.Add(1)
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
		return
	}
	r.mu.Unlock()
	r.count.Add(1)
	w.WriteHeader(http.StatusOK)
}

func lastSegment(path, marker string) string {
	for i := len(path) - len(marker); i >= 0; i-- {
		if path[i:i+len(marker)] == marker {
			return path[i+len(marker):]
		}
	}
	return ""
}

// Count is the number of requests received.
func (r *Receiver) Count() int64 { return r.count.Load() }

// Fires returns a copy of every fire received, in arrival order.
func (r *Receiver) Fires() []Fire {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Fire(nil), r.fires...)
}

// Tally counts, per job and scheduled time, the distinct fires received
// (retries of one fire count once).
type Tally map[string]map[time.Time]int

// Tally builds a Tally from first attempts.
func (r *Receiver) Tally() Tally {
	t := Tally{}
	seen := map[string]bool{}
	for _, f := range r.Fires() {
		if seen[f.FireID] {
			continue
		}
		seen[f.FireID] = true
		if t[f.Job] == nil {
			t[f.Job] = map[time.Time]int{}
		}
		t[f.Job][f.ScheduledAt.UTC()]++
	}
	return t
}

// Duplicates lists (job, tick) pairs fired more than once.
func (t Tally) Duplicates() []string {
	var out []string
	for j, ticks := range t {
		for at, n := range ticks {
			if n > 1 {
				out = append(out, fmt.Sprintf("%s@%s x%d", j, at.Format(time.RFC3339Nano), n))
			}
		}
	}
	sort.Strings(out)
	return out
}
