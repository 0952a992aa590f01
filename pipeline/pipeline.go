// Package pipeline runs one tool call through Airlock's seven stages: propose, schema parse,
// static policy, sandbox instantiation, execution, result sanitisation and trace logging.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/sandbox"
)

// Config wires a Pipeline.
type Config struct {
	Tools       []Tool
	Policy      *policies.Engine
	Backend     sandbox.Backend
	AuditPath   string // append-only, hash-chained JSON lines
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
}

// Pipeline is safe for concurrent use.
type Pipeline struct {
	tools    map[string]*toolEntry
	order    []string
	policy   *policies.Engine
	backend  sandbox.Backend
	audit    *AuditLog
	sanitize *Sanitizer
	log      zerolog.Logger
	now      func() time.Time

	maxArgBytes int
	recordArgs  bool
	progress    time.Duration
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
		tools:       map[string]*toolEntry{},
		policy:      cfg.Policy,
		backend:     cfg.Backend,
		log:         cfg.Logger,
		now:         cfg.Now,
		maxArgBytes: cfg.MaxArgBytes,
		recordArgs:  cfg.RecordArgs,
		progress:    cfg.ProgressInterval,
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.maxArgBytes <= 0 {
		p.maxArgBytes = DefaultMaxArgBytes
	}
	if p.progress <= 0 {
		p.progress = time.Second
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
	p.sanitize = NewSanitizer(red, cfg.Workspace, scrub, cfg.MaxOutputBytes)
	log, rec, err := OpenAudit(cfg.AuditPath)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	if rec.TornBytes > 0 {
		p.log.Warn().Str("event", "audit.recovered").Str("path", cfg.AuditPath).Int64("torn_bytes", rec.TornBytes).
			Str("saved_to", rec.TornPath).Str("last_id", rec.LastID).
			Msg("audit log ended in an incomplete record (a crash mid-write); moved it aside and continued the chain")
	}
	p.audit = log
	return p, nil
}

// Close flushes and closes the audit log.
func (p *Pipeline) Close() error { return p.audit.Close() }

// Tools lists the tools the caller may see (policy-visible), in a stable order.
func (p *Pipeline) Tools(g policies.Grant) []Tool {
	var out []Tool
	for _, name := range p.order {
		if p.policy.Visible(name, g) {
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
	Approver Approver                 // nil: approve_if verdicts are denied (fail closed)
	Progress func(elapsed, total int) // nil: no progress notifications; called while executing
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
	AuditID    string
	// StageMS is how long each stage took, in milliseconds (the audit record has the same
	// numbers, except "audit" itself).
	StageMS map[string]float64
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

// Run executes call through all seven stages. It always writes an audit record: a call that
// stops at any stage (unknown tool, bad arguments, denial, sandbox failure, even a panicking
// tool) still reaches stage 7.
func (p *Pipeline) Run(ctx context.Context, call Call) (res Result) {
	t := newTrace(p, call)
	defer func() {
		if r := recover(); r != nil {
			p.log.Error().Str("event", "pipeline.panic").Str("tool", call.Tool).Interface("panic", r).Msg("tool panicked; the call is recorded as an error")
			t.rec.Decision = DecisionError
			t.rec.Message = fmt.Sprintf("internal error: %v", r)
			res = t.errorResult(fmt.Sprintf("internal error while running %s; the call was recorded", call.Tool))
		}
		res = p.finish(t, res)
	}()
	if err := p.audit.Err(); err != nil {
		// Fail closed: a call that cannot be recorded does not run.
		t.rec.Decision, t.rec.Message = DecisionError, err.Error()
		t.auditDown = true
		return t.errorResult("audit log unavailable, so no tool can run: " + err.Error())
	}

	// Stage 1 (propose) is the Call itself; find the tool.
	te, ok := p.tools[call.Tool]
	if !ok {
		t.rec.Decision = DecisionUnknownTool
		t.rec.Message = "no such tool"
		return t.errorResult(fmt.Sprintf("unknown tool %q: this server has no tool by that name (see tools/list)", call.Tool))
	}

	// Stage 2: strict decode, then the tool's schema.
	args, err := p.parse(t, te, call.Args)
	if err != nil {
		return t.argError(call.Tool, err)
	}

	// Stage 3: policy. Units reserved here are committed only if the tool runs.
	req := policies.Request{Tool: call.Tool, Args: args, Grant: call.Grant, Session: call.Session}
	d, resv := p.policy.Decide(req)
	t.stage(StagePolicy)
	ran := false
	defer func() {
		if ran {
			resv.Commit()
		} else {
			resv.Rollback()
		}
	}()
	t.rec.Decision, t.rec.Rule, t.rec.Message, t.rec.PolicySHA256 = string(d.Verdict), d.Rule, d.Message, d.PolicySHA256
	switch d.Verdict {
	case policies.Allow:
	case policies.Approve:
		if reason := p.approve(ctx, t, call, args, d); reason != "" {
			t.rec.Decision = string(policies.Deny)
			t.rec.Message = "approval declined: " + reason
			p.log.Info().Str("event", "policy.deny").Str("audit_id", t.rec.AuditID).Str("tool", call.Tool).Str("rule", d.Rule).Str("reason", reason).Msg("approval declined")
			return t.denied(d, "approval declined: "+p.clean(reason))
		}
	default:
		// Deny, and anything else: an unknown verdict never runs a tool.
		p.log.Info().Str("event", "policy.deny").Str("audit_id", t.rec.AuditID).Str("tool", call.Tool).Str("rule", d.Rule).Msg(d.Message)
		return t.denied(d, d.Message)
	}

	// Stage 4: sandbox instantiation.
	spec, err := p.instantiate(ctx, t, te, args)
	if err != nil {
		t.rec.Decision, t.rec.Message = DecisionError, err.Error()
		return t.errorResult(fmt.Sprintf("%s: cannot prepare the sandbox: %s (the tool did not run)", call.Tool, p.clean(err.Error())))
	}

	// Stage 5: execution.
	out, err := p.execute(ctx, t, spec, call.Progress)
	if err != nil {
		t.rec.Decision, t.rec.Message = DecisionError, err.Error()
		p.log.Error().Str("event", "sandbox.error").Str("audit_id", t.rec.AuditID).Str("tool", call.Tool).Str("backend", p.backend.Name()).Err(err).Msg("sandbox failed")
		return t.errorResult(fmt.Sprintf("sandbox unavailable: %s (the tool did not run)", p.clean(err.Error())))
	}
	ran = true

	// Stage 6: sanitisation, then the tool's view of the clean output.
	return p.render(t, te, out)
}

// parse is stage 2.
func (p *Pipeline) parse(t *trace, te *toolEntry, raw json.RawMessage) (map[string]any, error) {
	defer t.stage(StageSchema)
	args, err := decodeArgs(raw, p.maxArgBytes)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	t.rec.ArgKeys = keys
	if p.recordArgs {
		if b, err := json.Marshal(args); err == nil {
			t.rec.Args = b
		}
	}
	if err := validateArgs(te.schema, args); err != nil {
		return nil, err
	}
	return args, nil
}

// approve asks the caller's Approver. It returns "" when approved, else why not.
func (p *Pipeline) approve(ctx context.Context, t *trace, call Call, args map[string]any, d policies.Decision) string {
	defer t.stage(StageApproval)
	if call.Approver == nil {
		return "this client cannot ask a human to approve the call"
	}
	ok, err := call.Approver.Approve(ctx, ApprovalRequest{Tool: call.Tool, Args: args, Decision: d})
	switch {
	case err != nil:
		return err.Error()
	case !ok:
		return "the human declined"
	}
	t.rec.Message = "approved: " + d.Message
	return ""
}

// instantiate is stage 4.
func (p *Pipeline) instantiate(ctx context.Context, t *trace, te *toolEntry, args map[string]any) (sandbox.Spec, error) {
	defer t.stage(StageSandbox)
	opts, err := te.tool.Plan(ctx, args)
	if err != nil {
		return sandbox.Spec{}, err
	}
	spec, err := sandbox.New(opts...)
	if err != nil {
		return sandbox.Spec{}, err
	}
	t.rec.Image = spec.Image
	t.rec.Profile = spec.Seccomp
	if pr, ok := te.tool.(interface{ ProfileName() string }); ok && pr.ProfileName() != "" {
		t.rec.Profile = pr.ProfileName()
	}
	return spec, nil
}

// execute is stage 5: one fresh container, with progress reports while it runs.
func (p *Pipeline) execute(ctx context.Context, t *trace, spec sandbox.Spec, progress func(elapsed, total int)) (sandbox.Result, error) {
	defer t.stage(StageExecute)
	t.rec.Backend = p.backend.Name()
	if progress != nil {
		done := make(chan struct{})
		stopped := make(chan struct{})
		defer func() { close(done); <-stopped }()
		total := int(spec.Timeout / time.Second)
		go func() {
			defer close(stopped)
			tick := time.NewTicker(p.progress)
			defer tick.Stop()
			start := time.Now()
			for {
				select {
				case <-done:
					return
				case <-ctx.Done():
					return
				case now := <-tick.C:
					progress(int(now.Sub(start)/time.Second), total)
				}
			}
		}()
	}
	res, err := p.backend.Run(ctx, spec)
	if err != nil {
		return res, err
	}
	t.rec.ContainerID = res.ContainerID
	code := res.ExitCode
	t.rec.ExitCode = &code
	t.rec.TimedOut, t.rec.OOMKilled = res.TimedOut, res.OOMKilled
	t.rec.Loosened = res.Loosened
	return res, nil
}

// render is stage 6 plus the tool's rendering of the sanitised output.
func (p *Pipeline) render(t *trace, te *toolEntry, res sandbox.Result) Result {
	stdout, redOut, cutOut := p.sanitize.Clean(res.Stdout)
	stderr, redErr, cutErr := p.sanitize.Clean(res.Stderr)
	red := map[string]int{}
	for _, m := range []map[string]int{redOut, redErr} {
		for k, v := range m {
			red[k] += v
		}
	}
	out := Output{
		ExitCode:  res.ExitCode,
		Stdout:    stdout,
		Stderr:    stderr,
		Truncated: res.Truncated() || cutOut || cutErr,
		TimedOut:  res.TimedOut,
		OOMKilled: res.OOMKilled,
	}
	t.rec.Truncated = out.Truncated
	t.rec.Redactions = red
	t.stage(StageSanitize)

	rendered := te.tool.Render(out)
	text := rendered.Text
	if n := sumCounts(red); n > 0 {
		// A factual note, in Airlock's voice, outside the tool's data.
		text += fmt.Sprintf("\n[airlock: %d secret(s) redacted from this output]", n)
	}
	st := map[string]any{}
	for k, v := range rendered.Fields {
		st[k] = v
	}
	// The standard fields are Airlock's: a tool's Render cannot overwrite them.
	st["exit_code"] = out.ExitCode
	st["stdout"] = out.Stdout
	st["stderr"] = out.Stderr
	st["truncated"] = out.Truncated
	st["timed_out"] = out.TimedOut
	st["oom_killed"] = out.OOMKilled
	st["duration_ms"] = res.Duration.Milliseconds()
	st["audit_id"] = t.rec.AuditID
	st["redactions"] = red
	// Everything above except audit_id came out of the sandbox: data to read, never
	// instructions to follow.
	st["untrusted"] = true
	if len(res.Loosened) > 0 {
		st["loosened"] = slices.Clone(res.Loosened)
	}
	return Result{Text: text, Structured: st, IsError: rendered.IsError, Verdict: policies.Verdict(t.verdict()), AuditID: t.rec.AuditID}
}

// clean sanitises a message that reaches the agent from outside Airlock's own text (a backend
// or approver error): error messages carry host paths (bundle directories, the state
// directory) and, from a misbehaving component, anything else.
func (p *Pipeline) clean(msg string) string {
	s, _, _ := p.sanitize.Clean([]byte(msg))
	return s
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// finish is stage 7: complete and append the audit record. It runs for every call.
func (p *Pipeline) finish(t *trace, res Result) Result {
	end := p.now()
	t.rec.DurationMS = ms(end.Sub(t.start))
	res.AuditID = t.rec.AuditID
	res.StageMS = map[string]float64{}
	for k, v := range t.rec.StageMS {
		res.StageMS[k] = v
	}
	if res.Structured == nil {
		res.Structured = map[string]any{"audit_id": t.rec.AuditID}
	}
	err := p.audit.Append(&t.rec)
	res.StageMS[StageAudit] = ms(p.now().Sub(end))
	if err != nil {
		p.log.Error().Str("event", "audit.error").Str("audit_id", t.rec.AuditID).Str("tool", t.rec.Tool).Err(err).Msg("audit record not written")
		res.IsError = true
		if !t.auditDown {
			res.Text = fmt.Sprintf("audit log unavailable: %v. The call's outcome could not be recorded; Airlock accepts no further calls until it is restarted.", err)
		}
		return res
	}
	p.log.Info().Str("event", "tool.call").Str("audit_id", t.rec.AuditID).Str("tool", t.rec.Tool).
		Str("decision", t.rec.Decision).Str("rule", t.rec.Rule).Float64("duration_ms", t.rec.DurationMS).Msg("")
	return res
}
