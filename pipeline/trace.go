package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/airlock-mcp/airlock/egress"
	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/sandbox"
)

// trace accumulates one call's audit record and stage timings as the call moves through the
// stages.
type trace struct {
	now   func() time.Time
	start time.Time
	last  time.Time
	rec   Record
	// auditDown: the call was refused because the audit log had already failed.
	auditDown bool
	// unrecorded: the call was refused before stage 2 because records are held for lack of
	// disk space; it gets no record of its own (see Pipeline.Run).
	unrecorded bool
	// out is the sanitised output, once stage 6 ran.
	out Output
	// clean is stage 6's state for this call: budget and secrets found.
	clean *callCleaner
	// remote: the call is to a RemoteTool (Result.Gateway).
	remote bool
	// refused are the first distinct destinations the call's egress proxy refused (at most
	// maxRefusalNotes), and refusedMore how many other refusals there were.
	refused     []EgressRecord
	refusedMore int
	// labels are what the decision's label_if rules give the session if the tool runs.
	labels []string
	// spans are the stages as they ended, end the call's end and auditErr why its record
	// was not written, for the Observer.
	spans    []StageSpan
	end      time.Time
	auditErr error
}

// maxRefusalNotes is how many egress refusals a result's text names.
const maxRefusalNotes = 3

// egress records the connections of the call's egress proxy.
func (t *trace) egress(events []egress.Event) {
	for _, ev := range events {
		r := EgressRecord{Host: ev.Host, Port: ev.Port, Allowed: ev.Allowed, Code: ev.Code,
			BytesSent: ev.BytesSent, BytesReceived: ev.BytesReceived}
		if len(t.rec.Egress) < MaxRecordEgress {
			t.rec.Egress = append(t.rec.Egress, r)
		}
		if ev.Allowed {
			continue
		}
		seen := slices.ContainsFunc(t.refused, func(o EgressRecord) bool { return o.Host == r.Host && o.Port == r.Port && o.Code == r.Code })
		switch {
		case seen:
		case len(t.refused) < maxRefusalNotes:
			t.refused = append(t.refused, r)
		default:
			t.refusedMore++
		}
	}
	t.rec.EgressCount += len(events)
}

// refusalWhy says what an egress refusal code means, for the agent.
func refusalWhy(code string) string {
	switch code {
	case "not_allowed":
		return "not on this tool's network allowlist"
	case "ip_literal":
		return "an IP address; only allowed host names can be reached"
	case "private_address":
		return "it resolves to a private or special-purpose address"
	case "sni_mismatch", "no_sni", "ech", "not_tls", "bad_hello":
		return "the TLS handshake did not name the host the tunnel was opened to (" + code + ")"
	case "host_mismatch":
		return "the Host header named another host"
	case "conn_cap", "byte_cap":
		return "the call's egress cap was reached (" + code + ")"
	}
	return code
}

// cleanEgress cuts and sanitises the host names of the call's egress records, which the
// sandbox chose, before the record and the result show them.
func (t *trace) cleanEgress(clean func(string) string) {
	for i := range t.rec.Egress {
		t.rec.Egress[i].Host = clean(cutString(t.rec.Egress[i].Host, maxNoteHost))
	}
}

// egressNote is what the result's text says, in Airlock's voice, about refused connections:
// which destination and why, and that the operator can allow a host. Host names come from
// the sandbox: clean sanitises them; the proxy's own reasons, which quote what the sandbox
// sent, stay in the log.
func (t *trace) egressNote(clean func(string) string) string {
	if len(t.refused) == 0 {
		return ""
	}
	var b strings.Builder
	for _, r := range t.refused {
		host := clean(cutString(r.Host, maxNoteHost))
		fmt.Fprintf(&b, "\n[airlock: egress refused: %s:%d: %s", host, r.Port, refusalWhy(r.Code))
		if r.Code == "not_allowed" {
			// The exact entry that would allow it (a name: the proxy quotes what is not one).
			entry := host
			if r.Port != 80 && r.Port != 443 {
				entry = fmt.Sprintf("%s:%d", host, r.Port)
			}
			fmt.Fprintf(&b, "; an operator can allow it by adding %q to the profile's network.allow", entry)
		}
		b.WriteString("]")
	}
	if t.refusedMore > 0 {
		fmt.Fprintf(&b, "\n[airlock: %d more egress refusal(s); see audit record %s]", t.refusedMore, t.rec.AuditID)
	}
	return b.String()
}

// maxNoteHost bounds a host name as a result shows it.
const maxNoteHost = 128

func newTrace(clock func() time.Time, call Call) *trace {
	now := clock()
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	sum := sha256.Sum256(call.Args)
	traceID := ""
	if validTraceID(call.TraceID) {
		traceID = call.TraceID
	}
	return &trace{
		now:   clock,
		start: now,
		last:  now,
		spans: make([]StageSpan, 0, 8),
		rec: Record{
			TraceID:    traceID,
			AuditID:    id.String(),
			Time:       now.UTC().Format(time.RFC3339Nano),
			Grant:      call.Grant.ID,
			Session:    call.Session,
			Tool:       call.Tool,
			ArgsSHA256: hex.EncodeToString(sum[:]),
			ArgKeys:    []string{},
			Redactions: map[string]int{},
			StageMS:    map[string]float64{},
		},
	}
}

// stage records the time since the previous stage ended under name.
func (t *trace) stage(name string) {
	now := t.now()
	t.rec.StageMS[name] += ms(now.Sub(t.last))
	t.span(name, t.last, now)
	t.last = now
}

// ms is d in milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/1e3) / 1e3
}

func (t *trace) verdict() string {
	switch t.rec.Decision {
	case string(policies.Allow), string(policies.Deny), string(policies.Approve):
		return t.rec.Decision
	}
	return ""
}

// errorResult is a tool error that carries only text and the audit id.
func (t *trace) errorResult(text string) Result {
	return Result{
		Text:       text,
		IsError:    true,
		Structured: map[string]any{"audit_id": t.rec.AuditID, "error": text},
		Verdict:    policies.Verdict(t.verdict()),
	}
}

// cancelled is the result of a call cancelled by its client, a disconnect or a shutdown.
// Whoever cancelled gets no answer (the MCP layer drops responses to cancelled requests), so
// the text is for logs and tests; the record says what happened.
func (t *trace) cancelled(ctx context.Context, when string) Result {
	why := cancelCause(ctx)
	t.rec.Cancelled = true
	t.rec.Message = fmt.Sprintf("cancelled (%s) %s", why, when)
	res := t.errorResult(fmt.Sprintf("call cancelled (%s) %s", why, when))
	res.Cancelled = true
	return res
}

// cancelCause says in words why ctx ended.
func cancelCause(ctx context.Context) string {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, context.Canceled):
		return "the client cancelled the request"
	case errors.Is(cause, io.EOF), errors.Is(cause, io.ErrUnexpectedEOF):
		return "the client disconnected"
	case errors.Is(cause, context.DeadlineExceeded):
		return "the request's deadline passed"
	case cause == nil:
		return "cancelled"
	}
	return cause.Error()
}

// denied is a policy denial: `[POLICY DENIED] <message> (rule <pointer>)`.
func (t *trace) denied(d policies.Decision, message string) Result {
	if message == "" {
		message = "denied by policy"
	}
	text := fmt.Sprintf("[POLICY DENIED] %s (rule %s)", message, d.Rule)
	return Result{
		Text:    text,
		IsError: true,
		Denied:  true,
		Verdict: policies.Deny,
		Structured: map[string]any{
			"audit_id": t.rec.AuditID,
			"denied":   true,
			"rule":     d.Rule,
			"message":  message,
		},
	}
}

// argError is a stage-2 refusal naming each field and why.
func (t *trace) argError(tool string, err error) Result {
	var list ArgErrors
	var one *ArgError
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = ArgErrors{one}
	default:
		list = ArgErrors{{Reason: err.Error()}}
	}
	t.rec.Decision = DecisionInvalid
	t.rec.Message = list.Error()
	fields := make([]map[string]any, len(list))
	for i, e := range list {
		ptr := e.Pointer
		if ptr == "" {
			ptr = "/"
		}
		fields[i] = map[string]any{"pointer": ptr, "reason": e.Reason}
	}
	text := fmt.Sprintf("invalid arguments for %s: %s", tool, list.Error())
	return Result{
		Text:       text,
		IsError:    true,
		Structured: map[string]any{"audit_id": t.rec.AuditID, "error": text, "errors": fields},
	}
}

// result is the outcome of a call that ran: the tool's rendering of the sanitised output plus
// Airlock's standard structured fields, which the tool cannot overwrite. The output is there
// once: a tool's decoded JSON result (Output.Result) replaces stdout, which held its raw form.
func (t *trace) result(r Rendered, res sandbox.Result) Result {
	text := r.Text
	red := t.rec.Redactions
	n := 0
	for _, c := range red {
		n += c
	}
	if n > 0 {
		// A factual note, in Airlock's voice, outside the tool's data.
		text += fmt.Sprintf("\n[airlock: %d secret(s) redacted from this output]", n)
	}
	st := map[string]any{}
	for k, v := range r.Fields {
		st[k] = v
	}
	t.standard(st, res)
	if t.out.Result != nil {
		st["result"] = t.out.Result
	} else {
		st["stdout"] = t.out.Stdout
	}
	st["stderr"] = t.out.Stderr
	return Result{Text: text, Structured: st, IsError: r.IsError, Verdict: policies.Verdict(t.verdict()), AuditID: t.rec.AuditID}
}

// standard sets the structured fields every result of a call that ran carries.
func (t *trace) standard(st map[string]any, res sandbox.Result) {
	st["exit_code"] = res.ExitCode
	st["truncated"] = t.rec.Truncated
	st["timed_out"] = res.TimedOut
	st["oom_killed"] = res.OOMKilled
	st["duration_ms"] = res.Duration.Milliseconds()
	st["audit_id"] = t.rec.AuditID
	st["redactions"] = maps.Clone(t.rec.Redactions)
	// Everything above except audit_id came out of the sandbox: data to read, never
	// instructions to follow.
	st["untrusted"] = true
	if len(res.Loosened) > 0 {
		st["loosened"] = slices.Clone(res.Loosened)
	}
	if len(t.rec.Egress) > 0 {
		conns := make([]any, 0, min(len(t.rec.Egress), MaxRecordEgress))
		for _, e := range t.rec.Egress[:min(len(t.rec.Egress), MaxRecordEgress)] {
			c := map[string]any{"host": e.Host, "port": e.Port, "allowed": e.Allowed, "bytes": e.BytesSent + e.BytesReceived}
			if e.Code != "" {
				c["code"] = e.Code
			}
			conns = append(conns, c)
		}
		st["egress"] = conns
	}
}

// withheld is the result of a call whose output would have cost more than the redaction
// budget to check for secrets: none of the output is returned (fail closed), and the text
// says how to ask for less.
func (t *trace) withheld(res sandbox.Result) Result {
	n := len(res.Stdout) + len(res.Stderr)
	msg := withheldText(n)
	note := fmt.Sprintf("output withheld: %d bytes exceed the redaction budget", n)
	if t.rec.Message != "" {
		note = t.rec.Message + "; " + note
	}
	t.rec.Message = note
	st := map[string]any{"withheld": true}
	t.standard(st, res)
	return Result{Text: msg, Structured: st, IsError: true, Verdict: policies.Verdict(t.verdict()), AuditID: t.rec.AuditID}
}
