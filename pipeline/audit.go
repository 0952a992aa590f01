package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
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
	AuditID      string          `json:"audit_id"`
	Time         string          `json:"time"` // RFC 3339, UTC, nanoseconds
	PrevHash     string          `json:"prev_hash"`
	Hash         string          `json:"hash,omitempty"`
	Grant        string          `json:"grant"`
	Session      string          `json:"session"`
	Tool         string          `json:"tool"`
	ArgsSHA256   string          `json:"args_sha256"`
	ArgKeys      []string        `json:"arg_keys"`
	ArgKeyCount  int             `json:"arg_key_count,omitempty"`
	Args         json.RawMessage `json:"args,omitempty"` // only with Config.RecordArgs
	Decision     string          `json:"decision"`
	Rule         string          `json:"rule"`
	Message      string          `json:"message"`
	PolicySHA256 string          `json:"policy_sha256"`
	Backend      string          `json:"backend"`
	Image        string          `json:"image"`
	Profile      string          `json:"profile"`
	ContainerID  string          `json:"container_id"`
	ExitCode     *int            `json:"exit_code"` // null when the tool did not run
	TimedOut     bool            `json:"timed_out"`
	OOMKilled    bool            `json:"oom_killed"`
	Truncated    bool            `json:"truncated"`
	Redactions   map[string]int  `json:"redactions"`
	Loosened     []string        `json:"loosened,omitempty"`
	// Egress lists the connections the call's sandbox made through its egress proxy (the
	// first MaxRecordEgress; EgressCount says how many there were).
	Egress      []EgressRecord     `json:"egress,omitempty"`
	EgressCount int                `json:"egress_count,omitempty"`
	DurationMS  float64            `json:"duration_ms"`
	StageMS     map[string]float64 `json:"stage_ms"`
	// Phase is empty on the record that closes a call. PhaseStarted marks the intent record
	// written just before the call's sandbox starts; PhaseReaped the record a later Airlock
	// start writes when it removes the container of a call whose Airlock died mid-call.
	Phase string `json:"phase,omitempty"`
	// Cancelled: the call was cancelled (the client cancelled or went away, or Airlock shut
	// down) before it finished. With a ContainerID the tool had started and was killed.
	Cancelled bool `json:"cancelled,omitempty"`
	// Upstream and UpstreamTool name the upstream MCP server and its own name for the tool,
	// for a call to (or a pin decision about) a tool Airlock serves as a gateway; empty for
	// built-in and configured tools.
	Upstream     string `json:"upstream,omitempty"`
	UpstreamTool string `json:"upstream_tool,omitempty"`
	// SessionTainted: when the policy judged the call, its MCP session had run an untrusted
	// tool; SessionTaintedBy names the first MaxRecordSessionNames of them. Labels are those
	// the call gave its session by executing (label_if; the first MaxRecordSessionNames).
	// Absent when false or empty, so records without them keep their canonical form.
	SessionTainted   bool     `json:"session_tainted,omitempty"`
	SessionTaintedBy []string `json:"session_tainted_by,omitempty"`
	Labels           []string `json:"labels,omitempty"`
	// TraceID is the W3C trace id of the call's OpenTelemetry span (32 lowercase hex digits),
	// when tracing is on; it ties the record to the call's trace (docs/observe.md).
	TraceID string `json:"trace_id,omitempty"`
}

// EgressRecord is one connection through a call's egress proxy, allowed or refused.
type EgressRecord struct {
	Host          string `json:"host"`
	Port          int    `json:"port"`
	Allowed       bool   `json:"allowed"`
	Code          string `json:"code,omitempty"` // why it was refused or cut (egress.Event.Code)
	BytesSent     int64  `json:"bytes_sent"`
	BytesReceived int64  `json:"bytes_received"`
}

// Record phases (Record.Phase).
const (
	PhaseStarted = "started"
	PhaseReaped  = "reaped"
)

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
		&r.Decision, &r.Rule, &r.Message, &r.PolicySHA256, &r.Backend, &r.Image, &r.Profile, &r.ContainerID, &r.Phase,
		&r.Upstream, &r.UpstreamTool, &r.TraceID} {
		v(s)
	}
	for i := range r.ArgKeys {
		v(&r.ArgKeys[i])
	}
	for _, list := range [][]string{r.Loosened, r.SessionTaintedBy, r.Labels} {
		for i := range list {
			v(&list[i])
		}
	}
	for i := range r.Egress {
		v(&r.Egress[i].Host)
		v(&r.Egress[i].Code)
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

// AuditLog is the append-only, hash-chained audit trail.
//
// Several Airlock processes write the same log (every `serve` and every `airlock call` uses
// $AIRLOCK_STATE_DIR/audit/audit.jsonl), so the chain head cannot live in one process's
// memory: each Append takes an exclusive flock on the log, reads whatever records other
// processes appended since its last one (checking that they chain), links the new record to the
// newest of them, writes it with one O_APPEND write, fsyncs, updates PATH.head and unlocks.
// Within a process a mutex serialises goroutines. Callers block, in the process and across
// processes; a record is never dropped. After a failed write, or records from another writer
// that do not verify, the log refuses further appends (Err reports why): the bytes on disk are
// no longer known to extend a chain Airlock can vouch for.
type AuditLog struct {
	mu      sync.Mutex
	path    string
	f       *os.File // O_APPEND; the flock is taken on it
	headF   *os.File
	head    string // hash of the last record in the log, as of end
	lastID  string
	records int64
	end     int64 // offset just past the last record this process verified or wrote
	err     error
	// start is the prev_hash of the active file's first record: GenesisHash, or the last
	// hash of the rotated file before it; "" until lock has found it for the open file.
	start string
	day   string // latest UTC day among the active file's records (daily rotation)
	// headSynced: the head file has been fsynced since it named a record of this file.
	headSynced bool
	// pending are closing records whose write found the disk full (see hold).
	pending []*Record

	// onRecover, when set, hears of recoveries made while appending (see OnRecover).
	onRecover func(Recovery)
	// writeLine writes one encoded line; tests replace it to simulate a crash mid-write.
	writeLine func(f *os.File, line []byte) error

	rotate   RotateConfig
	now      func() time.Time // names rotated files
	onRotate func(Rotation)
}

// Recovery describes what the writer found and repaired in the log: on open, or, for a log
// shared with other processes, when one of them crashed mid-write.
type Recovery struct {
	Records   int64  // intact records in the log
	LastID    string // audit_id of the last intact record
	TornBytes int64  // bytes of an incomplete last line removed from the log
	TornPath  string // where those bytes were saved, when TornBytes > 0
	// Reopened: the file at the log's path was no longer the one this process had open
	// (moved aside or replaced); appends continue in the file now at the path.
	Reopened bool
	// Rotated: another process rotated the log (audit.rotate); appends continue in the new
	// file at the path. Routine, so not reported to OnRecover.
	Rotated bool
}

// OpenAudit opens (creating if needed) the audit log at path and recovers the chain head.
//
// A crash can only leave an incomplete last line (records are written with one write and end
// in a newline). Such torn bytes are copied to PATH.torn-<unix-nanos>, fsynced, and truncated
// from the log, so the chain continues from the last intact record and the torn bytes are
// never part of it. This happens under the log's exclusive lock, so the bytes cannot be a
// record another live process is still writing. Any other damage (a complete line that does
// not verify) is tampering or disk corruption: OpenAudit refuses the log rather than extend a
// chain it cannot vouch for.
//
// A rotated log (see WithRotation) continues its chain across files: the active file's first
// record follows the last record of the newest rotated file beside it, with or without the
// option (a writer that does not rotate still appends to a rotated log correctly).
func OpenAudit(path string, opts ...AuditOption) (*AuditLog, Recovery, error) {
	var rec Recovery
	if path == "" {
		return nil, rec, errors.New("audit log: no path configured; set AuditPath (default $AIRLOCK_STATE_DIR/audit/audit.jsonl)")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, rec, fmt.Errorf("audit log %s: %w", path, err)
	}
	l := &AuditLog{path: path, head: GenesisHash, writeLine: writeAll, now: time.Now}
	for _, o := range opts {
		o(l)
	}
	if l.rotate.Keep < 0 || l.rotate.MaxSize < 0 {
		return nil, rec, fmt.Errorf("audit log %s: rotation: keep and max size must not be negative", path)
	}
	if err := l.openFiles(); err != nil {
		return nil, rec, err
	}
	rec, err := l.lock()
	if err != nil {
		l.closeFiles()
		return nil, rec, err
	}
	defer l.unlock()
	if err := l.checkExistingHead(); err != nil {
		l.closeFiles()
		return nil, rec, err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		l.closeFiles()
		return nil, rec, fmt.Errorf("audit log %s: %w", path, err)
	}
	if err := l.writeHead(); err != nil {
		l.closeFiles()
		return nil, rec, err
	}
	rec.Records, rec.LastID = l.records, l.lastID
	return l, rec, nil
}

// openFiles opens the log and its head file at l.path and resets the chain state to an
// empty log; lock then catches up with what the file holds.
func (l *AuditLog) openFiles() error {
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log %s: %w", l.path, err)
	}
	headF, err := os.OpenFile(l.path+".head", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		f.Close()
		return fmt.Errorf("audit log head %s.head: %w", l.path, err)
	}
	l.f, l.headF = f, headF
	l.head, l.lastID, l.records, l.end = GenesisHash, "", 0, 0
	l.start, l.day, l.headSynced = "", "", false
	return nil
}

func (l *AuditLog) closeFiles() error {
	var errs []error
	if l.f != nil {
		errs = append(errs, l.f.Close())
		l.f = nil
	}
	if l.headF != nil {
		errs = append(errs, l.headF.Close())
		l.headF = nil
	}
	return errors.Join(errs...)
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

// OnRecover sets fn to be told of each recovery Append makes: a torn record left by another
// process that crashed mid-write (moved aside to Recovery.TornPath), or the log file replaced
// under the process. fn runs with the log locked and must not call back into it.
func (l *AuditLog) OnRecover(fn func(Recovery)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onRecover = fn
}

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
// It blocks while another append is in progress, in this process or another; it never drops a
// record.
func (l *AuditLog) Append(rec *Record) error { return l.append(rec, true) }

// AppendUnsynced is Append without the fsync, for records whose loss in a power cut does not
// matter because what they record dies with the machine too: the intent record of a call
// (its container does not survive a reboot) is followed by the call's closing record, whose
// fsync makes both durable. A killed Airlock process loses nothing: the bytes are in the
// kernel's page cache once write returns.
func (l *AuditLog) AppendUnsynced(rec *Record) error { return l.append(rec, false) }

func (l *AuditLog) append(rec *Record, sync bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if l.f == nil {
		return fmt.Errorf("audit log %s is closed", l.path)
	}
	rec.normalize()
	rec.bound()
	recov, err := l.lock()
	if err != nil {
		l.err = fmt.Errorf("%w; no further calls are accepted until Airlock restarts", err)
		return l.err
	}
	defer l.unlock()
	if (recov.TornBytes > 0 || recov.Reopened) && l.onRecover != nil {
		recov.Records, recov.LastID = l.records, l.lastID
		l.onRecover(recov)
	}
	if why := l.rotateDue(rec); why != "" {
		if err := l.rotateFile(why); err != nil {
			return err
		}
	}
	// Closing records that found the disk full go first, in their order.
	for len(l.pending) > 0 {
		if err := l.write(l.pending[0]); err != nil {
			return l.hold(rec, sync, err)
		}
		l.pending = l.pending[1:]
	}
	if err := l.write(rec); err != nil {
		return l.hold(rec, sync, err)
	}
	if !sync {
		// The head file is not touched: written now it could reach the disk before this
		// record does, and after a power cut claim a record the log lost, which reads as
		// records cut from the end. The next synced append updates it.
		return nil
	}
	// Unsynced appends before this one become durable with it.
	if err := l.f.Sync(); err != nil {
		l.err = fmt.Errorf("audit log %s: fsync failed, no further calls are accepted until Airlock restarts: %w", l.path, err)
		return l.err
	}
	// The head file is best effort (not fsynced): it lets verify notice records cut from the
	// end of the log, which a hash chain alone cannot show. It is written under the lock, so
	// it always names the newest record whichever process wrote it, and only after an fsync,
	// so it never names a record the disk may not have.
	_ = l.writeHead()
	return nil
}

// Flush writes the records held for lack of disk space, if any, and fsyncs. It returns an
// error wrapping ErrAuditFull while the disk is still full (or the log's error once it
// failed); nil when nothing is held.
func (l *AuditLog) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil || len(l.pending) == 0 {
		return l.err
	}
	if l.f == nil {
		return fmt.Errorf("audit log %s is closed", l.path)
	}
	if _, err := l.lock(); err != nil {
		l.err = fmt.Errorf("%w; no further calls are accepted until Airlock restarts", err)
		return l.err
	}
	defer l.unlock()
	for len(l.pending) > 0 {
		if err := l.write(l.pending[0]); err != nil {
			return err
		}
		l.pending = l.pending[1:]
	}
	if err := l.f.Sync(); err != nil {
		l.err = fmt.Errorf("audit log %s: fsync failed, no further calls are accepted until Airlock restarts: %w", l.path, err)
		return l.err
	}
	_ = l.writeHead()
	return nil
}

// maxPending bounds the closing records held in memory while the log's disk is full.
const maxPending = 1024

// ErrAuditFull reports an append refused because the log's file system is full. The log
// itself is intact (the partial line was cut off again) and accepts appends once there is
// space.
var ErrAuditFull = errors.New("the audit log's file system is full")

// hold handles a failed write of rec. A full disk is not the end of the log: the partial
// line is gone again, so the chain is intact and later appends retry. A closing record
// (synced: the call already ran) is kept in memory and written first once space returns, so
// it is not lost while this process lives; an intent record is not kept, its call does not
// run. Any other failure stops the log.
func (l *AuditLog) hold(rec *Record, sync bool, err error) error {
	var full *auditFullError
	if !errors.As(err, &full) {
		return err
	}
	if sync && len(l.pending) < maxPending && !slices.Contains(l.pending, rec) {
		l.pending = append(l.pending, rec)
		return fmt.Errorf("%w; %d record(s) are held in memory and written once there is space", err, len(l.pending))
	}
	return err
}

type auditFullError struct {
	path string
	err  error
}

func (e *auditFullError) Error() string {
	return fmt.Sprintf("audit log %s: %v: free space on the file system that holds it (df %s); until then Airlock runs no tool, because a call it cannot record does not run",
		e.path, e.err, filepath.Dir(e.path))
}

func (e *auditFullError) Unwrap() []error { return []error{ErrAuditFull, e.err} }

// write chains rec to the head and writes it as one line. On a failed write it cuts the log
// back to its last intact record: under the lock nobody else appends, so the bytes past l.end
// are only this write's. If that succeeds and the disk was full, the error is an
// *auditFullError and the log stays usable; otherwise the log stops.
func (l *AuditLog) write(rec *Record) error {
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
		if terr := l.f.Truncate(l.end); terr == nil && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
			return &auditFullError{path: l.path, err: err}
		}
		// Part of the line may be on disk; the next writer (this process after a restart, or
		// another one) finds it torn under the lock and moves it aside.
		l.err = fmt.Errorf("audit log %s: write failed, no further calls are accepted until Airlock restarts: %w", l.path, err)
		return l.err
	}
	l.head, l.lastID = rec.Hash, rec.AuditID
	l.records++
	l.end += int64(len(line))
	if d := recordDay(rec.Time); d > l.day {
		l.day = d
	}
	return nil
}

// Close closes the log. Appends after Close fail. Records still held for lack of disk space
// get one more try; if they cannot be written, the error names them.
func (l *AuditLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	if l.f != nil && l.err == nil && len(l.pending) > 0 {
		if _, err := l.lock(); err == nil {
			for len(l.pending) > 0 && l.write(l.pending[0]) == nil {
				l.pending = l.pending[1:]
			}
			if l.f.Sync() == nil {
				_ = l.writeHead()
			}
			l.unlock()
		}
		if len(l.pending) > 0 {
			ids := make([]string, len(l.pending))
			for i, r := range l.pending {
				ids[i] = r.AuditID
			}
			errs = append(errs, fmt.Errorf("audit log %s: %d record(s) could not be written (disk full) and are lost: %s", l.path, len(ids), strings.Join(ids, ", ")))
		}
	}
	if l.f != nil {
		errs = append(errs, l.f.Sync())
	}
	errs = append(errs, l.closeFiles())
	return errors.Join(errs...)
}
