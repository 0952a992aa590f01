package pipeline

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/airlock-mcp/airlock/internal/flock"
	"golang.org/x/sys/unix"
)

// LogSet names the files of one chain: the log at Active and its rotated files (see
// RotatedFiles), or, when Files is set, those files in that order, the last one in the
// active log's place (its head file, FILE.head, is checked when it exists).
type LogSet struct {
	Active string
	Files  []string
}

// FileReport is what verifying one file of a set found. Line numbers count from the file's
// first line; Records counts the file's own intact records.
type FileReport struct {
	Path string
	// Start is the prev_hash of the file's first record ("" when it has none).
	Start string
	// Missing: the active log does not exist (rotated files do): a crash between a rotation
	// and the first write, or a log rotated that nobody has written to since.
	Missing bool
	VerifyReport
}

// SetReport is the outcome of checking the chain across a set of files.
type SetReport struct {
	Files []FileReport // in chain order, up to and including the broken one
	// Start is the prev_hash of the set's first record: GenesisHash when the set holds the
	// whole chain, else the hash of the last record of a file no longer in the set (rotated
	// files beyond audit.rotate.keep are removed). See EarlierRemoved.
	Start    string
	Records  int64
	LastID   string
	LastHash string
	Broken   bool
	// BrokenFile and BrokenLine locate the first record that failed (line in that file).
	BrokenFile string
	BrokenLine int
	Reason     string
	// TornBytes and TornComplete describe the active file's tail, as in VerifyReport.
	TornBytes    int64
	TornComplete bool
	HeadFound    bool   // the active file's head file exists
	HeadOK       bool   // and agrees with the set (it may lag by records, or by one rotation)
	HeadMsg      string // why it disagrees, or why there is none

	Unfinished      []string
	UnfinishedCount int
	Reaped          int64
}

// EarlierRemoved reports a set whose first record follows a record that is not in it: the
// files before it were removed (by audit.rotate.keep, or by hand). Nothing in the set shows
// which; the chain from Start on is intact if the report says so.
func (r SetReport) EarlierRemoved() bool { return r.Start != GenesisHash }

// Intact reports whether every byte of every file verified and the head file agrees.
func (r SetReport) Intact() bool {
	return !r.Broken && r.TornBytes == 0 && (!r.HeadFound || r.HeadOK)
}

// CrashTorn reports a set whose only flaw is a torn final line in the active file of the
// kind a crash mid-write leaves (see LogReport.CrashTorn).
func (r SetReport) CrashTorn() bool {
	return !r.Broken && r.TornBytes > 0 && !r.TornComplete && (!r.HeadFound || r.HeadOK)
}

// Verify checks the chain across the set: every record of every file, each file's first
// record following the last record of the file before it, and the head file. Like VerifyLog,
// it notes the active file's length and reads its head file under the shared lock, and
// confirms any result other than intact holding the lock throughout.
func (s LogSet) Verify() (SetReport, error) {
	rep, err := s.check(false, nil)
	if err != nil || rep.Intact() {
		return rep, err
	}
	return s.check(true, nil)
}

// Read verifies the set as Verify does (in one pass, without holding the lock), calling fn
// with each record, in chain order, once it has verified. It stops at the first record that
// does not verify, which fn never sees; the report says where. An error from fn stops it.
func (s LogSet) Read(fn func(line []byte, rec *Record) error) (SetReport, error) {
	return s.check(false, fn)
}

func (s LogSet) check(hold bool, fn func(line []byte, rec *Record) error) (SetReport, error) {
	snap, err := s.open(hold)
	if err != nil {
		return SetReport{}, err
	}
	defer snap.close()
	return snap.verify(fn)
}

// setFile is one opened file of a snapshot; size is the length to read.
type setFile struct {
	path string
	f    *os.File // nil for a missing active log
	size int64
}

// setSnapshot is a set's files, opened, with their lengths and the head file as of one
// moment.
type setSnapshot struct {
	files   []setFile
	head    []byte
	headErr error
	locked  *os.File // holds the shared lock until close
}

func (s *setSnapshot) close() {
	s.unlock()
	for _, f := range s.files {
		if f.f != nil {
			f.f.Close()
		}
	}
}

func (s *setSnapshot) unlock() {
	if s.locked != nil {
		_ = flock.Apply(s.locked, unix.LOCK_UN)
		s.locked = nil
	}
}

// lockShared takes the shared lock on f; on a file system without flock it returns false and
// no error (no Airlock writer can append there: writers refuse a log they cannot lock).
func lockShared(f *os.File, path string) (bool, error) {
	err := flock.Apply(f, unix.LOCK_SH)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
		return false, nil
	}
	return false, fmt.Errorf("locking %s: %w", path, err)
}

func (s LogSet) open(hold bool) (*setSnapshot, error) {
	if len(s.Files) > 0 {
		return openFiles(s.Files, hold)
	}
	for range maxReopens {
		snap, again, err := openRotated(s.Active, hold)
		if err != nil || !again {
			return snap, err
		}
	}
	return nil, fmt.Errorf("audit log %s keeps being rotated while it is read; try again", s.Active)
}

// openFiles opens files given in chain order; the last one's length and head file are read
// under its shared lock.
func openFiles(paths []string, hold bool) (*setSnapshot, error) {
	snap := &setSnapshot{}
	for i, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			snap.close()
			return nil, err
		}
		if i == len(paths)-1 {
			ok, err := lockShared(f, p)
			if err != nil {
				f.Close()
				snap.close()
				return nil, err
			}
			if ok {
				snap.locked = f
			}
			snap.head, snap.headErr = os.ReadFile(p + ".head")
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			snap.close()
			return nil, err
		}
		snap.files = append(snap.files, setFile{path: p, f: f, size: fi.Size()})
	}
	if !hold {
		snap.unlock()
	}
	return snap, nil
}

// openRotated opens the log at path and its rotated files. It holds the active log's shared
// lock while it lists and opens them: a writer rotates only under the exclusive lock, so no
// file can move from the active name to a rotated one unseen. If the file at path changed
// before the lock was taken, again asks for another try.
func openRotated(path string, hold bool) (snap *setSnapshot, again bool, err error) {
	snap = &setSnapshot{}
	active, err := os.Open(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if active != nil {
		ok, err := lockShared(active, path)
		if err != nil {
			active.Close()
			return nil, false, err
		}
		if ok {
			snap.locked = active
		}
	}
	fail := func(again bool, err error) (*setSnapshot, bool, error) {
		snap.close()
		if active != nil && snap.locked == nil {
			active.Close()
		}
		return nil, again, err
	}
	rot, err := listRotated(path)
	if err != nil {
		return fail(false, fmt.Errorf("audit log %s: listing rotated files: %w", path, err))
	}
	if active == nil && len(rot) == 0 {
		return fail(false, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist})
	}
	for _, r := range rot {
		f, err := os.Open(r.path)
		if errors.Is(err, fs.ErrNotExist) {
			return fail(true, nil) // removed (pruned) since the listing
		}
		if err != nil {
			return fail(false, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fail(false, err)
		}
		snap.files = append(snap.files, setFile{path: r.path, f: f, size: fi.Size()})
	}
	pi, perr := os.Stat(path)
	if active == nil {
		if perr == nil {
			return fail(true, nil) // created since
		}
		snap.files = append(snap.files, setFile{path: path})
	} else {
		fi, err := active.Stat()
		if err != nil {
			return fail(false, err)
		}
		if perr != nil || !os.SameFile(fi, pi) {
			return fail(true, nil) // rotated before the lock was taken
		}
		snap.files = append(snap.files, setFile{path: path, f: active, size: fi.Size()})
	}
	snap.head, snap.headErr = os.ReadFile(path + ".head")
	if !hold {
		snap.unlock()
	}
	return snap, false, nil
}

// verify checks the snapshot's chain, calling fn (if any) with each verified record.
func (s *setSnapshot) verify(fn func(line []byte, rec *Record) error) (SetReport, error) {
	rep := SetReport{LastHash: GenesisHash}
	open := map[string]bool{}
	prev := "" // the hash the next record must follow; "" until the set's first record
	prevFile := -1
	last := len(s.files) - 1
	for i, sf := range s.files {
		fr := FileReport{Path: sf.path, Missing: sf.f == nil}
		if sf.f == nil {
			fr.LastHash = cmp.Or(prev, GenesisHash) // an empty file: the chain passes through
			rep.Files = append(rep.Files, fr)
			continue
		}
		r := io.NewSectionReader(sf.f, 0, sf.size)
		if prev == "" {
			// The set's first record may follow a record in a removed file: take its
			// prev_hash as the start. Which files were removed the set cannot show.
			prev = firstPrevHash(r)
		}
		start := VerifyReport{LastHash: prev, open: open, emit: fn}
		if prev == "" {
			start.LastHash = GenesisHash
		}
		vr, err := verifyFrom(r, start, 64<<10)
		if err != nil {
			return rep, fmt.Errorf("reading %s: %w", sf.path, err)
		}
		fr.VerifyReport = vr
		fr.open, fr.emit = nil, nil
		if vr.Records > 0 {
			fr.Start = prev
			if rep.Start == "" {
				rep.Start = prev
			}
			prev, prevFile = vr.LastHash, i
			rep.LastID, rep.LastHash = vr.LastID, vr.LastHash
		}
		rep.Records += vr.Records
		rep.Reaped += vr.Reaped
		rep.Files = append(rep.Files, fr)
		switch {
		case vr.Broken:
			rep.Broken, rep.BrokenFile, rep.BrokenLine, rep.Reason = true, sf.path, vr.BrokenLine, vr.Reason
		case vr.TornBytes > 0 && i < last:
			rep.Broken, rep.BrokenFile, rep.BrokenLine = true, sf.path, int(vr.Records)+1
			rep.Reason = fmt.Sprintf("the file ends in %d bytes without a newline, but it is not the active log: a file is never written after it is rotated, so it was cut short or appended to", vr.TornBytes)
		case i == last:
			rep.TornBytes, rep.TornComplete = vr.TornBytes, vr.TornComplete
		}
		if rep.Broken {
			break
		}
	}
	if rep.Start == "" {
		rep.Start = GenesisHash
	}
	tracked := VerifyReport{open: open}
	tracked.finishTracking()
	rep.Unfinished, rep.UnfinishedCount = tracked.Unfinished, tracked.UnfinishedCount
	if rep.Broken || last < 0 {
		return rep, nil
	}
	s.checkHead(&rep, prevFile)
	return rep, nil
}

// checkHead compares the active file's head file with the verified set. prevFile indexes the
// last file with a record.
func (s *setSnapshot) checkHead(rep *SetReport, prevFile int) {
	active := s.files[len(s.files)-1]
	headPath := active.path + ".head"
	switch {
	case errors.Is(s.headErr, fs.ErrNotExist):
		rep.HeadMsg = fmt.Sprintf("no head file %s: cannot tell whether records were cut from the end", headPath)
		return
	case s.headErr != nil:
		rep.HeadFound = true
		rep.HeadMsg = fmt.Sprintf("head file %s is unreadable: %v", headPath, s.headErr)
		return
	}
	rep.HeadFound = true
	ar := rep.Files[len(rep.Files)-1]
	var intact io.Reader = bytes.NewReader(nil)
	if active.f != nil {
		intact = io.NewSectionReader(active.f, 0, ar.IntactBytes)
	}
	// The file before the active one, for a head file that still names its last record.
	var before io.Reader
	for i := min(prevFile, len(s.files)-2); i >= 0; i-- {
		if rep.Files[i].Records > 0 {
			before = io.NewSectionReader(s.files[i].f, 0, s.files[i].size)
			break
		}
	}
	rep.HeadOK, rep.HeadMsg = checkHeadAcross(s.head, headPath, ar.VerifyReport, intact, active.path, before)
}

// firstPrevHash is the prev_hash of r's first line, or "" when there is none.
func firstPrevHash(r io.ReadSeeker) string {
	defer r.Seek(0, io.SeekStart)
	line, err := readLine(bufio.NewReaderSize(r, 4<<10))
	if err != nil && err != io.EOF || len(line) == 0 || line[len(line)-1] != '\n' {
		return ""
	}
	var rec struct {
		PrevHash string `json:"prev_hash"`
	}
	if json.Unmarshal(line, &rec) != nil {
		return ""
	}
	return rec.PrevHash
}
