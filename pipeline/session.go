package pipeline

import (
	"slices"

	"github.com/airlock-mcp/airlock/policies"
)

// SessionHistory is what the caller (the runtime) keeps of the call's MCP session: the policy
// judges the call against State (session.* paths, session budgets), and the pipeline reports
// through Executed that the call's tool ran, so the session becomes tainted or labelled.
//
// Executed is called once the tool has run (the same moment rate-limit units are committed:
// a sandbox started, or an upstream request may have been sent, even if the call was then
// cancelled) and before Run returns, so the result that may carry untrusted content never
// reaches the agent ahead of the taint it causes. A call that never ran (denied, declined,
// invalid, failed before its sandbox started) is not reported: it showed the agent nothing.
type SessionHistory interface {
	// State is the session as it stood before this call. It must not change during the
	// call: the decision is a function of it.
	State() policies.SessionState
	// Executed records that this call's tool ran, with the labels its label_if rules give.
	Executed(labels []string)
}

// sessionState is the call's session state; a call without a history is a new session.
func (c *Call) sessionState() policies.SessionState {
	if c.History == nil {
		return policies.SessionState{}
	}
	return c.History.State()
}

// MaxRecordSessionNames is how many names of the session's tainted_by, and of the labels a
// call gave, an audit record lists (the first ones).
const MaxRecordSessionNames = 8

// recordSession puts the state the policy judged into the record: whether the session was
// tainted and by which tools, so an operator reading a denial or an approval sees why.
func (t *trace) recordSession(st *policies.SessionState) {
	t.rec.SessionTainted = st.IsTainted()
	t.rec.SessionTaintedBy = slices.Clone(st.TaintedBy[:min(len(st.TaintedBy), MaxRecordSessionNames)])
}

// executed reports a call whose tool ran to its session's history and records the labels it
// gave the session.
func (t *trace) executed(call *Call) {
	if len(t.labels) > 0 {
		t.rec.Labels = slices.Clone(t.labels[:min(len(t.labels), MaxRecordSessionNames)])
	}
	if call.History != nil {
		call.History.Executed(t.labels)
	}
}
