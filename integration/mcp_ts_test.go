package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// tsPlan is what integration/tsclient/client.mjs reads.
type tsPlan struct {
	Transport string            `json:"transport"`
	Command   string            `json:"command,omitempty"`
	Args      []string          `json:"args,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Cwd       string            `json:"cwd,omitempty"`
	URL       string            `json:"url,omitempty"`
	Token     string            `json:"token,omitempty"`
	Approve   *bool             `json:"approve,omitempty"` // answer approval prompts
	Answer    map[string]any    `json:"answer,omitempty"`  // content of an accepted elicitation
	Calls     []tsCall          `json:"calls"`
}

type tsCall struct {
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
}

// tsOutput is what client.mjs prints.
type tsOutput struct {
	Transport    string   `json:"transport"`
	Elicitations []string `json:"elicitations"`
	Tools        []struct {
		Name string `json:"name"`
	} `json:"tools"`
	Calls []tsCallResult `json:"calls"`
}

// tsCallResult is one call as the TypeScript client reports it.
type tsCallResult struct {
	Name   string `json:"name"`
	Error  string `json:"error"`
	Result *struct {
		IsError bool `json:"isError"`
		Content []struct {
			Type     string `json:"type"`
			Text     string `json:"text"`
			Data     string `json:"data"`
			MIMEType string `json:"mimeType"`
		} `json:"content"`
		StructuredContent map[string]any `json:"structuredContent"`
		Meta              map[string]any `json:"_meta"`
	} `json:"result"`
	Progress []struct {
		Progress float64 `json:"progress"`
		Total    float64 `json:"total"`
	} `json:"progress"`
}

// text joins the call's text blocks.
func (c tsCallResult) text() string {
	var parts []string
	for _, b := range c.Result.Content {
		if b.Type == "text" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// checkTSCalls fails unless the client reported want calls, each with a result.
func checkTSCalls(t *testing.T, calls []tsCallResult, want int) {
	t.Helper()
	if len(calls) != want {
		t.Fatalf("client reported %d calls, want %d", len(calls), want)
	}
	for i, c := range calls {
		if c.Error != "" || c.Result == nil {
			t.Fatalf("call %d %s: the SDK reported %q", i, c.Name, c.Error)
		}
	}
}

// tsClient finds node and the installed TypeScript SDK, or skips loudly.
func tsClient(t *testing.T) (node, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Unavailable(t, "node is not installed (Debian: apt-get install nodejs npm)")
	}
	dir = filepath.Join(testenv.RepoRoot(t), "integration", "tsclient")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk", "package.json")); err != nil {
		testenv.Unavailable(t, "the TypeScript MCP SDK is not installed in %s (run `make node`): %v", dir, err)
	}
	return node, dir
}

// TestMCPTypeScriptClient drives `airlock serve` with the official TypeScript SDK over stdio
// and streamable HTTP: list tools, read a file, a denied call, and a write the user approves
// through elicitation/create (the TypeScript SDK speaks protocol 2025-11-25, so Airlock asks
// during the call rather than with an input-required result).
func TestMCPTypeScriptClient(t *testing.T) {
	node, dir := tsClient(t)
	calls := []tsCall{
		{Name: "read_file", Arguments: map[string]any{"path": "hello.txt"}},
		{Name: "run_command", Arguments: map[string]any{"command": "rm -rf hello.txt"}},
		{Name: "write_file", Arguments: map[string]any{"path": "pkg/from_ts.go", "content": "package pkg\n"}},
		// The SDK validates every result's structuredContent against the tool's outputSchema,
		// error results included, and throws when it does not: these calls cover the other
		// shapes (a decoded toolbox result, a toolbox refusal, invalid arguments, a command).
		{Name: "list_directory", Arguments: map[string]any{}},
		{Name: "search_files", Arguments: map[string]any{"pattern": "airlock"}},
		{Name: "read_file", Arguments: map[string]any{"path": "missing.txt"}},
		{Name: "read_file", Arguments: map[string]any{"path": 5}},
		{Name: "run_command", Arguments: map[string]any{"command": "echo ok"}},
		{Name: "git_status", Arguments: map[string]any{}},
	}
	for _, variant := range []string{"stdio", "http", "http_token"} {
		t.Run(variant, func(t *testing.T) {
			e := newMCPEnv(t, mcpPolicy, map[string]string{"hello.txt": mcpHello, "pkg/doc.txt": "docs\n"})
			transport, _, _ := strings.Cut(variant, "_")
			plan := tsPlan{Transport: transport, Calls: calls, Approve: mcpPtr(true)}
			if variant == "http_token" {
				// A token-protected server: the client must send it, and acts as its grant.
				plan.Token = rand.Text()
				e.extraYAML = "http:\n  tokens:\n    - token_env: AIRLOCK_TEST_TOKEN\n      grant: ts-ci\n"
				e.extraEnv = []string{"AIRLOCK_TEST_TOKEN=" + plan.Token}
			}
			var stop func()
			switch transport {
			case "stdio":
				plan.Command = e.bin
				plan.Args = append([]string{"serve", "--stdio"}, e.serveArgs(t)...)
				plan.Cwd = e.workspace
				plan.Env = map[string]string{}
				for _, kv := range e.env() {
					k, v, _ := strings.Cut(kv, "=")
					if strings.HasPrefix(k, "AIRLOCK_") || k == "PATH" {
						plan.Env[k] = v
					}
				}
				stop = func() {}
			case "http":
				s := e.startHTTP(t)
				plan.URL = s.endpoint
				stop = s.stop
			}
			out := runTSClient(t, node, dir, plan)
			stop()

			var names []string
			for _, tool := range out.Tools {
				names = append(names, tool.Name)
			}
			checkToolNames(t, names)
			if len(out.Calls) != len(calls) {
				t.Fatalf("client reported %d calls, want %d", len(out.Calls), len(calls))
			}
			text := func(i int) string {
				c := out.Calls[i]
				if c.Error != "" || c.Result == nil {
					t.Fatalf("%s: transport error %q (policy and tool errors must be results)", c.Name, c.Error)
				}
				var parts []string
				for _, b := range c.Result.Content {
					if b.Type == "text" {
						parts = append(parts, b.Text)
					}
				}
				return strings.Join(parts, "\n")
			}
			for i, c := range out.Calls {
				if c.Error != "" || c.Result == nil {
					t.Errorf("call %d %s: the SDK reported %q (a structuredContent its outputSchema rejects, or a transport error)", i, c.Name, c.Error)
				}
			}
			if got := text(0); out.Calls[0].Result.IsError || !strings.Contains(got, strings.TrimSpace(mcpHello)) {
				t.Errorf("read_file: isError=%v text %q, want the planted content", out.Calls[0].Result.IsError, got)
			}
			got := text(1)
			if !out.Calls[1].Result.IsError || !strings.HasPrefix(got, "[POLICY DENIED]") ||
				!strings.Contains(got, "(rule /tools/run_command/deny_if") {
				t.Errorf("denied run_command: isError=%v text %q, want [POLICY DENIED] ... (rule /tools/run_command/deny_if...)",
					out.Calls[1].Result.IsError, got)
			}

			if text(2); out.Calls[2].Result.IsError || len(out.Elicitations) != 1 {
				t.Errorf("approved write_file: isError=%v after %d approval prompts, want success after 1: %q",
					out.Calls[2].Result.IsError, len(out.Elicitations), text(2))
			}
			if got, err := os.ReadFile(filepath.Join(e.workspace, "pkg", "from_ts.go")); err != nil || string(got) != "package pkg\n" {
				t.Errorf("approved write_file: host file = %q, %v; want %q", got, err, "package pkg\n")
			}

			recs := readAudit(t, e.audit)
			if len(recs) != len(calls) {
				t.Errorf("audit has %d records, want %d (one per call, the denial included)", len(recs), len(calls))
			}
			if variant == "http_token" {
				for _, r := range recs {
					if r.Grant != "ts-ci" {
						t.Errorf("audit record for %s has grant %q, want the token's grant ts-ci", r.Tool, r.Grant)
					}
				}
			}
			if code, out := e.verifyAudit(t, e.audit); code != 0 {
				t.Errorf("airlock audit verify exited %d:\n%s", code, out)
			}
		})
	}
}

func runTSClient(t *testing.T, node, dir string, plan tsPlan) tsOutput {
	t.Helper()
	planJSON, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", string(planJSON))
	cmd.Dir = dir
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &mcpLogWriter{t: t, prefix: "tsclient"}
	if err := cmd.Run(); err != nil {
		t.Fatalf("node client.mjs (%s): %v\nstdout: %s", plan.Transport, err, stdout.String())
	}
	var out tsOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("client.mjs printed no JSON result: %v\n%s", err, stdout.String())
	}
	return out
}
