package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/pipeline"
)

// rotatedAuditLog writes one record per file (max size 1): ids id-0..id-(n-1), at the times
// given (RFC 3339), or none. It returns the rotated files and every record's hash.
func rotatedAuditLog(t *testing.T, path string, keep int, times ...string) ([]string, []string) {
	t.Helper()
	l, _, err := pipeline.OpenAudit(path, pipeline.WithRotation(pipeline.RotateConfig{MaxSize: 1, Keep: keep}))
	if err != nil {
		t.Fatal(err)
	}
	var hashes []string
	for i, at := range times {
		code := i
		r := &pipeline.Record{AuditID: fmt.Sprintf("id-%d", i), Time: at, Tool: "run_command", Grant: "ci", Session: "s1",
			Decision: []string{"allow", "deny"}[i%2], Rule: "/tools/run_command/require/0", ExitCode: &code}
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, r.Hash)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rot, err := pipeline.RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	return rot, hashes
}

func runAudit(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cmdAudit(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func times(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = time.Date(2026, 11, 21, 5, i, 0, 0, time.UTC).Format(time.RFC3339Nano)
	}
	return out
}

func TestAuditVerifyRotatedSet(t *testing.T) {
	cases := []struct {
		name   string
		keep   int
		damage func(t *testing.T, path string, rot []string)
		args   func(path string, rot []string) []string
		code   int
		want   []string
	}{
		{
			name: "intact", code: 0,
			want: []string{"  %[2]s: 1 records\n", "  %[1]s: 1 records\n", "OK %[1]s: 4 records in 4 files, chain intact, last record id-3\n"},
		},
		{
			name: "earlier files removed", keep: 1, code: 0,
			want: []string{"  %[2]s: 1 records, chain starts at %[3]s (earlier files removed)\n",
				"OK %[1]s: 2 records in 2 files, chain intact, last record id-3; chain starts at %[3]s (earlier files removed)\n"},
		},
		{
			name:   "middle file removed",
			damage: func(t *testing.T, _ string, rot []string) { os.Remove(rot[1]) },
			code:   1,
			want: []string{"  %[4]s: BROKEN at line 1 after 0 intact records (a file before it is missing",
				"BROKEN %[1]s: 1 intact records, last intact record id-0; %[4]s line 1: record \"id-2\" does not follow"},
		},
		{
			name: "record edited",
			damage: func(t *testing.T, _ string, rot []string) {
				b, _ := os.ReadFile(rot[1])
				os.WriteFile(rot[1], bytes.Replace(b, []byte(`"decision":"deny"`), []byte(`"decision":"allow"`), 1), 0o600)
			},
			code: 1,
			want: []string{"BROKEN %[1]s: 1 intact records, last intact record id-0; %[5]s line 1: record \"id-1\" hash does not match its content (edited)"},
		},
		{
			name: "--files in order", code: 0,
			args: func(path string, rot []string) []string {
				return append(append([]string{"verify", "--files"}, rot...), path)
			},
			want: []string{"OK %[1]s: 4 records in 4 files, chain intact"},
		},
		{
			name: "--files reordered", code: 1,
			args: func(path string, rot []string) []string {
				return []string{"verify", "--files", rot[0], rot[2], rot[1], path}
			},
			want: []string{"BROKEN %[1]s: 1 intact records, last intact record id-0; %[4]s line 1"},
		},
		{
			name: "--files with a file left out", code: 1,
			args: func(path string, rot []string) []string { return []string{"verify", "--files", rot[0], rot[2], path} },
			want: []string{"%[4]s line 1: record \"id-2\" does not follow"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			rot, hashes := rotatedAuditLog(t, path, tc.keep, times(4)...)
			args := []string{"verify", path}
			if tc.args != nil {
				args = tc.args(path, rot)
			}
			third := ""
			if len(rot) > 2 {
				third = rot[2]
			}
			second := ""
			if len(rot) > 1 {
				second = rot[1]
			}
			if tc.damage != nil {
				tc.damage(t, path, rot)
			}
			code, out, errOut := runAudit(args...)
			if code != tc.code {
				t.Fatalf("airlock audit %v = %d, want %d\n%s%s", args, code, tc.code, out, errOut)
			}
			for _, w := range tc.want {
				if w = fmt.Sprintf(w, path, rot[len(rot)-1-min(len(rot)-1, 2)], hashes[1], third, second); !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestAuditVerifyAfterCrashedRotation: a rotation whose new file was never created verifies,
// and names the missing active log.
func TestAuditVerifyAfterCrashedRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	rotatedAuditLog(t, path, 0, times(2)...)
	if err := os.Rename(path, strings.TrimSuffix(path, ".jsonl")+"-20991231T000000Z-000009.jsonl"); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runAudit("verify", path)
	if code != 0 || !strings.Contains(out, path+": no file (rotated, and nothing written since)") || !strings.Contains(out, "OK "+path+": 2 records in 3 files") {
		t.Fatalf("verify = %d\n%s%s", code, out, errOut)
	}
}

func TestAuditVerifyConfig(t *testing.T) {
	dir := t.TempDir()
	rotatedAuditLog(t, filepath.Join(dir, "logs", "audit.jsonl"), 0, times(2)...)
	cfg := filepath.Join(dir, "airlock.yaml")
	os.WriteFile(cfg, []byte("audit:\n  path: logs/audit.jsonl\n  rotate:\n    max_size: 1Mi\n"), 0o600)
	code, out, errOut := runAudit("verify", "--config", cfg)
	if code != 0 || !strings.Contains(out, "OK "+filepath.Join(dir, "logs", "audit.jsonl")+": 2 records in 2 files") {
		t.Fatalf("verify --config = %d\n%s%s", code, out, errOut)
	}
	for _, args := range [][]string{{"verify", "--config", cfg, "x.jsonl"}, {"verify", "a", "b"}, {"verify", "--files"}, {"export", "--format", "csv"}, {"export", "--since", "yesterday"}} {
		if code, out, errOut := runAudit(args...); code != 2 {
			t.Errorf("airlock audit %v = %d, want 2\n%s%s", args, code, out, errOut)
		}
	}
}

func TestAuditExport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	now := time.Now().UTC()
	at := []string{
		now.Add(-72 * time.Hour).Format(time.RFC3339Nano),
		now.Add(-30 * time.Hour).Format(time.RFC3339Nano),
		now.Add(-2 * time.Hour).Format(time.RFC3339Nano),
		now.Add(-1 * time.Hour).Format(time.RFC3339Nano),
	}
	rot, _ := rotatedAuditLog(t, path, 0, at...)
	var all []byte
	for _, f := range append(rot, path) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	lines := strings.SplitAfter(string(all), "\n")
	t.Run("ndjson", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{nil, string(all)},
			{[]string{"--since", "24h"}, lines[2] + lines[3]},
			{[]string{"--since", "2d", "--until", "90m"}, lines[1] + lines[2]},
			{[]string{"--until", at[1]}, lines[0]},
			{[]string{"--since", at[1], "--until", at[2]}, lines[1]},
			{[]string{"--files", rot[0], rot[1]}, lines[0] + lines[1]},
		} {
			args := append([]string{"export"}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--files") {
				args = append(args, path)
			}
			code, out, errOut := runAudit(args...)
			if code != 0 || out != tc.want {
				t.Errorf("airlock audit %v = %d\n%s\nwant\n%s%s", args, code, out, tc.want, errOut)
			}
		}
	})
	t.Run("otlp", func(t *testing.T) {
		code, out, errOut := runAudit("export", "--format", "otlp", "--since", "48h", path)
		if code != 0 || strings.Count(out, "\n") != 1 {
			t.Fatalf("export --format otlp = %d, want one request line\n%s%s", code, out, errOut)
		}
		var req struct {
			ResourceLogs []struct {
				Resource struct {
					Attributes []struct {
						Key   string
						Value struct{ StringValue string }
					}
				}
				ScopeLogs []struct {
					LogRecords []struct {
						TimeUnixNano string
						SeverityText string
						Body         struct{ StringValue string }
						Attributes   []struct {
							Key   string
							Value struct{ StringValue string }
						}
					}
				}
			}
		}
		if err := json.Unmarshal([]byte(out), &req); err != nil {
			t.Fatal(err)
		}
		res := req.ResourceLogs[0].Resource.Attributes
		if len(res) != 1 || res[0].Key != "service.name" || res[0].Value.StringValue != "airlock" {
			t.Errorf("resource attributes = %+v, want service.name=airlock", res)
		}
		recs := req.ResourceLogs[0].ScopeLogs[0].LogRecords
		if len(recs) != 3 {
			t.Fatalf("%d log records, want 3 (the last 48 hours)", len(recs))
		}
		for i, r := range recs {
			ts, _ := time.Parse(time.RFC3339Nano, at[i+1])
			if r.TimeUnixNano != fmt.Sprint(ts.UnixNano()) || r.Body.StringValue+"\n" != lines[i+1] {
				t.Errorf("log record %d: time %s body %q; want %d and the record's line", i, r.TimeUnixNano, r.Body.StringValue, ts.UnixNano())
			}
			attrs := map[string]string{}
			for _, a := range r.Attributes {
				attrs[a.Key] = a.Value.StringValue
			}
			wantSev, wantDec := "WARN", "deny"
			if (i+1)%2 == 0 {
				wantSev, wantDec = "INFO", "allow"
			}
			if r.SeverityText != wantSev || attrs["airlock.decision"] != wantDec || attrs["airlock.audit_id"] != fmt.Sprintf("id-%d", i+1) ||
				attrs["airlock.tool"] != "run_command" || attrs["airlock.grant"] != "ci" || attrs["airlock.rule"] != "/tools/run_command/require/0" {
				t.Errorf("log record %d: severity %s attributes %v", i, r.SeverityText, attrs)
			}
		}
	})
	t.Run("broken", func(t *testing.T) {
		b, _ := os.ReadFile(rot[2])
		os.WriteFile(rot[2], bytes.Replace(b, []byte(`"tool":"run_command"`), []byte(`"tool":"read_file"`), 1), 0o600)
		code, out, errOut := runAudit("export", path)
		if code != 1 || out != lines[0]+lines[1] || !strings.Contains(errOut, "BROKEN "+path+": "+rot[2]+" line 1: ") || !strings.Contains(errOut, "exported the 2 records before it") {
			t.Fatalf("export of a broken set = %d\n%s%s\nwant 1, the 2 records before the edit and the place", code, out, errOut)
		}
	})
}

func TestAuditTailRotated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	rotatedAuditLog(t, path, 0, times(5)...)
	code, out, errOut := runAudit("tail", "-n", "3", path)
	ids := []string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r pipeline.Record
		json.Unmarshal([]byte(l), &r)
		ids = append(ids, r.AuditID)
	}
	if code != 0 || strings.Join(ids, " ") != "id-2 id-3 id-4" {
		t.Fatalf("tail -n 3 over one-record files = %d %v\n%s", code, ids, errOut)
	}
	code, out, _ = runAudit("tail", "--denied", path)
	if code != 0 || strings.Count(out, "\n") != 2 {
		t.Fatalf("tail --denied = %d\n%s, want id-1 and id-3", code, out)
	}
}

// TestAuditCallRotates: `airlock call` with a config's audit.rotate rotates a log past
// max_size before it appends, and the set verifies through the config's audit path.
func TestAuditCallRotates(t *testing.T) {
	runcBin := testenv.Runc(t)
	bin := filepath.Join(testenv.Binaries(t), "airlock")
	state, ws := t.TempDir(), t.TempDir()
	policy, err := filepath.Abs(filepath.Join("testdata", "audit", "deny-all.json"))
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(state, "audit", "audit.jsonl")
	// Fill the log past 1 MiB.
	l, _, err := pipeline.OpenAudit(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		r := &pipeline.Record{AuditID: fmt.Sprintf("fill-%d", i), Decision: "allow", Message: strings.Repeat("m", 2000)}
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(logPath); fi.Size() >= 1<<20 {
			break
		}
	}
	l.Close()
	cfg := filepath.Join(t.TempDir(), "airlock.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("audit:\n  path: %s\n  rotate:\n    max_size: 1Mi\n    keep: 5\n", logPath)), 0o600)
	for i := range 2 {
		cmd := exec.Command(bin, "call", "--config", cfg, "--policy", policy, "--workspace", ws, "run_command", fmt.Sprintf(`{"command":"ls %d"}`, i))
		cmd.Env = append(os.Environ(), "AIRLOCK_STATE_DIR="+state, "AIRLOCK_RUNC="+runcBin)
		if out, err := cmd.CombinedOutput(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 {
			t.Fatalf("airlock call = %v, want 3 (denied)\n%s", err, out)
		}
	}
	rot, err := pipeline.RotatedFiles(logPath)
	if err != nil || len(rot) != 1 {
		t.Fatalf("rotated files = %v (%v), want 1", rot, err)
	}
	code, out, errOut := runAudit("verify", "--config", cfg)
	if code != 0 || !strings.Contains(out, "  "+logPath+": 2 records\n") || !strings.Contains(out, "OK "+logPath+": ") {
		t.Fatalf("airlock audit verify --config = %d\n%s%s", code, out, errOut)
	}
}
