package pipeline

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A rotated log is a set of files that hold one chain: the rotated files beside the active
// log, named STEM-<UTC time>-<seq>EXT (audit-20261121T054509Z-000042.jsonl for audit.jsonl),
// oldest first, then the active log itself. Each file's first record's prev_hash is the hash
// of the last record of the file before it, so the chain runs on across files and a file
// removed from the middle, or put out of order, breaks it.

// rotatedTimeLayout is the time in a rotated file's name: UTC, sortable, no colons.
const rotatedTimeLayout = "20060102T150405Z"

// rotatedFile is one rotated file of a log.
type rotatedFile struct {
	path string
	time string // as in the name
	seq  uint64
}

// splitLogName splits a log's path into its directory, its name without the extension and
// the extension (".jsonl").
func splitLogName(path string) (dir, stem, ext string) {
	base := filepath.Base(path)
	ext = filepath.Ext(base)
	return filepath.Dir(path), strings.TrimSuffix(base, ext), ext
}

// listRotated lists the rotated files of the log at path in chain order. Names are ordered
// by time, then sequence number; the writer never gives a rotated file an earlier time or a
// lower number than the newest one before it, so that is the order they were rotated in.
func listRotated(path string) ([]rotatedFile, error) {
	dir, stem, ext := splitLogName(path)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []rotatedFile
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), stem+"-")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if rest, ok = strings.CutSuffix(rest, ext); !ok {
			continue
		}
		ts, seqText, ok := strings.Cut(rest, "-")
		if !ok || len(seqText) < 6 || strings.Trim(seqText, "0123456789") != "" {
			continue
		}
		if _, err := time.Parse(rotatedTimeLayout, ts); err != nil {
			continue
		}
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, rotatedFile{path: filepath.Join(dir, e.Name()), time: ts, seq: seq})
	}
	slices.SortFunc(out, func(a, b rotatedFile) int {
		return cmp.Or(strings.Compare(a.time, b.time), cmp.Compare(a.seq, b.seq))
	})
	return out, nil
}

// RotatedFiles lists the rotated files of the log at path, oldest first: with path itself
// after them, the files of its chain in order.
func RotatedFiles(path string) ([]string, error) {
	rot, err := listRotated(path)
	if err != nil {
		return nil, fmt.Errorf("audit log %s: listing rotated files: %w", path, err)
	}
	out := make([]string, len(rot))
	for i, r := range rot {
		out[i] = r.path
	}
	return out, nil
}

// nextRotatedName is the name the active log at path gets when it is rotated at now. Its
// time is never earlier than the newest rotated file's (a clock set back must not sort it
// before a file it follows) and its number is one more.
func nextRotatedName(path string, now time.Time) (string, error) {
	rot, err := listRotated(path)
	if err != nil {
		return "", err
	}
	ts, seq := now.UTC().Format(rotatedTimeLayout), uint64(1)
	if len(rot) > 0 {
		last := rot[len(rot)-1]
		ts, seq = max(ts, last.time), last.seq+1
	}
	dir, stem, ext := splitLogName(path)
	return filepath.Join(dir, fmt.Sprintf("%s-%s-%06d%s", stem, ts, seq, ext)), nil
}

// renameNoReplace renames from to to, refusing to replace an existing file: a rotated file is
// evidence, and losing one to a name collision would break the chain for good.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		if err != nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
		}
		return nil
	}
	// A file system without RENAME_NOREPLACE: rotations are serialised by the log's lock,
	// so checking first is enough.
	if _, err := os.Lstat(to); !errors.Is(err, fs.ErrNotExist) {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: fs.ErrExist}
	}
	return os.Rename(from, to)
}

// pruneRotated removes the oldest rotated files of the log at path beyond keep. The newest
// is never among them (keep is at least 1): the next file's chain starts from its last record.
func pruneRotated(path string, keep int) ([]string, error) {
	rot, err := listRotated(path)
	if err != nil || keep < 1 || len(rot) <= keep {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, r := range rot[:len(rot)-keep] {
		if err := os.Remove(r.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, r.path)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

// predecessor is the newest rotated file of the log at path that holds a record ("" if none):
// the file whose last record the active file's first record follows.
func predecessor(path string) (string, error) {
	rot, err := listRotated(path)
	if err != nil {
		return "", err
	}
	for i := len(rot) - 1; i >= 0; i-- {
		fi, err := os.Stat(rot[i].path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if fi.Size() > 0 {
			return rot[i].path, nil
		}
	}
	return "", nil
}

// chainStart is the prev_hash the first record of the active log at path must have: the
// hash of the last record of its predecessor, or GenesisHash for a log never rotated. The
// last record is checked against its own hash (a full check of the file is verify's job).
func chainStart(path string) (string, error) {
	prev, err := predecessor(path)
	if err != nil {
		return "", fmt.Errorf("audit log %s: listing rotated files: %w", path, err)
	}
	if prev == "" {
		return GenesisHash, nil
	}
	rec, err := lastRecord(prev)
	if err != nil {
		return "", fmt.Errorf("audit log %s: the newest rotated file %s: %w; a new file cannot continue its chain. Run `airlock audit verify %s`", path, prev, err, path)
	}
	return rec.Hash, nil
}

// lastRecord reads the last line of the file at path, which must be a complete record that
// matches its hash.
func lastRecord(path string) (Record, error) {
	var rec Record
	f, err := os.Open(path)
	if err != nil {
		return rec, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return rec, err
	}
	line, err := lastLine(f, fi.Size())
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(line, &rec); err != nil {
		return rec, fmt.Errorf("its last line is not a record: %w", err)
	}
	if reason := checkLine(line, rec.PrevHash, &VerifyReport{}); reason != "" {
		return rec, fmt.Errorf("its last line: %s", reason)
	}
	return rec, nil
}

// lastLine returns the last newline-terminated line of r (size bytes), without the newline.
func lastLine(r io.ReaderAt, size int64) ([]byte, error) {
	if size == 0 {
		return nil, errors.New("it is empty")
	}
	var tail []byte
	end := size
	for {
		n := min(end, 64<<10)
		chunk := make([]byte, n)
		if _, err := r.ReadAt(chunk, end-n); err != nil {
			return nil, err
		}
		tail = append(chunk, tail...)
		end -= n
		if tail[len(tail)-1] != '\n' {
			return nil, errors.New("it does not end in a complete record (a rotated file is never written after it is rotated)")
		}
		if i := bytes.LastIndexByte(tail[:len(tail)-1], '\n'); i >= 0 {
			return tail[i+1 : len(tail)-1], nil
		}
		if end == 0 {
			return tail[:len(tail)-1], nil
		}
		if len(tail) > MaxRecordBytes {
			return nil, errLineTooLong
		}
	}
}
