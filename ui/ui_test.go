package ui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPages(t *testing.T) {
	t.Parallel()
	h, err := New(Config{InstanceID: "i1", Version: "v9", AuthEnabled: true})
	require.NoError(t, err)
	for _, tc := range []struct {
		path, want string
		status     int
		page, job  string
	}{
		{path: "/", status: 200, page: "cluster", want: `id="instances"`},
		{path: "/jobs", status: 200, page: "jobs", want: `id="filter"`},
		{path: "/jobs/new", status: 200, page: "job", want: `id="f-schedule"`},
		{path: "/jobs/nightly-report/edit", status: 200, page: "job", job: "nightly-report", want: `id="preview"`},
		{path: "/jobs/nightly-report/runs", status: 200, page: "runs", job: "nightly-report", want: `id="runs"`},
		{path: "/runs?status=failed", status: 200, page: "runs", want: `id="runs-status"`},
		{path: "/static/app.js", status: 200, want: "function api("},
		{path: "/static/style.css", status: 200, want: "--accent"},
		{path: "/nope", status: 404},
		{path: "/static/nope.js", status: 404},
	} {
		t.Run(tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			require.Equal(t, tc.status, rec.Code)
			body := rec.Body.String()
			if tc.want != "" {
				require.Contains(t, body, tc.want)
			}
			if tc.page != "" {
				require.Contains(t, body, `data-page="`+tc.page+`"`)
				require.Contains(t, body, `data-job="`+tc.job+`"`)
				require.Contains(t, body, `data-auth="true"`)
				require.Contains(t, rec.Header().Get("Content-Security-Policy"), "script-src 'self'")
				require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
				require.NotContains(t, body, `value="shell"`, "shell targets are offered only when enabled")
				require.NotContains(t, body, "v9", "no version without a token")
				require.NotContains(t, body, `data-instance="i1"`, "no instance id without a token")
			}
		})
	}
}

func TestIdentityShownWhenReadsAreOpen(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{InstanceID: "i1", Version: "v9"}, {InstanceID: "i1", Version: "v9", AuthEnabled: true, AnonymousRead: true}} {
		h, err := New(cfg)
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		require.Contains(t, rec.Body.String(), `data-instance="i1"`)
		require.Contains(t, rec.Body.String(), "Baton v9")
	}
}

func TestShellOfferedWhenEnabled(t *testing.T) {
	t.Parallel()
	h, err := New(Config{ShellEnabled: true})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/jobs/new", nil))
	require.Contains(t, rec.Body.String(), `value="shell"`)
}

// TestJobNameIsEscaped: a job name in the URL reaches the page only as an
// escaped attribute value.
func TestJobNameIsEscaped(t *testing.T) {
	t.Parallel()
	h, err := New(Config{})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, `/jobs/%22%3E%3Cscript%3E/runs`, nil))
	require.Equal(t, 200, rec.Code)
	require.False(t, strings.Contains(rec.Body.String(), `"><script>`))
}
