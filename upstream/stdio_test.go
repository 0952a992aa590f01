package upstream

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// pipeServer is a stdio MCP server in this process over real pipes, standing in for a
// sandboxed one: like server-everything, it sends notifications/tools/list_changed once the
// client is initialized.
type pipeServer struct {
	stdoutClosedAtStop atomic.Bool // the session closed the server's stdout before Stop
}

type trackedReader struct {
	io.ReadCloser
	closed atomic.Bool
}

func (r *trackedReader) Close() error {
	r.closed.Store(true)
	return r.ReadCloser.Close()
}

func (ps *pipeServer) launch(context.Context) (*Pipes, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer outW.Close()
		serveLines(inR, outW)
	}()
	out := &trackedReader{ReadCloser: outR}
	return &Pipes{Stdout: out, Stdin: inW, Done: done, Exited: func() string { return "exited" },
		Stop: func() {
			ps.stdoutClosedAtStop.Store(out.closed.Load())
			inW.Close()
			<-done
			outR.Close()
		}}, nil
}

// serveLines is a minimal MCP server of protocol 2025-06-18 (whose servers send
// notifications/tools/list_changed on the session, as server-everything does once the
// client is initialized), until its stdin ends.
func serveLines(in io.Reader, out io.Writer) {
	sc := bufio.NewScanner(in)
	send := func(v any) {
		b, _ := json.Marshal(v)
		out.Write(append(b, '\n'))
	}
	for sc.Scan() {
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) != nil {
			continue
		}
		reply := func(result any) { send(map[string]any{"jsonrpc": "2.0", "id": msg.ID, "result": result}) }
		switch msg.Method {
		case "initialize":
			reply(map[string]any{"protocolVersion": "2025-06-18", "capabilities": map[string]any{"tools": map[string]any{"listChanged": true}},
				"serverInfo": map[string]any{"name": "pipe-server", "version": "0"}})
		case "notifications/initialized":
			send(map[string]any{"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
		case "tools/list":
			reply(map[string]any{"tools": []any{map[string]any{"name": "t", "inputSchema": map[string]any{"type": "object"}}}})
			send(map[string]any{"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
		default:
			if len(msg.ID) > 0 {
				reply(map[string]any{})
			}
		}
	}
}

// tools/list_changed is reported with the session it arrived on, so that the gateway re-lists
// on that server's own session instead of starting another server to list (which, for a
// server that announces a change as it starts, would start one after another forever).
func TestStdioToolsChangedNamesItsSession(t *testing.T) {
	ps := &pipeServer{}
	changed := make(chan *Session, 8)
	r, err := NewStdio(Options{Name: "pipe", Launch: ps.launch, OnToolsChanged: func(s *Session) { changed <- s }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.Connect(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if tools, err := s.Tools(ctx); err != nil || len(tools) != 1 {
		t.Errorf("listing on that session: %d tools, %v", len(tools), err)
	}
	// The one sent during the handshake may arrive before the session exists (nil); the one
	// sent after the listing names it.
	deadline := time.After(5 * time.Second)
	for {
		select {
		case on := <-changed:
			if on == s {
				return
			}
			if on != nil {
				t.Fatalf("list_changed reported with session %p, want %p", on, s)
			}
		case <-deadline:
			t.Fatal("tools/list_changed was not reported with its session")
		}
	}
}

// Close stops a stdio server while its stdout is still read: closing the session first would
// close the pipe under a server that may still write, which then dies of EPIPE and looks like
// a crash.
func TestStdioCloseStopsTheServerFirst(t *testing.T) {
	ps := &pipeServer{}
	r, err := NewStdio(Options{Name: "pipe", Launch: ps.launch})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.Connect(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if ps.stdoutClosedAtStop.Load() {
		t.Error("the session closed the server's stdout before stopping it")
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Error("the session has not ended after Close")
	}
}
