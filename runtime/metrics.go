package runtime

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/sandbox"
)

// Prometheus metrics (docs/observe.md). Each Runtime has a registry of its own: nothing is
// registered in client_golang's global default registry, so two runtimes in one process (the
// tests, a reload) never share or collide on a series.
//
// Every label has a bounded set of values, whatever clients send: a label value is a time
// series held in memory for the life of the process, so a client able to choose label values
// (an unknown tool's name, a JWT subject) could otherwise grow the server without bound.

// MetricsConfig configures the metrics endpoint and labels.
type MetricsConfig struct {
	// GrantLabel adds a grant label to airlock_calls_total. Off by default: grants of the
	// state store and JWT subjects are not bounded by the config (at most maxGrantLabels
	// distinct values are kept; later ones are counted as "other").
	GrantLabel bool `yaml:"grant_label"`
	// TokenEnv or TokenFile holds a bearer token that reads /metrics and nothing else; with
	// it, /metrics accepts only that token (agents' tokens are refused there).
	TokenEnv  string `yaml:"token_env"`
	TokenFile string `yaml:"token_file"`
}

// Label bounds: the most distinct values a label keeps before counting the rest as "other".
const (
	maxToolLabels  = 1024 // configured tools plus upstream tools (upstream.MaxTools each)
	maxGrantLabels = 256
	maxRuleLabels  = 512 // redaction rules: gitleaks' rule set and Airlock's own
	labelOther     = "other"
	labelUnknown   = "unknown"
)

// latencyBuckets span 0.1 ms (a policy decision) to 60 s (a long test run), in seconds.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// metrics holds one Runtime's collectors.
type metrics struct {
	reg *prometheus.Registry

	calls       *prometheus.CounterVec // tool, decision[, grant]
	stages      *prometheus.HistogramVec
	duration    prometheus.Histogram
	starts      *prometheus.CounterVec // backend, start
	failures    *prometheus.CounterVec // backend
	ooms        *prometheus.CounterVec // backend
	timeouts    *prometheus.CounterVec // backend
	redactions  *prometheus.CounterVec // rule
	egress      *prometheus.CounterVec // result
	auditAppend prometheus.Histogram
	auditErrors prometheus.Counter

	grantLabel          bool
	tools, grants, rule *labelSet
	// known reports whether a tool name is one this runtime serves (configured, built-in or
	// an upstream's): only those get a label of their own.
	known func(string) bool

	stdio atomic.Int64 // MCP sessions over stdio (and the daemon socket) open now
	mu    sync.Mutex
	http  map[*sessionTable]struct{} // HTTP fronts serving now
	state *stateCollector
	// handler serves reg at /metrics.
	handler http.Handler
}

// newMetrics builds the collectors; bind ties them to the runtime once it is built.
func newMetrics(grantLabel bool) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), grantLabel: grantLabel,
		tools: newLabelSet(maxToolLabels), grants: newLabelSet(maxGrantLabels), rule: newLabelSet(maxRuleLabels),
		http: map[*sessionTable]struct{}{}, known: func(string) bool { return false }}
	m.state = &stateCollector{m: m}
	callLabels := []string{"tool", "decision"}
	if grantLabel {
		callLabels = append(callLabels, "grant")
	}
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "airlock_calls_total",
		Help: "Tool calls by tool and decision (allow, deny, approve, invalid, unknown_tool, error), each counted once it is recorded."}, callLabels)
	m.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "airlock_stage_duration_seconds",
		Help: "Time a call spent in each pipeline stage (schema, policy, approval, sandbox, execute, sanitize, audit).", Buckets: latencyBuckets}, []string{"stage"})
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "airlock_call_duration_seconds",
		Help: "Time from a call's arrival to its audit record, all stages.", Buckets: latencyBuckets})
	m.starts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "airlock_sandbox_starts_total",
		Help: "Sandboxes that ran a command, by backend and start: warm (kept ready by the pool) or cold."}, []string{"backend", "start"})
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "airlock_sandbox_failures_total",
		Help: "Sandbox runs that failed (not cancellations), by backend."}, []string{"backend"})
	m.ooms = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "airlock_sandbox_oom_kills_total",
		Help: "Sandbox runs in which the OOM killer ended a process, by backend."}, []string{"backend"})
	m.timeouts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "airlock_sandbox_timeouts_total",
		Help: "Sandbox runs killed at their time limit, by backend."}, []string{"backend"})
	m.redactions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "airlock_redactions_total",
		Help: "Secrets removed from tool output, by redaction rule."}, []string{"rule"})
	m.egress = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "airlock_egress_connections_total",
		Help: "Connections through sandboxes' egress proxies, by result: allowed or refused."}, []string{"result"})
	m.auditAppend = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "airlock_audit_append_duration_seconds",
		Help: "Time to append and fsync a call's closing audit record.", Buckets: latencyBuckets})
	m.auditErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "airlock_audit_errors_total",
		Help: "Closing audit records that could not be written."})
	m.reg.MustRegister(m.calls, m.stages, m.duration, m.starts, m.failures, m.ooms, m.timeouts, m.redactions,
		m.egress, m.auditAppend, m.auditErrors, m.state,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The result values exist from the start, so a rate over them is defined before the first
	// connection.
	m.egress.WithLabelValues("allowed")
	m.egress.WithLabelValues("refused")
	m.handler = metricsHandler(m)
	return m
}

// bind ties the metrics to r, before r serves anything: the tools it serves, and the state
// the gauges read.
func (m *metrics) bind(r *Runtime) {
	m.known = func(name string) bool {
		_, own := r.byName[name]
		return own || r.gw.known(name)
	}
	m.state.r = r
}

// observe counts one finished call.
func (m *metrics) observe(rep *pipeline.CallReport) {
	rec := rep.Record
	labels := []string{m.toolLabel(rec.Tool), decisionLabel(rec.Decision)}
	if m.grantLabel {
		labels = append(labels, m.grants.label(rec.Grant))
	}
	m.calls.WithLabelValues(labels...).Inc()
	var per [len(stageNames)]time.Duration
	seen := 0
	for _, s := range rep.Stages {
		if i := stageIndex(s.Name); i >= 0 {
			per[i] += s.End.Sub(s.Start)
			seen |= 1 << i
		}
		if s.Name == pipeline.StageAudit && rep.AuditErr == nil {
			m.auditAppend.Observe(s.End.Sub(s.Start).Seconds())
		}
	}
	for i, name := range stageNames {
		if seen&(1<<i) != 0 {
			m.stages.WithLabelValues(name).Observe(per[i].Seconds())
		}
	}
	if !rep.End.IsZero() {
		m.duration.Observe(rep.End.Sub(rep.Start).Seconds())
	}
	if rep.AuditErr != nil {
		m.auditErrors.Inc()
	}
	for rule, n := range rec.Redactions {
		if n > 0 {
			m.redactions.WithLabelValues(m.rule.label(rule)).Add(float64(n))
		}
	}
}

// toolLabel is the tool's name if this runtime serves it, else "unknown": an agent probing
// made-up names must not mint a series per name.
func (m *metrics) toolLabel(name string) string {
	if !m.known(name) {
		return labelUnknown
	}
	return m.tools.label(name)
}

var stageNames = [...]string{pipeline.StageSchema, pipeline.StagePolicy, pipeline.StageApproval,
	pipeline.StageSandbox, pipeline.StageExecute, pipeline.StageSanitize, pipeline.StageAudit}

func stageIndex(name string) int {
	for i, s := range stageNames {
		if s == name {
			return i
		}
	}
	return -1
}

// decisionLabel keeps the audit record's decisions; anything else is "other".
func decisionLabel(d string) string {
	switch d {
	case "allow", "deny", "approve", pipeline.DecisionInvalid, pipeline.DecisionUnknownTool, pipeline.DecisionError:
		return d
	}
	return labelOther
}

// labelSet admits the first max distinct values of a label; later ones are "other".
type labelSet struct {
	max  int
	mu   sync.Mutex
	seen map[string]struct{}
}

func newLabelSet(max int) *labelSet { return &labelSet{max: max, seen: map[string]struct{}{}} }

func (s *labelSet) label(v string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[v]; ok {
		return v
	}
	if len(s.seen) >= s.max {
		return labelOther
	}
	s.seen[v] = struct{}{}
	return v
}

// egressEvent counts one connection of an egress proxy.
func (m *metrics) egressEvent(allowed bool) {
	if allowed {
		m.egress.WithLabelValues("allowed").Inc()
	} else {
		m.egress.WithLabelValues("refused").Inc()
	}
}

// stdioSession counts an MCP session over stdio while it lasts; the returned func ends it.
func (m *metrics) stdioSession() func() {
	m.stdio.Add(1)
	var once sync.Once
	return func() { once.Do(func() { m.stdio.Add(-1) }) }
}

// httpSessions counts the sessions of t while its front serves; the returned func stops.
func (m *metrics) httpSessions(t *sessionTable) func() {
	m.mu.Lock()
	m.http[t] = struct{}{}
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.http, t)
		m.mu.Unlock()
	}
}

// observedBackend counts what each sandbox run did. It sits inside the run gate, so a run
// that never got a slot (cancelled while waiting) is not counted as a sandbox failure.
type observedBackend struct {
	sandbox.Backend
	m *metrics
}

func (b observedBackend) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	res, err := b.Backend.Run(ctx, spec)
	name := b.Name()
	if res.Ran || res.ContainerID != "" {
		start := "cold"
		if res.Ready {
			start = "warm"
		}
		b.m.starts.WithLabelValues(name, start).Inc()
	}
	if err != nil && ctx.Err() == nil {
		b.m.failures.WithLabelValues(name).Inc()
	}
	if res.OOMKilled {
		b.m.ooms.WithLabelValues(name).Inc()
	}
	if res.TimedOut {
		b.m.timeouts.WithLabelValues(name).Inc()
	}
	return res, err
}
