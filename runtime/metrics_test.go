package runtime

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/airlock-mcp/airlock/sandbox"
)

// serveHTTPTest serves rt with ServeHTTP on a loopback port until the test ends and returns
// its base URL (http://127.0.0.1:PORT).
func serveHTTPTest(t *testing.T, rt *Runtime) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.ServeHTTP(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeHTTP: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// get GETs url with an optional bearer token and returns the status and body.
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape reads base's /metrics and parses the text format.
func scrape(t *testing.T, base, token string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+MetricsPath, token)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return mfs
}

// sample is the value of the series of name whose labels include want (a counter's or gauge's
// value, a histogram's sample count); -1 when there is none. A label wanted as "" must be
// absent.
func sample(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	mf := mfs[name]
	if mf == nil {
		return -1
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

const metricsPolicy = `{"version":"1","default":"allow","tools":{"run_command":{"deny_if":[{"conditions":[{"path":"args.command","op":"contains","value":"forbidden"}],"on_deny":"No."}]}}}`

// fakeRuns answers run_command by its command: "leak" prints an AWS key, "slow" times out,
// "oom" is OOM-killed, "broken" fails to start; anything else exits 0. Every run that
// starts gets a container id, as a real one would.
func fakeRuns(_ context.Context, s sandbox.Spec) (sandbox.Result, error) {
	cmd := strings.Join(s.Argv, " ")
	res := sandbox.Result{Stdout: []byte("ok\n"), Duration: time.Millisecond, ContainerID: "c-" + fmt.Sprint(len(cmd)), Ran: true}
	switch {
	case strings.Contains(cmd, "leak"):
		res.Stdout = []byte("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7REALKEY\n")
	case strings.Contains(cmd, "slow"):
		res.TimedOut, res.ExitCode = true, sandbox.ExitTimeout
	case strings.Contains(cmd, "oom"):
		res.OOMKilled, res.ExitCode = true, sandbox.ExitKilled
	case strings.Contains(cmd, "broken"):
		return sandbox.Result{}, fmt.Errorf("%w: runc is gone", sandbox.ErrUnavailable)
	}
	return res, nil
}

// TestMetricsCountCalls makes real MCP calls over HTTP and checks that /metrics moves as
// they did: calls by tool and decision (made-up tool names folded into "unknown"), stage
// histograms, sandbox starts, failures, timeouts and OOM kills, redactions by rule, audit
// appends, open sessions and the run gate's budget; and that there is no grant label unless
// the operator asks for one.
func TestMetricsCountCalls(t *testing.T) {
	rt := newTestRuntime(t, "", metricsPolicy, &fakeBackend{respond: fakeRuns})
	base := serveHTTPTest(t, rt)
	cs := connectHTTPClient(t, base)

	calls := []struct {
		tool string
		args map[string]any
	}{
		{"run_command", map[string]any{"command": "echo hi"}},
		{"run_command", map[string]any{"command": "echo leak"}},
		{"run_command", map[string]any{"command": "echo slow"}},
		{"run_command", map[string]any{"command": "echo oom"}},
		{"run_command", map[string]any{"command": "echo broken"}},
		{"run_command", map[string]any{"command": "forbidden"}},
		{"run_command", map[string]any{"command": 5}},
		{"made_up_tool_1", map[string]any{}},
		{"made_up_tool_2", map[string]any{}},
	}
	for _, c := range calls {
		if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: c.tool, Arguments: c.args}); err != nil {
			t.Fatalf("%s: %v", c.tool, err)
		}
	}
	mfs := scrape(t, base, "")
	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"airlock_calls_total", map[string]string{"tool": "run_command", "decision": "allow"}, 4},
		{"airlock_calls_total", map[string]string{"tool": "run_command", "decision": "error"}, 1},
		{"airlock_calls_total", map[string]string{"tool": "run_command", "decision": "deny"}, 1},
		{"airlock_calls_total", map[string]string{"tool": "run_command", "decision": "invalid"}, 1},
		{"airlock_calls_total", map[string]string{"tool": "unknown", "decision": "unknown_tool"}, 2},
		{"airlock_calls_total", map[string]string{"tool": "made_up_tool_1"}, -1},
		{"airlock_stage_duration_seconds", map[string]string{"stage": "schema"}, 7},
		{"airlock_stage_duration_seconds", map[string]string{"stage": "policy"}, 6},
		{"airlock_stage_duration_seconds", map[string]string{"stage": "execute"}, 5},
		{"airlock_stage_duration_seconds", map[string]string{"stage": "sanitize"}, 4},
		{"airlock_stage_duration_seconds", map[string]string{"stage": "audit"}, 9},
		{"airlock_call_duration_seconds", nil, 9},
		{"airlock_audit_append_duration_seconds", nil, 9},
		{"airlock_sandbox_starts_total", map[string]string{"backend": "fake", "start": "cold"}, 4},
		{"airlock_sandbox_failures_total", map[string]string{"backend": "fake"}, 1},
		{"airlock_sandbox_timeouts_total", map[string]string{"backend": "fake"}, 1},
		{"airlock_sandbox_oom_kills_total", map[string]string{"backend": "fake"}, 1},
		{"airlock_redactions_total", map[string]string{"rule": "aws-access-token"}, 1},
		{"airlock_egress_connections_total", map[string]string{"result": "refused"}, 0},
		{"airlock_mcp_sessions", map[string]string{"transport": "http"}, 1},
		{"airlock_mcp_sessions", map[string]string{"transport": "stdio"}, 0},
		{"airlock_run_gate_waiting", nil, 0},
	}
	for _, w := range want {
		if got := sample(mfs, w.name, w.labels); got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
	if v := sample(mfs, "airlock_run_gate_pids_budget", nil); v <= 0 {
		t.Errorf("run gate pids budget %v", v)
	}
	for _, m := range mfs["airlock_calls_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "grant" {
				t.Errorf("grant label present without metrics.grant_label: %v", m)
			}
		}
	}
	// The session ends: the gauge follows.
	cs.Close()
	waitFor(t, func() bool {
		return sample(scrape(t, base, ""), "airlock_mcp_sessions", map[string]string{"transport": "http"}) == 0
	})
}

// connectHTTPClient connects a Go SDK client to base's MCP endpoint and closes it at the end.
func connectHTTPClient(t *testing.T, base string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "metrics-test", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: base + MCPPath, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// TestMetricsGrantLabel checks the grant label appears when the operator turns it on, and
// that its values, like every client-influenced label, are bounded.
func TestMetricsGrantLabel(t *testing.T) {
	rt := newTestRuntime(t, "metrics:\n  grant_label: true\n", metricsPolicy, &fakeBackend{})
	cs := connectClient(t, rt, nil)
	callText(t, cs, "git_status", map[string]any{})
	base := serveHTTPTest(t, rt)
	mfs := scrape(t, base, "")
	if got := sample(mfs, "airlock_calls_total", map[string]string{"tool": "git_status", "decision": "allow", "grant": DefaultGrant}); got != 1 {
		t.Errorf("calls with grant %q: %v", DefaultGrant, got)
	}
	if got := sample(mfs, "airlock_mcp_sessions", map[string]string{"transport": "stdio"}); got != 1 {
		t.Errorf("stdio sessions %v, want 1", got)
	}

	s := newLabelSet(2)
	for i, want := range []string{"a", "b", "other", "a", "other"} {
		if got := s.label([]string{"a", "b", "c", "a", "d"}[i]); got != want {
			t.Errorf("value %d: label %q, want %q", i, got, want)
		}
	}
}

// TestMetricsUpstreamState follows an upstream through airlock_upstream_state: pending until
// first needed, up once its tools are listed, down when it stops answering.
func TestMetricsUpstreamState(t *testing.T) {
	up := newFakeUpstream(t)
	rt := newTestRuntime(t, "builtins: []\nupstreams:\n  up:\n    url: "+up.http.URL+"\n", gatewayPolicy, &fakeBackend{})
	base := serveHTTPTest(t, rt)
	state := func() string {
		mfs := scrape(t, base, "")
		for _, s := range []string{upstreamUp, upstreamDown, upstreamPending} {
			if sample(mfs, "airlock_upstream_state", map[string]string{"upstream": "up", "state": s}) == 1 {
				return s
			}
		}
		return "none"
	}
	if s := state(); s != upstreamPending {
		t.Fatalf("before any need: %s, want pending", s)
	}
	cs := connectClient(t, rt, nil)
	if toolNames(t, cs)["up__echo"] == nil {
		t.Fatal("up__echo not listed")
	}
	if s := state(); s != upstreamUp {
		t.Fatalf("after listing: %s, want up", s)
	}
	callText(t, cs, "up__echo", map[string]any{"text": "hi"})
	if n := sample(scrape(t, base, ""), "airlock_upstream_sessions", map[string]string{"upstream": "up"}); n != 1 {
		t.Errorf("upstream sessions %v, want 1", n)
	}
	up.http.CloseClientConnections()
	up.http.Close()
	callText(t, cs, "up__echo", map[string]any{"text": "hi"}) // fails: the next list connects again
	toolNames(t, cs)
	if s := state(); s != upstreamDown {
		t.Fatalf("after the upstream went away: %s, want down", s)
	}
}
