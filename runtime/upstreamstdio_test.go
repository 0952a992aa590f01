package runtime

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/sandbox"
)

// stdioFake is a backend whose long-lived runs (Spec.Streams) serve a small MCP server in this
// process over the run's pipes: it stands in for a container so the gateway's lifecycle
// (per session, per call, idle, crash and restart) is tested without one. integration/
// gateway_stdio_test.go runs real servers in real sandboxes.
type stdioFake struct {
	fakeBackend
	started atomic.Int32
	running atomic.Int32
	mu      sync.Mutex
	envs    [][]string
}

func newStdioFake() *stdioFake {
	f := &stdioFake{}
	f.respond = f.serve
	return f
}

type stdioArgs struct {
	Text string `json:"text"`
}

// serve runs until the server's stdin ends (Stop), its context is cancelled (kill), or the
// "crash" tool makes it exit with code 3.
func (f *stdioFake) serve(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	if spec.Streams == nil {
		return sandbox.Result{Stdout: []byte("ok\n")}, nil
	}
	f.started.Add(1)
	f.running.Add(1)
	defer f.running.Add(-1)
	f.mu.Lock()
	f.envs = append(f.envs, spec.Env)
	f.mu.Unlock()
	fmt.Fprintln(spec.Streams.Stderr, "fake server starting")
	crash := make(chan struct{})
	var once sync.Once
	srv := mcp.NewServer(&mcp.Implementation{Name: "fake-stdio"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "echo", Description: "Echoes text."}, func(_ context.Context, _ *mcp.CallToolRequest, a stdioArgs) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo: " + a.Text}}}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "env", Description: "Shows one variable of its environment."}, func(_ context.Context, _ *mcp.CallToolRequest, a stdioArgs) (*mcp.CallToolResult, any, error) {
		v := ""
		for _, kv := range spec.Env {
			if k, val, _ := strings.Cut(kv, "="); k == a.Text {
				v = val
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Text + "=" + v}}}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "ask", Description: "Asks the user."}, func(ctx context.Context, req *mcp.CallToolRequest, a stdioArgs) (*mcp.CallToolResult, any, error) {
		// MCP multi round-trip: ask first, answer when the retry brings the response.
		if ans, ok := req.Params.InputResponses["colour"].(*mcp.ElicitResult); ok && req.Params.RequestState == "st-1" {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("%s %v", ans.Action, ans.Content["answer"])}}}, nil, nil
		}
		return &mcp.CallToolResult{RequestState: "st-1", InputRequests: mcp.InputRequestMap{"colour": &mcp.ElicitParams{
			Mode: "form", Message: a.Text + "\u200b\x1b[31m",
			RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"answer": map[string]any{"type": "string"}}}}}}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "crash", Description: "Exits mid-call."}, func(context.Context, *mcp.CallToolRequest, stdioArgs) (*mcp.CallToolResult, any, error) {
		fmt.Fprintln(spec.Streams.Stderr, "fatal: crashing on purpose")
		once.Do(func() { close(crash) })
		select {} // the answer never comes: the process is gone
	})
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- srv.Run(sctx, &mcp.IOTransport{Reader: spec.Streams.Stdin, Writer: nopCloser{spec.Streams.Stdout}})
	}()
	res := sandbox.Result{Ran: true, ContainerID: fmt.Sprintf("fake-%d", f.started.Load())}
	select {
	case <-done:
	case <-crash:
		res.ExitCode = 3
	case <-ctx.Done():
		res.ExitCode = sandbox.ExitKilled
		return res, fmt.Errorf("killed: %w", context.Cause(ctx))
	}
	return res, nil
}

// nopCloser keeps the server from closing the run's stdout pipe end, which the backend (here,
// sandbox.Start) owns, as a container's would be.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

const stdioPolicy = `{"version":"1","default":"allow"}`

func stdioRuntime(t *testing.T, f *stdioFake, extra string) *Runtime {
	t.Helper()
	return newTestRuntime(t, "builtins: []\nupstreams:\n  loc:\n    command: [fake-server, --stdio]\n"+extra, stdioPolicy, &f.fakeBackend)
}

// One server per client session, started at its first call and stopped when the session
// ends; the catalog's listing server is not kept; shutdown stops the rest.
func TestStdioUpstreamPerSession(t *testing.T) {
	f := newStdioFake()
	rt := stdioRuntime(t, f, "")
	a := connectClient(t, rt, nil)
	if toolNames(t, a)["loc__echo"] == nil {
		t.Fatal("loc__echo not listed")
	}
	waitFor(t, func() bool { return f.running.Load() == 0 }) // the listing's server is gone
	for i := range 3 {
		if res, text := callText(t, a, "loc__echo", map[string]any{"text": fmt.Sprint(i)}); res.IsError || text != fmt.Sprintf("echo: %d", i) {
			t.Fatalf("call %d: %q", i, text)
		}
	}
	b := connectClient(t, rt, nil)
	callText(t, b, "loc__echo", map[string]any{"text": "b"})
	if got := f.running.Load(); got != 2 {
		t.Errorf("%d servers running with two sessions, want 2", got)
	}
	if got := f.started.Load(); got != 3 {
		t.Errorf("%d servers started (listing + two sessions), want 3", got)
	}
	a.Close()
	waitFor(t, func() bool { return f.running.Load() == 1 })
	rt.Close()
	if got := f.running.Load(); got != 0 {
		t.Errorf("%d servers still running after Close", got)
	}
}

// lifecycle: call starts a fresh server for every call, and none outlives its call.
func TestStdioUpstreamPerCall(t *testing.T) {
	f := newStdioFake()
	rt := stdioRuntime(t, f, "    lifecycle: call\n")
	cs := connectClient(t, rt, nil)
	for i := range 3 {
		if res, _ := callText(t, cs, "loc__echo", map[string]any{"text": "x"}); res.IsError {
			t.Fatalf("call %d failed", i)
		}
		waitFor(t, func() bool { return f.running.Load() == 0 })
	}
	if got := f.started.Load(); got != 4 {
		t.Errorf("%d servers started for a listing and 3 calls, want 4", got)
	}
}

// A server that dies mid-call fails that call with how it ended (audited as an error); the
// next call starts a new one after the backoff.
func TestStdioUpstreamCrashAndRestart(t *testing.T) {
	f := newStdioFake()
	rt := stdioRuntime(t, f, "")
	cs := connectClient(t, rt, nil)
	callText(t, cs, "loc__echo", map[string]any{"text": "warm"})
	res, text := callText(t, cs, "loc__crash", map[string]any{"text": "x"})
	if !res.IsError || !strings.Contains(text, "exited with code 3") || !strings.Contains(text, "crashing on purpose") {
		t.Fatalf("crashed call: error %v %q", res.IsError, text)
	}
	start := time.Now()
	if res, text = callText(t, cs, "loc__echo", map[string]any{"text": "again"}); res.IsError || text != "echo: again" {
		t.Fatalf("after the crash: %q", text)
	}
	if waited := time.Since(start); waited < restartBase/2 {
		t.Errorf("restarted after %s, before the backoff (%s)", waited, restartBase)
	}
	if got := f.running.Load(); got != 1 {
		t.Errorf("%d servers running, want 1", got)
	}
	recs := auditRecords(t, rt)
	found := false
	for _, r := range recs {
		found = found || (r.Tool == "loc__crash" && r.Decision == "error" && strings.Contains(r.Message, "exited with code 3"))
	}
	if !found {
		t.Errorf("no error record for the crashed call in %d records", len(recs))
	}
}

// A session's server stops after idle_timeout without calls; the next call starts another.
func TestStdioUpstreamIdle(t *testing.T) {
	f := newStdioFake()
	rt := stdioRuntime(t, f, "    idle_timeout: 300ms\n")
	cs := connectClient(t, rt, nil)
	callText(t, cs, "loc__echo", map[string]any{"text": "x"})
	waitFor(t, func() bool { return f.running.Load() == 0 })
	if res, _ := callText(t, cs, "loc__echo", map[string]any{"text": "y"}); res.IsError {
		t.Fatal("call after the idle stop failed")
	}
	if got := f.started.Load(); got != 3 {
		t.Errorf("%d servers started, want 3 (listing, first, after idle)", got)
	}
}

// env values reach the server's environment only; the agent sees them redacted.
func TestStdioUpstreamEnv(t *testing.T) {
	f := newStdioFake()
	t.Setenv("LOC_TOKEN", "loc-s3cret-token-value-1234")
	rt := stdioRuntime(t, f, "    env:\n      API_TOKEN: {from_env: LOC_TOKEN}\n      MODE: {value: fast}\n")
	cs := connectClient(t, rt, nil)
	_, text := callText(t, cs, "loc__env", map[string]any{"text": "API_TOKEN"})
	if strings.Contains(text, "s3cret") || !strings.Contains(text, "REDACTED") {
		t.Errorf("brokered env value not redacted: %q", text)
	}
	_, text = callText(t, cs, "loc__env", map[string]any{"text": "MODE"})
	if text != "MODE=fast" {
		t.Errorf("plain env value: %q", text)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.envs) == 0 || !slices.Contains(f.envs[0], "API_TOKEN=loc-s3cret-token-value-1234") {
		t.Errorf("server environment: %v", f.envs)
	}
}

// An upstream's question (MCP multi round-trip) reaches the client labelled with the upstream's
// name and cleaned, and the client's answer reaches the upstream; each round is a call of its
// own through the pipeline.
func TestStdioUpstreamElicitation(t *testing.T) {
	f := newStdioFake()
	rt := stdioRuntime(t, f, "")
	var asked []string
	var mu sync.Mutex
	ct, st := mcp.NewInMemoryTransports()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rt.ServeTransport(ctx, st)
	c := mcp.NewClient(&mcp.Implementation{Name: "test"}, &mcp.ClientOptions{
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			mu.Lock()
			asked = append(asked, req.Params.Message)
			mu.Unlock()
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"answer": "blue"}}, nil
		}})
	cs, err := c.Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, text := callText(t, cs, "loc__ask", map[string]any{"text": "Favourite colour?"}); text != "accept blue" {
		t.Errorf("answer: %q", text)
	}
	mu.Lock()
	if len(asked) != 1 || asked[0] != "[upstream loc asks] Favourite colour?" {
		t.Errorf("the client was asked %q", asked)
	}
	mu.Unlock()

	asks := 0
	for _, r := range auditRecords(t, rt) {
		if r.Tool == "loc__ask" && r.Decision == "allow" && r.Phase == "" {
			asks++
		}
	}
	if asks != 2 {
		t.Errorf("%d allowed loc__ask records, want 2 (the question, then the retry with the answer)", asks)
	}
}

// Stdio-only settings are checked, with the key named.
func TestStdioUpstreamConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"  u: {url: 'http://127.0.0.1:1/mcp', lifecycle: call}", "lifecycle is for stdio servers"},
		{"  u: {command: [x], lifecycle: forever}", `lifecycle "forever"`},
		{"  u: {command: [x], profile: nope}", `unknown profile "nope"`},
		{"  u: {command: [x], workdir: rel}", "must be an absolute path"},
		{"  u: {command: [x], mounts: [{source: /tmp, target: /opt/mcp, access: rw}]}", "are ro or copy"},
		{"  u: {command: [x], mounts: [{source: /tmp, target: rel}]}", "must be an absolute path"},
		{"  u: {command: [x], env: {'A-B': {value: x}}}", "not an environment variable name"},
		{"  u: {command: [x], idle_timeout: -1s}", "want a positive Go duration"},
	} {
		_, err := ParseConfig(filepath.Join(t.TempDir(), "a.yaml"), []byte("upstreams:\n"+c.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.yaml, err, c.want)
		}
	}
}

// A server's stderr reaches the log bounded: long lines cut, a flood rate-limited and counted,
// secrets replaced; the tail is kept for the exit report.
func TestStderrLog(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	log := zerolog.New(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}))
	s := newStderrLog(log, "u", []string{"hunter2-secret"})
	fmt.Fprintf(s, "token hunter2-secret\n%s\n", strings.Repeat("x", 10*stderrLineMax))
	for i := range 1000 {
		fmt.Fprintf(s, "line %d\n", i)
	}
	fmt.Fprint(s, "unterminated")
	s.Close()
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	lines := strings.Count(out, "\n")
	if strings.Contains(out, "hunter2") || !strings.Contains(out, "[REDACTED]") {
		t.Error("secret not replaced")
	}
	if lines > stderrBurst+20 || lines < stderrBurst {
		t.Errorf("%d lines logged of 1003, want about the burst of %d", lines, stderrBurst)
	}
	if !strings.Contains(out, `"dropped_lines"`) {
		t.Error("dropped lines not counted")
	}
	if strings.Contains(out, strings.Repeat("x", stderrLineMax+1)) {
		t.Error("a long line was not cut")
	}
	if tail := s.Tail(); !strings.HasSuffix(tail, "unterminated\n") || len(tail) > stderrTailMax {
		t.Errorf("tail: %q", tail)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
