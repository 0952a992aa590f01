package runtime

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPCancelledRequestNotAnswered: a request the client cancels with notifications/cancelled
// gets no response on its POST (MCP: a cancelled request is not answered).
func TestHTTPCancelledRequestNotAnswered(t *testing.T) {
	fb, started, cancelled := blockingBackend()
	rt := newTestRuntime(t, "", "", fb)
	url, _ := serveFront(t, rt)
	sid := openSession(t, url)
	conn := rawCall(t, url, sid)
	defer conn.Close()
	waitStarted(t, started)
	resp, body := rawRequest(t, http.MethodPost, url, sid, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"stop"}}`)
	t.Logf("cancel POST: %d %q", resp.StatusCode, body)
	select {
	case c := <-cancelled:
		t.Logf("handler cancelled: %v", c)
	case <-time.After(2 * time.Second):
		t.Fatal("not cancelled")
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	var got []string
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		got = append(got, sc.Text())
		if strings.Contains(sc.Text(), `"id":7`) {
			break
		}
	}
	out := strings.Join(got, "\n")
	t.Logf("POST stream:\n%s", out)
	if strings.Contains(out, `"id":7`) {
		t.Errorf("the cancelled request 7 was answered over HTTP")
	}
}
