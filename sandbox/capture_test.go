package sandbox

import (
	"bytes"
	"io"
	"runtime"

	"testing"
)

func TestCappedBuffer(t *testing.T) {
	tests := []struct {
		name      string
		limit     int64
		writes    []string
		want      string
		truncated bool
	}{
		{"empty", 10, nil, "", false},
		{"under cap", 10, []string{"abc", "def"}, "abcdef", false},
		{"exactly cap", 6, []string{"abc", "def"}, "abcdef", false},
		{"split write", 4, []string{"abc", "def"}, "abcd", true},
		{"past cap", 3, []string{"abc", "def", "ghi"}, "abc", true},
		{"zero means default", 0, []string{"x"}, "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCappedBuffer(tt.limit)
			var total int64
			for _, w := range tt.writes {
				n, err := c.Write([]byte(w))
				if err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil (the writer must keep draining)", w, n, err, len(w))
				}
				total += int64(n)
			}
			if got := string(c.Bytes()); got != tt.want {
				t.Errorf("Bytes() = %q, want %q", got, tt.want)
			}
			if c.Truncated() != tt.truncated {
				t.Errorf("Truncated() = %v, want %v", c.Truncated(), tt.truncated)
			}
			if c.Total() != total {
				t.Errorf("Total() = %d, want %d", c.Total(), total)
			}
		})
	}
}

// TestCappedBufferFloodMemory pushes 100 MB through a 1 MiB buffer and checks that neither the
// retained slice nor the bytes allocated meanwhile exceed the cap (plus io.Copy's 32 KiB).
func TestCappedBufferFloodMemory(t *testing.T) {
	const limit = 1 << 20
	const flood = 100 << 20
	c := NewCappedBuffer(limit)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, err := io.Copy(c, io.LimitReader(zeroReader{}, flood))
	runtime.ReadMemStats(&after)
	if err != nil || n != flood {
		t.Fatalf("io.Copy = %d, %v", n, err)
	}
	if got := cap(c.Bytes()); got > limit {
		t.Errorf("retained capacity %d bytes > cap %d", got, limit)
	}
	if len(c.Bytes()) != limit || !c.Truncated() || c.Total() != flood {
		t.Errorf("len %d truncated %v total %d; want %d true %d", len(c.Bytes()), c.Truncated(), c.Total(), limit, flood)
	}
	// Doubling growth allocates at most 2× the cap in total; io.Copy adds its 32 KiB buffer.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2*limit+256<<10 {
		t.Errorf("allocated %d bytes while draining %d; want <= %d", alloc, flood, 2*limit+256<<10)
	}
}

func BenchmarkCappedBufferFlood(b *testing.B) {
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	b.SetBytes(100 << 20)
	b.ReportAllocs()
	for b.Loop() {
		c := NewCappedBuffer(1 << 20)
		for range (100 << 20) / len(chunk) {
			_, _ = c.Write(chunk)
		}
		if cap(c.Bytes()) > 1<<20 {
			b.Fatalf("retained %d > cap", cap(c.Bytes()))
		}
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
