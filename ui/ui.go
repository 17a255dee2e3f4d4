package ui

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the UI.
type Config struct {
	// InstanceID names the instance serving the page, shown in the header
	// (when reads need a token, the page asks the API instead).
	InstanceID string
	// Version is shown in the footer, unless reads need a token. Default "".
	Version string
	// ShellEnabled offers shell targets in the job form. Default false.
	ShellEnabled bool
	// AuthEnabled makes the page ask for a token when the API wants one.
	AuthEnabled bool
	// AnonymousRead: reads need no token, so the pages may show the
	// instance's id and version without one.
	AnonymousRead bool
	// Logger receives template errors (slog.Default()).
	Logger *slog.Logger
}

// Handler serves the UI's pages and static files.
type Handler struct {
	cfg   Config
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// page is one screen: its template and title.
type page struct {
	name, title, nav string
}

// New parses the templates; an error means the embedded files are broken.
func New(cfg Config) (*Handler, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "ui"), pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	for _, name := range []string{"cluster", "jobs", "job", "runs"} {
		t, err := template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: template %s: %w", name, err)
		}
		h.pages[name] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	h.mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		// Files change with the binary; a short cache keeps deploys visible.
		w.Header().Set("Cache-Control", "max-age=60")
		files.ServeHTTP(w, r)
	}))
	h.mux.Handle("GET /{$}", h.render(page{"cluster", "Cluster", "cluster"}))
	h.mux.Handle("GET /jobs", h.render(page{"jobs", "Jobs", "jobs"}))
	h.mux.Handle("GET /jobs/new", h.render(page{"job", "New job", "jobs"}))
	h.mux.Handle("GET /jobs/{name}/edit", h.render(page{"job", "Edit job", "jobs"}))
	h.mux.Handle("GET /jobs/{name}/runs", h.render(page{"runs", "Runs", "jobs"}))
	h.mux.Handle("GET /runs", h.render(page{"runs", "Runs", "runs"}))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		http.Error(w, "404 page not found: the UI has /, /jobs, /jobs/new, /jobs/NAME/edit, /jobs/NAME/runs and /runs", http.StatusNotFound)
	})
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// pageData is what the layout renders; the script reads it from data-*
// attributes on <body>.
type pageData struct {
	Title, Page, Nav string
	Job              string // the job named in the URL, if any
	Config
}

func (h *Handler) render(p page) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		data := pageData{Title: p.title, Page: p.name, Nav: p.nav, Job: r.PathValue("name"), Config: h.cfg}
		if h.cfg.AuthEnabled && !h.cfg.AnonymousRead {
			// The pages are served without a token; when reads need one,
			// they tell nothing about the instance either.
			data.InstanceID, data.Version = "", ""
		}
		if err := h.pages[p.name].ExecuteTemplate(&buf, "layout", data); err != nil {
			h.log.Error("render failed", "page", p.name, "error", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		securityHeaders(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(buf.Bytes())
	})
}

func securityHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Frame-Options", "DENY")
}
