package runtime

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// TestOpsEndpointsAuth checks who may read /healthz, /readyz and /metrics: health needs no
// credentials, metrics needs what /mcp needs (or the metrics token, and only it, when one is
// configured), and all three pass the same Host and Origin checks as /mcp.
func TestOpsEndpointsAuth(t *testing.T) {
	const agent = "0123456789abcdef0123456789abcdef"
	const scraper = "fedcba9876543210fedcba9876543210"
	t.Setenv("AIRLOCK_TEST_TOKEN", agent)
	t.Setenv("AIRLOCK_TEST_METRICS", scraper)
	tokens := "http:\n  tokens:\n    - {token_env: AIRLOCK_TEST_TOKEN, grant: ci}\n"
	handlers := map[string]http.Handler{}
	for name, yaml := range map[string]string{
		"open":         "",
		"locked":       tokens,
		"scraper":      tokens + "metrics:\n  token_env: AIRLOCK_TEST_METRICS\n",
		"open+scraper": "metrics:\n  token_env: AIRLOCK_TEST_METRICS\n",
	} {
		rt := newTestRuntime(t, yaml, "", &fakeBackend{})
		h, err := rt.HTTPHandler("127.0.0.1:8811")
		if err != nil {
			t.Fatal(err)
		}
		handlers[name] = h
	}
	tests := []struct {
		name, server, method, path, token string
		mutate                            func(*http.Request)
		want                              int
	}{
		{"healthz, no token", "locked", "GET", HealthzPath, "", nil, 200},
		{"readyz, no token", "locked", "GET", ReadyzPath, "", nil, 200},
		{"healthz HEAD", "open", "HEAD", HealthzPath, "", nil, 200},
		{"healthz POST", "open", "POST", HealthzPath, "", nil, 405},
		{"metrics POST", "open", "POST", MetricsPath, "", nil, 405},
		{"healthz, rebinding host", "locked", "GET", HealthzPath, "", func(r *http.Request) { r.Host = "evil.example" }, 403},
		{"metrics, rebinding host", "open", "GET", MetricsPath, "", func(r *http.Request) { r.Host = "evil.example:8811" }, 403},
		{"metrics, foreign origin", "open", "GET", MetricsPath, "", func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, 403},
		{"readyz, foreign origin", "locked", "GET", ReadyzPath, "", func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, 403},
		{"metrics, token-less loopback", "open", "GET", MetricsPath, "", nil, 200},
		{"metrics, token-less, remote peer", "open", "GET", MetricsPath, "", func(r *http.Request) { r.RemoteAddr = "192.0.2.7:40000" }, 403},
		{"metrics, no token", "locked", "GET", MetricsPath, "", nil, 401},
		{"metrics, wrong token", "locked", "GET", MetricsPath, strings.Repeat("x", 32), nil, 401},
		{"metrics, agent token", "locked", "GET", MetricsPath, agent, nil, 200},
		{"metrics, two credentials", "locked", "GET", MetricsPath, agent, func(r *http.Request) { r.Header.Add("Authorization", "Bearer "+agent) }, 400},
		{"metrics token configured, agent token refused", "scraper", "GET", MetricsPath, agent, nil, 401},
		{"metrics token configured, no token", "scraper", "GET", MetricsPath, "", nil, 401},
		{"metrics token", "scraper", "GET", MetricsPath, scraper, nil, 200},
		{"metrics token calls no tool", "scraper", "POST", MCPPath, scraper, nil, 401},
		{"metrics token on a token-less server", "open+scraper", "GET", MetricsPath, scraper, nil, 200},
		{"token-less server with a metrics token, no token", "open+scraper", "GET", MetricsPath, "", nil, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://127.0.0.1:8811"+tt.path, strings.NewReader(initBody))
			req.RemoteAddr = "127.0.0.1:40000"
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			if tt.mutate != nil {
				tt.mutate(req)
			}
			rec := httptest.NewRecorder()
			handlers[tt.server].ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%s %s on %s: %d %s, want %d", tt.method, tt.path, tt.server, rec.Code, rec.Body.String(), tt.want)
			}
			if tt.want == 200 && tt.path == MetricsPath && !strings.Contains(rec.Body.String(), "airlock_calls_total") && !strings.Contains(rec.Body.String(), "airlock_mcp_sessions") {
				t.Errorf("/metrics body has no airlock metrics:\n%s", rec.Body.String())
			}
		})
	}
}

// readyEnv is a runtime whose readiness runs on a clock the test moves, over a fake backend
// that counts the probes and fails while told to.
type readyEnv struct {
	rt     *Runtime
	h      http.Handler
	probes atomic.Int64
	fail   atomic.Bool
	mu     sync.Mutex
	now    time.Time
}

func newReadyEnv(t *testing.T) *readyEnv {
	e := &readyEnv{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	fb := &fakeBackend{respond: func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
		if slices.Equal(s.Argv, []string{"true"}) {
			e.probes.Add(1)
		}
		if e.fail.Load() {
			return sandbox.Result{}, fmt.Errorf("%w: runc at /secret/host/path is gone", sandbox.ErrUnavailable)
		}
		return sandbox.Result{Ran: true, ContainerID: "probe"}, nil
	}}
	e.rt = newTestRuntime(t, "", "", fb)
	e.rt.ready.now = func() time.Time {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.now
	}
	h, err := e.rt.HTTPHandler("127.0.0.1:8811")
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	return e
}

func (e *readyEnv) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func (e *readyEnv) get() (int, string) {
	req := httptest.NewRequest("GET", "http://127.0.0.1:8811"+ReadyzPath, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// eventually polls /readyz until it answers code (a stale result is served while a fresh
// check runs in the background).
func (e *readyEnv) eventually(t *testing.T, code int, wantBody ...string) string {
	t.Helper()
	var got int
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got, body = e.get(); got == code {
			for _, w := range wantBody {
				if !strings.Contains(body, w) {
					t.Fatalf("/readyz %d body lacks %q:\n%s", got, w, body)
				}
			}
			return body
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("/readyz stayed %d, want %d:\n%s", got, code, body)
	return ""
}

// TestReadyzBackend checks /readyz runs a real probe through the backend, caches it (polling
// costs one sandbox per 30 s), turns 503 with a plain reason when the backend fails, names
// no host path or component error, and recovers.
func TestReadyzBackend(t *testing.T) {
	e := newReadyEnv(t)
	e.eventually(t, 200, "ready\n", "backend fake: ok: ran `true` in a fresh sandbox", "audit log: ok", "checked 0s ago, at 2026-03-01T12:00:00Z")
	for range 20 {
		e.get()
	}
	e.advance(20 * time.Second)
	for range 20 {
		e.get()
		time.Sleep(5 * time.Millisecond) // room for a probe, were one started
	}
	if n := e.probes.Load(); n != 1 {
		t.Fatalf("%d probes for 40 polls within 30 s, want 1", n)
	}
	e.fail.Store(true)
	if code, _ := e.get(); code != 200 {
		t.Fatalf("a failure is seen before the cached result expires: %d", code)
	}
	e.advance(11 * time.Second)
	body := e.eventually(t, 503, "not ready: the fake backend cannot run a sandbox (the backend is unavailable; see the server log", "backend fake: FAIL")
	if strings.Contains(body, "/secret") || strings.Contains(body, "gone") || strings.Contains(body, e.rt.cfg.Audit.Path) {
		t.Errorf("/readyz shows a component's error or a host path to an unauthenticated caller:\n%s", body)
	}
	e.fail.Store(false)
	e.advance(6 * time.Second) // failures are re-checked after 5 s
	e.eventually(t, 200, "ready\n")

	e.rt.Shutdown(errors.New("test"))
	if code, body := e.get(); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("while shutting down: %d %s", code, body)
	}
}

// TestReadyzAuditLog makes the audit log's directory unwritable for real (the immutable flag
// for root, whom modes do not stop; a mode otherwise) and checks /readyz says so, then
// recovers when it is writable again.
func TestReadyzAuditLog(t *testing.T) {
	e := newReadyEnv(t)
	e.eventually(t, 200, "audit log: ok")
	dir := filepath.Dir(e.rt.cfg.Audit.Path)
	restore := makeUnwritable(t, dir)
	e.advance(3 * time.Second)
	body := e.eventually(t, 503, "not ready: the audit log cannot take records", "audit log: FAIL")
	if strings.Contains(body, dir) {
		t.Errorf("/readyz names the audit directory:\n%s", body)
	}
	restore()
	e.advance(3 * time.Second)
	e.eventually(t, 200, "ready\n")
}

// makeUnwritable makes dir unwritable to this process until the returned func (also run at
// the test's end) undoes it.
func makeUnwritable(t *testing.T, dir string) func() {
	t.Helper()
	if os.Getuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		undo := func() { once.Do(func() { os.Chmod(dir, 0o700) }) }
		t.Cleanup(undo)
		return undo
	}
	set := func(on bool) error { return testenv.SetImmutable(dir, on) }
	if err := set(true); err != nil {
		t.Skipf("SKIPPED LOUDLY: cannot set the immutable flag on %s (file system without it, or no CAP_LINUX_IMMUTABLE): %v", dir, err)
	}
	var once sync.Once
	undo := func() {
		once.Do(func() {
			if err := set(false); err != nil {
				t.Errorf("clearing the immutable flag of %s: %v", dir, err)
			}
		})
	}
	t.Cleanup(undo)
	return undo
}
