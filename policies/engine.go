package policies

import (
	"path/filepath"
	"sync"
	"time"
)

// Engine evaluates a policy with limits against a Counters store and a clock. It is safe for
// concurrent use.
type Engine struct {
	p         *Policy
	c         Counters
	now       func() time.Time
	workspace string
}

// EngineOption configures an Engine.
type EngineOption func(*Engine)

// WithClock injects the clock used for limit windows.
func WithClock(now func() time.Time) EngineOption {
	return func(e *Engine) {
		if now != nil {
			e.now = now
		}
	}
}

// WithWorkspace sets the host directory that path_within roots are relative to. With it, an
// absolute argument path is accepted when it lies inside the workspace; without it, every
// absolute path is outside.
func WithWorkspace(dir string) EngineOption {
	return func(e *Engine) {
		if dir == "" {
			e.workspace = ""
			return
		}
		if abs, err := filepath.Abs(dir); err == nil {
			e.workspace = cleanWorkspace(abs)
		}
	}
}

// NewEngine builds an Engine. A nil policy denies every call; a nil store gets an in-memory one.
func NewEngine(p *Policy, c Counters, opts ...EngineOption) *Engine {
	e := &Engine{p: p, c: c, now: time.Now}
	for _, o := range opts {
		o(e)
	}
	if e.c == nil {
		e.c = NewMemoryCounters()
	}
	return e
}

// Policy returns the engine's policy.
func (e *Engine) Policy() *Policy {
	if e == nil {
		return nil
	}
	return e.p
}

// Decide evaluates req including limits. When units were reserved, the Reservation must be
// committed once the call executes or rolled back when it does not. A nil *Reservation is valid.
//
// Order: hide, session budgets, default, require, deny_if, limits, approve_if; the first that
// decides wins. label_if rules then name the labels an allowed or approved call gives.
// Limits reserve all-or-nothing: when the second of two counters is exhausted, the units taken
// from the first are given back before the deny is returned.
func (e *Engine) Decide(req Request) (Decision, *Reservation) {
	if e == nil {
		return (*Policy)(nil).Evaluate(req), nil
	}
	d, t, done := e.p.check(&req, e.workspace)
	if done {
		return d, nil
	}
	var res *Reservation
	if len(t.limits) > 0 {
		now := e.now()
		for _, l := range t.limits {
			n, ok := l.units(&req)
			if !ok {
				res.Rollback()
				return Decision{Verdict: Deny, Rule: l.ptr, PolicySHA256: e.p.sha,
					Message: t.name + " denied: " + l.inc.text + " must be a non-negative number (it is counted against limit " + l.counter + ")"}, nil
			}
			k := l.key(&req, now)
			got, err := e.c.Reserve(k, n, l.max)
			if err != nil || !got {
				res.Rollback()
				msg := l.msg
				if err != nil {
					msg = t.name + " denied: rate-limit store unavailable: " + err.Error()
				}
				return Decision{Verdict: Deny, Rule: l.ptr, Message: msg, PolicySHA256: e.p.sha}, nil
			}
			if res == nil {
				res = &Reservation{c: e.c}
			}
			res.items = append(res.items, reserved{k, n})
		}
	}
	return e.p.approval(t, &req, e.workspace), res
}

// Visible reports whether tool may appear in tools/list for this caller: hidden tools, tools
// that default: deny leaves without an entry, and tools whose grant-only require rules fail for
// this grant are not listed.
func (e *Engine) Visible(tool string, g Grant) bool {
	if e == nil {
		return false
	}
	return e.p.Visible(tool, g)
}

// Reservation holds rate-limit units taken at stage 3.
type Reservation struct {
	mu    sync.Mutex
	c     Counters
	items []reserved
	state int // 0 pending, 1 committed, 2 rolled back
}

type reserved struct {
	key CounterKey
	n   int64
}

// Commit keeps the reserved units. Safe on nil. After Commit, Rollback does nothing.
func (r *Reservation) Commit() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == 0 {
		r.state = 1
	}
}

// Rollback returns the reserved units. Safe on nil; idempotent.
func (r *Reservation) Rollback() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != 0 {
		return
	}
	r.state = 2
	for _, it := range r.items {
		// The in-memory store cannot fail; a shared store that does keeps the units, which
		// errs towards the budget.
		_ = r.c.Release(it.key, it.n)
	}
}
