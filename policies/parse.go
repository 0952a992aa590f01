package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"regexp"
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

func join(ptr string, tok any) string {
	switch t := tok.(type) {
	case int:
		return ptr + "/" + strconv.Itoa(t)
	case string:
		return ptr + "/" + escapePointer(t)
	}
	panic("unreachable")
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
	if !c.object("", root, "version", "default", "hide", "tools", "description") {
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
	if !c.object(ptr, n, "description", "require", "deny_if", "limits", "approve_if") {
		return
	}
	c.str(join(ptr, "description"), get(n, "description"), false)
	t := &tool{name: name, ptr: ptr}
	t.require = c.rules(ptr, "require", name, get(n, "require"))
	t.denyIf = c.rules(ptr, "deny_if", name, get(n, "deny_if"))
	t.approveIf = c.rules(ptr, "approve_if", name, get(n, "approve_if"))
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
	if section == "approve_if" {
		msgKey = "message"
	}
	var out []*rule
	for i, rn := range n.items {
		rptr := join(ptr, i)
		if !c.object(rptr, rn, "conditions", msgKey, "description") {
			continue
		}
		c.str(join(rptr, "description"), get(rn, "description"), false)
		r := &rule{}
		r.custom, _ = c.str(join(rptr, msgKey), get(rn, msgKey), false)
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
		if !ok {
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
	cd.msgMismatch = toolName + " denied: " + ps + " " + mismatchHint(cd.op, opName) + " (requires " + cd.text + ")"
	return cd, true
}

// value checks and compiles a condition's constant for its operator.
func (c *compiler) value(ptr string, cd *cond, opName string, v *node) {
	if cd.op == opExists {
		cd.present = true
		if v != nil {
			if v.kind != kindBool {
				c.errf(ptr, "exists takes true or false (or no value), not %s", v.kind)
				return
			}
			cd.present = v.b
		}
		return
	}
	if v == nil {
		c.errf(ptr, "is required for operator %s", opName)
		return
	}
	switch cd.op {
	case opEq, opNeq, opContains:
		s, ok := c.scalar(ptr, v, opName)
		if ok {
			cd.sc = s
		}
	case opLt, opLte, opGt, opGte:
		if v.kind != kindNumber {
			c.errf(ptr, "operator %s compares numbers; the value must be a number, not %s", opName, v.kind)
			return
		}
		n, ok := parseNumber(v.str)
		if !ok {
			c.errf(ptr, "number %s is out of range", v.str)
			return
		}
		cd.num = n
	case opIn, opNotIn:
		if v.kind != kindArray {
			c.errf(ptr, "operator %s needs an array of values, not %s", opName, v.kind)
			return
		}
		if len(v.items) == 0 {
			c.errf(ptr, "operator %s needs a non-empty array", opName)
			return
		}
		for i, it := range v.items {
			if s, ok := c.scalar(join(ptr, i), it, opName); ok {
				cd.scs = append(cd.scs, s)
			}
		}
	case opRegex:
		if v.kind != kindString {
			c.errf(ptr, "operator regex needs a string, not %s", v.kind)
			return
		}
		re, err := regexp.Compile(v.str)
		if err != nil {
			c.errf(ptr, "invalid regex: %s", regexMessage(err))
			return
		}
		cd.re = re
	case opGlob:
		for i, s := range c.strings(ptr, v, opName) {
			re, err := compileGlob(s)
			if err != nil {
				c.errf(listPtr(ptr, v, i), "invalid glob: %v", err)
				continue
			}
			cd.res = append(cd.res, re)
		}
	case opPrefix, opSuffix:
		for i, s := range c.strings(ptr, v, opName) {
			if s == "" {
				c.errf(listPtr(ptr, v, i), "empty %s matches everything; remove the condition instead", opName)
				continue
			}
			cd.strs = append(cd.strs, s)
		}
	case opPathWithin:
		for i, s := range c.strings(ptr, v, opName) {
			r, err := compileRoot(s)
			if err != nil {
				c.errf(listPtr(ptr, v, i), "%v", err)
				continue
			}
			cd.strs = append(cd.strs, r)
		}
	case opHostIn:
		for i, s := range c.strings(ptr, v, opName) {
			if err := compileHost(&cd.hosts, s); err != nil {
				c.errf(listPtr(ptr, v, i), "%v", err)
			}
		}
	case opCIDR:
		for i, s := range c.strings(ptr, v, opName) {
			p, err := parseCIDR(s)
			if err != nil {
				c.errf(listPtr(ptr, v, i), "%v", err)
				continue
			}
			cd.nets = append(cd.nets, p)
		}
	case opLenLte, opLenGte:
		n, ok := parseNumber(v.str)
		if v.kind != kindNumber || !ok || !n.isInt || n.i < 0 || n.i > math.MaxInt32 {
			c.errf(ptr, "operator %s needs a non-negative integer, not %s", opName, describeNode(v))
			return
		}
		cd.length = int(n.i)
	}
}

func describeNode(v *node) string {
	if v.kind == kindNumber {
		return v.str
	}
	return v.kind.String()
}

func parseCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("invalid CIDR %q: %w", s, err)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			if p.Bits() < 0 {
				return p, fmt.Errorf("invalid CIDR %q: IPv4-mapped prefix shorter than /96", s)
			}
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid address %q: write a CIDR like 10.0.0.0/8 or an address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// regexMessage strips Go's "error parsing regexp: " prefix.
func regexMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "error parsing regexp: ")
}

func listPtr(ptr string, v *node, i int) string {
	if v.kind == kindArray {
		return join(ptr, i)
	}
	return ptr
}

// strings accepts one string or a non-empty array of strings.
func (c *compiler) strings(ptr string, v *node, opName string) []string {
	switch v.kind {
	case kindString:
		return []string{v.str}
	case kindArray:
		if len(v.items) == 0 {
			c.errf(ptr, "operator %s needs a string or a non-empty array of strings", opName)
			return nil
		}
		var out []string
		for i, it := range v.items {
			if it.kind != kindString {
				c.errf(join(ptr, i), "operator %s needs strings, not %s", opName, it.kind)
				continue
			}
			out = append(out, it.str)
		}
		return out
	}
	c.errf(ptr, "operator %s needs a string or an array of strings, not %s", opName, v.kind)
	return nil
}

func (c *compiler) scalar(ptr string, v *node, opName string) (scalar, bool) {
	switch v.kind {
	case kindString:
		return scalar{kind: kindString, s: v.str}, true
	case kindBool:
		return scalar{kind: kindBool, b: v.b}, true
	case kindNumber:
		n, ok := parseNumber(v.str)
		if !ok {
			c.errf(ptr, "number %s is out of range", v.str)
			return scalar{}, false
		}
		return scalar{kind: kindNumber, n: n}, true
	}
	c.errf(ptr, "operator %s needs a string, number or boolean, not %s", opName, v.kind)
	return scalar{}, false
}

func (c *compiler) limits(toolPtr, toolName string, n *node) []*limitRule {
	if n == nil {
		return nil
	}
	ptr := join(toolPtr, "limits")
	if n.kind != kindArray {
		c.errf(ptr, "must be an array of limits, not %s", n.kind)
		return nil
	}
	var out []*limitRule
	seen := map[string]bool{}
	for i, ln := range n.items {
		lptr := join(ptr, i)
		if !c.object(lptr, ln, "counter", "max", "window", "scope", "increment_from", "on_deny", "description") {
			continue
		}
		before := len(c.issues)
		c.str(join(lptr, "description"), get(ln, "description"), false)
		l := &limitRule{}
		l.counter, _ = c.str(join(lptr, "counter"), get(ln, "counter"), true)
		if get(ln, "counter") != nil && l.counter == "" && get(ln, "counter").kind == kindString {
			c.errf(join(lptr, "counter"), "empty counter name")
		}
		if seen[l.counter] && l.counter != "" {
			c.errf(join(lptr, "counter"), "counter %q appears twice in this tool's limits", l.counter)
		}
		seen[l.counter] = true
		if m := get(ln, "max"); m == nil {
			c.errf(join(lptr, "max"), "is required")
		} else if num, ok := parseNumber(m.str); m.kind != kindNumber || !ok || !num.isInt || num.i < 1 {
			c.errf(join(lptr, "max"), "must be a positive integer, not %s", describeNode(m))
		} else {
			l.max = num.i
		}
		if w, ok := c.str(join(lptr, "window"), get(ln, "window"), true); ok {
			switch w {
			case "minute", "hour", "day":
				l.window = w
			default:
				c.errf(join(lptr, "window"), "must be \"minute\", \"hour\" or \"day\", not %q", w)
			}
		}
		if s, ok := c.str(join(lptr, "scope"), get(ln, "scope"), true); ok {
			switch s {
			case "grant", "policy", "session":
				l.scope = s
			default:
				c.errf(join(lptr, "scope"), "must be \"grant\", \"policy\" or \"session\", not %q", s)
			}
		}
		if inc, ok := c.str(join(lptr, "increment_from"), get(ln, "increment_from"), false); ok {
			p, err := compilePath(inc)
			switch {
			case err != nil:
				c.errf(join(lptr, "increment_from"), "%v", err)
			case p.root != rootArgs:
				c.errf(join(lptr, "increment_from"), "must name a numeric argument (args.<name>), not %q", inc)
			default:
				l.inc = &p
			}
		}
		l.custom, _ = c.str(join(lptr, "on_deny"), get(ln, "on_deny"), false)
		if len(c.issues) > before {
			continue
		}
		// The same counter may be shared by several tools (one budget for a family of tools),
		// but then it must mean the same thing everywhere.
		if first, ok := c.counters[l.counter]; ok {
			if first.window != l.window || first.scope != l.scope {
				c.errf(lptr, "counter %q is also defined at %s with window %q and scope %q; a shared counter must use the same window and scope", l.counter, first.defPtr, first.window, first.scope)
				continue
			}
		} else {
			c.counters[l.counter] = l
		}
		l.defPtr = lptr
		l.ptr = join(ptr, l.counter)
		l.msg = fmt.Sprintf("%s denied: limit %s reached (%d per %s per %s)", toolName, l.counter, l.max, l.window, l.scope)
		if l.custom != "" {
			l.msg = l.custom
		}
		out = append(out, l)
	}
	return out
}

// nodeJSON renders a constant compactly for generated messages.
func nodeJSON(n *node) string {
	switch n.kind {
	case kindNull:
		return "null"
	case kindBool:
		return strconv.FormatBool(n.b)
	case kindNumber:
		return n.str
	case kindString:
		b, _ := json.Marshal(n.str)
		return string(b)
	case kindArray:
		parts := make([]string, len(n.items))
		for i, it := range n.items {
			parts[i] = nodeJSON(it)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	parts := make([]string, len(n.keys))
	for i, k := range n.keys {
		kb, _ := json.Marshal(k)
		parts[i] = string(kb) + ":" + nodeJSON(n.vals[i])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// mismatchHint says why an argument could not be judged, for generated require messages.
func mismatchHint(op opcode, name string) string {
	switch op {
	case opPathWithin:
		return "is not a clean path inside the workspace (empty, NUL, backslash, \"..\" escape, or absolute outside it)"
	case opHostIn:
		return "is not an http(s) URL with a plain host (userinfo, other schemes and numeric IPv4 forms are refused)"
	case opCIDR:
		return "is not an IP address in canonical form"
	}
	return "has the wrong type for " + name
}
