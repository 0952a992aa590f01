package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rs/zerolog"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/runc"
)

// outputSchemaPolicy allows every built-in tool except what the denial cases ask for, and
// write_file without a human.
const outputSchemaPolicy = `{"version":"1","default":"allow","tools":{
  "read_file":{"deny_if":[{"conditions":[{"path":"args.path","op":"eq","value":"denied.txt"}],"on_deny":"Not that file."}]}}}`

// compileOutputSchemas compiles every tool's outputSchema as draft 2020-12 (MCP's default) and
// as draft-07 (what the TypeScript SDK's validator assumes).
func compileOutputSchemas(t *testing.T, tools []*Tool) map[string][2]*jsonschema.Schema {
	t.Helper()
	out := map[string][2]*jsonschema.Schema{}
	for _, tl := range tools {
		var pair [2]*jsonschema.Schema
		for i, draft := range []*jsonschema.Draft{jsonschema.Draft2020, jsonschema.Draft7} {
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(tl.OutputSchema()))
			if err != nil {
				t.Fatalf("%s: outputSchema is not JSON: %v", tl.Name(), err)
			}
			c := jsonschema.NewCompiler()
			c.DefaultDraft(draft)
			if err := c.AddResource("out.json", doc); err != nil {
				t.Fatal(err)
			}
			if pair[i], err = c.Compile("out.json"); err != nil {
				t.Fatalf("%s: outputSchema does not compile: %v", tl.Name(), err)
			}
		}
		out[tl.Name()] = pair
	}
	return out
}

// validateStructured checks res.structuredContent, as a client decodes it, against both drafts.
func validateStructured(t *testing.T, schemas map[string][2]*jsonschema.Schema, tool, label string, res *mcp.CallToolResult) {
	t.Helper()
	if res.StructuredContent == nil {
		t.Errorf("%s %s: no structuredContent", tool, label)
		return
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range schemas[tool] {
		if err := s.Validate(v); err != nil {
			t.Errorf("%s %s (isError %v): structuredContent does not validate against its outputSchema (draft %d): %v\n%s",
				tool, label, res.IsError, []int{2020, 7}[i], err, b)
		}
	}
}

// TestOutputSchemas runs every built-in tool for real (runc, the toolbox, git) and validates
// each result's structuredContent against the tool's outputSchema: successes, tool errors,
// denials and invalid arguments; then, on a fake sandbox, the shapes no real run produces on
// demand (output withheld over the redaction budget, a sandbox failure).
func TestOutputSchemas(t *testing.T) {
	t.Setenv("AIRLOCK_RUNC", testenv.Runc(t))
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		testenv.Unavailable(t, "image store: %v", err)
	}
	for _, name := range []string{"busybox", "host"} {
		if _, err := store.Resolve(context.Background(), name); err != nil {
			testenv.Unavailable(t, "%v", err)
		}
	}
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Unavailable(t, "git: %v", err)
	}
	real := func(o *Options) {
		o.Backends = sandbox.Registry{"fake": func(ctx context.Context, _ sandbox.OpenOptions) (sandbox.Backend, func() error, error) {
			b, err := runc.Open(ctx, runc.Config{StateDir: t.TempDir(), Images: store, Logger: zerolog.Nop()})
			if err != nil {
				return nil, nil, err
			}
			return b, b.Close, nil
		}}
	}
	// http_fetch reaches a server on 127.0.0.1 through its profile's egress proxy.
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "fetched "+r.URL.Path)
	}))
	t.Cleanup(site.Close)
	port := site.Listener.Addr().(*net.TCPAddr).Port
	netCfg := fmt.Sprintf("profiles:\n  fetch:\n    image: busybox\n    workspace: none\n    pids: 32\n    network:\n      allow: [\"files.test:%d\"]\n"+
		"egress:\n  allow_private: [127.0.0.1]\n  hosts: {files.test: 127.0.0.1}\n", port)
	rt := newTestRuntimeTB(t, "tests:\n  argv: [sh, -c, 'echo ran-tests']\n"+netCfg, outputSchemaPolicy, nil, real)
	ws := rt.cfg.Workspace
	gitRun := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", ws, "-c", "user.name=T", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	mustWrite(t, filepath.Join(ws, "README.md"), "hello\n")
	mustWrite(t, filepath.Join(ws, "src", "main.go"), "package main\n// TODO: ship\n")
	mustWrite(t, filepath.Join(ws, "bin.dat"), "\x00\x01\x02")
	gitRun("init", "-q")
	gitRun("add", ".")
	gitRun("commit", "-q", "-m", "first")
	mustWrite(t, filepath.Join(ws, "README.md"), "hello\nchanged\n")

	schemas := compileOutputSchemas(t, rt.tools)
	cs := connect(t, rt, nil, "")
	cases := []struct {
		tool, label string
		args        any
		isError     bool
	}{
		{"read_file", "ok", map[string]any{"path": "README.md"}, false},
		{"read_file", "more lines follow", map[string]any{"path": "README.md", "limit": 1}, false},
		{"read_file", "binary", map[string]any{"path": "bin.dat"}, false},
		{"read_file", "no such file", map[string]any{"path": "missing.txt"}, true},
		{"read_file", "denied", map[string]any{"path": "denied.txt"}, true},
		{"read_file", "invalid arguments", map[string]any{"path": 5}, true},
		{"list_directory", "ok", map[string]any{}, false},
		{"list_directory", "not a directory", map[string]any{"path": "README.md"}, true},
		{"search_files", "ok", map[string]any{"pattern": "TODO"}, false},
		{"search_files", "bad pattern", map[string]any{"pattern": "("}, true},
		{"write_file", "ok", map[string]any{"path": "docs/new.md", "content": "x\n"}, false},
		{"run_command", "ok", map[string]any{"command": "echo hi"}, false},
		{"run_command", "exit 3", map[string]any{"command": "echo no >&2; exit 3"}, true},
		{"git_status", "ok", map[string]any{}, false},
		{"git_diff", "ok", map[string]any{}, false},
		{"git_log", "ok", map[string]any{"max_count": 1}, false},
		{"run_tests", "ok", map[string]any{}, false},
		{"http_fetch", "ok", map[string]any{"url": fmt.Sprintf("http://files.test:%d/x", port)}, false},
		{"http_fetch", "refused host", map[string]any{"url": fmt.Sprintf("http://other.test:%d/x", port)}, true},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		res := callTool(t, cs, c.tool, c.args)
		if res.IsError != c.isError {
			t.Errorf("%s %s: isError %v, want %v: %s", c.tool, c.label, res.IsError, c.isError, text(res))
		}
		validateStructured(t, schemas, c.tool, c.label, res)
		seen[c.tool] = true
	}
	for _, name := range BuiltinNames() {
		if !seen[name] {
			t.Errorf("built-in %s has no case", name)
		}
	}

	// Shapes a fake sandbox produces on demand, for every tool (run_tests has no test command
	// there: its plan fails, another error shape).
	var soup strings.Builder
	for soup.Len() < 1<<20 {
		for _, k := range []string{"api_key=", "ghp_", "xoxb-", "sk_live_", "-----begin", "aiza", "curl ", "token=", "secret="} {
			soup.WriteString(k)
		}
	}
	fb := &fakeBackend{}
	frt := newTestRuntimeTB(t, "", outputSchemaPolicy, fb)
	fcs := connect(t, frt, nil, "")
	fschemas := compileOutputSchemas(t, frt.tools)
	for _, tl := range frt.tools {
		fb.respond = func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
			return sandbox.Result{Stdout: []byte(soup.String()), Stderr: []byte(soup.String())}, nil
		}
		args := minimalArgs(tl.Name())
		wres := callTool(t, fcs, tl.Name(), args)
		// run_tests has no test command there and http_fetch no host: their plans fail.
		if st, _ := wres.StructuredContent.(map[string]any); tl.Name() != "run_tests" && tl.Name() != "http_fetch" && st["withheld"] != true {
			t.Errorf("%s: 2 MiB of keywords were not withheld: %.200s", tl.Name(), text(wres))
		}
		validateStructured(t, fschemas, tl.Name(), "withheld or redacted", wres)
		fb.respond = func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
			return sandbox.Result{}, fmt.Errorf("runc exploded")
		}
		validateStructured(t, fschemas, tl.Name(), "sandbox failure", callTool(t, fcs, tl.Name(), args))
		fb.respond = func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
			return sandbox.Result{Stdout: []byte(`{"path":"x","conte`), ExitCode: 2}, nil
		}
		validateStructured(t, fschemas, tl.Name(), "no JSON result", callTool(t, fcs, tl.Name(), args))
	}
}

// minimalArgs are valid arguments for a built-in tool.
func minimalArgs(tool string) map[string]any {
	switch tool {
	case "read_file":
		return map[string]any{"path": "a"}
	case "search_files":
		return map[string]any{"pattern": "a"}
	case "write_file":
		return map[string]any{"path": "a", "content": "b"}
	case "run_command":
		return map[string]any{"command": "true"}
	case "http_fetch":
		return map[string]any{"url": "http://files.test/"}
	}
	return map[string]any{}
}
