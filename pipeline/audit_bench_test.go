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
}
