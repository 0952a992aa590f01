package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/sandbox"
)

// fakeBackend is a sandbox.Backend for unit tests: it runs nothing and returns what run says.
type fakeBackend struct {
	calls atomic.Int64
	run   func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error)
}

func (b *fakeBackend) Name() string                                       { return "fake" }
func (b *fakeBackend) Reap(ctx context.Context) ([]sandbox.Reaped, error) { return nil, nil }
func (b *fakeBackend) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	b.calls.Add(1)
	if b.run != nil {
		return b.run(ctx, spec)
	}
	return sandbox.Result{Stdout: []byte("ran " + strings.Join(spec.Argv, " ")), ContainerID: "c-1", Loosened: spec.Loosened}, nil
}

// echoTool takes {"text": string} and plans `echo TEXT` in the workspace.
type echoTool struct {
	name      string
	workspace string
	access    sandbox.Access
	render    func(Output) Rendered
}

func (e *echoTool) Name() string { return e.name }
func (e *echoTool) InputSchema() json.RawMessage {
	return json.RawMessage(`{"type":"object","properties":{"text":{"type":"string","maxLength":100},"n":{"type":"integer"}},"required":["text"]}`)
}
func (e *echoTool) Plan(ctx context.Context, args map[string]any) ([]sandbox.Option, error) {
	access := e.access
	if access == "" {
		access = sandbox.ReadOnly
	}
	return []sandbox.Option{sandbox.WithArgv("echo", args["text"].(string)), sandbox.WithWorkspace(e.workspace, access)}, nil
}
func (e *echoTool) Render(out Output) Rendered {
	if e.render != nil {
		return e.render(out)
	}
	return Rendered{Text: out.Stdout + out.Stderr, IsError: out.ExitCode != 0}
}

const testPolicy = `{
  "version": "1",
  "default": "deny",
  "hide": ["hidden"],
  "tools": {
    "echo": {
      "deny_if": [{"conditions": [{"path": "args.text", "op": "contains", "value": "forbidden"}],
                   "on_deny": "No forbidden words."}]
    },
    "limited": {
      "limits": [{"counter": "limited", "max": 1, "window": "hour", "scope": "grant",
                  "on_deny": "Hourly budget used."}]
    },
    "needs_ok": {
      "approve_if": [{"conditions": [{"path": "args.text", "op": "exists"}]}],
      "limits": [{"counter": "needs_ok", "max": 1, "window": "hour", "scope": "grant",
                  "on_deny": "Hourly budget used."}]
    },
    "hidden": {}
  }
}`

type env struct {
	p       *Pipeline
	backend *fakeBackend
	engine  *policies.Engine
	audit   string
	ws      string
	state   string // a host path scrubbed from results
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	pol, err := policies.Parse("test-policy.json", []byte(testPolicy))
	if err != nil {
		t.Fatalf("policies.Parse: %v", err)
	}
	ws := t.TempDir()
	e := &env{backend: &fakeBackend{}, engine: policies.NewEngine(pol, policies.NewMemoryCounters()), ws: ws,
		audit: filepath.Join(t.TempDir(), "audit", "audit.jsonl"), state: t.TempDir()}
	cfg := Config{
		Tools: []Tool{
			&echoTool{name: "echo", workspace: ws},
			&echoTool{name: "limited", workspace: ws},
			&echoTool{name: "needs_ok", workspace: ws},
			&echoTool{name: "hidden", workspace: ws},
		},
		Policy:     e.engine,
		Backend:    e.backend,
		AuditPath:  e.audit,
		Workspace:  ws,
		ScrubPaths: []string{e.state},
		Logger:     zerolog.Nop(),
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	e.p = p
	return e
}

func (e *env) run(tool, args string) Result {
	return e.p.Run(context.Background(), Call{Tool: tool, Args: json.RawMessage(args), Grant: policies.Grant{ID: "tester"}, Session: "s1"})
}

// records reads the audit log; it also checks the chain verifies.
// records are the closing records of the log (one per call); allRecords includes the intent
// records written before a sandbox starts.
func (e *env) records(t testing.TB) []Record {
	t.Helper()
	var out []Record
	for _, r := range e.allRecords(t) {
		if r.Phase == "" {
			out = append(out, r)
		}
	}
	return out
}

func (e *env) allRecords(t testing.TB) []Record {
	t.Helper()
	b, err := os.ReadFile(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(strings.NewReader(string(b)))
	if err != nil || !rep.Intact() {
		t.Fatalf("audit chain does not verify: %+v %v", rep, err)
	}
	var recs []Record
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs
}

func (e *env) last(t testing.TB) Record {
	t.Helper()
	recs := e.records(t)
	return recs[len(recs)-1]
}

func TestRunAllowedSanitisesAndAudits(t *testing.T) {
	e := newEnv(t, nil)
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		out := "\x1b[1mbuild\x1b[0m in " + spec.Mounts[0].Source + "/src\nAWS_ACCESS_KEY_ID=" + plantedAWS + "\nbad \xff byte\n"
		return sandbox.Result{Stdout: []byte(out), Stderr: []byte("token " + plantedGitHub), ExitCode: 0,
			Duration: 42 * time.Millisecond, ContainerID: "abc123"}, nil
	}
	res := e.run("echo", `{"text":"hello"}`)
	if res.IsError || res.Denied || res.Verdict != policies.Allow || res.AuditID == "" {
		t.Fatalf("Run = %+v, want an allowed, successful call", res)
	}
	for _, leak := range []string{plantedAWS, plantedGitHub, e.ws, "\x1b", "\xff"} {
		if strings.Contains(res.Text, leak) || strings.Contains(fmt.Sprint(res.Structured), leak) {
			t.Errorf("result still contains %q:\n%s\n%v", leak, res.Text, res.Structured)
		}
	}
	for _, want := range []string{"build in /workspace/src", "[REDACTED:aws-access-token]", "[REDACTED:github-pat]", "bad \uFFFD byte", "2 secret(s) redacted"} {
		if !strings.Contains(res.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, res.Text)
		}
	}
	st := res.Structured
	for _, k := range []string{"exit_code", "stdout", "stderr", "truncated", "timed_out", "oom_killed", "duration_ms", "audit_id", "redactions"} {
		if _, ok := st[k]; !ok {
			t.Errorf("structured content lacks %q: %v", k, st)
		}
	}
	if st["audit_id"] != res.AuditID || st["exit_code"] != 0 || st["duration_ms"] != int64(42) {
		t.Errorf("structured = %v", st)
	}
	red := st["redactions"].(map[string]int)
	if red["aws-access-token"] != 1 || red["github-pat"] != 1 {
		t.Errorf("redactions = %v, want one aws-access-token and one github-pat", red)
	}
	rec := e.last(t)
	if rec.AuditID != res.AuditID || rec.Decision != "allow" || rec.Tool != "echo" || rec.Grant != "tester" ||
		rec.Session != "s1" || rec.Backend != "fake" || rec.Image != "busybox" || rec.ContainerID != "abc123" ||
		rec.ExitCode == nil || *rec.ExitCode != 0 || rec.Redactions["github-pat"] != 1 || len(rec.ArgKeys) != 1 || rec.Args != nil {
		t.Errorf("audit record = %+v", rec)
	}
	for _, s := range []string{StageSchema, StagePolicy, StageSandbox, StageExecute, StageSanitize} {
		if _, ok := rec.StageMS[s]; !ok {
			t.Errorf("stage_ms lacks %q: %v", s, rec.StageMS)
		}
	}
	raw, _ := os.ReadFile(e.audit)
	for _, leak := range []string{plantedAWS, plantedGitHub, "hello"} {
		if strings.Contains(string(raw), leak) {
			t.Errorf("audit log contains %q (secrets and argument values must not be stored)", leak)
		}
	}
}

func TestRunRecordArgs(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RecordArgs = true })
	e.run("echo", `{"text":"hello","n":1}`)
	if rec := e.last(t); string(rec.Args) != `{"n":1,"text":"hello"}` {
		t.Fatalf("args = %s, want the arguments recorded", rec.Args)
	}
}

func TestRunRefusals(t *testing.T) {
	cases := []struct {
		name         string
		tool, args   string
		wantText     []string
		wantDecision string
		wantDenied   bool
	}{
		{name: "duplicate key", tool: "echo", args: `{"text":"a","text":"b"}`, wantText: []string{"invalid arguments for echo", "/text", "duplicate key"}, wantDecision: DecisionInvalid},
		{name: "case-duplicate key", tool: "echo", args: `{"text":"a","Text":"/etc"}`, wantText: []string{"/Text", `differs only by case from "text"`}, wantDecision: DecisionInvalid},
		{name: "NUL in value", tool: "echo", args: `{"text":"a\u0000b"}`, wantText: []string{"/text", "NUL"}, wantDecision: DecisionInvalid},
		{name: "too deep", tool: "echo", args: `{"text":"a","x":` + nested(64) + `}`, wantText: []string{"nesting deeper than 64"}, wantDecision: DecisionInvalid},
		{name: "schema: missing field", tool: "echo", args: `{}`, wantText: []string{"/text: required property is missing"}, wantDecision: DecisionInvalid},
		{name: "schema: wrong type", tool: "echo", args: `{"text":5}`, wantText: []string{"/text: got number, want string"}, wantDecision: DecisionInvalid},
		{name: "schema: extra field", tool: "echo", args: `{"text":"a","cmd":"rm"}`, wantText: []string{"/cmd: property is not allowed"}, wantDecision: DecisionInvalid},
		{name: "unknown tool", tool: "nope", args: `{}`, wantText: []string{`unknown tool "nope"`}, wantDecision: DecisionUnknownTool},
		{name: "hidden tool", tool: "hidden", args: `{"text":"a"}`, wantText: []string{"[POLICY DENIED]", "(rule /hide"}, wantDecision: "deny", wantDenied: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			res := e.run(tc.tool, tc.args)
			if !res.IsError || res.Denied != tc.wantDenied {
				t.Fatalf("Run = %+v, want an error (denied=%v)", res, tc.wantDenied)
			}
			for _, w := range tc.wantText {
				if !strings.Contains(res.Text, w) {
					t.Errorf("text %q lacks %q", res.Text, w)
				}
			}
			if n := e.backend.calls.Load(); n != 0 {
				t.Errorf("backend ran %d times for a refused call", n)
			}
			rec := e.last(t)
			if rec.Decision != tc.wantDecision || rec.AuditID != res.AuditID || rec.ExitCode != nil {
				t.Errorf("audit record = %+v, want decision %q and no exit code", rec, tc.wantDecision)
			}
			if res.Structured["audit_id"] != res.AuditID {
				t.Errorf("structured = %v, want the audit id", res.Structured)
			}
		})
	}
}

func TestRunDenialText(t *testing.T) {
	e := newEnv(t, nil)
	args := `{"text":"a forbidden word"}`
	res := e.run("echo", args)
	m, _ := decodeArgs([]byte(args), 0)
	d := e.engine.Policy().Evaluate(policies.Request{Tool: "echo", Args: m, Grant: policies.Grant{ID: "tester"}, Session: "s1"})
	want := fmt.Sprintf("[POLICY DENIED] %s (rule %s)", d.Message, d.Rule)
	if d.Verdict != policies.Deny || d.Message != "No forbidden words." || !strings.HasPrefix(d.Rule, "/tools/echo/deny_if") {
		t.Fatalf("policy decision = %+v, test policy not as expected", d)
	}
	if res.Text != want || !res.IsError || !res.Denied || res.Verdict != policies.Deny {
		t.Fatalf("Run = %+v, want text %q", res, want)
	}
	rec := e.last(t)
	if rec.Decision != "deny" || rec.Rule != d.Rule || rec.Message != d.Message || rec.PolicySHA256 != e.engine.Policy().SHA256() {
		t.Fatalf("record = %+v", rec)
	}
}

// TestRunRollsBackUnits uses a limit of one call an hour: a call that does not execute must
// give its unit back, so the next call is admitted.
func TestRunRollsBackUnits(t *testing.T) {
	t.Run("sandbox failure", func(t *testing.T) {
		e := newEnv(t, nil)
		e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
			return sandbox.Result{}, fmt.Errorf("runc create %s/run/x1/config.json: %w", e.state, sandbox.ErrUnavailable)
		}
		res := e.run("limited", `{"text":"a"}`)
		want := "sandbox unavailable: runc create [host-path]/run/x1/config.json: sandbox backend unavailable (the tool did not run)"
		if !res.IsError || res.Text != want {
			t.Fatalf("Run with a failing backend = %q, want %q", res.Text, want)
		}
		if rec := e.last(t); rec.Decision != DecisionError || !strings.Contains(rec.Message, "unavailable") {
			t.Fatalf("record = %+v", rec)
		}
		e.backend.run = nil
		if res := e.run("limited", `{"text":"a"}`); res.IsError {
			t.Fatalf("second call = %q, want it admitted (the failed call's unit rolled back)", res.Text)
		}
		if res := e.run("limited", `{"text":"a"}`); !res.Denied || !strings.Contains(res.Text, "Hourly budget used.") {
			t.Fatalf("third call = %q, want the limit to deny it", res.Text)
		}
	})
	t.Run("approval", func(t *testing.T) {
		e := newEnv(t, nil)
		call := func(a Approver) Result {
			return e.p.Run(context.Background(), Call{Tool: "needs_ok", Args: json.RawMessage(`{"text":"a"}`), Grant: policies.Grant{ID: "tester"}, Approver: a})
		}
		cases := []struct {
			name string
			a    Approver
			want string
		}{
			{"nil approver fails closed", nil, "[POLICY DENIED] approval declined: this client cannot ask a human"},
			{"declined", approverFunc(func() (bool, error) { return false, nil }), "[POLICY DENIED] approval declined: the human declined (rule /tools/needs_ok/approve_if"},
			{"approver error", approverFunc(func() (bool, error) { return false, errors.New("elicitation timed out") }), "[POLICY DENIED] approval declined: elicitation timed out"},
		}
		for _, tc := range cases {
			res := call(tc.a)
			if !res.Denied || !res.IsError || !strings.HasPrefix(res.Text, tc.want) || !strings.HasSuffix(res.Text, ")") {
				t.Errorf("%s: Run = %q, want prefix %q", tc.name, res.Text, tc.want)
			}
			if rec := e.last(t); rec.Decision != "deny" || !strings.HasPrefix(rec.Message, "approval declined") {
				t.Errorf("%s: record = %+v", tc.name, rec)
			}
		}
		if n := e.backend.calls.Load(); n != 0 {
			t.Fatalf("backend ran %d times without approval", n)
		}
		var asked ApprovalRequest
		res := call(approverFunc(func() (bool, error) { return true, nil }, &asked))
		if res.IsError || e.backend.calls.Load() != 1 {
			t.Fatalf("approved call = %+v, want it run (declined calls rolled back their units)", res)
		}
		if asked.Tool != "needs_ok" || asked.Args["text"] != "a" || asked.Decision.Verdict != policies.Approve {
			t.Errorf("approver was asked %+v", asked)
		}
		if rec := e.last(t); rec.Decision != "approve" {
			t.Errorf("approved call recorded as %q", rec.Decision)
		}
		if res := call(approverFunc(func() (bool, error) { return true, nil })); !res.Denied || !strings.Contains(res.Text, "Hourly budget used.") {
			t.Fatalf("call after the budget = %q, want the limit to deny it", res.Text)
		}
	})
}

type approverFn struct {
	f   func() (bool, error)
	got *ApprovalRequest
}

func approverFunc(f func() (bool, error), got ...*ApprovalRequest) Approver {
	a := approverFn{f: f}
	if len(got) > 0 {
		a.got = got[0]
	}
	return a
}

func (a approverFn) Approve(ctx context.Context, req ApprovalRequest) (bool, error) {
	if a.got != nil {
		*a.got = req
	}
	return a.f()
}

func TestRunConcurrentCallsAllAudited(t *testing.T) {
	e := newEnv(t, nil)
	var wg sync.WaitGroup
	ids := make([]string, 50)
	for i := range 50 {
		wg.Go(func() {
			args := fmt.Sprintf(`{"text":"call %d"}`, i)
			if i%5 == 0 {
				args = `{"text":"forbidden"}`
			}
			ids[i] = e.run("echo", args).AuditID
		})
	}
	wg.Wait()
	recs := e.records(t)
	if len(recs) != 50 {
		t.Fatalf("%d records for 50 calls", len(recs))
	}
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.AuditID] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("call %s has no record", id)
		}
	}
}

func TestRunProgressAndLoosened(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.ProgressInterval = 5 * time.Millisecond
		c.Tools = append(c.Tools, &echoTool{name: "rw", workspace: c.Workspace, access: sandbox.ReadWrite})
	})
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		time.Sleep(60 * time.Millisecond)
		return sandbox.Result{Loosened: spec.Loosened}, nil
	}
	var ticks atomic.Int64
	var last, repeats atomic.Int64
	res := e.p.Run(context.Background(), Call{Tool: "echo", Args: json.RawMessage(`{"text":"a"}`), Progress: func(elapsed time.Duration) {
		ticks.Add(1)
		if int64(elapsed) <= last.Load() {
			repeats.Add(1)
		}
		last.Store(int64(elapsed))
	}})
	if res.IsError || ticks.Load() < 3 || repeats.Load() != 0 {
		t.Fatalf("progress called %d times, %d of them not after the one before; want several, strictly increasing", ticks.Load(), repeats.Load())
	}
	after := ticks.Load()
	time.Sleep(20 * time.Millisecond)
	if ticks.Load() != after {
		t.Fatal("progress still called after the run ended")
	}
	// "rw" has no policy entry, so default deny; allow it through a policy for this check.
	pol, _ := policies.Parse("p", []byte(`{"version":"1","default":"allow"}`))
	e2 := newEnv(t, func(c *Config) {
		c.Policy = policies.NewEngine(pol, policies.NewMemoryCounters())
		c.Tools = []Tool{&echoTool{name: "rw", workspace: c.Workspace, access: sandbox.ReadWrite}}
	})
	res = e2.run("rw", `{"text":"a"}`)
	if l, _ := res.Structured["loosened"].([]string); len(l) != 1 || l[0] != "workspace:rw" {
		t.Fatalf("structured loosened = %v, want [workspace:rw]", res.Structured["loosened"])
	}
	if rec := e2.last(t); len(rec.Loosened) != 1 {
		t.Fatalf("record loosened = %v", rec.Loosened)
	}
}

func TestRunPanickingToolIsAudited(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Tools = []Tool{&echoTool{name: "echo", workspace: c.Workspace, render: func(Output) Rendered { panic("boom") }}}
	})
	res := e.run("echo", `{"text":"a"}`)
	if !res.IsError || !strings.Contains(res.Text, "internal error") {
		t.Fatalf("Run = %+v", res)
	}
	if rec := e.last(t); rec.Decision != DecisionError || !strings.Contains(rec.Message, "boom") {
		t.Fatalf("record = %+v", rec)
	}
}

func TestRunRefusesWhenAuditFails(t *testing.T) {
	e := newEnv(t, nil)
	e.p.trace.audit.mu.Lock()
	e.p.trace.audit.writeLine = func(*os.File, []byte) error { return errors.New("no space left on device") }
	e.p.trace.audit.mu.Unlock()
	if res := e.run("echo", `{"text":"a"}`); !res.IsError || !strings.Contains(res.Text, "audit log unavailable") {
		t.Fatalf("Run with a failing audit log = %q", res.Text)
	}
	before := e.backend.calls.Load()
	if res := e.run("echo", `{"text":"a"}`); !res.IsError || !strings.Contains(res.Text, "no tool can run") {
		t.Fatalf("next Run = %q, want a refusal", res.Text)
	}
	if e.backend.calls.Load() != before {
		t.Fatal("a tool ran while the audit log was broken")
	}
}

func TestToolsVisibility(t *testing.T) {
	e := newEnv(t, nil)
	var names []string
	for _, tl := range e.p.Tools(policies.Grant{ID: "tester"}) {
		names = append(names, tl.Name())
	}
	if strings.Join(names, ",") != "echo,limited,needs_ok" {
		t.Fatalf("Tools = %v, want echo,limited,needs_ok (hidden is hidden)", names)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	pol, _ := policies.Parse("p", []byte(testPolicy))
	eng := policies.NewEngine(pol, policies.NewMemoryCounters())
	dir := t.TempDir()
	bad := &echoTool{name: "echo"}
	cases := map[string]Config{
		"no policy":  {Backend: &fakeBackend{}, AuditPath: filepath.Join(dir, "a")},
		"no backend": {Policy: eng, AuditPath: filepath.Join(dir, "b")},
		"no audit":   {Policy: eng, Backend: &fakeBackend{}},
		"dup tool":   {Policy: eng, Backend: &fakeBackend{}, AuditPath: filepath.Join(dir, "c"), Tools: []Tool{bad, bad}},
	}
	for name, cfg := range cases {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// BenchmarkRun is the pipeline's own overhead: a call through all seven stages with a backend
// that returns at once. Per-stage means are reported as extra metrics (µs/op).
func BenchmarkRun(b *testing.B) {
	e := newEnv(b, nil)
	stdout := mixedLog()
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		return sandbox.Result{Stdout: stdout, ExitCode: 0}, nil
	}
	call := Call{Tool: "echo", Args: json.RawMessage(`{"text":"hello world"}`), Grant: policies.Grant{ID: "bench"}}
	sums := map[string]float64{}
	b.ResetTimer()
	for b.Loop() {
		res := e.p.Run(context.Background(), call)
		if res.IsError {
			b.Fatal(res.Text)
		}
		for k, v := range res.StageMS {
			sums[k] += v
		}
	}
	for k, v := range sums {
		b.ReportMetric(v*1000/float64(b.N), k+"-µs/op")
	}
}

func TestRunAfterCloseRunsNothing(t *testing.T) {
	e := newEnv(t, nil)
	e.p.Close()
	if res := e.run("echo", `{"text":"a"}`); !res.IsError || !strings.Contains(res.Text, "closed") {
		t.Fatalf("Run after Close = %q, want a refusal", res.Text)
	}
	if e.backend.calls.Load() != 0 {
		t.Fatal("a tool ran after the audit log was closed")
	}
}

// A tool that decodes JSON output (as the file tools do) can turn escapes back into control
// characters or reassemble an escaped secret; its rendering is sanitised again.
func TestRunSanitisesTheRendering(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Tools = []Tool{&echoTool{name: "echo", workspace: c.Workspace, render: func(out Output) Rendered {
			var m map[string]any
			if err := json.Unmarshal([]byte(out.Stdout), &m); err != nil {
				return Rendered{Text: err.Error(), IsError: true}
			}
			return Rendered{Text: m["content"].(string), Fields: map[string]any{"result": m}}
		}}}
	})
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		// "\u0041KIA..." hides the key from a scan of the raw JSON.
		content := `\u001b[2J\u0041` + plantedAWS[1:] + ` in ` + e.ws
		return sandbox.Result{Stdout: []byte(`{"content":"` + content + `"}`)}, nil
	}
	res := e.run("echo", `{"text":"a"}`)
	for _, leak := range []string{plantedAWS, "\x1b", e.ws} {
		if strings.Contains(res.Text, leak) || strings.Contains(fmt.Sprint(res.Structured["result"]), leak) {
			t.Errorf("rendering still has %q: %q %v", leak, res.Text, res.Structured["result"])
		}
	}
	if !strings.Contains(res.Text, "[REDACTED:aws-access-token] in /workspace") {
		t.Errorf("text = %q", res.Text)
	}
	if rec := e.last(t); rec.Redactions["aws-access-token"] < 1 {
		t.Errorf("record redactions = %v", rec.Redactions)
	}
}
