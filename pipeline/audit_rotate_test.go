package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeClock starts at start and moves one second on each call.
func fakeClock(start time.Time) func() time.Time {
	var mu sync.Mutex
	t := start
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

var rotateEpoch = time.Date(2026, 1, 2, 23, 59, 0, 0, time.UTC)

// writeRotated appends n records (testRecord(0..n-1)) to the log at path with rotation c and
// returns their hashes in order.
func writeRotated(t *testing.T, path string, n int, c RotateConfig) []string {
	t.Helper()
	l, _, err := OpenAudit(path, WithRotation(c), WithClock(fakeClock(rotateEpoch)))
	if err != nil {
		t.Fatal(err)
	}
	var hashes []string
	for i := range n {
		r := testRecord(i)
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, r.Hash)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return hashes
}

// setIDs reads the set's records in chain order, failing the test if it does not verify.
func setIDs(t *testing.T, s LogSet) []string {
	t.Helper()
	var ids []string
	rep, err := s.Read(func(_ []byte, rec *Record) error {
		ids = append(ids, rec.AuditID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact() {
		t.Fatalf("set does not verify: %+v", rep)
	}
	return ids
}

func fileIDs(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	ReadRecords(f, func(_ []byte, rec Record) error {
		ids = append(ids, rec.AuditID)
		return nil
	})
	return ids
}

func TestAuditRotateBySize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	line := len(mustLine(t, testRecord(0)))
	// Three records reach the limit: the fourth starts a new file.
	writeRotated(t, path, 10, RotateConfig{MaxSize: int64(3 * line)})
	rot, err := RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rot) != 3 {
		t.Fatalf("rotated files = %v, want 3 (3+3+3 records, 1 in the active log)", rot)
	}
	for i, r := range rot {
		want := fmt.Sprintf("audit-20260102T2359%02dZ-%06d.jsonl", i+1, i+1)
		if filepath.Base(r) != want {
			t.Errorf("rotated file %d is %s, want %s", i, filepath.Base(r), want)
		}
		if n := len(fileIDs(t, r)); n != 3 {
			t.Errorf("%s holds %d records, want 3", r, n)
		}
	}
	rep, err := LogSet{Active: path}.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact() || rep.Records != 10 || rep.EarlierRemoved() || len(rep.Files) != 4 || !rep.HeadOK || rep.LastID != "rec-009" {
		t.Fatalf("set = %+v, want 10 intact records in 4 files from the genesis", rep)
	}
	for i := 1; i < len(rep.Files); i++ {
		if rep.Files[i].Start != rep.Files[i-1].LastHash {
			t.Errorf("file %d starts at %.12s, file %d ends at %.12s", i, rep.Files[i].Start, i-1, rep.Files[i-1].LastHash)
		}
	}
	// A writer without the option continues the same chain, in the active file.
	writeLog(t, path, 1)
	if ids := setIDs(t, LogSet{Active: path}); len(ids) != 11 {
		t.Fatalf("after a writer without rotation: %d records, want 11", len(ids))
	}
}

func mustLine(t *testing.T, r *Record) []byte {
	t.Helper()
	r.PrevHash, r.Hash = GenesisHash, GenesisHash
	b, err := r.canonical()
	if err != nil {
		t.Fatal(err)
	}
	return append(b, []byte(`,"hash":"`+GenesisHash+`"`+"\n")...)
}

func TestAuditRotateDaily(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _, err := OpenAudit(path, WithRotation(RotateConfig{Daily: true}), WithClock(fakeClock(rotateEpoch)))
	if err != nil {
		t.Fatal(err)
	}
	days := []struct {
		id string
		at time.Time
	}{
		{"d1-a", time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)},
		{"d1-b", time.Date(2026, 1, 2, 23, 59, 59, 0, time.UTC)},
		{"d2-a", time.Date(2026, 1, 3, 0, 0, 1, 0, time.UTC)},
		// A call that began yesterday and closed today stays in today's file.
		{"d1-late", time.Date(2026, 1, 2, 23, 50, 0, 0, time.UTC)},
		{"d2-b", time.Date(2026, 1, 3, 12, 0, 0, 0, time.UTC)},
		// Days with no calls leave no files.
		{"d5-a", time.Date(2026, 1, 5, 1, 0, 0, 0, time.FixedZone("CET", 3600))},
	}
	for i, d := range days {
		r := testRecord(i)
		r.AuditID, r.Time = d.id, d.at.Format(time.RFC3339Nano)
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	rot, _ := RotatedFiles(path)
	got := [][]string{}
	for _, r := range append(rot, path) {
		got = append(got, fileIDs(t, r))
	}
	want := "[[d1-a d1-b] [d2-a d1-late d2-b] [d5-a]]"
	if fmt.Sprint(got) != want {
		t.Fatalf("files hold %v, want %s", got, want)
	}
	if ids := setIDs(t, LogSet{Active: path}); len(ids) != len(days) {
		t.Fatalf("set holds %d records, want %d", len(ids), len(days))
	}
}

func TestAuditRotateKeep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var pruned []string
	l, _, err := OpenAudit(path, WithRotation(RotateConfig{MaxSize: 1, Keep: 2}), WithClock(fakeClock(rotateEpoch)))
	if err != nil {
		t.Fatal(err)
	}
	l.OnRotate(func(r Rotation) { pruned = append(pruned, r.Pruned...) })
	var hashes []string
	for i := range 6 {
		r := testRecord(i)
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, r.Hash)
	}
	l.Close()
	// One record per file: rec-000..rec-004 rotated, rec-005 active; keep 2 leaves 003, 004.
	rot, _ := RotatedFiles(path)
	if len(rot) != 2 || len(pruned) != 3 || fileIDs(t, rot[0])[0] != "rec-003" {
		t.Fatalf("rotated = %v, pruned = %v; want the 2 newest kept and 3 removed", rot, pruned)
	}
	rep, err := LogSet{Active: path}.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact() || rep.Records != 3 || !rep.EarlierRemoved() || rep.Start != hashes[2] {
		t.Fatalf("set = %+v, want 3 intact records starting after rec-002 (%.12s)", rep, hashes[2])
	}
	// A writer opening the pruned set continues it.
	writeLog(t, path, 1)
	if ids := setIDs(t, LogSet{Active: path}); len(ids) != 4 {
		t.Fatalf("after another append: %v", ids)
	}
}

// TestAuditRotateOtherWriterFollows: one AuditLog rotates, another in the same process (as
// another process would) follows the path to the new file without reporting a replaced log.
func TestAuditRotateOtherWriterFollows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a, _, err := OpenAudit(path, WithRotation(RotateConfig{MaxSize: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var recovered []Recovery
	b.OnRecover(func(r Recovery) { recovered = append(recovered, r) })
	for i := range 8 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if err := l.Append(testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if len(recovered) != 0 {
		t.Errorf("a routine rotation was reported as a recovery: %+v", recovered)
	}
	ids := setIDs(t, LogSet{Active: path})
	if want := "[rec-000 rec-001 rec-002 rec-003 rec-004 rec-005 rec-006 rec-007]"; fmt.Sprint(ids) != want {
		t.Fatalf("set = %v, want %s", ids, want)
	}
	// b never rotates; a rotated before each of its appends but the first.
	if rot, _ := RotatedFiles(path); len(rot) != 3 {
		t.Fatalf("rotated files = %v, want 3", rot)
	}
}

// TestAuditRotateProcesses runs two writer processes that rotate the log they share while
// appending: every record is in the set, once, in one chain, in each writer's order.
func TestAuditRotateProcesses(t *testing.T) {
	const procs, each = 2, 60
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	line := len(mustLine(t, testRecord(0)))
	var children []*childWriter
	for p := range procs {
		children = append(children, startChild(t, path, "count", fmt.Sprintf("AIRLOCK_AUDIT_CHILD_ID=w%d", p),
			fmt.Sprintf("AIRLOCK_AUDIT_CHILD_N=%d", each), fmt.Sprintf("AIRLOCK_AUDIT_CHILD_ROTATE=%d", 5*line)))
	}
	for _, c := range children {
		c.stdin.Close()
	}
	for p, c := range children {
		if err := c.wait(); err != nil {
			t.Fatalf("writer %d: %v\n%s", p, err, c.stderr.String())
		}
	}
	rep, err := LogSet{Active: path}.Verify()
	if err != nil {
		t.Fatal(err)
	}
	rot, _ := RotatedFiles(path)
	if !rep.Intact() || !rep.HeadOK || rep.Records != procs*each || rep.EarlierRemoved() || len(rot) < 20 {
		t.Fatalf("set = %+v over %d rotated files, want %d intact records from the genesis in about 24 files", rep, len(rot), procs*each)
	}
	by := map[string][]string{}
	for _, id := range setIDs(t, LogSet{Active: path}) {
		w := id[:strings.LastIndex(id, "-")]
		by[w] = append(by[w], id)
	}
	for p := range procs {
		assertWriterRecords(t, by, fmt.Sprintf("w%d", p), each)
	}
}

// TestAuditRotateCrashBeforeFirstWrite kills a writer between renaming the active log and
// writing the new file's first record: the set verifies as it is, and the next writer
// continues the chain from the rotated file.
func TestAuditRotateCrashBeforeFirstWrite(t *testing.T) {
	check := func(t *testing.T, path string, wantRecords int64) {
		t.Helper()
		rep, err := LogSet{Active: path}.Verify()
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Intact() || !rep.HeadOK || rep.Records != wantRecords || rep.EarlierRemoved() {
			t.Fatalf("set = %+v, want %d intact records and a head that agrees", rep, wantRecords)
		}
	}
	continues := func(t *testing.T, path string) {
		t.Helper()
		writeLog(t, path, 1)
		check(t, path, 3)
		rot, _ := RotatedFiles(path)
		if len(rot) != 2 {
			t.Fatalf("rotated files = %v, want 2", rot)
		}
	}
	t.Run("killed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		c := startChild(t, path, "crash-after-rotate", "AIRLOCK_AUDIT_CHILD_ROTATE=1")
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		c.wait()
		if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
			t.Fatalf("active log after the crash: %v, %v; want an empty file", fi, err)
		}
		check(t, path, 2)
		continues(t, path)
	})
	t.Run("no active file", func(t *testing.T) {
		// The rename is done, the new file not yet created.
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		writeRotated(t, path, 2, RotateConfig{MaxSize: 1})
		to, err := nextRotatedName(path, rotateEpoch)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path, to); err != nil {
			t.Fatal(err)
		}
		check(t, path, 2)
		continues(t, path)
	})
}
