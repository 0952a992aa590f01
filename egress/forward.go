package egress

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"
)

// forward serves one plain HTTP proxy request: absolute form ("GET http://host/path"), or
// origin form with a Host header. The request goes upstream in origin form with the
// canonical Host; the connection closes after the response.
func (p *Proxy) forward(c net.Conn, br *bufio.Reader, head []byte, target string, hostHdrs []string, ev *Event) {
	req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(bytes.NewReader(head), br)))
	if err != nil {
		p.refuse(c, ev, &refusal{400, "bad_request", fmt.Sprintf("malformed HTTP request: %v", err)})
		return
	}
	defer req.Body.Close()
	host, port, r := requestTarget(req, target, hostHdrs)
	if r != nil {
		ev.Host, ev.Port = describeTarget(req.Method, target, hostHdrs)
		p.refuse(c, ev, r)
		return
	}
	up, r := p.admit(host, port, ev)
	if r != nil {
		p.refuse(c, ev, r)
		return
	}
	defer p.finish(up, ev)
	hp := hostPort(ev.Host, port)

	out := &http.Request{
		Method:     req.Method,
		URL:        &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     req.Header.Clone(),
		Body:       req.Body,
		Host:       hp,
		Close:      true,
		// Framing comes from the parsed request, never from its headers, so a request with
		// both Content-Length and Transfer-Encoding cannot be read two ways.
		ContentLength:    req.ContentLength,
		TransferEncoding: req.TransferEncoding,
	}
	if port == 80 {
		out.Host = ev.Host
	}
	stripHopByHop(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // send none rather than Go's default
	}
	if strings.EqualFold(out.Header.Get("Expect"), "100-continue") {
		// Answer the client's Expect here: upstream gets the body at once.
		out.Header.Del("Expect")
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		c.SetWriteDeadline(time.Time{})
	}
	if err := out.Write(up); err != nil {
		p.httpFailed(c, ev, up, hp, true, fmt.Errorf("sending the request: %w", err))
		return
	}
	// A response head is bounded like a request head; its body only by the byte cap.
	lr := &io.LimitedReader{R: up, N: 1 << 20}
	upr := bufio.NewReader(lr)
	var resp *http.Response
	for {
		resp, err = http.ReadResponse(upr, out)
		if err != nil {
			p.httpFailed(c, ev, up, hp, true, fmt.Errorf("reading the response: %w", err))
			return
		}
		if resp.StatusCode >= 200 || resp.StatusCode == 101 {
			break
		}
		// An interim response (103 Early Hints): pass it on and read the final one.
		stripHopByHop(resp.Header)
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		fmt.Fprintf(c, "HTTP/1.1 %s\r\n", resp.Status)
		resp.Header.Write(c)
		io.WriteString(c, "\r\n")
		c.SetWriteDeadline(time.Time{})
	}
	lr.N = math.MaxInt64
	defer resp.Body.Close()
	if resp.StatusCode == 101 {
		// The request carried no Upgrade (it is hop-by-hop and was stripped), so a switch of
		// protocols is not something to relay.
		p.httpFailed(c, ev, up, hp, true, fmt.Errorf("the server switched protocols (101) though no upgrade was asked for"))
		return
	}
	stripHopByHop(resp.Header)
	resp.Close = true
	resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	if err := resp.Write(c); err != nil {
		p.httpFailed(c, ev, up, hp, false, fmt.Errorf("relaying the response: %w", err))
	}
}

// httpFailed records a failure after the request was admitted and, if the client has seen no
// response yet, answers it.
func (p *Proxy) httpFailed(c net.Conn, ev *Event, up *meteredConn, hp string, canAnswer bool, err error) {
	status := 502
	if !canAnswer {
		status = 0
	}
	switch {
	case up.capped.Load():
		p.refuse(c, ev, &refusal{status, "byte_cap", fmt.Sprintf("the request to %s was cut: this call has moved all %d bytes of its egress budget; the operator can raise the call's egress byte cap", hp, p.cfg.MaxBytes)})
	case p.ctx.Err() != nil:
		p.refuse(c, ev, &refusal{status, "closed", fmt.Sprintf("the request to %s was cut because the call ended", hp)})
	default:
		p.refuse(c, ev, &refusal{status, "upstream_error", fmt.Sprintf("%s: %v", hp, err)})
	}
}

// requestTarget finds where a plain HTTP request goes. When it names its host twice (an
// absolute URI and a Host header) both must agree: a server that routes by the Host header
// would otherwise receive a request the allowlist checked under another name.
func requestTarget(req *http.Request, target string, hostHdrs []string) (string, int, *refusal) {
	bad := func(format string, a ...any) (string, int, *refusal) {
		return "", 0, &refusal{400, "bad_request", fmt.Sprintf(format, a...)}
	}
	var hostport string
	switch {
	case req.URL.IsAbs():
		if !strings.EqualFold(req.URL.Scheme, "http") {
			if strings.EqualFold(req.URL.Scheme, "https") {
				return bad("%s: https goes through a CONNECT tunnel (set HTTPS_PROXY), not a plain proxy request", trunc(target))
			}
			return bad("scheme %q: the egress proxy forwards http:// requests and CONNECT tunnels only", req.URL.Scheme)
		}
		if req.URL.User != nil {
			return bad("the request URL carries userinfo; send credentials in an Authorization header")
		}
		if req.URL.Host == "" {
			return bad("the request URL %q has no host", trunc(target))
		}
		hostport = req.URL.Host
	case strings.HasPrefix(target, "/"):
		if len(hostHdrs) != 1 || hostHdrs[0] == "" {
			return bad("an origin-form request (%q) needs one Host header naming its destination", trunc(target))
		}
		hostport = hostHdrs[0]
	default:
		return bad("request target %q: want an absolute http:// URL, or a path with a Host header", trunc(target))
	}
	host, port, err := splitHostPort(hostport, 80)
	if err != nil {
		return bad("request host %q: %v", trunc(hostport), err)
	}
	if _, err := canonicalHost(host); errors.Is(err, errIPLiteral) {
		// Refused as what it is (ip_literal) by the allowlist check, whatever the Host header.
		return host, port, nil
	}
	if len(hostHdrs) == 1 && req.URL.IsAbs() {
		hh, hport, herr := splitHostPort(hostHdrs[0], 80)
		a, aerr := canonicalHost(host)
		b, berr := canonicalHost(hh)
		if herr != nil || aerr != nil || berr != nil || a != b || port != hport {
			return "", 0, &refusal{403, "host_mismatch", fmt.Sprintf("the Host header %q does not name the request target %s; a request names one destination (a second name is how a request is fronted to a host nobody allowed)",
				trunc(hostHdrs[0]), hostPort(host, port))}
		}
	}
	return host, port, nil
}

// stripHopByHop removes the headers that describe one connection, not the message (RFC 9110
// §7.6.1), and every Proxy-* header: credentials and settings meant for a proxy are not the
// destination's business.
func stripHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		delete(h, k)
	}
	for k := range h {
		if strings.HasPrefix(textproto.CanonicalMIMEHeaderKey(k), "Proxy-") {
			delete(h, k)
		}
	}
}
