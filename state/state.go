// Package state holds what Airlock keeps beyond one call and shares between processes:
// rate-limit counters, grants and kill switches. One interface, two stores: a file store in
// the state directory (the default; restarts keep budgets, revocations and kill switches) and
// Redis, for several replicas serving one policy.
package state

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/policies"
)

// Store is Airlock's shared state. Every method is safe for concurrent use by goroutines and
// by other processes sharing the store. An error means the store could not answer; callers
// fail closed (a call is denied, a request refused), never open.
type Store interface {
	// Counters are the policy's rate limits: Reserve is atomic across every process sharing
	// the store, so two replicas racing for the last unit never both get it.
	policies.Counters

	// AddGrant stores a new grant. A grant of the same name that is still active is an
	// error (ErrGrantExists); a revoked or expired one is replaced.
	AddGrant(ctx context.Context, g Grant) error
	// RevokeGrant marks the grant revoked at the given time (ErrNoGrant if there is none).
	RevokeGrant(ctx context.Context, name string, at time.Time) (Grant, error)
	// SetKill turns a kill switch on (or replaces the reason of one that is on).
	SetKill(ctx context.Context, k Kill) error
	// ClearKill turns a kill switch off and reports whether it was on.
	ClearKill(ctx context.Context, t Target) (bool, error)
	// Control returns every grant and kill switch with a version that changes whenever
	// either does.
	Control(ctx context.Context) (Control, error)
	// Version is Control's version without the contents: cheap enough to ask per request.
	Version(ctx context.Context) (string, error)

	// Docs are the gateway's pins: one document per upstream.
	Docs

	// Describe names the store for messages ("file /var/lib/airlock/state",
	// "redis 127.0.0.1:6379/0"), without credentials.
	Describe() string
	Close() error
}

// Docs are small named documents of one kind (e.g. "pins"), each changed under a lock every
// process sharing the store takes, so two writers never lose each other's change.
type Docs interface {
	// UpdateDoc runs fn on the current bytes of the document (nil when there is none) while
	// holding its lock. fn returns the new bytes (nil deletes the document) and whether to
	// write them at all. A store with optimistic transactions runs fn again when another
	// writer got in first, so fn must depend on nothing but its argument.
	UpdateDoc(ctx context.Context, kind, name string, fn func(old []byte) (new []byte, write bool, err error)) error
	// ReadDoc returns the document's bytes, nil when there is none. A reader never sees
	// half of a change.
	ReadDoc(ctx context.Context, kind, name string) ([]byte, error)
	// ListDocs returns the names of the documents of a kind, sorted.
	ListDocs(ctx context.Context, kind string) ([]string, error)
	// DocLocation names where a document lives, for messages (a file path, a Redis key).
	DocLocation(kind, name string) string
}

// MaxDocBytes bounds one document read back.
const MaxDocBytes = 256 << 20

// CheckDocName says what is wrong with a document kind or name, or nil: both become file
// names, so no separators, no leading dot.
func CheckDocName(s string) error {
	if s == "" || len(s) > 128 || s[0] == '.' || s[0] == '-' || s[0] == '_' {
		return fmt.Errorf("document name %q: want 1-128 of A-Z a-z 0-9 _ . - starting with a letter or digit", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("document name %q: want 1-128 of A-Z a-z 0-9 _ . - starting with a letter or digit", s)
		}
	}
	return nil
}

// ErrGrantExists is AddGrant's error for a name that is taken by an active grant.
var ErrGrantExists = errors.New("grant exists")

// ErrNoGrant is RevokeGrant's error for a name that was never granted.
var ErrNoGrant = errors.New("no such grant")

// Control is the operator's side of the state: who may call, and what is switched off.
type Control struct {
	Version string  `json:"version,omitempty"`
	Grants  []Grant `json:"grants"`
	Kills   []Kill  `json:"kills"`
}

// Grant is one person's or agent's access: a name, labels policies can test, and the ways to
// prove it: the sha256 of a bearer token (the token itself is shown once and never stored)
// and, for the local daemon, a Unix uid.
type Grant struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// TokenSHA256 is the hex sha256 of the grant's bearer token; empty for a uid-only grant.
	TokenSHA256 string `json:"token_sha256,omitempty"`
	// UID, when set, makes clients of the daemon socket running as that uid act as this grant.
	UID     *uint32   `json:"uid,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// Active reports whether g may be used at now: not revoked and not expired.
func (g Grant) Active(now time.Time) bool {
	return g.Revoked.IsZero() && (g.Expires.IsZero() || now.Before(g.Expires))
}

// Status is "active", "revoked" or "expired" at now.
func (g Grant) Status(now time.Time) string {
	switch {
	case !g.Revoked.IsZero():
		return "revoked"
	case !g.Expires.IsZero() && !now.Before(g.Expires):
		return "expired"
	}
	return "active"
}

// Policy is the grant as policies see it.
func (g Grant) Policy() policies.Grant { return policies.Grant{ID: g.Name, Labels: g.Labels} }

// grantName is what a grant may be called: it appears in audit records, rule pointers and
// counter keys, so it is kept to a plain, bounded alphabet.
var grantName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$`)

// CheckGrantName says what is wrong with a grant name, or nil.
func CheckGrantName(name string) error {
	if !grantName.MatchString(name) {
		return fmt.Errorf("grant name %q: use 1-128 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Scope is what a kill switch stops.
type Scope string

// The kill switch scopes.
const (
	ScopeTool    Scope = "tool"
	ScopeGrant   Scope = "grant"
	ScopeSession Scope = "session"
	ScopeAll     Scope = "all"
)

// Target is one kill switch: a scope and, except for ScopeAll, the name it stops.
type Target struct {
	Scope Scope  `json:"scope"`
	Name  string `json:"name,omitempty"`
}

// Check says what is wrong with t, or nil.
func (t Target) Check() error {
	switch t.Scope {
	case ScopeAll:
		if t.Name != "" {
			return errors.New("kill --all takes no name")
		}
		return nil
	case ScopeTool, ScopeGrant, ScopeSession:
		if t.Name == "" || len(t.Name) > 256 || strings.ContainsAny(t.Name, "\x00\n") {
			return fmt.Errorf("kill --%s needs a name of 1-256 characters without NUL or newline", t.Scope)
		}
		return nil
	}
	return fmt.Errorf("unknown kill switch scope %q (tool, grant, session or all)", t.Scope)
}

// Rule is the switch's pointer in decisions and audit records: /kill/all, /kill/tool/<name>,
// escaped as a JSON pointer so a name with '/' cannot impersonate another switch.
func (t Target) Rule() string {
	if t.Scope == ScopeAll {
		return "/kill/all"
	}
	esc := strings.NewReplacer("~", "~0", "/", "~1").Replace(t.Name)
	return "/kill/" + string(t.Scope) + "/" + esc
}

func (t Target) String() string {
	if t.Scope == ScopeAll {
		return "all"
	}
	return string(t.Scope) + " " + t.Name
}

// Kill is a kill switch that is on.
type Kill struct {
	Target
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time"`
}

// Matches reports whether the switch stops a call of tool by grant in session.
func (k Kill) Matches(tool, grant, session string) bool {
	switch k.Scope {
	case ScopeAll:
		return true
	case ScopeTool:
		return k.Name == tool
	case ScopeGrant:
		return k.Name == grant
	case ScopeSession:
		return session != "" && k.Name == session
	}
	return false
}

// Message is what a stopped call's caller reads.
func (k Kill) Message() string {
	msg := "stopped by the operator's kill switch (" + k.Target.String() + ")"
	if k.Reason != "" {
		msg += ": " + k.Reason
	}
	return msg + "; ask the operator to run airlock resume when it may run again"
}
