package egress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// refusal is an answer the proxy gives instead of forwarding.
type refusal struct {
	status int    // HTTP status for the client; 0 once the tunnel is established
	code   string // Event.Code
	msg    string // Event.Reason and the response body
}

func (r *refusal) Error() string { return r.msg }

// errEmptyConn: the client closed its connection without sending a byte.
var errEmptyConn = errors.New("the connection closed before a request")

// handle serves one client connection: one request, then close. A connection closed before
// its first byte asked for nothing, so nothing was refused: it counts against MaxConns but
// records no Event (a refusal would tell the agent, and the audit record, of a destination
// nobody named).
func (p *Proxy) handle(c net.Conn, overCap bool) {
	ev := Event{Start: time.Now()}
	empty := false
	defer func() {
		if empty {
			c.Close()
			return
		}
		ev.End = time.Now()
		p.emit(ev)
	}()
	timeout := headTimeout
	if overCap {
		timeout = overCapTimeout
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	br := bufio.NewReaderSize(c, 16<<10)
	head, err := readHead(br)
	if err != nil && p.ctx.Err() != nil {
		ev.Kind = "http"
		p.refuse(c, &ev, &refusal{0, "closed", "the connection was cut before a request because the call ended"})
		return
	}
	if errors.Is(err, errEmptyConn) {
		empty = true
		return
	}
	if err != nil {
		ev.Kind = "http"
		p.refuse(c, &ev, &refusal{400, "bad_request", fmt.Sprintf("no proxy request read: %v; send CONNECT host:port or an absolute-URI HTTP request", err)})
		return
	}
	method, target, hostHdrs, err := parseHead(head)
	ev.Kind = "http"
	if method == "CONNECT" {
		ev.Kind = "connect"
	}
	if err != nil {
		p.refuse(c, &ev, &refusal{400, "bad_request", err.Error()})
		return
	}
	if overCap {
		ev.Host, ev.Port = describeTarget(method, target, hostHdrs)
		p.refuse(c, &ev, &refusal{403, "conn_cap", fmt.Sprintf("%s refused: this call has used all %d of its egress connections; reuse connections (keep-alive, one client), or the operator can raise the call's egress connection cap",
			hostPort(ev.Host, ev.Port), p.cfg.MaxConns)})
		return
	}
	c.SetReadDeadline(time.Time{})
	if method == "CONNECT" {
		p.connect(c, br, target, &ev)
		return
	}
	p.forward(c, br, head, target, hostHdrs, &ev)
}

// refuse records r in ev and, if the client can still read an HTTP answer, sends it.
func (p *Proxy) refuse(c net.Conn, ev *Event, r *refusal) {
	switch r.code {
	case "resolve_failed", "dial_failed", "byte_cap", "upstream_error", "closed":
		// Not a policy decision: the destination stays as admitted.
	default:
		ev.Allowed = false
	}
	ev.Code, ev.Reason = r.code, r.msg
	if r.status == 0 {
		return
	}
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	writeRefusal(c, r)
}

// writeRefusal sends the refusal as a complete HTTP response that closes the connection.
func writeRefusal(w io.Writer, r *refusal) {
	msg := oneLine(r.msg)
	body := "airlock egress proxy: " + msg + "\n"
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nX-Airlock-Egress: %s; %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		r.status, statusText(r.status), r.code, msg, len(body), body)
}

func statusText(s int) string {
	switch s {
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 502:
		return "Bad Gateway"
	}
	return "Error"
}

// oneLine keeps a message to one printable line: a client-supplied byte must not be able to
// end the header early and inject another one.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// readHead reads a request head, up to and including the blank line, at most maxHeadBytes.
// Lines end in "\n" or "\r\n", as net/textproto reads them.
func readHead(br *bufio.Reader) ([]byte, error) {
	var head []byte
	for {
		line, err := br.ReadSlice('\n')
		head = append(head, line...)
		if len(head) > maxHeadBytes {
			return nil, fmt.Errorf("request head longer than %d bytes", maxHeadBytes)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if len(head) == 0 && errors.Is(err, io.EOF) {
				return nil, errEmptyConn
			}
			return nil, fmt.Errorf("reading the request head: %v", err)
		}
		if len(line) <= 2 && strings.TrimRight(string(line), "\r\n") == "" && len(head) > len(line) {
			return head, nil
		}
	}
}

// parseHead returns the method, the request target and every Host header. net/http drops
// the Host header of an absolute-form request, and the proxy must compare it.
func parseHead(head []byte) (method, target string, hosts []string, err error) {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(head)))
	line, err := tp.ReadLine()
	if err != nil {
		return "", "", nil, fmt.Errorf("malformed request line: %v", err)
	}
	parts := strings.Split(line, " ")
	if len(parts) != 3 || !strings.HasPrefix(parts[2], "HTTP/1.") || parts[0] == "" || parts[1] == "" {
		return "", "", nil, fmt.Errorf("malformed request line %q; want CONNECT host:port HTTP/1.1, or METHOD http://host/path HTTP/1.1", trunc(line))
	}
	method, target = parts[0], parts[1]
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		return method, target, nil, fmt.Errorf("malformed request headers: %v", err)
	}
	hosts = hdr.Values("Host")
	if len(hosts) > 1 {
		return method, target, nil, errors.New("more than one Host header")
	}
	return method, target, hosts, nil
}

// describeTarget names a request's destination for an event without judging it.
func describeTarget(method, target string, hosts []string) (string, int) {
	def := 80
	if method == "CONNECT" {
		def = 0
	}
	hp := target
	if method != "CONNECT" {
		if u, ok := strings.CutPrefix(target, "http://"); ok {
			hp, _, _ = strings.Cut(u, "/")
		} else if len(hosts) == 1 {
			hp = hosts[0]
		}
	}
	h, port, err := splitHostPort(hp, def)
	if err != nil {
		return strconv.Quote(trunc(hp)), 0
	}
	if n, err := canonicalHost(h); err == nil {
		return n, port
	}
	return strconv.Quote(trunc(h)), port
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// admit decides whether host:port may be reached and, if so, connects to it. host comes from
// the client; on success ev carries the canonical host and the address connected to.
func (p *Proxy) admit(host string, port int, ev *Event) (*meteredConn, *refusal) {
	ev.Port = port
	name, err := canonicalHost(host)
	if errors.Is(err, errIPLiteral) {
		ev.Host = strconv.Quote(trunc(host))
		return nil, &refusal{403, "ip_literal", fmt.Sprintf("%s is an IP address; the egress proxy reaches named hosts only, because an address skips every name check and could point anywhere; use the host's name (the operator can name an internal address in egress.hosts and allow that name in the profile's network.allow)",
			hostPort(host, port))}
	}
	if err != nil {
		ev.Host = strconv.Quote(trunc(host))
		return nil, &refusal{400, "bad_request", fmt.Sprintf("bad host: %v", err)}
	}
	ev.Host = name
	hp := hostPort(name, port)
	if !p.allow.match(name, port) {
		return nil, &refusal{403, "not_allowed", fmt.Sprintf("%s is not on this tool's network allowlist; the operator can allow it by adding %q to the profile's network.allow",
			hp, suggestion(name, port))}
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.DialTimeout)
	defer cancel()
	addrs, err := p.resolve(ctx, name)
	if err != nil {
		return nil, &refusal{502, "resolve_failed", fmt.Sprintf("could not resolve %s: %v", name, err)}
	}
	if len(addrs) == 0 {
		return nil, &refusal{502, "resolve_failed", fmt.Sprintf("could not resolve %s: no addresses", name)}
	}
	// Every answer is checked, not only the one dialled: a name that resolves to a public
	// and a private address is a DNS-rebinding setup, whichever the client would get.
	for _, a := range addrs {
		if w := classify(a); w != "" && !privateAllowed(a, p.allowPrivate) {
			return nil, &refusal{403, "private_address", fmt.Sprintf("%s resolves to %s, %s; the egress proxy refuses private and special-purpose addresses so a sandbox cannot reach internal services or cloud metadata; the operator can allow the range in egress.allow_private",
				hp, a, w)}
		}
	}
	ev.Allowed = true
	// The name was resolved once, here; the connection goes to that address, so nothing can
	// answer differently between the check and the dial.
	var d net.Dialer
	var lastErr error
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a.Unmap(), uint16(port)).String()
		c, err := d.DialContext(ctx, "tcp", ap)
		if err != nil {
			lastErr = err
			ev.Addr = ap
			continue
		}
		if !p.track(c, false) {
			c.Close()
			return nil, &refusal{502, "closed", "the egress proxy is shutting down"}
		}
		ev.Addr = ap
		return &meteredConn{Conn: c, budget: &p.budget}, nil
	}
	return nil, &refusal{502, "dial_failed", fmt.Sprintf("could not connect to %s (%s): %v", hp, ev.Addr, lastErr)}
}

func (p *Proxy) resolve(ctx context.Context, name string) ([]netip.Addr, error) {
	if addrs, ok := p.hosts[name]; ok {
		return addrs, nil
	}
	if p.cfg.Resolver != nil {
		return p.cfg.Resolver(ctx, name)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", name)
}

// finish fills an event's byte counts from the upstream connection and closes it.
func (p *Proxy) finish(up *meteredConn, ev *Event) {
	ev.BytesSent, ev.BytesReceived = up.sent.Load(), up.received.Load()
	p.untrack(up.Conn)
}
