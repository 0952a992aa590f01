package egress

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// testCert returns a self-signed certificate for names, and a pool that trusts it.
func testCert(t testing.TB, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// httpsServer is a real TLS server on 127.0.0.1 for names.
func httpsServer(t testing.TB, h http.Handler, names ...string) (*httptest.Server, *x509.CertPool, int) {
	t.Helper()
	cert, pool := testCert(t, names...)
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s, pool, serverPort(t, s.Listener.Addr())
}

func httpServer(t testing.TB, h http.Handler) (*httptest.Server, int) {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s, serverPort(t, s.Listener.Addr())
}

func serverPort(t testing.TB, a net.Addr) int {
	t.Helper()
	_, p, err := net.SplitHostPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// testConfig reaches the test servers: names map to 127.0.0.1, which AllowPrivate admits.
func testConfig(allow ...string) Config {
	return Config{
		Allow:        allow,
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Hosts: map[string][]netip.Addr{
			"allowed.test":         {loopback},
			"other.test":           {loopback},
			"a.files.test":         {loopback},
			"files.test":           {loopback},
			"xn--bcher-kva.test":   {loopback},
			"private.test":         {loopback},
			"mixed.test":           {netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("10.1.2.3")},
			"metadata.test":        {netip.MustParseAddr("169.254.169.254")},
			"mapped-loopback.test": {netip.MustParseAddr("::ffff:127.0.0.2")},
		},
		DialTimeout: 2 * time.Second,
	}
}

// startProxy serves a proxy on a loopback TCP port; cleanup closes it and checks Serve ended.
func startProxy(t testing.TB, cfg Config) (*Proxy, string) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	t.Cleanup(func() {
		p.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
	})
	return p, l.Addr().String()
}

// proxyClient is an HTTP client that goes through the proxy and trusts pool.
func proxyClient(proxyAddr string, pool *x509.CertPool) *http.Client {
	pu := &url.URL{Scheme: "http", Host: proxyAddr}
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
}

// rawRequest sends text to the proxy and returns the response and the connection.
func rawRequest(t testing.TB, proxyAddr, text string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, text); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the proxy's answer to %q: %v", text, err)
	}
	return resp, c, br
}

// connectTunnel opens CONNECT target and returns the tunnel once the proxy said 200.
func connectTunnel(t testing.TB, proxyAddr, target string) net.Conn {
	t.Helper()
	resp, c, br := rawRequest(t, proxyAddr, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("CONNECT %s: %s %s", target, resp.Status, b)
	}
	if br.Buffered() > 0 {
		t.Fatal("proxy sent bytes after its 200")
	}
	c.SetDeadline(time.Time{})
	return c
}

func body(t testing.TB, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// onlyEvent waits for the proxy's first event (the connection ending on its own), then
// closes the proxy and checks there was exactly one.
func onlyEvent(t testing.TB, p *Proxy) Event {
	t.Helper()
	waitEvents(t, p, 1)
	p.Close()
	evs := p.Events()
	if len(evs) != 1 {
		t.Fatalf("want 1 event, got %d: %+v", len(evs), evs)
	}
	return evs[0]
}

// expectRefusal checks a 403/400 answer carries the explanation.
func expectRefusal(t testing.TB, resp *http.Response, status int, code string, mentions ...string) {
	t.Helper()
	b := body(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, b)
	}
	h := resp.Header.Get("X-Airlock-Egress")
	if !strings.HasPrefix(h, code+"; ") {
		t.Errorf("X-Airlock-Egress %q, want code %s", h, code)
	}
	for _, m := range mentions {
		if !strings.Contains(b, m) || !strings.Contains(h, m) {
			t.Errorf("refusal does not mention %q:\nheader: %s\nbody: %s", m, h, b)
		}
	}
}

// tcpRecorder is a plain TCP server that records what it is sent.
type tcpRecorder struct {
	l        net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	got      []byte
	wg       sync.WaitGroup
}

func newTCPRecorder(t testing.TB) (*tcpRecorder, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &tcpRecorder{l: l}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.accepted.Add(1)
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b, _ := io.ReadAll(c)
				r.mu.Lock()
				r.got = append(r.got, b...)
				r.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); r.wg.Wait() })
	return r, serverPort(t, l.Addr())
}

func (r *tcpRecorder) received() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.got...)
}

// clientHelloBytes captures the ClientHello crypto/tls sends for cfg.
func clientHelloBytes(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		tls.Client(a, cfg).Handshake()
		a.Close()
	}()
	b.SetDeadline(time.Now().Add(5 * time.Second))
	raw, _, err := readClientHello(b)
	b.Close()
	if err != nil {
		t.Fatalf("capturing a ClientHello: %v", err)
	}
	return raw
}

// waitEvents waits until the proxy has recorded n events.
func waitEvents(t testing.TB, p *Proxy, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(p.Events()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d events after 5s, want %d: %+v", len(p.Events()), n, p.Events())
		}
		time.Sleep(2 * time.Millisecond)
	}
}
