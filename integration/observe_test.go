package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// Observability of a real `airlock serve --http` on real runc: /metrics moves as calls are
// made, /healthz and /readyz answer (readyz 503 while runc cannot start or the audit log's
// directory cannot be written, both caused for real), and OTLP traces reach a receiver the
// test runs, parented to the traceparent the client sent, with the same trace id passed on to
// an upstream MCP server the test runs.

const obsPolicy = `{"version":"1","default":"allow","tools":{"run_command":{"deny_if":[{"conditions":[{"path":"args.command","op":"contains","value":"forbidden"}],"on_deny":"No."}]}}}`

const (
	obsTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	obsTrace2 = "0af7651916cd43dd8448eb211c80319c"
	obsSpan   = "00f067aa0ba902b7"
)

// obsGet GETs a path of the server.
func obsGet(t *testing.T, s *mcpServer, path string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + s.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// obsScrape reads /metrics; obsValue sums the series of name whose labels include want
// (counters and gauges by value, histograms by sample count).
func obsScrape(t *testing.T, s *mcpServer) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := obsGet(t, s, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return mfs
}

func obsValue(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	sum := 0.0
next:
	for _, m := range mfs[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// obsReady polls /readyz until it answers code with a body holding want.
func obsReady(t *testing.T, s *mcpServer, code int, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got int
	var body string
	for time.Now().Before(deadline) {
		if got, body = obsGet(t, s, "/readyz"); got == code && strings.Contains(body, want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/readyz: %d %q, want %d with %q", got, body, code, want)
}

func TestObserveServeHTTP(t *testing.T) {
	otlp := testenv.StartOTLP(t)
	up := testenv.StartMetaUpstream(t)
	e := newMCPEnv(t, obsPolicy, nil)
	// The audit log in a directory of its own, which the test makes unwritable.
	e.audit = filepath.Join(filepath.Dir(e.audit), "auditdir", "audit.jsonl")
	// A runc of the test's own, which it makes unusable.
	runc := filepath.Join(t.TempDir(), "runc")
	copyFile(t, e.runc, runc, 0o755)
	e.runc = runc
	e.extraEnv = append(e.extraEnv, "OTEL_EXPORTER_OTLP_ENDPOINT="+otlp.URL, "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_TRACES_SAMPLER=parentbased_always_on")
	upName := uniqueUpstream(t, "obs")
	e.extraYAML = fmt.Sprintf("upstreams:\n  %s:\n    url: %s\n    prefix: up\n", upName, up.URL)
	s := e.startHTTP(t)

	if code, body := obsGet(t, s, "/healthz"); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	// runc cannot be executed: the probe fails, for real, and says so plainly.
	if err := os.Chmod(runc, 0o644); err != nil {
		t.Fatal(err)
	}
	obsReady(t, s, 503, "not ready: the runc backend cannot run a sandbox", 30*time.Second)
	if err := os.Chmod(runc, 0o755); err != nil {
		t.Fatal(err)
	}
	obsReady(t, s, 200, "backend runc: ok: ran `true` in a fresh sandbox", 30*time.Second)

	before := obsScrape(t, s)
	cs := connectHTTP(t, s, "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	call := func(name string, args map[string]any, trace string) *mcp.CallToolResult {
		t.Helper()
		p := &mcp.CallToolParams{Name: name, Arguments: args}
		if trace != "" {
			p.Meta = mcp.Meta{"traceparent": "00-" + trace + "-" + obsSpan + "-01"}
		}
		res, err := cs.CallTool(ctx, p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return res
	}
	if res := call("run_command", map[string]any{"command": "echo traced"}, obsTrace); res.IsError {
		t.Fatalf("run_command: %+v", res.Content)
	}
	if res := call("run_command", map[string]any{"command": "forbidden"}, ""); !res.IsError {
		t.Fatal("the forbidden command was not denied")
	}
	if res := call("up__echo", map[string]any{"text": "hi"}, obsTrace2); res.IsError {
		t.Fatalf("up__echo: %+v", res.Content)
	}

	after := obsScrape(t, s)
	moved := func(name string, labels map[string]string) float64 {
		return obsValue(after, name, labels) - obsValue(before, name, labels)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"airlock_calls_total", map[string]string{"tool": "run_command", "decision": "allow"}, 1},
		{"airlock_calls_total", map[string]string{"tool": "run_command", "decision": "deny"}, 1},
		{"airlock_calls_total", map[string]string{"tool": "up__echo", "decision": "allow"}, 1},
		{"airlock_stage_duration_seconds", map[string]string{"stage": "execute"}, 2},
		{"airlock_stage_duration_seconds", map[string]string{"stage": "policy"}, 3},
		{"airlock_audit_append_duration_seconds", nil, 3},
		{"airlock_sandbox_starts_total", map[string]string{"backend": "runc"}, 1},
	} {
		if got := moved(c.name, c.labels); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if v := obsValue(after, "airlock_mcp_sessions", map[string]string{"transport": "http"}); v != 1 {
		t.Errorf("airlock_mcp_sessions{transport=http} = %v, want 1", v)
	}
	if v := obsValue(after, "airlock_upstream_state", map[string]string{"upstream": upName, "state": "up"}); v != 1 {
		t.Errorf("airlock_upstream_state{upstream=%s,state=up} = %v, want 1", upName, v)
	}

	// Traces: the call's span is the child of the client's, with a child per stage.
	spans := otlp.Wait(t, 20*time.Second, func(spans []testenv.Span) bool {
		n := 0
		for _, sp := range spans {
			if (sp.Name == "tools/call run_command" && sp.TraceID == obsTrace) || (sp.Name == "tools/call up__echo" && sp.TraceID == obsTrace2) {
				n++
			}
		}
		return n == 2
	})
	var runSpan, upSpan testenv.Span
	for _, sp := range spans {
		switch {
		case sp.Name == "tools/call run_command" && sp.TraceID == obsTrace:
			runSpan = sp
		case sp.Name == "tools/call up__echo" && sp.TraceID == obsTrace2:
			upSpan = sp
		}
	}
	if runSpan.Parent != obsSpan || runSpan.Attrs["airlock.container_id"] == "" || runSpan.Attrs["airlock.backend"] != "runc" ||
		runSpan.Attrs["airlock.exit_code"] != "0" || runSpan.Attrs["airlock.decision"] != "allow" {
		t.Errorf("run_command's span: %+v", runSpan)
	}
	spans = otlp.Wait(t, 20*time.Second, func(spans []testenv.Span) bool {
		var stages []string
		for _, sp := range spans {
			if sp.Parent == runSpan.SpanID {
				stages = append(stages, sp.Name)
			}
		}
		return slices.Contains(stages, "execute") && slices.Contains(stages, "audit")
	})
	var stages []string
	for _, sp := range spans {
		if sp.Parent == runSpan.SpanID {
			stages = append(stages, sp.Name)
		}
	}
	for _, want := range []string{"schema", "policy", "sandbox", "execute", "sanitize", "audit"} {
		if !slices.Contains(stages, want) {
			t.Errorf("run_command's stage spans %v lack %s", stages, want)
		}
	}
	metas := up.Received()
	if len(metas) != 1 || metas[0]["traceparent"] != "00-"+obsTrace2+"-"+upSpan.SpanID+"-01" {
		t.Errorf("upstream's _meta: %v, want traceparent 00-%s-%s-01", metas, obsTrace2, upSpan.SpanID)
	}
	auditTraces := map[string]string{}
	for _, r := range readAuditTraceIDs(t, e.audit) {
		auditTraces[r[0]] = r[1]
	}
	if got := auditTraces[runSpan.Attrs["airlock.audit_id"]]; got != obsTrace {
		t.Errorf("run_command's audit record has trace_id %q, want %s", got, obsTrace)
	}

	// The audit log's directory cannot be written, for real: not ready, and the body names
	// neither the path nor the error's own text.
	undo := immutable(t, filepath.Dir(e.audit))
	obsReady(t, s, 503, "not ready: the audit log cannot take records", 15*time.Second)
	_, body := obsGet(t, s, "/readyz")
	if strings.Contains(body, filepath.Dir(e.audit)) {
		t.Errorf("/readyz names the audit directory: %s", body)
	}
	undo()
	obsReady(t, s, 200, "ready\n", 15*time.Second)
	if code, out := e.verifyAudit(t, e.audit); code != 0 {
		t.Errorf("airlock audit verify: %d %s", code, out)
	}
}

// copyFile copies src to dst with mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// readAuditTraceIDs returns [audit_id, trace_id] of every closing record.
func readAuditTraceIDs(t *testing.T, path string) [][2]string {
	t.Helper()
	var out [][2]string
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r struct {
			AuditID string `json:"audit_id"`
			TraceID string `json:"trace_id"`
			Phase   string `json:"phase"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Phase == "" {
			out = append(out, [2]string{r.AuditID, r.TraceID})
		}
	}
	return out
}

// immutable makes dir unwritable, even for root (FS_IMMUTABLE_FL), until the returned func
// (also run when the test ends) clears the flag.
func immutable(t *testing.T, dir string) func() {
	t.Helper()
	set := func(on bool) error { return testenv.SetImmutable(dir, on) }
	if err := set(true); err != nil {
		testenv.Unavailable(t, "cannot set the immutable flag on %s (needs root and a file system with it): %v", dir, err)
	}
	var once sync.Once
	undo := func() {
		once.Do(func() {
			if err := set(false); err != nil {
				t.Errorf("clearing the immutable flag of %s: %v", dir, err)
			}
		})
	}
	t.Cleanup(undo)
	return undo
}

// TestObserveMetricsAuth checks /metrics on a real server with bearer tokens: refused without
// one or with an agent's when a metrics token is configured, served with the metrics token,
// which in turn calls no tool; /healthz and /readyz need nothing.
func TestObserveMetricsAuth(t *testing.T) {
	e := newMCPEnv(t, obsPolicy, nil)
	agent, scraper := "agent-"+strings.Repeat("a", 24), "scraper-"+strings.Repeat("s", 24)
	e.extraYAML = "http:\n  tokens:\n    - {token_env: AIRLOCK_TEST_TOKEN, grant: ci}\nmetrics:\n  token_env: AIRLOCK_TEST_METRICS\n"
	e.extraEnv = []string{"AIRLOCK_TEST_TOKEN=" + agent, "AIRLOCK_TEST_METRICS=" + scraper}
	s := e.startHTTP(t)
	do := func(method, path, token string) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+s.addr+path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", agent, 401},
		{"GET", "/metrics", scraper, 200},
		{"POST", "/mcp", scraper, 401},
	} {
		if got := do(c.method, c.path, c.token); got != c.want {
			t.Errorf("%s %s with token %q: %d, want %d", c.method, c.path, c.token, got, c.want)
		}
	}
}
