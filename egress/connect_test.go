package egress

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func okHandler(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "hello %s", r.Host) }

func TestConnectAllowed(t *testing.T) {
	_, pool, port := httpsServer(t, http.HandlerFunc(okHandler), "allowed.test")
	p, addr := startProxy(t, testConfig(fmt.Sprintf("allowed.test:%d", port)))
	resp, err := proxyClient(addr, pool).Get(fmt.Sprintf("https://Allowed.Test.:%d/x", port))
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); !strings.HasPrefix(b, "hello ") {
		t.Fatalf("body %q", b)
	}
	ev := onlyEvent(t, p)
	if !ev.Allowed || ev.Code != "" || ev.Kind != "connect" || ev.Host != "allowed.test" || ev.Port != port ||
		ev.Addr != fmt.Sprintf("127.0.0.1:%d", port) || ev.BytesSent == 0 || ev.BytesReceived == 0 || ev.End.Before(ev.Start) {
		t.Fatalf("event %+v", ev)
	}
}

func TestConnectRefusals(t *testing.T) {
	rec, port := newTCPRecorder(t)
	for _, tc := range []struct {
		name, target, code, mention string
		status                      int
	}{
		{"not on the allowlist", fmt.Sprintf("other.test:%d", port), "not_allowed", fmt.Sprintf("other.test:%d", port), 403},
		{"allowed host, other port", "allowed.test:22", "not_allowed", "allowed.test:22", 403},
		{"wildcard does not cover the bare suffix", fmt.Sprintf("files.test:%d", port), "not_allowed", "network.allow", 403},
		{"suffix without a dot", fmt.Sprintf("evilallowed.test:%d", port), "not_allowed", "network.allow", 403},
		{"IPv4 literal", fmt.Sprintf("127.0.0.1:%d", port), "ip_literal", "IP address", 403},
		{"IPv6 literal", fmt.Sprintf("[::1]:%d", port), "ip_literal", "IP address", 403},
		{"decimal IPv4", fmt.Sprintf("2130706433:%d", port), "ip_literal", "IP address", 403},
		{"hex IPv4", fmt.Sprintf("0x7f.1:%d", port), "ip_literal", "IP address", 403},
		{"no port", "allowed.test", "bad_request", "no port", 400},
		{"path target", "/rpc", "bad_request", "CONNECT host:port", 400},
		{"private address", fmt.Sprintf("private.test:%d", port), "private_address", "egress.allow_private", 403},
		{"cloud metadata", "metadata.test:443", "private_address", "169.254.169.254", 403},
		{"any private answer refuses (rebinding)", "mixed.test:443", "private_address", "10.1.2.3", 403},
		{"IPv4-mapped loopback", "mapped-loopback.test:443", "private_address", "IPv4-mapped", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(fmt.Sprintf("allowed.test:%d", port), fmt.Sprintf("*.files.test:%d", port), "*.allowed.test",
				fmt.Sprintf("private.test:%d", port), "metadata.test", "mixed.test", "mapped-loopback.test",
				fmt.Sprintf("127.0.0.1.nip.test:%d", port))
			cfg.AllowPrivate = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
			cfg.Hosts["private.test"] = []netip.Addr{netip.MustParseAddr("127.0.0.9")} // loopback, not listed
			p, addr := startProxy(t, cfg)
			resp, _, _ := rawRequest(t, addr, "CONNECT "+tc.target+" HTTP/1.1\r\nHost: "+tc.target+"\r\n\r\n")
			expectRefusal(t, resp, tc.status, tc.code, tc.mention)
			ev := onlyEvent(t, p)
			if ev.Allowed || ev.Code != tc.code || ev.Kind != "connect" || ev.Addr != "" || ev.BytesSent != 0 {
				t.Errorf("event %+v", ev)
			}
		})
	}
	if n := rec.accepted.Load(); n != 0 {
		t.Errorf("a refused CONNECT reached the server (%d connections)", n)
	}
}

// The name is resolved once, and the connection goes to that answer: a resolver that answers
// differently the second time (DNS rebinding) never gets asked twice.
func TestConnectResolvesOnce(t *testing.T) {
	_, pool, port := httpsServer(t, http.HandlerFunc(okHandler), "dns.test")
	var calls atomic.Int64
	cfg := testConfig(fmt.Sprintf("dns.test:%d", port))
	cfg.Resolver = func(ctx context.Context, host string) ([]netip.Addr, error) {
		if host != "dns.test" {
			t.Errorf("resolver asked for %q", host)
		}
		if calls.Add(1) == 1 {
			return []netip.Addr{loopback}, nil
		}
		return []netip.Addr{netip.MustParseAddr("192.0.2.1")}, nil
	}
	p, addr := startProxy(t, cfg)
	resp, err := proxyClient(addr, pool).Get(fmt.Sprintf("https://dns.test:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	body(t, resp)
	if n := calls.Load(); n != 1 {
		t.Errorf("resolver called %d times for one connection, want 1", n)
	}
	if ev := onlyEvent(t, p); ev.Addr != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Errorf("connected to %q", ev.Addr)
	}
}

// Hosts answers without asking the resolver, and its addresses are still checked.
func TestHostsOverrideResolver(t *testing.T) {
	cfg := testConfig("allowed.test:1", "internal.test")
	cfg.Resolver = func(ctx context.Context, host string) ([]netip.Addr, error) {
		t.Errorf("resolver asked for %q, which Hosts names", host)
		return nil, fmt.Errorf("no")
	}
	cfg.Hosts["Internal.Test."] = []netip.Addr{netip.MustParseAddr("10.9.9.9")}
	_, addr := startProxy(t, cfg)
	resp, _, _ := rawRequest(t, addr, "CONNECT internal.test:443 HTTP/1.1\r\n\r\n")
	expectRefusal(t, resp, 403, "private_address", "10.9.9.9")
	resp, _, _ = rawRequest(t, addr, "CONNECT allowed.test:1 HTTP/1.1\r\n\r\n")
	expectRefusal(t, resp, 502, "dial_failed", "could not connect")
}

func TestConnectResolveFailure(t *testing.T) {
	cfg := testConfig("nxdomain.test")
	cfg.Resolver = func(ctx context.Context, host string) ([]netip.Addr, error) {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	p, addr := startProxy(t, cfg)
	resp, _, _ := rawRequest(t, addr, "CONNECT nxdomain.test:443 HTTP/1.1\r\n\r\n")
	expectRefusal(t, resp, 502, "resolve_failed", "no such host")
	if ev := onlyEvent(t, p); ev.Code != "resolve_failed" {
		t.Errorf("event %+v", ev)
	}
}

// The TLS server name must be the CONNECT host; otherwise nothing is relayed.
func TestConnectServerNameChecks(t *testing.T) {
	rec, port := newTCPRecorder(t)
	for _, tc := range []struct {
		name  string
		first func(t *testing.T) []byte // the tunnel's first bytes
		code  string
	}{
		{"SNI names another host (fronting)", func(t *testing.T) []byte {
			return clientHelloBytes(t, &tls.Config{ServerName: "other.test"})
		}, "sni_mismatch"},
		{"SNI names a subdomain", func(t *testing.T) []byte {
			return clientHelloBytes(t, &tls.Config{ServerName: "x.allowed.test"})
		}, "sni_mismatch"},
		{"no SNI", func(t *testing.T) []byte {
			return clientHelloBytes(t, &tls.Config{InsecureSkipVerify: true})
		}, "no_sni"},
		{"plain HTTP in the tunnel", func(t *testing.T) []byte {
			return []byte("GET / HTTP/1.1\r\nHost: other.test\r\n\r\n")
		}, "not_tls"},
		{"ECH hides the name", func(t *testing.T) []byte {
			return hello([][2][]byte{sni("allowed.test"), ext(extECH, "inner")}, 0)
		}, "ech"},
		{"two names in SNI", func(t *testing.T) []byte {
			return hello([][2][]byte{sni("allowed.test", "other.test")}, 0)
		}, "bad_hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, addr := startProxy(t, testConfig(fmt.Sprintf("allowed.test:%d", port)))
			c := connectTunnel(t, addr, fmt.Sprintf("allowed.test:%d", port))
			c.Write(tc.first(t))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.Read(make([]byte, 1)); err == nil {
				t.Errorf("tunnel still open (read %d bytes)", n)
			}
			ev := onlyEvent(t, p)
			if ev.Allowed || ev.Code != tc.code || ev.BytesSent != 0 || !strings.Contains(ev.Reason, "allowed.test") {
				t.Errorf("event %+v", ev)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if got := rec.received(); len(got) != 0 {
		t.Errorf("the server received %d bytes from refused tunnels", len(got))
	}
}

// The SNI comparison is on canonical names: case and a trailing dot do not matter.
func TestConnectServerNameCanonical(t *testing.T) {
	_, pool, port := httpsServer(t, http.HandlerFunc(okHandler), "allowed.test")
	_, addr := startProxy(t, testConfig(fmt.Sprintf("allowed.test:%d", port)))
	c := connectTunnel(t, addr, fmt.Sprintf("ALLOWED.test.:%d", port))
	tc := tls.Client(c, &tls.Config{ServerName: "allowed.test", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tc.Close()
}

// Internationalised names compare in ASCII form: the tunnel's punycode SNI matches a pattern
// written in Unicode.
func TestConnectIDN(t *testing.T) {
	_, pool, port := httpsServer(t, http.HandlerFunc(okHandler), "xn--bcher-kva.test")
	p, addr := startProxy(t, testConfig(fmt.Sprintf("bücher.test:%d", port)))
	c := connectTunnel(t, addr, fmt.Sprintf("xn--bcher-kva.test:%d", port))
	tc := tls.Client(c, &tls.Config{ServerName: "xn--bcher-kva.test", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tc.Close()
	if ev := onlyEvent(t, p); ev.Host != "xn--bcher-kva.test" || !ev.Allowed {
		t.Errorf("event %+v", ev)
	}
}

// Bytes the client sends before the proxy's 200 (pipelined with the CONNECT) are judged like
// any other first bytes.
func TestConnectPipelinedHello(t *testing.T) {
	rec, port := newTCPRecorder(t)
	p, addr := startProxy(t, testConfig(fmt.Sprintf("allowed.test:%d", port)))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := fmt.Sprintf("CONNECT allowed.test:%d HTTP/1.1\r\n\r\n", port)
	c.Write(append([]byte(req), clientHelloBytes(t, &tls.Config{ServerName: "other.test"})...))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(c)
	if ev := onlyEvent(t, p); ev.Code != "sni_mismatch" {
		t.Errorf("event %+v", ev)
	}
	if len(rec.received()) != 0 {
		t.Error("a pipelined fronted ClientHello reached the server")
	}
}
