package runtime

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/pipeline"
)

// What observing a call costs: the same call (fake backend, audit log fsynced) with tracing
// off and on (every call sampled, spans exported to a receiver on 127.0.0.1), and the metrics'
// share alone. Run: go test -run '^$' -bench 'Telemetry' -benchtime 2000x ./runtime/

func benchCall(b *testing.B, rt *Runtime) {
	call := pipeline.Call{Tool: "git_status", Args: json.RawMessage(`{}`), Grant: rt.Grant(), Session: "bench"}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if res := rt.Run(context.Background(), call); res.Denied || res.IsError {
			b.Fatal(res.Text)
		}
	}
}

func BenchmarkTelemetryTracingOff(b *testing.B) {
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	benchCall(b, newTestRuntimeTB(b, "", `{"version":"1","default":"allow"}`, &fakeBackend{}))
}

func BenchmarkTelemetryTracingOn(b *testing.B) {
	otlp := testenv.StartOTLP(b)
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.URL)
	b.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	benchCall(b, newTestRuntimeTB(b, "", `{"version":"1","default":"allow"}`, &fakeBackend{}))
}

// BenchmarkTelemetryMetricsObserve is the metrics' work for one allowed call that ran.
func BenchmarkTelemetryMetricsObserve(b *testing.B) {
	m := newMetrics(false)
	m.known = func(string) bool { return true }
	now := time.Now()
	code := 0
	rep := &pipeline.CallReport{Record: &pipeline.Record{Tool: "git_status", Decision: "allow", ExitCode: &code, Redactions: map[string]int{}},
		Start: now, End: now.Add(5 * time.Millisecond)}
	for i, s := range []string{"schema", "policy", "sandbox", "execute", "sanitize", "sanitize", "audit"} {
		rep.Stages = append(rep.Stages, pipeline.StageSpan{Name: s, Start: now.Add(time.Duration(i) * time.Millisecond), End: now.Add(time.Duration(i+1) * time.Millisecond)})
	}
	b.ReportAllocs()
	for b.Loop() {
		m.observe(rep)
	}
}

// discardExporter takes spans and drops them.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkTelemetryTraceObserve is the tracer's work for one call (its span, seven stage
// spans, attributes) with a batching exporter that drops them: what tracing adds to a call's
// CPU time, without the audit log's fsync that dominates BenchmarkTelemetryTracingOn.
func BenchmarkTelemetryTraceObserve(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
	defer tp.Shutdown(context.Background())
	tel := &telemetry{m: newMetrics(false), t: &tracing{tp: tp, tracer: tp.Tracer("bench")}}
	tel.m.known = func(string) bool { return true }
	now := time.Now()
	code := 0
	rep := &pipeline.CallReport{Record: &pipeline.Record{Tool: "git_status", Grant: "local", Decision: "allow", Rule: "/default",
		AuditID: "0197a0c4-0000-7000-8000-000000000000", Backend: "runc", ContainerID: "airlock-x", ExitCode: &code, Redactions: map[string]int{}},
		Start: now, End: now.Add(5 * time.Millisecond)}
	for i, s := range []string{"schema", "policy", "sandbox", "execute", "sanitize", "sanitize", "audit"} {
		rep.Stages = append(rep.Stages, pipeline.StageSpan{Name: s, Start: now.Add(time.Duration(i) * time.Millisecond), End: now.Add(time.Duration(i+1) * time.Millisecond)})
	}
	b.ReportAllocs()
	for b.Loop() {
		ctx, _, end := tel.beginCall(context.Background(), "git_status")
		tel.Observe(ctx, rep)
		end()
	}
}
