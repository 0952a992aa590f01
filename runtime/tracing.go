package runtime

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/airlock-mcp/airlock/pipeline"
)

// OpenTelemetry traces (docs/observe.md): one span per tools/call with a child per pipeline
// stage, exported over OTLP to the collector the standard OTEL_* variables name. Without an
// endpoint there is no exporter and no tracer: calls pay nothing, and Airlock neither reads
// nor forwards the trace context clients send.

// tracing is one Runtime's tracer provider; nil when tracing is off.
type tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	// prop is W3C trace context only: baggage, which a client could fill with anything, is
	// neither read nor passed on to upstreams.
	prop propagation.TraceContext
}

// tracingEnabled reports whether the environment asks for traces: an OTLP endpoint is set,
// the SDK is not disabled and the traces exporter is otlp (the default).
func tracingEnabled(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "", "otlp":
	case "none":
		return false, nil
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: Airlock exports traces with otlp (or none)", exp)
	}
	return getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "", nil
}

// newTracing builds the tracer provider the environment asks for, or nil. The exporters read
// the OTEL_EXPORTER_OTLP_* variables themselves (endpoint, headers, timeout, certificates,
// compression); the SDK reads OTEL_TRACES_SAMPLER, OTEL_BSP_* and OTEL_RESOURCE_ATTRIBUTES.
// Nothing connects yet: an unreachable collector costs dropped spans, never a failed call.
func newTracing(ctx context.Context, getenv func(string) string) (*tracing, error) {
	on, err := tracingEnabled(getenv)
	if err != nil || !on {
		return nil, err
	}
	if s := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER"))); s != "" {
		switch s {
		case "always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio":
		default:
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or parentbased_* (default parentbased_always_on)", s)
		}
	}
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdktrace.SpanExporter
	switch proto {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want http/protobuf (the default) or grpc", proto)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	// service.name is airlock unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say
	// otherwise (detectors applied later win).
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "airlock"), attribute.String("service.version", Version)),
		resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil && res == nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &tracing{tp: tp, tracer: tp.Tracer("github.com/airlock-mcp/airlock/runtime")}, nil
}

// shutdown flushes the spans still queued and stops the exporter, within ctx.
func (t *tracing) shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// W3C trace context keys, in MCP's params._meta as in HTTP headers.
const (
	metaTraceparent = "traceparent"
	metaTracestate  = "tracestate"
	// maxTracestate is the longest tracestate taken from a client: the W3C limit a vendor
	// must propagate. Longer is not parsed at all, so a client cannot make Airlock carry an
	// arbitrary blob to its collector and its upstreams.
	maxTracestate = 512
)

// extract returns ctx carrying the trace context a client sent in a request's _meta, if it
// sent a valid one: Airlock's span then continues the client's trace. Only the two W3C keys
// are read, as strings; the propagator validates their syntax (a malformed traceparent is
// ignored and the call starts a trace of its own).
func (t *tracing) extract(ctx context.Context, meta mcp.Meta) context.Context {
	tp, _ := meta[metaTraceparent].(string)
	if tp == "" || len(tp) > 128 {
		return ctx
	}
	carrier := propagation.MapCarrier{metaTraceparent: tp}
	if ts, _ := meta[metaTracestate].(string); ts != "" && len(ts) <= maxTracestate {
		carrier[metaTracestate] = ts
	}
	return t.prop.Extract(ctx, carrier)
}

// inject returns the _meta entries that carry ctx's span to an upstream (nil when ctx has no
// valid span).
func (t *tracing) inject(ctx context.Context) map[string]string {
	if t == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	carrier := propagation.MapCarrier{}
	t.prop.Inject(ctx, carrier)
	return carrier
}

// middleware takes the client's trace context from each tools/call's params._meta.
func (t *tracing) middleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if ctr, ok := req.(*mcp.CallToolRequest); ok && method == "tools/call" && ctr.Params != nil {
			ctx = t.extract(ctx, ctr.Params.Meta)
		}
		return next(ctx, method, req)
	}
}

// startCall starts the span of one call, a child of the client's span when ctx carries one.
// name is bounded (see metrics.toolLabel): span names are grouped on by tracing backends.
func (t *tracing) startCall(ctx context.Context, name string) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, "tools/call "+name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("mcp.method.name", "tools/call")))
}

// observe completes the call's span with what the call did and adds a child span per stage,
// with the stages' own start and end times.
//
// The span carries the record's identifiers and outcome, never its message or error text:
// those can quote arguments, upstream replies and host paths, and a trace collector is
// usually readable by more people than the audit log. The audit_id leads to the rest.
func (t *tracing) observe(ctx context.Context, rep *pipeline.CallReport) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	rec := rep.Record
	attrs := []attribute.KeyValue{
		attribute.String("airlock.tool", rec.Tool),
		attribute.String("airlock.grant", rec.Grant),
		attribute.String("airlock.decision", rec.Decision),
		attribute.String("airlock.audit_id", rec.AuditID),
	}
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	add("airlock.rule", rec.Rule)
	add("airlock.backend", rec.Backend)
	add("airlock.container_id", rec.ContainerID)
	add("airlock.upstream", rec.Upstream)
	if rec.ExitCode != nil {
		attrs = append(attrs, attribute.Int("airlock.exit_code", *rec.ExitCode))
	}
	if rec.TimedOut {
		attrs = append(attrs, attribute.Bool("airlock.timed_out", true))
	}
	if rec.OOMKilled {
		attrs = append(attrs, attribute.Bool("airlock.oom_killed", true))
	}
	if rec.Cancelled {
		attrs = append(attrs, attribute.Bool("airlock.cancelled", true))
	}
	span.SetAttributes(attrs...)
	switch {
	case rep.AuditErr != nil || rep.Unrecorded:
		span.SetStatus(codes.Error, "the call's audit record could not be written")
	case rec.Decision == pipeline.DecisionError:
		span.SetStatus(codes.Error, "the call failed; see its audit record")
	}
	for _, s := range rep.Stages {
		_, child := t.tracer.Start(ctx, s.Name, trace.WithTimestamp(s.Start),
			trace.WithAttributes(attribute.String("airlock.stage", s.Name)))
		child.End(trace.WithTimestamp(s.End))
	}
}

// telemetry is what a Runtime observes calls with: its metrics always, its tracer when
// tracing is on. It is the pipeline's Observer.
type telemetry struct {
	m   *metrics
	t   *tracing // nil: tracing off
	log zerolog.Logger
}

func (o *telemetry) Observe(ctx context.Context, rep *pipeline.CallReport) {
	o.m.observe(rep)
	if o.t != nil {
		o.t.observe(ctx, rep)
	}
}

// beginCall starts a call's span when tracing is on. It returns the context to run the call
// in, the trace id for the audit record ("" without tracing) and the func that ends the span.
func (o *telemetry) beginCall(ctx context.Context, tool string) (context.Context, string, func()) {
	if o.t == nil {
		return ctx, "", func() {}
	}
	ctx, span := o.t.startCall(ctx, o.m.toolLabel(tool))
	id := ""
	if sc := span.SpanContext(); sc.IsValid() {
		id = sc.TraceID().String()
	}
	return ctx, id, func() { span.End() }
}

// callMeta is the upstream gateway's hook (upstream.Options.CallMeta).
func (o *telemetry) callMeta(ctx context.Context) map[string]string { return o.t.inject(ctx) }

// close flushes the spans still queued, waiting at most traceFlushWait. Spans that cannot
// be delivered are logged, not returned: a lost span is not a lost audit record, and must
// not turn a clean shutdown into a failed one.
func (o *telemetry) close() {
	ctx, cancel := context.WithTimeout(context.Background(), traceFlushWait)
	defer cancel()
	if err := o.t.shutdown(ctx); err != nil {
		o.log.Warn().Err(err).Str("event", "trace.flush_failed").Msg("spans still queued at shutdown were not all exported")
	}
}

// traceFlushWait bounds how long Close waits for the collector to take the last spans.
const traceFlushWait = 5 * time.Second

// newTelemetry builds a Runtime's metrics and, when the environment asks, its tracer.
func newTelemetry(ctx context.Context, cfg *Config, log zerolog.Logger) (*telemetry, error) {
	t, err := newTracing(ctx, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	return &telemetry{m: newMetrics(cfg.Metrics.GrantLabel), t: t, log: log}, nil
}
