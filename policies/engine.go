package policies

import (
	"errors"
	"time"
)

// CONTRACT STUB: the policy engine replaces every body below; the signatures are what the
// pipeline and CLI rely on.

// Policy is a parsed, validated, compiled and immutable policy document.
type Policy struct{ sha string }

// Parse reads a JSON or YAML policy document; name is used in error messages.
func Parse(name string, data []byte) (*Policy, error) { return nil, errors.New("not implemented") }

// Load reads and parses a policy file.
func Load(path string) (*Policy, error) { return nil, errors.New("not implemented") }

// SHA256 is the hex sha256 of the policy document's bytes.
func (p *Policy) SHA256() string { return p.sha }

// Evaluate decides req ignoring limits (pure function of policy and request).
func (p *Policy) Evaluate(req Request) Decision { return Decision{Verdict: Deny, Rule: "/default"} }

// Counters stores rate-limit units.
type Counters interface{}

// Engine evaluates a policy with limits against a Counters store and a clock.
type Engine struct{}

// EngineOption configures an Engine.
type EngineOption func(*Engine)

// WithClock injects the clock used for limit windows.
func WithClock(now func() time.Time) EngineOption { return func(*Engine) {} }

// NewMemoryCounters is the in-process Counters store.
func NewMemoryCounters() Counters { return nil }

// NewEngine builds an Engine.
func NewEngine(p *Policy, c Counters, opts ...EngineOption) *Engine { return &Engine{} }

// Policy returns the engine's policy.
func (e *Engine) Policy() *Policy { return nil }

// Decide evaluates req including limits. When units were reserved, the Reservation must be
// committed once the call executes or rolled back when it does not. A nil *Reservation is valid.
func (e *Engine) Decide(req Request) (Decision, *Reservation) { return Decision{Verdict: Deny}, nil }

// Visible reports whether tool may appear in tools/list for this caller.
func (e *Engine) Visible(tool string, g Grant) bool { return false }

// Reservation holds rate-limit units taken at stage 3.
type Reservation struct{}

// Commit keeps the reserved units. Safe on nil.
func (r *Reservation) Commit() {}

// Rollback returns the reserved units. Safe on nil; idempotent.
func (r *Reservation) Rollback() {}
