package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/sys/unix"
)

// StdioTransport is MCP over Airlock's stdin and stdout, hardened against the ways a local
// client goes away:
//
//   - The client dies or closes its end of stdout while stdin stays open (a wrapper script
//     that keeps the pipe, a half-closed socket): nothing would be read or written any more,
//     so calls in flight would run to their timeout. A watcher sees the error condition on
//     stdout at once and closes the connection, which cancels every call in flight.
//   - The client cancels a request (notifications/cancelled): its handler is cancelled by the
//     SDK, and the response the handler still returns is not sent (MCP: a receiver should not
//     respond to a cancelled request).
//
// stdin EOF and write errors are handled by the SDK's connection, which cancels in-flight
// requests in both cases.
type StdioTransport struct {
	In  *os.File // nil: os.Stdin
	Out *os.File // nil: os.Stdout
}

// Connect implements mcp.Transport.
//
// The wrapper hides the SDK connection's unexported session hook, so JSON-RPC batches stay
// accepted after a 2025-06-18 or later protocol version is negotiated (the SDK would refuse
// them); Airlock handles each call of a batch like any other.
func (t *StdioTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	in, out := t.In, t.Out
	if in == nil {
		in = os.Stdin
	}
	if out == nil {
		out = os.Stdout
	}
	inner, err := (&mcp.IOTransport{Reader: in, Writer: nopWriteCloser{out}}).Connect(ctx)
	if err != nil {
		return nil, err
	}
	c := &stdioConn{Connection: inner, pending: map[jsonrpc.ID]bool{}, cancelled: map[jsonrpc.ID]bool{}}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		inner.Close()
		return nil, err
	}
	c.wakeR, c.wakeW = p[0], p[1]
	c.watched = make(chan struct{})
	go c.watch(int(out.Fd()))
	return c, nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// stdioConn tracks the requests in flight (to drop responses to cancelled ones) and owns the
// stdout watcher.
type stdioConn struct {
	mcp.Connection

	mu        sync.Mutex
	pending   map[jsonrpc.ID]bool // calls read and not yet answered
	cancelled map[jsonrpc.ID]bool // of those, the ones the client cancelled

	closeOnce    sync.Once
	wakeR, wakeW int           // self-pipe that stops the watcher
	watched      chan struct{} // closed when the watcher returned
}

func (c *stdioConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	msg, err := c.Connection.Read(ctx)
	if req, ok := msg.(*jsonrpc.Request); ok && err == nil {
		c.mu.Lock()
		switch {
		case req.ID.IsValid():
			c.pending[req.ID] = true
		case req.Method == "notifications/cancelled":
			var p struct {
				RequestID any `json:"requestId"`
			}
			if json.Unmarshal(req.Params, &p) == nil {
				// Only requests still in flight are remembered, so the map stays as small
				// as the number of calls running.
				if id, err := jsonrpc.MakeID(p.RequestID); err == nil && c.pending[id] {
					c.cancelled[id] = true
				}
			}
		}
		c.mu.Unlock()
	}
	return msg, err
}

func (c *stdioConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	if resp, ok := msg.(*jsonrpc.Response); ok {
		c.mu.Lock()
		drop := c.cancelled[resp.ID]
		delete(c.pending, resp.ID)
		delete(c.cancelled, resp.ID)
		c.mu.Unlock()
		if drop {
			return nil
		}
	}
	return c.Connection.Write(ctx, msg)
}

func (c *stdioConn) Close() error {
	err := c.Connection.Close()
	c.closeOnce.Do(func() {
		unix.Close(c.wakeW) // wakes the watcher
		<-c.watched
		unix.Close(c.wakeR)
	})
	return err
}

// watch waits until stdout's reader is gone (POLLERR on a pipe, POLLHUP on a socket or
// terminal) or the connection closes. A regular file never reports either.
func (c *stdioConn) watch(out int) {
	defer close(c.watched)
	fds := []unix.PollFd{{Fd: int32(out)}, {Fd: int32(c.wakeR), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			// Close from another goroutine: Close waits for this one.
			go c.Connection.Close()
			return
		}
	}
}
