package auth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	readTok  = "r-secret"
	writeTok = "w-secret"
	fileRead = "file-read-secret"
	fileW    = "file-write-secret"
)

func newAuth(t *testing.T, anonymousRead bool) *Authenticator {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tokens")
	body := "# hashed tokens\n\n" + HashLine(RoleRead, fileRead) + " ci dashboards\n" + HashLine(RoleWrite, fileW) + "\n"
	require.NoError(t, os.WriteFile(file, []byte(body), 0o600))
	a, err := New(Config{
		Tokens:        []Token{{Value: readTok, Role: "read"}, {Value: writeTok, Role: "write"}},
		TokensFile:    file,
		AnonymousRead: anonymousRead,
	})
	require.NoError(t, err)
	return a
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		anonRead  bool
		method    string
		path      string
		header    map[string]string
		want      int
		wantCode  string
		challenge bool
	}{
		{name: "no token, GET api", method: "GET", path: "/api/v1/jobs", want: 401, wantCode: "unauthorized", challenge: true},
		{name: "no token, POST api", method: "POST", path: "/api/v1/jobs", want: 401, wantCode: "unauthorized", challenge: true},
		{name: "bad token", method: "GET", path: "/api/v1/jobs", header: map[string]string{"Authorization": "Bearer nope"}, want: 401, wantCode: "unauthorized", challenge: true},
		{name: "wrong scheme", method: "GET", path: "/api/v1/jobs", header: map[string]string{"Authorization": "Basic " + readTok}, want: 401, wantCode: "unauthorized", challenge: true},
		{name: "read token, GET", method: "GET", path: "/api/v1/jobs", header: bearerH(readTok), want: 200},
		{name: "read token, POST", method: "POST", path: "/api/v1/jobs", header: bearerH(readTok), want: 403, wantCode: "forbidden"},
		{name: "read token, DELETE", method: "DELETE", path: "/api/v1/jobs/x", header: bearerH(readTok), want: 403, wantCode: "forbidden"},
		{name: "read token, PATCH", method: "PATCH", path: "/api/v1/jobs/x", header: bearerH(readTok), want: 403, wantCode: "forbidden"},
		{name: "write token, GET", method: "GET", path: "/api/v1/jobs", header: bearerH(writeTok), want: 200},
		{name: "write token, POST", method: "POST", path: "/api/v1/jobs/x/pause", header: bearerH(writeTok), want: 200},
		{name: "write token, PUT", method: "PUT", path: "/api/v1/jobs/x", header: bearerH(writeTok), want: 200},
		{name: "scheme is case-insensitive", method: "POST", path: "/api/v1/jobs", header: map[string]string{"Authorization": "bearer " + writeTok}, want: 200},
		{name: "file read token, GET", method: "GET", path: "/api/v1/cluster", header: bearerH(fileRead), want: 200},
		{name: "file read token, POST", method: "POST", path: "/api/v1/jobs", header: bearerH(fileRead), want: 403, wantCode: "forbidden"},
		{name: "file write token, POST", method: "POST", path: "/api/v1/jobs", header: bearerH(fileW), want: 200},
		{name: "metrics need read", method: "GET", path: "/metrics", want: 401, wantCode: "unauthorized", challenge: true},
		{name: "metrics with read token", method: "GET", path: "/metrics", header: bearerH(readTok), want: 200},
		{name: "anonymous read, GET", anonRead: true, method: "GET", path: "/api/v1/jobs", want: 200},
		{name: "anonymous read, metrics", anonRead: true, method: "GET", path: "/metrics", want: 200},
		{name: "anonymous read, POST", anonRead: true, method: "POST", path: "/api/v1/jobs", want: 401, wantCode: "unauthorized", challenge: true},
		{name: "anonymous read, bad token still rejected", anonRead: true, method: "GET", path: "/api/v1/jobs", header: bearerH("nope"), want: 401, wantCode: "unauthorized", challenge: true},
		{name: "anonymous read, read token on write", anonRead: true, method: "DELETE", path: "/api/v1/jobs/x", header: bearerH(readTok), want: 403, wantCode: "forbidden"},
		{name: "csrf: cross-site write with a write token", method: "POST", path: "/api/v1/jobs/x/trigger",
			header: map[string]string{"Authorization": "Bearer " + writeTok, "Sec-Fetch-Site": "cross-site"}, want: 403, wantCode: "cross_origin"},
		{name: "csrf: foreign Origin", method: "DELETE", path: "/api/v1/jobs/x",
			header: map[string]string{"Authorization": "Bearer " + writeTok, "Origin": "https://evil.example"}, want: 403, wantCode: "cross_origin"},
		{name: "csrf: same-origin write", method: "POST", path: "/api/v1/jobs/x/trigger",
			header: map[string]string{"Authorization": "Bearer " + writeTok, "Sec-Fetch-Site": "same-origin"}, want: 200},
		{name: "csrf: cross-site GET is a read", method: "GET", path: "/api/v1/jobs",
			header: map[string]string{"Authorization": "Bearer " + readTok, "Sec-Fetch-Site": "cross-site"}, want: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newAuth(t, tc.anonRead)
			h := CrossOrigin(a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })))
			req := httptest.NewRequest(tc.method, "http://baton.test"+tc.path, nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, tc.want, rec.Code, rec.Body.String())
			if tc.challenge {
				require.Contains(t, rec.Header().Get("WWW-Authenticate"), "Bearer")
			} else {
				require.Empty(t, rec.Header().Get("WWW-Authenticate"))
			}
			if tc.wantCode != "" {
				var body struct {
					Error struct{ Code, Message string } `json:"error"`
				}
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
				require.Equal(t, tc.wantCode, body.Error.Code)
				require.NotEmpty(t, body.Error.Message)
				require.NotContains(t, rec.Body.String(), readTok)
				require.NotContains(t, rec.Body.String(), writeTok)
			}
		})
	}
}

func bearerH(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok}
}

func TestNoTokensAllowsEverything(t *testing.T) {
	t.Parallel()
	a, err := New(Config{})
	require.NoError(t, err)
	require.False(t, a.Enabled())
	h := CrossOrigin(a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })))
	for _, m := range []string{"GET", "POST", "DELETE"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(m, "/api/v1/jobs", nil))
		require.Equal(t, 200, rec.Code, m)
	}
	// Cross-site writes are refused even without tokens: that is when a
	// forged request would otherwise succeed.
	req := httptest.NewRequest("POST", "/api/v1/jobs/x/trigger", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, 403, rec.Code)
}

func TestTokensFileErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, want string
	}{
		{"one field", "write\n", "line 1"},
		{"bad role", "# c\nadmin " + hex64() + "\n", "line 2: role must be read or write"},
		{"short hash", "read abcd\n", "64 hex digits"},
		{"not hex", "read " + "zz" + hex64()[2:] + "\n", "64 hex digits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "tokens")
			require.NoError(t, os.WriteFile(file, []byte(tc.body), 0o600))
			_, err := New(Config{TokensFile: file})
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := New(Config{TokensFile: filepath.Join(t.TempDir(), "missing")})
	require.ErrorContains(t, err, "auth.tokens_file")
	_, err = New(Config{Tokens: []Token{{Value: "x", Role: "admin"}}})
	require.ErrorContains(t, err, "auth.tokens[0]")
	require.NotContains(t, err.Error(), `"x"`)
}

func hex64() string { return "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }

func TestListenAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		listen              string
		authOn, allowRemote bool
		want                string
		narrowed            bool
	}{
		{":8080", false, false, "127.0.0.1:8080", true},
		{":8080", true, false, ":8080", false},
		{":8080", false, true, ":8080", false},
		{"0.0.0.0:8080", false, false, "0.0.0.0:8080", false},
		{"127.0.0.1:0", false, false, "127.0.0.1:0", false},
	} {
		got, narrowed := ListenAddr(tc.listen, tc.authOn, tc.allowRemote)
		require.Equal(t, tc.want, got, tc.listen)
		require.Equal(t, tc.narrowed, narrowed, tc.listen)
	}
}

func TestHashLine(t *testing.T) {
	t.Parallel()
	// sha256("test"), the example in the package documentation.
	require.Equal(t, "write "+hex64(), HashLine(RoleWrite, "test"))
}
