package pins

import (
	"fmt"
	"strings"
)

// Mode is how an upstream's pins are enforced.
type Mode string

const (
	// Enforce withholds changed and new tools until an operator approves them (the default).
	Enforce Mode = "enforce"
	// Warn allows changed and new tools but flags them (for the audit trail and the logs).
	Warn Mode = "warn"
	// Off checks and records nothing: every tool is allowed.
	Off Mode = "off"
)

// ParseMode parses a mode from configuration; "" is Enforce.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", Enforce:
		return Enforce, nil
	case Warn, Off:
		return Mode(s), nil
	}
	return "", fmt.Errorf("pin mode %q: want enforce, warn or off", s)
}

// UnmarshalText lets a Mode be a configuration field.
func (m *Mode) UnmarshalText(b []byte) error {
	p, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = p
	return nil
}

// Decision is what a pin check, approval or reset decided about one tool.
type Decision string

const (
	// Pinned: the definition matches its pin.
	Pinned Decision = "pinned"
	// FirstUse: the upstream was never seen before; the definition is pinned now (trust on
	// first use).
	FirstUse Decision = "first_use"
	// Changed: the definition differs from its pin; withheld in enforce mode.
	Changed Decision = "changed"
	// New: a tool the upstream did not list when it was pinned; withheld in enforce mode.
	New Decision = "new"
	// Removed: a tool listed before is no longer listed (reported once); its pin is kept, so
	// it comes back only as it was approved.
	Removed Decision = "removed"
	// Invalid: the definition cannot be pinned (malformed or duplicate-key JSON, too large,
	// or its name listed twice); withheld unless the mode is off.
	Invalid Decision = "invalid"
	// Unreadable: the pin file cannot be read or written; every tool is withheld until it is
	// fixed (fail closed).
	Unreadable Decision = "unreadable"
	// Unchecked: the mode is off.
	Unchecked Decision = "unchecked"
	// Approved: an operator pinned the definition last seen (airlock pins approve).
	Approved Decision = "approved"
	// Reset: an operator dropped the pin with all of the upstream's (airlock pins reset).
	Reset Decision = "reset"
)

// Verdict is the decision about one tool, with what its audit record needs.
type Verdict struct {
	Upstream string   `json:"upstream"`
	Tool     string   `json:"tool"`
	Decision Decision `json:"decision"`
	Mode     Mode     `json:"mode,omitempty"`
	// Allowed: the tool is listed to clients and may be called.
	Allowed bool `json:"allowed"`
	// OldHash is the pinned hash ("" if none); NewHash the hash of the definition listed now
	// (or, for Approved, the one pinned now; "" for Removed and Reset, or when it cannot be
	// computed).
	OldHash string `json:"old_hash,omitempty"`
	NewHash string `json:"new_hash,omitempty"`
	// Message says, for a withheld or flagged tool, what happened and which command resolves
	// it. A call to a withheld tool is denied with it.
	Message string `json:"message,omitempty"`
}

// Flagged reports a tool that is allowed although it does not match a pin (warn mode).
func (v Verdict) Flagged() bool {
	return v.Allowed && v.Mode == Warn && v.Decision != Pinned && v.Decision != FirstUse
}

// Verdicts is the outcome of one Check.
type Verdicts struct {
	Upstream string
	Mode     Mode
	// Tools has one verdict per definition checked, in the order given.
	Tools []Verdict
	// Removed lists the tools that were listed at the previous check and are not now.
	Removed []Verdict
}

// Tool returns the verdict about the named tool, if it was checked.
func (vs Verdicts) Tool(name string) (Verdict, bool) {
	for _, v := range vs.Tools {
		if v.Tool == name {
			return v, true
		}
	}
	return Verdict{}, false
}

// Allowed returns the definitions whose verdict allows them, in order: what tools/list
// shows for the upstream.
func (vs Verdicts) Allowed(defs []Definition) []Definition {
	ok := map[string]bool{}
	for _, v := range vs.Tools {
		if v.Allowed {
			ok[v.Tool] = true
		}
	}
	var out []Definition
	for _, d := range defs {
		if ok[d.Name] {
			out = append(out, d)
		}
	}
	return out
}

// All returns every verdict, Removed ones last: one audit record each.
func (vs Verdicts) All() []Verdict {
	return append(append([]Verdict(nil), vs.Tools...), vs.Removed...)
}

// short abbreviates a hash for messages.
func short(h string) string {
	if h == "" {
		return "none"
	}
	if len(h) > len("sha256:")+12 {
		return h[:len("sha256:")+12]
	}
	return h
}

// message is the text a withheld (or flagged) tool carries.
func message(v Verdict, detail string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[PIN %s] tool %q of upstream %q ", strings.ToUpper(string(v.Decision)), v.Tool, v.Upstream)
	switch v.Decision {
	case Changed:
		fmt.Fprintf(&b, "changed since it was pinned (%s, now %s)", short(v.OldHash), short(v.NewHash))
	case New:
		b.WriteString("was not listed when the upstream was pinned")
	case Invalid:
		fmt.Fprintf(&b, "cannot be pinned: %s", detail)
	case Unreadable:
		fmt.Fprintf(&b, "cannot be checked: %s", detail)
		if v.Allowed {
			return b.String()
		}
		return b.String() + "; it is withheld until this is fixed"
	}
	if v.Decision == Invalid {
		if v.Allowed {
			return b.String()
		}
		return b.String() + "; it is withheld until the upstream fixes it"
	}
	if v.Allowed {
		fmt.Fprintf(&b, "; allowed because the upstream's pin mode is warn. Review it: airlock pins diff %s %s", v.Upstream, v.Tool)
		return b.String()
	}
	fmt.Fprintf(&b, "; it is withheld until an operator reviews it with `airlock pins diff %s %s` and accepts it with "+
		"`airlock pins approve %s %s` (or re-pins every tool of the upstream with `airlock pins reset %s`)",
		v.Upstream, v.Tool, v.Upstream, v.Tool, v.Upstream)
	return b.String()
}
