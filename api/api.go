package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/batonhq/baton/crud"
	"github.com/batonhq/baton/job"
	"github.com/batonhq/baton/schedule"
	"github.com/batonhq/baton/store"
)

// Reader is the read side of the store.
type Reader interface {
	Jobs(ctx context.Context, q store.JobQuery) ([]job.Job, error)
	Job(ctx context.Context, name string) (*job.Job, error)
	Runs(ctx context.Context, q store.RunQuery) ([]store.Run, error)
	Instances(ctx context.Context) ([]store.Instance, error)
}

// Writer forwards writes to the executor.
type Writer interface {
	Do(ctx context.Context, req crud.Request) (crud.Reply, error)
}

// Cluster describes the cluster as this instance sees it.
type Cluster interface {
	// Executor returns the live executor lease, if any.
	Executor(ctx context.Context) (*store.Lease, error)
	// Token reports the token's health for operators.
	Token() any
	// Ready returns nil if this instance can serve, or why not.
	Ready(ctx context.Context) error
}

// Config configures a Server.
type Config struct {
	// InstanceID is this instance's id, reported as "self" by
	// GET /api/v1/cluster so that a client knows whom it asked.
	InstanceID   string
	ShellEnabled bool
	Logger       *slog.Logger
	// Now is the clock for previews and next run times (time.Now).
	Now func() time.Time
}

// Server is the HTTP API.
type Server struct {
	cfg     Config
	read    Reader
	write   Writer
	cluster Cluster
	log     *slog.Logger
	mux     *http.ServeMux
}

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 1 << 20

// New returns the API server.
func New(cfg Config, r Reader, w Writer, c Cluster) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, read: r, write: w, cluster: c, log: cfg.Logger.With("component", "api"), mux: http.NewServeMux()}
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Mux exposes the router so that other handlers (UI, metrics) can be
// mounted beside the API.
func (s *Server) Mux() *http.ServeMux { return s.mux }

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /api/v1/jobs", s.listJobs)
	m.HandleFunc("POST /api/v1/jobs", s.createJob)
	m.HandleFunc("GET /api/v1/jobs/{name}", s.getJob)
	m.HandleFunc("PUT /api/v1/jobs/{name}", s.replaceJob)
	m.HandleFunc("DELETE /api/v1/jobs/{name}", s.simpleWrite(crud.OpDelete))
	m.HandleFunc("POST /api/v1/jobs/{name}/pause", s.simpleWrite(crud.OpPause))
	m.HandleFunc("POST /api/v1/jobs/{name}/resume", s.simpleWrite(crud.OpResume))
	m.HandleFunc("POST /api/v1/jobs/{name}/trigger", s.simpleWrite(crud.OpTrigger))
	m.HandleFunc("GET /api/v1/jobs/{name}/runs", s.jobRuns)
	m.HandleFunc("GET /api/v1/runs", s.runs)
	m.HandleFunc("GET /api/v1/cluster", s.clusterInfo)
	m.HandleFunc("GET /api/v1/schedule/preview", s.preview)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.HandleFunc("GET /readyz", s.ready)
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status == http.StatusNoContent || v == nil {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

type errorBody struct {
	Error crud.Error `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, field, msg string) {
	writeJSON(w, status, errorBody{Error: crud.Error{Code: code, Message: msg, Field: field}})
}

// readError maps a store read error.
func (s *Server) readError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, crud.CodeNotFound, "name", "no such job")
	case store.IsUnavailable(err):
		writeError(w, http.StatusServiceUnavailable, crud.CodeStoreUnavailable, "", "the store is unavailable")
	default:
		s.log.Error("read failed", "error", err)
		writeError(w, http.StatusInternalServerError, crud.CodeInternal, "", "internal error")
	}
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := store.JobQuery{NameContains: r.URL.Query().Get("name"), After: r.URL.Query().Get("after")}
	for _, l := range r.URL.Query()["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			writeError(w, http.StatusBadRequest, crud.CodeInvalid, "label", "label filters look like label=key=value, got "+strconv.Quote(l))
			return
		}
		if q.Labels == nil {
			q.Labels = map[string]string{}
		}
		q.Labels[k] = v
	}
	if lim := r.URL.Query().Get("limit"); lim != "" {
		n, err := strconv.Atoi(lim)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, crud.CodeInvalid, "limit", "limit must be a positive integer")
			return
		}
		q.Limit = n
	}
	jobs, err := s.read.Jobs(r.Context(), q)
	if err != nil {
		s.readError(w, err)
		return
	}
	now := s.cfg.Now()
	for i := range jobs {
		jobs[i].FillNextRun(now)
		redact(&jobs[i])
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": jobs})
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.read.Job(r.Context(), r.PathValue("name"))
	if err != nil {
		s.readError(w, err)
		return
	}
	j.FillNextRun(s.cfg.Now())
	redact(j)
	writeJSON(w, http.StatusOK, j)
}

// decodeJob reads, checks and validates a job body. It writes the error
// response itself and returns nil on failure.
func (s *Server) decodeJob(w http.ResponseWriter, r *http.Request) *job.Job {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "", "send the job as Content-Type: application/json")
		return nil
	}
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	j, err := job.Decode(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || strings.Contains(err.Error(), "request body too large") {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "", fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes))
			return nil
		}
		s.validationError(w, err)
		return nil
	}
	return j
}

func (s *Server) validationError(w http.ResponseWriter, err error) {
	var ve *job.ValidationError
	if errors.As(err, &ve) {
		writeError(w, http.StatusBadRequest, crud.CodeInvalid, ve.Field, ve.Message)
		return
	}
	writeError(w, http.StatusBadRequest, crud.CodeInvalid, "", err.Error())
}

func (s *Server) validate(w http.ResponseWriter, j *job.Job) bool {
	j.Normalize()
	if err := j.Validate(job.Options{ShellEnabled: s.cfg.ShellEnabled}); err != nil {
		s.validationError(w, err)
		return false
	}
	return true
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) {
	j := s.decodeJob(w, r)
	if j == nil || !s.validate(w, j) {
		return
	}
	s.forward(w, r, crud.Request{Op: crud.OpCreate, Name: j.Name, Job: j})
}

func (s *Server) replaceJob(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := job.ValidName(name); err != nil {
		s.validationError(w, err)
		return
	}
	j := s.decodeJob(w, r)
	if j == nil {
		return
	}
	if j.Name == "" {
		j.Name = name
	}
	if j.Name != name {
		writeError(w, http.StatusBadRequest, crud.CodeInvalid, "name", fmt.Sprintf("the body names %q but the URL names %q; rename by creating a new job", j.Name, name))
		return
	}
	if !s.keepSecrets(w, r, j) || !s.validate(w, j) {
		return
	}
	s.forward(w, r, crud.Request{Op: crud.OpUpdate, Name: name, Job: j})
}

func (s *Server) simpleWrite(op crud.Op) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := job.ValidName(name); err != nil {
			s.validationError(w, err)
			return
		}
		s.forward(w, r, crud.Request{Op: op, Name: name})
	}
}

// forward sends a write to the executor and relays its reply.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, req crud.Request) {
	reply, err := s.write.Do(r.Context(), req)
	if err != nil {
		code := crud.CodeNoExecutor
		if errors.Is(err, crud.ErrUnknownOutcome) {
			code = crud.CodeStoreUnavailable
		}
		writeError(w, crud.StatusFor(err), code, "", err.Error())
		return
	}
	if reply.Error != nil {
		writeJSON(w, reply.Status, errorBody{Error: *reply.Error})
		return
	}
	switch {
	case reply.Status == http.StatusNoContent:
		writeJSON(w, reply.Status, nil)
	case req.Op == crud.OpTrigger:
		writeJSON(w, reply.Status, map[string]any{"run": reply.Run})
	default:
		if reply.Job != nil {
			redact(reply.Job)
		}
		writeJSON(w, reply.Status, reply.Job)
	}
}

func (s *Server) jobRuns(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := s.read.Job(r.Context(), name); err != nil {
		s.readError(w, err)
		return
	}
	s.listRuns(w, r, name)
}

func (s *Server) runs(w http.ResponseWriter, r *http.Request) {
	s.listRuns(w, r, r.URL.Query().Get("job"))
}

var runStatuses = map[string]bool{store.StatusSucceeded: true, store.StatusFailed: true, store.StatusRunning: true,
	store.StatusSkipped: true, store.StatusMissed: true, store.StatusCancelled: true}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, name string) {
	q := store.RunQuery{Job: name, Status: r.URL.Query().Get("status"), Limit: 50}
	if q.Status != "" && !runStatuses[q.Status] {
		writeError(w, http.StatusBadRequest, crud.CodeInvalid, "status", "status must be one of succeeded, failed, running, skipped, missed, cancelled")
		return
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, crud.CodeInvalid, "limit", "limit must be an integer from 1 to 1000")
			return
		}
		q.Limit = n
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"before", &q.Before}, {"since", &q.Since}} {
		if v := r.URL.Query().Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, crud.CodeInvalid, p.name, p.name+" must be an RFC 3339 time, such as 2026-01-02T15:04:05Z")
				return
			}
			*p.dst = t
		}
	}
	runs, err := s.read.Runs(r.Context(), q)
	if err != nil {
		s.readError(w, err)
		return
	}
	body := map[string]any{"runs": runs}
	if len(runs) == q.Limit {
		body["next_before"] = runs[len(runs)-1].ScheduledAt.Format(time.RFC3339Nano)
	}
	writeJSON(w, http.StatusOK, body)
}

type executorInfo struct {
	Instance   string    `json:"instance"`
	Datacenter string    `json:"datacenter"`
	Epoch      int64     `json:"epoch"`
	Since      time.Time `json:"since"`
}

type instanceInfo struct {
	ID         string    `json:"id"`
	Datacenter string    `json:"datacenter"`
	Role       string    `json:"role"`
	LastSeen   time.Time `json:"last_seen"`
}

func (s *Server) clusterInfo(w http.ResponseWriter, r *http.Request) {
	lease, err := s.cluster.Executor(r.Context())
	if err != nil {
		s.readError(w, err)
		return
	}
	insts, err := s.read.Instances(r.Context())
	if err != nil {
		s.readError(w, err)
		return
	}
	body := map[string]any{"executor": nil, "token": s.cluster.Token(), "self": s.cfg.InstanceID}
	if lease != nil {
		body["executor"] = executorInfo{Instance: lease.Holder, Datacenter: lease.Datacenter, Epoch: lease.Epoch, Since: lease.Since}
	}
	list := make([]instanceInfo, 0, len(insts))
	for _, in := range insts {
		list = append(list, instanceInfo{ID: in.ID, Datacenter: in.Datacenter, Role: in.Role, LastSeen: in.LastSeen})
	}
	body["instances"] = list
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) preview(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	spec := q.Get("schedule")
	if strings.TrimSpace(spec) == "" {
		writeError(w, http.StatusBadRequest, crud.CodeInvalid, "schedule", "schedule is required, for example */10 * * * *")
		return
	}
	sched, err := schedule.Parse(spec, q.Get("timezone"))
	if err != nil {
		field := "schedule"
		var se *schedule.Error
		if errors.As(err, &se) && se.Field != "" {
			field = se.Field
		}
		writeError(w, http.StatusBadRequest, crud.CodeInvalid, field, err.Error())
		return
	}
	count := 5
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, crud.CodeInvalid, "count", "count must be an integer from 1 to 100")
			return
		}
		count = n
	}
	from := s.cfg.Now()
	if v := q.Get("from"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, crud.CodeInvalid, "from", "from must be an RFC 3339 time, such as 2026-01-02T15:04:05Z")
			return
		}
		from = t
	}
	next := make([]string, 0, count)
	t := from
	for range count {
		t = sched.Next(t)
		if t.IsZero() {
			break
		}
		next = append(next, t.In(sched.Location()).Format(time.RFC3339))
	}
	writeJSON(w, http.StatusOK, map[string]any{"next": next, "description": sched.Describe(), "timezone": sched.Location().String()})
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if err := s.cluster.Ready(r.Context()); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Redacted is what a secret header value reads as in API output.
const Redacted = "xxxxx"

// keepSecrets lets a client send back a job it read, with its secret header
// values still redacted, without replacing the secrets by the placeholder:
// a secret header whose value is exactly Redacted keeps its stored value.
// It writes the error response itself and returns false on failure.
func (s *Server) keepSecrets(w http.ResponseWriter, r *http.Request, j *job.Job) bool {
	h := j.Target.HTTP
	if h == nil {
		return true
	}
	var placeholders []string
	for k, v := range h.Headers {
		if v == Redacted && isSecret(h.SecretHeaders, k) {
			placeholders = append(placeholders, k)
		}
	}
	if len(placeholders) == 0 {
		return true
	}
	old, err := s.read.Job(r.Context(), j.Name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.readError(w, err)
		return false
	}
	for _, k := range placeholders {
		stored, ok := "", false
		if old != nil && old.Target.HTTP != nil {
			for name, v := range old.Target.HTTP.Headers {
				if strings.EqualFold(name, k) && isSecret(old.Target.HTTP.SecretHeaders, name) {
					stored, ok = v, true
				}
			}
		}
		if !ok {
			writeError(w, http.StatusBadRequest, crud.CodeInvalid, "target.http.headers."+k,
				fmt.Sprintf("%q is the redacted placeholder, and there is no stored secret value to keep; send the real value", Redacted))
			return false
		}
		h.Headers[k] = stored
	}
	return true
}

func isSecret(secret []string, header string) bool {
	for _, sec := range secret {
		if strings.EqualFold(header, sec) {
			return true
		}
	}
	return false
}

// redact hides secret header values in API output.
func redact(j *job.Job) {
	h := j.Target.HTTP
	if h == nil || len(h.SecretHeaders) == 0 {
		return
	}
	headers := make(map[string]string, len(h.Headers))
	for k, v := range h.Headers {
		headers[k] = v
		if isSecret(h.SecretHeaders, k) {
			headers[k] = Redacted
		}
	}
	c := *h
	c.Headers = headers
	j.Target.HTTP = &c
}
