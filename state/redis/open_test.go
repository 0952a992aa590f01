package redis

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/state"
)

// A password never appears in Describe or in any error; errors name the address and the fix.
func TestOpenErrorsHidePassword(t *testing.T) {
	srv := startRedis(t, "--requirepass", "s3cret-pw")
	addr := "127.0.0.1:" + strconv.Itoa(srv.Port)

	s, err := Open(t.Context(), "redis://:s3cret-pw@"+addr+"/2")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.Describe(), "redis "+addr+"/2"; got != want {
		t.Fatalf("Describe() = %q; want %q", got, want)
	}
	if _, err := s.Version(t.Context()); err != nil {
		t.Fatal(err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, tc := range []struct{ name, url, want string }{
		{"wrong password", "redis://user:wrong-pw@" + addr + "/0", "state store redis " + addr + "/0 refused: WRONGPASS"},
		{"nothing listening", "redis://:wrong-pw@" + closed + "/0", "state store redis " + closed + "/0 unavailable"},
		{"bad scheme", "http://:wrong-pw@" + addr, "invalid URL scheme"},
		{"bad database", "redis://:wrong-pw@" + addr + "/x", "invalid database number"},
		{"unparsable", "redis://:wrong-pw@host:port:x/0", "invalid URL"},
		{"bad prefix", "redis://:wrong-pw@" + addr + "/0?prefix=a:b", "prefix"},
		{"bad timeout", "redis://:wrong-pw@" + addr + "/0?timeout=soon", "timeout"},
		{"unknown option", "redis://:wrong-pw@" + addr + "/0?bogus=1", "unexpected option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), tc.url, WithTimeout(time.Second))
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "wrong-pw") {
				t.Fatalf("error %q; want it to contain %q and no password", err, tc.want)
			}
		})
	}
}

// Two prefixes on one database are two deployments that never see each other.
func TestPrefixesIsolate(t *testing.T) {
	srv := startRedis(t)
	a, b := srv.open(t, ""), srv.open(t, "", WithPrefix("other"))
	ctx := t.Context()
	if err := a.AddGrant(ctx, state.Grant{Name: "alice", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddGrant(ctx, state.Grant{Name: "alice", Created: time.Now()}); err != nil {
		t.Fatalf("the other deployment's grant blocked this one's: %v", err)
	}
	k := hourKey("c", "grant", "alice")
	if ok, _ := a.Reserve(k, 1, 1); !ok {
		t.Fatal("refused")
	}
	if ok, _ := b.Reserve(k, 1, 1); !ok {
		t.Fatal("the other deployment's counter was shared")
	}
	keys := srv.raw(t).Keys(ctx, "*").Val()
	for _, k := range keys {
		if !strings.HasPrefix(k, "airlock:") && !strings.HasPrefix(k, "other:") {
			t.Fatalf("key %q outside both prefixes", k)
		}
	}
	if _, err := CheckPrefix("a:b:"); err == nil {
		t.Fatal("a prefix nesting another was accepted")
	}
}

// Control is sorted, its version starts at a random point and moves with every change, and a
// damaged entry fails closed instead of reading as absent.
func TestControlOrderVersionDamage(t *testing.T) {
	srv := startRedis(t)
	s := srv.open(t, "")
	ctx := t.Context()
	if v, err := s.Version(ctx); v != "0" || err != nil {
		t.Fatalf("empty store's version %q %v; want 0", v, err)
	}
	for _, n := range []string{"zed", "amy", "kim"} {
		if err := s.AddGrant(ctx, state.Grant{Name: n, Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tg := range []state.Target{{Scope: state.ScopeTool, Name: "b"}, {Scope: state.ScopeAll}, {Scope: state.ScopeTool, Name: "a:x"}, {Scope: state.ScopeGrant, Name: "amy"}} {
		if err := s.SetKill(ctx, state.Kill{Target: tg, Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.Control(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names, kills []string
	for _, g := range c.Grants {
		names = append(names, g.Name)
	}
	for _, k := range c.Kills {
		kills = append(kills, k.Target.String())
	}
	if got := strings.Join(names, ","); got != "amy,kim,zed" {
		t.Fatalf("grants in order %s", got)
	}
	if got := strings.Join(kills, ","); got != "all,grant amy,tool a:x,tool b" {
		t.Fatalf("kills in order %s", got)
	}
	if v, _ := strconv.ParseInt(c.Version, 10, 64); v < 1<<20 {
		t.Fatalf("version %s after 7 changes; want a random start far above 7", c.Version)
	}

	raw := srv.raw(t)
	raw.HSet(ctx, "airlock:kills", "tool:b", "{")
	if _, err := s.Control(ctx); err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "HDEL airlock:kills") {
		t.Fatalf("Control with a damaged kill switch: %v", err)
	}
	raw.HSet(ctx, "airlock:grants", "kim", "[")
	if err := s.AddGrant(ctx, state.Grant{Name: "kim", Created: time.Now()}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("AddGrant over a damaged grant: %v", err)
	}
	if _, err := s.RevokeGrant(ctx, "kim", time.Now()); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("RevokeGrant of a damaged grant: %v", err)
	}

	// A damaged or foreign bucket refuses reservations rather than starting a fresh budget.
	k := hourKey("c", "grant", "amy")
	raw.Set(ctx, s.bucketKey(k), "x", 0)
	if ok, err := s.Reserve(k, 1, 5); ok || err == nil {
		t.Fatalf("Reserve on a key of the wrong type: %v %v", ok, err)
	}
	raw.Del(ctx, s.bucketKey(k))
	start, _ := stamp(k.Window)
	raw.HSet(ctx, s.bucketKey(k), "start", start, "used", "lots")
	if ok, err := s.Reserve(k, 1, 5); ok || err == nil {
		t.Fatalf("Reserve on a bucket without a count: %v %v", ok, err)
	}
}

// Operations honour the caller's context as well as the store's timeout.
func TestCallerContext(t *testing.T) {
	srv := startRedis(t)
	s := srv.open(t, "")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Control(ctx); err == nil {
		t.Fatal("Control ran with a cancelled context")
	}
}
