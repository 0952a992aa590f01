package runtime

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/testcache"
)

func TestArgvTemplate(t *testing.T) {
	tests := []struct {
		name string
		tmpl []string
		args string
		want []string
		err  string
	}{
		{"literal", []string{"ls", "-l"}, `{}`, []string{"ls", "-l"}, ""},
		{"whole element", []string{"grep", "--", "{{args.q}}"}, `{"q":"x; rm -rf / $(id)"}`, []string{"grep", "--", "x; rm -rf / $(id)"}, ""},
		{"number and bool", []string{"t", "{{args.n}}", "{{ args.b }}"}, `{"n":3,"b":true}`, []string{"t", "3", "true"}, ""},
		{"nested", []string{"t", "{{args.o.k}}"}, `{"o":{"k":"v"}}`, []string{"t", "v"}, ""},
		{"missing dropped", []string{"t", "{{args.opt}}", "end"}, `{}`, []string{"t", "end"}, ""},
		{"splat", []string{"go", "test", "{{args.pkgs...}}"}, `{"pkgs":["./a","./b"]}`, []string{"go", "test", "./a", "./b"}, ""},
		{"splat of scalar", []string{"t", "{{args.p...}}"}, `{"p":"x"}`, nil, "want an array"},
		{"object refused", []string{"t", "{{args.o}}"}, `{"o":{"k":1}}`, nil, "want a string"},
		{"NUL refused", []string{"t", "{{args.s}}"}, `{"s":"a\u0000b"}`, nil, "NUL"},
		{"spliced refused", []string{"t", "-f{{args.s}}"}, `{}`, nil, "whole element"},
		{"program placeholder refused", []string{"{{args.p}}"}, `{}`, nil, "literal program"},
		{"empty refused", nil, `{}`, nil, "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := parseTemplate(tc.tmpl)
			var got []string
			if err == nil {
				var args map[string]any
				dec := json.NewDecoder(strings.NewReader(tc.args))
				dec.UseNumber()
				if err := dec.Decode(&args); err != nil {
					t.Fatal(err)
				}
				got, err = tmpl.expand(args)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("argv = %q, want %q", got, tc.want)
			}
		})
	}
}

// defaultTools builds the built-in toolset over a temp workspace.
func defaultTools(t *testing.T) (map[string]*Tool, string) {
	t.Helper()
	cfg, err := ParseConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	if err := os.WriteFile(ws+"/go.mod", []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Resolve(Overrides{Workspace: ws, StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	tools, err := BuildTools(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*Tool{}
	for _, tl := range tools {
		m[tl.Name()] = tl
	}
	return m, cfg.Workspace
}

func TestBuiltinPlans(t *testing.T) {
	tools, ws := defaultTools(t)
	workspace := func(a sandbox.Access) []sandbox.Mount {
		return []sandbox.Mount{{Source: ws, Target: "/workspace", Access: a}}
	}
	tests := []struct {
		tool     string
		args     string
		image    string
		seccomp  string
		argv     []string // prefix
		argvTail []string // suffix
		mounts   []sandbox.Mount
		root     bool // runs as the workspace owner (root in tests)
		stdin    bool
	}{
		{tool: "read_file", args: `{"path":"a.go","limit":5}`, image: "busybox", seccomp: "files",
			argv: []string{images.ToolboxPath, "read_file", `{"limit":5,"path":"a.go"}`}, mounts: workspace(sandbox.ReadOnly)},
		{tool: "list_directory", args: `{}`, image: "busybox", seccomp: "files",
			argv: []string{images.ToolboxPath, "list_directory", `{}`}, mounts: workspace(sandbox.ReadOnly)},
		{tool: "search_files", args: `{"pattern":"x"}`, image: "busybox", seccomp: "files",
			argv: []string{images.ToolboxPath, "search_files"}, mounts: workspace(sandbox.ReadOnly)},
		{tool: "write_file", args: `{"path":"a","content":"b"}`, image: "busybox", seccomp: "files",
			argv: []string{images.ToolboxPath, "write_file", "-"}, mounts: workspace(sandbox.ReadWrite), root: true, stdin: true},
		{tool: "run_command", args: `{"command":"ls | wc -l"}`, image: "host", seccomp: "default",
			argv: []string{"/bin/sh", "-c", "ls | wc -l"}, mounts: workspace(sandbox.ReadOnly)},
		{tool: "run_command", args: `{"argv":["ls","-la"]}`, image: "host", seccomp: "default",
			argv: []string{"ls", "-la"}, mounts: workspace(sandbox.ReadOnly)},
		{tool: "git_status", args: `{}`, image: "host", seccomp: "default",
			argv: []string{"/bin/sh", "-c", gitFilterGuard, "airlock-git", "git", "-c", "safe.directory=*"}, argvTail: []string{"status", "--short", "--branch", "--ignore-submodules=all"}, mounts: workspace(sandbox.ReadOnly)},
		{tool: "git_diff", args: `{"staged":true,"ref":"HEAD~1","path":"src"}`, image: "host", seccomp: "default",
			argv: []string{"/bin/sh", "-c", gitFilterGuard, "airlock-git", "git"}, argvTail: []string{"--cached", "HEAD~1", "--", "src"}, mounts: workspace(sandbox.ReadOnly)},
		{tool: "git_log", args: `{"max_count":5}`, image: "host", seccomp: "default",
			argv: []string{"/bin/sh", "-c", gitFilterGuard, "airlock-git", "git"}, argvTail: []string{"-n", "5", "--"}, mounts: workspace(sandbox.ReadOnly)},
		{tool: "run_tests", args: `{}`, image: "host", seccomp: "default",
			argv: []string{"go", "test", "-json", "./..."}, mounts: workspace(sandbox.CopyOnWrite), root: true},
	}
	for _, tc := range tests {
		t.Run(tc.tool, func(t *testing.T) {
			var args map[string]any
			dec := json.NewDecoder(strings.NewReader(tc.args))
			dec.UseNumber()
			if err := dec.Decode(&args); err != nil {
				t.Fatal(err)
			}
			opts, err := tools[tc.tool].Plan(context.Background(), args)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := sandbox.New(opts...)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Image != tc.image || spec.Seccomp != tc.seccomp || spec.Network != sandbox.NetworkNone {
				t.Errorf("image %s seccomp %s network %s", spec.Image, spec.Seccomp, spec.Network)
			}
			if len(spec.Argv) < len(tc.argv) || !slices.Equal(spec.Argv[:len(tc.argv)], tc.argv) {
				t.Errorf("argv = %q, want prefix %q", spec.Argv, tc.argv)
			}
			if len(spec.Argv) < len(tc.argvTail) || !slices.Equal(spec.Argv[len(spec.Argv)-len(tc.argvTail):], tc.argvTail) {
				t.Errorf("argv = %q, want suffix %q", spec.Argv, tc.argvTail)
			}
			if tc.tool == "run_tests" {
				// The workspace's test cache, read-write, after the workspace.
				last := spec.Mounts[len(spec.Mounts)-1]
				if last.Target != testcache.Target || last.Access != sandbox.ReadWrite || !strings.Contains(last.Source, "/cache/") {
					t.Errorf("run_tests' last mount %+v is not its test cache", last)
				}
				spec.Mounts = spec.Mounts[:len(spec.Mounts)-1]
			}
			if !slices.Equal(spec.Mounts, tc.mounts) {
				t.Errorf("mounts = %+v, want %+v", spec.Mounts, tc.mounts)
			}
			wantUID := uint32(65534)
			if tc.root {
				wantUID = uint32(os.Getuid()) // the temp workspace's owner
			}
			if spec.User.UID != wantUID {
				t.Errorf("uid = %d, want %d", spec.User.UID, wantUID)
			}
			if (spec.Stdin != nil) != tc.stdin {
				t.Errorf("stdin set = %v, want %v", spec.Stdin != nil, tc.stdin)
			}
			if spec.Labels["airlock.tool"] != tc.tool {
				t.Errorf("labels = %v", spec.Labels)
			}
		})
	}
}

func TestRunTestsLimits(t *testing.T) {
	tools, _ := defaultTools(t)
	opts, err := tools["run_tests"].Plan(context.Background(), map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := sandbox.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	d := sandbox.Defaults()
	if spec.Timeout < 10*d.Timeout || spec.Limits.Pids <= d.Limits.Pids || spec.Limits.MemoryBytes <= d.Limits.MemoryBytes {
		t.Errorf("run_tests limits not raised: timeout %s pids %d memory %d", spec.Timeout, spec.Limits.Pids, spec.Limits.MemoryBytes)
	}
	if !tools["run_tests"].ReportsProgress() {
		t.Error("run_tests does not report progress")
	}
}

func TestRenderToolbox(t *testing.T) {
	tools, _ := defaultTools(t)
	// decoded is the toolbox's JSON as stage 6 hands it to a JSON tool (pipeline.JSONOutput);
	// stripping escapes and redacting the decoded strings is the pipeline's (pipeline.TestRunJSONOutputIsDecodedThenSanitised).
	decoded := func(out pipeline.Output) pipeline.Output {
		var m map[string]any
		if json.Unmarshal([]byte(out.Stdout), &m) == nil {
			out.Result, out.Stdout = m, ""
		}
		return out
	}
	tests := []struct {
		tool    string
		out     pipeline.Output
		want    string
		isError bool
	}{
		{"read_file", pipeline.Output{Stdout: `{"path":"a","content":"hi red\n","lines":1,"truncated":false}`}, "hi red\n", false},
		{"read_file", pipeline.Output{Stdout: `{"path":"a","content":"x\n","truncated":true,"next_offset":7}`}, "x\n\n[more lines follow: call read_file with offset 7]", false},
		{"read_file", pipeline.Output{Stdout: `{"path":"b","binary":true,"size":10}`}, "b is a binary file (10 bytes); not shown.", false},
		{"read_file", pipeline.Output{ExitCode: 1, Stdout: `{"error":"a: no such file or directory"}`}, "a: no such file or directory", true},
		{"read_file", pipeline.Output{ExitCode: 1, Stdout: `{"path":"a","conte`, Truncated: true}, "file tool failed without a result", true},
		{"list_directory", pipeline.Output{Stdout: `{"path":".","entries":[{"name":"d","type":"dir"},{"name":"f","type":"file","size":3}]}`}, "d/\nf\t3\n", false},
		{"search_files", pipeline.Output{Stdout: `{"matches":[{"path":"a.go","line":3,"text":"TODO"}]}`}, "a.go:3: TODO\n", false},
		{"write_file", pipeline.Output{Stdout: `{"path":"a","bytes":5,"created":true}`}, "created a (5 bytes)", false},
		{"run_command", pipeline.Output{ExitCode: 2, Stdout: "out\n", Stderr: "err\n"}, "out\n--- stderr ---\nerr\n[exit code 2]", true},
		{"run_command", pipeline.Output{TimedOut: true, ExitCode: 124}, "[timed out", true},
	}
	for _, tc := range tests {
		t.Run(tc.tool+" "+tc.want, func(t *testing.T) {
			out := tc.out
			if tools[tc.tool].StdoutIsJSON() {
				out = decoded(out)
			}
			r := tools[tc.tool].Render(out)
			if !strings.Contains(r.Text, tc.want) || r.IsError != tc.isError {
				t.Fatalf("render = %q (isError %v), want %q (isError %v)", r.Text, r.IsError, tc.want, tc.isError)
			}
		})
	}
}

func TestDefaultPolicy(t *testing.T) {
	cfg, _ := ParseConfig("", nil)
	p, err := cfg.LoadPolicy()
	if err != nil {
		t.Fatal(err)
	}
	e := policies.NewEngine(p, policies.NewMemoryCounters(), policies.WithWorkspace(sandbox.WorkspaceTarget))
	g := policies.Grant{ID: "local"}
	tests := []struct {
		tool string
		args string
		want policies.Verdict
	}{
		{"read_file", `{"path":"src/a.go"}`, policies.Allow},
		{"read_file", `{"path":"/workspace/src/a.go"}`, policies.Allow},
		{"read_file", `{"path":"../etc/passwd"}`, policies.Deny},
		{"read_file", `{"path":"/etc/passwd"}`, policies.Deny},
		{"list_directory", `{}`, policies.Allow},
		{"list_directory", `{"path":"src"}`, policies.Allow},
		{"list_directory", `{"path":"src/../.."}`, policies.Deny},
		{"search_files", `{"pattern":"x","path":"/etc"}`, policies.Deny},
		{"search_files", `{"pattern":"x"}`, policies.Allow},
		{"write_file", `{"path":"src/a.go","content":"x"}`, policies.Approve},
		{"write_file", `{"path":"../a.go","content":"x"}`, policies.Deny},
		{"write_file", `{"path":".git/hooks/pre-commit","content":"x"}`, policies.Deny},
		{"write_file", `{"path":".github/workflows/ci.yml","content":"x"}`, policies.Approve},
		{"run_command", `{"command":"ls"}`, policies.Allow},
		{"git_status", `{}`, policies.Allow},
		{"git_diff", `{"path":"../x"}`, policies.Deny},
		{"git_log", `{}`, policies.Allow},
		{"run_tests", `{}`, policies.Allow},
		{"delete_everything", `{}`, policies.Deny},
	}
	for _, tc := range tests {
		t.Run(tc.tool+" "+tc.args, func(t *testing.T) {
			args, _, ok := canonicalArgs(json.RawMessage(tc.args))
			if !ok {
				t.Fatal("bad args")
			}
			d, res := e.Decide(policies.Request{Tool: tc.tool, Args: args, Grant: g, Session: "s"})
			res.Rollback()
			if d.Verdict != tc.want {
				t.Fatalf("verdict %s (%s: %s), want %s", d.Verdict, d.Rule, d.Message, tc.want)
			}
		})
	}
	for _, name := range BuiltinNames() {
		// http_fetch reaches the network: the default policy does not list it, so it is
		// hidden and denied until an operator's policy names it.
		if want := name != "http_fetch"; e.Visible(name, g) != want {
			t.Errorf("built-in %s: visible %v under the default policy, want %v", name, !want, want)
		}
	}
	if d, res := e.Decide(policies.Request{Tool: "http_fetch", Args: map[string]any{"url": "https://example.com/"}, Grant: g, Session: "s"}); d.Verdict != policies.Deny {
		res.Rollback()
		t.Errorf("http_fetch under the default policy: %s, want deny", d.Verdict)
	}
}

func TestDefaultPolicyRateLimitsRunCommand(t *testing.T) {
	cfg, _ := ParseConfig("", nil)
	p, err := cfg.LoadPolicy()
	if err != nil {
		t.Fatal(err)
	}
	e := policies.NewEngine(p, policies.NewMemoryCounters())
	req := policies.Request{Tool: "run_command", Args: map[string]any{"command": "true"}, Grant: policies.Grant{ID: "local"}, Session: "s1"}
	allowed := 0
	for range 200 {
		d, res := e.Decide(req)
		res.Commit()
		if d.Verdict == policies.Allow {
			allowed++
		}
	}
	if allowed != 120 {
		t.Fatalf("%d of 200 run_command calls allowed in one session, want the limit of 120", allowed)
	}
	req.Session = "s2"
	if d, _ := e.Decide(req); d.Verdict != policies.Allow {
		t.Fatalf("a new session is limited too: %+v", d)
	}
}
