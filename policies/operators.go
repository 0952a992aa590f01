package policies

import (
	"net/netip"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Operators. Every operator takes the value found at the condition's path ("the argument")
// and the condition's "value" ("the constant"). Each yields one of four outcomes:
//
//	holds     the condition is true
//	fails     the condition is false
//	missing   the path does not resolve (absent key, index out of range, null)
//	mismatch  the argument has a type or form the operator cannot judge safely
//
// require treats missing and mismatch as failure (deny); deny_if and approve_if treat missing as
// "does not hold" and mismatch as "holds" (deny / ask a human). Types never coerce: a JSON
// number never equals a string, "5" is not 5, and true is not "true".
//
//	eq, neq        constant: a string, number or boolean. Argument of the same JSON type,
//	               compared exactly (strings byte for byte, numbers by value: 1 == 1.0).
//	               Another type is a mismatch, so neq is not a way around eq.
//	lt lte gt gte  constant: a number. Argument: a number, compared by value (integers exactly).
//	in, not_in     constant: a non-empty array of strings/numbers/booleans. Argument: a scalar.
//	               Exact membership by the eq rule: "#general-engineering" is not in
//	               ["#general"], and 5 is not in ["5"]. An array or object argument is a mismatch.
//	exists         constant: absent or true (the path must resolve to a non-null value), or false
//	               (it must not). Never missing; a path through a scalar is a mismatch.
//	regex          constant: a Go RE2 expression, compiled at load. Argument: a string. Matches
//	               anywhere unless anchored: write ^...$ for a whole-value match.
//	contains       constant: a scalar. Argument a string: substring test (constant must be a
//	               string). Argument an array: some element equals the constant by the eq rule.
//	glob           constant: a pattern or an array of them. Argument: a string matched whole.
//	               * any run of characters except '/', ? one character except '/',
//	               ** any run including '/', "**/" zero or more directories, [abc] a class.
//	prefix, suffix constant: a non-empty string or an array of them. Argument: a string.
//	path_within    constant: workspace-relative roots ("src/", "docs"). Argument: a file path.
//	               See pathwithin.go.
//	host_in        constant: host names, "*.suffix" patterns and IP literals. Argument: an
//	               http(s) URL. See hostin.go.
//	cidr           constant: CIDR prefixes or addresses. Argument: an IP address (canonical
//	               form only; "0x7f.1" and zones are a mismatch). IPv4-mapped IPv6 is unmapped.
//	len_lte, len_gte  constant: a non-negative integer. Argument: a string (length in Unicode
//	               code points), an array (elements) or an object (keys).

type opcode int

const (
	opEq opcode = iota
	opNeq
	opLt
	opLte
	opGt
	opGte
	opIn
	opNotIn
	opExists
	opRegex
	opContains
	opGlob
	opPrefix
	opSuffix
	opPathWithin
	opHostIn
	opCIDR
	opLenLte
	opLenGte
)

// operatorNames lists every operator in documentation order.
func operatorNames() []string {
	return []string{"eq", "neq", "lt", "lte", "gt", "gte", "in", "not_in", "exists", "regex",
		"contains", "glob", "prefix", "suffix", "path_within", "host_in", "cidr", "len_lte", "len_gte"}
}

func parseOp(s string) (opcode, bool) {
	for i, n := range operatorNames() {
		if n == s {
			return opcode(i), true
		}
	}
	return 0, false
}

type outcome int

const (
	holds outcome = iota
	fails
	absent
	badType
)

func boolOutcome(b bool) outcome {
	if b {
		return holds
	}
	return fails
}

// cond is one compiled condition.
type cond struct {
	path    compiledPath
	op      opcode
	ptr     string // rule pointer: /tools/<tool>/<section>/<path>-<op>
	text    string // "args.command regex \"^go test\"" for generated messages
	sc      scalar
	scs     []scalar
	num     number
	strs    []string
	re      *regexp.Regexp
	res     []*regexp.Regexp
	hosts   hostSet
	nets    []netip.Prefix
	length  int
	present bool // exists: true means the path must resolve

	msgFail, msgMissing, msgMismatch string // generated require messages
}

// eval decides the condition for req. It does not allocate for any operator except host_in,
// whose URL parsing does, nor for any path except a |words path, whose words it builds.
func (c *cond) eval(req *Request, ws string) outcome {
	if c.path.root.isState() {
		// The session state's values are judged as argument values of the same shape.
		v := c.path.resolveState(req)
		if c.path.each {
			return c.evalEach(v, ws)
		}
		return c.evalValue(v, found, ws)
	}
	if c.path.root != rootArgs {
		// grant.* and session.id are strings; they are judged without boxing them into an
		// interface (which would allocate on every call).
		str, ok := c.path.resolveString(req)
		if c.op == opExists {
			return boolOutcome(ok == c.present)
		}
		if !ok {
			return absent
		}
		return c.evalString(str, ws)
	}
	if !c.path.words && !c.path.each {
		v, l := c.path.resolve(req)
		return c.evalValue(v, l, ws)
	}
	v, l := c.path.resolveSelected(req)
	if c.path.each && l == found {
		return c.evalEach(v, ws)
	}
	return c.evalValue(v, l, ws)
}

// evalEach decides a condition whose path ends in "*": it holds when it holds for some element
// of the array. An empty array is missing; an element the operator cannot judge makes the
// outcome a mismatch unless another element holds, so a deny_if fires on it (fail closed).
func (c *cond) evalEach(v any, ws string) outcome {
	arr, ok := v.([]any)
	if !ok {
		return c.evalValue(nil, mismatch, ws)
	}
	if len(arr) == 0 {
		return c.evalValue(nil, missing, ws)
	}
	res := fails
	for _, e := range arr {
		l := found
		if e == nil {
			l = missing
		}
		switch c.evalValue(e, l, ws) {
		case holds:
			return holds
		case badType:
			res = badType
		}
	}
	return res
}

// evalValue decides the condition for the value v that its path resolved to (l).
func (c *cond) evalValue(v any, l lookup, ws string) outcome {
	if c.op == opExists {
		switch l {
		case found:
			return boolOutcome(c.present)
		case missing:
			return boolOutcome(!c.present)
		}
		return badType
	}
	switch l {
	case missing:
		return absent
	case mismatch:
		return badType
	}
	if str, ok := v.(string); ok {
		return c.evalString(str, ws)
	}
	switch c.op {
	case opEq, opNeq:
		eq, ok := c.sc.match(v)
		if !ok {
			return badType
		}
		return boolOutcome(eq == (c.op == opEq))
	case opLt, opLte, opGt, opGte:
		n, ok := asNumber(v)
		if !ok {
			return badType
		}
		r := cmpNumber(n, c.num)
		switch c.op {
		case opLt:
			return boolOutcome(r < 0)
		case opLte:
			return boolOutcome(r <= 0)
		case opGt:
			return boolOutcome(r > 0)
		}
		return boolOutcome(r >= 0)
	case opIn, opNotIn:
		if !isScalarValue(v) {
			return badType
		}
		member := false
		for i := range c.scs {
			if eq, ok := c.scs[i].match(v); ok && eq {
				member = true
				break
			}
		}
		return boolOutcome(member == (c.op == opIn))
	case opContains:
		if a, ok := v.([]any); ok {
			for _, e := range a {
				if eq, ok := c.sc.match(e); ok && eq {
					return holds
				}
			}
			return fails
		}
		return badType
	case opLenLte, opLenGte:
		var n int
		switch a := v.(type) {
		case []any:
			n = len(a)
		case map[string]any:
			n = len(a)
		default:
			return badType
		}
		return c.lenOutcome(n)
	}
	// Every remaining operator takes a string only.
	return badType
}

func (c *cond) lenOutcome(n int) outcome {
	if c.op == opLenLte {
		return boolOutcome(n <= c.length)
	}
	return boolOutcome(n >= c.length)
}

// evalString decides the condition for a string argument.
func (c *cond) evalString(s string, ws string) outcome {
	switch c.op {
	case opEq, opNeq:
		if c.sc.kind != kindString {
			return badType
		}
		return boolOutcome((s == c.sc.s) == (c.op == opEq))
	case opIn, opNotIn:
		member := false
		for i := range c.scs {
			if c.scs[i].kind == kindString && c.scs[i].s == s {
				member = true
				break
			}
		}
		return boolOutcome(member == (c.op == opIn))
	case opContains:
		if c.sc.kind != kindString {
			return badType
		}
		return boolOutcome(strings.Contains(s, c.sc.s))
	case opLenLte, opLenGte:
		return c.lenOutcome(utf8.RuneCountInString(s))
	case opRegex:
		return boolOutcome(c.re.MatchString(s))
	case opGlob:
		for _, re := range c.res {
			if re.MatchString(s) {
				return holds
			}
		}
		return fails
	case opPrefix:
		for _, p := range c.strs {
			if strings.HasPrefix(s, p) {
				return holds
			}
		}
		return fails
	case opSuffix:
		for _, p := range c.strs {
			if strings.HasSuffix(s, p) {
				return holds
			}
		}
		return fails
	case opPathWithin:
		return pathWithin(s, c.strs, ws)
	case opHostIn:
		return c.hosts.match(s)
	case opCIDR:
		return cidrMatch(s, c.nets)
	}
	// lt, lte, gt, gte: a string is never a number.
	return badType
}

// cidrMatch parses an address strictly. netip refuses the legacy forms ("127.1", "0x7f.0.0.1",
// "2130706433") that inet_aton-style resolvers accept, so they are a mismatch rather than an
// address that happens to fall outside a deny-listed range.
func cidrMatch(s string, nets []netip.Prefix) outcome {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return badType
	}
	a = a.Unmap()
	for _, p := range nets {
		if p.Contains(a) {
			return holds
		}
	}
	return fails
}
