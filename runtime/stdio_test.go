package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// rawStdio serves rt over pipes with StdioTransport and returns a line writer and a reader of
// the server's messages.
type rawStdio struct {
	t      *testing.T
	inW    *os.File
	outR   *os.File
	lines  chan map[string]any
	served chan error
}

func startStdio(t *testing.T, rt *Runtime) *rawStdio {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &rawStdio{t: t, inW: inW, outR: outR, lines: make(chan map[string]any, 16), served: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); inW.Close(); outR.Close() })
	go func() { s.served <- rt.ServeTransport(ctx, &StdioTransport{In: inR, Out: outW}) }()
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				var batch []map[string]any
				if json.Unmarshal(sc.Bytes(), &batch) == nil {
					m = map[string]any{"batch": batch}
				}
			}
			s.lines <- m
		}
	}()
	s.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`)
	if m := s.next(5 * time.Second); m == nil || m["id"] != float64(1) {
		t.Fatalf("initialize: %v", m)
	}
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return s
}

func (s *rawStdio) send(line string) {
	if _, err := s.inW.Write([]byte(line + "\n")); err != nil {
		s.t.Fatal(err)
	}
}

func (s *rawStdio) next(d time.Duration) map[string]any {
	select {
	case m := <-s.lines:
		return m
	case <-time.After(d):
		return nil
	}
}

// slowBackend blocks runs whose argv mentions "slow" until cancelled.
func slowBackend(started chan<- struct{}) *fakeBackend {
	return &fakeBackend{respond: func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
		if strings.Contains(strings.Join(s.Argv, " "), "slow") {
			started <- struct{}{}
			<-ctx.Done()
			return sandbox.Result{ContainerID: "c-slow", ExitCode: sandbox.ExitKilled}, context.Cause(ctx)
		}
		return sandbox.Result{ContainerID: "c-fast", Stdout: []byte("fast\n")}, nil
	}}
}

// TestStdioCancelledResponseDropped: the response to a request the client cancelled is not
// sent; the next response is.
func TestStdioCancelledResponseDropped(t *testing.T) {
	started := make(chan struct{}, 4)
	s := startStdio(t, newTestRuntime(t, "", "", slowBackend(started)))
	s.send(`{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"run_command","arguments":{"command":"slow"}}}`)
	<-started
	s.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":10,"reason":"stop"}}`)
	s.send(`{"jsonrpc":"2.0","id":11,"method":"tools/list"}`)
	if m := s.next(5 * time.Second); m == nil || m["id"] != float64(11) {
		t.Fatalf("first message after the cancellation: %v, want the answer to 11 (10 was cancelled)", m)
	}
	if m := s.next(300 * time.Millisecond); m != nil {
		t.Errorf("unexpected message: %v", m)
	}
}

// TestStdioCancelInBatch: a cancelled request inside a batch does not hold back the batch's
// other responses (the SDK sends a batch's responses together).
func TestStdioCancelInBatch(t *testing.T) {
	started := make(chan struct{}, 4)
	s := startStdio(t, newTestRuntime(t, "", "", slowBackend(started)))
	s.send(`[{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"run_command","arguments":{"command":"slow"}}},` +
		`{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"run_command","arguments":{"command":"echo fast"}}}]`)
	<-started
	s.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":10,"reason":"stop"}}`)
	m := s.next(5 * time.Second)
	b, _ := json.Marshal(m)
	if m == nil || !strings.Contains(string(b), `"id":11`) {
		t.Fatalf("after cancelling a batch member: %s, want the batch's responses with 11's", b)
	}
}

// TestStdioStdoutClosed: when the client closes its end of stdout (stdin still open), the
// connection ends and the call in flight is cancelled.
func TestStdioStdoutClosed(t *testing.T) {
	started := make(chan struct{}, 4)
	s := startStdio(t, newTestRuntime(t, "", "", slowBackend(started)))
	s.send(`{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"run_command","arguments":{"command":"slow"}}}`)
	<-started
	s.outR.Close()
	select {
	case <-s.served:
	case <-time.After(5 * time.Second):
		t.Fatal("the server still serves 5 s after its stdout was closed")
	}
}
