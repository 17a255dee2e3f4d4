package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/crud"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/store"
)

type fakeReader struct{ jobs map[string]job.Job }

func (f *fakeReader) Jobs(context.Context, store.JobQuery) ([]job.Job, error) {
	var out []job.Job
	for _, j := range f.jobs {
		out = append(out, j)
	}
	return out, nil
}

func (f *fakeReader) Job(_ context.Context, name string) (*job.Job, error) {
	j, ok := f.jobs[name]
	if !ok {
		return nil, store.ErrNotFound
	}
	return &j, nil
}

func (f *fakeReader) Runs(context.Context, store.RunQuery) ([]store.Run, error) {
	return []store.Run{}, nil
}
func (f *fakeReader) Instances(context.Context) ([]store.Instance, error) {
	return []store.Instance{{ID: "a", Datacenter: "dc1", Role: "executor"}}, nil
}

type fakeWriter struct {
	calls atomic.Int32
	last  crud.Request
	reply crud.Reply
	err   error
}

func (f *fakeWriter) Do(_ context.Context, req crud.Request) (crud.Reply, error) {
	f.calls.Add(1)
	f.last = req
	return f.reply, f.err
}

type fakeCluster struct{ ready error }

func (f fakeCluster) Executor(context.Context) (*store.Lease, error) {
	return &store.Lease{Holder: "a", Epoch: 3, Since: time.Unix(0, 0).UTC()}, nil
}
func (f fakeCluster) Token() any                  { return map[string]string{"ok": "yes"} }
func (f fakeCluster) Ready(context.Context) error { return f.ready }

const good = `{"name":"process-orders","schedule":"*/10 * * * *","target":{"type":"http","http":{"url":"https://example.com/hook"}}}`

func setup() (*Server, *fakeWriter) {
	w := &fakeWriter{reply: crud.Reply{Status: http.StatusCreated, Job: &job.Job{Name: "process-orders"}}}
	r := &fakeReader{jobs: map[string]job.Job{"exists": {Name: "exists", Schedule: "* * * * *"}}}
	now := func() time.Time { return time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC) }
	return New(Config{Now: now, InstanceID: "me"}, r, w, fakeCluster{}), w
}

func do(s http.Handler, method, path, contentType, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

func errorOf(t *testing.T, rec *httptest.ResponseRecorder) crud.Error {
	t.Helper()
	var body struct{ Error crud.Error }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
	require.NotEmpty(t, body.Error.Code)
	require.NotEmpty(t, body.Error.Message)
	return body.Error
}

func TestBadInputChangesNothing(t *testing.T) {
	big := `{"name":"a","schedule":"* * * * *","description":"` + strings.Repeat("x", MaxBodyBytes) + `","target":{"type":"http","http":{"url":"http://x"}}}`
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		code, field                     string
	}{
		{"invalid cron", "POST", "/api/v1/jobs", "application/json", strings.Replace(good, "*/10 * * * *", "*/10 * * *", 1), 400, "invalid_argument", "schedule"},
		{"empty cron", "POST", "/api/v1/jobs", "application/json", strings.Replace(good, "*/10 * * * *", "", 1), 400, "invalid_argument", "schedule"},
		{"unknown timezone", "POST", "/api/v1/jobs", "application/json", strings.Replace(good, `"schedule"`, `"timezone":"Mars/Base","schedule"`, 1), 400, "invalid_argument", "timezone"},
		{"unknown target type", "POST", "/api/v1/jobs", "application/json", strings.Replace(good, `"type":"http"`, `"type":"carrier-pigeon"`, 1), 400, "invalid_argument", "target.type"},
		{"missing url", "POST", "/api/v1/jobs", "application/json", strings.Replace(good, `"url":"https://example.com/hook"`, ``, 1), 400, "invalid_argument", "target.http.url"},
		{"negative timeout", "POST", "/api/v1/jobs", "application/json", strings.Replace(good, `"schedule"`, `"timeout":"-3s","schedule"`, 1), 400, "invalid_argument", "timeout"},
		{"bad name", "POST", "/api/v1/jobs", "application/json", strings.Replace(good, "process-orders", "Process Orders!", 1), 400, "invalid_argument", "name"},
		{"unknown field", "POST", "/api/v1/jobs", "application/json", strings.Replace(good, `"schedule"`, `"priority":1,"schedule"`, 1), 400, "invalid_argument", "priority"},
		{"body over 1 MiB", "POST", "/api/v1/jobs", "application/json", big, 413, "body_too_large", ""},
		{"wrong content type", "POST", "/api/v1/jobs", "text/plain", good, 415, "unsupported_media_type", ""},
		{"no content type", "POST", "/api/v1/jobs", "", good, 415, "unsupported_media_type", ""},
		{"malformed json", "POST", "/api/v1/jobs", "application/json", `{"name":`, 400, "invalid_argument", ""},
		{"put name mismatch", "PUT", "/api/v1/jobs/other", "application/json", good, 400, "invalid_argument", "name"},
		{"bad name in path", "POST", "/api/v1/jobs/Bad%20Name/pause", "", "", 400, "invalid_argument", "name"},
		{"shell disabled", "POST", "/api/v1/jobs", "application/json", `{"name":"s","schedule":"* * * * *","target":{"type":"shell","shell":{"command":["/bin/true"]}}}`, 400, "invalid_argument", "target.type"},
		{"preview bad schedule", "GET", "/api/v1/schedule/preview?schedule=61+*+*+*+*", "", "", 400, "invalid_argument", "schedule"},
		{"preview bad zone", "GET", "/api/v1/schedule/preview?schedule=*+*+*+*+*&timezone=Nowhere", "", "", 400, "invalid_argument", "timezone"},
		{"preview bad count", "GET", "/api/v1/schedule/preview?schedule=*+*+*+*+*&count=0", "", "", 400, "invalid_argument", "count"},
		{"runs bad status", "GET", "/api/v1/runs?status=great", "", "", 400, "invalid_argument", "status"},
		{"runs bad since", "GET", "/api/v1/runs?since=yesterday", "", "", 400, "invalid_argument", "since"},
		{"unknown job", "GET", "/api/v1/jobs/nope", "", "", 404, "not_found", "name"},
		{"unknown endpoint", "GET", "/api/v1/nothing", "", "", 404, "not_found", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, w := setup()
			rec := do(s, tc.method, tc.path, tc.ctype, tc.body)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			e := errorOf(t, rec)
			require.Equal(t, tc.code, e.Code)
			require.Equal(t, tc.field, e.Field)
			require.Zero(t, w.calls.Load(), "bad input is never forwarded")
		})
	}
}

func TestWritesAreForwarded(t *testing.T) {
	s, w := setup()
	rec := do(s, "POST", "/api/v1/jobs", "application/json; charset=utf-8", good)
	require.Equal(t, http.StatusCreated, rec.Code)
	require.Equal(t, crud.OpCreate, w.last.Op)
	require.Equal(t, "UTC", w.last.Job.Timezone, "defaults are filled before forwarding")

	rec = do(s, "PUT", "/api/v1/jobs/process-orders", "application/json", strings.Replace(good, `"name":"process-orders",`, ``, 1))
	require.Equal(t, http.StatusCreated, rec.Code)
	require.Equal(t, crud.OpUpdate, w.last.Op)
	require.Equal(t, "process-orders", w.last.Job.Name, "the name comes from the URL when the body omits it")

	for _, op := range []crud.Op{crud.OpPause, crud.OpResume, crud.OpTrigger} {
		do(s, "POST", "/api/v1/jobs/process-orders/"+string(op), "", "")
		require.Equal(t, op, w.last.Op)
	}
	w.reply = crud.Reply{Status: http.StatusNoContent}
	rec = do(s, "DELETE", "/api/v1/jobs/process-orders", "", "")
	require.Equal(t, http.StatusNoContent, rec.Code)
	require.Empty(t, rec.Body.String())

	w.err = crud.ErrNoExecutor
	rec = do(s, "POST", "/api/v1/jobs/process-orders/pause", "", "")
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Equal(t, "no_executor", errorOf(t, rec).Code)

	w.err = nil
	w.reply = crud.Failure(http.StatusConflict, crud.CodeExists, "name", "a job with this name already exists")
	rec = do(s, "POST", "/api/v1/jobs", "application/json", good)
	require.Equal(t, http.StatusConflict, rec.Code)
	require.Equal(t, "already_exists", errorOf(t, rec).Code)
}

func TestReads(t *testing.T) {
	s, _ := setup()
	rec := do(s, "GET", "/api/v1/jobs", "", "")
	require.Equal(t, 200, rec.Code)
	require.Contains(t, rec.Body.String(), `"jobs"`)
	require.Contains(t, rec.Body.String(), `"next_run_at"`)

	rec = do(s, "GET", "/api/v1/cluster", "", "")
	require.Equal(t, 200, rec.Code)
	var ci struct {
		Executor struct {
			Instance string
			Epoch    int64
		}
		Instances []struct{ ID, Datacenter, Role string }
		Self      string
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &ci))
	require.Equal(t, "me", ci.Self, "the answering instance")
	require.Equal(t, "a", ci.Executor.Instance)
	require.EqualValues(t, 3, ci.Executor.Epoch)
	require.Equal(t, "executor", ci.Instances[0].Role)

	rec = do(s, "GET", "/api/v1/schedule/preview?schedule=30+2+*+*+*&timezone=America/New_York&count=2&from=2026-03-07T12:00:00Z", "", "")
	require.Equal(t, 200, rec.Code, rec.Body.String())
	var pv struct {
		Next        []string
		Description string
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &pv))
	require.Equal(t, []string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}, pv.Next, "the spring-forward day fires after the gap")
	require.Contains(t, pv.Description, "02:30")

	require.Equal(t, 200, do(s, "GET", "/healthz", "", "").Code)
	require.Equal(t, 200, do(s, "GET", "/readyz", "", "").Code)
}

func TestSecretHeadersAreRedacted(t *testing.T) {
	j := job.Job{Name: "s", Target: job.Target{Type: "http", HTTP: &job.HTTPTarget{URL: "http://x",
		Headers: map[string]string{"Authorization": "Bearer hunter2", "X-Other": "fine"}, SecretHeaders: []string{"authorization"}}}}
	redact(&j)
	require.Equal(t, "xxxxx", j.Target.HTTP.Headers["Authorization"])
	require.Equal(t, "fine", j.Target.HTTP.Headers["X-Other"])
}

func TestReplaceKeepsRedactedSecrets(t *testing.T) {
	stored := job.Job{Name: "s", Schedule: "* * * * *", Target: job.Target{Type: "http", HTTP: &job.HTTPTarget{URL: "http://x",
		Headers: map[string]string{"Authorization": "Bearer hunter2"}, SecretHeaders: []string{"authorization"}}}}
	body := func(value string) string {
		return `{"name":"s","schedule":"*/5 * * * *","target":{"type":"http","http":{"url":"http://x",` +
			`"headers":{"Authorization":"` + value + `"},"secret_headers":["authorization"]}}}`
	}
	for _, tc := range []struct {
		name      string
		stored    map[string]job.Job
		value     string
		status    int
		wantValue string
	}{
		{"placeholder keeps the stored secret", map[string]job.Job{"s": stored}, "xxxxx", 200, "Bearer hunter2"},
		{"a new value replaces it", map[string]job.Job{"s": stored}, "Bearer new", 200, "Bearer new"},
		{"placeholder without a stored secret is refused", map[string]job.Job{}, "xxxxx", 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &fakeWriter{reply: crud.Reply{Status: http.StatusOK, Job: &stored}}
			s := New(Config{}, &fakeReader{jobs: tc.stored}, w, fakeCluster{})
			rec := do(s, "PUT", "/api/v1/jobs/s", "application/json", body(tc.value))
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			if tc.status != 200 {
				require.Equal(t, "target.http.headers.Authorization", errorOf(t, rec).Field)
				require.Zero(t, w.calls.Load(), "nothing was written")
				return
			}
			require.Equal(t, tc.wantValue, w.last.Job.Target.HTTP.Headers["Authorization"], "the executor gets the real value")
			require.NotContains(t, rec.Body.String(), "hunter2", "the reply is redacted")
		})
	}
}
