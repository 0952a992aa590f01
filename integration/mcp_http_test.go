package integration

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// mcpInitialize is a minimal, valid MCP initialize request.
const mcpInitialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{` +
	`"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`

// TestMCPHTTPRebinding sends raw requests to `airlock serve --http` on 127.0.0.1 with the Host
// and Origin headers a DNS-rebinding page would send. A browser tricked into resolving
// attacker.example to 127.0.0.1 sends Host: attacker.example and Origin: http://attacker.example;
// if the server answered, any web page could drive the agent's tools.
func TestMCPHTTPRebinding(t *testing.T) {
	e := newMCPEnv(t, mcpPolicy, map[string]string{"hello.txt": mcpHello})
	s := e.startHTTP(t)
	cases := []struct {
		name     string
		host     string // "" = the real address
		origin   string // "" = none
		rejected bool
	}{
		{name: "loopback without origin", rejected: false},
		{name: "loopback origin", origin: "http://" + s.addr, rejected: false},
		{name: "foreign origin", origin: "http://attacker.example", rejected: true},
		{name: "foreign host", host: "attacker.example", rejected: true},
		{name: "foreign host with port", host: "attacker.example:" + strings.Split(s.addr, ":")[1], rejected: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, strings.NewReader(mcpInitialize))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("POST %s: %v", s.endpoint, err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			ok := resp.StatusCode >= 200 && resp.StatusCode < 300
			switch {
			case tc.rejected && ok:
				t.Errorf("status %d: the server answered a request a rebinding page could send: %s", resp.StatusCode, body)
			case tc.rejected && resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusMisdirectedRequest && resp.StatusCode != http.StatusBadRequest:
				t.Errorf("status %d, want 403 (or 421/400) for a foreign Host/Origin: %s", resp.StatusCode, body)
			case !tc.rejected && !ok:
				t.Errorf("status %d for a legitimate loopback request: %s", resp.StatusCode, body)
			}
		})
	}
}

// TestMCPHTTPBearerToken configures a bearer token on a loopback server: a Go SDK client
// without it cannot connect, one with a wrong token cannot either, and one with it acts as
// the token's grant, which the policy and the audit record see.
func TestMCPHTTPBearerToken(t *testing.T) {
	// run_command requires the "ci" grant, so a call that works proves the token's grant was
	// applied (the default stdio/loopback grant is "local").
	const policy = `{
  "version": "1",
  "default": "allow",
  "tools": {
    "run_command": {
      "require": [{"conditions": [{"path": "grant.id", "op": "eq", "value": "ci"}],
                   "on_deny": "Only CI may run commands."}]
    }
  }
}`
	e := newMCPEnv(t, policy, map[string]string{"hello.txt": mcpHello})
	token := rand.Text()
	e.extraYAML = "http:\n  tokens:\n    - token_env: AIRLOCK_TEST_TOKEN\n      grant: ci\n"
	e.extraEnv = []string{"AIRLOCK_TEST_TOKEN=" + token}
	s := e.startHTTP(t)

	for _, bad := range []string{"", "not-" + token} {
		hc := &http.Client{Timeout: 10 * time.Second}
		if bad != "" {
			hc.Transport = mcpBearer{token: bad, base: http.DefaultTransport}
		}
		client := mcp.NewClient(&mcp.Implementation{Name: "no-token", Version: "0"}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.endpoint, HTTPClient: hc, MaxRetries: -1}, nil)
		cancel()
		if err == nil {
			cs.Close()
			t.Errorf("connected with token %q; want the server to refuse (401)", bad)
		}
	}

	cs := connectHTTP(t, s, token, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": "echo token-ok"}})
	if err != nil {
		t.Fatalf("run_command with the token: %v", err)
	}
	raw, _ := json.Marshal(res)
	if res.IsError || !strings.Contains(string(raw), "token-ok") {
		t.Errorf("run_command as grant ci: want success with token-ok, got %s", raw)
	}
	cs.Close()
	s.stop()
	recs := readAudit(t, e.audit)
	if len(recs) != 1 || recs[0].Grant != "ci" {
		t.Errorf("audit records %+v, want one with grant ci", recs)
	}
}

// TestMCPHTTPConcurrentSessions runs several Go SDK sessions against one HTTP server at once,
// mixing allowed and denied calls. Every answer must belong to its own request (no cross-talk
// between sessions), and the audit log must hold exactly one record per call, chained and
// verifiable: records are never dropped or interleaved under load.
func TestMCPHTTPConcurrentSessions(t *testing.T) {
	const sessions, callsPerSession = 3, 6
	e := newMCPEnv(t, mcpPolicy, map[string]string{"hello.txt": mcpHello})
	s := e.startHTTP(t)
	clients := make([]*mcp.ClientSession, sessions)
	for i := range clients {
		clients[i] = connectHTTP(t, s, "", nil)
	}
	errs := make(chan error, sessions*callsPerSession)
	var wg sync.WaitGroup
	for i, cs := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range callsPerSession {
				token := fmt.Sprintf("s%d-c%d", i, j)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				command, denied := "echo "+token, j%2 == 1
				if denied {
					command = "rm -f " + token
				}
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": command}})
				cancel()
				if err != nil {
					errs <- fmt.Errorf("%s: %v", token, err)
					continue
				}
				raw, _ := json.Marshal(res)
				switch text := mcpText(res); {
				case denied && (!res.IsError || !strings.HasPrefix(text, "[POLICY DENIED]")):
					errs <- fmt.Errorf("%s: want a denial, got %s", token, raw)
				case !denied && (res.IsError || !strings.Contains(string(raw), token)):
					errs <- fmt.Errorf("%s: want its own output %q, got %s", token, token, raw)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, cs := range clients {
		cs.Close()
	}
	s.stop()

	if code, out := e.verifyAudit(t, e.audit); code != 0 {
		t.Fatalf("airlock audit verify exited %d after concurrent calls:\n%s", code, out)
	}
	recs := readAudit(t, e.audit)
	decisions := map[string]int{}
	for _, r := range recs {
		decisions[r.Decision]++
	}
	want := sessions * callsPerSession
	if len(recs) != want || decisions["deny"] != want/2 || decisions["allow"] != want/2 {
		t.Errorf("audit has %d records with decisions %v, want %d: %d allow, %d deny", len(recs), decisions, want, want/2, want/2)
	}
}
