package pipeline

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// GenesisHash is the prev_hash of the first record of a log.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Decisions recorded in the audit log besides the policy verdicts (allow, deny, approve).
const (
	DecisionInvalid     = "invalid"      // stage 2 refused the arguments
	DecisionUnknownTool = "unknown_tool" // no such tool
	DecisionError       = "error"        // the sandbox or the tool's plan failed; the tool did not run
)

// Record is one audit line. Field order is the canonical order: the hash covers the record as
// encoding/json writes this struct with Hash empty (and so omitted).
type Record struct {
	AuditID      string             `json:"audit_id"`
	Time         string             `json:"time"` // RFC 3339, UTC, nanoseconds
	PrevHash     string             `json:"prev_hash"`
	Hash         string             `json:"hash,omitempty"`
	Grant        string             `json:"grant"`
	Session      string             `json:"session"`
	Tool         string             `json:"tool"`
	ArgsSHA256   string             `json:"args_sha256"`
	ArgKeys      []string           `json:"arg_keys"`
	Args         json.RawMessage    `json:"args,omitempty"` // only with Config.RecordArgs
	Decision     string             `json:"decision"`
	Rule         string             `json:"rule"`
	Message      string             `json:"message"`
	PolicySHA256 string             `json:"policy_sha256"`
	Backend      string             `json:"backend"`
	Image        string             `json:"image"`
	Profile      string             `json:"profile"`
	ContainerID  string             `json:"container_id"`
	ExitCode     *int               `json:"exit_code"` // null when the tool did not run
	TimedOut     bool               `json:"timed_out"`
	OOMKilled    bool               `json:"oom_killed"`
	Truncated    bool               `json:"truncated"`
	Redactions   map[string]int     `json:"redactions"`
	Loosened     []string           `json:"loosened,omitempty"`
	DurationMS   float64            `json:"duration_ms"`
	StageMS      map[string]float64 `json:"stage_ms"`
}

// canonical is the byte form the hash covers: the record as encoding/json writes it with Hash
// empty. encoding/json sorts map keys and its output re-encodes to itself, so a verifier that
// decodes a line and encodes it again gets the same bytes back.
func (r Record) canonical() ([]byte, error) {
	r.Hash = ""
	return json.Marshal(r)
}

// normalize makes every string valid UTF-8. encoding/json writes an invalid byte as the escape
// \ufffd but re-encodes the decoded U+FFFD as the raw character, so without this a record
// carrying, say, an error message with a stray byte would not verify.
func (r *Record) normalize() {
	v := func(s *string) { *s = strings.ToValidUTF8(*s, "\uFFFD") }
	for _, s := range []*string{&r.AuditID, &r.Time, &r.Grant, &r.Session, &r.Tool, &r.ArgsSHA256,
		&r.Decision, &r.Rule, &r.Message, &r.PolicySHA256, &r.Backend, &r.Image, &r.Profile, &r.ContainerID} {
		v(s)
	}
	for i := range r.ArgKeys {
		v(&r.ArgKeys[i])
	}
	for i := range r.Loosened {
		v(&r.Loosened[i])
	}
	if !utf8.Valid(r.Args) {
		r.Args = nil
	}
}

func chainHash(prev string, canonical []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(canonical)
	return hex.EncodeToString(h.Sum(nil))
}

// AuditLog is the append-only, hash-chained audit trail. Appends are serialised by one mutex
// and each record is fsynced before Append returns: a caller blocks rather than a record being
// dropped. After a failed write the log refuses further appends (Err reports why), because the
// bytes on disk are no longer known.
type AuditLog struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	headF   *os.File
	head    string
	records int64
	err     error

	// writeLine writes one encoded line; tests replace it to simulate a crash mid-write.
	writeLine func(f *os.File, line []byte) error
}

// Recovery describes what OpenAudit found in an existing log.
type Recovery struct {
	Records   int64  // intact records already in the log
	LastID    string // audit_id of the last intact record
	TornBytes int64  // bytes of an incomplete last line removed from the log
	TornPath  string // where those bytes were saved, when TornBytes > 0
}

// OpenAudit opens (creating if needed) the audit log at path and recovers the chain head.
//
// A crash can only leave an incomplete last line (records are written with one write and end
// in a newline). Such torn bytes are copied to PATH.torn-<unix-nanos>, fsynced, and truncated
// from the log, so the chain continues from the last intact record and the torn bytes are
// never part of it. Any other damage (a complete line that does not verify) is tampering or
// disk corruption: OpenAudit refuses the log rather than extend a chain it cannot vouch for.
func OpenAudit(path string) (*AuditLog, Recovery, error) {
	var rec Recovery
	if path == "" {
		return nil, rec, errors.New("audit log: no path configured; set AuditPath (default $AIRLOCK_STATE_DIR/audit/audit.jsonl)")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, rec, fmt.Errorf("audit log %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, rec, fmt.Errorf("audit log %s: %w", path, err)
	}
	rep, err := Verify(f)
	if err != nil {
		f.Close()
		return nil, rec, fmt.Errorf("audit log %s: %w", path, err)
	}
	if rep.Broken {
		f.Close()
		return nil, rec, fmt.Errorf("audit log %s is broken at line %d (%s); the last intact record is %q. Run `airlock audit verify %s`, move the file aside and start again",
			path, rep.BrokenLine, rep.Reason, rep.LastID, path)
	}
	rec.Records, rec.LastID = rep.Records, rep.LastID
	if rep.TornBytes > 0 {
		rec.TornBytes = rep.TornBytes
		rec.TornPath = fmt.Sprintf("%s.torn-%d", path, time.Now().UnixNano())
		if err := saveTorn(f, rep.IntactBytes, rec.TornPath); err != nil {
			f.Close()
			return nil, rec, fmt.Errorf("audit log %s: saving the torn last line: %w", path, err)
		}
		if err := f.Truncate(rep.IntactBytes); err != nil {
			f.Close()
			return nil, rec, fmt.Errorf("audit log %s: removing the torn last line: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, rec, fmt.Errorf("audit log %s: %w", path, err)
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, rec, fmt.Errorf("audit log %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, rec, fmt.Errorf("audit log %s: %w", path, err)
	}
	headF, err := os.OpenFile(path+".head", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		f.Close()
		return nil, rec, fmt.Errorf("audit log head %s.head: %w", path, err)
	}
	l := &AuditLog{path: path, f: f, headF: headF, head: rep.LastHash, records: rep.Records, writeLine: writeAll}
	if err := l.writeHead(); err != nil {
		l.Close()
		return nil, rec, err
	}
	return l, rec, nil
}

func saveTorn(f *os.File, from int64, dst string) error {
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, f); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func writeAll(f *os.File, line []byte) error {
	_, err := f.Write(line)
	return err
}

// Path is the log's file name.
func (l *AuditLog) Path() string { return l.path }

// Err is the error that stopped the log (a failed write, or Close), or nil while it accepts
// appends.
func (l *AuditLog) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil && l.f == nil {
		return fmt.Errorf("audit log %s is closed", l.path)
	}
	return l.err
}

// Append chains rec to the log (setting PrevHash and Hash), writes it as one line and fsyncs.
// It blocks while another append is in progress; it never drops a record.
func (l *AuditLog) Append(rec *Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if l.f == nil {
		return fmt.Errorf("audit log %s is closed", l.path)
	}
	rec.normalize()
	rec.PrevHash = l.head
	canon, err := rec.canonical()
	if err != nil {
		return fmt.Errorf("audit log %s: encoding record %s: %w", l.path, rec.AuditID, err)
	}
	rec.Hash = chainHash(l.head, canon)
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("audit log %s: encoding record %s: %w", l.path, rec.AuditID, err)
	}
	line = append(line, '\n')
	if err := l.writeLine(l.f, line); err != nil {
		l.err = fmt.Errorf("audit log %s: write failed, no further calls are accepted until Airlock restarts: %w", l.path, err)
		return l.err
	}
	if err := l.f.Sync(); err != nil {
		l.err = fmt.Errorf("audit log %s: fsync failed, no further calls are accepted until Airlock restarts: %w", l.path, err)
		return l.err
	}
	l.head = rec.Hash
	l.records++
	// The head file is best effort (not fsynced): it lets verify notice records cut from the
	// end of the log, which a hash chain alone cannot show.
	_ = l.writeHead()
	return nil
}

// The head file has a fixed length (zero-padded count), so it is rewritten in place.
func (l *AuditLog) writeHead() error {
	b := fmt.Appendf(nil, `{"records":%-20d,"hash":"%s"}`+"\n", l.records, l.head)
	if _, err := l.headF.WriteAt(b, 0); err != nil {
		return fmt.Errorf("audit log head %s.head: %w", l.path, err)
	}
	return nil
}

// Close closes the log. Appends after Close fail.
func (l *AuditLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	if l.f != nil {
		errs = append(errs, l.f.Sync(), l.f.Close())
		l.f = nil
	}
	if l.headF != nil {
		errs = append(errs, l.headF.Close())
		l.headF = nil
	}
	return errors.Join(errs...)
}

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
	rep := VerifyReport{LastHash: GenesisHash}
	br := bufio.NewReaderSize(r, 64<<10)
	line := 0
	for {
		b, err := readLine(br)
		if err == errLineTooLong {
			rep.Broken, rep.BrokenLine, rep.Reason = true, line+1, "line longer than 64 MiB: not an audit record"
			return rep, nil
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			// No newline: the last write was cut short. Not part of the chain.
			rep.TornBytes = int64(len(b))
			return rep, nil
		}
		if len(b) > 0 {
			line++
			if reason := checkLine(b[:len(b)-1], rep.LastHash, &rep); reason != "" {
				rep.Broken, rep.BrokenLine, rep.Reason = true, line, reason
				return rep, nil
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
	return ""
}

// CheckHead compares a verified log with its head file (PATH.head), which the writer updates
// after every record. It reports records removed from the end of the log, which the chain
// itself cannot show. A missing head file is not an error (ok is false, msg says so).
func CheckHead(path string, rep VerifyReport, logPath string) (ok bool, msg string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Sprintf("no head file %s (%v): cannot tell whether records were cut from the end", path, err)
	}
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
	f, err := os.Open(logPath)
	if err != nil {
		return false, fmt.Sprintf("cannot reread %s: %v", logPath, err)
	}
	defer f.Close()
	var i int64
	var at string
	errStop := errors.New("stop")
	_ = ReadRecords(f, func(_ []byte, rec Record) error {
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
