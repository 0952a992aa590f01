package policies

import "sort"

// Policy is a parsed, validated, compiled and immutable policy document. It is safe for
// concurrent use.
type Policy struct {
	name   string
	sha    string
	def    Verdict
	hidden map[string]struct{}
	tools  map[string]*tool
	budget budget // the top-level "session" section
}

type tool struct {
	name      string
	ptr       string // /tools/<name>
	require   []*rule
	denyIf    []*rule
	approveIf []*rule
	labelIf   []*rule // see labels.go
	limits    []*limitRule
	// visibility: require rules that test only grant.* paths, so tools/list can leave the
	// tool out for callers who could never call it.
	visibility []*rule
}

type rule struct {
	conds  []cond
	ptr    string      // for deny_if/approve_if: the pointer of the first condition
	custom string      // on_deny (require, deny_if) or message (approve_if)
	tmpl   msgTemplate // custom split at its {session.*} holes; nil when it has none
	msg    string      // custom, or a generated message
	label  string      // label_if: the label the rule gives
}

// SHA256 is the hex sha256 of the policy document's bytes.
func (p *Policy) SHA256() string {
	if p == nil {
		return ""
	}
	return p.sha
}

// Name is the name the policy was parsed under (usually its file path).
func (p *Policy) Name() string {
	if p == nil {
		return ""
	}
	return p.name
}

// Tools lists the tool names that have an entry, sorted.
func (p *Policy) Tools() []string {
	if p == nil {
		return nil
	}
	out := make([]string, 0, len(p.tools))
	for n := range p.tools {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Evaluate decides req ignoring limits (pure function of policy and request). Absolute paths
// are outside every path_within root here, since no workspace is known; Engine.Decide with
// WithWorkspace judges them against the workspace.
func (p *Policy) Evaluate(req Request) Decision {
	d, t, done := p.check(&req, "")
	if done {
		return d
	}
	return p.approval(t, &req, "")
}

const noPolicyMessage = "no valid policy is loaded; every call is denied"

// check runs hide, default, require and deny_if. done reports that d is final; otherwise t is
// the tool's entry and limits, then approve_if, come next.
func (p *Policy) check(req *Request, ws string) (d Decision, t *tool, done bool) {
	if p == nil {
		return Decision{Verdict: Deny, Rule: "/default", Message: noPolicyMessage}, nil, true
	}
	if _, hidden := p.hidden[req.Tool]; hidden {
		return Decision{Verdict: Deny, Rule: "/hide", Message: "tool " + req.Tool + " is hidden by the policy", PolicySHA256: p.sha}, nil, true
	}
	// Session budgets bind every tool, those without an entry included.
	if d, over := p.budget.check(req, p.sha); over {
		return d, nil, true
	}
	t = p.tools[req.Tool]
	if t == nil {
		d = Decision{Verdict: p.def, Rule: "/default", PolicySHA256: p.sha}
		switch p.def {
		case Deny:
			d.Message = "tool " + req.Tool + " is not in the policy and the default is deny"
		case Approve:
			d.Message = "tool " + req.Tool + " is not in the policy and the default is approve"
		}
		return d, nil, true
	}
	for _, r := range t.require {
		for i := range r.conds {
			c := &r.conds[i]
			o := c.eval(req, ws)
			if o == holds {
				continue
			}
			d = Decision{Verdict: Deny, Rule: c.ptr, Message: r.customText(req), PolicySHA256: p.sha}
			if d.Message == "" {
				switch o {
				case fails:
					d.Message = c.msgFail
				case absent:
					d.Message = c.msgMissing
				default:
					d.Message = c.msgMismatch
				}
			}
			if o == badType {
				d.Message += wordsReason(c, req)
			}
			return d, nil, true
		}
	}
	for _, r := range t.denyIf {
		if r.fires(req, ws) {
			return Decision{Verdict: Deny, Rule: r.ptr, Message: r.message(req), PolicySHA256: p.sha}, nil, true
		}
	}
	return Decision{}, t, false
}

// approval runs approve_if for a call that passed everything else, and label_if for the
// labels the call gives its session if it executes.
func (p *Policy) approval(t *tool, req *Request, ws string) Decision {
	labels := t.labelsFor(req, ws)
	for _, r := range t.approveIf {
		if r.fires(req, ws) {
			return Decision{Verdict: Approve, Rule: r.ptr, Message: r.message(req), PolicySHA256: p.sha, Labels: labels}
		}
	}
	return Decision{Verdict: Allow, Rule: t.ptr, PolicySHA256: p.sha, Labels: labels}
}

// customText is the rule's own message with its {session.*} holes filled.
func (r *rule) customText(req *Request) string {
	if r.tmpl != nil {
		return r.tmpl.render(req)
	}
	return r.custom
}

// message is a firing rule's message, with the reason a |words path could not be judged
// when the rule fired on that mismatch rather than on its operator.
func (r *rule) message(req *Request) string {
	msg := r.msg
	if r.tmpl != nil {
		msg = r.tmpl.render(req)
	}
	for i := range r.conds {
		if why := wordsReason(&r.conds[i], req); why != "" {
			return msg + why
		}
	}
	return msg
}

// wordsReason says why the command at c's |words path has no words a policy can judge (" (args.command|words.0:
// byte 7: ...)"), so the agent learns what to change; "" otherwise.
func wordsReason(c *cond, req *Request) string {
	if why := c.path.wordsError(req); why != "" {
		return " (" + c.path.text + ": " + why + ")"
	}
	return ""
}

// fires reports whether every condition of a deny_if / approve_if rule holds. A missing path
// does not hold; a type mismatch counts as holding, so a deny_if cannot be stepped around by
// sending a number where the rule tests a string (fail closed).
func (r *rule) fires(req *Request, ws string) bool {
	for i := range r.conds {
		switch r.conds[i].eval(req, ws) {
		case fails, absent:
			return false
		}
	}
	return true
}

// visibilityRules picks the require rules whose conditions all test grant.* paths.
func visibilityRules(rs []*rule) []*rule {
	var out []*rule
	for _, r := range rs {
		grantOnly := true
		for i := range r.conds {
			if root := r.conds[i].path.root; root != rootGrantID && root != rootGrantLabel {
				grantOnly = false
			}
		}
		if grantOnly {
			out = append(out, r)
		}
	}
	return out
}

// Visible reports whether tool may appear in tools/list for a caller with grant g: not hidden,
// and either it has an entry whose grant-only require rules hold for g, or the default is not
// deny.
func (p *Policy) Visible(name string, g Grant) bool {
	if p == nil {
		return false
	}
	if _, hidden := p.hidden[name]; hidden {
		return false
	}
	t := p.tools[name]
	if t == nil {
		return p.def != Deny
	}
	req := Request{Tool: name, Grant: g}
	for _, r := range t.visibility {
		for i := range r.conds {
			if r.conds[i].eval(&req, "") != holds {
				return false
			}
		}
	}
	return true
}
