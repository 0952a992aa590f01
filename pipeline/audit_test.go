package pipeline

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func testRecord(i int) *Record {
	code := i % 3
	return &Record{
		AuditID:    fmt.Sprintf("rec-%03d", i),
		Time:       time.Date(2026, 1, 2, 3, 4, 5, i, time.UTC).Format(time.RFC3339Nano),
		Grant:      "g",
		Session:    "s",
		Tool:       "run_command",
		ArgsSHA256: strings.Repeat("a", 64),
		ArgKeys:    []string{"command"},
		Decision:   "allow",
		Rule:       "/tools/run_command",
		Message:    "<ok> & \"quoted\"",
		ExitCode:   &code,
		Redactions: map[string]int{"aws-access-token": i},
		DurationMS: 1.25 + float64(i),
		StageMS:    map[string]float64{"schema": 0.012, "policy": 0.003},
	}
}

func writeLog(t *testing.T, path string, n int) {
	t.Helper()
	l, _, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := l.Append(testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func verifyFile(t *testing.T, path string) VerifyReport {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Verify(f)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestAuditChainVerifies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeLog(t, path, 3)
	writeLog(t, path, 2) // reopening continues the chain
	rep := verifyFile(t, path)
	if !rep.Intact() || rep.Records != 5 || rep.LastID != "rec-001" {
		t.Fatalf("verify = %+v, want 5 intact records ending in rec-001", rep)
	}
	if ok, msg := CheckHead(path+".head", rep, path); !ok {
		t.Fatalf("head check failed on an intact log: %s", msg)
	}
}

func TestAuditTamperDetected(t *testing.T) {
	lines := func(t *testing.T, path string) []string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	cases := []struct {
		name       string
		tamper     func(l []string) []string
		wantLastID string
		wantLine   int
		wantReason string
	}{
		{
			name: "edited value",
			tamper: func(l []string) []string {
				l[2] = strings.Replace(l[2], `"decision":"allow"`, `"decision":"deny"`, 1)
				return l
			},
			wantLastID: "rec-001", wantLine: 3, wantReason: "hash does not match",
		},
		{
			name: "edited whitespace",
			tamper: func(l []string) []string {
				l[2] = strings.Replace(l[2], `,"tool"`, `, "tool"`, 1)
				return l
			},
			wantLastID: "rec-001", wantLine: 3, wantReason: "canonical",
		},
		{
			name: "added field",
			tamper: func(l []string) []string {
				l[2] = strings.Replace(l[2], `{"audit_id"`, `{"x":1,"audit_id"`, 1)
				return l
			},
			wantLastID: "rec-001", wantLine: 3, wantReason: "canonical",
		},
		{
			name:       "removed record",
			tamper:     func(l []string) []string { return append(l[:2], l[3:]...) },
			wantLastID: "rec-001", wantLine: 3, wantReason: "removed, reordered or inserted",
		},
		{
			name: "reordered records",
			tamper: func(l []string) []string {
				l[2], l[3] = l[3], l[2]
				return l
			},
			wantLastID: "rec-001", wantLine: 3, wantReason: "removed, reordered or inserted",
		},
		{
			name:       "first record removed",
			tamper:     func(l []string) []string { return l[1:] },
			wantLastID: "", wantLine: 1, wantReason: "removed, reordered or inserted",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			writeLog(t, path, 5)
			l := tc.tamper(lines(t, path))
			if err := os.WriteFile(path, []byte(strings.Join(l, "")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			rep := verifyFile(t, path)
			if !rep.Broken || rep.LastID != tc.wantLastID || rep.BrokenLine != tc.wantLine || !strings.Contains(rep.Reason, tc.wantReason) {
				t.Fatalf("verify = %+v, want broken at line %d after %q (%s)", rep, tc.wantLine, tc.wantLastID, tc.wantReason)
			}
			if _, _, err := OpenAudit(path); err == nil || !strings.Contains(err.Error(), "broken at line") {
				t.Fatalf("OpenAudit on a tampered log = %v, want a refusal", err)
			}
		})
	}
}

func TestAuditHeadDetectsRemovedTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeLog(t, path, 4)
	b, _ := os.ReadFile(path)
	l := strings.SplitAfter(string(b), "\n")
	if err := os.WriteFile(path, []byte(strings.Join(l[:3], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := verifyFile(t, path)
	if !rep.Intact() || rep.Records != 3 {
		t.Fatalf("verify = %+v, want a 3-record intact chain", rep)
	}
	ok, msg := CheckHead(path+".head", rep, path)
	if ok || !strings.Contains(msg, "removed from the end") {
		t.Fatalf("CheckHead = %v %q, want tail removal reported", ok, msg)
	}
}

func TestAuditTornTailRecovered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeLog(t, path, 3)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"audit_id":"torn","time":"2026`)
	f.Close()
	rep := verifyFile(t, path)
	if rep.Broken || rep.Records != 3 || rep.TornBytes == 0 {
		t.Fatalf("verify = %+v, want 3 intact records and a torn tail", rep)
	}
	assertRecovers(t, path, 3)
}

// assertRecovers opens a log that may end in a torn line, checks the torn bytes were moved
// aside, appends, and checks the whole log verifies with want+1 records.
func assertRecovers(t *testing.T, path string, want int64) {
	t.Helper()
	l, rec, err := OpenAudit(path)
	if err != nil {
		t.Fatalf("OpenAudit after a crash: %v", err)
	}
	if rec.Records != want {
		t.Fatalf("recovered %d records, want %d", rec.Records, want)
	}
	if rec.TornBytes > 0 {
		torn, err := os.ReadFile(rec.TornPath)
		if err != nil || int64(len(torn)) != rec.TornBytes {
			t.Fatalf("torn bytes not saved aside: %v (%d bytes, want %d)", err, len(torn), rec.TornBytes)
		}
	}
	if err := l.Append(testRecord(99)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	rep := verifyFile(t, path)
	if !rep.Intact() || rep.Records != want+1 || rep.LastID != "rec-099" {
		t.Fatalf("after recovery and append: %+v, want %d intact records", rep, want+1)
	}
}

// TestAuditKilledMidWrite kills a child process (this test binary) with SIGKILL while it is in
// the middle of writing a record, then checks the log's intact prefix verifies and appends
// continue the chain.
func TestAuditKilledMidWrite(t *testing.T) {
	for _, mode := range []string{"half-line", "loop"} {
		t.Run(mode, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			cmd := exec.Command(os.Args[0], "-test.run=^TestAuditChildWriter$", "-test.v")
			cmd.Env = append(os.Environ(), "AIRLOCK_AUDIT_CHILD="+path, "AIRLOCK_AUDIT_CHILD_MODE="+mode)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			for sc.Scan() && !strings.Contains(sc.Text(), "CHILD-READY") {
			}
			if mode == "loop" {
				time.Sleep(50 * time.Millisecond)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			rep := verifyFile(t, path)
			if rep.Broken {
				t.Fatalf("intact prefix does not verify after kill: %+v", rep)
			}
			if mode == "half-line" && (rep.TornBytes == 0 || rep.Records != 3) {
				t.Fatalf("verify = %+v, want 3 records and a torn line", rep)
			}
			if rep.Records == 0 {
				t.Fatalf("child wrote no records before the kill: %+v", rep)
			}
			assertRecovers(t, path, rep.Records)
		})
	}
}

// TestAuditChildWriter is the child process of TestAuditKilledMidWrite and the multi-process
// tests in audit_multiproc_test.go.
func TestAuditChildWriter(t *testing.T) {
	path := os.Getenv("AIRLOCK_AUDIT_CHILD")
	if path == "" {
		t.Skip("helper process for TestAuditKilledMidWrite")
	}
	var opts []AuditOption
	if v := os.Getenv("AIRLOCK_AUDIT_CHILD_ROTATE"); v != "" {
		size, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, WithRotation(RotateConfig{MaxSize: size}))
	}
	l, _, err := OpenAudit(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	switch os.Getenv("AIRLOCK_AUDIT_CHILD_MODE") {
	case "crash-after-rotate":
		// Two records, then a third that rotates the log (AIRLOCK_AUDIT_CHILD_ROTATE=1) and
		// stops before its write: killed between the rename and the new file's first record.
		for i := 0; i < 2; i++ {
			if err := l.Append(testRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		l.writeLine = func(f *os.File, line []byte) error {
			fmt.Println("CHILD-READY")
			select {} // killed here
		}
		l.Append(testRecord(2))
	case "half-line":
		for i := 0; i < 3; i++ {
			if err := l.Append(testRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		l.writeLine = func(f *os.File, line []byte) error {
			if _, err := f.Write(line[:len(line)/2]); err != nil {
				return err
			}
			f.Sync()
			fmt.Println("CHILD-READY")
			select {} // killed here, mid-record
		}
		l.Append(testRecord(3))
	case "count":
		// Append AIRLOCK_AUDIT_CHILD_N records with ids AIRLOCK_AUDIT_CHILD_ID-NNNN once the
		// parent closes stdin, so that every child writes at the same time.
		n, err := strconv.Atoi(os.Getenv("AIRLOCK_AUDIT_CHILD_N"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("CHILD-READY")
		io.Copy(io.Discard, os.Stdin)
		for i := 0; i < n; i++ {
			r := testRecord(i)
			r.AuditID = fmt.Sprintf("%s-%04d", os.Getenv("AIRLOCK_AUDIT_CHILD_ID"), i)
			if err := l.Append(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		fmt.Println("CHILD-READY")
		for i := 0; ; i++ {
			if err := l.Append(testRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestAuditConcurrentAppendsNeverDrop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Go(func() {
			if err := l.Append(testRecord(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	l.Close()
	rep := verifyFile(t, path)
	if !rep.Intact() || rep.Records != 50 {
		t.Fatalf("verify = %+v, want 50 intact records", rep)
	}
}

func TestAuditStopsAfterFailedWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.writeLine = func(*os.File, []byte) error { return syscall.EIO }
	if err := l.Append(testRecord(0)); err == nil {
		t.Fatal("Append succeeded with a failing disk")
	}
	l.writeLine = writeAll
	if err := l.Append(testRecord(1)); err == nil || l.Err() == nil {
		t.Fatal("log accepted appends after a failed write")
	}
}

// TestAuditDiskFull: a write that finds the disk full (after writing part of the line) leaves
// the log intact, refuses with an error that says what to do, drops an intent record (its
// call does not run) but keeps a closing record, and writes it first once there is space.
func TestAuditDiskFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(testRecord(0)); err != nil {
		t.Fatal(err)
	}
	full := func(f *os.File, line []byte) error {
		if _, err := f.Write(line[:len(line)/2]); err != nil {
			return err
		}
		return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	l.writeLine = full
	intent := testRecord(1)
	intent.Phase = PhaseStarted
	err = l.AppendUnsynced(intent)
	if !errors.Is(err, ErrAuditFull) || !strings.Contains(err.Error(), "free space") {
		t.Fatalf("intent append on a full disk: %v, want ErrAuditFull saying to free space", err)
	}
	if err := l.Append(testRecord(2)); !errors.Is(err, ErrAuditFull) || !strings.Contains(err.Error(), "held in memory") {
		t.Fatalf("closing append on a full disk: %v", err)
	}
	if rep := verifyFile(t, path); !rep.Intact() || rep.Records != 1 {
		t.Fatalf("log while the disk is full: %+v, want 1 intact record and no torn bytes", rep)
	}
	if l.Err() != nil {
		t.Fatalf("a full disk stopped the log: %v", l.Err())
	}
	l.writeLine = writeAll
	if err := l.Append(testRecord(3)); err != nil {
		t.Fatalf("append once there is space: %v", err)
	}
	l.Close()
	rep := verifyFile(t, path)
	if !rep.Intact() || rep.Records != 3 || rep.LastID != testRecord(3).AuditID {
		t.Fatalf("after the disk has space: %+v, want records 0, 2, 3", rep)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), testRecord(1).AuditID) {
		t.Error("the intent record of a call that did not run was written")
	}
}

func TestAuditRecordRoundTripsCanonically(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	r := testRecord(1)
	r.Args = []byte(`{"command":"echo <hi> \u00e9","n":1e400}`)
	r.Message = "bad utf8 \xff and \u2028"
	if err := l.Append(r); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rep := verifyFile(t, path); !rep.Intact() {
		b, _ := os.ReadFile(path)
		t.Fatalf("record with odd content does not verify: %+v\n%s", rep, bytes.TrimSpace(b))
	}
}

func TestAuditHeadLaggingStillChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeLog(t, path, 3)
	head, _ := os.ReadFile(path + ".head")
	writeLog(t, path, 2) // the log moves on; restore the older head, as after a power loss
	if err := os.WriteFile(path+".head", head, 0o600); err != nil {
		t.Fatal(err)
	}
	rep := verifyFile(t, path)
	if ok, msg := CheckHead(path+".head", rep, path); !ok {
		t.Fatalf("a lagging head over an intact log was refused: %s", msg)
	}
	// Rewrite the log from record 2 on with a fresh, self-consistent chain: the lagging head
	// names record 3, whose hash no longer matches.
	b, _ := os.ReadFile(path)
	first := strings.SplitAfter(string(b), "\n")[0]
	os.WriteFile(path, []byte(first), 0o600)
	os.Remove(path + ".head")
	l, _, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 14; i++ {
		l.Append(testRecord(i))
	}
	l.Close()
	os.WriteFile(path+".head", head, 0o600)
	rep = verifyFile(t, path)
	if ok, msg := CheckHead(path+".head", rep, path); ok || !strings.Contains(msg, "rewritten") {
		t.Fatalf("CheckHead = %v %q, want the rewrite reported", ok, msg)
	}
}

// TestAuditHeadNeverAheadOfDurableLog: an unsynced append (an intent record) leaves the head
// file alone, so a power cut that loses the log's unsynced tail while keeping the head file's
// page cannot make the log look cut from the end; the next synced append updates the head.
func TestAuditHeadNeverAheadOfDurableLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(testRecord(0)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	durable := fi.Size()
	intent := testRecord(1)
	intent.Phase = PhaseStarted
	if err := l.AppendUnsynced(intent); err != nil {
		t.Fatal(err)
	}
	head, _ := os.ReadFile(path + ".head")
	if !strings.Contains(string(head), `"records":1 `) {
		t.Errorf("head file after an unsynced append: %s, want it still at 1 record", head)
	}
	// The power cut: the unsynced tail is lost, the head file as it is survives.
	l.f.Close()
	l.headF.Close()
	if err := os.Truncate(path, durable); err != nil {
		t.Fatal(err)
	}
	l2, _, err := OpenAudit(path)
	if err != nil {
		t.Fatalf("after losing the unsynced tail the log is refused: %v", err)
	}
	if err := l2.Append(testRecord(2)); err != nil {
		t.Fatal(err)
	}
	l2.Close()
	head, _ = os.ReadFile(path + ".head")
	if !strings.Contains(string(head), `"records":2 `) {
		t.Errorf("head file after a synced append: %s, want 2 records", head)
	}
}
