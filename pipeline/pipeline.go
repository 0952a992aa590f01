// Package pipeline runs one tool call through Airlock's seven stages: propose, schema parse,
// static policy, sandbox instantiation, execution, result sanitisation and trace logging.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/sandbox"
)

// Config wires a Pipeline.
type Config struct {
	Tools  []Tool
	Policy *policies.Engine
	// Stop is the operator's kill switch, asked at stage 3 before the policy; nil means none.
	Stop        Stopper
	Backend     sandbox.Backend
	AuditPath   string // append-only, hash-chained JSON lines
	AuditRotate RotateConfig
	Workspace   string // host path of the workspace, scrubbed from results as /workspace
	MaxArgBytes int    // 0 means 1 MiB
	RecordArgs  bool   // store argument values in the audit record
	Logger      zerolog.Logger

	// MaxOutputBytes caps each sanitised output stream (stdout, stderr); 0 means 256 KiB.
	MaxOutputBytes int
	// ScrubPaths are host directories besides the workspace replaced by [host-path] in
	// results (e.g. the state directory). nil means DefaultHostPaths().
	ScrubPaths []string
	// ProgressInterval is how often Call.Progress is called while a tool runs; 0 means 1 s.
	ProgressInterval time.Duration
	// Now is the clock for audit timestamps and stage timings; nil means time.Now.
	Now func() time.Time
	// Observer, when set, is told of every call once it is recorded (metrics, traces).
	Observer Observer
}

// Pipeline is safe for concurrent use. Each stage is a small value with one job (stages.go);
// Run composes them.
type Pipeline struct {
	tools map[string]*toolEntry
	order []string

	parse       parseStage       // 2
	policy      policyStage      // 3
	instantiate instantiateStage // 4
	execute     executeStage     // 5
	sanitize    sanitizeStage    // 6
	trace       traceStage       // 7

	log zerolog.Logger
	now func() time.Time
	obs Observer
}

type toolEntry struct {
	tool   Tool
	schema *jsonschema.Schema
}

// New validates cfg, compiles every tool's schema once, loads the secret-redaction rules and
// opens the audit log (recovering its chain head).
func New(cfg Config) (*Pipeline, error) {
	if cfg.Policy == nil {
		return nil, errors.New("pipeline: no policy engine; Airlock refuses to run tools without a policy")
	}
	if cfg.Backend == nil {
		return nil, errors.New("pipeline: no sandbox backend; Airlock never runs tools outside a sandbox")
	}
	p := &Pipeline{
		tools:   map[string]*toolEntry{},
		parse:   parseStage{maxBytes: cfg.MaxArgBytes, recordArgs: cfg.RecordArgs},
		policy:  policyStage{engine: &atomic.Pointer[policies.Engine]{}, stop: cfg.Stop},
		execute: executeStage{backend: cfg.Backend, interval: cfg.ProgressInterval},
		log:     cfg.Logger,
		now:     cfg.Now,
		obs:     cfg.Observer,
	}
	p.policy.engine.Store(cfg.Policy)
	if p.now == nil {
		p.now = time.Now
	}
	if p.parse.maxBytes <= 0 {
		p.parse.maxBytes = DefaultMaxArgBytes
	}
	if p.execute.interval <= 0 {
		p.execute.interval = time.Second
	}
	for _, t := range cfg.Tools {
		name := t.Name()
		if name == "" {
			return nil, errors.New("pipeline: a tool has an empty name")
		}
		if _, dup := p.tools[name]; dup {
			return nil, fmt.Errorf("pipeline: tool %q is defined twice", name)
		}
		sch, err := compileSchema(name, t.InputSchema())
		if err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
		p.tools[name] = &toolEntry{tool: t, schema: sch}
		p.order = append(p.order, name)
	}
	red, err := NewRedactor()
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	scrub := cfg.ScrubPaths
	if scrub == nil {
		scrub = DefaultHostPaths()
	}
	p.sanitize = sanitizeStage{NewSanitizer(red, cfg.Workspace, scrub, cfg.MaxOutputBytes)}
	log, rec, err := OpenAudit(cfg.AuditPath, WithRotation(cfg.AuditRotate), WithClock(p.now))
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	log.OnRotate(func(r Rotation) { logRotation(p.log, r) })
	if rec.TornBytes > 0 {
		p.log.Warn().Str("event", "audit.recovered").Str("path", cfg.AuditPath).Int64("torn_bytes", rec.TornBytes).
			Str("saved_to", rec.TornPath).Str("last_id", rec.LastID).
			Msg("audit log ended in an incomplete record (a crash mid-write); moved it aside and continued the chain")
	}
	// Another Airlock process sharing the log may crash mid-record, or an operator may move the
	// log aside; the writer recovers under its lock, and the operator must hear about it.
	log.OnRecover(func(r Recovery) {
		p.log.Warn().Str("event", "audit.recovered").Str("path", cfg.AuditPath).Int64("torn_bytes", r.TornBytes).
			Str("saved_to", r.TornPath).Bool("reopened", r.Reopened).Str("last_id", r.LastID).
			Msg("audit log: another process's incomplete record was moved aside, or the log file was replaced; continued the chain")
	})
	p.trace = traceStage{audit: log, log: cfg.Logger, now: p.now}
	p.instantiate = instantiateStage{auditPath: log.Path()}
	return p, nil
}

// SetPolicy replaces the policy engine: calls that reach stage 3 afterwards are decided by e,
// calls already past it keep the verdict they had. A nil engine is refused (it would deny
// everything silently; an operator who wants that writes a policy saying so).
func (p *Pipeline) SetPolicy(e *policies.Engine) error {
	if e == nil || e.Policy() == nil {
		return errors.New("pipeline: no policy engine; keeping the current policy")
	}
	p.policy.engine.Store(e)
	return nil
}

// Policy is the engine deciding calls now.
func (p *Pipeline) Policy() *policies.Engine { return p.policy.engine.Load() }

// Close flushes and closes the audit log.
func (p *Pipeline) Close() error { return p.trace.audit.Close() }

// Tools lists the tools the caller may see (policy-visible), in a stable order.
func (p *Pipeline) Tools(g policies.Grant) []Tool {
	var out []Tool
	for _, name := range p.order {
		if p.policy.engine.Load().Visible(name, g) {
			out = append(out, p.tools[name].tool)
		}
	}
	return out
}

// Approver asks a human to approve a call that matched approve_if.
type Approver interface {
	Approve(ctx context.Context, req ApprovalRequest) (bool, error)
}

// ApprovalRequest is what the human is shown.
type ApprovalRequest struct {
	Tool     string
	Args     map[string]any
	Decision policies.Decision
}

// Call is stage 1: a proposed tool call.
type Call struct {
	Tool     string
	Args     json.RawMessage
	Grant    policies.Grant
	Session  string
	Approver Approver // nil: approve_if verdicts are denied (fail closed)
	// Progress is called about every ProgressInterval while the tool runs, with strictly
	// increasing elapsed times (nil: no progress). How much work remains is not known.
	Progress func(elapsed time.Duration)
	// Remote is the tool when it is an upstream MCP server's (see RemoteTool): stages 4-5
	// are then a tools/call on the upstream instead of a sandbox run. nil for the pipeline's
	// own tools, looked up by Tool.
	Remote RemoteTool
	// RemoteProgress receives a remote tool's progress reports, message sanitised (nil: none
	// are asked for).
	RemoteProgress func(progress, total float64, message string)
	// History is the call's MCP session as the runtime keeps it (nil: a session without
	// history, such as a one-shot CLI call). See SessionHistory.
	History SessionHistory
	// TraceID is the W3C trace id of the call's span when tracing is on (32 lowercase hex
	// digits), recorded as the audit record's trace_id; anything else is not recorded.
	TraceID string
}

// Result is what goes back to the agent: a text block plus structured content
// (exit_code, stdout, stderr, truncated, timed_out, oom_killed, duration_ms, audit_id,
// redactions, and loosened when the sandbox ran with weakened defaults).
type Result struct {
	Text       string
	Structured map[string]any
	IsError    bool
	Verdict    policies.Verdict // empty when the call stopped before stage 3
	Denied     bool             // denied by policy (or approval declined)
	Cancelled  bool             // cancelled before it finished (see Record.Cancelled)
	AuditID    string
	// StageMS is how long each stage took, in milliseconds (the audit record has the same
	// numbers, except "audit" itself).
	StageMS map[string]float64
	// Gateway: the call was to a RemoteTool. Structured then holds Airlock's own fields,
	// which go into the MCP result's _meta, never into structuredContent: that belongs to
	// the upstream, and clients validate it against the upstream's outputSchema.
	Gateway bool
	// Upstream is the remote tool's sanitised result, when it answered (nil otherwise: Text
	// says why).
	Upstream *UpstreamOutput
}

// Stage names used in StageMS and the audit record's stage_ms.
const (
	StageSchema   = "schema"
	StagePolicy   = "policy"
	StageApproval = "approval"
	StageSandbox  = "sandbox"
	StageExecute  = "execute"
	StageSanitize = "sanitize"
	StageAudit    = "audit"
)

// decide is stage 3: the policy's verdict, and for approve verdicts the human's answer. It
// returns the reservation of rate-limit units (to commit if the tool runs, else roll back)
// and, when the call may not go on, its result.
func (p *Pipeline) decide(ctx context.Context, t *trace, call Call, args map[string]any) (*policies.Reservation, *Result) {
	d, resv := p.policy.run(t, policies.Request{Tool: call.Tool, Args: args, Grant: call.Grant, Session: call.Session, State: call.sessionState()})
	switch d.Verdict {
	case policies.Allow:
	case policies.Approve:
		if reason := p.policy.approve(ctx, t, call, args, d); reason != "" {
			if ctx.Err() != nil {
				r := t.cancelled(ctx, "while waiting for approval, before the tool ran")
				return resv, &r
			}
			t.rec.Decision = string(policies.Deny)
			t.rec.Message = "approval declined: " + reason
			p.log.Info().Str("event", "policy.deny").Str("audit_id", t.rec.AuditID).Str("tool", call.Tool).Str("rule", d.Rule).Str("reason", reason).Msg("approval declined")
			r := t.denied(d, "approval declined: "+p.sanitize.text(reason))
			return resv, &r
		}
	default:
		// Deny, and anything else: an unknown verdict never runs a tool.
		p.log.Info().Str("event", "policy.deny").Str("audit_id", t.rec.AuditID).Str("tool", call.Tool).Str("rule", d.Rule).Msg(d.Message)
		r := t.denied(d, d.Message)
		return resv, &r
	}
	return resv, nil
}

// Run executes call through all seven stages. It always writes an audit record: a call that
// stops at any stage (unknown tool, bad arguments, denial, sandbox failure, even a panicking
// tool) still reaches stage 7.
func (p *Pipeline) Run(ctx context.Context, call Call) (res Result) {
	t := newTrace(p.now, call)
	defer func() {
		if r := recover(); r != nil {
			p.log.Error().Str("event", "pipeline.panic").Str("tool", call.Tool).Interface("panic", r).Msg("tool panicked; the call is recorded as an error")
			t.rec.Decision = DecisionError
			t.rec.Message = fmt.Sprintf("internal error: %v", r)
			res = t.errorResult(fmt.Sprintf("internal error while running %s; the call was recorded", call.Tool))
		}
		res = p.trace.finish(t, res) // stage 7, always
		p.observe(ctx, t)
	}()
	if err := p.trace.audit.Err(); err != nil {
		// Fail closed: a call that cannot be recorded does not run.
		t.rec.Decision, t.rec.Message = DecisionError, err.Error()
		t.auditDown = true
		return t.errorResult("audit log unavailable, so no tool can run: " + err.Error())
	}

	if err := p.trace.audit.Flush(); err != nil {
		// The audit log's disk is still full and closing records of calls that ran are held in
		// memory. Refuse before anything else and without a record of this call's own, so a
		// client sending calls meanwhile (denied ones included) cannot crowd them out.
		t.rec.Decision, t.rec.Message = DecisionError, err.Error()
		t.unrecorded = true
		return t.errorResult("audit log unavailable, so no tool can run: " + err.Error())
	}

	if call.Remote != nil {
		return p.runRemote(ctx, t, call)
	}

	// Stage 1 (propose) is the Call itself; find the tool.
	te, ok := p.tools[call.Tool]
	if !ok {
		t.rec.Decision = DecisionUnknownTool
		t.rec.Message = "no such tool"
		return t.errorResult(fmt.Sprintf("unknown tool %q: this server has no tool by that name (see tools/list)", cutString(call.Tool, MaxRecordNameBytes)))
	}

	// Stage 2: strict decode, then the tool's schema.
	args, err := p.parse.run(t, te.schema, call.Args)
	if err != nil {
		return t.argError(call.Tool, err)
	}

	// Stage 3: policy. Units reserved here are committed only if the tool runs.
	ran := false
	resv, refused := p.decide(ctx, t, call, args)
	defer func() {
		if ran {
			resv.Commit()
			t.executed(&call)
		} else {
			resv.Rollback()
		}
	}()
	if refused != nil {
		return *refused
	}

	// Stage 4: sandbox instantiation.
	spec, err := p.instantiate.run(ctx, t, te, args)
	if err != nil {
		t.rec.Decision, t.rec.Message = DecisionError, err.Error()
		return t.errorResult(fmt.Sprintf("%s: cannot prepare the sandbox: %s (the tool did not run)", call.Tool, p.sanitize.text(err.Error())))
	}

	// The intent record: if Airlock dies during stage 5 (SIGKILL, the OOM killer), the log
	// still shows the call was started, and the next start, which reaps the container by the
	// labels set in stage 4, closes it with a reaped record. A call that cannot be recorded
	// does not run.
	if err := p.trace.started(t); err != nil {
		t.rec.Decision, t.rec.Message = DecisionError, err.Error()
		t.auditDown = true
		p.log.Error().Str("event", "audit.error").Str("audit_id", t.rec.AuditID).Str("tool", call.Tool).Err(err).Msg("intent record not written; the tool does not run")
		return t.errorResult(fmt.Sprintf("audit log unavailable, so %s did not run: %s", call.Tool, err))
	}

	// Stage 5: execution in a fresh container.
	out, err := p.execute.run(ctx, t, spec, call.Progress)
	t.cleanEgress(p.sanitize.text)
	if err != nil && ctx.Err() != nil {
		// Cancelled, not a sandbox failure. A container that started did run the tool:
		// its units stay spent and the record names it.
		if out.Ran {
			ran = true
			code := out.ExitCode
			t.rec.ExitCode = &code
			return t.cancelled(ctx, "after the tool started; its container was killed")
		}
		return t.cancelled(ctx, "before the tool ran")
	}
	if err != nil && out.Ran {
		// The command ran and something failed after it (removing the container, say): the
		// tool's effects exist, so its units stay spent and the record says it ran. Its output
		// is not returned: the sandbox that produced it did not end cleanly.
		ran = true
		code := out.ExitCode
		t.rec.ExitCode = &code
		t.rec.TimedOut, t.rec.OOMKilled = out.TimedOut, out.OOMKilled
		t.rec.Decision, t.rec.Message = DecisionError, "the tool ran, then the sandbox failed: "+err.Error()
		p.log.Error().Str("event", "sandbox.error").Str("audit_id", t.rec.AuditID).Str("tool", call.Tool).Str("backend", p.execute.backend.Name()).Err(err).Msg("sandbox failed after the command ran")
		return t.errorResult(fmt.Sprintf("%s ran, but the sandbox failed afterwards, so its output is withheld: %s", call.Tool, p.sanitize.text(err.Error())))
	}
	if err != nil {
		t.rec.Decision, t.rec.Message = DecisionError, err.Error()
		p.log.Error().Str("event", "sandbox.error").Str("audit_id", t.rec.AuditID).Str("tool", call.Tool).Str("backend", p.execute.backend.Name()).Err(err).Msg("sandbox failed")
		return t.errorResult(fmt.Sprintf("sandbox unavailable: %s (the tool did not run)", p.sanitize.text(err.Error())))
	}
	ran = true

	// Stage 6: sanitisation; then the tool renders the clean output, and the rendering is
	// sanitised too. Output that would cost more than its budget to check is withheld.
	clean, ok := p.sanitize.run(t, te.tool, out)
	if !ok {
		return t.withheld(out)
	}
	r, ok := p.sanitize.rendered(t, te.tool.Render(clean))
	if !ok {
		return t.withheld(out)
	}
	r.Text += t.egressNote(p.sanitize.text)
	return t.result(r, out)
}
