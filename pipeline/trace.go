package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/airlock-mcp/airlock/policies"
)

// trace accumulates one call's audit record and stage timings as the call moves through the
// stages.
type trace struct {
	p     *Pipeline
	start time.Time
	last  time.Time
	rec   Record
	// auditDown: the call was refused because the audit log had already failed.
	auditDown bool
}

func newTrace(p *Pipeline, call Call) *trace {
	now := p.now()
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	sum := sha256.Sum256(call.Args)
	return &trace{
		p:     p,
		start: now,
		last:  now,
		rec: Record{
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
	now := t.p.now()
	t.rec.StageMS[name] += ms(now.Sub(t.last))
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
