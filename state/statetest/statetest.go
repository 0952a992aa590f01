// Package statetest is the conformance suite every state.Store passes: the file store and
// Redis run the same cases, so a replica cannot tell which one it shares.
package statetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/state"
)

// Opener opens the store under test. Called twice in one test, it must return two handles on
// the same shared state (two processes, or two replicas); each test starts from an empty one.
type Opener func(t *testing.T) (open func() state.Store)

// Run runs the suite.
func Run(t *testing.T, opener Opener) {
	t.Run("CountersExactUnderContention", func(t *testing.T) { countersExact(t, opener(t)) })
	t.Run("CountersReleaseAndWindows", func(t *testing.T) { countersRelease(t, opener(t)) })
	t.Run("Grants", func(t *testing.T) { grants(t, opener(t)) })
	t.Run("Kills", func(t *testing.T) { kills(t, opener(t)) })
	t.Run("Docs", func(t *testing.T) { docs(t, opener(t)) })
}

// docs: read-modify-write under the document's lock loses no change, across handles.
func docs(t *testing.T, open func() state.Store) {
	ctx := context.Background()
	a, b := open(), open()
	defer a.Close()
	defer b.Close()
	if got, err := a.ReadDoc(ctx, "pins", "github"); err != nil || got != nil {
		t.Fatalf("absent document: %q %v; want nil", got, err)
	}
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			err := s.UpdateDoc(ctx, "pins", "github", func(old []byte) ([]byte, bool, error) {
				return append(old, 'x'), true, nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := b.ReadDoc(ctx, "pins", "github")
	if err != nil || len(got) != n {
		t.Fatalf("after %d appends under the lock: %d bytes, %v", n, len(got), err)
	}
	// write=false changes nothing; an error is returned as is; nil deletes.
	boom := errors.New("boom")
	if err := a.UpdateDoc(ctx, "pins", "github", func([]byte) ([]byte, bool, error) { return []byte("no"), false, nil }); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateDoc(ctx, "pins", "github", func([]byte) ([]byte, bool, error) { return []byte("no"), true, boom }); !errors.Is(err, boom) {
		t.Fatalf("fn's error: %v", err)
	}
	if got, _ := a.ReadDoc(ctx, "pins", "github"); len(got) != n {
		t.Fatalf("a refused update changed the document: %q", got)
	}
	if err := a.UpdateDoc(ctx, "pins", "gitlab", func([]byte) ([]byte, bool, error) { return []byte("{}"), true, nil }); err != nil {
		t.Fatal(err)
	}
	if names, err := b.ListDocs(ctx, "pins"); err != nil || len(names) != 2 || names[0] != "github" || names[1] != "gitlab" {
		t.Fatalf("ListDocs: %v %v", names, err)
	}
	if err := b.UpdateDoc(ctx, "pins", "github", func([]byte) ([]byte, bool, error) { return nil, true, nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := a.ReadDoc(ctx, "pins", "github"); err != nil || got != nil {
		t.Fatalf("deleted document: %q %v", got, err)
	}
	if err := a.UpdateDoc(ctx, "pins", "../etc", func([]byte) ([]byte, bool, error) { return []byte("x"), true, nil }); err == nil {
		t.Fatal("a document named ../etc was written")
	}
}

func key(counter, subject string, window time.Time) policies.CounterKey {
	return policies.CounterKey{Counter: counter, Scope: "grant", Subject: subject, Window: window, End: window.Add(time.Hour)}
}

// countersExact: two handles, many goroutines each, race for max units; exactly max win.
func countersExact(t *testing.T, open func() state.Store) {
	a, b := open(), open()
	defer a.Close()
	defer b.Close()
	w := time.Now().UTC().Truncate(time.Hour)
	const max, tries = 25, 80
	var won atomic.Int64
	var wg sync.WaitGroup
	for i := range tries {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			ok, err := s.Reserve(key("c", "alice", w), 1, max)
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if got := won.Load(); got != max {
		t.Fatalf("%d of %d reservations won with max %d; want exactly %d", got, tries, max, max)
	}
	// Another subject's bucket is its own.
	if ok, err := a.Reserve(key("c", "bob", w), max, max); err != nil || !ok {
		t.Fatalf("bob's first %d units: %v %v", max, ok, err)
	}
}

func countersRelease(t *testing.T, open func() state.Store) {
	a, b := open(), open()
	defer a.Close()
	defer b.Close()
	w := time.Now().UTC().Truncate(time.Hour)
	k := key("c", "alice", w)
	mustReserve(t, a, k, 3, 4, true)
	mustReserve(t, b, k, 2, 4, false) // 3+2 > 4: all or nothing
	if err := b.Release(k, 3); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, a, k, 4, 4, true) // the released units are back, seen by the other handle
	// A release into a window that has since rolled over does not touch the new window.
	next := key("c", "alice", w.Add(time.Hour))
	mustReserve(t, a, next, 4, 4, true)
	if err := a.Release(k, 4); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, b, next, 1, 4, false)
	// Over max on its own, and negative amounts, never reserve.
	mustReserve(t, a, key("d", "x", w), 5, 4, false)
	if ok, err := a.Reserve(key("d", "x", w), -1, 4); ok || err == nil {
		t.Fatalf("negative reservation: %v %v; want refused with an error", ok, err)
	}
}

func mustReserve(t *testing.T, s state.Store, k policies.CounterKey, n, max int64, want bool) {
	t.Helper()
	ok, err := s.Reserve(k, n, max)
	if err != nil {
		t.Fatal(err)
	}
	if ok != want {
		t.Fatalf("Reserve(%s/%s, %d, max %d) = %v; want %v", k.Counter, k.Subject, n, max, ok, want)
	}
}

func grants(t *testing.T, open func() state.Store) {
	ctx := context.Background()
	a, b := open(), open()
	defer a.Close()
	defer b.Close()
	v0, err := a.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	uid := uint32(1234)
	g := state.Grant{Name: "alice", Labels: map[string]string{"team": "pay"}, TokenSHA256: "ab", UID: &uid, Created: now}
	if err := a.AddGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	if err := b.AddGrant(ctx, g); !errors.Is(err, state.ErrGrantExists) {
		t.Fatalf("second active grant of one name: %v; want ErrGrantExists", err)
	}
	if err := a.AddGrant(ctx, state.Grant{Name: "../x", Created: now}); err == nil {
		t.Fatal("a grant named ../x was stored")
	}
	c, err := b.Control(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Grants) != 1 || c.Grants[0].Name != "alice" || c.Grants[0].Labels["team"] != "pay" || c.Grants[0].UID == nil || *c.Grants[0].UID != uid || !c.Grants[0].Created.Equal(now) {
		t.Fatalf("grants seen by the other handle: %+v", c.Grants)
	}
	if c.Version == v0 {
		t.Fatal("version unchanged by a new grant")
	}
	if v, _ := b.Version(ctx); v != c.Version {
		t.Fatalf("Version %q != Control's %q with nothing changed", v, c.Version)
	}
	r, err := b.RevokeGrant(ctx, "alice", now.Add(time.Minute))
	if err != nil || r.Revoked.IsZero() {
		t.Fatalf("revoke: %+v %v", r, err)
	}
	if _, err := b.RevokeGrant(ctx, "nobody", now); !errors.Is(err, state.ErrNoGrant) {
		t.Fatalf("revoking an unknown grant: %v; want ErrNoGrant", err)
	}
	c2, err := a.Control(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Version == c.Version || len(c2.Grants) != 1 || c2.Grants[0].Active(now.Add(2*time.Minute)) {
		t.Fatalf("after revoke: version %q (was %q), grants %+v", c2.Version, c.Version, c2.Grants)
	}
	// A revoked name may be granted again, with a new token.
	g.TokenSHA256 = "cd"
	if err := a.AddGrant(ctx, g); err != nil {
		t.Fatalf("re-granting a revoked name: %v", err)
	}
	c3, _ := b.Control(ctx)
	if len(c3.Grants) != 1 || c3.Grants[0].TokenSHA256 != "cd" || !c3.Grants[0].Active(now) {
		t.Fatalf("after re-grant: %+v", c3.Grants)
	}
}

func kills(t *testing.T, open func() state.Store) {
	ctx := context.Background()
	a, b := open(), open()
	defer a.Close()
	defer b.Close()
	now := time.Now().UTC().Truncate(time.Second)
	tool := state.Target{Scope: state.ScopeTool, Name: "run_command"}
	if err := a.SetKill(ctx, state.Kill{Target: tool, Reason: "incident 7", Time: now}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetKill(ctx, state.Kill{Target: state.Target{Scope: state.ScopeAll}, Time: now}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetKill(ctx, state.Kill{Target: tool, Reason: "incident 8", Time: now}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetKill(ctx, state.Kill{Target: state.Target{Scope: "planet", Name: "x"}, Time: now}); err == nil {
		t.Fatal("a kill switch of an unknown scope was stored")
	}
	c, err := b.Control(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Kills) != 2 {
		t.Fatalf("kills: %+v; want the tool switch once and all", c.Kills)
	}
	for _, k := range c.Kills {
		if k.Target == tool && k.Reason != "incident 8" {
			t.Fatalf("a switch set twice keeps the newer reason: %+v", k)
		}
	}
	if was, err := b.ClearKill(ctx, tool); err != nil || !was {
		t.Fatalf("clear: %v %v", was, err)
	}
	if was, err := b.ClearKill(ctx, tool); err != nil || was {
		t.Fatalf("clearing twice: %v %v; want false", was, err)
	}
	c2, _ := a.Control(ctx)
	if len(c2.Kills) != 1 || c2.Kills[0].Scope != state.ScopeAll || c2.Version == c.Version {
		t.Fatalf("after clear: %+v", c2)
	}
}
