package runtime

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/sandbox"
)

// connect serves rt over an in-memory transport and returns a connected client session.
func connect(t *testing.T, rt *Runtime, opts *mcp.ClientOptions, version string) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ct, st := mcp.NewInMemoryTransports()
	done := make(chan error, 1)
	go func() { done <- rt.ServeTransport(ctx, st) }()
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, opts)
	var copts *mcp.ClientSessionOptions
	if version != "" {
		copts = &mcp.ClientSessionOptions{ProtocolVersion: version}
	}
	cs, err := c.Connect(ctx, ct, copts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cs.Close()
		cancel()
		<-done
	})
	return cs
}

func callTool(t *testing.T, cs *mcp.ClientSession, name string, args any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestToolsListDefault(t *testing.T) {
	rt := newTestRuntime(t, "", "", &fakeBackend{})
	cs := connect(t, rt, nil, "")
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*mcp.Tool{}
	var names []string
	for _, tl := range res.Tools {
		byName[tl.Name] = tl
		names = append(names, tl.Name)
	}
	// http_fetch is served but hidden by the default policy, which does not list it.
	want := slices.DeleteFunc(slices.Clone(BuiltinNames()), func(n string) bool { return n == "http_fetch" })
	slices.Sort(want)
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Fatalf("tools = %v, want %v", names, want)
	}
	rf := byName["read_file"].Annotations
	if !rf.ReadOnlyHint || rf.DestructiveHint == nil || *rf.DestructiveHint || rf.OpenWorldHint == nil || *rf.OpenWorldHint {
		t.Errorf("read_file annotations = %+v", rf)
	}
	wf := byName["write_file"].Annotations
	if wf.ReadOnlyHint || wf.DestructiveHint == nil || !*wf.DestructiveHint {
		t.Errorf("write_file annotations = %+v", wf)
	}
	schema, _ := json.Marshal(byName["read_file"].InputSchema)
	if !strings.Contains(string(schema), `"additionalProperties":false`) {
		t.Errorf("read_file schema = %s", schema)
	}
}

func TestToolsListFollowsPolicy(t *testing.T) {
	policy := `{"version":"1","default":"deny","hide":["run_command"],"tools":{"read_file":{},"run_command":{},"git_status":{}}}`
	rt := newTestRuntime(t, "", policy, &fakeBackend{})
	cs := connect(t, rt, nil, "")
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"git_status", "read_file"}) {
		t.Fatalf("tools = %v, want [git_status read_file]", names)
	}
	// A hidden tool is not callable either: the call is denied by /hide as a tool result
	// (never a transport error) and audited like every other call.
	hidden := callTool(t, cs, "run_command", map[string]any{"command": "id"})
	if !hidden.IsError || !strings.HasPrefix(text(hidden), "[POLICY DENIED] ") || !strings.HasSuffix(text(hidden), "(rule /hide)") {
		t.Fatalf("hidden tool call = %q isError %v, want a [POLICY DENIED] ... (rule /hide) result", text(hidden), hidden.IsError)
	}
	// A tool that does not exist at all is a tool error, audited too.
	unknown := callTool(t, cs, "no_such_tool", map[string]any{})
	if !unknown.IsError || !strings.Contains(text(unknown), "no_such_tool") {
		t.Fatalf("unknown tool call = %q isError %v", text(unknown), unknown.IsError)
	}
	recs := auditRecords(t, rt)
	if len(recs) != 2 || recs[0].Tool != "run_command" || recs[0].Rule != "/hide" || recs[1].Tool != "no_such_tool" {
		t.Fatalf("audit records = %+v, want the hidden and the unknown call", recs)
	}
}

// auditRecords reads rt's audit log.
func auditRecords(t *testing.T, rt *Runtime) []pipeline.Record {
	t.Helper()
	f, err := os.Open(rt.Config().Audit.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []pipeline.Record
	if err := pipeline.ReadRecords(f, func(_ []byte, r pipeline.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestCallAllowedRunsInSandbox(t *testing.T) {
	fb := &fakeBackend{respond: func(_ context.Context, s sandbox.Spec) (sandbox.Result, error) {
		return sandbox.Result{Stdout: []byte(`{"path":"a.txt","content":"hello\n","offset":0,"lines":1,"truncated":false,"size":6}` + "\n")}, nil
	}}
	rt := newTestRuntime(t, "", "", fb)
	cs := connect(t, rt, nil, "")
	res := callTool(t, cs, "read_file", map[string]any{"path": "a.txt"})
	if res.IsError || !strings.Contains(text(res), "hello") {
		t.Fatalf("result = %q isError %v", text(res), res.IsError)
	}
	runs := fb.runs()
	if len(runs) != 1 {
		t.Fatalf("%d sandbox runs, want 1", len(runs))
	}
	if runs[0].Image != "busybox" || runs[0].Seccomp != sandbox.SeccompFiles || runs[0].Mounts[0].Access != sandbox.ReadOnly {
		t.Errorf("spec = image %s seccomp %s mounts %+v", runs[0].Image, runs[0].Seccomp, runs[0].Mounts)
	}
	if res.StructuredContent == nil {
		t.Error("no structuredContent")
	}
}

func TestCallDenied(t *testing.T) {
	fb := &fakeBackend{}
	rt := newTestRuntime(t, "", "", fb)
	cs := connect(t, rt, nil, "")
	res := callTool(t, cs, "read_file", map[string]any{"path": "../../etc/passwd"})
	if !res.IsError || !strings.HasPrefix(text(res), "[POLICY DENIED] ") || !strings.Contains(text(res), "(rule /tools/read_file/") {
		t.Fatalf("result = %q isError %v", text(res), res.IsError)
	}
	if n := len(fb.runs()); n != 0 {
		t.Fatalf("a denied call ran %d sandboxes", n)
	}
}

func TestCallRawArgumentsReachPipeline(t *testing.T) {
	fb := &fakeBackend{}
	rt := newTestRuntime(t, "", "", fb)
	cs := connect(t, rt, nil, "")
	// Duplicate keys survive only if the handler passes the client's bytes through untouched.
	res := callTool(t, cs, "read_file", json.RawMessage(`{"path":"a.txt","path":"/etc/passwd"}`))
	if !res.IsError {
		t.Fatalf("duplicate keys accepted: %q", text(res))
	}
	if n := len(fb.runs()); n != 0 {
		t.Fatalf("a malformed call ran %d sandboxes", n)
	}
}

func TestApproval(t *testing.T) {
	writeOK := func(_ context.Context, s sandbox.Spec) (sandbox.Result, error) {
		return sandbox.Result{Stdout: []byte(`{"path":"src/a.go","bytes":1,"created":true}` + "\n")}, nil
	}
	answer := func(action string, approve any) *mcp.ClientOptions {
		return &mcp.ClientOptions{ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			if !strings.Contains(req.Params.Message, "write_file") || !strings.Contains(req.Params.Message, "src/a.go") {
				return nil, errAssert("elicitation does not show the call: " + req.Params.Message)
			}
			res := &mcp.ElicitResult{Action: action}
			if approve != nil {
				res.Content = map[string]any{"approve": approve}
			}
			return res, nil
		}}
	}
	tests := []struct {
		name    string
		opts    *mcp.ClientOptions
		version string // "" = the SDK's latest (input requests); 2025-06-18 = elicitation/create
		ran     bool
	}{
		{"accept, latest protocol", answer("accept", true), "", true},
		{"accept, 2025-06-18 client", answer("accept", true), "2025-06-18", true},
		{"accept without ticking approve", answer("accept", false), "", false},
		{"decline", answer("decline", nil), "", false},
		{"decline, 2025-06-18 client", answer("decline", nil), "2025-06-18", false},
		{"cancel", answer("cancel", nil), "", false},
		{"client without elicitation, 2025-06-18", nil, "2025-06-18", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fb := &fakeBackend{respond: writeOK}
			rt := newTestRuntime(t, "", "", fb)
			cs := connect(t, rt, tc.opts, tc.version)
			res := callTool(t, cs, "write_file", map[string]any{"path": "src/a.go", "content": "x"})
			ran := len(fb.runs()) == 1
			if ran != tc.ran {
				t.Fatalf("ran = %v, want %v (result %q)", ran, tc.ran, text(res))
			}
			if tc.ran {
				if res.IsError || !strings.Contains(text(res), "created src/a.go") {
					t.Fatalf("approved call failed: %q", text(res))
				}
				if fb.runs()[0].Mounts[0].Access != sandbox.ReadWrite {
					t.Errorf("write_file workspace access = %s", fb.runs()[0].Mounts[0].Access)
				}
				return
			}
			if !res.IsError || !strings.HasPrefix(text(res), "[POLICY DENIED]") {
				t.Fatalf("refused approval: result %q isError %v, want a policy denial", text(res), res.IsError)
			}
		})
	}
}

type errAssert string

func (e errAssert) Error() string { return string(e) }

// TestApprovalCannotBeForged: an answer the server did not ask for, or asked for another call,
// does not approve anything. Each forged state differs from a valid one in one respect only,
// so each case fails if the one check that catches it is removed: the HMAC (a state signed
// with another key), the session and grant binding (states minted for another session or
// grant), the expiry (a state answered after approvalTTL), the call binding (other arguments)
// and single use (a replay).
func TestApprovalCannotBeForged(t *testing.T) {
	fb := &fakeBackend{}
	rt := newTestRuntime(t, "", "", fb)
	cs := connect(t, rt, &mcp.ClientOptions{MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"approve": true}}, nil
		}}, "")
	yes := mcp.InputResponseMap{approvalKey: &mcp.ElicitResult{Action: "accept", Content: map[string]any{"approve": true}}}
	args := map[string]any{"path": "a", "content": "harmless"}
	ctx := context.Background()
	refused := func(t *testing.T, state, why string, a map[string]any) {
		t.Helper()
		before := len(fb.runs())
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "write_file", Arguments: a, InputResponses: yes, RequestState: state})
		if err != nil {
			t.Fatal(err)
		}
		if !res.IsError || len(fb.runs()) != before || !strings.Contains(text(res), why) {
			t.Fatalf("approval accepted or refused for another reason (want %q): %q, %d runs", why, text(res), len(fb.runs())-before)
		}
	}

	t.Run("no state at all", func(t *testing.T) { refused(t, "", "malformed approval state", args) })

	// A real state, and what it binds.
	first, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "write_file", Arguments: args})
	if err != nil {
		t.Fatal(err)
	}
	if !first.NeedsInput() || first.RequestState == "" {
		t.Fatalf("approve_if call did not ask for input: %+v", first)
	}
	b64, _, _ := strings.Cut(first.RequestState, ".")
	body, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	var st approvalState
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}

	t.Run("forged: a state signed with another key", func(t *testing.T) {
		other := &approvals{key: []byte("not the server's key, 32 bytes.."), used: map[string]time.Time{}, now: time.Now}
		forged, err := other.mint(st.Session, st.Grant, st.Tool, st.Args)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, forged, "not issued by this server", args)
	})
	t.Run("minted for another session", func(t *testing.T) {
		state, err := rt.approvals.mint("another-session", st.Grant, st.Tool, st.Args)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, state, "issued to another session", args)
	})
	t.Run("minted for another grant", func(t *testing.T) {
		state, err := rt.approvals.mint(st.Session, "mallory", st.Tool, st.Args)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, state, "issued to another session", args)
	})
	t.Run("expired", func(t *testing.T) {
		state, err := rt.approvals.mint(st.Session, st.Grant, st.Tool, st.Args)
		if err != nil {
			t.Fatal(err)
		}
		rt.approvals.setClock(func() time.Time { return time.Now().Add(approvalTTL + time.Minute) })
		defer rt.approvals.setClock(time.Now)
		refused(t, state, "expired", args)
	})
	t.Run("replayed with other arguments", func(t *testing.T) {
		refused(t, first.RequestState, "different call", map[string]any{"path": "a", "content": "evil"})
	})
	t.Run("the right call, twice", func(t *testing.T) {
		// Key order and spacing do not matter: the arguments are compared canonically.
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "write_file", Arguments: map[string]any{"content": "harmless", "path": "a"},
			InputResponses: yes, RequestState: first.RequestState})
		if err != nil {
			t.Fatal(err)
		}
		if len(fb.runs()) != 1 {
			t.Fatalf("the approved call did not run: %q", text(res))
		}
		refused(t, first.RequestState, "already used", args)
	})
}

// TestProgressNotifications: run_command and run_tests report progress for the caller's token
// while they run. MCP requires each value to exceed the one before (reports every 30 ms, which
// round to the same tenth of a second, used to repeat values), and total is left out: the
// time limit is not the amount of work.
func TestProgressNotifications(t *testing.T) {
	fb := &fakeBackend{respond: func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
		select {
		case <-time.After(1500 * time.Millisecond):
		case <-ctx.Done():
		}
		return sandbox.Result{Stdout: []byte("PASS\n")}, nil
	}}
	rt := newTestRuntimeTB(t, "tests:\n  argv: [\"true\"]\n", "", fb, func(o *Options) { o.ProgressInterval = 30 * time.Millisecond })
	var mu sync.Mutex
	got := map[any][]*mcp.ProgressNotificationParams{}
	cs := connect(t, rt, &mcp.ClientOptions{ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
		mu.Lock()
		got[req.Params.ProgressToken] = append(got[req.Params.ProgressToken], req.Params)
		mu.Unlock()
	}}, "")
	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"run_tests", map[string]any{}},
		{"run_command", map[string]any{"command": "sleep 1"}},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			params := &mcp.CallToolParams{Name: tc.tool, Arguments: tc.args}
			params.SetProgressToken("tok-" + tc.tool)
			res, err := cs.CallTool(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			if res.IsError || !strings.Contains(text(res), "PASS") {
				t.Fatalf("%s = %q", tc.tool, text(res))
			}
			mu.Lock()
			defer mu.Unlock()
			ps := got["tok-"+tc.tool]
			if len(ps) < 5 {
				t.Fatalf("%d progress notifications during a 1.5 s run reported every 30 ms", len(ps))
			}
			var values []float64
			for i, p := range ps {
				values = append(values, p.Progress)
				if i > 0 && p.Progress <= ps[i-1].Progress {
					t.Errorf("progress values do not increase strictly: %v", values)
				}
				if p.Total != 0 {
					t.Errorf("progress carries total %v; the amount of work is not known", p.Total)
				}
			}
		})
	}
}

// TestDeclineRollsBackLimits: a declined approval gives back the rate-limit unit it reserved,
// so with a budget of one call, two declines still leave the one approved call.
func TestDeclineRollsBackLimits(t *testing.T) {
	policy := `{"version":"1","default":"deny","tools":{"write_file":{
		"limits":[{"counter":"writes","max":1,"window":"hour","scope":"session"}],
		"approve_if":[{"conditions":[{"path":"args.path","op":"exists"}]}]}}}`
	fb := &fakeBackend{respond: func(context.Context, sandbox.Spec) (sandbox.Result, error) {
		return sandbox.Result{Stdout: []byte(`{"path":"a","bytes":1,"created":true}` + "\n")}, nil
	}}
	rt := newTestRuntime(t, "", policy, fb)
	var accept atomic.Bool
	cs := connect(t, rt, &mcp.ClientOptions{ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		if accept.Load() {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"approve": true}}, nil
		}
		return &mcp.ElicitResult{Action: "decline"}, nil
	}}, "2025-06-18")
	args := map[string]any{"path": "a", "content": "x"}
	for i := range 2 {
		if res := callTool(t, cs, "write_file", args); !res.IsError {
			t.Fatalf("decline %d: call succeeded: %q", i+1, text(res))
		}
	}
	accept.Store(true)
	if res := callTool(t, cs, "write_file", args); res.IsError {
		t.Fatalf("approved call after two declines: %q (declines kept their units?)", text(res))
	}
	if res := callTool(t, cs, "write_file", args); !res.IsError || !strings.Contains(text(res), "[POLICY DENIED]") {
		t.Fatalf("second approved call within a budget of one: %q", text(res))
	}
	if n := len(fb.runs()); n != 1 {
		t.Fatalf("%d sandbox runs, want 1", n)
	}
}
