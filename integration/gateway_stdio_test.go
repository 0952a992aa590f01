package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The real npm MCP servers as stdio upstreams: `airlock serve` starts each client session's
// server in a long-lived sandbox (runc, the host image, the servers' code mounted read-only)
// at the session's first call, and the Go SDK client calls it through Airlock over stdio and
// streamable HTTP. After each test nothing of the servers may be left on the host.

// plantedGitHubToken is a gitleaks-style token (github-pat) put in a server's environment as
// a plain value: only Airlock's secret rules, not its brokered-credential list, can catch it.
var plantedGitHubToken = "ghp_" + "Z4mQ8rT2vX6bN1kL9pW3yC7dF5hJ0aSe1UoP"

// everythingStdioPolicy allows every tool of server-everything but denies an echo of
// destructive words.
const everythingStdioPolicy = `{
  "version": "1",
  "default": "allow",
  "tools": {
    "ev__echo": {
      "deny_if": [{"conditions": [{"path": "args.message", "op": "contains", "value": "rm -rf"}],
                   "on_deny": "No destructive words."}]
    }
  }
}`

// everythingStdioEnv is an Airlock serving server-everything as the stdio upstream u, with a
// brokered secret (from Airlock's environment), the planted token (a plain value) and a
// variable only Airlock's own environment holds.
type everythingStdioEnv struct {
	*mcpEnv
	u        stdioUpstream
	secret   string // brokered: API_TOKEN from_env
	hostOnly string // in Airlock's environment, never the server's
}

func newEverythingStdioEnv(t *testing.T, base string) *everythingStdioEnv {
	t.Helper()
	u := newStdioUpstream(t, base)
	e := newMCPEnv(t, everythingStdioPolicy, nil)
	e.quiet = true
	se := &everythingStdioEnv{mcpEnv: e, u: u,
		secret:   "brokered-" + strings.ToLower(rand.Text()),
		hostOnly: "host-only-" + strings.ToLower(rand.Text()[:12])}
	e.extraEnv = []string{"AIRLOCK_STDIO_SECRET=" + se.secret, "AIRLOCK_HOST_ONLY=" + se.hostOnly}
	e.extraYAML = "builtins: []\nupstreams:\n" + u.yaml(t, "ev", []string{"node", everythingIndex, "stdio"}, map[string]string{
		"API_TOKEN": "{from_env: AIRLOCK_STDIO_SECRET}",
		"PLANTED":   fmt.Sprintf("{value: %s}", plantedGitHubToken),
	}, "")
	u.checkNoneLeft(t)
	return se
}

// progressLog collects the progress notifications a client receives, by token.
type progressLog struct {
	mu   sync.Mutex
	got  map[any][]float64
	seen chan any // a token, at each notification (never blocks)
}

func newProgressLog() *progressLog {
	return &progressLog{got: map[any][]float64{}, seen: make(chan any, 256)}
}

func (p *progressLog) handler(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
	p.mu.Lock()
	p.got[req.Params.ProgressToken] = append(p.got[req.Params.ProgressToken], req.Params.Progress)
	p.mu.Unlock()
	select {
	case p.seen <- req.Params.ProgressToken:
	default:
	}
}

func (p *progressLog) of(token any) []float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]float64(nil), p.got[token]...)
}

// TestGatewayStdioEverything calls server-everything, run by Airlock as a stdio upstream in
// its sandbox, with the Go SDK client over Airlock's stdio and streamable-HTTP transports.
func TestGatewayStdioEverything(t *testing.T) {
	for _, transport := range []string{"stdio", "http"} {
		t.Run(transport, func(t *testing.T) {
			se := newEverythingStdioEnv(t, "ev-stdio-"+transport)
			progress := newProgressLog()
			opts := &mcp.ClientOptions{ProgressNotificationHandler: progress.handler}
			var cs *mcp.ClientSession
			var s *mcpServer
			if transport == "stdio" {
				cs = se.connectStdio(t, opts)
			} else {
				s = se.startHTTP(t)
				cs = connectHTTP(t, s, "", opts)
			}
			se.exercise(t, cs, progress)

			// The session's end stops its server: over HTTP while Airlock keeps running (the
			// client's DELETE ends the session), over stdio with Airlock.
			if err := cs.Close(); err != nil {
				t.Errorf("closing the client session: %v", err)
			}
			start := time.Now()
			se.u.waitServers(t, 0, 15*time.Second, "after the client session ended")
			t.Logf("server stopped %s after the client session ended", time.Since(start).Round(time.Millisecond))
			if s != nil {
				s.stop()
			}
			se.checkAudit(t)
		})
	}
}

// exercise makes the calls of TestGatewayStdioEverything on one client session.
func (se *everythingStdioEnv) exercise(t *testing.T, cs *mcp.ClientSession, progress *progressLog) {
	u := se.u
	start := time.Now()
	list, err := cs.ListTools(gatewayCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first tools/list (starts a server for the listing, pins %d tools): %s", len(list.Tools), time.Since(start).Round(time.Millisecond))
	tools := map[string]*mcp.Tool{}
	for _, tl := range list.Tools {
		tools[tl.Name] = tl
	}
	for _, want := range []string{"ev__echo", "ev__get-tiny-image", "ev__get-structured-content", "ev__trigger-long-running-operation", "ev__get-env"} {
		if tools[want] == nil {
			t.Fatalf("tools/list lacks %s; got %d tools", want, len(list.Tools))
		}
	}
	// The listing's server is not kept: the session's own starts at its first call.
	u.waitServers(t, 0, 15*time.Second, "after tools/list")

	call := func(tool string, args map[string]any, meta mcp.Meta) (*mcp.CallToolResult, time.Duration) {
		t.Helper()
		p := &mcp.CallToolParams{Name: tool, Arguments: args, Meta: meta}
		start := time.Now()
		res, err := cs.CallTool(gatewayCtx(t), p)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		return res, time.Since(start)
	}

	res, cold := call("ev__echo", map[string]any{"message": "hello through a sandboxed server"}, nil)
	t.Logf("first call (cold: starts the session's server in its sandbox): %s", cold.Round(time.Millisecond))
	if res.IsError || mcpText(res) != "Echo: hello through a sandboxed server" {
		t.Errorf("echo: %v %q", res.IsError, mcpText(res))
	}
	if res.Meta["airlock/audit_id"] == nil || res.Meta["airlock/untrusted"] != true || res.Meta["airlock/upstream"] != u.name {
		t.Errorf("echo: Airlock's fields missing from _meta: %v", res.Meta)
	}
	server := u.waitServers(t, 1, 10*time.Second, "after the session's first call")
	var warm []string
	for i := range 3 {
		res, d := call("ev__echo", map[string]any{"message": fmt.Sprintf("warm %d", i)}, nil)
		if res.IsError || mcpText(res) != fmt.Sprintf("Echo: warm %d", i) {
			t.Errorf("warm echo %d: %v %q", i, res.IsError, mcpText(res))
		}
		warm = append(warm, d.Round(100*time.Microsecond).String())
	}
	t.Logf("warm calls (the same server): %s", strings.Join(warm, ", "))

	res, d := call("ev__get-tiny-image", map[string]any{}, nil)
	t.Logf("get-tiny-image: %s", d.Round(time.Millisecond))
	var img *mcp.ImageContent
	for _, c := range res.Content {
		if i, ok := c.(*mcp.ImageContent); ok {
			img = i
		}
	}
	if res.IsError || img == nil || img.MIMEType != "image/png" || !bytes.HasPrefix(img.Data, []byte("\x89PNG\r\n\x1a\n")) {
		raw, _ := json.Marshal(res)
		t.Errorf("get-tiny-image: want a PNG image block, got %.300s", raw)
	}

	res, _ = call("ev__get-structured-content", map[string]any{"location": "Chicago"}, nil)
	if res.IsError || res.StructuredContent == nil {
		t.Errorf("get-structured-content: isError %v, structuredContent %v: %q", res.IsError, res.StructuredContent, mcpText(res))
	} else {
		validateAgainst(t, tools["ev__get-structured-content"].OutputSchema, res.StructuredContent)
		if st, _ := res.StructuredContent.(map[string]any); st["temperature"] == nil || st["audit_id"] != nil {
			t.Errorf("structured content: %#v", res.StructuredContent)
		}
	}

	res, _ = call("ev__echo", map[string]any{"message": "please rm -rf /"}, nil)
	if !res.IsError || !strings.Contains(mcpText(res), "[POLICY DENIED] No destructive words.") {
		t.Errorf("policy: %v %q", res.IsError, mcpText(res))
	}

	// get-env prints the server's whole environment: the brokered secret and the planted
	// token are in it, and must not reach the agent; Airlock's own environment must not be
	// in it at all.
	res, _ = call("ev__get-env", map[string]any{}, nil)
	env := mcpText(res)
	switch {
	case res.IsError:
		t.Errorf("get-env: %q", env)
	case strings.Contains(env, se.secret):
		t.Errorf("get-env shows the brokered secret:\n%s", env)
	case strings.Contains(env, plantedGitHubToken):
		t.Errorf("get-env shows the planted token:\n%s", env)
	case !strings.Contains(env, `"API_TOKEN": "[REDACTED:upstream-credential]"`):
		t.Errorf("get-env: the brokered secret is not shown redacted:\n%s", env)
	case !strings.Contains(env, `"PLANTED": "[REDACTED:`):
		t.Errorf("get-env: the planted token is not shown redacted:\n%s", env)
	case !strings.Contains(env, u.marker):
		t.Errorf("get-env: the server's environment lacks the marker its config sets:\n%s", env)
	case strings.Contains(env, se.hostOnly) || strings.Contains(env, "AIRLOCK_STDIO_SECRET"):
		t.Errorf("get-env: Airlock's own environment reached the server:\n%s", env)
	}
	if r, _ := res.Meta["airlock/redactions"].(map[string]any); r["upstream-credential"] == nil || len(r) < 2 {
		t.Errorf("get-env: _meta airlock/redactions %v, want upstream-credential and the token's rule", res.Meta["airlock/redactions"])
	}

	// Progress of a long operation reaches the client, every report in order, the last one
	// (sent just ahead of the result) included. The wait is for the test's own client,
	// whose SDK may run its handler after returning the result.
	res, d = call("ev__trigger-long-running-operation", map[string]any{"duration": 2, "steps": 4}, mcp.Meta{"progressToken": "long-1"})
	waitFor(time.Second, func() bool { return len(progress.of("long-1")) == 4 })
	got := progress.of("long-1")
	if res.IsError || !slices.Equal(got, []float64{1, 2, 3, 4}) {
		t.Errorf("long operation (%s): isError %v, progress %v, want 1..4: %q", d.Round(time.Millisecond), res.IsError, got, mcpText(res))
	}
	t.Logf("long operation: %s, progress %v", d.Round(time.Millisecond), got)

	// Cancelling a long operation ends the call promptly; the session's server keeps serving.
	ctx, cancel := context.WithCancel(gatewayCtx(t))
	ended := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__trigger-long-running-operation",
			Arguments: map[string]any{"duration": 30, "steps": 60}, Meta: mcp.Meta{"progressToken": "long-2"}})
		ended <- err
	}()
	if !waitFor(20*time.Second, func() bool { return len(progress.of("long-2")) > 0 }) {
		cancel()
		t.Fatal("the long operation to cancel reported no progress")
	}
	cancel()
	cancelled := time.Now()
	select {
	case err := <-ended:
		t.Logf("cancelled call returned after %s: %v", time.Since(cancelled).Round(time.Millisecond), err)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled call: %v, want context.Canceled", err)
		}
		if took := time.Since(cancelled); took > 2*time.Second {
			t.Errorf("the cancelled call took %s to end", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled call has not ended 10 s after its cancellation")
	}
	seenAt := len(progress.of("long-2"))
	res, d = call("ev__echo", map[string]any{"message": "after the cancel"}, nil)
	if res.IsError || mcpText(res) != "Echo: after the cancel" {
		t.Errorf("echo after the cancel: %v %q", res.IsError, mcpText(res))
	}
	t.Logf("echo after the cancel: %s", d.Round(time.Millisecond))
	if after := u.waitServers(t, 1, 5*time.Second, "after the cancel"); len(after) != 1 || len(server) != 1 || after[0] != server[0] {
		t.Errorf("the session's server changed: %v before the cancel, %v after", server, after)
	}
	// The upstream goes on with the cancelled operation (server-everything ignores the
	// cancellation), but its progress is no longer the client's.
	time.Sleep(time.Second)
	if n := len(progress.of("long-2")); n > seenAt+1 {
		t.Errorf("progress of the cancelled call still reaches the client: %d notifications after the cancel", n-seenAt)
	}
}

// checkAudit checks the audit records of exercise, once Airlock has stopped.
func (se *everythingStdioEnv) checkAudit(t *testing.T) {
	t.Helper()
	if code, out := se.verifyAudit(t, se.audit); code != 0 {
		t.Errorf("audit verify: exit %d\n%s", code, out)
	}
	raw, err := os.ReadFile(se.audit)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(se.secret)) || bytes.Contains(raw, []byte(plantedGitHubToken)) {
		t.Error("the audit log holds a secret")
	}
	count := map[string]int{}
	var cancelled, pins int
	for _, r := range readGatewayAudit(t, se.audit) {
		if r.Upstream != se.u.name || r.Backend != "upstream" || "ev__"+r.UpstreamTool != r.Tool {
			t.Errorf("record %s: upstream %q, backend %q, tool %q upstream_tool %q", r.AuditID, r.Upstream, r.Backend, r.Tool, r.UpstreamTool)
		}
		if r.Decision == "pin_first_use" {
			pins++
			continue
		}
		count[r.Tool+" "+r.Decision]++
		switch {
		case r.Decision == "deny" && !strings.HasPrefix(r.Rule, "/tools/ev__echo/deny_if/"):
			t.Errorf("denial's rule %q", r.Rule)
		case r.Decision == "allow" && r.Cancelled:
			cancelled++
			if r.Tool != "ev__trigger-long-running-operation" || r.ExitCode != nil {
				t.Errorf("cancelled record: %+v", r)
			}
		case r.Decision == "allow" && (r.ExitCode == nil || *r.ExitCode != 0):
			t.Errorf("record of %s: exit code %v, want 0", r.Tool, r.ExitCode)
		}
		if r.Tool == "ev__get-env" && (r.Redactions["upstream-credential"] < 1 || len(r.Redactions) < 2) {
			t.Errorf("get-env's record: redactions %v, want upstream-credential and the planted token's rule", r.Redactions)
		}
	}
	for want, n := range map[string]int{
		"ev__echo allow":                           5,
		"ev__echo deny":                            1,
		"ev__get-tiny-image allow":                 1,
		"ev__get-structured-content allow":         1,
		"ev__get-env allow":                        1,
		"ev__trigger-long-running-operation allow": 2,
	} {
		if count[want] != n {
			t.Errorf("audit: %d records %q, want %d (all: %v)", count[want], want, n, count)
		}
	}
	if cancelled != 1 || pins < 10 {
		t.Errorf("audit: %d cancelled call(s), want 1; %d pin_first_use records", cancelled, pins)
	}
}

// validateAgainst validates v against a tool's outputSchema as a client would.
func validateAgainst(t *testing.T, schema, v any) {
	t.Helper()
	raw, err := json.Marshal(schema)
	if err != nil || schema == nil {
		t.Fatalf("outputSchema %v: %v", schema, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("output.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("output.json")
	if err != nil {
		t.Fatalf("outputSchema does not compile: %v\n%s", err, raw)
	}
	inst, _ := json.Marshal(v)
	iv, err := jsonschema.UnmarshalJSON(bytes.NewReader(inst))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(iv); err != nil {
		t.Errorf("structuredContent %s does not validate against the outputSchema %s: %v", inst, raw, err)
	}
}

// waitFor polls cond every 20 ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// TestGatewayStdioFilesystem runs server-filesystem as a stdio upstream confined to the
// workspace: its sandbox mounts the workspace read-write as the workspace's owner, and the
// server is told /workspace is all it may serve. It reads, lists and writes there; paths
// outside are refused by the server, and host files outside the workspace are not in its
// sandbox at all.
func TestGatewayStdioFilesystem(t *testing.T) {
	const owner = 4321 // the workspace's owner: the server runs as it
	u := newStdioUpstream(t, "fs-stdio")
	e := newMCPEnv(t, `{"version":"1","default":"allow"}`, map[string]string{
		"notes/hello.txt": "hello from the workspace\n",
		"notes/todo.md":   "- sandbox the servers\n",
	})
	e.quiet = true
	// A host file beside the workspace, and links to it from inside: the server must not
	// serve it (its own check), and its sandbox does not hold it anyway.
	hostOnly := "HOST-ONLY-" + strings.ToLower(rand.Text()[:12])
	outside := filepath.Join(filepath.Dir(e.workspace), "outside.txt")
	if err := os.WriteFile(outside, []byte(hostOnly+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"rel-link": "../outside.txt", "abs-link": outside, "passwd-link": "/etc/passwd"} {
		if err := os.Symlink(target, filepath.Join(e.workspace, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := filepath.Walk(e.workspace, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, owner, owner)
	}); err != nil {
		t.Fatal(err)
	}
	// The profile continues the config's profiles: mapping (configYAML ends with it).
	e.extraYAML = "  fsup: {image: host, workspace: rw, user: workspace-owner, memory: 512Mi, pids: 256, timeout: 1h}\n" +
		"builtins: []\nupstreams:\n" + u.yaml(t, "fs", []string{"node", filesystemIndex, "/workspace"}, nil, "    profile: fsup\n")
	u.checkNoneLeft(t)
	s := e.startHTTP(t)
	cs := connectHTTP(t, s, "", nil)

	call := func(tool string, args map[string]any) (*mcp.CallToolResult, string) {
		t.Helper()
		start := time.Now()
		res, err := cs.CallTool(gatewayCtx(t), &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			t.Fatalf("%s %v: %v", tool, args, err)
		}
		text := mcpText(res)
		t.Logf("%s %v: %s isError=%v %.160q", tool, args, time.Since(start).Round(time.Millisecond), res.IsError, text)
		if strings.Contains(text, hostOnly) {
			t.Errorf("%s %v: the host file outside the workspace was read: %q", tool, args, text)
		}
		return res, text
	}

	if res, text := call("fs__read_text_file", map[string]any{"path": "/workspace/notes/hello.txt"}); res.IsError || text != "hello from the workspace\n" {
		t.Errorf("read: %v %q", res.IsError, text)
	}
	u.waitServers(t, 1, 10*time.Second, "after the first call")
	if res, text := call("fs__list_directory", map[string]any{"path": "/workspace/notes"}); res.IsError ||
		!strings.Contains(text, "[FILE] hello.txt") || !strings.Contains(text, "[FILE] todo.md") {
		t.Errorf("list: %v %q", res.IsError, text)
	}
	if res, text := call("fs__write_file", map[string]any{"path": "/workspace/notes/written.txt", "content": "written by the sandboxed server\n"}); res.IsError {
		t.Errorf("write: %q", text)
	}
	p := filepath.Join(e.workspace, "notes", "written.txt")
	if b, err := os.ReadFile(p); err != nil || string(b) != "written by the sandboxed server\n" {
		t.Errorf("the write did not land in the host workspace: %q %v", b, err)
	} else if fi, err := os.Stat(p); err != nil || fi.Sys().(*syscall.Stat_t).Uid != owner {
		t.Errorf("the written file's owner: %v %v, want the workspace's (%d)", fi.Sys(), err, owner)
	}
	if res, text := call("fs__list_allowed_directories", map[string]any{}); res.IsError || !strings.Contains(text, "/workspace") {
		t.Errorf("allowed directories: %q", text)
	}

	for _, path := range []string{"/etc/passwd", "/workspace/../etc/passwd", "../outside.txt", "/workspace/passwd-link", "/opt/mcp/package.json"} {
		res, text := call("fs__read_text_file", map[string]any{"path": path})
		if !res.IsError || !strings.Contains(text, "Access denied") {
			t.Errorf("read %s: isError %v %q, want the server's refusal", path, res.IsError, text)
		}
	}
	// Links to the host file beside the workspace dangle in the sandbox, which does not hold
	// it: the server cannot resolve them (and call() checks its content never shows).
	for _, path := range []string{"/workspace/rel-link", "/workspace/abs-link"} {
		res, text := call("fs__read_text_file", map[string]any{"path": path})
		if !res.IsError || !(strings.Contains(text, "Access denied") || strings.Contains(text, "does not exist")) {
			t.Errorf("read %s: isError %v %q, want a refusal", path, res.IsError, text)
		}
	}
	for _, path := range []string{"/tmp/escape.txt", "/workspace/../escape.txt"} {
		res, text := call("fs__write_file", map[string]any{"path": path, "content": "x"})
		if !res.IsError || !strings.Contains(text, "Access denied") {
			t.Errorf("write %s: isError %v %q, want the server's refusal", path, res.IsError, text)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(e.workspace), "escape.txt")); err == nil {
		t.Error("a write outside the workspace landed on the host")
	}

	cs.Close()
	u.waitServers(t, 0, 15*time.Second, "after the client session ended")
	s.stop()
	count := map[string]int{}
	for _, r := range readGatewayAudit(t, e.audit) {
		if r.Upstream != u.name || "fs__"+r.UpstreamTool != r.Tool {
			t.Errorf("record %s: upstream %q tool %q upstream_tool %q", r.AuditID, r.Upstream, r.Tool, r.UpstreamTool)
		}
		count[r.Tool+" "+r.Decision]++
	}
	if count["fs__read_text_file allow"] != 8 || count["fs__write_file allow"] != 3 || count["fs__list_directory allow"] != 1 {
		t.Errorf("audit: %v", count)
	}
}
