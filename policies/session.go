package policies

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// SessionState is what the runtime knows of the MCP session a call belongs to, as it stood
// before the call: the session.* paths read it. The runtime keeps one per session (see
// runtime/history.go); `airlock policy eval --session-json` and the cases' session_state
// supply one by hand. It is an input like the arguments: the same arguments, grant and state
// always get the same verdict.
type SessionState struct {
	// Tainted: a tool marked untrusted (web content, a third-party upstream) ran in this
	// session, so what the agent does next may follow instructions planted in its output.
	// A state with TaintedBy set is tainted whatever Tainted says.
	Tainted bool `json:"tainted"`
	// TaintedBy names the untrusted tools that ran, in first-call order.
	TaintedBy []string `json:"tainted_by,omitempty"`
	// Tools names the tools whose calls executed in this session, in first-call order, each
	// once; the current call is not among them.
	Tools []string `json:"tools,omitempty"`
	// Labels are those label_if rules gave the session (see labels.go).
	Labels []string `json:"labels,omitempty"`
	// Calls is how many tool calls the session made before this one (denied ones included).
	Calls int64 `json:"calls"`
	// Age is how long the session has been open (since its first call).
	Age time.Duration `json:"-"`
}

// IsTainted reports whether the state is tainted: Tainted, or any TaintedBy. Reading both
// means a state written by hand with only tainted_by still counts (fail closed).
func (s *SessionState) IsTainted() bool { return s.Tainted || len(s.TaintedBy) > 0 }

// sessionInput is a SessionState as people write it: JSON for --session-json, YAML in cases.
// age is a Go duration ("90m").
type sessionInput struct {
	Tainted   bool     `json:"tainted" yaml:"tainted"`
	TaintedBy []string `json:"tainted_by" yaml:"tainted_by"`
	Tools     []string `json:"tools" yaml:"tools"`
	Labels    []string `json:"labels" yaml:"labels"`
	Calls     int64    `json:"calls" yaml:"calls"`
	Age       string   `json:"age" yaml:"age"`
}

func (in sessionInput) state() (SessionState, error) {
	st := SessionState{Tainted: in.Tainted, TaintedBy: in.TaintedBy, Tools: in.Tools, Labels: in.Labels, Calls: in.Calls}
	if in.Calls < 0 {
		return st, fmt.Errorf("calls must not be negative")
	}
	if in.Age != "" {
		d, err := time.ParseDuration(in.Age)
		if err != nil || d < 0 {
			return st, fmt.Errorf("age %q is not a non-negative Go duration like 90m or 2h", in.Age)
		}
		st.Age = d
	}
	return st, nil
}

// ParseSessionState reads a session state written as JSON, strictly (an unknown key is an
// error: a misspelt "tainted" would test a clean session):
//
//	{"tainted": true, "tainted_by": ["http_fetch"], "tools": ["read_file"],
//	 "labels": ["secret"], "calls": 12, "age": "90m"}
func ParseSessionState(data []byte) (SessionState, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var in sessionInput
	if err := dec.Decode(&in); err != nil {
		return SessionState{}, err
	}
	if dec.More() {
		return SessionState{}, fmt.Errorf("data after the JSON object")
	}
	return in.state()
}

// sessionPaths are the session.* paths besides session.id, and their roots.
var sessionPaths = map[string]pathRoot{
	"session.tainted":    rootSessionTainted,
	"session.tainted_by": rootSessionTaintedBy,
	"session.tools":      rootSessionTools,
	"session.labels":     rootSessionLabels,
	"session.calls":      rootSessionCalls,
}

// isState reports whether the root is one of the session state's values.
func (r pathRoot) isState() bool { return r >= rootSessionTainted }

// isList reports whether the root is an array of names (a final .* tests each).
func (r pathRoot) isList() bool {
	return r == rootSessionTaintedBy || r == rootSessionTools || r == rootSessionLabels
}

// stateList is the array of names a list root reads.
func stateList(r pathRoot, st *SessionState) []string {
	switch r {
	case rootSessionTaintedBy:
		return st.TaintedBy
	case rootSessionTools:
		return st.Tools
	case rootSessionLabels:
		return st.Labels
	}
	return nil
}

// resolveState is the value of a session state path, in the shapes args values have
// (bool, int64, []any of strings), so every operator judges it as it judges an argument. A
// state value is never missing: a clean session's tainted is false and its lists are empty.
func (p *compiledPath) resolveState(req *Request) any {
	st := &req.State
	switch p.root {
	case rootSessionTainted:
		return st.IsTainted()
	case rootSessionCalls:
		return st.Calls
	}
	names := stateList(p.root, st)
	arr := make([]any, len(names))
	for i, n := range names {
		arr[i] = n
	}
	return arr
}

// budget is the policy's top-level "session" section: per-session budgets.
type budget struct {
	maxCalls    int64         // 0: none
	maxDuration time.Duration // 0: none
}

// Rule pointers of the session budgets.
const (
	ptrMaxCalls    = "/session/max_calls"
	ptrMaxDuration = "/session/max_duration"
)

// check denies a call beyond a budget. A budget bounds what one session may do: a runaway
// agent loop, or one steered by content it read, stops at the budget; the message tells the
// agent (and its user) that only a new session continues, which a person then sees.
func (b *budget) check(req *Request, sha string) (Decision, bool) {
	st := &req.State
	if b.maxCalls > 0 && st.Calls >= b.maxCalls {
		return Decision{Verdict: Deny, Rule: ptrMaxCalls, PolicySHA256: sha,
			Message: fmt.Sprintf("this MCP session has made its %d calls (the policy's session.max_calls); start a new MCP session (reconnect the client) to continue", b.maxCalls)}, true
	}
	if b.maxDuration > 0 && st.Age > b.maxDuration {
		return Decision{Verdict: Deny, Rule: ptrMaxDuration, PolicySHA256: sha,
			Message: fmt.Sprintf("this MCP session is older than %s (the policy's session.max_duration); start a new MCP session (reconnect the client) to continue", b.maxDuration)}, true
	}
	return Decision{}, false
}

// session compiles the top-level "session" section.
func (c *compiler) session(n *node) {
	if n == nil || !c.object("/session", n, "max_calls", "max_duration", "description") {
		return
	}
	c.str("/session/description", get(n, "description"), false)
	if m := get(n, "max_calls"); m != nil {
		if num, ok := parseNumber(m.str); m.kind != kindNumber || !ok || !num.isInt || num.i < 1 {
			c.errf(ptrMaxCalls, "must be a positive integer, not %s", describeNode(m))
		} else {
			c.p.budget.maxCalls = num.i
		}
	}
	if s, ok := c.str(ptrMaxDuration, get(n, "max_duration"), false); ok {
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			c.errf(ptrMaxDuration, "%q is not a Go duration; write one like \"2h\" or \"90m\"", s)
		case d <= 0:
			c.errf(ptrMaxDuration, "must be positive, not %q", s)
		default:
			c.p.budget.maxDuration = d
		}
	}
}
