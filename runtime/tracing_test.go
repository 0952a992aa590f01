package runtime

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/pipeline"
)

const (
	clientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpan   = "00f067aa0ba902b7"
	clientTrace2 = "0af7651916cd43dd8448eb211c80319c"
)

func traceparent(trace, span string) string { return "00-" + trace + "-" + span + "-01" }

// TestTracing exports real OTLP to a receiver the test runs on 127.0.0.1 and checks: one span
// per call, a child of the span the client named in _meta.traceparent, with the record's
// identifiers as attributes and a child span per stage within it; the upstream receives the
// call's trace context in the _meta of Airlock's own tools/call; the audit record carries
// the trace id; a made-up tool name does not become a span name.
func TestTracing(t *testing.T) {
	otlp := testenv.StartOTLP(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_SERVICE_NAME", "airlock-under-test")
	up := testenv.StartMetaUpstream(t)
	rt := newTestRuntime(t, "upstreams:\n  up:\n    url: "+up.URL+"\n", `{"version":"1","default":"allow"}`, &fakeBackend{})
	cs := connectClient(t, rt, nil)
	call := func(name string, args map[string]any, meta mcp.Meta) {
		t.Helper()
		if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Meta: meta, Name: name, Arguments: args}); err != nil {
			t.Fatal(err)
		}
	}
	call("up__echo", map[string]any{"text": "hi"}, mcp.Meta{"traceparent": traceparent(clientTrace, clientSpan), "tracestate": "vendor=x"})
	call("git_status", map[string]any{}, mcp.Meta{"traceparent": traceparent(clientTrace2, clientSpan)})
	call("made_up_tool", map[string]any{}, nil)

	byName := func(spans []testenv.Span, name, trace string) *testenv.Span {
		for i := range spans {
			if spans[i].Name == name && (trace == "" || spans[i].TraceID == trace) {
				return &spans[i]
			}
		}
		return nil
	}
	childrenOf := func(spans []testenv.Span, parent *testenv.Span) []testenv.Span {
		var out []testenv.Span
		for _, s := range spans {
			if s.Parent == parent.SpanID {
				out = append(out, s)
			}
		}
		return out
	}
	spans := otlp.Wait(t, 15*time.Second, func(spans []testenv.Span) bool {
		for _, want := range []struct{ name, trace string }{{"tools/call up__echo", clientTrace}, {"tools/call git_status", clientTrace2}, {"tools/call unknown", ""}} {
			s := byName(spans, want.name, want.trace)
			if s == nil || len(childrenOf(spans, s)) == 0 || byName(childrenOf(spans, s), "audit", "") == nil {
				return false
			}
		}
		return true
	})

	remote := byName(spans, "tools/call up__echo", clientTrace)
	if remote.Parent != clientSpan || remote.Service != "airlock-under-test" {
		t.Errorf("call span parent %q service %q, want the client's span %q and OTEL_SERVICE_NAME", remote.Parent, remote.Service, clientSpan)
	}
	for k, v := range map[string]string{"airlock.tool": "up__echo", "airlock.decision": "allow", "airlock.grant": DefaultGrant,
		"airlock.backend": "upstream", "airlock.upstream": "up", "airlock.exit_code": "0", "mcp.method.name": "tools/call", "airlock.rule": "/default"} {
		if remote.Attrs[k] != v {
			t.Errorf("call span attribute %s = %q, want %q (all: %v)", k, remote.Attrs[k], v, remote.Attrs)
		}
	}
	var names []string
	for _, c := range childrenOf(spans, remote) {
		names = append(names, c.Name)
		if c.TraceID != clientTrace || c.Start.Before(remote.Start) || c.End.After(remote.End) {
			t.Errorf("stage span %s (trace %s, %v-%v) not within its call (%v-%v)", c.Name, c.TraceID, c.Start, c.End, remote.Start, remote.End)
		}
	}
	for _, want := range []string{"schema", "policy", "execute", "sanitize", "audit"} {
		if !slices.Contains(names, want) {
			t.Errorf("stage spans %v lack %s", names, want)
		}
	}

	// The upstream saw the call's trace context, Airlock's span as the parent.
	metas := up.Received()
	if len(metas) != 1 {
		t.Fatalf("upstream got %d calls, want 1", len(metas))
	}
	if got, want := metas[0]["traceparent"], traceparent(clientTrace, remote.SpanID); got != want {
		t.Errorf("upstream _meta.traceparent %v, want %s", got, want)
	}
	if metas[0]["tracestate"] != "vendor=x" {
		t.Errorf("upstream _meta.tracestate %v, want the client's", metas[0]["tracestate"])
	}

	builtin := byName(spans, "tools/call git_status", clientTrace2)
	if builtin.Attrs["airlock.backend"] != "fake" || builtin.Attrs["airlock.audit_id"] == "" {
		t.Errorf("built-in call span attributes %v", builtin.Attrs)
	}
	unknown := byName(spans, "tools/call unknown", "")
	if unknown.Attrs["airlock.tool"] != "made_up_tool" || unknown.Attrs["airlock.decision"] != "unknown_tool" || unknown.Parent != "" {
		t.Errorf("unknown tool's span: %+v", unknown)
	}

	traceIDs := map[string]string{} // audit_id -> trace_id
	readRecords(t, rt.Config().Audit.Path, func(r pipeline.Record) { traceIDs[r.AuditID] = r.TraceID })
	for _, s := range []*testenv.Span{remote, builtin, unknown} {
		if got := traceIDs[s.Attrs["airlock.audit_id"]]; got != s.TraceID {
			t.Errorf("audit record %s has trace_id %q, want %s", s.Attrs["airlock.audit_id"], got, s.TraceID)
		}
	}
}

// TestTracingOff checks that without an OTLP endpoint there is no tracer, the client's trace
// context goes nowhere (not to the upstream, not to the record) and no span is started.
func TestTracingOff(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	up := testenv.StartMetaUpstream(t)
	rt := newTestRuntime(t, "upstreams:\n  up:\n    url: "+up.URL+"\n", `{"version":"1","default":"allow"}`, &fakeBackend{})
	if rt.tel.t != nil {
		t.Fatal("a tracer without an endpoint")
	}
	cs := connectClient(t, rt, nil)
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Meta: mcp.Meta{"traceparent": traceparent(clientTrace, clientSpan)},
		Name: "up__echo", Arguments: map[string]any{"text": "hi"}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range up.Received() {
		if _, ok := m["traceparent"]; ok {
			t.Errorf("upstream got a traceparent with tracing off: %v", m)
		}
	}
	readRecords(t, rt.Config().Audit.Path, func(r pipeline.Record) {
		if r.TraceID != "" {
			t.Errorf("record %s has trace_id %q with tracing off", r.AuditID, r.TraceID)
		}
	})
}

// TestTracingEnv checks how the OTEL_* variables turn tracing on, and that a setting Airlock
// cannot honour is an error at start rather than traces silently lost.
func TestTracingEnv(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		on      bool
		wantErr string
	}{
		{"nothing set", nil, false, ""},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true, ""},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true, ""},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, true, ""},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, false, ""},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, false, ""},
		{"exporter zipkin", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "zipkin"}, false, "otlp (or none)"},
		{"http/json", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, false, "http/protobuf"},
		{"bad sampler", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER": "sometimes"}, false, "OTEL_TRACES_SAMPLER"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, err := newTracing(context.Background(), func(k string) string { return c.env[k] })
			switch {
			case c.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, c.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case (tr != nil) != c.on:
				t.Fatalf("tracing on: %v, want %v", tr != nil, c.on)
			}
			if tr != nil {
				_ = tr.shutdown(context.Background())
			}
		})
	}
}

// readRecords calls fn with every closing record of the audit log at path.
func readRecords(t *testing.T, path string, fn func(pipeline.Record)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = pipeline.ReadRecords(f, func(_ []byte, r pipeline.Record) error {
		if r.Phase == "" {
			fn(r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
