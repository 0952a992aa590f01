package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/airlock-mcp/airlock/policies"
)

// recordingObserver keeps every report, with a copy of its record as reported.
type recordingObserver struct {
	mu      sync.Mutex
	reports []CallReport
	recs    []Record
}

func (o *recordingObserver) Observe(_ context.Context, c *CallReport) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reports = append(o.reports, *c)
	o.recs = append(o.recs, *c.Record)
}

func stageNamesOf(c CallReport) []string {
	var out []string
	for _, s := range c.Stages {
		out = append(out, s.Name)
	}
	return out
}

// TestObserverSeesEveryCall checks that the Observer hears of every call once it is recorded,
// denied and refused ones included, with the stages in the order they ran, each within the
// call's bounds, and the record as written (hash set).
func TestObserverSeesEveryCall(t *testing.T) {
	obs := &recordingObserver{}
	e := newEnv(t, func(c *Config) { c.Observer = obs })
	e.run("echo", `{"text":"hi"}`)
	e.run("echo", `{"text":"forbidden"}`)
	e.run("echo", `{"text":5}`)
	e.run("nope", `{}`)

	want := []struct {
		decision string
		stages   []string
	}{
		{"allow", []string{StageSchema, StagePolicy, StageSandbox, StageExecute, StageSanitize, StageSanitize, StageAudit}},
		{"deny", []string{StageSchema, StagePolicy, StageAudit}},
		{DecisionInvalid, []string{StageSchema, StageAudit}},
		{DecisionUnknownTool, []string{StageAudit}},
	}
	if len(obs.reports) != len(want) {
		t.Fatalf("observer saw %d calls, want %d", len(obs.reports), len(want))
	}
	recs := e.records(t)
	for i, w := range want {
		c, rec := obs.reports[i], obs.recs[i]
		if rec.Decision != w.decision || !slices.Equal(stageNamesOf(c), w.stages) {
			t.Errorf("call %d: decision %q stages %v, want %q %v", i, rec.Decision, stageNamesOf(c), w.decision, w.stages)
		}
		if rec.Hash == "" || rec.Hash != recs[i].Hash || c.AuditErr != nil {
			t.Errorf("call %d: reported record hash %q, log has %q (audit err %v)", i, rec.Hash, recs[i].Hash, c.AuditErr)
		}
		prev := c.Start
		for _, s := range c.Stages {
			if s.Start.Before(prev) || s.End.Before(s.Start) || s.End.After(c.End) {
				t.Errorf("call %d: stage %s [%v, %v] out of order within [%v, %v]", i, s.Name, s.Start, s.End, c.Start, c.End)
			}
			prev = s.End
		}
	}
}

// TestTraceIDRecorded checks Call.TraceID reaches the record only as a W3C trace id, and that
// a record without one has no trace_id key at all (records written before the field existed
// verify as they did).
func TestTraceIDRecorded(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct{ id, want string }{
		{"4bf92f3577b34da6a3ce929d0e0e4736", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"", ""},
		{"00000000000000000000000000000000", ""}, // invalid in W3C
		{"4BF92F3577B34DA6A3CE929D0E0E4736", ""}, // upper case is not the canonical form
		{"4bf92f3577b34da6a3ce929d0e0e47", ""},
		{strings.Repeat("a", 33), ""},
		{"4bf92f3577b34da6a3ce929d0e0e473\n", ""},
	}
	for _, c := range cases {
		e.p.Run(context.Background(), Call{Tool: "echo", Args: json.RawMessage(`{"text":"x"}`), Grant: policies.Grant{ID: "g"}, TraceID: c.id})
		if got := e.last(t).TraceID; got != c.want {
			t.Errorf("TraceID %q recorded as %q, want %q", c.id, got, c.want)
		}
	}
	b, err := os.ReadFile(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if n := strings.Count(string(b), `"trace_id"`); n != 2 { // the first call's intent and closing records
		t.Errorf("%d records carry trace_id, want 2:\n%s", n, b)
	}
	if strings.Contains(lines[len(lines)-1], "trace_id") {
		t.Errorf("a record without a trace id has the key: %s", lines[len(lines)-1])
	}
}

// TestTraceIDInHashChain checks trace_id is covered by the chain: editing it is detected.
func TestTraceIDInHashChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r := testRecord(i)
		r.TraceID = "4bf92f3577b34da6a3ce929d0e0e473" + string(rune('0'+i))
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if rep := verifyFile(t, path); !rep.Intact() {
		t.Fatalf("log with trace ids does not verify: %+v", rep)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4731"`, `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4739"`, 1)
	if edited == string(b) {
		t.Fatal("the test's edit found nothing to change")
	}
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := verifyFile(t, path)
	if rep.Intact() || !strings.Contains(rep.Reason, "hash does not match") {
		t.Fatalf("edited trace_id not detected: %+v", rep)
	}
}

// TestAuditStatus checks AuditStatus is nil while the log takes records and reports a
// stopped log.
func TestAuditStatus(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.p.AuditStatus(); err != nil {
		t.Fatalf("fresh log: %v", err)
	}
	if e.p.AuditPath() != e.audit {
		t.Errorf("AuditPath %q, want %q", e.p.AuditPath(), e.audit)
	}
	e.p.Close()
	if err := e.p.AuditStatus(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("closed log: %v", err)
	}
}
