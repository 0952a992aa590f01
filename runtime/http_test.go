package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/sandbox"
)

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

func post(t *testing.T, url string, mutate func(*http.Request)) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(initBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if mutate != nil {
		mutate(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestHTTPSecurity(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	t.Setenv("AIRLOCK_TEST_TOKEN", token)
	open := newTestRuntime(t, "http:\n  allowed_origins: [\"https://ide.example.com\"]\n  allowed_hosts: [\"airlock.internal\"]\n", "", &fakeBackend{})
	locked := newTestRuntime(t, "http:\n  tokens:\n    - {token_env: AIRLOCK_TEST_TOKEN, grant: ci}\n", "", &fakeBackend{})
	serve := func(rt *Runtime) string {
		srv := httptest.NewUnstartedServer(nil)
		h, err := rt.HTTPHandler(srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv.Config.Handler = h
		srv.Start()
		t.Cleanup(srv.Close)
		return srv.URL
	}
	openURL, lockedURL := serve(open), serve(locked)
	tests := []struct {
		name   string
		url    string
		mutate func(*http.Request)
		want   int
	}{
		{"loopback, no token needed", openURL + MCPPath, nil, http.StatusOK},
		{"localhost host", openURL + MCPPath, func(r *http.Request) { r.Host = "localhost" + r.Host[strings.LastIndex(r.Host, ":"):] }, http.StatusOK},
		{"rebinding host refused", openURL + MCPPath, func(r *http.Request) { r.Host = "evil.example:8811" }, http.StatusForbidden},
		{"rebinding host without port refused", openURL + MCPPath, func(r *http.Request) { r.Host = "evil.example" }, http.StatusForbidden},
		{"allowed host", openURL + MCPPath, func(r *http.Request) { r.Host = "airlock.internal" }, http.StatusOK},
		{"foreign origin refused", openURL + MCPPath, func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, http.StatusForbidden},
		{"null origin refused", openURL + MCPPath, func(r *http.Request) { r.Header.Set("Origin", "null") }, http.StatusForbidden},
		{"own origin", openURL + MCPPath, func(r *http.Request) { r.Header.Set("Origin", openURL) }, http.StatusOK},
		{"listed origin", openURL + MCPPath, func(r *http.Request) { r.Header.Set("Origin", "https://ide.example.com") }, http.StatusOK},
		{"other path", openURL + "/other", nil, http.StatusNotFound},
		{"token missing", lockedURL + MCPPath, nil, http.StatusUnauthorized},
		{"token wrong", lockedURL + MCPPath, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+strings.Repeat("x", 32)) }, http.StatusUnauthorized},
		{"token not bearer", lockedURL + MCPPath, func(r *http.Request) { r.Header.Set("Authorization", "Basic "+token) }, http.StatusUnauthorized},
		{"token right", lockedURL + MCPPath, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }, http.StatusOK},
		{"token right, bad host", lockedURL + MCPPath, func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+token)
			r.Host = "evil.example"
		}, http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, tc.url, tc.mutate)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge")
			}
		})
	}
}

func TestCheckBind(t *testing.T) {
	tests := []struct {
		addr   string
		tokens bool
		ok     bool
	}{
		{"127.0.0.1:8811", false, true},
		{"[::1]:8811", false, true},
		{"localhost:8811", false, true},
		{"0.0.0.0:8811", false, false},
		{":8811", false, false},
		{"192.168.1.5:8811", false, false},
		{"[::]:8811", false, false},
		{"0.0.0.0:8811", true, true},
	}
	for _, tc := range tests {
		err := CheckBind(tc.addr, tc.tokens)
		if (err == nil) != tc.ok {
			t.Errorf("CheckBind(%q, tokens=%v) = %v, want ok=%v", tc.addr, tc.tokens, err, tc.ok)
		}
	}
}

func TestHTTPRefusesShortToken(t *testing.T) {
	t.Setenv("AIRLOCK_TEST_TOKEN", "short")
	rt := newTestRuntime(t, "http:\n  tokens:\n    - {token_env: AIRLOCK_TEST_TOKEN, grant: ci}\n", "", &fakeBackend{})
	if _, err := rt.HTTPHandler("127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("err = %v", err)
	}
}

func TestHTTPNonLoopbackNeedsToken(t *testing.T) {
	rt := newTestRuntime(t, "", "", &fakeBackend{})
	if _, err := rt.HTTPHandler("0.0.0.0:8811"); err == nil || !strings.Contains(err.Error(), "without a bearer token") {
		t.Fatalf("err = %v", err)
	}
}

// bearerTransport adds a token to every request of the SDK's HTTP client.
type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// listToolsAs lists the tools a client with token sees, sorted.
func listToolsAs(t *testing.T, endpoint, token string) []string {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: endpoint, HTTPClient: &http.Client{Transport: bearerTransport{token}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	return names
}

// TestHTTPSameGrantOtherLabels: two tokens of one grant name with different labels are
// judged by their own labels, whichever connected first.
func TestHTTPSameGrantOtherLabels(t *testing.T) {
	const adminTok, guestTok = "admin-token-0123456789abcdef", "guest-token-0123456789abcdef"
	t.Setenv("ADMIN_TOK", adminTok)
	t.Setenv("GUEST_TOK", guestTok)
	policy := `{"version":"1","default":"deny","tools":{
		"read_file":{},
		"run_command":{"require":[{"conditions":[{"path":"grant.labels.role","op":"eq","value":"admin"}]}]}}}`
	rt := newTestRuntime(t, "http:\n  tokens:\n    - {token_env: ADMIN_TOK, grant: team, labels: {role: admin}}\n    - {token_env: GUEST_TOK, grant: team, labels: {role: guest}}\n", policy, &fakeBackend{})
	endpoint, _ := serveFront(t, rt)
	if got := listToolsAs(t, endpoint, adminTok); !slices.Equal(got, []string{"read_file", "run_command"}) {
		t.Errorf("admin sees %v", got)
	}
	if got := listToolsAs(t, endpoint, guestTok); !slices.Equal(got, []string{"read_file"}) {
		t.Errorf("guest sees %v after the admin connected; want [read_file] (its own labels)", got)
	}
}

// TestHTTPToolsPerGrant: each token's grant sees only the tools its policy allows it.
func TestHTTPToolsPerGrant(t *testing.T) {
	const ciTok, devTok = "ci-token-0123456789abcdef", "dev-token-0123456789abcdef"
	t.Setenv("CI_TOK", ciTok)
	t.Setenv("DEV_TOK", devTok)
	policy := `{"version":"1","default":"deny","tools":{
		"read_file":{},
		"run_command":{"require":[{"conditions":[{"path":"grant.id","op":"eq","value":"dev"}]}]}}}`
	rt := newTestRuntime(t, "http:\n  tokens:\n    - {token_env: CI_TOK, grant: ci}\n    - {token_env: DEV_TOK, grant: dev}\n", policy, &fakeBackend{})
	endpoint, _ := serveFront(t, rt)
	list := func(token string) []string { return listToolsAs(t, endpoint, token) }
	if got := list(ciTok); !slices.Equal(got, []string{"read_file"}) {
		t.Errorf("ci sees %v, want [read_file]", got)
	}
	if got := list(devTok); !slices.Equal(got, []string{"read_file", "run_command"}) {
		t.Errorf("dev sees %v, want [read_file run_command]", got)
	}
}

// TestHTTPSessionBoundToGrant: a session started with one token cannot be driven with another.
func TestHTTPSessionBoundToGrant(t *testing.T) {
	const ciTok, devTok = "ci-token-0123456789abcdef", "dev-token-0123456789abcdef"
	t.Setenv("CI_TOK", ciTok)
	t.Setenv("DEV_TOK", devTok)
	fb := &fakeBackend{}
	rt := newTestRuntime(t, "http:\n  tokens:\n    - {token_env: CI_TOK, grant: ci}\n    - {token_env: DEV_TOK, grant: dev}\n", "", fb)
	endpoint, _ := serveFront(t, rt)
	send := func(token, session, body string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+token)
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp, b.String()
	}
	resp, _ := send(ciTok, "", initBody)
	session := resp.Header.Get("Mcp-Session-Id")
	if session == "" {
		t.Fatal("no session id")
	}
	send(ciTok, session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"git_status","arguments":{}}}`
	_, body := send(devTok, session, call)
	if !strings.Contains(body, "another grant") || strings.Contains(body, `"result"`) {
		t.Fatalf("call with another token on the session: %s", body)
	}
	if n := len(fb.runs()); n != 0 {
		t.Fatalf("hijacked session ran %d sandboxes", n)
	}
}

// serveFront serves rt's HTTP handler on a loopback port; it returns the endpoint URL and
// the handler (for its session table).
func serveFront(t *testing.T, rt *Runtime) (string, *httpFront) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	h, err := rt.HTTPHandler(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL + MCPPath, h.(*httpFront)
}

// rawRequest sends one MCP request over HTTP and returns the response with its body read.
func rawRequest(t *testing.T, method, url, session, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// openSession initializes a session with raw requests and returns its id.
func openSession(t *testing.T, url string) string {
	t.Helper()
	resp, body := rawRequest(t, http.MethodPost, url, "", initBody)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: status %d, session %q: %s", resp.StatusCode, sid, body)
	}
	if resp, body := rawRequest(t, http.MethodPost, url, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("notifications/initialized: status %d: %s", resp.StatusCode, body)
	}
	return sid
}

// blockingBackend is a fake backend whose runs block until their ctx ends, reporting each
// start and each cancellation's cause.
func blockingBackend() (*fakeBackend, <-chan struct{}, <-chan error) {
	started, cancelled := make(chan struct{}, 8), make(chan error, 8)
	fb := &fakeBackend{respond: func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			cancelled <- context.Cause(ctx)
			return sandbox.Result{ExitCode: sandbox.ExitKilled}, ctx.Err()
		case <-time.After(60 * time.Second):
			return sandbox.Result{TimedOut: true, ExitCode: 124}, nil
		}
	}}
	return fb, started, cancelled
}

const callBody = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"git_status","arguments":{}}}`

// TestHTTPFaultsCancelCall: a tools/call whose HTTP client goes away is cancelled at once
// (the backend's ctx ends, so runc kills the container), whichever way it goes: the TCP
// connection carrying the POST drops, the client closes its transport (DELETE, then its
// requests are aborted), or another request DELETEs the session. Without it the SDK runs the
// handler on the session's context and the container lives to its timeout.
func TestHTTPFaultsCancelCall(t *testing.T) {
	cases := []struct {
		name  string
		cause error
		// fault starts a call on session sid of the server at url, waits for started, and
		// then breaks the client's side.
		fault func(t *testing.T, url, sid string, started <-chan struct{})
	}{
		{"TCP connection dropped", errClientGone, func(t *testing.T, url, sid string, started <-chan struct{}) {
			conn := rawCall(t, url, sid)
			waitStarted(t, started)
			conn.Close()
		}},
		{"session DELETE", errSessionDeleted, func(t *testing.T, url, sid string, started <-chan struct{}) {
			conn := rawCall(t, url, sid)
			defer conn.Close()
			waitStarted(t, started)
			t0 := time.Now()
			if resp, body := rawRequest(t, http.MethodDelete, url, sid, ""); resp.StatusCode != http.StatusNoContent {
				t.Errorf("DELETE: status %d: %s", resp.StatusCode, body)
			}
			if d := time.Since(t0); d > 2*time.Second {
				t.Errorf("DELETE took %v: it waited for the call instead of cancelling it", d)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fb, started, cancelled := blockingBackend()
			rt := newTestRuntime(t, "", "", fb)
			url, _ := serveFront(t, rt)
			sid := openSession(t, url)
			tc.fault(t, url, sid, started)
			t0 := time.Now()
			select {
			case cause := <-cancelled:
				t.Logf("cancelled %v after the fault: %v", time.Since(t0), cause)
				if !errors.Is(cause, tc.cause) {
					t.Errorf("cause %v, want %v", cause, tc.cause)
				}
			case <-time.After(time.Second):
				t.Fatal("the call was not cancelled within 1s of the fault")
			}
			checkHealthy(t, url, fb)
		})
	}
}

// TestHTTPTransportCloseCancelsCall: a Go SDK client closing its transport while a call is
// pending (ClientSession.Close would wait for the call) gets the call cancelled.
func TestHTTPTransportCloseCancelsCall(t *testing.T) {
	fb, started, cancelled := blockingBackend()
	rt := newTestRuntime(t, "", "", fb)
	url, _ := serveFront(t, rt)
	ct := &capturingTransport{Transport: &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "git_status", Arguments: map[string]any{}})
	}()
	waitStarted(t, started)
	t0 := time.Now()
	go ct.conn.Close()
	select {
	case cause := <-cancelled:
		t.Logf("cancelled %v after the transport closed: %v", time.Since(t0), cause)
	case <-time.After(time.Second):
		t.Fatal("the call was not cancelled within 1s of the transport closing")
	}
	checkHealthy(t, url, fb)
}

// capturingTransport keeps the connection it opens, so a test can close it under the session.
type capturingTransport struct {
	mcp.Transport
	conn mcp.Connection
}

func (c *capturingTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	conn, err := c.Transport.Connect(ctx)
	c.conn = conn
	return conn, err
}

// rawCall POSTs callBody for session sid on a connection of its own and leaves the response
// pending; the caller closes the connection.
func rawCall(t *testing.T, url, sid string) net.Conn {
	t.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"+
		"Mcp-Session-Id: %s\r\nMcp-Protocol-Version: 2025-06-18\r\nContent-Length: %d\r\n\r\n%s", u.Path, u.Host, sid, len(callBody), callBody)
	return conn
}

func waitStarted(t *testing.T, started <-chan struct{}) {
	t.Helper()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not reach the backend")
	}
}

// checkHealthy runs one call on a new session after a fault.
func checkHealthy(t *testing.T, url string, fb *fakeBackend) {
	t.Helper()
	fb.mu.Lock()
	fb.respond = nil
	fb.mu.Unlock()
	sid := openSession(t, url)
	resp, body := rawRequest(t, http.MethodPost, url, sid, callBody)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"result"`) || strings.Contains(body, `"isError":true`) {
		t.Fatalf("call after the fault: status %d: %s", resp.StatusCode, body)
	}
}

// TestHTTPSessionOfAnotherGrant: a request naming another grant's session is refused before
// the SDK sees it; a DELETE from another grant would otherwise end the session and kill its
// calls, a GET would receive its progress and approval prompts.
func TestHTTPSessionOfAnotherGrant(t *testing.T) {
	const ciTok, devTok = "ci-token-0123456789abcdef", "dev-token-0123456789abcdef"
	t.Setenv("CI_TOK", ciTok)
	t.Setenv("DEV_TOK", devTok)
	rt := newTestRuntime(t, "http:\n  tokens:\n    - {token_env: CI_TOK, grant: ci}\n    - {token_env: DEV_TOK, grant: dev}\n", "", &fakeBackend{})
	url, _ := serveFront(t, rt)
	var sid string
	send := func(method, token, session, body string) int {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+token)
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if session == "" {
			sid = resp.Header.Get("Mcp-Session-Id")
		}
		return resp.StatusCode
	}
	if code := send(http.MethodPost, ciTok, "", initBody); code != http.StatusOK || sid == "" {
		t.Fatalf("initialize: status %d, session %q", code, sid)
	}
	for _, m := range []string{http.MethodDelete, http.MethodGet} {
		if code := send(m, devTok, sid, ""); code != http.StatusForbidden {
			t.Errorf("%s of a ci session with the dev token: status %d, want 403", m, code)
		}
	}
	if code := send(http.MethodDelete, ciTok, sid, ""); code != http.StatusNoContent {
		t.Errorf("DELETE with the session's own token: status %d, want 204", code)
	}
	if code := send(http.MethodGet, ciTok, sid, ""); code != http.StatusNotFound {
		t.Errorf("GET of the deleted session: status %d, want 404", code)
	}
}
