package pipeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"

	"github.com/airlock-mcp/airlock/internal/flock"
	"golang.org/x/sys/unix"
)

// VerifyReport is the outcome of checking a log's hash chain.
type VerifyReport struct {
	Records     int64  // intact records from the start
	LastID      string // audit_id of the last intact record ("" if none)
	LastHash    string // hash of the last intact record (GenesisHash if none)
	IntactBytes int64  // length of the intact prefix
	Broken      bool   // a complete line failed verification
	BrokenLine  int    // 1-based line number of the first bad line
	Reason      string // why that line failed
	TornBytes   int64  // trailing bytes without a newline (a write cut short by a crash)
	// TornComplete: the trailing bytes are a complete JSON value, i.e. a record whose newline
	// was cut off. A writer emits a record and its newline in one write, so this is what
	// truncating a log looks like, not what a crash leaves.
	TornComplete bool

	// Calls, from Verify and VerifyLog only (a writer catching up does not track them).
	// Unfinished lists, up to maxUnfinished, the audit_ids of calls with an intent record
	// (PhaseStarted) and no closing record: an Airlock process died while they ran and no
	// later start has reaped their containers yet (or they are running now). Reaped counts
	// the calls a later start closed that way.
	Unfinished      []string
	UnfinishedCount int
	Reaped          int64
	open            map[string]bool // audit_ids started and not yet closed, while verifying

	// day is the latest UTC day (2006-01-02) among the records' times, for daily rotation.
	day string
	// emit, when set, is called with each record once it has verified (LogSet.Read); its
	// error stops the verification and is returned as emitErr.
	emit    func(line []byte, rec *Record) error
	emitErr error
}

// maxUnfinished bounds VerifyReport.Unfinished.
const maxUnfinished = 100

// track notes a verified record's place in its call's life.
func (r *VerifyReport) track(rec *Record) {
	if r.open == nil {
		return
	}
	switch rec.Phase {
	case PhaseStarted:
		r.open[rec.AuditID] = true
	case PhaseReaped:
		r.Reaped++
		delete(r.open, rec.AuditID)
	default:
		delete(r.open, rec.AuditID)
	}
}

// finishTracking turns the calls still open into Unfinished, in log order of nothing in
// particular: sorted for a stable report.
func (r *VerifyReport) finishTracking() {
	if r.open == nil {
		return
	}
	r.UnfinishedCount = len(r.open)
	r.Unfinished = r.Unfinished[:0]
	for id := range r.open {
		r.Unfinished = append(r.Unfinished, id)
	}
	slices.Sort(r.Unfinished)
	if len(r.Unfinished) > maxUnfinished {
		r.Unfinished = r.Unfinished[:maxUnfinished]
	}
	r.open = nil
}

// Intact reports whether every byte of the log verified.
func (r VerifyReport) Intact() bool { return !r.Broken && r.TornBytes == 0 }

// MaxRecordBytes bounds one audit line when reading a log: a record with 1 MiB of recorded
// arguments is well below it, and a file that is not an audit log cannot make verify read
// gigabytes into memory.
const MaxRecordBytes = 64 << 20

var errLineTooLong = errors.New("line longer than MaxRecordBytes")

// readLine reads up to and including the next newline, refusing lines over MaxRecordBytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > MaxRecordBytes {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// Verify reads a log from r and checks every record: canonical encoding, prev_hash linking to
// the record before it, and hash. It stops at the first bad line. An error is returned only
// when r cannot be read.
func Verify(r io.Reader) (VerifyReport, error) {
	rep, err := verifyFrom(r, VerifyReport{LastHash: GenesisHash, open: map[string]bool{}}, 64<<10)
	rep.finishTracking()
	return rep, err
}

// verifyFrom continues a verification: r holds the bytes after rep.IntactBytes, and its first
// record must follow rep.LastHash. Line numbers and offsets in the result count from the start
// of the log. bufSize sizes the read buffer (a writer catching up reads a record or two).
func verifyFrom(r io.Reader, rep VerifyReport, bufSize int) (VerifyReport, error) {
	br := bufio.NewReaderSize(r, bufSize)
	line := int(rep.Records)
	for {
		b, err := readLine(br)
		if err == errLineTooLong {
			rep.Broken, rep.BrokenLine, rep.Reason = true, line+1, "line longer than 64 MiB: not an audit record"
			return rep, nil
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			// No newline: the last write was cut short. Not part of the chain.
			rep.TornBytes = int64(len(b))
			rep.TornComplete = json.Valid(b)
			return rep, nil
		}
		if len(b) > 0 {
			line++
			if reason := checkLine(b[:len(b)-1], rep.LastHash, &rep); reason != "" {
				rep.Broken, rep.BrokenLine, rep.Reason = true, line, reason
				return rep, nil
			}
			if rep.emitErr != nil {
				return rep, rep.emitErr
			}
			rep.IntactBytes += int64(len(b))
		}
		if err == io.EOF {
			return rep, nil
		}
		if err != nil {
			return rep, err
		}
	}
}

func checkLine(b []byte, prev string, rep *VerifyReport) string {
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return "not a JSON record: " + err.Error()
	}
	re, err := json.Marshal(rec)
	if err != nil || !bytes.Equal(re, b) {
		return fmt.Sprintf("record %q is not in canonical form (edited)", rec.AuditID)
	}
	if rec.PrevHash != prev {
		return fmt.Sprintf("record %q does not follow the record before it (prev_hash %.12s…, want %.12s…): a record was removed, reordered or inserted", rec.AuditID, rec.PrevHash, prev)
	}
	canon, _ := rec.canonical()
	if want := chainHash(prev, canon); rec.Hash != want {
		return fmt.Sprintf("record %q hash does not match its content (edited)", rec.AuditID)
	}
	rep.Records++
	rep.LastID = rec.AuditID
	rep.LastHash = rec.Hash
	rep.track(&rec)
	if d := recordDay(rec.Time); d > rep.day {
		rep.day = d
	}
	if rep.emit != nil {
		rep.emitErr = rep.emit(b, &rec)
	}
	return ""
}

// LogReport is what VerifyLog found in a log file and its head file.
type LogReport struct {
	VerifyReport
	HeadFound bool   // PATH.head exists
	HeadOK    bool   // the head file agrees with the log (it may lag it after a power loss)
	HeadMsg   string // why the head file disagrees, or why there is none
}

// CrashTorn reports a log whose only flaw is a torn final line of the kind a crash mid-write
// leaves: incomplete JSON without a newline, after an intact chain that the head file (if
// any) does not claim extends further. The next writer moves those bytes aside.
func (r LogReport) CrashTorn() bool {
	return !r.Broken && r.TornBytes > 0 && !r.TornComplete && (!r.HeadFound || r.HeadOK)
}

// VerifyLog checks the log at path and its head file (PATH.head) as one consistent snapshot.
//
// Writers append under an exclusive lock on the log (see AuditLog), so verify takes the shared
// lock while it notes the log's length and reads the head file: otherwise a record appended
// between the two reads would make an intact log look cut short, and a record half-written at
// that moment would look torn. The records before that length never change, so they are read
// without holding the lock, and writers are not held up by a long log. Any result other than
// intact is confirmed by reading again with the lock held throughout: a writer may have moved
// a crashed writer's torn tail aside and appended over it in between.
func VerifyLog(path string) (LogReport, error) {
	f, err := os.Open(path)
	if err != nil {
		return LogReport{}, err
	}
	defer f.Close()
	rep, err := verifyLogOnce(f, path, false)
	if err != nil || (rep.Intact() && (!rep.HeadFound || rep.HeadOK)) {
		return rep, err
	}
	return verifyLogOnce(f, path, true)
}

func verifyLogOnce(f *os.File, path string, hold bool) (LogReport, error) {
	var rep LogReport
	locked := true
	if err := flock.Apply(f, unix.LOCK_SH); err != nil {
		// A copy on a file system without flock (some network and FUSE mounts) is still
		// worth checking; no Airlock writer can be appending to it, because writers refuse
		// a log they cannot lock.
		if !errors.Is(err, unix.ENOLCK) && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
			return rep, fmt.Errorf("locking %s: %w", path, err)
		}
		locked = false
	}
	unlock := func() {
		if locked {
			_ = flock.Apply(f, unix.LOCK_UN)
			locked = false
		}
	}
	defer unlock()
	fi, err := f.Stat()
	if err != nil {
		return rep, err
	}
	headPath := path + ".head"
	head, herr := os.ReadFile(headPath)
	if !hold {
		unlock()
	}
	rep.VerifyReport, err = Verify(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return rep, err
	}
	switch {
	case errors.Is(herr, fs.ErrNotExist):
		rep.HeadMsg = fmt.Sprintf("no head file %s: cannot tell whether records were cut from the end", headPath)
	case herr != nil:
		rep.HeadFound = true
		rep.HeadMsg = fmt.Sprintf("head file %s is unreadable: %v", headPath, herr)
	default:
		rep.HeadFound = true
		rep.HeadOK, rep.HeadMsg = checkHead(head, headPath, rep.VerifyReport, io.NewSectionReader(f, 0, rep.IntactBytes), path)
	}
	return rep, nil
}

// CheckHead compares a verified log with its head file (PATH.head), which the writer updates
// after every record. It reports records removed from the end of the log, which the chain
// itself cannot show. A missing head file is not an error (ok is false, msg says so).
// VerifyLog does the same from one consistent snapshot; CheckHead suits a log no writer has
// open.
func CheckHead(path string, rep VerifyReport, logPath string) (ok bool, msg string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Sprintf("no head file %s (%v): cannot tell whether records were cut from the end", path, err)
	}
	f, err := os.Open(logPath)
	if err != nil {
		return false, fmt.Sprintf("cannot reread %s: %v", logPath, err)
	}
	defer f.Close()
	return checkHead(b, path, rep, io.NewSectionReader(f, 0, rep.IntactBytes), logPath)
}

// checkHead compares the head file's content b with rep; intact reads the log's intact prefix.
func checkHead(b []byte, path string, rep VerifyReport, intact io.Reader, logPath string) (ok bool, msg string) {
	var h struct {
		Records json.Number `json:"records"`
		Hash    string      `json:"hash"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(b), &h); err != nil {
		return false, fmt.Sprintf("head file %s is unreadable: %v", path, err)
	}
	n, err := strconv.ParseInt(h.Records.String(), 10, 64)
	if err != nil {
		return false, fmt.Sprintf("head file %s is unreadable: %v", path, err)
	}
	switch {
	case n > rep.Records:
		return false, fmt.Sprintf("head file says %d records but %s has %d intact: records were removed from the end", n, logPath, rep.Records)
	case n == rep.Records && h.Hash != rep.LastHash:
		return false, fmt.Sprintf("head file hash %.12s… does not match the last record's %.12s…: the end of the log was rewritten", h.Hash, rep.LastHash)
	case n == 0 || n == rep.Records:
		return true, ""
	}
	// The head lags the log (it is not fsynced, so after a power loss it may): the record it
	// names must still be there, unchanged.
	var i int64
	var at string
	errStop := errors.New("stop")
	_ = ReadRecords(intact, func(_ []byte, rec Record) error {
		if i++; i == n {
			at = rec.Hash
			return errStop
		}
		return nil
	})
	if at != h.Hash {
		return false, fmt.Sprintf("head file names record %d with hash %.12s…, but that record's hash is %.12s…: the log was rewritten from there", n, h.Hash, at)
	}
	return true, ""
}

// ReadRecords calls fn for each complete record line of r in order (it does not verify).
func ReadRecords(r io.Reader, fn func(line []byte, rec Record) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		b, err := readLine(br)
		if err == errLineTooLong {
			return err
		}
		if len(b) > 0 && b[len(b)-1] == '\n' {
			var rec Record
			trimmed := bytes.TrimRight(b, "\n")
			if jerr := json.Unmarshal(trimmed, &rec); jerr == nil {
				if ferr := fn(trimmed, rec); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
