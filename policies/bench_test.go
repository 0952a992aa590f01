package policies

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go"
)

// The benchmark policy: every tool has a require rule with a regex, an `in` and a numeric
// bound, and a deny_if regex wall. The cedar-go equivalent expresses the same rules with
// `like` (cedar has no regex; "^go test" and "[;&|]" translate exactly), `.contains` and `<=`.

func benchPolicyDoc(n int) string {
	var b strings.Builder
	b.WriteString(`{"version":"1","default":"deny","tools":{`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"tool_%d":{
  "require":[{"conditions":[
    {"path":"args.command","op":"regex","value":"^go test"},
    {"path":"args.namespace","op":"in","value":["team-a","team-b"]},
    {"path":"args.replicas","op":"lte","value":20}]}],
  "deny_if":[{"conditions":[{"path":"args.command","op":"regex","value":"[;&|]"}]}]}`, i)
	}
	b.WriteString("}}")
	return b.String()
}

func benchCedarDoc(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `permit (principal, action == Action::"tool_%d", resource)
when { context has command && context.command like "go test*" &&
       context has namespace && ["team-a", "team-b"].contains(context.namespace) &&
       context has replicas && context.replicas <= 20 };
forbid (principal, action == Action::"tool_%d", resource)
when { context has command &&
       (context.command like "*;*" || context.command like "*&*" || context.command like "*|*") };
`, i, i)
	}
	return b.String()
}

func benchPolicy(t testing.TB, n int) *Policy {
	t.Helper()
	p, err := Parse("bench.json", []byte(benchPolicyDoc(n)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// benchRequest is the call the pipeline hands over: args decoded with UseNumber.
func benchRequest(tool int) Request {
	return Request{
		Tool:  fmt.Sprintf("tool_%d", tool),
		Args:  map[string]any{"command": "go test ./policies/...", "namespace": "team-b", "replicas": json.Number("3")},
		Grant: Grant{ID: "agent-1"},
	}
}

func benchCedar(t testing.TB, n int) (*cedar.PolicySet, cedar.Request) {
	t.Helper()
	ps, err := cedar.NewPolicySetFromBytes("bench.cedar", []byte(benchCedarDoc(n)))
	if err != nil {
		t.Fatal(err)
	}
	req := cedar.Request{
		Principal: cedar.NewEntityUID("Grant", "agent-1"),
		Action:    cedar.NewEntityUID("Action", cedar.String(fmt.Sprintf("tool_%d", n/2))),
		Resource:  cedar.NewEntityUID("Tool", cedar.String(fmt.Sprintf("tool_%d", n/2))),
		Context: cedar.NewRecord(cedar.RecordMap{
			"command":   cedar.String("go test ./policies/..."),
			"namespace": cedar.String("team-b"),
			"replicas":  cedar.Long(3),
		}),
	}
	return ps, req
}

// medianLoop runs f b.N times in batches and reports the median batch's ns/op, a steadier
// figure than the mean on a shared machine.
func medianLoop(b *testing.B, f func()) {
	const batch = 64
	var samples []float64
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		start := time.Now()
		for i := 0; i < n; i++ {
			f()
		}
		samples = append(samples, float64(time.Since(start).Nanoseconds())/float64(n))
		done += n
	}
	b.StopTimer()
	slices.Sort(samples)
	b.ReportMetric(samples[len(samples)/2], "p50-ns/op")
}

func airlockBench(n int) func(b *testing.B) {
	return func(b *testing.B) {
		e := NewEngine(benchPolicy(b, n), nil)
		req := benchRequest(n / 2)
		if d, _ := e.Decide(req); d.Verdict != Allow {
			b.Fatalf("benchmark call must be allowed: %+v", d)
		}
		b.ReportAllocs()
		medianLoop(b, func() {
			if d, _ := e.Decide(req); d.Verdict != Allow {
				b.Fatal("denied")
			}
		})
	}
}

func cedarBench(n int) func(b *testing.B) {
	return func(b *testing.B) {
		ps, req := benchCedar(b, n)
		if d, _ := cedar.Authorize(ps, cedar.EntityMap{}, req); d != cedar.Allow {
			b.Fatalf("cedar must allow the benchmark call: %v", d)
		}
		b.ReportAllocs()
		medianLoop(b, func() {
			if d, _ := cedar.Authorize(ps, cedar.EntityMap{}, req); d != cedar.Allow {
				b.Fatal("denied")
			}
		})
	}
}

// BenchmarkDecision: decision latency for an allowed call, Airlock and cedar-go side by side.
func BenchmarkDecision(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("tools=%d/airlock", n), airlockBench(n))
		b.Run(fmt.Sprintf("tools=%d/cedar-go", n), cedarBench(n))
	}
}

// BenchmarkDecisionDeny measures a deny by the deny_if wall (messages are precomputed).
func BenchmarkDecisionDeny(b *testing.B) {
	e := NewEngine(benchPolicy(b, 10), nil)
	req := benchRequest(5)
	req.Args = map[string]any{"command": "go test ./...; rm -rf /", "namespace": "team-b", "replicas": json.Number("3")}
	if d, _ := e.Decide(req); d.Verdict != Deny {
		b.Fatalf("want deny, got %+v", d)
	}
	b.ReportAllocs()
	medianLoop(b, func() { e.Decide(req) })
}

// BenchmarkDecisionWithLimit measures an allow that reserves and commits a rate-limit unit.
func BenchmarkDecisionWithLimit(b *testing.B) {
	p := mustParse(b, `{"tools":{"t":{"limits":[{"counter":"c","max":9000000000000000000,"window":"day","scope":"grant"}]}}}`)
	e := NewEngine(p, nil)
	req := Request{Tool: "t", Grant: Grant{ID: "g"}}
	b.ReportAllocs()
	medianLoop(b, func() {
		_, r := e.Decide(req)
		r.Commit()
	})
}

// BenchmarkDecisionRatios times the four decision loops back to back in one benchmark and
// reports the ratios the targets are stated in: 1,000 tools against 10 tools, and cedar-go
// against Airlock. Each figure is the median over batches of 64 calls.
func BenchmarkDecisionRatios(b *testing.B) {
	const calls = 200000
	e10 := NewEngine(benchPolicy(b, 10), nil)
	e1k := NewEngine(benchPolicy(b, 1000), nil)
	r10, r1k := benchRequest(5), benchRequest(500)
	c10, cr10 := benchCedar(b, 10)
	c1k, cr1k := benchCedar(b, 1000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a10 := p50Of(calls, func() { e10.Decide(r10) })
		a1k := p50Of(calls, func() { e1k.Decide(r1k) })
		ce10 := p50Of(calls/10, func() { cedar.Authorize(c10, cedar.EntityMap{}, cr10) })
		ce1k := p50Of(calls/1000, func() { cedar.Authorize(c1k, cedar.EntityMap{}, cr1k) })
		b.ReportMetric(a10, "airlock@10-p50-ns")
		b.ReportMetric(a1k, "airlock@1000-p50-ns")
		b.ReportMetric(a1k/a10, "airlock-1000/10")
		b.ReportMetric(ce10/a10, "cedar/airlock@10")
		b.ReportMetric(ce1k/a1k, "cedar/airlock@1000")
	}
}

func p50Of(calls int, f func()) float64 {
	const batch = 64
	samples := make([]float64, 0, calls/batch+1)
	for done := 0; done < calls; done += batch {
		start := time.Now()
		for i := 0; i < batch; i++ {
			f()
		}
		samples = append(samples, float64(time.Since(start).Nanoseconds())/batch)
	}
	slices.Sort(samples)
	return samples[len(samples)/2]
}
