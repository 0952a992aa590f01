package policies

import (
	"fmt"
	"strconv"
	"strings"
)

// label_if gives the session a label when a call that matches it executes:
//
//	"read_file": {"label_if": [{"conditions": [{"path": "args.path", "op": "glob",
//	              "value": "secrets/**"}], "label": "secret"}]}
//
// The decision carries the labels (Decision.Labels); the runtime adds them to the session's
// history only once the call has executed, and later calls test them as session.labels. That
// is how a chain rule is written: deny http_fetch when session.labels contains "secret", so
// what read_file showed the agent cannot leave through the next call. A rule fires as a
// deny_if does (a missing path: no; a type mismatch: yes), so an argument the policy cannot
// judge errs towards the label.

// maxLabel bounds a label's length; labels land in every later decision's state and in
// audit records.
const maxLabel = 64

// checkLabel accepts the labels a policy may give: short names of letters, digits and
// _ . : - (no spaces or braces, so a label reads the same in a message, a list and a record).
func checkLabel(s string) error {
	if s == "" || len(s) > maxLabel {
		return fmt.Errorf("a label is 1 to %d characters, not %d", maxLabel, len(s))
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == ':', r == '-':
		default:
			return fmt.Errorf("label %q: use letters, digits and _ . : -", s)
		}
	}
	return nil
}

// labelsFor is the labels t's label_if rules give req, in rule order, each once; nil when
// none fire (no allocation for tools without label_if).
func (t *tool) labelsFor(req *Request, ws string) []string {
	var out []string
	for _, r := range t.labelIf {
		if !r.fires(req, ws) {
			continue
		}
		dup := false
		for _, l := range out {
			if l == r.label {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, r.label)
		}
	}
	return out
}

// A rule's own message (on_deny, approve_if's message) may name session values in braces:
//
//	"message": "This session read untrusted content from {session.tainted_by}; approve?"
//
// Only values Airlock itself produced can be named: tool names, labels from the policy, the
// call count. Argument values cannot: they are the agent's text, and a message is what the
// human approving the call reads, so {args.x} would let the agent write the approval prompt.

// msgHoles are the names a message may hold in braces.
var msgHoles = map[string]pathRoot{
	"session.tainted_by": rootSessionTaintedBy,
	"session.tools":      rootSessionTools,
	"session.labels":     rootSessionLabels,
	"session.calls":      rootSessionCalls,
}

// msgPart is a literal (hole false) or a session value.
type msgPart struct {
	lit  string
	hole bool
	root pathRoot
}

// msgTemplate is a message split at its holes; nil when it has none.
type msgTemplate []msgPart

// template splits a message at its holes, reporting at ptr a brace that names an args.,
// grant. or unknown session. value. Other braces are literal text.
func (c *compiler) template(ptr, s string) msgTemplate {
	var parts msgTemplate
	holes := false
	rest := s
	for {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			break
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			break
		}
		name := rest[open+1 : open+end]
		root, ok := msgHoles[name]
		switch {
		case ok:
			parts = append(parts, msgPart{lit: rest[:open]}, msgPart{hole: true, root: root})
			holes = true
		case strings.HasPrefix(name, "args.") || strings.HasPrefix(name, "grant.") || strings.HasPrefix(name, "session."):
			c.errf(ptr, "{%s}: a message may name only {session.tainted_by}, {session.tools}, {session.labels} or {session.calls}; "+
				"argument values are the agent's text and do not belong in the prompt a person approves", name)
			parts = append(parts, msgPart{lit: rest[:open+end+1]})
		default:
			parts = append(parts, msgPart{lit: rest[:open+end+1]})
		}
		rest = rest[open+end+1:]
	}
	if !holes {
		return nil
	}
	return append(parts, msgPart{lit: rest})
}

// maxMsgNames is how many names of a list a message shows before "and N more".
const maxMsgNames = 8

// render fills the holes from req's session state.
func (m msgTemplate) render(req *Request) string {
	var b strings.Builder
	for _, p := range m {
		if !p.hole {
			b.WriteString(p.lit)
			continue
		}
		if p.root == rootSessionCalls {
			b.WriteString(strconv.FormatInt(req.State.Calls, 10))
			continue
		}
		names := stateList(p.root, &req.State)
		if len(names) == 0 {
			b.WriteString("none")
			continue
		}
		shown := names[:min(len(names), maxMsgNames)]
		b.WriteString(strings.Join(shown, ", "))
		if more := len(names) - len(shown); more > 0 {
			fmt.Fprintf(&b, " and %d more", more)
		}
	}
	return b.String()
}
