package integration

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
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
