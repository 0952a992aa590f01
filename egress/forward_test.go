package egress

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// upstreamSeen records what an origin server received.
type upstreamSeen struct {
	mu   sync.Mutex
	reqs []*http.Request
	body []string
}

func (u *upstreamSeen) handler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.reqs = append(u.reqs, r)
	u.body = append(u.body, string(b))
	u.mu.Unlock()
	w.Header().Set("Proxy-Authenticate", "Basic")
	fmt.Fprintf(w, "origin saw %s %s", r.Method, r.RequestURI)
}

func (u *upstreamSeen) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func TestHTTPForwarded(t *testing.T) {
	var seen upstreamSeen
	_, port := httpServer(t, http.HandlerFunc(seen.handler))
	p, addr := startProxy(t, testConfig(fmt.Sprintf("allowed.test:%d", port)))
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://Allowed.Test:%d/p/a%%20th?q=1", port), strings.NewReader("payload"))
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	req.Header.Set("Proxy-Anything", "x")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must not pass")
	req.Header.Set("X-Kept", "kept")
	resp, err := proxyClient(addr, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := body(t, resp)
	if resp.StatusCode != 200 || got != "origin saw POST /p/a%20th?q=1" {
		t.Fatalf("%s %q", resp.Status, got)
	}
	if resp.Header.Get("Proxy-Authenticate") != "" {
		t.Errorf("hop-by-hop response headers passed: %v", resp.Header)
	}
	if seen.count() != 1 {
		t.Fatalf("upstream saw %d requests", seen.count())
	}
	r := seen.reqs[0]
	if r.Host != fmt.Sprintf("allowed.test:%d", port) || seen.body[0] != "payload" {
		t.Errorf("upstream Host %q body %q", r.Host, seen.body[0])
	}
	for _, h := range []string{"Proxy-Authorization", "Proxy-Anything", "X-Hop", "Proxy-Connection"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("upstream received %s: %s", h, v)
		}
	}
	if r.Header.Get("X-Kept") != "kept" {
		t.Errorf("end-to-end header lost: %v", r.Header)
	}
	ev := onlyEvent(t, p)
	if !ev.Allowed || ev.Kind != "http" || ev.Code != "" || ev.BytesSent == 0 || ev.BytesReceived == 0 || ev.Host != "allowed.test" {
		t.Errorf("event %+v", ev)
	}
}

// A request in origin form names its destination in the Host header only.
func TestHTTPHostHeaderForm(t *testing.T) {
	var seen upstreamSeen
	_, port := httpServer(t, http.HandlerFunc(seen.handler))
	_, addr := startProxy(t, testConfig(fmt.Sprintf("allowed.test:%d", port)))
	resp, _, _ := rawRequest(t, addr, fmt.Sprintf("GET /x?y HTTP/1.1\r\nHost: allowed.test:%d\r\nUser-Agent: t\r\n\r\n", port))
	if b := body(t, resp); resp.StatusCode != 200 || b != "origin saw GET /x?y" {
		t.Fatalf("%s %q", resp.Status, b)
	}
	if !resp.Close {
		t.Error("want Connection: close")
	}
}

func TestHTTPRefusals(t *testing.T) {
	var seen upstreamSeen
	_, port := httpServer(t, http.HandlerFunc(seen.handler))
	allowed := fmt.Sprintf("allowed.test:%d", port)
	for _, tc := range []struct {
		name, req, code, mention string
		status                   int
	}{
		{"Host header names another host", "GET http://" + allowed + "/ HTTP/1.1\r\nHost: other.test\r\n\r\n", "host_mismatch", "other.test", 403},
		{"Host header names another port", "GET http://" + allowed + "/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", "host_mismatch", "Host header", 403},
		{"Host header is an address", "GET http://" + allowed + "/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "host_mismatch", "Host header", 403},
		{"two Host headers", "GET http://" + allowed + "/ HTTP/1.1\r\nHost: " + allowed + "\r\nHost: other.test\r\n\r\n", "bad_request", "more than one Host", 400},
		{"not on the allowlist", "GET http://other.test:" + fmt.Sprint(port) + "/ HTTP/1.1\r\n\r\n", "not_allowed", "network.allow", 403},
		{"origin form, refused host", "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n", "not_allowed", "other.test:80", 403},
		{"IP literal", "GET http://127.0.0.1:" + fmt.Sprint(port) + "/ HTTP/1.1\r\n\r\n", "ip_literal", "IP address", 403},
		{"IP literal named twice", "GET http://127.0.0.1:" + fmt.Sprint(port) + "/ HTTP/1.1\r\nHost: 127.0.0.1:" + fmt.Sprint(port) + "\r\n\r\n", "ip_literal", "IP address", 403},
		{"origin form to an IP literal", "GET / HTTP/1.1\r\nHost: 127.0.0.1:" + fmt.Sprint(port) + "\r\n\r\n", "ip_literal", "IP address", 403},
		{"https in a plain request", "GET https://" + allowed + "/ HTTP/1.1\r\n\r\n", "bad_request", "CONNECT", 400},
		{"ftp", "GET ftp://" + allowed + "/ HTTP/1.1\r\n\r\n", "bad_request", "scheme", 400},
		{"userinfo", "GET http://u:p@" + allowed + "/ HTTP/1.1\r\n\r\n", "bad_request", "userinfo", 400},
		{"asterisk form", "OPTIONS * HTTP/1.1\r\nHost: " + allowed + "\r\n\r\n", "bad_request", "request target", 400},
		{"origin form without Host", "GET / HTTP/1.0\r\n\r\n", "bad_request", "Host header", 400},
		{"garbage", "HELLO\r\n\r\n", "bad_request", "malformed request line", 400},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "bad_request", "malformed request line", 400},
		{"header too large", "GET http://" + allowed + "/ HTTP/1.1\r\nX: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", "bad_request", "longer than", 400},
		{"conflicting framing", "POST http://" + allowed + "/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "bad_request", "malformed HTTP request", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, addr := startProxy(t, testConfig(allowed))
			resp, _, _ := rawRequest(t, addr, tc.req)
			expectRefusal(t, resp, tc.status, tc.code, tc.mention)
			ev := onlyEvent(t, p)
			if ev.Allowed || ev.Code != tc.code || ev.BytesSent != 0 {
				t.Errorf("event %+v", ev)
			}
		})
	}
	if n := seen.count(); n != 0 {
		t.Errorf("refused requests reached the origin: %d", n)
	}
}

// A request smuggled in a body (Transfer-Encoding and Content-Length both set) reaches the
// origin as one request, re-framed, and the proxy forwards nothing after it.
func TestHTTPSmugglingReframed(t *testing.T) {
	var seen upstreamSeen
	_, port := httpServer(t, http.HandlerFunc(seen.handler))
	allowed := fmt.Sprintf("allowed.test:%d", port)
	_, addr := startProxy(t, testConfig(allowed))
	smuggled := "GET http://" + allowed + "/admin HTTP/1.1\r\n\r\n"
	req := "POST http://" + allowed + "/ HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
	resp, _, _ := rawRequest(t, addr, req)
	body(t, resp)
	if n := seen.count(); n != 1 {
		t.Fatalf("origin saw %d requests, want 1", n)
	}
	if seen.reqs[0].URL.Path != "/" {
		t.Errorf("origin saw %q", seen.reqs[0].URL)
	}
}

// Expect: 100-continue is answered by the proxy; the body still arrives.
func TestHTTPExpectContinue(t *testing.T) {
	var seen upstreamSeen
	_, port := httpServer(t, http.HandlerFunc(seen.handler))
	_, addr := startProxy(t, testConfig(fmt.Sprintf("allowed.test:%d", port)))
	u := fmt.Sprintf("http://allowed.test:%d/up", port)
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr}), ExpectContinueTimeout: 0}
	req, _ := http.NewRequest("PUT", u, strings.NewReader("data"))
	req.Header.Set("Expect", "100-continue")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body(t, resp)
	if seen.count() != 1 || seen.body[0] != "data" || seen.reqs[0].Header.Get("Expect") != "" {
		t.Errorf("origin saw %d requests, body %q", seen.count(), seen.body)
	}
}

// Response headers the origin marks hop-by-hop stay between it and the proxy.
func TestHTTPResponseHopByHop(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Upstream-Hop\r\nX-Upstream-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nX-End: kept\r\nContent-Length: 2\r\n\r\nok")
	}()
	port := serverPort(t, l.Addr())
	_, addr := startProxy(t, testConfig(fmt.Sprintf("allowed.test:%d", port)))
	resp, _, _ := rawRequest(t, addr, fmt.Sprintf("GET http://allowed.test:%d/ HTTP/1.1\r\n\r\n", port))
	if b := body(t, resp); b != "ok" {
		t.Fatalf("body %q", b)
	}
	for _, h := range []string{"X-Upstream-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("client received %s: %s", h, v)
		}
	}
	if resp.Header.Get("X-End") != "kept" {
		t.Errorf("end-to-end header lost: %v", resp.Header)
	}
}

// A connection closed before its first byte asked for nothing: no Event (so no refusal for
// the agent or the audit record), though it counts against the connection cap. One that sent
// a partial request is a refusal.
func TestEmptyConnectionNotRecorded(t *testing.T) {
	p, addr := startProxy(t, testConfig("allowed.test"))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET http://allowed"))
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
	c.Close()
	p.Close()
	evs := p.Events()
	if len(evs) != 1 || evs[0].Code != "bad_request" {
		t.Errorf("events: %+v, want one bad_request (the partial request)", evs)
	}
	if st := p.Stats(); st.Connections != 2 {
		t.Errorf("connections counted: %d, want 2", st.Connections)
	}
}
