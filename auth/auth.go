package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
)

// Role is what a token may do.
type Role int

// Roles, weakest first: each implies the ones before it.
const (
	RoleNone Role = iota
	RoleRead
	RoleWrite
)

// ParseRole reads "read" or "write".
func ParseRole(s string) (Role, error) {
	switch s {
	case "read":
		return RoleRead, nil
	case "write":
		return RoleWrite, nil
	}
	return RoleNone, fmt.Errorf("role must be read or write, got %q", s)
}

func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleWrite:
		return "write"
	}
	return "none"
}

// Token is a plain bearer token and its role, as written in auth.tokens.
type Token struct {
	Value string
	Role  string
}

// Config configures an Authenticator.
type Config struct {
	// Tokens are plain tokens with their roles. Default none.
	Tokens []Token
	// TokensFile is the path of a file of hashed tokens (see the package
	// documentation for its format). Default "" (none).
	TokensFile string
	// AnonymousRead lets reads through without a token. Default false.
	AnonymousRead bool
	// Logger receives denied requests at debug level (slog.Default()).
	Logger *slog.Logger
}

type entry struct {
	hash [sha256.Size]byte
	role Role
}

// Authenticator decides who may do what.
type Authenticator struct {
	entries       []entry
	anonymousRead bool
	log           *slog.Logger
}

// New builds an Authenticator, reading the tokens file if there is one.
// Errors name the file and line but never quote a token or a hash.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Authenticator{anonymousRead: cfg.AnonymousRead, log: cfg.Logger.With("component", "auth")}
	for i, t := range cfg.Tokens {
		role, err := ParseRole(t.Role)
		if err != nil {
			return nil, fmt.Errorf("auth.tokens[%d]: %w", i, err)
		}
		if strings.TrimSpace(t.Value) == "" {
			return nil, fmt.Errorf("auth.tokens[%d]: the token is empty", i)
		}
		a.entries = append(a.entries, entry{hash: sha256.Sum256([]byte(t.Value)), role: role})
	}
	if cfg.TokensFile != "" {
		data, err := os.ReadFile(cfg.TokensFile)
		if err != nil {
			return nil, fmt.Errorf("auth.tokens_file: %w", err)
		}
		entries, err := parseTokensFile(data)
		if err != nil {
			return nil, fmt.Errorf("auth.tokens_file %s: %w", cfg.TokensFile, err)
		}
		a.entries = append(a.entries, entries...)
	}
	return a, nil
}

// parseTokensFile reads lines of "role sha256hex [comment]".
func parseTokensFile(data []byte) ([]entry, error) {
	var out []entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return nil, fmt.Errorf("line %d: want \"role sha256hex\", such as \"write 9f86d0…\"", n)
		}
		role, err := ParseRole(fields[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		h, err := hex.DecodeString(fields[1])
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("line %d: the hash must be 64 hex digits (the SHA-256 of the token; `baton auth hash` prints it)", n)
		}
		var e entry
		copy(e.hash[:], h)
		e.role = role
		out = append(out, e)
	}
	return out, sc.Err()
}

// HashLine returns the tokens-file line for a token and role.
func HashLine(role Role, token string) string {
	h := sha256.Sum256([]byte(token))
	return role.String() + " " + hex.EncodeToString(h[:])
}

// Enabled reports whether any token is configured. Without tokens every
// request is allowed.
func (a *Authenticator) Enabled() bool { return len(a.entries) > 0 }

// AnonymousRead reports whether reads need no token.
func (a *Authenticator) AnonymousRead() bool { return a.anonymousRead }

// RoleOf returns the role of a presented token, or RoleNone. It compares
// the token's hash with every entry, without stopping at a match.
func (a *Authenticator) RoleOf(token string) Role {
	h := sha256.Sum256([]byte(token))
	best := RoleNone
	for _, e := range a.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 && e.role > best {
			best = e.role
		}
	}
	return best
}

// Need returns the role a request to a guarded handler needs: read for
// GET and HEAD, write for every other method. Which handlers are guarded
// is decided by routing (see the package documentation), not here, so
// that a path the router would not serve cannot slip past a check.
func Need(r *http.Request) Role {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return RoleRead
	}
	return RoleWrite
}

// Authorize decides a request; nil means it may proceed.
func (a *Authenticator) Authorize(r *http.Request) error {
	if !a.Enabled() {
		return nil
	}
	need := Need(r)
	token, hasToken := bearer(r)
	if !hasToken {
		if need == RoleRead && a.anonymousRead {
			return nil
		}
		return ErrNoToken
	}
	got := a.RoleOf(token)
	switch {
	case got == RoleNone:
		return ErrBadToken
	case got < need:
		return ErrForbidden
	}
	return nil
}

// bearer extracts the token of "Authorization: Bearer <token>".
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", h != ""
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// CrossOrigin refuses non-safe requests that a browser marks as
// cross-origin, with 403 cross_origin: net/http's CrossOriginProtection.
// Wrap the whole server with it, with or without tokens.
func CrossOrigin(next http.Handler) http.Handler {
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross_origin", "cross-origin write rejected: send writes from the Baton UI or a non-browser client")
	}))
	return csrf.Handler(next)
}

// Middleware guards next with Authorize: 401 with WWW-Authenticate for a
// missing or unknown token, 403 for a read token on a write.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := a.Authorize(r)
		switch {
		case err == nil:
			next.ServeHTTP(w, r)
			return
		case errors.Is(err, ErrForbidden):
			a.log.Debug("request denied", "method", r.Method, "path", r.URL.Path, "reason", err.Error())
			writeError(w, http.StatusForbidden, "forbidden", err.Error())
			return
		}
		a.log.Debug("request denied", "method", r.Method, "path", r.URL.Path, "reason", err.Error())
		w.Header().Set("WWW-Authenticate", `Bearer realm="baton"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", err.Error())
	})
}

// writeError answers in the API's error shape.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// ListenAddr returns the address to bind. Without authentication, an
// address with no host (":8080") would expose unauthenticated writes to
// the network, so it becomes 127.0.0.1:port unless allowRemote is set. An
// explicit host is always kept: the operator asked for it.
func ListenAddr(listen string, authEnabled, allowRemote bool) (addr string, narrowed bool) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || authEnabled || allowRemote || host != "" {
		return listen, false
	}
	return net.JoinHostPort("127.0.0.1", port), true
}
