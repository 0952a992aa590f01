package pipeline

import (
	"context"
	"fmt"
	"time"
)

// Observer learns what each call did once stage 7 is over; the runtime turns that into
// Prometheus metrics and OpenTelemetry spans. It is an interface here so that the pipeline
// depends on neither. Observe runs on the call's goroutine after the audit record was
// appended (or failed to be): it must be quick and must not block, and it cannot change the
// call, its result or its record, which are final by then.
type Observer interface {
	Observe(ctx context.Context, c *CallReport)
}

// CallReport is one call as an Observer sees it. Everything in it is read-only.
type CallReport struct {
	// Record is the call's closing audit record as appended. For a call refused without a
	// record of its own (Unrecorded) it is the record that was not written.
	Record *Record
	// Stages are the stages the call went through, in order, each with when it began and
	// ended (the pipeline's clock). A stage can appear twice: sanitize runs on the output,
	// then on the tool's rendering of it. The last is always StageAudit, unless Unrecorded.
	Stages []StageSpan
	// Start and End bound the whole call, stage 7 included.
	Start, End time.Time
	// AuditErr is why the record could not be written; nil when it was.
	AuditErr error
	// Unrecorded: the call was refused, without a record, while the audit log's disk is full.
	Unrecorded bool
}

// StageSpan is one stage of one call.
type StageSpan struct {
	Name       string // StageSchema ... StageAudit
	Start, End time.Time
}

// maxStageSpans bounds a call's stage list: seven stages, sanitize twice, and room to spare.
// A call never has more; the bound keeps a future loop from growing it without limit.
const maxStageSpans = 16

// span records one stage of t as it ends.
func (t *trace) span(name string, start, end time.Time) {
	if len(t.spans) < maxStageSpans {
		t.spans = append(t.spans, StageSpan{Name: name, Start: start, End: end})
	}
}

// observe hands the finished call to the Observer, if there is one.
func (p *Pipeline) observe(ctx context.Context, t *trace) {
	if p.obs == nil {
		return
	}
	p.obs.Observe(ctx, &CallReport{Record: &t.rec, Stages: t.spans, Start: t.start, End: t.end,
		AuditErr: t.auditErr, Unrecorded: t.unrecorded})
}

// validTraceID reports whether id is a W3C trace id: 32 lowercase hex digits, not all zero.
// Call.TraceID is recorded only in that form, so the field stays bounded and plain.
func validTraceID(id string) bool {
	if len(id) != 32 {
		return false
	}
	zero := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c == '0':
		case '1' <= c && c <= '9', 'a' <= c && c <= 'f':
			zero = false
		default:
			return false
		}
	}
	return !zero
}

// AuditPath is the audit log's file name.
func (p *Pipeline) AuditPath() string { return p.trace.audit.Path() }

// AuditStatus reports whether the audit log accepts records now: nil, or why not (the error
// that stopped it, or closing records held in memory because its disk is full). It writes
// nothing, so a health check may call it as often as it likes.
func (p *Pipeline) AuditStatus() error {
	if err := p.trace.audit.Err(); err != nil {
		return err
	}
	if n := p.trace.audit.held(); n > 0 {
		return fmt.Errorf("%w: %d closing record(s) held in memory until there is space", ErrAuditFull, n)
	}
	return nil
}

// held is how many closing records wait in memory for disk space.
func (l *AuditLog) held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}
