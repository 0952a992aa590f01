package pipeline

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogSetDetectsDamage damages a rotated set (three rotated files of two records, two
// records in the active log) in the ways a set can be damaged and checks verify names the
// file and line where the chain breaks.
func TestLogSetDetectsDamage(t *testing.T) {
	line := len(mustLine(t, testRecord(0)))
	cases := []struct {
		name     string
		damage   func(t *testing.T, path string, rot []string)
		files    func(path string, rot []string) []string // nil: discover from the active log
		wantFile int                                      // index into rot+active of the broken file; -1: not broken
		brokenAt func(path string, rot []string) string   // the broken file, when not one of those
		wantLine int
		want     string
	}{
		{name: "intact", wantFile: -1},
		{
			name:     "middle file removed",
			damage:   func(t *testing.T, _ string, rot []string) { must(t, os.Remove(rot[1])) },
			wantFile: 2, wantLine: 1, want: "does not follow the record before it",
		},
		{
			name: "files reordered",
			damage: func(t *testing.T, _ string, rot []string) {
				tmp := rot[0] + ".tmp"
				must(t, os.Rename(rot[0], tmp))
				must(t, os.Rename(rot[1], rot[0]))
				must(t, os.Rename(tmp, rot[1]))
			},
			wantFile: 1, wantLine: 1, want: "does not follow",
		},
		{
			name: "file inserted",
			damage: func(t *testing.T, path string, rot []string) {
				// Another log's file, named to sort between the first two.
				other := filepath.Join(t.TempDir(), "audit.jsonl")
				writeLog(t, other, 2)
				b, err := os.ReadFile(other)
				must(t, err)
				must(t, os.WriteFile(inserted(rot), b, 0o600))
			},
			brokenAt: func(_ string, rot []string) string { return inserted(rot) },
			wantLine: 1, want: "does not follow",
		},
		{
			name: "record edited in a rotated file",
			damage: func(t *testing.T, _ string, rot []string) {
				b, err := os.ReadFile(rot[1])
				must(t, err)
				lines := bytes.SplitAfter(b, []byte("\n"))
				lines[1] = bytes.Replace(lines[1], []byte(`"decision":"allow"`), []byte(`"decision":"deny"`), 1)
				must(t, os.WriteFile(rot[1], bytes.Join(lines, nil), 0o600))
			},
			wantFile: 1, wantLine: 2, want: "hash does not match its content",
		},
		{
			name: "record removed from the end of a rotated file",
			damage: func(t *testing.T, _ string, rot []string) {
				b, err := os.ReadFile(rot[2])
				must(t, err)
				must(t, os.WriteFile(rot[2], b[:bytes.IndexByte(b, '\n')+1], 0o600))
			},
			wantFile: 3, wantLine: 1, want: "does not follow",
		},
		{
			name: "rotated file cut mid-record",
			damage: func(t *testing.T, _ string, rot []string) {
				b, err := os.ReadFile(rot[0])
				must(t, err)
				must(t, os.WriteFile(rot[0], b[:len(b)-20], 0o600))
			},
			wantFile: 0, wantLine: 2, want: "not the active log",
		},
		{
			name:     "--files in the wrong order",
			files:    func(path string, rot []string) []string { return []string{rot[1], rot[0], rot[2], path} },
			wantFile: 1, wantLine: 1, want: "does not follow",
		},
		{
			name:     "--files in order",
			files:    func(path string, rot []string) []string { return append(append([]string{}, rot...), path) },
			wantFile: -1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			writeRotated(t, path, 8, RotateConfig{MaxSize: int64(2 * line)})
			rot, err := RotatedFiles(path)
			must(t, err)
			if len(rot) != 3 {
				t.Fatalf("rotated = %v, want 3 files", rot)
			}
			all := append(append([]string{}, rot...), path)
			set := LogSet{Active: path}
			if tc.files != nil {
				set = LogSet{Files: tc.files(path, rot)}
				all = set.Files
			}
			if tc.damage != nil {
				tc.damage(t, path, rot)
			}
			rep, err := set.Verify()
			must(t, err)
			if tc.brokenAt != nil {
				all = []string{tc.brokenAt(path, rot)}
				tc.wantFile = 0
			}
			if tc.wantFile < 0 {
				if !rep.Intact() || rep.Records != 8 || rep.EarlierRemoved() {
					t.Fatalf("set = %+v, want 8 intact records", rep)
				}
				return
			}
			if !rep.Broken || rep.BrokenFile != all[tc.wantFile] || rep.BrokenLine != tc.wantLine || !strings.Contains(rep.Reason, tc.want) {
				t.Fatalf("set = broken %v in %s line %d (%s); want broken in %s line %d (%s)",
					rep.Broken, rep.BrokenFile, rep.BrokenLine, rep.Reason, all[tc.wantFile], tc.wantLine, tc.want)
			}
		})
	}
}

// inserted is a name that sorts between the first two rotated files.
func inserted(rot []string) string {
	return strings.Replace(rot[0], "-000001.jsonl", "-000015.jsonl", 1)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestLogSetHeadAcrossRotation: after a rotation the head file may still name a record of
// the file before the active one (a crash, or a power cut before it reached the disk), but
// not one further back, and not a record that is not there.
func TestLogSetHeadAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	hashes := writeRotated(t, path, 4, RotateConfig{MaxSize: 1}) // one record per file
	head := func(records int, hash string) {
		l := &AuditLog{path: path, records: int64(records), head: hash, start: GenesisHash}
		f, err := os.OpenFile(path+".head", os.O_RDWR, 0)
		must(t, err)
		defer f.Close()
		l.headF = f
		must(t, l.writeHead())
	}
	cases := []struct {
		records int
		hash    string
		ok      bool
	}{
		{1, hashes[3], true},  // the active file's record
		{1, hashes[2], true},  // the last record of the file before
		{1, hashes[1], false}, // two files back
		{2, hashes[2], false}, // a record the file before does not have
		{0, hashes[3], true},
	}
	for _, tc := range cases {
		head(tc.records, tc.hash)
		rep, err := LogSet{Active: path}.Verify()
		must(t, err)
		if rep.HeadOK != tc.ok {
			t.Errorf("head {%d, %.8s}: HeadOK = %v (%s), want %v", tc.records, tc.hash, rep.HeadOK, rep.HeadMsg, tc.ok)
		}
		_, _, err = OpenAudit(path)
		if (err == nil) != tc.ok {
			t.Errorf("head {%d, %.8s}: OpenAudit error %v, want ok=%v", tc.records, tc.hash, err, tc.ok)
		}
	}
}

// TestLogSetReadStops: Read hands over the records that verified, in chain order, and stops
// at the first that does not; an error from the callback stops it too.
func TestLogSetReadStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeRotated(t, path, 5, RotateConfig{MaxSize: 1})
	rot, _ := RotatedFiles(path)
	must(t, os.Remove(rot[2]))
	var ids []string
	rep, err := LogSet{Active: path}.Read(func(_ []byte, rec *Record) error {
		ids = append(ids, rec.AuditID)
		return nil
	})
	must(t, err)
	if !rep.Broken || strings.Join(ids, " ") != "rec-000 rec-001" {
		t.Fatalf("read %v, report %+v; want rec-000 rec-001 and broken", ids, rep)
	}
	stop := errors.New("enough")
	_, err = LogSet{Active: path}.Read(func(_ []byte, rec *Record) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("Read = %v, want the callback's error", err)
	}
	if _, err := (LogSet{Active: filepath.Join(t.TempDir(), "none.jsonl")}).Verify(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Verify of no log = %v, want not exist", err)
	}
}
