package sandbox

import "sync"

// DefaultOutputCap is the number of bytes kept per stream when a Spec's cap is zero.
const DefaultOutputCap = 1 << 20

// CappedBuffer is an io.Writer that keeps the first Cap bytes written to it and counts, then
// discards, the rest. Write never fails, so the writer (a container's stdout) keeps draining:
// a command that floods 100 MB costs Cap bytes of memory, and it is never blocked on a full
// pipe, which would turn an output flood into a timeout. Safe for concurrent use.
type CappedBuffer struct {
	mu    sync.Mutex
	limit int64
	buf   []byte
	total int64
}

// NewCappedBuffer keeps up to limit bytes; limit 0 means DefaultOutputCap.
func NewCappedBuffer(limit int64) *CappedBuffer {
	if limit <= 0 {
		limit = DefaultOutputCap
	}
	return &CappedBuffer{limit: limit}
}

// Write keeps what fits under the cap and reports every byte as written.
func (c *CappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += int64(len(p))
	room := c.limit - int64(len(c.buf))
	if room <= 0 {
		return len(p), nil
	}
	keep := p
	if int64(len(keep)) > room {
		keep = keep[:room]
	}
	if need := len(c.buf) + len(keep); need > cap(c.buf) {
		// Grow by doubling but never past the cap, so the retained memory is bounded by
		// the cap itself (append's growth policy could overshoot it by 25%-100%).
		newCap := max(2*cap(c.buf), need, 4096)
		newCap = int(min(int64(newCap), c.limit))
		grown := make([]byte, len(c.buf), newCap)
		copy(grown, c.buf)
		c.buf = grown
	}
	c.buf = append(c.buf, keep...)
	return len(p), nil
}

// Bytes returns the kept bytes. The slice aliases the buffer; do not write to c afterwards if
// you keep it.
func (c *CappedBuffer) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf
}

// Truncated reports whether bytes were discarded.
func (c *CappedBuffer) Truncated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total > int64(len(c.buf))
}

// Total is the number of bytes written, kept or not.
func (c *CappedBuffer) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}
