package egress

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"bad pattern", Config{Allow: []string{"http://x.example"}}, "network.allow"},
		{"IP pattern", Config{Allow: []string{"10.0.0.1"}}, "IP addresses are never allowed"},
		{"negative cap", Config{MaxConns: -1}, "must not be negative"},
		{"IP as a Hosts key", Config{Hosts: map[string][]netip.Addr{"10.0.0.1": {loopback}}}, "must be a host name"},
		{"empty Hosts entry", Config{Hosts: map[string][]netip.Addr{"a.test": nil}}, "no addresses"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
}

// MaxConns caps connections over the proxy's life: the ones over it are refused with a 403
// that says so, and past twice the cap they are closed unanswered and counted.
func TestConnCap(t *testing.T) {
	var seen upstreamSeen
	_, port := httpServer(t, http.HandlerFunc(seen.handler))
	cfg := testConfig(fmt.Sprintf("allowed.test:%d", port))
	cfg.MaxConns = 2
	p, addr := startProxy(t, cfg)
	get := fmt.Sprintf("GET http://allowed.test:%d/ HTTP/1.1\r\n\r\n", port)

	// Two tunnels held open at once use the whole cap.
	_, _, tport := httpsServer(t, http.HandlerFunc(okHandler), "allowed.test")
	cfg2 := testConfig(fmt.Sprintf("allowed.test:%d", tport))
	cfg2.MaxConns = 2
	p2, addr2 := startProxy(t, cfg2)
	t1 := connectTunnel(t, addr2, fmt.Sprintf("allowed.test:%d", tport))
	t2 := connectTunnel(t, addr2, fmt.Sprintf("allowed.test:%d", tport))
	resp, _, _ := rawRequest(t, addr2, fmt.Sprintf("CONNECT allowed.test:%d HTTP/1.1\r\n\r\n", tport))
	expectRefusal(t, resp, 403, "conn_cap", "egress connections")
	t1.Close()
	t2.Close()
	p2.Close()
	capped := 0
	for _, ev := range p2.Events() {
		if ev.Code == "conn_cap" && !ev.Allowed && ev.Host == "allowed.test" && ev.Port == tport {
			capped++
		}
	}
	if evs := p2.Events(); len(evs) != 3 || capped != 1 {
		t.Errorf("events %+v", evs)
	}

	// Over the proxy's life: two requests, then refusals, including refused destinations.
	for i, want := range []int{200, 200, 403, 403} {
		resp, _, _ := rawRequest(t, addr, get)
		body(t, resp)
		if resp.StatusCode != want {
			t.Errorf("request %d: %s, want %d", i, resp.Status, want)
		}
	}
	for i := 0; i < 3; i++ { // past twice the cap: closed without an answer
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, get)
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Errorf("answer past twice the cap: %q", b)
		}
		c.Close()
	}
	p.Close()
	if n := seen.count(); n != 2 {
		t.Errorf("origin saw %d requests, want 2", n)
	}
	if st := p.Stats(); st.Connections != 7 || st.Unrecorded != 3 {
		t.Errorf("stats %+v", st)
	}
	if evs := p.Events(); len(evs) != 4 {
		t.Errorf("%d events, want 4", len(evs))
	}
}

// MaxBytes caps bytes both ways over all connections; the tunnel that crosses it is cut and
// its event says so, and no byte beyond the cap reaches the client.
func TestByteCap(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	_, pool, port := httpsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) }), "allowed.test")
	cfg := testConfig(fmt.Sprintf("allowed.test:%d", port))
	cfg.MaxBytes = 64 << 10
	p, addr := startProxy(t, cfg)
	resp, err := proxyClient(addr, pool).Get(fmt.Sprintf("https://allowed.test:%d/", port))
	if err == nil {
		b, rerr := io.ReadAll(resp.Body)
		if rerr == nil {
			t.Fatalf("read %d bytes through a 64 KiB cap without an error", len(b))
		}
	}
	ev := onlyEvent(t, p)
	if ev.Code != "byte_cap" || !ev.Allowed || !strings.Contains(ev.Reason, "budget") || ev.BytesSent+ev.BytesReceived != cfg.MaxBytes {
		t.Errorf("event %+v", ev)
	}
	if st := p.Stats(); st.Bytes != cfg.MaxBytes {
		t.Errorf("stats %+v", st)
	}
}

// The byte budget is shared: once spent, the next connection's first bytes are refused.
func TestByteCapShared(t *testing.T) {
	var seen upstreamSeen
	_, port := httpServer(t, http.HandlerFunc(seen.handler))
	cfg := testConfig(fmt.Sprintf("allowed.test:%d", port))
	cfg.MaxBytes = 300
	p, addr := startProxy(t, cfg)
	for range 3 {
		resp, _, _ := rawRequest(t, addr, fmt.Sprintf("POST http://allowed.test:%d/ HTTP/1.1\r\nContent-Length: 100\r\n\r\n%s", port, strings.Repeat("a", 100)))
		body(t, resp)
	}
	p.Close()
	evs := p.Events()
	if evs[len(evs)-1].Code != "byte_cap" {
		t.Errorf("events %+v", evs)
	}
	var total int64
	for _, ev := range evs {
		total += ev.BytesSent + ev.BytesReceived
	}
	if total > cfg.MaxBytes {
		t.Errorf("moved %d bytes under a %d cap", total, cfg.MaxBytes)
	}
}

// Close cuts open tunnels, waits for their handlers and ends Serve.
func TestCloseCutsTunnels(t *testing.T) {
	_, pool, port := httpsServer(t, http.HandlerFunc(okHandler), "allowed.test")
	p, err := New(testConfig(fmt.Sprintf("allowed.test:%d", port)))
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	c := connectTunnel(t, l.Addr().String(), fmt.Sprintf("allowed.test:%d", port))
	tc := tls.Client(c, &tls.Config{ServerName: "allowed.test", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	// An idle half-open client and a silent one hold handlers too.
	silent, _ := net.Dial("tcp", l.Addr().String())
	defer silent.Close()
	time.Sleep(20 * time.Millisecond)

	start := time.Now()
	p.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve still running after Close")
	}
	tc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("tunnel not cut: %v", err)
	}
	evs := p.Events()
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	if p.Close() != nil {
		t.Error("second Close failed")
	}
	if err := p.Serve(l); err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
}

// The socket is connectable by any uid and removed on Close; bad paths say what to do.
func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	_, pool, port := httpsServer(t, http.HandlerFunc(okHandler), "allowed.test")
	p, err := New(testConfig(fmt.Sprintf("allowed.test:%d", port)))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "egress.sock")
	l, err := p.ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket %v, %v", fi.Mode(), err)
	}
	if _, err := p.ListenUnix(path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second listen: %v", err)
	}
	if _, err := p.ListenUnix(filepath.Join(dir, "missing", "s")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing dir: %v", err)
	}
	if _, err := p.ListenUnix(filepath.Join(dir, strings.Repeat("a", 120))); err == nil || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("long path: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT allowed.test:%d HTTP/1.1\r\n\r\n", port)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "allowed.test", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tc.Close()
	p.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

// OnEvent sees every event, in the order Events lists them, one call at a time.
func TestOnEvent(t *testing.T) {
	var seen upstreamSeen
	_, port := httpServer(t, http.HandlerFunc(seen.handler))
	var mu sync.Mutex
	var live []Event
	inCall := make(chan struct{}, 1)
	cfg := testConfig(fmt.Sprintf("allowed.test:%d", port))
	cfg.OnEvent = func(ev Event) {
		select {
		case inCall <- struct{}{}:
		default:
			t.Error("OnEvent called concurrently")
		}
		mu.Lock()
		live = append(live, ev)
		mu.Unlock()
		time.Sleep(time.Millisecond)
		<-inCall
	}
	p, addr := startProxy(t, cfg)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			host := "allowed.test"
			if i%2 == 1 {
				host = "other.test"
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "GET http://%s:%d/ HTTP/1.1\r\n\r\n", host, port)
			io.ReadAll(c)
		}()
	}
	wg.Wait()
	p.Close()
	evs := p.Events()
	if len(evs) != 8 || len(live) != 8 {
		t.Fatalf("%d events, %d live", len(evs), len(live))
	}
	allowed := 0
	for i := range evs {
		if evs[i] != live[i] {
			t.Errorf("event %d differs: %+v vs %+v", i, evs[i], live[i])
		}
		if evs[i].Allowed {
			allowed++
		}
	}
	if allowed != 4 {
		t.Errorf("%d allowed, want 4", allowed)
	}
}
