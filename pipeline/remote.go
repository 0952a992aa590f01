package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/airlock-mcp/airlock/policies"
)

// The second kind of invocation behind stages 4-5: a tools/call on an upstream MCP server that
// Airlock serves as a gateway. Stages 1-3 and 7 are the same as for a sandboxed tool (the
// upstream's input schema in stage 2, the same policy, limits, approvals and audit in stage 3
// and 7); stage 6 cleans every text of the upstream's content blocks and structured content
// against one redaction budget (see sanitizeStage.content).

// RemoteTool is a tool of an upstream MCP server, as the runtime resolved it for one call.
type RemoteTool interface {
	// Upstream is the upstream's configured name; UpstreamName is the tool's name there (the
	// exposed name, Call.Tool, may carry a prefix).
	Upstream() string
	UpstreamName() string
	// Withheld returns a rule pointer (/pins/<upstream>/<tool>) and a message when the tool may
	// not be called (its pin does not match, say); "" when it may.
	Withheld() (rule, message string)
	// Schema is the tool's compiled input schema (CompileInputSchema).
	Schema() *Schema
	// Timeout bounds one call; 0 means DefaultRemoteTimeout.
	Timeout() time.Duration
	// Secrets are the credentials Airlock holds for the upstream (header values): replaced in
	// everything the upstream returns, whatever the redaction rules recognise.
	Secrets() []string
	// Invoke sends the call. sent reports whether the request may have reached the upstream
	// (so the tool may have run); progress, if not nil, receives the upstream's progress.
	Invoke(ctx context.Context, args map[string]any, progress func(progress, total float64, message string)) (res *mcp.CallToolResult, sent bool, err error)
}

// WithheldError is returned by RemoteTool.Invoke, before anything is sent, when the tool turns
// out not to be callable after all (the server the call would reach lists a definition its
// pin does not allow). The call is denied with Rule and Message, as a withheld tool is.
type WithheldError struct {
	Rule, Message string
}

func (e *WithheldError) Error() string { return e.Message }

// DefaultRemoteTimeout bounds a call to an upstream tool whose RemoteTool says 0.
const DefaultRemoteTimeout = 60 * time.Second

// Schema is a compiled input schema.
type Schema struct{ s *jsonschema.Schema }

// CompileInputSchema compiles a tool's input schema the way the pipeline compiles its own
// tools' (draft 2020-12, formats asserted, no remote or file $ref, additionalProperties false
// for an object schema that does not say otherwise).
func CompileInputSchema(tool string, raw []byte) (*Schema, error) {
	s, err := compileSchema(tool, raw)
	if err != nil {
		return nil, err
	}
	return &Schema{s}, nil
}

// UpstreamOutput is an upstream's result after stage 6.
type UpstreamOutput struct {
	// Content is the upstream's content blocks, every text in them sanitised, binary data
	// within the size cap (a block over it replaced by a note), _meta dropped.
	Content []mcp.Content
	// Structured is the upstream's structuredContent with every string sanitised; nil if it
	// sent none.
	Structured any
	// StructuredWithheld: the upstream's structuredContent was over the output cap and is not
	// returned; the result is then an error (a client would reject a success without the
	// structured content the tool's outputSchema promises).
	StructuredWithheld bool
	// InputRequests are the questions the upstream asks before it answers (MCP multi
	// round-trip requests): elicitations only, each message sanitised and labelled with the
	// upstream's name. RequestState is the upstream's, to send back with the answers.
	InputRequests mcp.InputRequestMap
	RequestState  string
}

// maxInputRequests bounds the questions one upstream result may ask.
const maxInputRequests = 16

// inputRequests sanitises an upstream's input requests: elicitations in form mode only, their
// messages cleaned (redaction included) and labelled with who asks. Anything else (sampling,
// roots, a link to open) is refused: Airlock offers an upstream no model and no host paths, and
// shows no link a third-party server chose.
func (p *Pipeline) inputRequests(res *mcp.CallToolResult, upstream string, secrets []string) (mcp.InputRequestMap, error) {
	if len(res.InputRequests) > maxInputRequests {
		return nil, fmt.Errorf("upstream %s asked %d questions at once (at most %d)", upstream, len(res.InputRequests), maxInputRequests)
	}
	out := mcp.InputRequestMap{}
	for k, r := range res.InputRequests {
		e, ok := r.(*mcp.ElicitParams)
		if !ok {
			return nil, fmt.Errorf("upstream %s asked for %T, which Airlock does not offer upstreams (only elicitation)", upstream, r)
		}
		if e.Mode != "" && e.Mode != "form" {
			return nil, fmt.Errorf("upstream %s asked the user to open a link (elicitation mode %q), which Airlock does not forward", upstream, e.Mode)
		}
		msg := p.sanitize.text(hideSecrets(e.Message, secrets))
		out[k] = &mcp.ElicitParams{Mode: e.Mode, Message: fmt.Sprintf("[upstream %s asks] %s", upstream, msg), RequestedSchema: e.RequestedSchema}
	}
	return out, nil
}

// withheld denies a call to a tool its pin withholds.
func (p *Pipeline) withheld(t *trace, tool, rule, msg string) Result {
	t.rec.Decision, t.rec.Rule, t.rec.Message = string(policies.Deny), rule, msg
	p.log.Info().Str("event", "pins.deny").Str("audit_id", t.rec.AuditID).Str("tool", tool).Str("rule", rule).Msg(msg)
	return t.denied(policies.Decision{Verdict: policies.Deny, Rule: rule}, msg)
}

// runRemote runs stages 2-6 for a RemoteTool. It is called by Run, which adds stage 7.
func (p *Pipeline) runRemote(ctx context.Context, t *trace, call Call) Result {
	rt := call.Remote
	t.remote = true
	t.rec.Upstream, t.rec.UpstreamTool = rt.Upstream(), rt.UpstreamName()
	t.rec.Backend = "upstream"
	if rule, msg := rt.Withheld(); rule != "" {
		// A withheld definition is not trusted enough to validate arguments against: refuse
		// before stage 2.
		return p.withheld(t, call.Tool, rule, msg)
	}
	sch := rt.Schema()
	if sch == nil {
		t.rec.Decision, t.rec.Message = DecisionError, "no compiled input schema"
		return t.errorResult(fmt.Sprintf("%s: its input schema could not be compiled, so it cannot be called", call.Tool))
	}
	args, err := p.parse.run(t, sch.s, call.Args)
	if err != nil {
		return t.argError(call.Tool, err)
	}
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
	t.stage(StageSandbox) // nothing to instantiate for a remote tool: keeps the timings' shape
	if err := p.trace.started(t); err != nil {
		t.rec.Decision, t.rec.Message = DecisionError, err.Error()
		t.auditDown = true
		return t.errorResult(fmt.Sprintf("audit log unavailable, so %s did not run: %s", call.Tool, err))
	}

	timeout := rt.Timeout()
	if timeout <= 0 {
		timeout = DefaultRemoteTimeout
	}
	callCtx, cancel := context.WithTimeoutCause(ctx, timeout, errRemoteTimeout)
	defer cancel()
	var progress func(float64, float64, string)
	if call.RemoteProgress != nil {
		last := -1.0
		progress = func(v, total float64, msg string) {
			// MCP requires increasing progress values; an upstream that repeats or goes back
			// is not forwarded. Its message is upstream text for the agent's screen.
			if v <= last {
				return
			}
			last = v
			call.RemoteProgress(v, total, p.sanitize.text(hideSecrets(msg, rt.Secrets())))
		}
	}
	res, sent, err := rt.Invoke(callCtx, args, progress)
	t.stage(StageExecute)
	var we *WithheldError
	if errors.As(err, &we) {
		return p.withheld(t, call.Tool, we.Rule, we.Message)
	}
	if err != nil {
		ran = sent
		switch {
		case ctx.Err() != nil:
			if sent {
				return t.cancelled(ctx, "after the request reached the upstream; it was told to cancel")
			}
			return t.cancelled(ctx, "before the request reached the upstream")
		case errors.Is(context.Cause(callCtx), errRemoteTimeout):
			t.rec.TimedOut = true
			t.rec.Decision, t.rec.Message = DecisionError, fmt.Sprintf("upstream did not answer within %s; the request was cancelled", timeout)
			return t.errorResult(fmt.Sprintf("%s: upstream %s did not answer within %s; the request was cancelled", call.Tool, rt.Upstream(), timeout))
		}
		// Transport errors can quote what the upstream sent back, requests included.
		msg := hideSecrets(err.Error(), rt.Secrets())
		t.rec.Decision, t.rec.Message = DecisionError, "upstream failed: "+msg
		p.log.Error().Str("event", "upstream.error").Str("audit_id", t.rec.AuditID).Str("tool", call.Tool).Str("upstream", rt.Upstream()).Str("error", msg).Msg("upstream call failed")
		return t.errorResult(fmt.Sprintf("%s: upstream %s failed: %s", call.Tool, rt.Upstream(), p.sanitize.text(msg)))
	}
	ran = true
	if res.InputRequests != nil {
		// The upstream asks before it answers: the questions go to the client, whose retry
		// (with the answers) is a call of its own through every stage.
		reqs, err := p.inputRequests(res, rt.Upstream(), rt.Secrets())
		if err != nil {
			t.rec.Decision, t.rec.Message = DecisionError, err.Error()
			return t.errorResult(fmt.Sprintf("%s: %s", call.Tool, err))
		}
		t.rec.Message = fmt.Sprintf("the upstream asked %d question(s) before answering; sent to the client", len(reqs))
		out := UpstreamOutput{InputRequests: reqs, RequestState: res.RequestState}
		return Result{Structured: map[string]any{"audit_id": t.rec.AuditID, "untrusted": true, "upstream": rt.Upstream()}, Upstream: &out,
			Verdict: policies.Verdict(t.verdict()), AuditID: t.rec.AuditID}
	}
	code := 0
	if res.IsError {
		code = 1
	}
	t.rec.ExitCode = &code

	out, ok := p.sanitize.content(t, res, rt.Secrets())
	if !ok {
		msg := withheldText(contentBytes(res))
		t.rec.Message = "output withheld: the upstream's result exceeds the redaction budget"
		return Result{Text: msg, IsError: true, Verdict: policies.Verdict(t.verdict()), AuditID: t.rec.AuditID,
			Structured: map[string]any{"audit_id": t.rec.AuditID, "untrusted": true, "withheld": true}}
	}
	st := map[string]any{
		"audit_id":   t.rec.AuditID,
		"untrusted":  true,
		"truncated":  t.rec.Truncated,
		"redactions": cloneCounts(t.rec.Redactions),
		"upstream":   rt.Upstream(),
	}
	return Result{Text: contentText(out.Content), Structured: st, IsError: res.IsError || out.StructuredWithheld, Upstream: &out,
		Verdict: policies.Verdict(t.verdict()), AuditID: t.rec.AuditID}
}

var errRemoteTimeout = errors.New("upstream call timed out")

// hideSecrets replaces the credentials Airlock holds for an upstream in s.
func hideSecrets(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[REDACTED:upstream-credential]")
		}
	}
	return s
}

func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// GatewayEvent is something the gateway decided outside a call, recorded in the audit log:
// a pin verdict about an upstream tool, or a tool withheld for its name.
type GatewayEvent struct {
	Tool         string // the exposed name ("" when the tool has none)
	Upstream     string
	UpstreamTool string
	Decision     string // e.g. pin_changed, name_collision
	Rule         string // e.g. /pins/<upstream>/<tool>
	Message      string
}

// RecordGateway appends one audit record for ev.
func (p *Pipeline) RecordGateway(ev GatewayEvent) error {
	return p.trace.audit.Append(NewGatewayRecord(ev, p.now()))
}

// NewGatewayRecord is the audit record of ev, for AuditLog.Append (the CLI's pin approvals
// and resets are recorded in the log the gateway writes).
func NewGatewayRecord(ev GatewayEvent, now time.Time) *Record {
	t := newTrace(func() time.Time { return now }, Call{Tool: ev.Tool})
	t.rec.ArgsSHA256 = ""
	t.rec.Upstream, t.rec.UpstreamTool = ev.Upstream, ev.UpstreamTool
	t.rec.Backend = "upstream"
	t.rec.Decision, t.rec.Rule, t.rec.Message = ev.Decision, ev.Rule, ev.Message
	return &t.rec
}
