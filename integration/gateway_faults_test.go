package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// Faults around a stdio upstream (server-everything in its sandbox): the client goes away,
// Airlock is killed, the server is killed. Each is caused for real, and then the host is
// checked: the server's processes (found by a marker argument on its command line) and the
// audit log.

const gwFaultPolicy = `{"version": "1", "default": "allow"}`

// gwFaultEnv is an mcpEnv serving server-everything as the stdio upstream "ev", whose command
// line carries marker.
func gwFaultEnv(t *testing.T, marker string) *mcpEnv {
	t.Helper()
	if _, err := os.Stat("/usr/bin/node"); err != nil {
		testenv.Unavailable(t, "node is not installed at /usr/bin/node (the host image's node)")
	}
	modules, err := filepath.EvalSymlinks(filepath.Join(testenv.RepoRoot(t), "upstream", "servers", "node_modules"))
	if err != nil {
		testenv.Unavailable(t, "the upstream servers are not installed (make upstreams): %v", err)
	}
	e := newMCPEnv(t, gwFaultPolicy, nil)
	// A name of its own: containers and pins are found by upstream name.
	e.extraYAML = fmt.Sprintf(`upstreams:
  %s:
    prefix: ev
    command: [node, /opt/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js, stdio, %s]
    mounts: [{source: %q, target: /opt/mcp}]
    timeout: 30s
`, uniqueUpstream(t, "ev"), marker, filepath.Dir(modules))
	return e
}

// gwEcho calls ev__echo and fails the test unless it answered.
func gwEcho(t *testing.T, cs *mcp.ClientSession, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__echo", Arguments: map[string]any{"message": msg}})
	if err != nil {
		t.Fatalf("ev__echo: %v", err)
	}
	if res.IsError || len(res.Content) == 0 || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, msg) {
		t.Fatalf("ev__echo: %+v", res.Content)
	}
}

// The client closes its end: Airlock ends the session, and the session's server, container
// and all, is gone within seconds.
func TestFaultUpstreamClientGone(t *testing.T) {
	marker := faultMarker(t)
	e := gwFaultEnv(t, marker)
	cs := e.connectStdio(t, nil)
	gwEcho(t, cs, "hello")
	if len(faultProcs(marker)) == 0 {
		t.Fatal("the upstream's server is not running on the host after a call")
	}
	if err := cs.Close(); err != nil {
		t.Logf("closing the session: %v", err)
	}
	assertGone(t, marker, 10*time.Second, "client gone")
}

// Airlock is SIGKILLed while a session's server runs: nothing of Airlock is left to stop it.
// The server loses its stdin and stdout with Airlock (server-everything then exits); whatever
// remains of its container is reaped by the next Airlock start, and the audit log verifies.
func TestFaultUpstreamAirlockKilled(t *testing.T) {
	marker := faultMarker(t)
	e := gwFaultEnv(t, marker)
	cmd := e.command(context.Background(), append([]string{"serve", "--stdio"}, e.serveArgs(t)...)...)
	cmd.Stderr = e.logWriter(t, "airlock serve --stdio (killed)")
	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-fault", Version: "0"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	gwEcho(t, cs, "before the kill")
	if len(faultProcs(marker)) == 0 {
		t.Fatal("the upstream's server is not running on the host after a call")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cs.Close()
	time.Sleep(time.Second)
	if len(faultProcs(marker)) == 0 {
		t.Log("the server exited when Airlock's end of its pipes closed")
	}
	// The next start reaps what the killed Airlock left.
	e.runOneCall(t, "echo after-restart")
	assertGone(t, marker, 10*time.Second, "Airlock killed, then restarted")
	e.assertVerifies(t)
}

// The server is killed on the host in the middle of a call: the call gets an error result that
// says how the server ended, recorded; the next call starts a new server and works.
func TestFaultUpstreamServerKilled(t *testing.T) {
	marker := faultMarker(t)
	e := gwFaultEnv(t, marker)
	cs := e.connectStdio(t, nil)
	gwEcho(t, cs, "warm")
	pids := faultProcs(marker)
	if len(pids) == 0 {
		t.Fatal("the upstream's server is not running on the host after a call")
	}
	done := make(chan *mcp.CallToolResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__trigger-long-running-operation", Arguments: map[string]any{"duration": 20, "steps": 20}})
		if err != nil {
			res = &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "protocol error: " + err.Error()}}}
		}
		done <- res
	}()
	time.Sleep(2 * time.Second)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	var res *mcp.CallToolResult
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the call did not end after its server was killed")
	}
	text := res.Content[0].(*mcp.TextContent).Text
	if !res.IsError || !strings.Contains(text, "exited with code 137") {
		t.Errorf("the call whose server was killed: error %v %q", res.IsError, text)
	}
	gwEcho(t, cs, "after the restart")
	recs := readAudit(t, e.audit)
	found := false
	for _, r := range recs {
		found = found || (r.Tool == "ev__trigger-long-running-operation" && r.Decision == "error")
	}
	if !found {
		t.Errorf("no error record for the interrupted call: %+v", recs)
	}
	e.assertVerifies(t)
	_ = cs.Close()
	assertGone(t, marker, 10*time.Second, "session closed")
}
