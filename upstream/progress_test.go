package upstream

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// The watch counts progress notifications for routed tokens only, whatever the chunking, in
// JSON lines and in server-sent events; lines too long to be one pass unread.
func TestProgressWatchCounts(t *testing.T) {
	routes := map[string]*progressRoute{"airlock-a": {fn: func(float64, float64, string) {}}}
	stream := strings.Join([]string{
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"airlock-a","progress":1}}`,
		`data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"airlock-a","progress":2}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"other","progress":1}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7,"progress":1}}`,
		`{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"notifications/progress airlock-a"}]}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"airlock-a","pad":"` + strings.Repeat("x", maxWatchedLine) + `"}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"airlock-a","progress":3}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"airlock-a","progress":4}}`, // no newline yet
	}, "\n")
	for _, size := range []int{1, 7, 4096, len(stream)} {
		r := routes["airlock-a"]
		r.pending = 0
		w := newProgressWatch(&chunked{s: stream, n: size}, func(tok string) *progressRoute { return routes[tok] })
		if _, err := io.Copy(io.Discard, w); err != nil {
			t.Fatal(err)
		}
		if r.pending != 3 {
			t.Errorf("chunks of %d bytes: %d notifications counted, want 3 (the unfinished last line is not one yet)", size, r.pending)
		}
	}
}

type chunked struct {
	s string
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.s)
	c.s = c.s[n:]
	return n, nil
}

// settle returns once every counted notification is delivered, and does not wait without
// one; a handler that never runs holds it for progressSettle at most.
func TestProgressRouteSettle(t *testing.T) {
	var got []float64
	r := &progressRoute{fn: func(p, _ float64, _ string) { got = append(got, p) }}
	start := time.Now()
	r.settle(context.Background())
	if time.Since(start) > 50*time.Millisecond {
		t.Errorf("settle without pending notifications took %s", time.Since(start))
	}
	r.read()
	r.read()
	go func() {
		time.Sleep(20 * time.Millisecond)
		r.deliver(1, 2, "")
		r.deliver(2, 2, "")
	}()
	r.settle(context.Background())
	if len(got) != 2 {
		t.Errorf("settle returned before delivery: %v", got)
	}
	r.read()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start = time.Now()
	r.settle(ctx)
	if d := time.Since(start); d > progressSettle/2 {
		t.Errorf("settle ignored its context: %s", d)
	}
}
