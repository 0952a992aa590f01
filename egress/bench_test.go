package egress

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// The benchmarks measure what the proxy adds, each against a direct loopback connection to
// the same server in the same run: the /proxy sub-benchmark reports its ratio to /direct.

// tlsEchoServer answers each connection with a TLS handshake and then echoes.
func tlsEchoServer(b *testing.B) (int, *tls.Config) {
	cert, pool := testCert(b, "allowed.test")
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return serverPort(b, l.Addr()), &tls.Config{ServerName: "allowed.test", RootCAs: pool, ClientSessionCache: nil}
}

// sinkServer reads size bytes per round and answers each round with one byte.
func sinkServer(b *testing.B, size int) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 64<<10)
				// The proxied connection starts with a ClientHello record; skip it.
				if h, _ := br.Peek(1); len(h) == 1 && h[0] == 22 {
					readClientHello(br)
				}
				for {
					if _, err := io.CopyN(io.Discard, br, int64(size)); err != nil {
						return
					}
					if _, err := c.Write([]byte{1}); err != nil {
						return
					}
				}
			}()
		}
	}()
	return serverPort(b, l.Addr())
}

func benchProxy(b *testing.B, port int) string {
	cfg := testConfig(fmt.Sprintf("allowed.test:%d", port))
	cfg.MaxConns = 1 << 30
	cfg.MaxBytes = 1 << 60
	_, addr := startProxy(b, cfg)
	return addr
}

// dialThrough opens a CONNECT tunnel and returns it once the proxy answered 200.
func dialThrough(proxyAddr string, port int) (net.Conn, error) {
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c, "CONNECT allowed.test:%d HTTP/1.1\r\n\r\n", port)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 || br.Buffered() != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNECT: %v %v", resp, err)
	}
	return c, nil
}

// BenchmarkConnectLatency: per connection, dial (and CONNECT), TLS handshake, one byte there
// and back, close. /direct and /proxy run separately; /paired alternates one of each per
// iteration, so load on the machine affects both alike, and reports the ratio.
func BenchmarkConnectLatency(b *testing.B) {
	port, tcfg := tlsEchoServer(b)
	proxyAddr := benchProxy(b, port)
	directDial := func() (net.Conn, error) { return net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)) }
	proxyDial := func() (net.Conn, error) { return dialThrough(proxyAddr, port) }
	once := func(b *testing.B, dial func() (net.Conn, error)) time.Duration {
		start := time.Now()
		c, err := dial()
		if err != nil {
			b.Fatal(err)
		}
		tc := tls.Client(c, tcfg)
		if _, err := tc.Write([]byte{7}); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(tc, make([]byte, 1)); err != nil {
			b.Fatal(err)
		}
		tc.Close()
		return time.Since(start)
	}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			once(b, directDial)
		}
	})
	b.Run("proxy", func(b *testing.B) {
		for b.Loop() {
			once(b, proxyDial)
		}
	})
	b.Run("paired", func(b *testing.B) {
		var d, p time.Duration
		for b.Loop() {
			d += once(b, directDial)
			p += once(b, proxyDial)
		}
		b.ReportMetric(float64(d.Microseconds())/float64(b.N), "direct-µs/conn")
		b.ReportMetric(float64(p.Microseconds())/float64(b.N), "proxy-µs/conn")
		b.ReportMetric(float64(p)/float64(d), "proxy/direct")
	})
}

// BenchmarkTunnelThroughput: 1 MiB per round through an established tunnel, acknowledged by
// the server, against the same over a direct connection; /paired alternates the two.
func BenchmarkTunnelThroughput(b *testing.B) {
	const size = 1 << 20
	port := sinkServer(b, size)
	proxyAddr := benchProxy(b, port)
	chunk := make([]byte, size)
	ack := make([]byte, 1)
	dial := func(b *testing.B, proxied bool) net.Conn {
		if !proxied {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				b.Fatal(err)
			}
			return c
		}
		c, err := dialThrough(proxyAddr, port)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(hello([][2][]byte{sni("allowed.test")}, 0))
		return c
	}
	round := func(b *testing.B, c net.Conn) time.Duration {
		start := time.Now()
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, ack); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for _, proxied := range []bool{false, true} {
		name := map[bool]string{false: "direct", true: "proxy"}[proxied]
		b.Run(name, func(b *testing.B) {
			c := dial(b, proxied)
			defer c.Close()
			b.SetBytes(size)
			for b.Loop() {
				round(b, c)
			}
		})
	}
	b.Run("paired", func(b *testing.B) {
		dc, pc := dial(b, false), dial(b, true)
		defer dc.Close()
		defer pc.Close()
		b.SetBytes(2 * size)
		var d, p time.Duration
		for b.Loop() {
			d += round(b, dc)
			p += round(b, pc)
		}
		mb := float64(size) * float64(b.N) / 1e6
		b.ReportMetric(mb/d.Seconds(), "direct-MB/s")
		b.ReportMetric(mb/p.Seconds(), "proxy-MB/s")
		b.ReportMetric(d.Seconds()/p.Seconds(), "proxy/direct")
	})
}
