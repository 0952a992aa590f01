package egress

import (
	"errors"
	"net"
	"sync/atomic"
)

// errByteCap ends a connection that would move more bytes than the proxy's budget allows.
var errByteCap = errors.New("byte cap reached")

// budget is the bytes, both directions and all connections together, one Proxy may move.
type budget struct {
	max  int64
	used atomic.Int64
}

// take reserves up to n bytes and returns how many it got; fewer than n means the budget is
// spent.
func (b *budget) take(n int) int {
	for {
		used := b.used.Load()
		left := b.max - used
		if left <= 0 {
			return 0
		}
		k := int64(n)
		if k > left {
			k = left
		}
		if b.used.CompareAndSwap(used, used+k) {
			return int(k)
		}
	}
}

// meteredConn is the upstream side of one connection. Every byte to or from the destination
// passes through it, so it counts them and stops at the budget: nothing beyond the cap is
// written upstream or handed to the client.
type meteredConn struct {
	net.Conn
	budget   *budget
	sent     atomic.Int64
	received atomic.Int64
	capped   atomic.Bool
}

func (m *meteredConn) Write(b []byte) (int, error) {
	k := m.budget.take(len(b))
	n := 0
	var err error
	if k > 0 {
		n, err = m.Conn.Write(b[:k])
		m.sent.Add(int64(n))
	}
	if err == nil && k < len(b) {
		m.capped.Store(true)
		return n, errByteCap
	}
	return n, err
}

func (m *meteredConn) Read(b []byte) (int, error) {
	n, err := m.Conn.Read(b)
	if n > 0 {
		k := m.budget.take(n)
		m.received.Add(int64(k))
		if k < n {
			m.capped.Store(true)
			return k, errByteCap
		}
	}
	return n, err
}

// CloseWrite half-closes the destination when the client has finished sending.
func (m *meteredConn) CloseWrite() error { return closeWrite(m.Conn) }

// closeWrite half-closes c if it can, and closes it otherwise.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
