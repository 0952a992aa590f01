package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/pipeline"
)

func writeAuditLog(t *testing.T, path string, decisions ...string) {
	t.Helper()
	l, _, err := pipeline.OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i, d := range decisions {
		if err := l.Append(&pipeline.Record{AuditID: fmt.Sprintf("id-%d", i), Tool: "t", Decision: d}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuditCLI(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	writeAuditLog(t, path, "allow", "deny", "allow", "deny", "invalid")

	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := cmdAudit(context.Background(), args, &out, &errb)
		return code, out.String() + errb.String()
	}
	cases := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
		notWant  []string
	}{
		{name: "verify intact", args: []string{"verify", path}, wantCode: 0, want: []string{"OK", "5 records", "id-4"}},
		{name: "tail", args: []string{"tail", "-n", "2", path}, wantCode: 0, want: []string{`"id-3"`, `"id-4"`}, notWant: []string{`"id-2"`}},
		{name: "tail denied", args: []string{"tail", path, "--denied"}, wantCode: 0, want: []string{`"id-1"`, `"id-3"`}, notWant: []string{`"id-0"`, `"id-4"`}},
		{name: "tail more than there are", args: []string{"tail", "-n", "50", path}, wantCode: 0, want: []string{`"id-0"`, `"id-4"`}},
		{name: "missing file", args: []string{"verify", filepath.Join(dir, "nope")}, wantCode: 2},
		{name: "unknown subcommand", args: []string{"rotate"}, wantCode: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := run(tc.args...)
			if code != tc.wantCode {
				t.Fatalf("airlock audit %v = %d, want %d\n%s", tc.args, code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}

	// Tamper: swap records 2 and 3; verify exits 1 naming the last intact record.
	b, _ := os.ReadFile(path)
	l := strings.SplitAfter(string(b), "\n")
	l[2], l[3] = l[3], l[2]
	os.WriteFile(path, []byte(strings.Join(l, "")), 0o600)
	code, out := run("verify", path)
	if code != 1 || !strings.Contains(out, "last intact record id-1") {
		t.Fatalf("verify of a reordered log = %d %q, want 1 naming id-1", code, out)
	}

	// Truncating the last record is caught by the head file.
	path2 := filepath.Join(dir, "b.jsonl")
	writeAuditLog(t, path2, "allow", "allow", "allow")
	b, _ = os.ReadFile(path2)
	l = strings.SplitAfter(string(b), "\n")
	os.WriteFile(path2, []byte(strings.Join(l[:2], "")), 0o600)
	if code, out := run("verify", path2); code != 1 || !strings.Contains(out, "removed from the end") {
		t.Fatalf("verify of a truncated log = %d %q, want 1", code, out)
	}

	// Default path comes from $AIRLOCK_STATE_DIR.
	t.Setenv("AIRLOCK_STATE_DIR", dir)
	writeAuditLog(t, filepath.Join(dir, "audit", "audit.jsonl"), "allow")
	if code, out := run("verify"); code != 0 || !strings.Contains(out, filepath.Join(dir, "audit", "audit.jsonl")) {
		t.Fatalf("verify with the default path = %d %q", code, out)
	}
}

// TestAuditVerifyTornTail: a final line torn by a crash mid-write is not part of the chain and
// verify says so with exit 0; a log cut short by hand is broken.
func TestAuditVerifyTornTail(t *testing.T) {
	cases := []struct {
		name     string
		damage   func(path string, log []byte)
		wantCode int
		want     string
	}{
		{
			name: "crash mid-write",
			damage: func(path string, log []byte) {
				os.WriteFile(path, append(log, `{"audit_id":"id-3","time":"20`...), 0o600)
			},
			wantCode: 0, want: "OK %s: 3 records, chain intact, last record id-2; followed by a torn final write of 29 bytes",
		},
		{
			name: "crash mid-write, no head file",
			damage: func(path string, log []byte) {
				os.WriteFile(path, append(log, `{"audit_id":"id-3","time":"20`...), 0o600)
				os.Remove(path + ".head")
			},
			wantCode: 0, want: "torn final write of 29 bytes",
		},
		{
			name:     "last record cut short",
			damage:   func(path string, log []byte) { os.WriteFile(path, log[:len(log)-20], 0o600) },
			wantCode: 1, want: "BROKEN %s: 2 intact records, last intact record id-1; head file says 3 records",
		},
		{
			name: "last newline cut, no head file",
			damage: func(path string, log []byte) {
				os.WriteFile(path, log[:len(log)-1], 0o600)
				os.Remove(path + ".head")
			},
			wantCode: 1, want: "complete record without its newline: the log was truncated",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			writeAuditLog(t, path, "allow", "deny", "allow")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(path, b)
			var out, errb bytes.Buffer
			code := cmdAudit(context.Background(), []string{"verify", path}, &out, &errb)
			want := tc.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, path)
			}
			if code != tc.wantCode || !strings.Contains(out.String(), want) {
				t.Fatalf("airlock audit verify = %d\n%s%s\nwant %d and %q", code, out.String(), errb.String(), tc.wantCode, want)
			}
		})
	}
}

// TestAuditParallelCallsShareTheLog runs several `airlock call` processes at once against one
// state directory, as several agents' sessions do: every call leaves its record in the one
// log, and the chain verifies. The calls are denied by policy, so no sandbox is needed.
func TestAuditParallelCallsShareTheLog(t *testing.T) {
	const calls = 8
	// A denied call never reaches the sandbox, but `airlock call` checks its backend before
	// it serves anything.
	runcBin := testenv.Runc(t)
	bin := filepath.Join(testenv.Binaries(t), "airlock")
	state, ws := t.TempDir(), t.TempDir()
	policy, err := filepath.Abs(filepath.Join("testdata", "audit", "deny-all.json"))
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "AIRLOCK_STATE_DIR="+state, "AIRLOCK_RUNC="+runcBin)
	run := func(args ...string) (int, []byte, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Errorf("running airlock %v: %v", args, err)
			return -1, nil, ""
		}
		return cmd.ProcessState.ExitCode(), out, stderr.String()
	}
	ids := make([]string, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			args := []string{"call", "--policy", policy, "--workspace", ws, "run_command", fmt.Sprintf(`{"command":"ls %d"}`, i)}
			code, out, errOut := run(args...)
			var res struct {
				Structured struct {
					AuditID string `json:"audit_id"`
				} `json:"structuredContent"`
			}
			if code != 3 || json.Unmarshal(out, &res) != nil || res.Structured.AuditID == "" {
				t.Errorf("call %d = %d, want 3 (denied) with an audit_id\n%s%s", i, code, out, errOut)
				return
			}
			ids[i] = res.Structured.AuditID
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	code, out, errOut := run("audit", "verify")
	if code != 0 || !strings.Contains(string(out), fmt.Sprintf("OK %s: %d records, chain intact", filepath.Join(state, "audit", "audit.jsonl"), calls)) {
		t.Fatalf("airlock audit verify = %d, want 0 and %d records\n%s%s", code, calls, out, errOut)
	}
	f, err := os.Open(filepath.Join(state, "audit", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	logged := map[string]bool{}
	pipeline.ReadRecords(f, func(_ []byte, rec pipeline.Record) error {
		logged[rec.AuditID] = rec.Decision == "deny"
		return nil
	})
	for i, id := range ids {
		if !logged[id] {
			t.Errorf("call %d's record %s is not in the log as a denial", i, id)
		}
	}
}

// hostileRunes are characters a client can put in a tool name, key, session id or message that
// would reorder, hide or inject text on the operator's terminal.
var hostileRunes = map[string]string{
	"\u202e":     `\u202e`,       // RIGHT-TO-LEFT OVERRIDE
	"\u202a":     `\u202a`,       // LEFT-TO-RIGHT EMBEDDING
	"\u2066":     `\u2066`,       // LEFT-TO-RIGHT ISOLATE
	"\u2069":     `\u2069`,       // POP DIRECTIONAL ISOLATE
	"\u200b":     `\u200b`,       // ZERO WIDTH SPACE
	"\u200d":     `\u200d`,       // ZERO WIDTH JOINER
	"\ufeff":     `\ufeff`,       // ZERO WIDTH NO-BREAK SPACE
	"\u00ad":     `\u00ad`,       // SOFT HYPHEN
	"\U000E0041": `\udb40\udc41`, // TAG LATIN CAPITAL LETTER A: invisible text
	"\u009b":     `\u009b`,       // C1 CSI
	"\u0085":     `\u0085`,       // C1 NEL
}

// hostileC0 are C0 controls: in a JSON line encoding/json has escaped them already; in verify's
// text they are shown in caret notation.
var hostileC0 = map[string][2]string{"\x1b": {`\u001b`, "^["}, "\a": {`\u0007`, "^G"}, "\r": {`\r`, "^M"}}

func TestClientTextSafe(t *testing.T) {
	for raw, want := range hostileRunes {
		in := "a" + raw + "b"
		if got := string(clientTextSafe([]byte(in))); got != "a"+want+"b" {
			t.Errorf("clientTextSafe(%q) = %q, want %q", in, got, "a"+want+"b")
		}
	}
	// What terminalSafe keeps and escapes, clientTextSafe does too.
	for _, in := range []string{"plain ✓ 日本\n", "\x1b[2Kok", "x\x9b2J", "ok\xe2\x9c", "a\r\nb"} {
		if got, want := string(clientTextSafe([]byte(in))), string(terminalSafe([]byte(in))); got != want {
			t.Errorf("clientTextSafe(%q) = %q, terminalSafe gives %q", in, got, want)
		}
	}
	// A command's own output keeps format characters: emoji sequences are joined with U+200D.
	if got := string(terminalSafe([]byte("👩\u200d💻"))); got != "👩\u200d💻" {
		t.Errorf("terminalSafe escaped a joiner in command output: %q", got)
	}
}

// TestAuditCLIEscapesClientText: `audit tail` and `audit verify` print what clients chose
// (tool names, keys, session ids, messages; record ids of a log someone else wrote) with
// control and format characters escaped, as JSON escapes, so each tail line still decodes to
// the record it was.
func TestAuditCLIEscapesClientText(t *testing.T) {
	var all strings.Builder
	for raw := range hostileRunes {
		all.WriteString(raw)
	}
	for raw := range hostileC0 {
		all.WriteString(raw)
	}
	evil := "x" + all.String() + "y"
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := pipeline.OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := &pipeline.Record{AuditID: "id-" + evil, Tool: "read_file" + evil, Session: evil, Grant: evil, ArgKeys: []string{evil}, Decision: "deny", Message: evil}
	if err := l.Append(rec); err != nil {
		t.Fatal(err)
	}
	l.Close()
	b, _ := os.ReadFile(path)
	var wrote pipeline.Record
	if err := json.Unmarshal(b, &wrote); err != nil {
		t.Fatal(err)
	}

	for _, args := range [][]string{{"tail", path}, {"tail", "--denied", path}, {"verify", path}} {
		var out, errb bytes.Buffer
		if code := cmdAudit(context.Background(), args, &out, &errb); code != 0 {
			t.Fatalf("airlock audit %v = %d\n%s%s", args, code, out.String(), errb.String())
		}
		for raw, esc := range hostileRunes {
			if strings.Contains(out.String(), raw) {
				t.Errorf("airlock audit %v printed %q raw:\n%q", args, raw, out.String())
			}
			if !strings.Contains(out.String(), esc) {
				t.Errorf("airlock audit %v lacks the escape %s:\n%s", args, esc, out.String())
			}
		}
		for raw, esc := range hostileC0 {
			want := esc[0]
			if args[0] == "verify" {
				want = esc[1]
			}
			if strings.Contains(out.String(), raw) || !strings.Contains(out.String(), want) {
				t.Errorf("airlock audit %v: %q raw or not as %s:\n%q", args, raw, want, out.String())
			}
		}
		if args[0] != "tail" {
			continue
		}
		var got pipeline.Record
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("tail line is not JSON any more: %v\n%s", err, out.String())
		}
		a, _ := json.Marshal(got)
		w, _ := json.Marshal(wrote)
		if !bytes.Equal(a, w) {
			t.Errorf("tail line decodes to another record:\n%s\nwant\n%s", a, w)
		}
	}
}
