package pipeline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkAuditAppend measures one audit record against its floor: the same bytes written
// with one write and fsynced, with no chain, lock or head file. The ratio append/write+fsync is
// the cost of the log's own machinery (encoding, hashing, the cross-process lock, catching up
// with other writers, the head file).
func BenchmarkAuditAppend(b *testing.B) {
	line, err := json.Marshal(testRecord(7))
	if err != nil {
		b.Fatal(err)
	}
	line = append(line, '\n')
	b.Run("write+fsync", func(b *testing.B) {
		f, err := os.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		b.SetBytes(int64(len(line)))
		for b.Loop() {
			if _, err := f.Write(line); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		l, _, err := OpenAudit(filepath.Join(b.TempDir(), "audit.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		b.SetBytes(int64(len(line)))
		i := 0
		for b.Loop() {
			i++
			if err := l.Append(testRecord(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append-parallel", func(b *testing.B) {
		l, _, err := OpenAudit(filepath.Join(b.TempDir(), "audit.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		b.SetBytes(int64(len(line)))
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				if err := l.Append(testRecord(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("append-two-writers", func(b *testing.B) {
		// Two logs on one file, as two processes: every append first catches up with the
		// record the other one wrote.
		path := filepath.Join(b.TempDir(), "audit.jsonl")
		var logs [2]*AuditLog
		for i := range logs {
			l, _, err := OpenAudit(path)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			logs[i] = l
		}
		b.SetBytes(int64(len(line)))
		i := 0
		for b.Loop() {
			i++
			if err := logs[i%2].Append(testRecord(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAuditLock measures what the cross-process safety adds to each append, without the
// write and fsync it guards: flock, fstat, stat of the path, unlock ("idle"), plus reading and
// verifying one record another writer appended ("catch-up-one").
func BenchmarkAuditLock(b *testing.B) {
	b.Run("idle", func(b *testing.B) {
		l, _, err := OpenAudit(filepath.Join(b.TempDir(), "audit.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		for b.Loop() {
			if _, err := l.lock(); err != nil {
				b.Fatal(err)
			}
			l.unlock()
		}
	})
	b.Run("catch-up-one", func(b *testing.B) {
		l, _, err := OpenAudit(filepath.Join(b.TempDir(), "audit.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		if err := l.Append(testRecord(1)); err != nil {
			b.Fatal(err)
		}
		first := l.end
		for b.Loop() {
			// Forget the last record, as a process that did not write it would.
			l.records, l.head, l.end = 0, GenesisHash, 0
			if _, err := l.lock(); err != nil {
				b.Fatal(err)
			}
			l.unlock()
			if l.end != first {
				b.Fatalf("caught up to %d, want %d", l.end, first)
			}
		}
	})
}
