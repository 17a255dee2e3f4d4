package target_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
	"github.com/batonhq/baton/target"
)

// recorded is a request as the receiver saw it.
type recorded struct {
	method, host, body string
	header             http.Header
}

// receiver is an HTTP target that records requests and answers with
// handle's result.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []recorded
}

func newReceiver(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request), opts ...func(*http.Server)) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.requests = append(rc.requests, recorded{r.Method, r.Host, string(body), r.Header.Clone()})
		n := len(rc.requests)
		rc.mu.Unlock()
		if handle != nil {
			handle(n, w, r)
		}
	}))
	for _, o := range opts {
		o(rc.Config)
	}
	rc.Start()
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) seen() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.requests...)
}

func TestHTTPIdentification(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	rc := newReceiver(t, nil)
	j := httpJob(rc.URL+"/hook?x=1", func(j *job.Job) {
		j.Name = "billing"
		j.Target.HTTP.Method = "put"
		j.Target.HTTP.Body = `{"run":true}`
		j.Target.HTTP.Headers = map[string]string{
			"content-type":    "application/json",
			"Authorization":   "Bearer abc",
			"X-Baton-Fire-Id": "spoofed", // identification wins
			"Host":            "billing.example",
		}
	})
	f := fireOf(j)
	f.Trigger = store.TriggerManual
	res := b.disp.Dispatch(context.Background(), f, allowAll)
	require.Equal(t, store.StatusSucceeded, res.Status, res.Error)
	require.Equal(t, http.StatusOK, res.HTTPStatus)
	requireAttempts(t, res, 1)
	require.Equal(t, http.StatusOK, res.Attempts[0].HTTPStatus)

	seen := rc.seen()
	require.Len(t, seen, 1)
	got := seen[0]
	require.Equal(t, http.MethodPut, got.method)
	require.Equal(t, `{"run":true}`, got.body)
	require.Equal(t, "billing.example", got.host)
	for name, want := range map[string]string{
		"X-Baton-Job":          "billing",
		"X-Baton-Scheduled-At": scheduledHeader,
		"X-Baton-Fire-Id":      "fire-billing",
		"X-Baton-Attempt":      "1",
		"X-Baton-Trigger":      "manual",
		"X-Baton-Instance":     "i1",
		"X-Baton-Epoch":        "7",
		"Content-Type":         "application/json",
		"Authorization":        "Bearer abc",
		"User-Agent":           "baton",
	} {
		require.Equal(t, []string{want}, got.header.Values(name), name)
	}
	at, err := time.Parse(time.RFC3339Nano, got.header.Get("X-Baton-Scheduled-At"))
	require.NoError(t, err)
	require.True(t, at.Equal(scheduled))
}

func TestHTTPStatus(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	long := strings.Repeat("é", 5000) // 10 000 bytes, cut inside a character
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/418":
			w.WriteHeader(http.StatusTeapot)
			_, _ = io.WriteString(w, "  short and stout\n")
		case "/302":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/500":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, long)
		case "/big":
			_, _ = io.WriteString(w, strings.Repeat("x", 1<<20))
		}
	})
	tests := []struct {
		name    string
		path    string
		codes   []int
		status  string
		code    int
		wantErr string
	}{
		{name: "200", path: "/", status: store.StatusSucceeded, code: 200},
		{name: "204", path: "/204", status: store.StatusSucceeded, code: 204},
		{name: "large body", path: "/big", status: store.StatusSucceeded, code: 200},
		{name: "non-2xx fails and quotes the body", path: "/418", status: store.StatusFailed, code: 418, wantErr: "HTTP 418 I'm a teapot: short and stout"},
		{name: "success codes allow a non-2xx", path: "/418", codes: []int{418}, status: store.StatusSucceeded, code: 418},
		{name: "success codes exclude a 2xx", path: "/", codes: []int{202}, status: store.StatusFailed, code: 200, wantErr: "HTTP 200 OK"},
		{name: "redirects are not followed", path: "/302", status: store.StatusFailed, code: 302, wantErr: "HTTP 302 Found"},
		{name: "long error body is clipped", path: "/500", status: store.StatusFailed, code: 500, wantErr: "HTTP 500 Internal Server Error: éé"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			j := httpJob(rc.URL+tc.path, func(j *job.Job) { j.Target.HTTP.SuccessCodes = tc.codes })
			res := b.disp.Dispatch(context.Background(), fireOf(j), allowAll)
			require.Equal(t, tc.status, res.Status, res.Error)
			require.Equal(t, tc.code, res.HTTPStatus)
			requireAttempts(t, res, 1)
			require.Contains(t, res.Error, tc.wantErr)
			require.LessOrEqual(t, len(res.Error), 600)
			require.True(t, strings.ToValidUTF8(res.Error, "") == res.Error, "valid UTF-8")
			if tc.wantErr == "" {
				require.Empty(t, res.Error)
			}
		})
	}
}

func TestHTTPTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	start := time.Now()
	res := b.disp.Dispatch(context.Background(), fireOf(httpJob(rc.URL, withTimeout(200*time.Millisecond))), allowAll)
	elapsed := time.Since(start)
	require.Equal(t, store.StatusFailed, res.Status)
	requireAttempts(t, res, 1)
	require.Contains(t, res.Error, "timed out after 200ms")
	require.Zero(t, res.HTTPStatus)
	require.GreaterOrEqual(t, elapsed, 200*time.Millisecond)
	require.Less(t, elapsed, time.Second)
}

func TestHTTPRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		failures int // the receiver fails this many requests first
		attempts int // allowed
		status   string
		made     int
	}{
		{name: "fails twice then succeeds", failures: 2, attempts: 5, status: store.StatusSucceeded, made: 3},
		{name: "fails every attempt", failures: 100, attempts: 3, status: store.StatusFailed, made: 3},
		{name: "no retry configured", failures: 1, attempts: 0, status: store.StatusFailed, made: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{}) // the real wait, with tiny backoffs
			rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n <= tc.failures {
					http.Error(w, "not yet", http.StatusServiceUnavailable)
				}
			})
			allow := &countingAllow{n: 100}
			res := b.disp.Dispatch(context.Background(), fireOf(httpJob(rc.URL, withRetry(tc.attempts, 10*time.Millisecond, 20*time.Millisecond))), allow.allow)
			require.Equal(t, tc.status, res.Status, res.Error)
			requireAttempts(t, res, tc.made)
			require.Equal(t, tc.made, allow.calls, "allow is asked before every attempt")
			seen := rc.seen()
			require.Len(t, seen, tc.made)
			for i, r := range seen {
				require.Equal(t, []string{string(rune('1' + i))}, r.header.Values("X-Baton-Attempt"))
				require.Equal(t, "fire-job", r.header.Get("X-Baton-Fire-Id"), "one fire id for all attempts")
			}
			if tc.status == store.StatusFailed {
				require.Equal(t, res.Attempts[len(res.Attempts)-1].Error, res.Error)
				require.Contains(t, res.Error, "HTTP 503")
				require.Equal(t, 503, res.HTTPStatus)
			} else {
				require.Equal(t, 200, res.HTTPStatus)
				require.Contains(t, res.Attempts[0].Error, "HTTP 503 Service Unavailable: not yet")
			}
		})
	}
}

func TestRetryBackoff(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var waits []time.Duration
	b := setup(t, setupOpts{cfg: target.Config{Sleep: func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		return nil
	}}})
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	res := b.disp.Dispatch(context.Background(), fireOf(httpJob(rc.URL, withRetry(6, 100*time.Millisecond, 500*time.Millisecond))), allowAll)
	require.Equal(t, store.StatusFailed, res.Status)
	requireAttempts(t, res, 6)
	nominal := []time.Duration{100, 200, 400, 500, 500} // ms: doubling, capped
	require.Len(t, waits, len(nominal), "a wait between attempts, none after the last")
	for i, w := range waits {
		n := nominal[i] * time.Millisecond
		require.GreaterOrEqual(t, w, n/2, "wait %d", i)
		require.LessOrEqual(t, w, n, "wait %d", i)
	}
}

func TestAllowRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		allowed int // allow accepts this many calls
		made    int
	}{
		{name: "before the first attempt", allowed: 0, made: 0},
		{name: "before a retry", allowed: 1, made: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{noWait: true})
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
			allow := &countingAllow{n: tc.allowed}
			res := b.disp.Dispatch(context.Background(), fireOf(httpJob(rc.URL, withRetry(3, time.Millisecond, time.Millisecond))), allow.allow)
			require.Equal(t, store.StatusCancelled, res.Status)
			require.Equal(t, errLostLead.Error(), res.Error)
			requireAttempts(t, res, tc.made)
			require.Len(t, rc.seen(), tc.made, "nothing is sent once allow refuses")
			require.Equal(t, tc.made+1, allow.calls)
		})
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	errReplaced := errors.New("replaced by a newer run")

	t.Run("mid-request", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		arrived := make(chan struct{}, 1)
		rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		})
		ctx, cancel := context.WithCancelCause(context.Background())
		go func() {
			<-arrived
			cancel(errReplaced)
		}()
		start := time.Now()
		res := b.disp.Dispatch(ctx, fireOf(httpJob(rc.URL, withRetry(3, time.Millisecond, time.Millisecond))), allowAll)
		require.Less(t, time.Since(start), 2*time.Second)
		require.Equal(t, store.StatusCancelled, res.Status)
		require.Equal(t, "cancelled: replaced by a newer run", res.Error)
		requireAttempts(t, res, 1)
	})

	t.Run("during the backoff", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{}) // the real wait
		rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
		ctx, cancel := context.WithCancelCause(context.Background())
		time.AfterFunc(100*time.Millisecond, func() { cancel(errReplaced) })
		start := time.Now()
		res := b.disp.Dispatch(ctx, fireOf(httpJob(rc.URL, withRetry(3, time.Minute, time.Minute))), allowAll)
		require.Less(t, time.Since(start), 2*time.Second)
		require.Equal(t, store.StatusCancelled, res.Status)
		require.Equal(t, "cancelled: replaced by a newer run", res.Error)
		requireAttempts(t, res, 1)
		require.Len(t, rc.seen(), 1)
	})

	t.Run("before the first attempt", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		rc := newReceiver(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		allow := &countingAllow{n: 100}
		res := b.disp.Dispatch(ctx, fireOf(httpJob(rc.URL)), allow.allow)
		require.Equal(t, store.StatusCancelled, res.Status)
		require.Equal(t, "cancelled: context canceled", res.Error)
		requireAttempts(t, res, 0)
		require.Empty(t, rc.seen())
		require.Zero(t, allow.calls)
	})
}

// TestHTTPConcurrent dispatches a burst through one dispatcher, as the
// executor's workers do, and checks that the shared transport bounds and
// reuses connections.
func TestHTTPConcurrent(t *testing.T) {
	t.Parallel()
	const fires, maxConns = 500, 8
	b := setup(t, setupOpts{cfg: target.Config{MaxConnsPerHost: maxConns}})
	var conns atomic.Int32
	rc := newReceiver(t, nil, func(s *http.Server) {
		s.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
	})
	var wg sync.WaitGroup
	results := make([]target.Result, fires)
	for i := range fires {
		wg.Go(func() {
			f := fireOf(httpJob(rc.URL))
			f.FireID = fmt.Sprintf("fire-%d", i)
			results[i] = b.disp.Dispatch(context.Background(), f, allowAll)
		})
	}
	wg.Wait()
	for _, res := range results {
		require.Equal(t, store.StatusSucceeded, res.Status, res.Error)
	}
	ids := map[string]bool{}
	for _, r := range rc.seen() {
		ids[r.header.Get("X-Baton-Fire-Id")] = true
	}
	require.Len(t, ids, fires)
	require.LessOrEqual(t, conns.Load(), int32(maxConns), "connections are bounded and kept alive")
}

// BenchmarkHTTPDispatch measures the hot path: one fire of a job with a few
// headers to a kept-alive receiver.
func BenchmarkHTTPDispatch(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	d, err := target.New(target.Config{})
	require.NoError(b, err)
	defer d.Close()
	j := httpJob(srv.URL, func(j *job.Job) {
		j.Target.HTTP.Headers = map[string]string{"Authorization": "Bearer x", "Content-Type": "application/json"}
		j.Target.HTTP.Body = `{}`
	})
	f := fireOf(j)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := d.Dispatch(context.Background(), f, allowAll); res.Status != store.StatusSucceeded {
				b.Fatal(res.Error)
			}
		}
	})
}
