package pipeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// childWriter is this test binary re-executed as TestAuditChildWriter: a separate process
// appending to the same log, as every `airlock serve` and `airlock call` does.
type childWriter struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
	drain  chan struct{} // closed once stdout is read to the end
}

// startChild starts a writer in mode and returns once it has opened the log.
func startChild(t *testing.T, path, mode string, env ...string) *childWriter {
	t.Helper()
	c := &childWriter{drain: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestAuditChildWriter$", "-test.v")
	c.cmd.Env = append(os.Environ(), append([]string{"AIRLOCK_AUDIT_CHILD=" + path, "AIRLOCK_AUDIT_CHILD_MODE=" + mode}, env...)...)
	c.cmd.Stderr = &c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		c.wait()
	})
	sc := bufio.NewScanner(out)
	var seen []string
	for sc.Scan() && !strings.Contains(sc.Text(), "CHILD-READY") {
		seen = append(seen, sc.Text())
	}
	go func() {
		defer close(c.drain)
		io.Copy(io.Discard, out)
	}()
	if sc.Err() != nil || len(seen) > 0 && !strings.Contains(strings.Join(seen, "\n"), "=== RUN") {
		t.Fatalf("child writer did not start: %v\n%s", sc.Err(), strings.Join(seen, "\n"))
	}
	return c
}

// wait waits for the child to exit and returns its error (nil for exit 0).
func (c *childWriter) wait() error {
	<-c.drain
	err := c.cmd.Wait()
	if err != nil && err.Error() == "exec: Wait was already called" {
		return nil
	}
	return err
}

// recordsByWriter groups the ids of the log's records by the prefix before the last "-".
func recordsByWriter(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	by := map[string][]string{}
	if err := ReadRecords(f, func(_ []byte, rec Record) error {
		i := strings.LastIndex(rec.AuditID, "-")
		by[rec.AuditID[:max(i, 0)]] = append(by[rec.AuditID[:max(i, 0)]], rec.AuditID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return by
}

// assertWriterRecords checks that writer id's records are all in the log, once each, in the
// order it appended them.
func assertWriterRecords(t *testing.T, by map[string][]string, id string, n int) {
	t.Helper()
	got := by[id]
	if len(got) != n {
		t.Errorf("writer %s has %d records in the log, want %d", id, len(got), n)
		return
	}
	for i, g := range got {
		if want := fmt.Sprintf("%s-%04d", id, i); g != want {
			t.Errorf("writer %s record %d is %s, want %s", id, i, g, want)
			return
		}
	}
}

// TestAuditProcessesShareOneLog runs several writer processes appending to one log at the same
// time: every record must be there, once, in one chain, and the head file must name the last.
func TestAuditProcessesShareOneLog(t *testing.T) {
	const procs, each = 4, 30
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeLog(t, path, 2) // the children continue an existing chain
	var children []*childWriter
	for p := range procs {
		children = append(children, startChild(t, path, "count", fmt.Sprintf("AIRLOCK_AUDIT_CHILD_ID=w%d", p), fmt.Sprintf("AIRLOCK_AUDIT_CHILD_N=%d", each)))
	}
	for _, c := range children {
		c.stdin.Close() // go
	}
	for p, c := range children {
		if err := c.wait(); err != nil {
			t.Fatalf("writer %d: %v\n%s", p, err, c.stderr.String())
		}
	}
	rep, err := VerifyLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact() || !rep.HeadOK || rep.Records != 2+procs*each {
		t.Fatalf("VerifyLog = %+v, want %d intact records and a head that agrees", rep, 2+procs*each)
	}
	by := recordsByWriter(t, path)
	for p := range procs {
		assertWriterRecords(t, by, fmt.Sprintf("w%d", p), each)
	}
}

// TestAuditKilledWhileOthersAppend kills one writer mid-record while other processes are
// appending: the others carry on, the torn bytes are moved aside, and nothing else is lost.
func TestAuditKilledWhileOthersAppend(t *testing.T) {
	const procs, each = 3, 20
	t.Run("killed holding the lock", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "audit.jsonl")
		var children []*childWriter
		for p := range procs {
			children = append(children, startChild(t, path, "count", fmt.Sprintf("AIRLOCK_AUDIT_CHILD_ID=w%d", p), fmt.Sprintf("AIRLOCK_AUDIT_CHILD_N=%d", each)))
		}
		// The victim writes 3 records, then half of a fourth, and stops there holding the
		// lock: the others queue behind it.
		victim := startChild(t, path, "half-line")
		for _, c := range children {
			c.stdin.Close()
		}
		time.Sleep(100 * time.Millisecond)
		if n := len(recordsByWriter(t, path)["w0"]); n != 0 {
			t.Fatalf("a writer appended %d records while another held the lock mid-record", n)
		}
		if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		victim.wait()
		for p, c := range children {
			if err := c.wait(); err != nil {
				t.Fatalf("writer %d after the kill: %v\n%s", p, err, c.stderr.String())
			}
		}
		rep, err := VerifyLog(path)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Intact() || !rep.HeadOK || rep.Records != 3+procs*each {
			t.Fatalf("VerifyLog = %+v, want %d intact records", rep, 3+procs*each)
		}
		torn, _ := filepath.Glob(path + ".torn-*")
		if len(torn) != 1 {
			t.Fatalf("torn files = %v, want exactly one", torn)
		}
		b, err := os.ReadFile(torn[0])
		if err != nil || len(b) == 0 || bytes.ContainsRune(b, '\n') || !bytes.HasPrefix(b, []byte(`{"audit_id":"rec-003"`)) {
			t.Fatalf("torn file holds %q (%v), want the first half of rec-003", b, err)
		}
		by := recordsByWriter(t, path)
		for p := range procs {
			assertWriterRecords(t, by, fmt.Sprintf("w%d", p), each)
		}
	})
	t.Run("killed at a random moment", func(t *testing.T) {
		for round := range 3 {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			var children []*childWriter
			for p := range procs {
				children = append(children, startChild(t, path, "count", fmt.Sprintf("AIRLOCK_AUDIT_CHILD_ID=w%d", p), fmt.Sprintf("AIRLOCK_AUDIT_CHILD_N=%d", each)))
			}
			victim := startChild(t, path, "loop")
			for _, c := range children {
				c.stdin.Close()
			}
			time.Sleep(time.Duration(rand.IntN(15_000)) * time.Microsecond)
			victim.cmd.Process.Signal(syscall.SIGKILL)
			victim.wait()
			for p, c := range children {
				if err := c.wait(); err != nil {
					t.Fatalf("round %d writer %d: %v\n%s", round, p, err, c.stderr.String())
				}
			}
			rep, err := VerifyLog(path)
			if err != nil {
				t.Fatal(err)
			}
			// The victim may have died mid-record after the others finished: then the torn
			// bytes are still at the end, for the next writer.
			if rep.Broken || !(rep.Intact() || rep.CrashTorn()) || !rep.HeadOK {
				t.Fatalf("round %d: VerifyLog = %+v, want an intact chain", round, rep)
			}
			by := recordsByWriter(t, path)
			for p := range procs {
				assertWriterRecords(t, by, fmt.Sprintf("w%d", p), each)
			}
			assertRecovers(t, path, rep.Records)
		}
	})
}

// TestAuditTwoLogsInOneProcess: two AuditLogs on one file in one process exclude each other
// through the file lock, as separate processes do (each has its own open file).
func TestAuditTwoLogsInOneProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var logs [2]*AuditLog
	for i := range logs {
		l, _, err := OpenAudit(path)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		logs[i] = l
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			if err := logs[i%2].Append(testRecord(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	rep, err := VerifyLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact() || !rep.HeadOK || rep.Records != 40 {
		t.Fatalf("VerifyLog = %+v, want 40 intact records", rep)
	}
}

// TestAuditRefusesWhatOtherWritersLeft: a record appended by someone else that does not
// chain, or records cut from under an open log, stop the log instead of being built upon.
func TestAuditRefusesWhatOtherWritersLeft(t *testing.T) {
	cases := []struct {
		name    string
		damage  func(t *testing.T, path string)
		wantErr string
	}{
		{
			name: "foreign line",
			damage: func(t *testing.T, path string) {
				f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				f.WriteString(`{"audit_id":"forged"}` + "\n")
			},
			wantErr: "broken at line 3",
		},
		{
			name: "records removed",
			damage: func(t *testing.T, path string) {
				b, _ := os.ReadFile(path)
				os.WriteFile(path, b[:bytes.IndexByte(b, '\n')+1], 0o600)
			},
			wantErr: "shrank",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			l, _, err := OpenAudit(path)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			for i := range 2 {
				if err := l.Append(testRecord(i)); err != nil {
					t.Fatal(err)
				}
			}
			tc.damage(t, path)
			if err := l.Append(testRecord(2)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Append after %s = %v, want an error containing %q", tc.name, err, tc.wantErr)
			}
			if l.Err() == nil || l.Append(testRecord(3)) == nil {
				t.Fatal("the log accepted appends after finding damage")
			}
		})
	}
}

// TestAuditFollowsReplacedLog: a log moved aside while a writer has it open is not extended
// further; the writer continues in the new file at the path, as the other processes do.
func TestAuditFollowsReplacedLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l, _, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var got []Recovery
	l.OnRecover(func(r Recovery) { got = append(got, r) })
	for i := range 2 {
		if err := l.Append(testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	writeLog(t, path, 3) // another process starts a new log at the path
	if err := l.Append(testRecord(9)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].Reopened || got[0].Records != 3 {
		t.Fatalf("recoveries = %+v, want one reopen onto the 3-record log", got)
	}
	for p, want := range map[string]int64{path + ".1": 2, path: 4} {
		if rep := verifyFile(t, p); !rep.Intact() || rep.Records != want {
			t.Errorf("%s: %+v, want %d intact records", p, rep, want)
		}
	}
}

// TestVerifyLogTornTail tells a torn final line a crash leaves from a log cut short by hand.
func TestVerifyLogTornTail(t *testing.T) {
	cases := []struct {
		name      string
		cut       func(b []byte) []byte // applied to the log of 3 records
		noHead    bool
		wantCrash bool
		wantWhy   string // in HeadMsg, or "complete" for TornComplete
	}{
		{name: "crash: half a record appended", cut: func(b []byte) []byte { return append(b, `{"audit_id":"x","ti`...) }, wantCrash: true},
		{name: "crash, no head file", cut: func(b []byte) []byte { return append(b, `{"audit_id":"x","ti`...) }, noHead: true, wantCrash: true},
		{name: "last record cut in half", cut: func(b []byte) []byte { return b[:len(b)-40] }, wantWhy: "removed from the end"},
		{name: "last newline cut", cut: func(b []byte) []byte { return b[:len(b)-1] }, wantWhy: "removed from the end"},
		{name: "last newline cut, no head file", cut: func(b []byte) []byte { return b[:len(b)-1] }, noHead: true, wantWhy: "complete"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			writeLog(t, path, 3)
			b, _ := os.ReadFile(path)
			os.WriteFile(path, tc.cut(b), 0o600)
			if tc.noHead {
				os.Remove(path + ".head")
			}
			rep, err := VerifyLog(path)
			if err != nil {
				t.Fatal(err)
			}
			if rep.CrashTorn() != tc.wantCrash || rep.TornBytes == 0 || rep.Broken {
				t.Fatalf("VerifyLog = %+v, want CrashTorn %v", rep, tc.wantCrash)
			}
			switch {
			case tc.wantWhy == "complete" && !rep.TornComplete:
				t.Fatalf("VerifyLog = %+v, want TornComplete", rep)
			case tc.wantWhy != "" && tc.wantWhy != "complete" && (rep.HeadOK || !strings.Contains(rep.HeadMsg, tc.wantWhy)):
				t.Fatalf("VerifyLog = %+v, want the head to report %q", rep, tc.wantWhy)
			}
		})
	}
}

// TestAuditRefusesLogCutFromTheEnd: a writer must not rewrite the head file over the evidence
// that records were removed from the end of a log (or that its end was rewritten).
func TestAuditRefusesLogCutFromTheEnd(t *testing.T) {
	cases := []struct {
		name string
		cut  func(t *testing.T, path string)
	}{
		{"last record removed", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.SplitAfter(b, []byte("\n"))
			if err := os.WriteFile(path, bytes.Join(lines[:2], nil), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"last record rewritten", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.SplitAfter(b, []byte("\n"))
			// Rebuild a valid chain of the same length whose last record differs.
			if err := os.WriteFile(path, bytes.Join(lines[:2], nil), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(path + ".head"); err != nil {
				t.Fatal(err)
			}
			l, _, err := OpenAudit(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Append(testRecord(7)); err != nil {
				t.Fatal(err)
			}
			l.Close()
			if err := os.WriteFile(path+".head", headOf(t, lines), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			l, _, err := OpenAudit(path)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if err := l.Append(testRecord(i)); err != nil {
					t.Fatal(err)
				}
			}
			l.Close()
			c.cut(t, path)
			if l, _, err := OpenAudit(path); err == nil {
				l.Close()
				t.Fatal("OpenAudit extended a log whose head file shows it was cut or rewritten")
			} else if !strings.Contains(err.Error(), "move both") {
				t.Fatalf("error does not say how to start a new log: %v", err)
			}
		})
	}
}

// headOf is the head file the writer of the 3-record log in lines left behind.
func headOf(t *testing.T, lines [][]byte) []byte {
	t.Helper()
	var rec Record
	if err := json.Unmarshal(lines[2], &rec); err != nil {
		t.Fatal(err)
	}
	return fmt.Appendf(nil, `{"records":%-20d,"hash":"%s"}`+"\n", 3, rec.Hash)
}
