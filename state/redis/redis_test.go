package redis

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/state"
	"github.com/airlock-mcp/airlock/state/statetest"
)

// Two Stores on one server are two replicas; each case gets a server of its own.
func TestConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) func() state.Store {
		srv := startRedis(t)
		return func() state.Store { return srv.open(t, "") }
	})
}

// The same suite over the Unix socket URL, with a prefix and a database other than 0.
func TestConformanceUnixPrefix(t *testing.T) {
	statetest.Run(t, func(t *testing.T) func() state.Store {
		srv := startRedis(t)
		return func() state.Store {
			s, err := Open(t.Context(), "unix://"+srv.Sock+"?db=3&prefix=team1")
			if err != nil {
				t.Fatal(err)
			}
			if want := "redis unix:" + srv.Sock + "?db=3 prefix team1:"; s.Describe() != want {
				t.Fatalf("Describe() = %q; want %q", s.Describe(), want)
			}
			return s
		}
	})
}

func hourKey(counter, scope, subject string) policies.CounterKey {
	w := time.Now().UTC().Truncate(time.Hour)
	return policies.CounterKey{Counter: counter, Scope: scope, Subject: subject, Window: w, End: w.Add(time.Hour)}
}

// Many replicas adding one name at once: exactly one wins, the rest see ErrGrantExists.
func TestAddGrantRace(t *testing.T) {
	srv := startRedis(t)
	a, b := srv.open(t, ""), srv.open(t, "")
	var won atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			err := s.AddGrant(t.Context(), state.Grant{Name: "ci", Created: time.Now()})
			switch {
			case err == nil:
				won.Add(1)
			case !errors.Is(err, state.ErrGrantExists):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d concurrent AddGrants of one name succeeded; want 1", won.Load())
	}
}

// Keys are unambiguous: parts holding ':', quotes, backslashes or odd bytes never make two
// buckets share a key.
func TestBucketKeysDistinct(t *testing.T) {
	srv := startRedis(t)
	s := srv.open(t, "")
	keys := []policies.CounterKey{
		hourKey("c", "session", "a:b"),
		hourKey("c", "session", `a":"b`),
		hourKey(`c":"session`, "session", "a:b"),
		hourKey("c:session", "session", "a"),
		hourKey("c", "session:a", "b"),
		hourKey("c", "session", `a\":b`),
		hourKey("c", "session", "a\":\"session\":\"b"),
		hourKey("c", "session", "a\nb"),
		hourKey("c", "session", "\xff"),
		hourKey("c", "session", "\\xff"),
		hourKey("c", "policy", ""),
		hourKey("c", "", "policy"),
	}
	seen := map[string]int{}
	for i, k := range keys {
		id := s.bucketKey(k)
		if j, dup := seen[id]; dup {
			t.Fatalf("keys %d and %d share bucket %s", j, i, id)
		}
		seen[id] = i
	}
	// And in Redis: spending each bucket's whole budget leaves every other bucket untouched.
	for i, k := range keys {
		if ok, err := s.Reserve(k, 2, 2); !ok || err != nil {
			t.Fatalf("bucket %d (%q/%q/%q) was not fresh: %v %v", i, k.Counter, k.Scope, k.Subject, ok, err)
		}
	}
	if n := srv.raw(t).DBSize(t.Context()).Val(); n != int64(len(keys)) {
		t.Fatalf("%d keys in Redis; want one per bucket, %d", n, len(keys))
	}
}

// A bucket expires a margin after its window ends; a new window starts from zero; a caller
// still on the old window counts against the new one; a release into the old window is a
// no-op.
func TestWindowsAndExpiry(t *testing.T) {
	srv := startRedis(t)
	s := srv.open(t, "")
	raw := srv.raw(t)
	k := hourKey("c", "grant", "alice")
	if ok, err := s.Reserve(k, 3, 3); !ok || err != nil {
		t.Fatal(ok, err)
	}
	ttl := raw.PTTL(t.Context(), s.bucketKey(k)).Val()
	want := time.Until(k.End) + s.margin
	if ttl <= 0 || ttl > want+time.Second || ttl < want-10*time.Second {
		t.Fatalf("bucket PTTL %v; want about %v (window end + margin)", ttl, want)
	}

	next := k
	next.Window, next.End = k.End, k.End.Add(time.Hour)
	if ok, err := s.Reserve(next, 3, 3); !ok || err != nil {
		t.Fatalf("a new window did not start from zero: %v %v", ok, err)
	}
	if ok, err := s.Reserve(k, 1, 3); ok || err != nil {
		t.Fatalf("a late reservation into the old window was not counted against the new one: %v %v", ok, err)
	}
	if err := s.Release(k, 3); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Reserve(next, 1, 3); ok || err != nil {
		t.Fatalf("a release into the old window gave units to the new one: %v %v", ok, err)
	}
	if ttl := raw.PTTL(t.Context(), s.bucketKey(k)).Val(); ttl < time.Hour {
		t.Fatalf("the new window's bucket expires in %v; want past its end, over an hour away", ttl)
	}

	// A window ending now vanishes: with no margin, within a second or two.
	s.margin = 0
	short := policies.CounterKey{Counter: "m", Scope: "policy", Window: time.Now().Add(-time.Minute), End: time.Now().Add(1500 * time.Millisecond)}
	if ok, err := s.Reserve(short, 1, 1); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ttl := raw.PTTL(t.Context(), s.bucketKey(short)).Val(); ttl <= 0 || ttl > 1500*time.Millisecond {
		t.Fatalf("short window's PTTL %v; want (0, 1.5s]", ttl)
	}
	deadline := time.Now().Add(5 * time.Second)
	for raw.Exists(t.Context(), s.bucketKey(short)).Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("the bucket of an ended window did not expire")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// An outage fails closed with a message naming the store, and the store recovers by itself
// when Redis is back on the same address.
func TestOutage(t *testing.T) {
	srv := startRedis(t)
	s := srv.open(t, "timeout=500ms")
	ctx := t.Context()
	k := hourKey("c", "grant", "alice")
	if ok, err := s.Reserve(k, 1, 5); !ok || err != nil {
		t.Fatal(ok, err)
	}
	srv.stop()
	begin := time.Now()
	ok, err := s.Reserve(k, 1, 5)
	if ok || err == nil {
		t.Fatalf("Reserve during an outage: %v %v; want refused with an error", ok, err)
	}
	want := "state store redis 127.0.0.1:" + strconv.Itoa(srv.Port) + "/0 unavailable"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("outage error %q; want it to say %q", err, want)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("Reserve took %v in an outage with a 500ms timeout", d)
	}
	if _, err := s.Control(ctx); err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Fatalf("Control during an outage: %v", err)
	}
	if _, err := s.Version(ctx); err == nil {
		t.Fatal("Version answered during an outage")
	}
	if err := s.SetKill(ctx, state.Kill{Target: state.Target{Scope: state.ScopeAll}}); err == nil {
		t.Fatal("SetKill succeeded during an outage")
	}
	if err := s.AddGrant(ctx, state.Grant{Name: "bob"}); err == nil || errors.Is(err, state.ErrGrantExists) {
		t.Fatalf("AddGrant during an outage: %v", err)
	}
	if err := s.Release(k, 1); err == nil {
		t.Fatal("Release succeeded during an outage")
	}

	srv.start() // same port, empty data (no persistence)
	if ok, err := s.Reserve(k, 5, 5); !ok || err != nil {
		t.Fatalf("Reserve after Redis came back: %v %v", ok, err)
	}
	if err := s.SetKill(ctx, state.Kill{Target: state.Target{Scope: state.ScopeAll}}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Control(ctx); err != nil || len(c.Kills) != 1 {
		t.Fatalf("Control after Redis came back: %+v %v", c, err)
	}
}
