package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"sync"

	"github.com/airlock-mcp/airlock/internal/lines"
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
//     stdout at once and closes stdin, which ends the connection and cancels every call in
//     flight.
//   - The client cancels a request (notifications/cancelled): the SDK cancels its handler,
//     and the response the handler still returns is not sent (MCP: a receiver should not
//     respond to a cancelled request).
//
// stdin EOF and write errors are handled by the SDK's connection, which cancels in-flight
// requests in both cases. The SDK's own newline-delimited connection does the rest (framing,
// batches, protocol versions); Airlock only taps the bytes on their way in and out.
type StdioTransport struct {
	In  *os.File // nil: os.Stdin
	Out *os.File // nil: os.Stdout
}

// Connect implements mcp.Transport.
func (t *StdioTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	in, out := t.In, t.Out
	if in == nil {
		in = os.Stdin
	}
	if out == nil {
		out = os.Stdout
	}
	in = pollable(in)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	f := &cancelFilter{cancelled: map[jsonrpc.ID]bool{}}
	w := &stdoutFilter{w: out, f: f, wakeR: p[0], wakeW: p[1], watched: make(chan struct{})}
	go w.watch(int(out.Fd()), in)
	return (&mcp.IOTransport{Reader: newStdinTap(in, f), Writer: w}).Connect(ctx)
}

// pollable returns f as a file the Go runtime polls, so that closing it ends a Read blocked
// on it (the watcher relies on that). Only pipes and sockets are switched to non-blocking
// mode: a terminal shares its mode with the shell that started Airlock.
func pollable(f *os.File) *os.File {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return f
	}
	if mode := st.Mode & unix.S_IFMT; mode != unix.S_IFIFO && mode != unix.S_IFSOCK {
		return f
	}
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return f
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return f
	}
	return os.NewFile(uintptr(fd), f.Name())
}

// maxCancelled bounds the cancelled requests remembered at once; beyond it a cancelled
// request's response is sent after all (harmless, and the client ignores it).
const maxCancelled = 1024

// maxTapLine is how much of an incoming line the tap keeps to look for a cancellation: a
// notifications/cancelled message is a few hundred bytes.
const maxTapLine = 64 << 10

// cancelFilter is the set of requests the client cancelled whose responses are not sent yet.
type cancelFilter struct {
	mu        sync.Mutex
	cancelled map[jsonrpc.ID]bool
}

func (f *cancelFilter) add(id jsonrpc.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cancelled) < maxCancelled {
		f.cancelled[id] = true
	}
}

// drop reports whether a response to id must not be sent, forgetting id either way.
func (f *cancelFilter) drop(id jsonrpc.ID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	ok := f.cancelled[id]
	delete(f.cancelled, id)
	return ok
}

func (f *cancelFilter) empty() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.cancelled) == 0
}

// stdinTap passes stdin through unchanged and notes, line by line, the requests the client
// cancels. It sees every byte before the SDK does, so a cancellation is noted before the
// SDK cancels the handler whose response it concerns.
type stdinTap struct {
	r     io.ReadCloser
	f     *cancelFilter
	lines *lines.Splitter // lines longer than maxTapLine are not cancellations
}

func newStdinTap(r io.ReadCloser, f *cancelFilter) *stdinTap {
	t := &stdinTap{r: r, f: f}
	t.lines = &lines.Splitter{Max: maxTapLine, Line: t.inspect}
	return t
}

func (t *stdinTap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.lines.Feed(p[:n])
	return n, err
}

func (t *stdinTap) Close() error { return t.r.Close() }

// inspect notes the cancellations in one line: a message or a batch of them.
func (t *stdinTap) inspect(line []byte) {
	if !bytes.Contains(line, []byte("notifications/cancelled")) {
		return
	}
	type msg struct {
		Method string `json:"method"`
		Params struct {
			RequestID any `json:"requestId"`
		} `json:"params"`
	}
	var msgs []msg
	line = bytes.TrimSpace(line)
	if len(line) > 0 && line[0] == '[' {
		if json.Unmarshal(line, &msgs) != nil {
			return
		}
	} else {
		var m msg
		if json.Unmarshal(line, &m) != nil {
			return
		}
		msgs = []msg{m}
	}
	for _, m := range msgs {
		if m.Method != "notifications/cancelled" {
			continue
		}
		if id, err := jsonrpc.MakeID(m.Params.RequestID); err == nil && id.IsValid() {
			t.f.add(id)
		}
	}
}

// stdoutFilter writes the SDK's messages to stdout, leaving out single responses to
// cancelled requests. (A batch's responses go out together as the client asked for them.)
// It also owns the watcher of stdout.
type stdoutFilter struct {
	w *os.File
	f *cancelFilter

	closeOnce    sync.Once
	wakeR, wakeW int           // self-pipe that stops the watcher
	watched      chan struct{} // closed when the watcher returned
}

func (s *stdoutFilter) Write(p []byte) (int, error) {
	// The SDK writes one message (or one batch) per call.
	if !s.f.empty() && len(p) > 0 && p[0] == '{' {
		var m struct {
			ID     any             `json:"id"`
			Method string          `json:"method"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if json.Unmarshal(p, &m) == nil && m.Method == "" && (m.Result != nil || m.Error != nil) {
			if id, err := jsonrpc.MakeID(m.ID); err == nil && s.f.drop(id) {
				return len(p), nil
			}
		}
	}
	return s.w.Write(p)
}

// Close stops the watcher; stdout itself stays open (Airlock's diagnostics do not use it, but
// nothing else may write there either).
func (s *stdoutFilter) Close() error {
	s.closeOnce.Do(func() {
		unix.Close(s.wakeW) // wakes the watcher
		<-s.watched
		unix.Close(s.wakeR)
	})
	return nil
}

// watch waits until stdout's reader is gone (POLLERR on a pipe, POLLHUP on a socket or
// terminal) or the connection closes, and in the first case closes in, which ends the SDK's
// read loop and so the connection. A regular file never reports either.
func (s *stdoutFilter) watch(out int, in *os.File) {
	defer close(s.watched)
	fds := []unix.PollFd{{Fd: int32(out)}, {Fd: int32(s.wakeR), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			in.Close()
			return
		}
	}
}
