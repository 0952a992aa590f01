package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
)

// RotateConfig says when the writer moves the active log aside and starts a new file. The
// zero value never rotates.
type RotateConfig struct {
	// MaxSize rotates the active log once it holds at least this many bytes (checked before
	// each append, so a file ends less than one record past it); 0 means no size limit.
	MaxSize int64
	// Daily rotates before a record whose UTC day is later than that of every record in the
	// active log. A call's record carries the time the call started, so a long call that
	// closes after midnight still lands in the file of the day it began.
	Daily bool
	// Keep is how many rotated files are kept; older ones are removed at each rotation. 0
	// keeps them all.
	Keep int
}

func (c RotateConfig) enabled() bool { return c.MaxSize > 0 || c.Daily }

// AuditOption configures OpenAudit.
type AuditOption func(*AuditLog)

// WithRotation rotates the log as c says.
func WithRotation(c RotateConfig) AuditOption {
	return func(l *AuditLog) { l.rotate = c }
}

// WithClock sets the clock that names rotated files; nil means time.Now.
func WithClock(now func() time.Time) AuditOption {
	return func(l *AuditLog) {
		if now != nil {
			l.now = now
		}
	}
}

// Rotation is what one rotation did (see OnRotate).
type Rotation struct {
	From    string // the active log
	To      string // the name it was given
	Records int64  // records in the rotated file
	Reason  string // "size" or "day"
	// Pruned are the rotated files removed beyond RotateConfig.Keep; PruneErr says why
	// others could not be.
	Pruned   []string
	PruneErr error
}

// OnRotate sets fn to be told of each rotation this process makes. fn runs with the log
// locked and must not call back into it.
func (l *AuditLog) OnRotate(fn func(Rotation)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onRotate = fn
}

// recordDay is the UTC day of a record's time, or "" when it is not RFC 3339.
func recordDay(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return ""
	}
	return t.UTC().Format(time.DateOnly)
}

// rotateDue says why the active log must be rotated before rec is appended, or "". An empty
// log is never rotated: a rotated file always ends in a record for the next to follow.
func (l *AuditLog) rotateDue(rec *Record) string {
	if !l.rotate.enabled() || l.records == 0 {
		return ""
	}
	if l.rotate.MaxSize > 0 && l.end >= l.rotate.MaxSize {
		return "size"
	}
	if d := recordDay(rec.Time); l.rotate.Daily && d != "" && d > l.day {
		return "day"
	}
	return ""
}

// rotateFile moves the active log aside and continues in a new file at the path, under the
// lock the caller holds (and holds again, on the new file, when it returns).
//
// Crash safety: the rotated file is fsynced before the rename, and the directory after it,
// so the file the next one links to is whole on disk. The new file's first record follows
// the rotated file's last one whoever writes it: a writer opening an active log (or
// following the path after a rotation) takes its chain start from the newest rotated file
// (chainStart). A crash between the rename and that first write leaves the rotated files and
// an empty or missing active log, which verifies; the head file still names the rotated
// file's last record, which verify and the next writer accept (checkHeadAcross).
//
// Several processes: the rename happens under the exclusive lock on the active log, which
// every writer takes before it appends. A writer waiting for it finds, once it has it, that
// the file at the path is no longer the one it locked, and follows the path (lock).
func (l *AuditLog) rotateFile(reason string) error {
	stop := func(what string, err error) error {
		l.err = fmt.Errorf("audit log %s: rotating (audit.rotate): %s: %w; no further calls are accepted until Airlock restarts. Fix the cause, or turn rotation off", l.path, what, err)
		return l.err
	}
	// Unsynced appends (intent records) become durable before the file is renamed: after a
	// power cut the rotated file must still end in the record the next file links to.
	if err := l.f.Sync(); err != nil {
		return stop("fsync", err)
	}
	to, err := nextRotatedName(l.path, l.now())
	if err != nil {
		return stop("listing rotated files", err)
	}
	if err := renameNoReplace(l.path, to); err != nil {
		return stop("renaming", err)
	}
	if err := syncDir(filepath.Dir(l.path)); err != nil {
		return stop("fsync of the directory", err)
	}
	ev := Rotation{From: l.path, To: to, Records: l.records, Reason: reason}
	if l.rotate.Keep > 0 {
		ev.Pruned, ev.PruneErr = pruneRotated(l.path, l.rotate.Keep)
	}
	l.unlock()
	if err := l.closeFiles(); err != nil {
		return stop("closing the rotated file", err)
	}
	if err := l.openFiles(); err != nil {
		return stop("opening a new file", err)
	}
	recov, err := l.lock()
	if err != nil {
		l.closeFiles()
		return stop("locking the new file", err)
	}
	if (recov.TornBytes > 0 || recov.Reopened) && l.onRecover != nil {
		// Another writer died mid-record in the new file, or it was replaced meanwhile.
		recov.Records, recov.LastID = l.records, l.lastID
		l.onRecover(recov)
	}
	if l.onRotate != nil {
		l.onRotate(ev)
	}
	return nil
}

// wasRotated reports whether fi, the file this process had open as the active log, is now
// one of the log's rotated files: another process rotated the log, which is routine and not
// the log being replaced.
func (l *AuditLog) wasRotated(fi os.FileInfo) bool {
	rot, err := listRotated(l.path)
	if err != nil {
		return false
	}
	for i := len(rot) - 1; i >= 0; i-- {
		if ri, err := os.Stat(rot[i].path); err == nil && os.SameFile(fi, ri) {
			return true
		}
	}
	return false
}

// logRotation reports a rotation in the diagnostic log.
func logRotation(log zerolog.Logger, r Rotation) {
	log.Info().Str("event", "audit.rotated").Str("path", r.From).Str("rotated_to", r.To).
		Int64("records", r.Records).Str("reason", r.Reason).Strs("pruned", r.Pruned).
		Msg("audit log rotated; the chain continues in a new file")
	if r.PruneErr != nil {
		log.Warn().Str("event", "audit.prune_failed").Str("path", r.From).Err(r.PruneErr).
			Msg("audit log: rotated files beyond audit.rotate.keep could not all be removed")
	}
}
