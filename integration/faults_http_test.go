package integration

// HTTP faults, caused for real against `airlock serve --http` on real runc: the TCP connection
// carrying a tools/call drops, the Go SDK client closes its transport, another request DELETEs
// the session. The SDK runs a call on its session's context, not the POST's, so before
// Airlock tied the two together each of these left the container running to its timeout.
// After each fault the host is checked (faults_test.go's helpers): the call's processes are
// gone within 1 s, the server still serves, the log verifies and closes the call as cancelled.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestFaultHTTP(t *testing.T) {
	cases := []struct {
		name string
		// fault starts `sleep marker` as a run_command call on s, waits for its container, and
		// breaks the client's side.
		fault func(t *testing.T, s *mcpServer, marker string)
		// cause is what the call's closing record says ended it.
		cause string
	}{
		{"TCP connection dropped", faultHTTPDrop, "the HTTP client disconnected"},
		{"transport closed", faultHTTPTransportClose, "the client ended its MCP session"},
		{"session DELETE", faultHTTPDelete, "the client ended its MCP session"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := faultEnv(t, faultPolicyOpen, 5*time.Minute)
			s := e.startHTTP(t)
			marker := faultMarker(t)
			tc.fault(t, s, marker)
			assertGone(t, marker, time.Second, tc.name)
			if _, ok := faultWait(10*time.Second, func() bool { return len(readAudit(t, e.audit)) == 1 }); !ok {
				t.Fatalf("no closing record of the call after %s: %+v", tc.name, readAuditAll(t, e.audit))
			}

			// The server still serves: a new session runs a call.
			cs := connectHTTP(t, s, "", nil)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": "echo still-" + marker}})
			if err != nil || res.IsError || !strings.Contains(mcpText(res), "still-"+marker) {
				t.Fatalf("call after %s: %v %+v", tc.name, err, res)
			}
			cs.Close()

			e.assertVerifies(t)
			recs := readAudit(t, e.audit)
			if len(recs) != 2 {
				t.Fatalf("%d closing records, want 2 (the broken call, the one after): %+v", len(recs), recs)
			}
			if rec := recs[0]; rec.Tool != "run_command" || !rec.Cancelled || rec.ContainerID == "" || !strings.Contains(rec.Message, tc.cause) {
				t.Errorf("record of the call broken by %s: %+v; want run_command, cancelled, with its container and %q", tc.name, rec, tc.cause)
			}
			if recs[1].Cancelled {
				t.Errorf("the call after the fault is recorded as cancelled: %+v", recs[1])
			}
		})
	}
}

// faultHTTPDrop opens a session with plain HTTP requests, POSTs the call on a TCP connection
// of its own and closes that connection while the response is pending (a client process
// killed, a laptop lid closed, a proxy timing out).
func faultHTTPDrop(t *testing.T, s *mcpServer, marker string) {
	sid := faultHTTPSession(t, s)
	u, err := url.Parse(s.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"run_command","arguments":{"command":"sleep %s"}}}`, marker)
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"+
		"Mcp-Session-Id: %s\r\nMcp-Protocol-Version: 2025-06-18\r\nContent-Length: %d\r\n\r\n%s", u.Path, u.Host, sid, len(body), body)
	waitContainer(t, marker)
	conn.Close()
}

// faultHTTPTransportClose: a Go SDK client closes its transport while a call is pending: it
// DELETEs the session, then aborts its requests. (ClientSession.Close would wait for the
// pending call first: the SDK's jsonrpc2 Close waits for outgoing calls.)
func faultHTTPTransportClose(t *testing.T, s *mcpServer, marker string) {
	ct := &faultHTTPTransport{Transport: &mcp.StreamableClientTransport{Endpoint: s.endpoint, MaxRetries: -1}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "airlock-fault", Version: "0"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	go cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": "sleep " + marker}})
	waitContainer(t, marker)
	if err := ct.conn.Close(); err != nil {
		t.Errorf("closing the transport: %v", err)
	}
}

// faultHTTPDelete: while a Go SDK client waits for its call, another request DELETEs the
// session (a client's cleanup path, an operator's script).
func faultHTTPDelete(t *testing.T, s *mcpServer, marker string) {
	cs := connectHTTP(t, s, "", nil)
	go cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": "sleep " + marker}})
	waitContainer(t, marker)
	start := time.Now()
	resp := faultHTTPRequest(t, http.MethodDelete, s.endpoint, cs.ID(), "")
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE: status %d, want 204", resp.StatusCode)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("DELETE took %s: it waited for the call instead of cancelling it", d.Round(time.Millisecond))
	}
}

// faultHTTPTransport keeps the connection it opens, so the test can close it under the session.
type faultHTTPTransport struct {
	mcp.Transport
	conn mcp.Connection
}

func (f *faultHTTPTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	conn, err := f.Transport.Connect(ctx)
	f.conn = conn
	return conn, err
}

// faultHTTPSession opens a session with plain HTTP requests and returns its id.
func faultHTTPSession(t *testing.T, s *mcpServer) string {
	t.Helper()
	resp := faultHTTPRequest(t, http.MethodPost, s.endpoint, "", mcpInitialize)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: status %d, session %q", resp.StatusCode, sid)
	}
	if resp := faultHTTPRequest(t, http.MethodPost, s.endpoint, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("notifications/initialized: status %d", resp.StatusCode)
	}
	return sid
}

// faultHTTPRequest sends one request to the MCP endpoint and reads its whole response.
func faultHTTPRequest(t *testing.T, method, endpoint, sid, body string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, endpoint, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, endpoint, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
