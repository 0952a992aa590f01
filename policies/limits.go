package policies

import (
	"fmt"
	"math"
	"time"
)

type limitRule struct {
	counter string
	max     int64
	window  string
	scope   string
	inc     *compiledPath // increment_from; nil means 1 unit per call
	ptr     string        // /tools/<tool>/limits/<counter>
	defPtr  string        // /tools/<tool>/limits/<index>, for shared-counter errors
	custom  string
	msg     string
}

// units is how many units a call takes: 1, or the value of increment_from. That value must be a
// non-negative finite number; a fraction is rounded up (a refund of 12.5 spends 13 units), and
// anything else (missing, a string, negative) denies, since a budget that can be skipped by
// leaving the amount out is no budget.
func (l *limitRule) units(req *Request) (int64, bool) {
	if l.inc == nil {
		return 1, true
	}
	v, lk := l.inc.resolve(req)
	if lk != found {
		return 0, false
	}
	n, ok := asNumber(v)
	if !ok {
		return 0, false
	}
	if n.isInt {
		return n.i, n.i >= 0
	}
	if n.f < 0 || n.f >= math.MaxInt64 {
		return 0, false
	}
	return int64(math.Ceil(n.f)), true
}

func (l *limitRule) key(req *Request, now time.Time) CounterKey {
	k := CounterKey{Counter: l.counter, Scope: l.scope}
	switch l.scope {
	case "grant":
		k.Subject = req.Grant.ID
	case "session":
		k.Subject = req.Session
	}
	k.Window, k.End = windowOf(now, l.window)
	return k
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
