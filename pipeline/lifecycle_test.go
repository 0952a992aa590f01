package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/sandbox"
)

// runCtx runs one call with ctx.
func (e *env) runCtx(ctx context.Context, tool, args string) Result {
	return e.p.Run(ctx, Call{Tool: tool, Args: json.RawMessage(args), Grant: policies.Grant{ID: "tester"}, Session: "s1"})
}

// TestIntentRecordPrecedesRun: before stage 5 the log holds an intent record for the call, and
// the container carries the labels that tie a leftover to that record and its log.
func TestIntentRecordPrecedesRun(t *testing.T) {
	e := newEnv(t, nil)
	var labels map[string]string
	var before []Record
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		labels = spec.Labels
		before = e.allRecords(t)
		return sandbox.Result{ContainerID: "c-9"}, nil
	}
	res := e.run("echo", `{"text":"hi"}`)
	if res.IsError {
		t.Fatalf("Run = %+v", res)
	}
	if len(before) != 1 || before[0].Phase != PhaseStarted || before[0].AuditID != res.AuditID || before[0].Decision != "allow" {
		t.Fatalf("records while the sandbox ran: %+v, want one intent record of %s", before, res.AuditID)
	}
	if labels[sandbox.LabelAuditID] != res.AuditID || labels[sandbox.LabelAuditLog] != e.audit || labels[sandbox.LabelTool] != "echo" {
		t.Errorf("container labels %v", labels)
	}
	all := e.allRecords(t)
	if len(all) != 2 || all[1].Phase != "" || all[1].AuditID != res.AuditID || all[1].ContainerID != "c-9" {
		t.Fatalf("records after the call: %+v", all)
	}
	rep, _ := Verify(strings.NewReader(readFile(t, e.audit)))
	if rep.UnfinishedCount != 0 {
		t.Errorf("verify reports unfinished calls %v after the call closed", rep.Unfinished)
	}
	// A denied call never reaches a sandbox, so it has no intent record.
	e.run("echo", `{"text":"forbidden"}`)
	if n := len(e.allRecords(t)); n != 3 {
		t.Errorf("%d records after a denial, want 3", n)
	}
}

// TestCancelledAfterStartIsSpent: a call cancelled once its container started did run. Its
// rate-limit units stay spent (three cancelled calls under a 1-per-hour limit: one runs, two
// are denied), its record names the container and says it was cancelled, and its result says
// so instead of "the tool did not run".
func TestCancelledAfterStartIsSpent(t *testing.T) {
	e := newEnv(t, nil)
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		<-ctx.Done()
		return sandbox.Result{ContainerID: "c-cancel", ExitCode: sandbox.ExitKilled, Ran: true}, context.Cause(ctx)
	}
	var results []Result
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		results = append(results, e.runCtx(ctx, "limited", `{"text":"a"}`))
		cancel()
	}
	if r := results[0]; !r.Cancelled || !r.IsError || strings.Contains(r.Text, "did not run") || !strings.Contains(r.Text, "after the tool started") {
		t.Errorf("first call: %+v", r)
	}
	for _, r := range results[1:] {
		if !r.Denied || !strings.Contains(r.Text, "Hourly budget used.") {
			t.Errorf("later call: %+v, want the limit's denial (the first call's unit was spent)", r)
		}
	}
	if n := e.backend.calls.Load(); n != 1 {
		t.Errorf("%d sandbox runs, want 1", n)
	}
	rec := e.records(t)[0]
	if !rec.Cancelled || rec.ContainerID != "c-cancel" || rec.Decision != "allow" || rec.ExitCode == nil || *rec.ExitCode != sandbox.ExitKilled ||
		!strings.Contains(rec.Message, "the client cancelled the request") {
		t.Errorf("record of the cancelled call: %+v", rec)
	}
}

// TestCancelledBeforeStartIsRefunded: a call cancelled before its container started did not
// run; its units are given back.
func TestCancelledBeforeStartIsRefunded(t *testing.T) {
	e := newEnv(t, nil)
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		return sandbox.Result{}, errors.New("sandbox run not started: " + context.Cause(ctx).Error())
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(io.EOF)
	res := e.runCtx(ctx, "limited", `{"text":"a"}`)
	if !res.Cancelled || !strings.Contains(res.Text, "before the tool ran") {
		t.Fatalf("Run = %+v", res)
	}
	rec := e.records(t)[0]
	if !rec.Cancelled || rec.ContainerID != "" || !strings.Contains(rec.Message, "the client disconnected") {
		t.Errorf("record: %+v", rec)
	}
	e.backend.run = nil
	if res := e.run("limited", `{"text":"a"}`); res.IsError {
		t.Errorf("the unit of the cancelled call was not given back: %+v", res)
	}
}

// TestIntentRecordRequired: when the intent record cannot be written (the disk is full) the
// tool does not run, the agent is told what to do, and the log still verifies.
func TestIntentRecordRequired(t *testing.T) {
	e := newEnv(t, nil)
	e.run("echo", `{"text":"before"}`)
	e.p.trace.audit.mu.Lock()
	e.p.trace.audit.writeLine = func(f *os.File, line []byte) error {
		f.Write(line[:10])
		return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	e.p.trace.audit.mu.Unlock()
	before := e.backend.calls.Load()
	res := e.run("echo", `{"text":"a"}`)
	if !res.IsError || !strings.Contains(res.Text, "did not run") || !strings.Contains(res.Text, "free space") {
		t.Fatalf("Run on a full audit disk = %q", res.Text)
	}
	if e.backend.calls.Load() != before {
		t.Fatal("a tool ran although its intent record could not be written")
	}
	rep, _ := Verify(strings.NewReader(readFile(t, e.audit)))
	if !rep.Intact() {
		t.Fatalf("log on a full disk: %+v", rep)
	}
	e.p.trace.audit.mu.Lock()
	e.p.trace.audit.writeLine = writeAll
	e.p.trace.audit.mu.Unlock()
	if res := e.run("echo", `{"text":"after"}`); res.IsError {
		t.Fatalf("Run once there is space again = %q", res.Text)
	}
	recs := e.records(t)
	// before, the refused call (held in memory while the disk was full), after.
	if len(recs) != 3 || recs[1].Decision != DecisionError {
		t.Fatalf("closing records: %+v", recs)
	}
}

// TestRecordReaped: a reaped container of a call closes that call in its log; verify then
// reports no unfinished call and one reaped one.
func TestRecordReaped(t *testing.T) {
	e := newEnv(t, nil)
	var auditID string
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		auditID = spec.Labels[sandbox.LabelAuditID]
		return sandbox.Result{ContainerID: "c-1"}, nil
	}
	e.run("echo", `{"text":"a"}`)
	// Simulate the process dying mid-call: an intent record without its closing record.
	rec := e.records(t)[0]
	rec.AuditID = "dead-call"
	rec.Phase = PhaseStarted
	if err := e.p.trace.audit.AppendUnsynced(&rec); err != nil {
		t.Fatal(err)
	}
	rep, _ := Verify(strings.NewReader(readFile(t, e.audit)))
	if rep.UnfinishedCount != 1 || rep.Unfinished[0] != "dead-call" {
		t.Fatalf("verify before the reap: unfinished %v", rep.Unfinished)
	}
	reaped := []sandbox.Reaped{
		{ContainerID: "c-dead", Running: true, Labels: map[string]string{sandbox.LabelAuditID: "dead-call", sandbox.LabelAuditLog: e.audit, sandbox.LabelTool: "echo"}},
		{ContainerID: "c-unlabelled", Labels: map[string]string{}},
	}
	if err := RecordReaped(reaped, "fake", time.Now()); err != nil {
		t.Fatal(err)
	}
	all := e.allRecords(t)
	last := all[len(all)-1]
	if last.Phase != PhaseReaped || last.AuditID != "dead-call" || last.ContainerID != "c-dead" || !strings.Contains(last.Message, "still running") {
		t.Fatalf("reaped record: %+v", last)
	}
	rep, _ = Verify(strings.NewReader(readFile(t, e.audit)))
	if !rep.Intact() || rep.UnfinishedCount != 0 || rep.Reaped != 1 {
		t.Fatalf("verify after the reap: %+v", rep)
	}
	_ = auditID
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func diskFull(f *os.File, line []byte) error {
	return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

func (e *env) setWrite(fn func(*os.File, []byte) error) {
	e.p.trace.audit.mu.Lock()
	e.p.trace.audit.writeLine = fn
	e.p.trace.audit.mu.Unlock()
}

// TestUnrecordedOutputWithheld: when a call's closing record cannot be written, none of its
// output goes back, in the text or the structured content.
func TestUnrecordedOutputWithheld(t *testing.T) {
	e := newEnv(t, nil)
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		e.setWrite(diskFull) // the disk fills while the tool runs
		return sandbox.Result{ContainerID: "c-1", Stdout: []byte("OUTPUT-123\n"), Ran: true}, nil
	}
	res := e.run("echo", `{"text":"hi"}`)
	if !res.IsError || !strings.Contains(res.Text, "withheld") || strings.Contains(fmt.Sprint(res.Text, res.Structured), "OUTPUT-123") {
		t.Fatalf("result of a call whose record could not be written: %q %v", res.Text, res.Structured)
	}
}

// TestHeldRecordsNotCrowdedOut: while the disk is full, calls are refused before they could
// add records of their own, so the held closing record of a call that ran is written once
// there is space.
func TestHeldRecordsNotCrowdedOut(t *testing.T) {
	e := newEnv(t, nil)
	release, started := make(chan struct{}), make(chan struct{})
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		close(started)
		<-release
		return sandbox.Result{ContainerID: "c-ran", Stdout: []byte("x\n"), Ran: true}, nil
	}
	done := make(chan Result)
	go func() { done <- e.run("echo", `{"text":"long"}`) }()
	<-started
	e.setWrite(diskFull)
	close(release)
	<-done // its closing record is held
	for range maxPending + 10 {
		if res := e.run("echo", `{"text":"forbidden"}`); !strings.Contains(res.Text, "no tool can run") {
			t.Fatalf("a call while records are held: %q, want a refusal", res.Text)
		}
	}
	e.setWrite(writeAll)
	e.run("echo", `{"text":"after"}`)
	var closed bool
	for _, r := range e.allRecords(t) {
		if r.ContainerID == "c-ran" && r.Phase == "" {
			closed = true
		}
	}
	if !closed {
		t.Error("the held closing record of the call that ran was lost")
	}
	if n := len(e.records(t)); n != 2 {
		t.Errorf("%d closing records, want 2 (the call that ran and the one after)", n)
	}
}

// TestErrorAfterRunIsSpent: a sandbox error after the command ran (a failed cleanup) does not
// refund the call's units and records the run.
func TestErrorAfterRunIsSpent(t *testing.T) {
	e := newEnv(t, nil)
	e.backend.run = func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
		return sandbox.Result{ContainerID: "c-ran", ExitCode: 0, Stdout: []byte("side effects done\n"), Ran: true},
			errors.New("removing cgroup: device or resource busy")
	}
	res := e.runCtx(context.Background(), "limited", `{"text":"a"}`)
	if !res.IsError || strings.Contains(res.Text, "did not run") || strings.Contains(res.Text, "side effects") {
		t.Errorf("result: %q", res.Text)
	}
	e.backend.run = nil
	if res := e.runCtx(context.Background(), "limited", `{"text":"a"}`); !res.Denied {
		t.Errorf("the unit of a call whose command ran was refunded: %q", res.Text)
	}
	rec := e.records(t)[0]
	if rec.ExitCode == nil || rec.ContainerID != "c-ran" || !strings.Contains(rec.Message, "the tool ran") {
		t.Errorf("record: %+v", rec)
	}
}
