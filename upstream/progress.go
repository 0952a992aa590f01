package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/internal/lines"
)

// Progress ordering. The SDK hands a call's response to the caller as soon as it is read, but
// queues the notifications read before it for a handler goroutine; so the last progress an
// upstream sends just ahead of its result would often reach the handler after the call has
// returned, when Airlock no longer routes it (the client's request is answered). Airlock
// therefore watches the bytes an upstream sends: a progress notification for one of its calls
// is counted when its line passes, before the SDK can parse anything after it, and the call
// waits, after its result, until the handler has delivered every notification counted.

// progressSettle bounds that wait: a handler that blocks (a client that stops reading its
// notifications) must not hold the call's result.
const progressSettle = time.Second

// maxWatchedLine is the longest line inspected for a progress notification. A longer one (an
// image result, say) is not one: it is passed through unread.
const maxWatchedLine = 64 << 10

// progressRoute is where one call's progress goes, and how many of its notifications were
// read but not yet delivered.
type progressRoute struct {
	fn func(progress, total float64, message string)

	mu      sync.Mutex
	pending int
	idle    chan struct{} // closed when pending returns to 0; nil while nothing is pending
}

// read counts a notification whose bytes just passed.
func (r *progressRoute) read() {
	r.mu.Lock()
	if r.pending == 0 {
		r.idle = make(chan struct{})
	}
	r.pending++
	r.mu.Unlock()
}

// deliver hands a notification to the call, and uncounts it.
func (r *progressRoute) deliver(progress, total float64, message string) {
	r.fn(progress, total, message)
	r.mu.Lock()
	if r.pending > 0 {
		r.pending--
		if r.pending == 0 {
			close(r.idle)
		}
	}
	r.mu.Unlock()
}

// settle waits until every counted notification was delivered, at most progressSettle or
// until ctx ends.
func (r *progressRoute) settle(ctx context.Context) {
	r.mu.Lock()
	idle := r.idle
	pending := r.pending
	r.mu.Unlock()
	if pending == 0 {
		return
	}
	t := time.NewTimer(progressSettle)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	case <-ctx.Done():
	}
}

// progressWatch reads what an upstream sends (a stdio server's stdout, or an HTTP response
// body: JSON lines or server-sent events) and counts the progress notifications it carries.
type progressWatch struct {
	next  io.Reader
	route func(token string) *progressRoute
	lines *lines.Splitter // a line longer than maxWatchedLine is not a notification
}

func newProgressWatch(next io.Reader, route func(string) *progressRoute) *progressWatch {
	w := &progressWatch{next: next, route: route}
	w.lines = &lines.Splitter{Max: maxWatchedLine, Line: w.inspect}
	return w
}

func (w *progressWatch) Read(p []byte) (int, error) {
	n, err := w.next.Read(p)
	w.lines.Feed(p[:n])
	return n, err
}

// inspect counts line if it is a progress notification for a call Airlock routes.
func (w *progressWatch) inspect(line []byte) {
	if !bytes.Contains(line, []byte("notifications/progress")) {
		return
	}
	line = bytes.TrimSpace(line)
	line = bytes.TrimSpace(bytes.TrimPrefix(line, []byte("data:"))) // server-sent events
	var msg struct {
		Method string `json:"method"`
		Params struct {
			Token any `json:"progressToken"`
		} `json:"params"`
	}
	if json.Unmarshal(line, &msg) != nil || msg.Method != "notifications/progress" {
		return
	}
	tok, ok := msg.Params.Token.(string)
	if !ok {
		return
	}
	if r := w.route(tok); r != nil {
		r.read()
	}
}

// watched is a stream (a stdio server's stdout, an HTTP response body) read through a
// progressWatch and closed as itself.
type watched struct {
	io.Reader
	io.Closer
}
