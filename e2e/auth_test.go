package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/auth"
	"github.com/batonhq/baton/internal/testcluster"
)

// TestAuth runs a real two-instance cluster with tokens from the
// configuration and from a hashed tokens file, and checks every role
// against the API, /metrics, the health checks, cross-origin writes, the
// CLI, and the logs.
func TestAuth(t *testing.T) {
	t.Parallel()
	const (
		writeTok = "e2e-write-5b1f0c"
		readTok  = "e2e-read-9ad3e2"
		fileTok  = "e2e-file-write-77c1"
	)
	tokensFile := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(tokensFile, []byte("# CI\n"+auth.HashLine(auth.RoleWrite, fileTok)+" deploy bot\n"), 0o600))
	e := startWithToken(t, 2, map[string]string{
		"BATON_AUTH_TOKENS":      "write:" + writeTok + ",read:" + readTok,
		"BATON_AUTH_TOKENS_FILE": tokensFile,
	}, writeTok)
	exec_, _ := e.executor(t)
	standby := e.standby(t, exec_)

	type errBody struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	call := func(n *testcluster.Node, token, method, path, body string, hdr map[string]string) (int, http.Header, errBody) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, "http://"+n.HTTP+path, rd)
		require.NoError(t, err)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		// Redirects are answers here, not something to follow.
		client := http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var eb errBody
		_ = json.Unmarshal(data, &eb)
		return resp.StatusCode, resp.Header, eb
	}

	job := jobBody("guarded", "@every 1h", e.recv.URL("/guarded"))
	for _, tc := range []struct {
		name       string
		token      string
		method     string
		path       string
		body       string
		hdr        map[string]string
		want       int
		code       string
		challenged bool
	}{
		{name: "no token, read", method: "GET", path: "/api/v1/jobs", want: 401, code: "unauthorized", challenged: true},
		{name: "no token, write", method: "POST", path: "/api/v1/jobs", body: job, want: 401, code: "unauthorized", challenged: true},
		{name: "wrong token", token: "guess", method: "GET", path: "/api/v1/cluster", want: 401, code: "unauthorized", challenged: true},
		{name: "read token, write", token: readTok, method: "POST", path: "/api/v1/jobs", body: job, want: 403, code: "forbidden"},
		{name: "cross-origin write", token: writeTok, method: "POST", path: "/api/v1/jobs", body: job,
			hdr: map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, want: 403, code: "cross_origin"},
		{name: "write token, write through the standby", token: writeTok, method: "POST", path: "/api/v1/jobs", body: job, want: 201},
		{name: "hashed file token, write", token: fileTok, method: "POST", path: "/api/v1/jobs/guarded/pause", want: 200},
		{name: "read token, read", token: readTok, method: "GET", path: "/api/v1/jobs/guarded", want: 200},
		{name: "metrics need a token", method: "GET", path: "/metrics", want: 401, code: "unauthorized", challenged: true},
		{name: "metrics with a read token", token: readTok, method: "GET", path: "/metrics", want: 200},
		{name: "healthz is open", method: "GET", path: "/healthz", want: 200},
		{name: "readyz is open", method: "GET", path: "/readyz", want: 200},
		{name: "UI pages are open", method: "GET", path: "/jobs", want: 200},
		{name: "UI static files are open", method: "GET", path: "/static/app.js", want: 200},
		{name: "unknown API paths need a token", method: "GET", path: "/api/v2/nothing", want: 401, code: "unauthorized", challenged: true},
		{name: "unclean API paths are redirected, not served", method: "POST", path: "//api/v1/jobs/guarded/resume", want: http.StatusTemporaryRedirect},
	} {
		status, hdr, body := call(standby, tc.token, tc.method, tc.path, tc.body, tc.hdr)
		require.Equal(t, tc.want, status, "%s: %+v", tc.name, body)
		require.Equal(t, tc.code, body.Error.Code, tc.name)
		if tc.challenged {
			require.True(t, strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer"), tc.name)
		}
	}

	// The CLI sends --token as a bearer token.
	bin, err := testcluster.Build()
	require.NoError(t, err)
	out, err := exec.Command(bin, "jobs", "list", "--server", standby.HTTP, "--token", readTok).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "guarded")
	out, err = exec.Command(bin, "jobs", "trigger", "guarded", "--server", standby.HTTP, "--token", readTok).CombinedOutput()
	require.Error(t, err, "a read token cannot trigger")
	require.Contains(t, string(out), "forbidden")
	cmd := exec.Command(bin, "jobs", "resume", "guarded", "--server", standby.HTTP)
	cmd.Env = append(os.Environ(), "BATON_TOKEN="+writeTok)
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "BATON_TOKEN is sent: %s", out)

	// No token ever reaches a log; the start-up config dump masks them.
	require.Eventually(t, func() bool { return strings.Contains(exec_.Log(), "instance started") }, 5*time.Second, 50*time.Millisecond)
	for _, n := range e.c.Nodes {
		log := n.Log()
		for _, tok := range []string{writeTok, readTok, fileTok} {
			require.NotContains(t, log, tok, "%s logged a token", n.ID)
		}
		require.NotContains(t, log, "guest:guest", "%s logged the AMQP password", n.ID)
		require.NotContains(t, log, "AUTHENTICATION IS OFF", n.ID)
	}
}

// TestWithoutTokens: an instance without tokens warns loudly, and an
// http.listen without a host binds to loopback unless
// auth.allow_insecure_remote says otherwise.
func TestWithoutTokens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		allowRemote bool
		wantBound   string // host part of the address the instance reports
	}{
		{name: "loopback by default", wantBound: "127.0.0.1"},
		{name: "every interface when allowed", allowRemote: true, wantBound: "::"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A free port can be taken by a parallel test before the
			// instance binds it (and that test's instance then answers the
			// health check): try again on another port.
			var n *testcluster.Node
			var port, log string
			for attempt := 1; ; attempt++ {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				_, port, _ = net.SplitHostPort(ln.Addr().String())
				require.NoError(t, ln.Close())
				extra := map[string]string{"BATON_HTTP_LISTEN": ":" + port}
				if tc.allowRemote {
					extra["BATON_AUTH_ALLOW_INSECURE_REMOTE"] = "true"
				}
				e := start(t, 0, extra)
				// The node is reached on loopback either way; what differs
				// is the address it bound.
				n, err = e.c.AddAt("i1", "dc1", "127.0.0.1:"+port)
				require.NoError(t, err)
				require.Eventually(t, func() bool {
					log = n.Log()
					return strings.Contains(log, "instance started") || strings.Contains(log, "address already in use")
				}, 10*time.Second, 50*time.Millisecond)
				if !strings.Contains(log, "address already in use") {
					break
				}
				require.Less(t, attempt, 5, "no free port")
				n.Kill()
			}
			require.Contains(t, log, "AUTHENTICATION IS OFF")
			require.Contains(t, log, "http="+net.JoinHostPort(tc.wantBound, port), "the address the instance bound")
			require.Equal(t, !tc.allowRemote, strings.Contains(log, "serving on loopback only"))
			// Everything is allowed, except cross-site writes from a browser.
			code, err := n.Do(http.MethodGet, "/api/v1/jobs", nil, nil)
			require.NoError(t, err)
			require.Equal(t, 200, code)
		})
	}
}

// TestBadTokensFileStopsTheStart: a tokens file that cannot be used is a
// configuration error, never a silent fall-back to no authentication.
func TestBadTokensFileStopsTheStart(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(file, []byte("write not-a-hash\n"), 0o600))
	e := start(t, 0, map[string]string{"BATON_AUTH_TOKENS_FILE": file})
	_, err := e.c.Add("i1", "dc1")
	require.ErrorContains(t, err, "exited during start")
	log := e.c.LogOf("i1", 0)
	require.Contains(t, log, "auth.tokens_file")
	require.Contains(t, log, "line 1")
	require.NotContains(t, log, "AUTHENTICATION IS OFF")
}
