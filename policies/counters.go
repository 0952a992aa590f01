package policies

import (
	"fmt"
	"sync"
	"time"
)

// Counters stores rate-limit units. Reserve must be atomic: two replicas or goroutines racing
// for the last unit must not both get it. The in-memory store (NewMemoryCounters) serves one
// process; a shared store for several replicas implements the same two methods.
type Counters interface {
	// Reserve adds n units to the counter named by key for the window key.Window, provided the
	// total stays within max, and reports whether it did. An error means the store could not
	// answer; the engine then denies (fail closed).
	Reserve(key CounterKey, n, max int64) (bool, error)
	// Release gives back n units reserved earlier for the same window. Releasing into a window
	// that has since been replaced is a no-op: the new window started from zero anyway.
	Release(key CounterKey, n int64) error
}

// CounterKey names one counter bucket: counter name, scope and the subject the scope selects
// (the grant ID for "grant", the session ID for "session", empty for "policy"), plus the
// calendar-aligned UTC window [Window, End).
type CounterKey struct {
	Counter string
	Scope   string
	Subject string
	Window  time.Time
	End     time.Time
}

// windowOf returns the calendar-aligned UTC window containing t.
func windowOf(t time.Time, window string) (start, end time.Time) {
	t = t.UTC()
	switch window {
	case "minute":
		start = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, time.UTC)
		return start, start.Add(time.Minute)
	case "hour":
		start = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, time.UTC)
		return start, start.Add(time.Hour)
	}
	start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 0, 1)
}

type bucketID struct{ counter, scope, subject string }

type bucket struct {
	start, end time.Time
	used       int64
}

// MemoryCounters is the in-process Counters store. One mutex guards every bucket: a reservation
// is a few nanoseconds of map work, so exactness under concurrency costs nothing measurable.
type MemoryCounters struct {
	mu      sync.Mutex
	buckets map[bucketID]*bucket
	ops     int
}

// NewMemoryCounters is the in-process Counters store.
func NewMemoryCounters() Counters { return &MemoryCounters{buckets: map[bucketID]*bucket{}} }

// sweepEvery bounds memory: every so many reservations, buckets whose window has ended are
// dropped, so a stream of one-off session IDs cannot grow the map without limit.
const sweepEvery = 4096

// Reserve implements Counters.
func (m *MemoryCounters) Reserve(key CounterKey, n, max int64) (bool, error) {
	if n < 0 {
		return false, fmt.Errorf("counter %s: negative reservation %d", key.Counter, n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ops++
	if m.ops%sweepEvery == 0 {
		for id, b := range m.buckets {
			if !b.end.After(key.Window) {
				delete(m.buckets, id)
			}
		}
	}
	id := bucketID{key.Counter, key.Scope, key.Subject}
	b := m.buckets[id]
	if b == nil {
		b = &bucket{start: key.Window, end: key.End}
		m.buckets[id] = b
	} else if key.Window.After(b.start) {
		b.start, b.end, b.used = key.Window, key.End, 0
	}
	// A reservation computed just before a window rolled over counts against the newer window:
	// the conservative choice.
	if n > max || b.used > max-n {
		return false, nil
	}
	b.used += n
	return true, nil
}

// Release implements Counters.
func (m *MemoryCounters) Release(key CounterKey, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.buckets[bucketID{key.Counter, key.Scope, key.Subject}]
	if b == nil || !b.start.Equal(key.Window) {
		return nil
	}
	b.used -= n
	if b.used < 0 {
		b.used = 0
	}
	return nil
}

// Used reports the units currently counted for key's bucket and window (for tests and
// diagnostics).
func (m *MemoryCounters) Used(key CounterKey) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.buckets[bucketID{key.Counter, key.Scope, key.Subject}]
	if b == nil || !b.start.Equal(key.Window) {
		return 0
	}
	return b.used
}
