package integration

// The web console end to end in headless Chromium (Debian's chromium, driven over the DevTools
// protocol): an admin logs in with a token; an agent whose client cannot elicit calls
// write_file, which waits while the console shows the whole request; approved in the browser,
// the agent's call completes and the file is written; a second call denied in the browser
// fails for the agent and shows as a denial in the live audit trail. Screenshots go to the
// test's artifact directory (go test -artifacts keeps them).

import (
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

func TestConsoleApprovals(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Unavailable(t, "no chromium on PATH (apt-get install chromium, or make setup)")
	}
	const policy = `{"version": "1", "default": "deny", "tools": {
	  "read_file": {},
	  "write_file": {"approve_if": [{"conditions": [{"path": "args.path", "op": "exists"}], "message": "write_file changes a file."}]}}}`
	e := newMCPEnv(t, policy, map[string]string{"hello.txt": mcpHello})
	adminToken, agentToken := rand.Text(), rand.Text()
	e.extraYAML = "console:\n  enabled: true\nhttp:\n  tokens:\n" +
		"    - {token_env: AIRLOCK_ADMIN_TOKEN, grant: ops, labels: {console: admin}}\n" +
		"    - {token_env: AIRLOCK_AGENT_TOKEN, grant: agent}\n"
	e.extraEnv = []string{"AIRLOCK_ADMIN_TOKEN=" + adminToken, "AIRLOCK_AGENT_TOKEN=" + agentToken}
	s := e.startHTTP(t)
	base := "http://" + s.addr

	// The console's pages carry a strict policy, and a change without the CSRF token is refused.
	resp, err := http.Get(base + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("console CSP: %q", csp)
	}
	if resp, err := http.Post(base+"/console/api/kills", "application/json", strings.NewReader(`{"scope":"all"}`)); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API without a session: %v %v; want 401", err, resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1280, 1800))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	shots := t.ArtifactDir()
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			p := filepath.Join(shots, name+".png")
			t.Logf("screenshot: %s", p)
			return os.WriteFile(p, png, 0o644)
		})
	}
	// text reads an element's text into *into, as a step.
	text := func(sel string, into *string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			v, err := chromedp.Text(chromedp.CSS(sel))(ctx, tg)
			*into = v
			return err
		})
	}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	// A wrong token is refused on the login page; the admin's opens the console.
	// The first action starts the browser, and must run on the browser's own context: a
	// context derived from it would take the browser down when it ends.
	if err := chromedp.Do(browser, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	var loginErr string
	for i, step := range []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(base + "/console/"),
		chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), agentToken),
		chromedp.Click(css("#login")),
		chromedp.WaitVisible(css("#login-error")),
		text("#login-error", &loginErr),
		shot("01-login-refused"),
		chromedp.SendKeys(css("#token"), adminToken),
		chromedp.Click(css("#login")),
		chromedp.WaitVisible(css("#pending-section")),
	} {
		sctx, scancel := context.WithTimeout(browser, 20*time.Second)
		err := chromedp.Do(sctx, step)
		scancel()
		loc, _ := chromedp.Run(browser, chromedp.Location())
		t.Logf("login step %d: %v (at %s)", i, err, loc)
		if err != nil {
			html, herr := chromedp.Run(browser, chromedp.Evaluate[string]("document.documentElement.outerHTML"))
			t.Fatalf("page (%v):\n%s", herr, html)
		}
	}
	if !strings.Contains(loginErr, "may not use the console") {
		t.Errorf("login with the agent's token: %q", loginErr)
	}

	// The agent: a Go SDK client without elicitation.
	agent := connectHTTP(t, s, agentToken, nil)
	write := func(path, content string) <-chan *mcp.CallToolResult {
		done := make(chan *mcp.CallToolResult, 1)
		go func() {
			res, err := agent.CallTool(ctx, &mcp.CallToolParams{Name: "write_file", Arguments: map[string]any{"path": path, "content": content}})
			if err != nil {
				res = &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}
			}
			done <- res
		}()
		return done
	}
	content := "first line\n<script>alert('agent')</script>\nlast line"
	done := write("notes/todo.txt", content)
	var shown string
	if err := chromedp.Do(browser,
		chromedp.WaitVisible(css(`.pending[data-tool="write_file"]`)),
		text(`.pending[data-tool="write_file"] pre[data-arg="content"]`, &shown),
		shot("02-pending-write"),
	); err != nil {
		t.Fatal(err)
	}
	if shown != content {
		t.Errorf("the console shows content %q; want every byte of %q", shown, content)
	}
	select {
	case res := <-done:
		t.Fatalf("the call returned before anyone answered: %s", mcpText(res))
	default:
	}
	if err := chromedp.Do(browser, chromedp.Click(css(`.pending[data-tool="write_file"] button.approve`))); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.IsError {
			t.Fatalf("approved write_file: %s", mcpText(res))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the approved call did not complete")
	}
	if b, err := os.ReadFile(filepath.Join(e.workspace, "notes", "todo.txt")); err != nil || string(b) != content {
		t.Fatalf("written file: %q %v", b, err)
	}

	// Denied in the browser: the agent's call fails and the trail shows the denial.
	done = write("notes/denied.txt", "no")
	if err := chromedp.Do(browser,
		chromedp.WaitVisible(css(`.pending[data-tool="write_file"]`)),
		chromedp.Click(css(`.pending[data-tool="write_file"] button.deny`)),
	); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if !res.IsError || !strings.Contains(mcpText(res), "denied in the console by console:ops") {
			t.Fatalf("denied write_file: %s", mcpText(res))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the denied call did not return")
	}
	var chain string
	if err := chromedp.Do(browser,
		chromedp.WaitVisible(css(`#audit-rows td.deny`)),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			// The chain badge is checked again after each new record.
			_, err := chromedp.Poll[bool](`/chain intact · [1-9]/.test(document.getElementById("chain").textContent)`)(ctx, tg)
			return err
		}),
		text("#chain", &chain),
		shot("03-denial-in-trail"),
	); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.workspace, "notes", "denied.txt")); err == nil {
		t.Error("the denied file was written")
	}
	t.Logf("chain badge: %s", chain)
	if !strings.Contains(chain, "chain intact") {
		t.Errorf("chain badge %q; want intact", chain)
	}

	// A kill switch from the console holds for the agent.
	if err := chromedp.Do(browser,
		chromedp.SetValue(css("#k-scope"), "tool"),
		chromedp.SendKeys(css("#k-name"), "read_file"),
		chromedp.SendKeys(css("#k-reason"), "from the console test"),
		chromedp.Click(css(`#kill-form button`)),
		chromedp.WaitVisible(css(`#kills li[data-rule="/kill/tool/read_file"]`)),
		shot("04-kill-switch"),
	); err != nil {
		t.Fatal(err)
	}
	res, err := agent.CallTool(ctx, &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": "hello.txt"}})
	if err != nil || !res.IsError || !strings.Contains(mcpText(res), "/kill/tool/read_file") {
		t.Fatalf("read_file after the console's kill switch: %v %s", err, mcpText(res))
	}
	agent.Close()
	s.stop()
	e.assertVerifies(t)
	var decisions []string
	for _, r := range readAudit(t, e.audit) {
		decisions = append(decisions, r.Tool+":"+r.Decision)
	}
	if got := strings.Join(decisions, " "); got != "write_file:approve write_file:deny read_file:deny" {
		t.Errorf("records: %s", got)
	}
}
