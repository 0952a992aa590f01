package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// The head file (PATH.head) holds the active log's record count and last hash. It lets verify
// and the next writer notice records cut from the end of the log, which a hash chain alone
// cannot show.

// checkExistingHead compares the head file left by earlier writers with the log as it is now
// (called under the lock, after catching up). Rewriting the head without looking would erase
// the only evidence that records were cut from the end of the log, so a head that claims more
// than the log holds, or names a record that is no longer there, refuses the log.
func (l *AuditLog) checkExistingHead() error {
	b, err := io.ReadAll(io.NewSectionReader(l.headF, 0, 1<<10))
	if err != nil {
		return fmt.Errorf("audit log head %s.head: %w", l.path, err)
	}
	if len(bytes.TrimSpace(b)) == 0 || l.records == 0 && l.start == GenesisHash {
		// A new log, a head file removed by hand, or a log moved aside and started afresh
		// (someone able to empty the log could as well remove both files): nothing to compare.
		return nil
	}
	// After a rotation the head file may still name a record of the rotated file (a crash
	// before the new file's first record): that agrees with the log. One that names a record
	// of neither file means records were cut.
	var before io.Reader
	if prev, err := predecessor(l.path); err == nil && prev != "" {
		pf, err := os.Open(prev)
		if err != nil {
			return fmt.Errorf("audit log %s: %w", l.path, err)
		}
		defer pf.Close()
		before = pf
	}
	rep := VerifyReport{Records: l.records, LastHash: l.head, IntactBytes: l.end}
	if ok, msg := checkHeadAcross(b, l.path+".head", rep, io.NewSectionReader(l.f, 0, l.end), l.path, before); !ok {
		return fmt.Errorf("audit log %s: %s. Airlock will not extend it: run `airlock audit verify %s` and keep the evidence, then move both %s and %s.head aside to start a new log", l.path, msg, l.path, l.path, l.path)
	}
	return nil
}

// The head file has a fixed length (zero-padded count), so it is rewritten in place.
//
// It is not fsynced, with one exception: in an active file that follows a rotated one, the
// first time it names a record of that file. After a power cut it may then lag the log by
// records of the active file, but never name a record more than one file back, which
// verify could not tell from records cut from the end (checkHeadAcross).
func (l *AuditLog) writeHead() error {
	b := fmt.Appendf(nil, `{"records":%-20d,"hash":"%s"}`+"\n", l.records, l.head)
	if _, err := l.headF.WriteAt(b, 0); err != nil {
		return fmt.Errorf("audit log head %s.head: %w", l.path, err)
	}
	if !l.headSynced && l.records > 0 && l.start != GenesisHash {
		if err := l.headF.Sync(); err != nil {
			return fmt.Errorf("audit log head %s.head: %w", l.path, err)
		}
		l.headSynced = true
	}
	return nil
}

// checkHeadAcross is checkHead for the active file of a rotated log. After a rotation the
// head file names the last record of the file before the active one until a record is
// written to the new file (and, the head file not being fsynced, possibly after a power cut):
// a head that names a record of that file, before is its content, agrees with the log too.
// The writer fsyncs the head file once it names a record of the new file, so it never lags
// further back.
func checkHeadAcross(b []byte, path string, rep VerifyReport, intact io.Reader, logPath string, before io.Reader) (ok bool, msg string) {
	ok, msg = checkHead(b, path, rep, intact, logPath)
	if ok || before == nil {
		return ok, msg
	}
	var h struct {
		Records int64  `json:"records"`
		Hash    string `json:"hash"`
	}
	if json.Unmarshal(bytes.TrimSpace(b), &h) != nil || h.Records <= 0 {
		return ok, msg
	}
	var i int64
	errStop := errors.New("stop")
	found := false
	_ = ReadRecords(before, func(_ []byte, rec Record) error {
		if i++; i == h.Records {
			found = rec.Hash == h.Hash
			return errStop
		}
		return nil
	})
	if found {
		return true, ""
	}
	return ok, msg
}
