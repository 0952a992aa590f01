package policies

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

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
