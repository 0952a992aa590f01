package egress

import (
	"errors"
	"fmt"
	"io"
)

// The first thing a client sends through a CONNECT tunnel must be a TLS ClientHello whose
// server name (SNI) is the host it CONNECTed to. Without this check a tunnel opened to an
// allowed host could carry TLS for another name served from the same address (domain
// fronting through a shared CDN or load balancer), or carry any protocol at all.

const (
	maxHelloBytes  = 64 << 10 // the whole ClientHello, records included
	maxRecordBytes = 1 << 14  // TLSPlaintext.length limit (RFC 8446 §5.1)

	extServerName = 0x0000
	extECH        = 0xfe0d // encrypted_client_hello
)

// clientHello is what the proxy needs from a ClientHello.
type clientHello struct {
	serverName string // the host_name entry of server_name; "" if absent
	ech        bool   // an encrypted_client_hello extension is present
}

// errNotTLS means the tunnel's first bytes are not a TLS handshake record.
var errNotTLS = errors.New("not a TLS handshake")

// readClientHello reads TLS records from r until it holds one whole ClientHello, and returns
// every byte it read (to forward unchanged once the hello is judged) with the parsed hello.
// It never reads past the record that completes the hello.
func readClientHello(r io.Reader) ([]byte, clientHello, error) {
	var raw, hs []byte
	for {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(r, hdr); err != nil {
			if len(raw) == 0 && errors.Is(err, io.ErrUnexpectedEOF) {
				return append(raw, hdr...), clientHello{}, fmt.Errorf("%w (first bytes %q)", errNotTLS, hdr)
			}
			return raw, clientHello{}, fmt.Errorf("reading the ClientHello: %w", err)
		}
		raw = append(raw, hdr...)
		if hdr[0] != 22 || hdr[1] != 3 {
			if len(raw) == 5 {
				return raw, clientHello{}, fmt.Errorf("%w (first bytes %q)", errNotTLS, hdr)
			}
			return raw, clientHello{}, fmt.Errorf("a record of type %d interrupts the ClientHello", hdr[0])
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if n == 0 || n > maxRecordBytes {
			return raw, clientHello{}, fmt.Errorf("malformed TLS record length %d", n)
		}
		if len(raw)+n > maxHelloBytes {
			return raw, clientHello{}, fmt.Errorf("ClientHello longer than %d bytes", maxHelloBytes)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return raw, clientHello{}, fmt.Errorf("reading the ClientHello: %w", err)
		}
		raw = append(raw, body...)
		hs = append(hs, body...)
		if len(hs) < 4 {
			continue
		}
		if hs[0] != 1 {
			return raw, clientHello{}, fmt.Errorf("the first handshake message is type %d, not a ClientHello", hs[0])
		}
		m := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
		if m > maxHelloBytes {
			return raw, clientHello{}, fmt.Errorf("ClientHello longer than %d bytes", maxHelloBytes)
		}
		if len(hs) < 4+m {
			continue
		}
		if len(hs) > 4+m {
			// A client sends nothing after its ClientHello until the server answers; bytes
			// here would be forwarded unjudged.
			return raw, clientHello{}, errors.New("handshake data follows the ClientHello in the same record")
		}
		h, err := parseClientHello(hs[4:])
		return raw, h, err
	}
}

// helloReader reads the big-endian, length-prefixed fields of a ClientHello.
type helloReader struct {
	b   []byte
	bad bool
}

func (r *helloReader) bytes(n int) []byte {
	if r.bad || n > len(r.b) {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *helloReader) uint(n int) int {
	v := 0
	for _, c := range r.bytes(n) {
		v = v<<8 | int(c)
	}
	return v
}

// vector reads a field preceded by an n-byte length.
func (r *helloReader) vector(n int) []byte { return r.bytes(r.uint(n)) }

// parseClientHello parses a ClientHello body (RFC 8446 §4.1.2; TLS 1.0-1.2 have the same
// layout). Ambiguity is an error: a duplicated extension or two host names could be read one
// way here and another way by the server.
func parseClientHello(b []byte) (clientHello, error) {
	malformed := errors.New("malformed ClientHello")
	r := &helloReader{b: b}
	r.bytes(2)  // legacy_version
	r.bytes(32) // random
	if sid := r.vector(1); len(sid) > 32 {
		return clientHello{}, malformed
	}
	if cs := r.vector(2); len(cs) == 0 || len(cs)%2 != 0 {
		return clientHello{}, malformed
	}
	if len(r.vector(1)) == 0 { // compression methods
		return clientHello{}, malformed
	}
	if r.bad {
		return clientHello{}, malformed
	}
	var h clientHello
	if len(r.b) == 0 {
		return h, nil // no extensions: no SNI
	}
	exts := &helloReader{b: r.vector(2)}
	if r.bad || len(r.b) != 0 {
		return clientHello{}, malformed
	}
	seen := map[int]bool{}
	for len(exts.b) > 0 {
		typ := exts.uint(2)
		data := exts.vector(2)
		if exts.bad {
			return clientHello{}, malformed
		}
		if seen[typ] {
			return clientHello{}, fmt.Errorf("ClientHello repeats extension %#04x", typ)
		}
		seen[typ] = true
		switch typ {
		case extServerName:
			name, err := parseServerName(data)
			if err != nil {
				return clientHello{}, err
			}
			h.serverName = name
		case extECH:
			h.ech = true
		}
	}
	return h, nil
}

// parseServerName reads the server_name extension (RFC 6066 §3) and returns its host_name.
func parseServerName(data []byte) (string, error) {
	r := &helloReader{b: data}
	list := &helloReader{b: r.vector(2)}
	if r.bad || len(r.b) != 0 || len(list.b) == 0 {
		return "", errors.New("malformed server_name extension")
	}
	name := ""
	for len(list.b) > 0 {
		typ := list.uint(1)
		v := list.vector(2)
		if list.bad {
			return "", errors.New("malformed server_name extension")
		}
		if typ != 0 {
			continue
		}
		if name != "" {
			return "", errors.New("server_name extension names two hosts")
		}
		if len(v) == 0 || len(v) > 255 {
			return "", errors.New("server_name host_name is empty or longer than 255 bytes")
		}
		for _, c := range v {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				return "", fmt.Errorf("server_name %q is not an ASCII host name", v)
			}
		}
		name = string(v)
	}
	return name, nil
}
