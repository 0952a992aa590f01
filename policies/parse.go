package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Issue is one problem found while validating a policy document, located by a JSON pointer
// (RFC 6901) into the document, e.g. /tools/run_command/require/0/conditions/1/value.
type Issue struct {
	Pointer string `json:"pointer"`
	Message string `json:"message"`
}

// ValidationError lists every problem found in a policy document. A policy with any issue is
// not loaded at all: half a policy is a policy nobody reviewed.
type ValidationError struct {
	Name   string
	Issues []Issue
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, is := range e.Issues {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s: %s: %s", e.Name, is.Pointer, is.Message)
	}
	return b.String()
}

// Load reads and parses a policy file.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Parse(path, data)
}

// Parse reads a JSON or YAML policy document; name is used in error messages. The document is
// validated strictly and compiled; on any error nothing is returned (a missing or invalid
// policy denies everything, which is the caller's nil *Policy / nil *Engine behaviour).
func Parse(name string, data []byte) (*Policy, error) {
	root, err := readDocument(name, data)
	if err != nil {
		ptr := "/"
		var de *docError
		if errors.As(err, &de) && de.ptr != "" {
			ptr = de.ptr
		}
		return nil, &ValidationError{Name: name, Issues: []Issue{{Pointer: ptr, Message: err.Error()}}}
	}
	sum := sha256.Sum256(data)
	c := &compiler{p: &Policy{
		name:   name,
		sha:    hex.EncodeToString(sum[:]),
		def:    Deny,
		hidden: map[string]struct{}{},
		tools:  map[string]*tool{},
	}, counters: map[string]*limitRule{}}
	c.document(root)
	if len(c.issues) > 0 {
		return nil, &ValidationError{Name: name, Issues: c.issues}
	}
	return c.p, nil
}

type compiler struct {
	p        *Policy
	issues   []Issue
	counters map[string]*limitRule // counter name -> first definition
}

func (c *compiler) errf(ptr, format string, args ...any) {
	c.issues = append(c.issues, Issue{Pointer: ptr, Message: fmt.Sprintf(format, args...)})
}

// escapePointer escapes one JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// join appends one token (an object key or an array index) to a JSON pointer.
func join[T string | int](ptr string, tok T) string {
	switch t := any(tok).(type) {
	case int:
		return ptr + "/" + strconv.Itoa(t)
	case string:
		return ptr + "/" + escapePointer(t)
	}
	return ptr
}

// object checks that n is an object with only the allowed keys. Unknown keys are errors: a
// misspelt "deny-if" that is silently ignored is a rule that never fires.
func (c *compiler) object(ptr string, n *node, allowed ...string) bool {
	if n.kind != kindObject {
		c.errf(ptrOrRoot(ptr), "must be an object, not %s", n.kind)
		return false
	}
	for _, k := range n.keys {
		if !slices.Contains(allowed, k) {
			c.errf(join(ptr, k), "unknown key %q; allowed here: %s", k, strings.Join(allowed, ", "))
		}
	}
	return true
}

func ptrOrRoot(ptr string) string {
	if ptr == "" {
		return "/"
	}
	return ptr
}

func get(n *node, key string) *node {
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

func (c *compiler) str(ptr string, n *node, required bool) (string, bool) {
	if n == nil {
		if required {
			c.errf(ptr, "is required")
		}
		return "", false
	}
	if n.kind != kindString {
		c.errf(ptr, "must be a string, not %s", n.kind)
		return "", false
	}
	return n.str, true
}

func (c *compiler) document(root *node) {
	if !c.object("", root, "version", "default", "hide", "session", "tools", "description") {
		return
	}
	if v := get(root, "version"); v != nil {
		if !(v.kind == kindString && v.str == "1") && !(v.kind == kindNumber && v.str == "1") {
			c.errf("/version", "unsupported version; this Airlock reads version \"1\"")
		}
	}
	c.str("/description", get(root, "description"), false)
	if d := get(root, "default"); d != nil {
		if s, ok := c.str("/default", d, false); ok {
			switch Verdict(s) {
			case Allow, Deny, Approve:
				c.p.def = Verdict(s)
			default:
				c.errf("/default", "must be \"allow\", \"deny\" or \"approve\", not %q", s)
			}
		}
	}
	if h := get(root, "hide"); h != nil {
		if h.kind != kindArray {
			c.errf("/hide", "must be an array of tool names, not %s", h.kind)
		} else {
			for i, it := range h.items {
				ptr := join("/hide", i)
				if s, ok := c.str(ptr, it, true); ok {
					if s == "" {
						c.errf(ptr, "empty tool name")
					} else if _, dup := c.p.hidden[s]; dup {
						c.errf(ptr, "tool %q is listed twice", s)
					}
					c.p.hidden[s] = struct{}{}
				}
			}
		}
	}
	c.session(get(root, "session"))
	if t := get(root, "tools"); t != nil {
		if t.kind != kindObject {
			c.errf("/tools", "must be an object keyed by tool name, not %s", t.kind)
		} else {
			for i, name := range t.keys {
				c.tool(join("/tools", name), name, t.vals[i])
			}
		}
	}
}

func (c *compiler) tool(ptr, name string, n *node) {
	if name == "" {
		c.errf(ptr, "empty tool name")
		return
	}
	if !c.object(ptr, n, "description", "require", "deny_if", "limits", "approve_if", "label_if") {
		return
	}
	c.str(join(ptr, "description"), get(n, "description"), false)
	t := &tool{name: name, ptr: ptr}
	t.require = c.rules(ptr, "require", name, get(n, "require"))
	t.denyIf = c.rules(ptr, "deny_if", name, get(n, "deny_if"))
	t.approveIf = c.rules(ptr, "approve_if", name, get(n, "approve_if"))
	t.labelIf = c.rules(ptr, "label_if", name, get(n, "label_if"))
	t.limits = c.limits(ptr, name, get(n, "limits"))
	t.visibility = visibilityRules(t.require)
	c.p.tools[name] = t
}

func (c *compiler) rules(toolPtr, section, toolName string, n *node) []*rule {
	if n == nil {
		return nil
	}
	ptr := join(toolPtr, section)
	if n.kind != kindArray {
		c.errf(ptr, "must be an array of rules, not %s", n.kind)
		return nil
	}
	msgKey := "on_deny"
	switch section {
	case "approve_if":
		msgKey = "message"
	case "label_if":
		msgKey = "label"
	}
	var out []*rule
	for i, rn := range n.items {
		rptr := join(ptr, i)
		if !c.object(rptr, rn, "conditions", msgKey, "description") {
			continue
		}
		c.str(join(rptr, "description"), get(rn, "description"), false)
		r := &rule{}
		before := len(c.issues)
		if section == "label_if" {
			if l, ok := c.str(join(rptr, "label"), get(rn, "label"), true); ok {
				if err := checkLabel(l); err != nil {
					c.errf(join(rptr, "label"), "%v", err)
				}
				r.label = l
			}
		} else {
			r.custom, _ = c.str(join(rptr, msgKey), get(rn, msgKey), false)
			r.tmpl = c.template(join(rptr, msgKey), r.custom)
		}
		cn := get(rn, "conditions")
		cptr := join(rptr, "conditions")
		switch {
		case cn == nil:
			c.errf(cptr, "is required")
			continue
		case cn.kind != kindArray:
			c.errf(cptr, "must be an array of conditions, not %s", cn.kind)
			continue
		case len(cn.items) == 0:
			// An empty list would be vacuously true: a deny_if that denies everything, or a
			// require that checks nothing. Either way the author meant something else.
			c.errf(cptr, "empty condition list; a rule needs at least one condition")
			continue
		}
		ok := true
		var texts []string
		for j, cnd := range cn.items {
			cd, good := c.cond(join(cptr, j), cnd, toolPtr, section, toolName)
			ok = ok && good
			r.conds = append(r.conds, cd)
			texts = append(texts, cd.text)
		}
		if !ok || len(c.issues) > before {
			continue
		}
		// A firing deny_if / approve_if rule is named by its first condition.
		r.ptr = r.conds[0].ptr
		summary := strings.Join(texts, " and ")
		switch section {
		case "deny_if":
			r.msg = toolName + " denied: " + summary
		case "approve_if":
			r.msg = toolName + " needs approval: " + summary
		}
		if r.custom != "" {
			r.msg = r.custom
		}
		out = append(out, r)
	}
	return out
}

func (c *compiler) cond(ptr string, n *node, toolPtr, section, toolName string) (cond, bool) {
	var cd cond
	if !c.object(ptr, n, "path", "op", "value", "description") {
		return cd, false
	}
	before := len(c.issues)
	c.str(join(ptr, "description"), get(n, "description"), false)
	ps, okPath := c.str(join(ptr, "path"), get(n, "path"), true)
	if okPath {
		p, err := compilePath(ps)
		if err != nil {
			c.errf(join(ptr, "path"), "%v", err)
			okPath = false
		}
		cd.path = p
	}
	opName, okOp := c.str(join(ptr, "op"), get(n, "op"), true)
	if okOp {
		op, known := parseOp(opName)
		if !known {
			c.errf(join(ptr, "op"), "unknown operator %q; known: %s", opName, strings.Join(operatorNames(), " "))
			okOp = false
		}
		cd.op = op
	}
	if !okPath || !okOp {
		return cd, false
	}
	v := get(n, "value")
	c.value(join(ptr, "value"), &cd, opName, v)
	if len(c.issues) > before {
		return cd, false
	}
	cd.ptr = join(join(toolPtr, section), ps+"-"+opName)
	cd.text = ps + " " + opName
	if v != nil {
		cd.text += " " + nodeJSON(v)
	}
	cd.msgFail = toolName + " denied: requires " + cd.text
	cd.msgMissing = toolName + " denied: " + ps + " is missing (requires " + cd.text + ")"
	hint := mismatchHint(cd.op, opName)
	if cd.path.words {
		hint = "is not one simple shell command with literal words"
	}
	cd.msgMismatch = toolName + " denied: " + ps + " " + hint + " (requires " + cd.text + ")"
	return cd, true
}
