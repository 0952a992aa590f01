package runtime

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
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

// TestHTTPToolsPerGrant: each token's grant sees only the tools its policy allows it.
func TestHTTPToolsPerGrant(t *testing.T) {
	const ciTok, devTok = "ci-token-0123456789abcdef", "dev-token-0123456789abcdef"
	t.Setenv("CI_TOK", ciTok)
	t.Setenv("DEV_TOK", devTok)
	policy := `{"version":"1","default":"deny","tools":{
		"read_file":{},
		"run_command":{"require":[{"conditions":[{"path":"grant.id","op":"eq","value":"dev"}]}]}}}`
	rt := newTestRuntime(t, "http:\n  tokens:\n    - {token_env: CI_TOK, grant: ci}\n    - {token_env: DEV_TOK, grant: dev}\n", policy, &fakeBackend{})
	srv := httptest.NewUnstartedServer(nil)
	h, err := rt.HTTPHandler(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = h
	srv.Start()
	defer srv.Close()
	list := func(token string) []string {
		c := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil)
		cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{
			Endpoint: srv.URL + MCPPath, HTTPClient: &http.Client{Transport: bearerTransport{token}},
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
	srv := httptest.NewUnstartedServer(nil)
	h, err := rt.HTTPHandler(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = h
	srv.Start()
	defer srv.Close()
	send := func(token, session, body string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+MCPPath, strings.NewReader(body))
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
