// Package console is Airlock's web console: the calls waiting for a human's approval, the live
// audit trail and the chain's state, kill switches, upstream pins with their diffs, and a
// summary of what the server is doing. It is served by `airlock serve --http` under /console,
// with no external assets, a strict Content-Security-Policy and CSRF protection; every page
// and API call needs a console session, which only an admin can open.
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/state"
	"github.com/airlock-mcp/airlock/upstream/pins"
)

//go:embed assets
var assets embed.FS

// Prefix is where the console lives on the HTTP listener.
const Prefix = "/console"

// Admin is who opened a console session: a grant with the console's admin label, or the
// operator on loopback.
type Admin struct {
	Grant string `json:"grant"`
}

// Pending is a call waiting for an answer.
type Pending struct {
	ID       string         `json:"id"`
	Tool     string         `json:"tool"`
	Grant    string         `json:"grant"`
	Session  string         `json:"session"`
	Args     map[string]any `json:"args"`
	Rule     string         `json:"rule"`
	Message  string         `json:"message"`
	Since    time.Time      `json:"since"`
	Deadline time.Time      `json:"deadline"`
}

// Summary is the server's state at a glance.
type Summary struct {
	Calls    map[string]int64 `json:"calls"` // by decision, since the server started
	InFlight int              `json:"in_flight"`
	Pending  int              `json:"pending"`
	Policy   string           `json:"policy_sha256"`
	Store    string           `json:"store"`
	Started  time.Time        `json:"started"`
}

// Backend is what the console shows and changes: the runtime implements it.
type Backend interface {
	// Login opens a console session for the bearer token, or, for "", for the operator
	// connecting on loopback without one (when the server serves token-less callers). An
	// error says why not; it is shown on the login page.
	Login(r *http.Request, token string) (Admin, error)
	// Check is asked on every request: a grant revoked since login ends its sessions.
	Check(ctx context.Context, a Admin) error

	Pending() []Pending
	PendingChanged() <-chan struct{}
	Decide(id string, approve bool, by string) error

	Kills(ctx context.Context) ([]state.Kill, error)
	SetKill(ctx context.Context, k state.Kill) (stopped int, err error)
	ClearKill(ctx context.Context, t state.Target) (bool, error)

	Pins(ctx context.Context) ([]pins.Status, error)
	PinDiff(ctx context.Context, upstream, tool string) (string, error)
	ApprovePin(ctx context.Context, upstream, tool, hash string) error

	AuditPath() string
	Summary(ctx context.Context) Summary
}

// sessionTTL bounds a console session; the admin logs in again after it.
const sessionTTL = 12 * time.Hour

// cookieName is the console session cookie: HttpOnly (no script reads it), SameSite=Strict
// (no other site's page sends it), scoped to the console's path.
const cookieName = "airlock_console"

type session struct {
	admin   Admin
	csrf    string
	expires time.Time
}

// Handler serves the console.
type Handler struct {
	b     Backend
	index *template.Template
	now   func() time.Time

	mu       sync.Mutex
	sessions map[string]*session
}

// New returns the console's handler, to be mounted at Prefix behind the server's Host and
// Origin checks.
func New(b Backend) (*Handler, error) {
	idx, err := template.ParseFS(assets, "assets/index.html")
	if err != nil {
		return nil, err
	}
	return &Handler{b: b, index: idx, now: time.Now, sessions: map[string]*session{}}, nil
}

// securityHeaders: the console's pages load only its own script and style (no inline code,
// so injected markup cannot run), are never framed (clickjacking an Approve button), and
// leak no URL to other sites.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // no-referrer would make Chromium send Origin: null on the console's own form posts
	h.Set("Cache-Control", "no-store")
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	path := strings.TrimPrefix(r.URL.Path, Prefix)
	switch {
	case path == "/app.js" || path == "/app.css":
		h.asset(w, r, path)
		return
	case path == "/login":
		h.login(w, r)
		return
	}
	s, ok := h.session(r)
	if !ok {
		if strings.HasPrefix(path, "/api/") {
			http.Error(w, "Unauthorized: log in at "+Prefix+"/login", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
		return
	}
	if err := h.b.Check(r.Context(), s.admin); err != nil {
		h.drop(r)
		http.Error(w, "Unauthorized: "+err.Error(), http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// CSRF: a change needs the session's token in a header, which only the console's own
		// script (same origin, CSP-restricted) can read from the page and send; another
		// site's form can neither read it nor set a header.
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Airlock-CSRF")), []byte(s.csrf)) != 1 {
			http.Error(w, "Forbidden: missing or wrong CSRF token; reload the console", http.StatusForbidden)
			return
		}
	}
	switch {
	case path == "" || path == "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = h.index.Execute(w, map[string]string{"CSRF": s.csrf, "Admin": s.admin.Grant})
	case path == "/logout" && r.Method == http.MethodPost:
		h.drop(r)
		w.WriteHeader(http.StatusNoContent)
	case strings.HasPrefix(path, "/api/"):
		h.api(w, r, strings.TrimPrefix(path, "/api"), s)
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) asset(w http.ResponseWriter, r *http.Request, path string) {
	b, err := assets.ReadFile("assets" + path)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if strings.HasSuffix(path, ".js") {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	}
	_, _ = w.Write(b)
}

// login shows the form (GET) and opens a session (POST). On loopback without tokens a GET
// opens the operator's session at once.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	var token string
	switch r.Method {
	case http.MethodGet:
		if a, err := h.b.Login(r, ""); err == nil {
			h.open(w, a)
			http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
			return
		}
		h.loginPage(w, "")
		return
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			h.loginPage(w, "bad form")
			return
		}
		token = strings.TrimSpace(r.PostForm.Get("token"))
	default:
		http.Error(w, "Method not allowed", http.StatusMethodNotAllowed)
		return
	}
	a, err := h.b.Login(r, token)
	if err != nil || token == "" {
		if err == nil {
			err = errors.New("enter a token")
		}
		w.WriteHeader(http.StatusUnauthorized)
		h.loginPage(w, err.Error())
		return
	}
	h.open(w, a)
	http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
}

func (h *Handler) loginPage(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = loginTemplate.Execute(w, msg)
}

var loginTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Airlock console: log in</title>
<link rel="stylesheet" href="/console/app.css"></head>
<body><main class="login"><h1>Airlock console</h1>
<form method="post" action="/console/login">
<label for="token">Admin token (a grant labelled for the console)</label>
<input id="token" name="token" type="password" autocomplete="off" autofocus>
<button id="login" type="submit">Log in</button>
{{if .}}<p class="error" id="login-error">{{.}}</p>{{end}}
</form></main></body></html>`))

func (h *Handler) open(w http.ResponseWriter, a Admin) {
	id, csrf := rand.Text()+rand.Text(), rand.Text()+rand.Text()
	h.mu.Lock()
	now := h.now()
	for k, s := range h.sessions {
		if now.After(s.expires) {
			delete(h.sessions, k)
		}
	}
	h.sessions[id] = &session{admin: a, csrf: csrf, expires: now.Add(sessionTTL)}
	h.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: Prefix, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL.Seconds())})
}

func (h *Handler) session(r *http.Request) (*session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sessions[c.Value]
	if !ok || h.now().After(s.expires) {
		return nil, false
	}
	return s, true
}

func (h *Handler) drop(r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		h.mu.Lock()
		delete(h.sessions, c.Value)
		h.mu.Unlock()
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
