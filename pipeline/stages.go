package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/sandbox"
)

// The stages. Each is a small value with one job; each records its duration in the trace.
// Stage 1 (propose) is the Call itself.

// parseStage is stage 2: strict decoding, then the tool's compiled JSON Schema.
type parseStage struct {
	maxBytes   int
	recordArgs bool
}

func (s parseStage) run(t *trace, schema *jsonschema.Schema, raw json.RawMessage) (map[string]any, error) {
	defer t.stage(StageSchema)
	args, err := decodeArgs(raw, s.maxBytes)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	t.rec.ArgKeys = keys
	if s.recordArgs {
		if b, err := json.Marshal(args); err == nil {
			t.rec.Args = b
		}
	}
	if err := validateArgs(schema, args); err != nil {
		return nil, err
	}
	return args, nil
}

// policyStage is stage 3: the static verdict with rate-limit units, and for approve verdicts
// the human's answer.
type policyStage struct {
	// engine is swapped whole by a policy reload: a call is decided by one version, never
	// by half of each.
	engine *atomic.Pointer[policies.Engine]
	stop   Stopper
}

// Stopper is the operator's kill switch. Stopped reports whether a switch stops a call of tool
// by grant in session, with the switch's rule pointer (/kill/...) and the caller's message.
// A Stopper that cannot tell (its state store unreachable) stops the call: fail closed.
type Stopper interface {
	Stopped(tool, grant, session string) (rule, message string, stopped bool)
}

func (s policyStage) run(t *trace, req policies.Request) (policies.Decision, *policies.Reservation) {
	defer t.stage(StagePolicy)
	e := s.engine.Load()
	var d policies.Decision
	var resv *policies.Reservation
	if rule, msg, stopped := s.stopped(req); stopped {
		// Before the policy, so a stopped call reserves no rate-limit units.
		d = policies.Decision{Verdict: policies.Deny, Rule: rule, Message: msg, PolicySHA256: e.Policy().SHA256()}
	} else {
		d, resv = e.Decide(req)
	}
	t.rec.Decision, t.rec.Rule, t.rec.Message, t.rec.PolicySHA256 = string(d.Verdict), d.Rule, d.Message, d.PolicySHA256
	t.recordSession(&req.State)
	t.labels = d.Labels
	return d, resv
}

func (s policyStage) stopped(req policies.Request) (string, string, bool) {
	if s.stop == nil {
		return "", "", false
	}
	return s.stop.Stopped(req.Tool, req.Grant.ID, req.Session)
}

// approve asks the caller's Approver. It returns "" when approved, else why not. No approver
// is a refusal: a call that needs a human never runs without one.
func (s policyStage) approve(ctx context.Context, t *trace, call Call, args map[string]any, d policies.Decision) string {
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

// instantiateStage is stage 4: the tool's plan on top of the hardened defaults.
type instantiateStage struct {
	auditPath string
}

func (s instantiateStage) run(ctx context.Context, t *trace, te *toolEntry, args map[string]any) (sandbox.Spec, error) {
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
	// Ties a leftover container to this call and its log (see Pipeline.RecordReaped).
	spec.Labels[sandbox.LabelAuditID] = t.rec.AuditID
	spec.Labels[sandbox.LabelAuditLog] = s.auditPath
	spec.Labels[sandbox.LabelTool] = te.tool.Name()
	if pr, ok := te.tool.(interface{ ProfileName() string }); ok && pr.ProfileName() != "" {
		t.rec.Profile = pr.ProfileName()
	}
	return spec, nil
}

// executeStage is stage 5: one run in a fresh container, with progress reports while it runs.
type executeStage struct {
	backend  sandbox.Backend
	interval time.Duration
}

func (s executeStage) run(ctx context.Context, t *trace, spec sandbox.Spec, progress func(elapsed time.Duration)) (sandbox.Result, error) {
	defer t.stage(StageExecute)
	t.rec.Backend = s.backend.Name()
	if progress != nil {
		done := make(chan struct{})
		stopped := make(chan struct{})
		// The reporter is owned by this call: stopped before run returns.
		defer func() { close(done); <-stopped }()
		go func() {
			defer close(stopped)
			tick := time.NewTicker(s.interval)
			defer tick.Stop()
			start := time.Now()
			var last time.Duration
			for {
				select {
				case <-done:
					return
				case <-ctx.Done():
					return
				case <-tick.C:
					// Measured when reported (a tick can wait in the channel), and strictly
					// increasing, as MCP requires of progress values.
					if elapsed := time.Since(start); elapsed > last {
						last = elapsed
						progress(elapsed)
					}
				}
			}
		}()
	}
	res, err := s.backend.Run(ctx, spec)
	t.rec.ContainerID = res.ContainerID
	t.egress(res.Egress)
	if err != nil {
		return res, err
	}
	code := res.ExitCode
	t.rec.ExitCode = &code
	t.rec.TimedOut, t.rec.OOMKilled = res.TimedOut, res.OOMKilled
	t.rec.Loosened = res.Loosened
	return res, nil
}

// sanitizeStage is stage 6: the output through the Sanitizer, against one redaction budget per
// call and with one set of found secrets per call (see callCleaner).
type sanitizeStage struct {
	*Sanitizer
}

// run sanitises what the sandbox returned: both streams, or, for a tool that prints one JSON
// object (JSONOutput), every string of the decoded object instead of stdout. Every string is
// scanned before any is redacted, so a secret recognised in one is replaced in all. It returns
// ok false when the redaction budget ran out: nothing of the output may then be returned.
func (s sanitizeStage) run(t *trace, tool Tool, res sandbox.Result) (Output, bool) {
	defer t.stage(StageSanitize)
	c := s.newCall()
	t.clean = c
	out := Output{ExitCode: res.ExitCode, TimedOut: res.TimedOut, OOMKilled: res.OOMKilled}
	var cutOut, cutErr bool
	if j, ok := tool.(JSONOutput); ok && j.StdoutIsJSON() {
		out.Result = s.decode(res.Stdout)
	}
	prep := func(v string) string {
		p := s.prepare([]byte(v))
		c.charge(len(p))
		return p
	}
	if out.Result != nil {
		out.Result = mapStrings(out.Result, prep)
	} else {
		out.Stdout, cutOut = s.prepareStream(res.Stdout)
		c.charge(len(out.Stdout))
	}
	out.Stderr, cutErr = s.prepareStream(res.Stderr)
	c.charge(len(out.Stderr))

	c.scan(out.Stdout)
	c.scan(out.Stderr)
	mapStrings(out.Result, func(v string) string { c.scan(v); return v })
	apply := func(v string) string { return c.apply(v, c.data) }
	out.Stdout, out.Stderr, out.Result = apply(out.Stdout), apply(out.Stderr), mapStrings(out.Result, apply)
	if c.err != nil {
		return Output{}, false
	}
	stdout, capOut := s.capText(out.Stdout)
	stderr, capErr := s.capText(out.Stderr)
	out.Stdout, out.Stderr = stdout, stderr
	out.Truncated = res.Truncated() || cutOut || cutErr || capOut || capErr
	t.rec.Truncated = out.Truncated
	t.out = out
	return out, true
}

// decode returns stdout as one JSON object, or nil when it is not one (or is longer than any
// tool's JSON result can be, so that the stream path cuts it).
func (s sanitizeStage) decode(stdout []byte) map[string]any {
	if len(stdout) > s.maxBytes+redactMargin {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(stdout, &m); err != nil {
		return nil
	}
	return m
}

// rendered sanitises what the tool made of the clean output: its text and the strings in its
// structured fields, through the same steps and against the same budget. A secret that only
// the rendering made recognisable is also removed from the output's data. It returns ok false
// when the redaction budget ran out.
func (s sanitizeStage) rendered(t *trace, r Rendered) (Rendered, bool) {
	defer t.stage(StageSanitize)
	c := t.clean
	prep := func(v string) string {
		p := s.prepare([]byte(v))
		c.charge(len(p))
		return p
	}
	text := prep(r.Text)
	fields := mapStrings(r.Fields, prep)
	known := c.known.len()
	c.scan(text)
	mapStrings(fields, func(v string) string { c.scan(v); return v })
	r.Text = c.apply(text, c.text)
	r.Fields = mapStrings(fields, func(v string) string { return c.apply(v, c.data) })
	if c.known.len() > known {
		apply := func(v string) string { return c.apply(v, c.data) }
		t.out.Stdout, t.out.Stderr, t.out.Result = apply(t.out.Stdout), apply(t.out.Stderr), mapStrings(t.out.Result, apply)
	}
	if c.err != nil {
		return Rendered{}, false
	}
	for k, v := range c.counts() {
		t.rec.Redactions[k] += v
	}
	return r, true
}

// mapStrings returns v (a decoded JSON value) with f applied to every string in it, at any
// depth. Maps and slices are copied, never changed in place.
func mapStrings[T any](v T, f func(string) string) T {
	var walk func(v any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case string:
			return f(v)
		case map[string]any:
			if v == nil {
				return v
			}
			m := make(map[string]any, len(v))
			for k, e := range v {
				m[k] = walk(e)
			}
			return m
		case []any:
			l := make([]any, len(v))
			for i, e := range v {
				l[i] = walk(e)
			}
			return l
		}
		return v
	}
	out, _ := walk(v).(T)
	return out
}

// text sanitises a message that reaches the agent from outside Airlock's own text (a backend
// or approver error): error messages carry host paths (bundle directories, the state
// directory) and, from a misbehaving component, anything else.
func (s sanitizeStage) text(msg string) string {
	clean, _, _ := s.Clean([]byte(msg))
	return clean
}

// traceStage is stage 7: the audit record, and the diagnostic log line.
type traceStage struct {
	audit *AuditLog
	log   zerolog.Logger
	now   func() time.Time
}

// started appends the call's intent record (PhaseStarted): the record as it stands before
// stage 5. It is not fsynced (see AuditLog.AppendUnsynced); the closing record's fsync is.
func (s traceStage) started(t *trace) error {
	rec := t.rec
	rec.Phase = PhaseStarted
	rec.DurationMS = ms(s.now().Sub(t.start))
	rec.ArgKeys = slices.Clone(t.rec.ArgKeys)
	rec.Redactions = map[string]int{}
	rec.StageMS = maps.Clone(t.rec.StageMS)
	return s.audit.AppendUnsynced(&rec)
}

// finish completes and appends t's record and returns res with the audit id and timings.
func (s traceStage) finish(t *trace, res Result) Result {
	if t.unrecorded {
		t.end = s.now()
		s.log.Error().Str("event", "audit.refused").Str("audit_id", t.rec.AuditID).Str("tool", t.rec.Tool).Str("message", t.rec.Message).Msg("call refused without a record: the audit log's disk is full")
		res.AuditID = t.rec.AuditID
		return res
	}
	end := s.now()
	t.end = end
	t.rec.DurationMS = ms(end.Sub(t.start))
	res.AuditID = t.rec.AuditID
	res.StageMS = map[string]float64{}
	for k, v := range t.rec.StageMS {
		res.StageMS[k] = v
	}
	if res.Structured == nil {
		res.Structured = map[string]any{"audit_id": t.rec.AuditID}
	}
	res.Gateway = t.remote
	err := s.audit.Append(&t.rec)
	t.end = s.now()
	res.StageMS[StageAudit] = ms(t.end.Sub(end))
	t.span(StageAudit, end, t.end)
	t.auditErr = err
	if err != nil {
		s.log.Error().Str("event", "audit.error").Str("audit_id", t.rec.AuditID).Str("tool", t.rec.Tool).Err(err).Msg("audit record not written")
		ran := t.rec.ExitCode != nil
		switch {
		case t.auditDown:
			// The text already says the audit log failed.
		case ran:
			res.Text = fmt.Sprintf("%s ran, but its audit record could not be written, so its output is withheld: %v", t.rec.Tool, err)
		case errors.Is(err, ErrAuditFull):
			res.Text = fmt.Sprintf("audit log unavailable, so %s did not run: %v", t.rec.Tool, err)
		default:
			res.Text = fmt.Sprintf("audit log unavailable: %v. The call's outcome could not be recorded; Airlock accepts no further calls until it is restarted.", err)
		}
		// Nothing of an unrecorded call goes back but this: not its output, not a denial's
		// details.
		res.IsError = true
		res.Structured = map[string]any{"audit_id": t.rec.AuditID, "error": res.Text}
		return res
	}
	s.log.Info().Str("event", "tool.call").Str("audit_id", t.rec.AuditID).Str("tool", t.rec.Tool).
		Str("decision", t.rec.Decision).Str("rule", t.rec.Rule).Float64("duration_ms", t.rec.DurationMS).Msg("")
	return res
}
