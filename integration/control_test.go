package integration

// Operator controls against a running `airlock serve --http` on real runc: grants created,
// used and revoked with the airlock CLI; kill switches and resume; live policy reload by file
// change, SIGHUP and `airlock policy reload`. Each is checked on the host (processes of the
// stopped call), in the answers, and in the audit log.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// airlockCLI runs an airlock command in e's environment and returns its stdout, stderr and
// exit code.
func (e *mcpEnv) airlockCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := e.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(interface{ ExitCode() int })
		if !ok {
			t.Fatalf("airlock %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// longCall starts `sleep marker` through run_command on cs and returns a channel with its
// result, once the container runs.
func longCall(t *testing.T, cs *mcp.ClientSession, marker string) <-chan *mcp.CallToolResult {
	t.Helper()
	done := make(chan *mcp.CallToolResult, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": "sleep " + marker}})
		if err != nil {
			res = &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "transport error: " + err.Error()}}}
		}
		done <- res
	}()
	waitContainer(t, marker)
	return done
}

func callCommand(t *testing.T, cs *mcp.ClientSession, command string) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": command}})
}

// TestGrants: a grant created with the CLI calls with its token as itself (its labels reach
// the policy); revoked, its call in flight is stopped within 1 s and its token refused from
// the next request on; only the token's sha256 is stored.
func TestGrants(t *testing.T) {
	const policy = `{"version": "1", "default": "deny", "tools": {"run_command": {
	  "require": [{"conditions": [{"path": "grant.labels.team", "op": "eq", "value": "pay"}], "on_deny": "Only team pay."}]}}}`
	e := faultEnv(t, policy, 5*time.Minute)
	e.writeConfig(t)
	token, errOut, code := e.airlockCLI(t, "grant", "create", "alice", "--label", "team=pay", "--config", e.config)
	token = strings.TrimSpace(token)
	if code != 0 || !strings.HasPrefix(token, "alk_") || !strings.Contains(errOut, "shown only now") {
		t.Fatalf("grant create: code %d, stdout %q, stderr %q", code, token, errOut)
	}
	if _, errOut, code := e.airlockCLI(t, "grant", "create", "alice", "--config", e.config); code == 0 || !strings.Contains(errOut, "revoke it first") {
		t.Fatalf("a second active grant alice: code %d, %s", code, errOut)
	}
	// Only the hash is on disk.
	sum := sha256.Sum256([]byte(token))
	var found bool
	filepath.WalkDir(e.state, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(token)) {
			t.Errorf("%s holds the token itself", p)
		}
		found = found || bytes.Contains(b, []byte(hex.EncodeToString(sum[:])))
		return nil
	})
	if !found {
		t.Error("the token's sha256 is in no file of the state store")
	}

	s := e.startHTTP(t)
	cs := connectHTTP(t, s, token, nil)
	res, err := callCommand(t, cs, "echo as-alice")
	if err != nil || res.IsError || !strings.Contains(mcpText(res), "as-alice") {
		t.Fatalf("run_command with alice's token: %v %+v", err, res)
	}
	// The operator's own token-less session is grant local, without the label.
	local := connectHTTP(t, s, "", nil)
	if res, err := callCommand(t, local, "echo as-local"); err != nil || !res.IsError || !strings.Contains(mcpText(res), "Only team pay") {
		t.Fatalf("run_command as local: %v %+v; want denied", err, res)
	}

	marker := faultMarker(t)
	done := longCall(t, cs, marker)
	start := time.Now()
	out, errOut, code := e.airlockCLI(t, "grant", "revoke", "alice", "--config", e.config)
	if code != 0 || !strings.Contains(out, "grant alice revoked") || !strings.Contains(out, "1 calls in flight stopped") {
		t.Fatalf("grant revoke: code %d, %q %q", code, out, errOut)
	}
	assertGone(t, marker, time.Second, "grant revoke")
	select {
	case res := <-done:
		t.Logf("revoked grant's call ended after %v: %s", time.Since(start), mcpText(res))
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked grant's call did not return")
	}
	// The next request with the token is refused, in the existing session and in a new one.
	if res, err := callCommand(t, cs, "echo after-revoke"); err == nil && !res.IsError {
		t.Fatalf("a call with a revoked token ran: %+v", res)
	}
	req, _ := http.NewRequest(http.MethodPost, s.endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("request with a revoked token: %d %q; want 401 invalid_token", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	list, _, _ := e.airlockCLI(t, "grant", "list", "--config", e.config)
	if !strings.Contains(list, "alice") || !strings.Contains(list, "revoked") || !strings.Contains(list, "team=pay") {
		t.Errorf("grant list:\n%s", list)
	}
	local.Close()
	cs.Close()
	s.stop()
	e.assertVerifies(t)
	var stopped bool
	for _, r := range readAudit(t, e.audit) {
		if r.Grant == "alice" && r.Cancelled && r.ContainerID != "" && strings.Contains(r.Message, "grant alice is revoked") {
			stopped = true
		}
	}
	if !stopped {
		t.Errorf("no record of alice's call cancelled by the revocation: %+v", readAudit(t, e.audit))
	}
}

// TestKillSwitch: airlock kill stops a tool's call in flight within 1 s and denies later
// calls with a /kill rule pointer, across a restart, until airlock resume; other tools go on.
func TestKillSwitch(t *testing.T) {
	e := faultEnv(t, `{"version": "1", "default": "deny", "tools": {"run_command": {}, "read_file": {}}}`, 5*time.Minute)
	e.files(t, map[string]string{"a.txt": "still readable\n"})
	s := e.startHTTP(t)
	cs := connectHTTP(t, s, "", nil)
	marker := faultMarker(t)
	done := longCall(t, cs, marker)
	start := time.Now()
	out, errOut, code := e.airlockCLI(t, "kill", "--tool", "run_command", "--reason", "incident 42", "--config", e.config)
	if code != 0 || !strings.Contains(out, "rule /kill/tool/run_command") || !strings.Contains(out, "1 calls in flight stopped") {
		t.Fatalf("airlock kill: code %d, %q %q", code, out, errOut)
	}
	took := assertGone(t, marker, time.Second, "airlock kill")
	t.Logf("killed call's processes gone %v after the switch (command took %v)", took, time.Since(start))
	<-done

	res, err := callCommand(t, cs, "echo after-kill")
	if err != nil || !res.IsError || !strings.Contains(mcpText(res), "[POLICY DENIED]") || !strings.Contains(mcpText(res), "/kill/tool/run_command") || !strings.Contains(mcpText(res), "incident 42") {
		t.Fatalf("call after the kill switch: %v %+v", err, res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": "a.txt"}}); err != nil || res.IsError {
		t.Fatalf("read_file with run_command killed: %v %+v", err, res)
	}
	cs.Close()
	s.stop()

	// Persisted: a restarted server still refuses.
	s = e.startHTTP(t)
	cs = connectHTTP(t, s, "", nil)
	if res, err := callCommand(t, cs, "echo after-restart"); err != nil || !res.IsError || !strings.Contains(mcpText(res), "/kill/tool/run_command") {
		t.Fatalf("call after a restart with the switch on: %v %+v", err, res)
	}
	list, _, _ := e.airlockCLI(t, "kill", "--list", "--config", e.config)
	if !strings.Contains(list, "/kill/tool/run_command") || !strings.Contains(list, "incident 42") {
		t.Errorf("kill --list:\n%s", list)
	}
	if out, _, code := e.airlockCLI(t, "resume", "--tool", "run_command", "--config", e.config); code != 0 || !strings.Contains(out, "kill switch off") {
		t.Fatalf("resume: %d %q", code, out)
	}
	if res, err := callCommand(t, cs, "echo resumed"); err != nil || res.IsError || !strings.Contains(mcpText(res), "resumed") {
		t.Fatalf("call after resume: %v %+v", err, res)
	}
	// --all stops everything, a session switch only its session.
	e.airlockCLI(t, "kill", "--session", cs.ID(), "--config", e.config)
	other := connectHTTP(t, s, "", nil)
	if res, err := callCommand(t, cs, "echo s"); err != nil || !res.IsError || !strings.Contains(mcpText(res), "/kill/session/") {
		t.Fatalf("killed session's call: %v %+v", err, res)
	}
	if res, err := callCommand(t, other, "echo other"); err != nil || res.IsError {
		t.Fatalf("another session's call with one session killed: %v %+v", err, res)
	}
	e.airlockCLI(t, "kill", "--all", "--config", e.config)
	if res, err := callCommand(t, other, "echo other"); err != nil || !res.IsError || !strings.Contains(mcpText(res), "/kill/all") {
		t.Fatalf("call with --all on: %v %+v", err, res)
	}
	cs.Close()
	other.Close()
	s.stop()
	e.assertVerifies(t)
	rules := map[string]int{}
	for _, r := range readAudit(t, e.audit) {
		if r.Decision == "deny" {
			rules[r.Rule]++
		}
		if r.Cancelled && r.ContainerID != "" && !strings.Contains(r.Message, "incident 42") {
			t.Errorf("killed call's record does not say why: %+v", r)
		}
	}
	if rules["/kill/tool/run_command"] != 2 || rules["/kill/all"] != 1 || len(rules) != 3 {
		t.Errorf("denials by rule: %v; want 2 /kill/tool/run_command, 1 /kill/session/..., 1 /kill/all", rules)
	}
}

// TestPolicyReload: a policy file that changes is loaded, clients are told their tool list
// changed, and records carry the hash of the policy that decided them; an invalid policy keeps
// the old one and says why; SIGHUP reloads an HTTP server instead of stopping it.
func TestPolicyReload(t *testing.T) {
	const before = `{"version": "1", "default": "deny", "tools": {"read_file": {}}}`
	const after = `{"version": "1", "default": "deny", "tools": {"read_file": {}, "run_command": {}}}`
	e := faultEnv(t, before, 30*time.Second)
	s := e.startHTTP(t)
	var mu sync.Mutex
	changed := 0
	cs := connectHTTP(t, s, "", &mcp.ClientOptions{ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
		mu.Lock()
		changed++
		mu.Unlock()
	}})
	if res, err := callCommand(t, cs, "echo before"); err != nil || !res.IsError {
		t.Fatalf("run_command under the first policy: %v %+v; want denied", err, res)
	}
	writeAtomic(t, e.policy, after)
	if _, ok := faultWait(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return changed > 0 }); !ok {
		t.Fatal("no tools/list_changed after the policy file changed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	if strings.Join(names, ",") != "read_file,run_command" && strings.Join(names, ",") != "run_command,read_file" {
		t.Fatalf("tools after the reload: %v", names)
	}
	if res, err := callCommand(t, cs, "echo after"); err != nil || res.IsError {
		t.Fatalf("run_command after the reload: %v %+v", err, res)
	}

	// Invalid: the old policy stays, the reload command says why.
	writeAtomic(t, e.policy, `{"version": "1", "default": "allow", "tools": {"run_command": {"require": "yes"}}}`)
	out, errOut, code := e.airlockCLI(t, "policy", "reload")
	if code != 1 || !strings.Contains(errOut, "stays in force") || !strings.Contains(errOut, "/tools/run_command/require") {
		t.Fatalf("policy reload of an invalid file: code %d, %q %q", code, out, errOut)
	}
	if res, err := callCommand(t, cs, "echo still"); err != nil || res.IsError {
		t.Fatalf("run_command with an invalid file on disk: %v %+v", err, res)
	}

	// SIGHUP: an HTTP server reloads and keeps serving.
	writeAtomic(t, e.policy, before)
	if err := syscall.Kill(s.pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, ok := faultWait(5*time.Second, func() bool {
		res, err := callCommand(t, cs, "echo hup")
		return err == nil && res.IsError && strings.Contains(mcpText(res), "[POLICY DENIED]")
	}); !ok {
		t.Fatal("the policy written before SIGHUP is not in force")
	}
	cs.Close()
	s.stop()
	e.assertVerifies(t)
	shaBefore, shaAfter := sha256.Sum256([]byte(before)), sha256.Sum256([]byte(after))
	var seq []string
	for _, r := range readAuditAll(t, e.audit) {
		if r.Phase != "" {
			continue
		}
		switch r.PolicySHA256 {
		case hex.EncodeToString(shaBefore[:]):
			seq = append(seq, "before:"+r.Decision)
		case hex.EncodeToString(shaAfter[:]):
			seq = append(seq, "after:"+r.Decision)
		default:
			seq = append(seq, "other:"+r.PolicySHA256)
		}
	}
	got := strings.Join(seq, " ")
	// The SIGHUP check polls until the reload is in force: calls it makes before that are
	// allowed, and recorded, under the policy still in force.
	if !regexp.MustCompile(`^before:deny after:allow after:allow( after:allow)* before:deny`).MatchString(got) {
		t.Errorf("records' policies in order: %s", got)
	}
}

// writeAtomic replaces path with content the way editors and config managers do: a new file
// renamed over the old.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// files adds files to e's workspace.
func (e *mcpEnv) files(t *testing.T, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(e.workspace, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
