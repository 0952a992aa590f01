package egress

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// hello builds a ClientHello record (or records, split at splitAt bytes of handshake data)
// with the given extensions.
func hello(exts [][2][]byte, splitAt int) []byte {
	var body []byte
	body = append(body, 3, 3)
	body = append(body, make([]byte, 32)...)
	body = append(body, 0)                // session id
	body = append(body, 0, 2, 0x13, 0x01) // cipher suites
	body = append(body, 1, 0)             // compression
	if exts != nil {
		var e []byte
		for _, x := range exts {
			e = binary.BigEndian.AppendUint16(e, binary.BigEndian.Uint16(x[0]))
			e = binary.BigEndian.AppendUint16(e, uint16(len(x[1])))
			e = append(e, x[1]...)
		}
		body = binary.BigEndian.AppendUint16(body, uint16(len(e)))
		body = append(body, e...)
	}
	hs := []byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	hs = append(hs, body...)
	if splitAt <= 0 || splitAt >= len(hs) {
		splitAt = len(hs)
	}
	var out []byte
	for len(hs) > 0 {
		n := min(splitAt, len(hs))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	return out
}

func sni(names ...string) [2][]byte {
	var list []byte
	for _, n := range names {
		list = append(list, 0)
		list = binary.BigEndian.AppendUint16(list, uint16(len(n)))
		list = append(list, n...)
	}
	data := binary.BigEndian.AppendUint16(nil, uint16(len(list)))
	return [2][]byte{{0, 0}, append(data, list...)}
}

func ext(typ uint16, data string) [2][]byte {
	return [2][]byte{binary.BigEndian.AppendUint16(nil, typ), []byte(data)}
}

func TestReadClientHello(t *testing.T) {
	// One record holding the hello and then a stray handshake byte.
	rec := append(hello([][2][]byte{sni("allowed.test")}, 0)[5:], 0)
	stray := append([]byte{22, 3, 1, byte(len(rec) >> 8), byte(len(rec))}, rec...)
	for _, tc := range []struct {
		name  string
		in    []byte
		sni   string
		ech   bool
		err   string // substring; "" means no error
		notTL bool
	}{
		{name: "sni", in: hello([][2][]byte{sni("allowed.test")}, 0), sni: "allowed.test"},
		{name: "fragmented over records", in: hello([][2][]byte{ext(0x000a, "abcd"), sni("allowed.test")}, 7), sni: "allowed.test"},
		{name: "no extensions", in: hello(nil, 0)},
		{name: "other extensions only", in: hello([][2][]byte{ext(0x000a, "xy")}, 0)},
		{name: "ech", in: hello([][2][]byte{sni("public.example"), ext(extECH, "opaque")}, 0), sni: "public.example", ech: true},
		{name: "two server_name extensions", in: hello([][2][]byte{sni("allowed.test"), sni("evil.test")}, 0), err: "repeats extension"},
		{name: "two host names", in: hello([][2][]byte{sni("allowed.test", "evil.test")}, 0), err: "two hosts"},
		{name: "empty host name", in: hello([][2][]byte{sni("")}, 0), err: "empty"},
		{name: "non-ASCII host name", in: hello([][2][]byte{sni("allowed.test\x00.evil")}, 0), err: "not an ASCII host name"},
		{name: "truncated server_name", in: hello([][2][]byte{{{0, 0}, {0, 9, 0}}}, 0), err: "malformed server_name"},
		{name: "plain HTTP", in: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), notTL: true, err: "not a TLS"},
		{name: "SSH banner", in: []byte("SSH-2.0-OpenSSH_9.6\r\n"), notTL: true, err: "not a TLS"},
		{name: "SSLv2 hello", in: []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0, 0}, notTL: true, err: "not a TLS"},
		{name: "too short", in: []byte{22, 3}, notTL: true, err: "not a TLS"},
		{name: "alert record", in: []byte{21, 3, 3, 0, 2, 2, 40}, notTL: true, err: "not a TLS"},
		{name: "not a ClientHello", in: []byte{22, 3, 3, 0, 4, 2, 0, 0, 0}, err: "not a ClientHello"},
		{name: "oversized record", in: []byte{22, 3, 3, 0x48, 0x01}, err: "record length"},
		{name: "empty record", in: []byte{22, 3, 3, 0, 0}, err: "record length"},
		{name: "huge hello", in: []byte{22, 3, 3, 0, 4, 1, 0xff, 0xff, 0xff}, err: "longer than"},
		{name: "truncated stream", in: hello([][2][]byte{sni("allowed.test")}, 0)[:20], err: "reading the ClientHello"},
		{name: "data after hello", in: stray, err: "follows the ClientHello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, h, err := readClientHello(bytes.NewReader(tc.in))
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if errors.Is(err, errNotTLS) != tc.notTL {
				t.Errorf("errNotTLS=%v, want %v", errors.Is(err, errNotTLS), tc.notTL)
			}
			if err != nil {
				return
			}
			if h.serverName != tc.sni || h.ech != tc.ech {
				t.Errorf("got sni %q ech %v, want %q %v", h.serverName, h.ech, tc.sni, tc.ech)
			}
			if !bytes.Equal(raw, tc.in) {
				t.Errorf("raw bytes differ from input: %d vs %d", len(raw), len(tc.in))
			}
		})
	}
}

// crypto/tls's own ClientHellos parse, with and without a server name.
func TestReadClientHelloFromCryptoTLS(t *testing.T) {
	raw := clientHelloBytes(t, &tls.Config{ServerName: "Allowed.Test"})
	_, h, err := readClientHello(bytes.NewReader(raw))
	if err != nil || !strings.EqualFold(h.serverName, "allowed.test") {
		t.Fatalf("got %q, %v", h.serverName, err)
	}
	raw = clientHelloBytes(t, &tls.Config{InsecureSkipVerify: true})
	_, h, err = readClientHello(bytes.NewReader(raw))
	if err != nil || h.serverName != "" {
		t.Fatalf("no ServerName: got %q, %v", h.serverName, err)
	}
}

func FuzzReadClientHello(f *testing.F) {
	f.Add(hello([][2][]byte{sni("allowed.test")}, 0))
	f.Add(hello([][2][]byte{sni("allowed.test"), ext(extECH, "x")}, 3))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		raw, h, err := readClientHello(bytes.NewReader(b))
		if len(raw) > len(b) {
			t.Fatalf("returned %d raw bytes from %d", len(raw), len(b))
		}
		if err == nil && h.serverName != "" {
			if _, err := canonicalHost(h.serverName); err != nil && !errors.Is(err, errIPLiteral) {
				_ = err // an odd name is judged later, by judgeHello
			}
		}
	})
}
