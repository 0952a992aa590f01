package pipeline

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestLastLine(t *testing.T) {
	long := strings.Repeat("x", 150<<10) // past the 64 KiB read-back chunk
	for _, tc := range []struct{ in, want, err string }{
		{"a\nb\n", "b", ""},
		{"only\n", "only", ""},
		{"a\n" + long + "\n", long, ""},
		{long + "\n", long, ""},
		{"a\nb", "", "does not end in a complete record"},
		{"", "", "empty"},
	} {
		got, err := lastLine(bytes.NewReader([]byte(tc.in)), int64(len(tc.in)))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("lastLine(%.20q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("lastLine(%.20q) = %.20q, %v; want %.20q", tc.in, got, err, tc.want)
		}
	}
}

// TestAuditRotateLongRecord: the chain start is read back from a rotated file whose last
// record is longer than one read-back chunk (recorded arguments).
func TestAuditRotateLongRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := OpenAudit(path, WithRotation(RotateConfig{MaxSize: 1}))
	must(t, err)
	big := testRecord(0)
	big.Args, _ = json.Marshal(map[string]string{"content": strings.Repeat("y", 200<<10)})
	must(t, l.Append(big))
	must(t, l.Append(testRecord(1))) // rotates: the new file starts from the big record's hash
	must(t, l.Close())
	writeLog(t, path, 1) // and so does a writer opening it afresh
	if ids := setIDs(t, LogSet{Active: path}); len(ids) != 3 {
		t.Fatalf("set = %v, want 3 records", ids)
	}
}
