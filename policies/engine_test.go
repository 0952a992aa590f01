package policies

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

const limitedPolicy = `{
  "tools": {
    "deploy": {
      "limits": [{"counter": "deploys", "max": 100, "window": "hour", "scope": "policy"}]
    },
    "delete_pod": {
      "limits": [{"counter": "deletions", "max": 3, "window": "minute", "scope": "grant", "on_deny": "slow down"}]
    },
    "chat": {
      "limits": [{"counter": "chat", "max": 2, "window": "day", "scope": "session"}]
    },
    "refund": {
      "limits": [
        {"counter": "refund_count", "max": 10, "window": "day", "scope": "policy"},
        {"counter": "refund_cents", "max": 1000, "window": "day", "scope": "policy", "increment_from": "args.cents"}
      ],
      "approve_if": [{"conditions": [{"path": "args.cents", "op": "gt", "value": 500}]}]
    },
    "refund_eu": {
      "limits": [{"counter": "refund_cents", "max": 1000, "window": "day", "scope": "policy", "increment_from": "args.cents"}]
    }
  }
}`

// TestLimitExactUnderConcurrency: 1,000 goroutines against max 100 admit exactly 100.
func TestLimitExactUnderConcurrency(t *testing.T) {
	e := NewEngine(mustParse(t, limitedPolicy), NewMemoryCounters())
	var allowed, denied atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			d, r := e.Decide(Request{Tool: "deploy"})
			r.Commit()
			switch {
			case d.Verdict == Allow:
				allowed.Add(1)
			case d.Rule == "/tools/deploy/limits/deploys":
				denied.Add(1)
			default:
				t.Errorf("unexpected decision %+v", d)
			}
		}()
	}
	close(start)
	wg.Wait()
	if allowed.Load() != 100 || denied.Load() != 900 {
		t.Fatalf("allowed %d, denied %d; want exactly 100 and 900", allowed.Load(), denied.Load())
	}
}

// TestRollbackUnderConcurrency: calls that never execute give their units back, so the budget
// is spent only by calls that ran.
func TestRollbackUnderConcurrency(t *testing.T) {
	e := NewEngine(mustParse(t, limitedPolicy), NewMemoryCounters())
	var wg sync.WaitGroup
	var committed atomic.Int64
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d, r := e.Decide(Request{Tool: "deploy"})
			if d.Verdict != Allow {
				return
			}
			if i%2 == 0 {
				r.Rollback()
				r.Rollback() // idempotent
				return
			}
			r.Commit()
			r.Rollback() // no effect after Commit
			committed.Add(1)
		}(i)
	}
	wg.Wait()
	left := 0
	for {
		d, r := e.Decide(Request{Tool: "deploy"})
		if d.Verdict != Allow {
			break
		}
		r.Commit()
		left++
	}
	if int64(left)+committed.Load() != 100 {
		t.Fatalf("committed %d + left %d != 100", committed.Load(), left)
	}
}

func TestLimitWindowsAreCalendarAligned(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 5, 1, 10, 0, 58, 0, time.UTC)}
	e := NewEngine(mustParse(t, limitedPolicy), NewMemoryCounters(), WithClock(clock.now))
	alice := Request{Tool: "delete_pod", Grant: Grant{ID: "alice"}}
	for i := 0; i < 3; i++ {
		if d, r := e.Decide(alice); d.Verdict != Allow {
			t.Fatalf("call %d: %+v", i, d)
		} else {
			r.Commit()
		}
	}
	d, _ := e.Decide(alice)
	if d.Verdict != Deny || d.Rule != "/tools/delete_pod/limits/deletions" || d.Message != "slow down" {
		t.Fatalf("4th call in the minute: %+v", d)
	}
	if d, _ := e.Decide(Request{Tool: "delete_pod", Grant: Grant{ID: "bob"}}); d.Verdict != Allow {
		t.Fatalf("grant scope: bob must have his own budget: %+v", d)
	}
	// Two seconds later is a new calendar minute (10:01:00), not a sliding 60 s window.
	clock.set(time.Date(2026, 5, 1, 10, 1, 0, 0, time.UTC))
	if d, _ := e.Decide(alice); d.Verdict != Allow {
		t.Fatalf("new minute: %+v", d)
	}
	// Non-UTC clocks are converted: 12:01:30+02:00 is 10:01:30 UTC, the same minute.
	clock.set(time.Date(2026, 5, 1, 12, 1, 30, 0, time.FixedZone("CEST", 2*3600)))
	for i := 0; i < 2; i++ {
		if d, r := e.Decide(alice); d.Verdict != Allow {
			t.Fatalf("same minute in another zone, call %d: %+v", i, d)
		} else {
			r.Commit()
		}
	}
	if d, _ := e.Decide(alice); d.Verdict != Deny {
		t.Fatalf("budget must carry across zones: %+v", d)
	}
}

func TestLimitWindows(t *testing.T) {
	at := time.Date(2026, 12, 31, 23, 59, 59, 999, time.UTC)
	for _, tc := range []struct {
		window     string
		start, end time.Time
	}{
		{"minute", time.Date(2026, 12, 31, 23, 59, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"hour", time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"day", time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		s, e := windowOf(at, tc.window)
		if !s.Equal(tc.start) || !e.Equal(tc.end) {
			t.Errorf("%s: [%v, %v), want [%v, %v)", tc.window, s, e, tc.start, tc.end)
		}
	}
}

func TestSessionScope(t *testing.T) {
	e := NewEngine(mustParse(t, limitedPolicy), NewMemoryCounters())
	for i := 0; i < 2; i++ {
		d, r := e.Decide(Request{Tool: "chat", Session: "s1"})
		r.Commit()
		if d.Verdict != Allow {
			t.Fatal(d)
		}
	}
	if d, _ := e.Decide(Request{Tool: "chat", Session: "s1"}); d.Verdict != Deny {
		t.Fatalf("s1 exhausted: %+v", d)
	}
	if d, _ := e.Decide(Request{Tool: "chat", Session: "s2"}); d.Verdict != Allow {
		t.Fatalf("s2 has its own budget: %+v", d)
	}
}

func TestIncrementFromAndAllOrNothing(t *testing.T) {
	mc := NewMemoryCounters().(*MemoryCounters)
	clock := &fakeClock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
	e := NewEngine(mustParse(t, limitedPolicy), mc, WithClock(clock.now))
	refund := func(cents any) (Decision, *Reservation) {
		return e.Decide(Request{Tool: "refund", Args: map[string]any{"cents": cents}})
	}
	key := func(counter string) CounterKey {
		s, en := windowOf(clock.now(), "day")
		return CounterKey{Counter: counter, Scope: "policy", Window: s, End: en}
	}
	d, r := refund(json.Number("400"))
	if d.Verdict != Allow {
		t.Fatal(d)
	}
	r.Commit()
	d, r = refund(json.Number("600"))
	if d.Verdict != Approve || d.Rule != "/tools/refund/approve_if/args.cents-gt" {
		t.Fatalf("approve_if comes after limits: %+v", d)
	}
	if got := mc.Used(key("refund_cents")); got != 1000 {
		t.Fatalf("an approve verdict holds its units until the pipeline decides: used %d", got)
	}
	r.Rollback() // the human declined
	if got := mc.Used(key("refund_cents")); got != 400 {
		t.Fatalf("after rollback: used %d, want 400", got)
	}
	// Over the cents budget: the count unit taken by the first limit must be given back.
	before := mc.Used(key("refund_count"))
	d, _ = refund(700)
	if d.Verdict != Deny || d.Rule != "/tools/refund/limits/refund_cents" {
		t.Fatalf("700 more cents: %+v", d)
	}
	if got := mc.Used(key("refund_count")); got != before {
		t.Fatalf("all-or-nothing: refund_count %d, want %d", got, before)
	}
	// A fraction rounds up.
	d, r = refund(99.5)
	if d.Verdict != Allow {
		t.Fatal(d)
	}
	r.Commit()
	if got := mc.Used(key("refund_cents")); got != 500 {
		t.Fatalf("99.5 must count as 100: used %d", got)
	}
	// The counter is shared with refund_eu.
	d, r = e.Decide(Request{Tool: "refund_eu", Args: map[string]any{"cents": 500}})
	if d.Verdict != Allow {
		t.Fatal(d)
	}
	r.Commit()
	if d, _ := e.Decide(Request{Tool: "refund_eu", Args: map[string]any{"cents": 1}}); d.Verdict != Deny {
		t.Fatalf("shared counter exhausted: %+v", d)
	}
	// A budget cannot be skipped by leaving the amount out or sending it as a string.
	for _, bad := range []any{nil, "5", -1, json.Number("-0.5"), []any{1}} {
		args := map[string]any{"cents": bad}
		if bad == nil {
			args = map[string]any{}
		}
		d, _ := e.Decide(Request{Tool: "refund_eu", Args: args})
		if d.Verdict != Deny || d.Rule != "/tools/refund_eu/limits/refund_cents" {
			t.Errorf("cents=%#v: %+v", bad, d)
		}
	}
}

func TestEvaluateIgnoresLimits(t *testing.T) {
	p := mustParse(t, limitedPolicy)
	for i := 0; i < 200; i++ {
		if d := p.Evaluate(Request{Tool: "deploy"}); d.Verdict != Allow {
			t.Fatalf("call %d: %+v", i, d)
		}
	}
}

const visibilityPolicy = `{
  "default": "deny",
  "hide": ["nuke", "listed_but_hidden"],
  "tools": {
    "read": {},
    "listed_but_hidden": {},
    "scale": {
      "require": [
        {"conditions": [{"path": "grant.labels.role", "op": "eq", "value": "sre"}]},
        {"conditions": [{"path": "args.n", "op": "lte", "value": 5}]}
      ]
    }
  }
}`

func TestVisible(t *testing.T) {
	e := NewEngine(mustParse(t, visibilityPolicy), nil)
	sre := Grant{ID: "a", Labels: map[string]string{"role": "sre"}}
	dev := Grant{ID: "b", Labels: map[string]string{"role": "dev"}}
	tests := []struct {
		tool string
		g    Grant
		want bool
	}{
		{"read", dev, true},
		{"nuke", sre, false},
		{"listed_but_hidden", sre, false},
		{"unlisted", sre, false},
		{"scale", sre, true},
		{"scale", dev, false},
		{"scale", Grant{}, false},
	}
	for _, tc := range tests {
		if got := e.Visible(tc.tool, tc.g); got != tc.want {
			t.Errorf("Visible(%s, %v) = %v, want %v", tc.tool, tc.g.Labels, got, tc.want)
		}
	}
	allow := NewEngine(mustParse(t, `{"default":"allow","hide":["x"]}`), nil)
	if !allow.Visible("anything", Grant{}) || allow.Visible("x", Grant{}) {
		t.Error("default allow lists unlisted tools but never hidden ones")
	}
}

func TestNoPolicyDeniesEverything(t *testing.T) {
	var nilEngine *Engine
	for _, e := range []*Engine{NewEngine(nil, nil), nilEngine} {
		d, r := e.Decide(Request{Tool: "read"})
		if d.Verdict != Deny || d.Rule != "/default" || r != nil {
			t.Fatalf("%+v", d)
		}
		if e.Visible("read", Grant{}) {
			t.Fatal("nothing is visible without a policy")
		}
	}
}

func TestDecisionsCarryPointerAndHash(t *testing.T) {
	p := mustLoad(t, "testdata/equivalent.json")
	e := NewEngine(p, nil, WithWorkspace("/srv/repo"))
	tests := []struct {
		req     Request
		verdict Verdict
		rule    string
		msg     string
	}{
		{Request{Tool: "delete_file"}, Deny, "/hide", "tool delete_file is hidden by the policy"},
		{Request{Tool: "nope"}, Deny, "/default", "tool nope is not in the policy and the default is deny"},
		{Request{Tool: "run_command", Args: map[string]any{"command": "ls"}}, Deny, "/tools/run_command/require/args.command-regex", "Command not on the allowlist."},
		{Request{Tool: "run_command", Args: map[string]any{"command": "go test; id"}}, Deny, "/tools/run_command/require/args.command-regex", "Command not on the allowlist."},
		{Request{Tool: "run_command", Args: map[string]any{"command": "go test ./... $(id)"}}, Deny, "/tools/run_command/deny_if/args.command-regex", "Shell metacharacters."},
		{Request{Tool: "run_command", Args: map[string]any{"command": "go test ./..."}}, Allow, "/tools/run_command", ""},
		{Request{Tool: "write_file", Args: map[string]any{"path": "/srv/repo/src/x.go"}}, Approve, "/tools/write_file/approve_if/args.path-glob", `write_file needs approval: args.path glob "**/*.go"`},
		{Request{Tool: "write_file", Args: map[string]any{"path": "/etc/x"}}, Deny, "/tools/write_file/require/args.path-path_within", ""},
		{Request{Tool: "write_file", Args: map[string]any{"path": "src/x", "size": 11}}, Deny, "/tools/write_file/deny_if/args.size-gt", `write_file denied: args.size gt 10.25`},
		{Request{Tool: "write_file", Args: map[string]any{"path": "src/x", "size": "11"}}, Deny, "/tools/write_file/deny_if/args.size-gt", ""},
		{Request{Tool: "write_file", Args: map[string]any{"path": "src/x"}}, Allow, "/tools/write_file", ""},
	}
	for _, tc := range tests {
		d, r := e.Decide(tc.req)
		r.Rollback()
		if d.Verdict != tc.verdict || d.Rule != tc.rule || (tc.msg != "" && d.Message != tc.msg) {
			t.Errorf("%s %v:\n got %+v\nwant %s %s %q", tc.req.Tool, tc.req.Args, d, tc.verdict, tc.rule, tc.msg)
		}
		if d.PolicySHA256 != p.SHA256() {
			t.Errorf("%s: decision without the policy hash", tc.req.Tool)
		}
		if d.Verdict == Deny && d.Message == "" {
			t.Errorf("%s: a deny must carry a message", tc.req.Tool)
		}
	}
}

// TestAllowDoesNotAllocate: an allow decision without limits makes no heap allocation. Under
// -race the regex policy is replaced by one without regexes (see raceEnabled); `make bench`
// reports 0 allocs/op for the regex policy too.
func TestAllowDoesNotAllocate(t *testing.T) {
	p := benchPolicy(t, 10)
	if raceEnabled {
		p = mustParse(t, `{"tools":{"tool_3":{
		  "require":[{"conditions":[
		    {"path":"args.command","op":"prefix","value":"go test"},
		    {"path":"args.namespace","op":"in","value":["team-a","team-b"]},
		    {"path":"args.replicas","op":"lte","value":20},
		    {"path":"grant.id","op":"eq","value":"agent-1"},
		    {"path":"args.command","op":"len_lte","value":100}]}],
		  "deny_if":[{"conditions":[{"path":"args.command","op":"contains","value":";"}]},
		             {"conditions":[{"path":"args.missing","op":"exists"}]}]}}}`)
	}
	e := NewEngine(p, nil)
	req := benchRequest(3)
	if d, _ := e.Decide(req); d.Verdict != Allow {
		t.Fatalf("benchmark request must be allowed: %+v", d)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		d, _ := e.Decide(req)
		if d.Verdict != Allow {
			panic("not allowed")
		}
	})
	if allocs != 0 {
		t.Fatalf("allow decision allocates %.1f times per call, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(1000, func() { p.Evaluate(req) })
	if allocs != 0 {
		t.Fatalf("Evaluate allocates %.1f times per call, want 0", allocs)
	}
}

func TestDeterministic(t *testing.T) {
	e := NewEngine(mustLoad(t, "testdata/equivalent.json"), nil)
	req := Request{Tool: "write_file", Args: map[string]any{"path": "src/x.go", "size": json.Number("3")}}
	first := e.Policy().Evaluate(req)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				if d := e.Policy().Evaluate(req); !reflect.DeepEqual(d, first) {
					t.Errorf("decision changed: %+v vs %+v", d, first)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestDenialError(t *testing.T) {
	d := mustParse(t, `{"hide":["x"]}`).Evaluate(Request{Tool: "x"})
	err := d.Err()
	var den *Denial
	if !errors.As(err, &den) || den.Decision.Rule != "/hide" {
		t.Fatalf("Err() = %v", err)
	}
	if want := "[POLICY DENIED] tool x is hidden by the policy (rule /hide)"; err.Error() != want {
		t.Fatalf("got %q, want %q", err.Error(), want)
	}
	if (Decision{Verdict: Allow}).Err() != nil || (Decision{Verdict: Approve}).Err() != nil {
		t.Fatal("only deny is an error")
	}
}

// TestMemoryCountersForgetEndedWindows: one-off session IDs cannot grow the store forever.
func TestMemoryCountersForgetEndedWindows(t *testing.T) {
	m := NewMemoryCounters().(*MemoryCounters)
	w1s, w1e := windowOf(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC), "minute")
	for i := 0; i < 5000; i++ {
		if ok, err := m.Reserve(CounterKey{Counter: "c", Scope: "session", Subject: fmt.Sprint("old-", i), Window: w1s, End: w1e}, 1, 1); !ok || err != nil {
			t.Fatal("reserve failed")
		}
	}
	w2s, w2e := windowOf(w1e, "minute")
	for i := 0; i < 2*sweepEvery; i++ {
		m.Reserve(CounterKey{Counter: "c", Scope: "session", Subject: fmt.Sprint("new-", i%10), Window: w2s, End: w2e}, 1, 1<<40)
	}
	m.mu.Lock()
	n := len(m.buckets)
	m.mu.Unlock()
	if n > 10 {
		t.Fatalf("%d buckets kept; the ended minute's 5000 should be gone", n)
	}
	// Releasing into a window that has been replaced is a no-op, never a negative count.
	if err := m.Release(CounterKey{Counter: "c", Scope: "session", Subject: "new-1", Window: w1s, End: w1e}, 5); err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	for i := 0; i < 2*sweepEvery; i++ {
		if i%10 == 1 {
			want++
		}
	}
	if got := m.Used(CounterKey{Counter: "c", Scope: "session", Subject: "new-1", Window: w2s, End: w2e}); got != want {
		t.Fatalf("used %d, want %d", got, want)
	}
}
