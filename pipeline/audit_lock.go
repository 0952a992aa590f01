package pipeline

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-mcp/airlock/internal/flock"
	"golang.org/x/sys/unix"
)

// maxReopens bounds how often lock follows a log file that is replaced while it waits.
const maxReopens = 8

// lock takes the exclusive lock on the log and brings l up to date with the file: records
// other processes appended since this one last wrote are verified and become the new chain
// head, and a torn last line left by a writer that died mid-record is moved aside. On success
// the caller holds the lock and must unlock.
//
// The lock is the flock on the log file itself. If the file at l.path is no longer the one l
// has open (moved aside or replaced), l follows the path: otherwise this process would keep
// extending a file nobody reads, while the others start a new chain at the path.
func (l *AuditLog) lock() (Recovery, error) {
	var rec Recovery
	for reopens := 0; ; reopens++ {
		if err := flock.Apply(l.f, unix.LOCK_EX); err != nil {
			return rec, fmt.Errorf("audit log %s: taking the write lock: %w", l.path, err)
		}
		fi, err := l.f.Stat()
		if err != nil {
			l.unlock()
			return rec, fmt.Errorf("audit log %s: %w", l.path, err)
		}
		pi, err := os.Stat(l.path)
		if err == nil && os.SameFile(fi, pi) {
			if l.start == "" {
				// The chain of a file this process has just opened starts where the newest
				// rotated file ends (or at the genesis). Read under the lock: rotations
				// happen under it, so the newest rotated file is the one before this file.
				start, err := chainStart(l.path)
				if err != nil {
					l.unlock()
					return rec, err
				}
				// The file may have just been created (after a rotation, by this process
				// or another): its directory entry must be on disk before records in it
				// are fsynced, or a power cut could take the file and its records away.
				if err := syncDir(filepath.Dir(l.path)); err != nil {
					l.unlock()
					return rec, fmt.Errorf("audit log %s: %w", l.path, err)
				}
				l.start, l.head = start, start
			}
			torn, err := l.catchUp(fi.Size())
			if err != nil {
				l.unlock()
				return rec, err
			}
			rec.TornBytes, rec.TornPath = torn.TornBytes, torn.TornPath
			return rec, nil
		}
		rotated := l.wasRotated(fi)
		l.unlock()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rec, fmt.Errorf("audit log %s: %w", l.path, err)
		}
		if reopens == maxReopens {
			return rec, fmt.Errorf("audit log %s keeps being replaced while Airlock writes it; stop whatever rotates it", l.path)
		}
		if err := l.closeFiles(); err != nil {
			return rec, fmt.Errorf("audit log %s: closing the replaced file: %w", l.path, err)
		}
		if err := l.openFiles(); err != nil {
			return rec, err
		}
		if rotated {
			rec.Rotated = true
		} else {
			rec.Reopened = true
		}
	}
}

func (l *AuditLog) unlock() {
	// Closing the file also releases the lock, so an error here cannot leave it held for
	// longer than the process lives.
	if l.f != nil {
		_ = flock.Apply(l.f, unix.LOCK_UN)
	}
}

// catchUp verifies the bytes between l.end and size, which other processes appended, and
// moves l's chain head to their last record. A torn last line is moved aside: l holds the
// exclusive lock, and every writer writes only while holding it, so no live process is still
// writing those bytes; they are what a writer killed mid-record left.
func (l *AuditLog) catchUp(size int64) (Recovery, error) {
	var rec Recovery
	switch {
	case size == l.end:
		return rec, nil
	case size < l.end:
		// Writers only append, and only cut bytes after the last complete record: the log
		// shrinking below a record this process saw means records were removed.
		return rec, fmt.Errorf("audit log %s shrank from %d to %d bytes while Airlock had it open: records were removed from the end. Run `airlock audit verify %s`", l.path, l.end, size, l.path)
	}
	start := VerifyReport{Records: l.records, LastID: l.lastID, LastHash: l.head, IntactBytes: l.end, day: l.day}
	rep, err := verifyFrom(io.NewSectionReader(l.f, l.end, size-l.end), start, int(min(max(size-l.end, 4<<10), 64<<10)))
	if err != nil {
		return rec, fmt.Errorf("audit log %s: reading: %w", l.path, err)
	}
	if rep.Broken {
		who := ""
		if l.end > 0 {
			who = ", after this process's last record: something else appended to it"
		}
		return rec, fmt.Errorf("audit log %s is broken at line %d (%s)%s; the last intact record is %q. Run `airlock audit verify %s`, move the file aside and start again",
			l.path, rep.BrokenLine, rep.Reason, who, rep.LastID, l.path)
	}
	l.records, l.lastID, l.head, l.end, l.day = rep.Records, rep.LastID, rep.LastHash, rep.IntactBytes, rep.day
	if rep.TornBytes == 0 {
		return rec, nil
	}
	rec.TornBytes = rep.TornBytes
	rec.TornPath = fmt.Sprintf("%s.torn-%d", l.path, time.Now().UnixNano())
	if err := saveTorn(l.f, rep.IntactBytes, rep.TornBytes, rec.TornPath); err != nil {
		return rec, fmt.Errorf("audit log %s: saving the torn last line: %w", l.path, err)
	}
	if err := l.f.Truncate(rep.IntactBytes); err != nil {
		return rec, fmt.Errorf("audit log %s: removing the torn last line: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return rec, fmt.Errorf("audit log %s: %w", l.path, err)
	}
	if err := syncDir(filepath.Dir(l.path)); err != nil {
		return rec, fmt.Errorf("audit log %s: %w", l.path, err)
	}
	return rec, nil
}

// saveTorn copies n bytes of f from offset from to a new file dst and fsyncs it.
func saveTorn(f *os.File, from, n int64, dst string) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, io.NewSectionReader(f, from, n)); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
