package console

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/state"
	"github.com/airlock-mcp/airlock/upstream/pins"
)

// fakeBackend stands in for the runtime.
type fakeBackend struct {
	revoked  atomic.Bool
	approved []string // upstream/tool@hash
	decided  []string
	kills    []state.Kill
}

func (f *fakeBackend) Login(_ *http.Request, token string) (Admin, error) {
	switch token {
	case "admin-token":
		return Admin{Grant: "ops"}, nil
	case "":
		return Admin{}, errors.New("this server needs a token")
	}
	return Admin{}, errors.New("grant agent may not use the console")
}

func (f *fakeBackend) Check(context.Context, Admin) error {
	if f.revoked.Load() {
		return errors.New("grant ops is revoked")
	}
	return nil
}

func (f *fakeBackend) Pending() []Pending { return []Pending{} }
func (f *fakeBackend) PendingChanged() <-chan struct{} {
	return make(chan struct{})
}
func (f *fakeBackend) Decide(id string, approve bool, by string) error {
	f.decided = append(f.decided, id+":"+by)
	return nil
}
func (f *fakeBackend) Kills(context.Context) ([]state.Kill, error) { return f.kills, nil }
func (f *fakeBackend) SetKill(_ context.Context, k state.Kill) (int, error) {
	f.kills = append(f.kills, k)
	return 0, nil
}
func (f *fakeBackend) ClearKill(context.Context, state.Target) (bool, error) { return true, nil }
func (f *fakeBackend) Pins(context.Context) ([]pins.Status, error) {
	return []pins.Status{{Upstream: "gh", Tool: "search", State: pins.Changed, SeenHash: "h2"}}, nil
}
func (f *fakeBackend) PinDiff(context.Context, string, string) (string, error) { return "-a\n+b", nil }
func (f *fakeBackend) ApprovePin(_ context.Context, up, tool, hash string) error {
	f.approved = append(f.approved, up+"/"+tool+"@"+hash)
	return nil
}
func (f *fakeBackend) AuditPath() string               { return "/nonexistent" }
func (f *fakeBackend) Summary(context.Context) Summary { return Summary{} }

func serve(t *testing.T, b Backend) string {
	h, err := New(b)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// login logs a client with a cookie jar in and returns it with the page's CSRF token.
func login(t *testing.T, base, token string) (*http.Client, string) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(base+"/console/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	m := regexp.MustCompile(`name="airlock-csrf" content="([^"]+)"`).FindStringSubmatch(b.String())
	if m == nil {
		return c, ""
	}
	return c, m[1]
}

func post(t *testing.T, c *http.Client, u, csrf, body string) int {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if csrf != "" {
		req.Header.Set("X-Airlock-CSRF", csrf)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestConsoleAuthAndCSRF(t *testing.T) {
	fb := &fakeBackend{}
	base := serve(t, fb)

	// Refused tokens open nothing.
	c, csrf := login(t, base, "agent-token")
	if csrf != "" {
		t.Fatal("a non-admin token opened a console session")
	}
	if code := post(t, c, base+"/console/api/kills", "x", `{"scope":"all"}`); code != http.StatusUnauthorized {
		t.Fatalf("API without a session: %d", code)
	}

	c, csrf = login(t, base, "admin-token")
	if csrf == "" {
		t.Fatal("the admin's login shows no console")
	}
	u, _ := url.Parse(base + "/console/")
	var cookie *http.Cookie
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == cookieName {
			cookie = ck
		}
	}
	if cookie == nil {
		t.Fatal("no session cookie")
	}
	// A change without the token, or with another session's, is refused: another site's
	// page can make the browser send the cookie, never the header.
	if code := post(t, c, base+"/console/api/kills", "", `{"scope":"all"}`); code != http.StatusForbidden {
		t.Fatalf("POST without CSRF token: %d; want 403", code)
	}
	if code := post(t, c, base+"/console/api/kills", csrf+"x", `{"scope":"all"}`); code != http.StatusForbidden {
		t.Fatalf("POST with a wrong CSRF token: %d; want 403", code)
	}
	if len(fb.kills) != 0 {
		t.Fatal("a refused POST set a kill switch")
	}
	if code := post(t, c, base+"/console/api/kills", csrf, `{"scope":"tool","name":"run_command","reason":"r"}`); code != http.StatusOK {
		t.Fatalf("kill with the token: %d", code)
	}
	if len(fb.kills) != 1 || !strings.Contains(fb.kills[0].Reason, "console: ops") {
		t.Fatalf("kill switch set: %+v; want one naming the console admin", fb.kills)
	}
	if code := post(t, c, base+"/console/api/kills", csrf, `{"scope":"tool","name":"x","extra":1}`); code != http.StatusBadRequest {
		t.Fatalf("unknown field: %d; want 400", code)
	}
	// The pin approved is the one the admin saw (its hash).
	if code := post(t, c, base+"/console/api/pins/approve", csrf, `{"upstream":"gh","tool":"search","hash":"h2"}`); code != http.StatusNoContent {
		t.Fatalf("approve pin: %d", code)
	}
	if len(fb.approved) != 1 || fb.approved[0] != "gh/search@h2" {
		t.Fatalf("approved: %v", fb.approved)
	}
	if code := post(t, c, base+"/console/api/pending/abc/approve", csrf, ``); code != http.StatusNoContent || fb.decided[0] != "abc:console:ops" {
		t.Fatalf("decide: %d %v", code, fb.decided)
	}
	// Revoked since login: the session ends.
	fb.revoked.Store(true)
	resp, err := c.Get(base + "/console/api/summary")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked admin's request: %d; want 401", resp.StatusCode)
	}
}

func TestConsoleHeaders(t *testing.T) {
	base := serve(t, &fakeBackend{})
	for _, p := range []string{"/console/login", "/console/app.js", "/console/"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") ||
			strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", p, h)
		}
	}
	// No asset is loaded from elsewhere, and no inline script or handler exists.
	for _, name := range []string{"assets/index.html", "assets/app.js", "assets/app.css"} {
		b, err := assets.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).MatchString(s) || strings.Contains(s, "innerHTML") ||
			regexp.MustCompile(`<script>|\son[a-z]+="`).MatchString(s) {
			t.Errorf("%s loads external assets, inline code or sets HTML", name)
		}
	}
}

// A stream ends once its session's grant is revoked: an open EventSource must not go on
// receiving pending calls and records.
func TestConsoleStreamEndsOnRevocation(t *testing.T) {
	fb := &fakeBackend{}
	base := serve(t, fb)
	c, _ := login(t, base, "admin-token")
	for _, path := range []string{"/console/api/pending/stream", "/console/api/audit/stream"} {
		fb.revoked.Store(false)
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		fb.revoked.Store(true)
		done := make(chan struct{})
		go func() {
			io.Copy(io.Discard, resp.Body)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("%s still streams 5 s after the revocation", path)
		}
		resp.Body.Close()
	}
}
