package egress

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// connect serves CONNECT host:port: a tunnel for TLS to an allowed host whose ClientHello
// names that host.
func (p *Proxy) connect(c net.Conn, br *bufio.Reader, target string, ev *Event) {
	if strings.HasPrefix(target, "/") {
		p.refuse(c, ev, &refusal{400, "bad_request", fmt.Sprintf("CONNECT %q: want CONNECT host:port", trunc(target))})
		return
	}
	host, port, err := splitHostPort(target, 0)
	if err != nil {
		ev.Host = fmt.Sprintf("%q", trunc(target))
		p.refuse(c, ev, &refusal{400, "bad_request", fmt.Sprintf("CONNECT target: %v", err)})
		return
	}
	up, ref := p.admit(host, port, ev)
	if ref != nil {
		p.refuse(c, ev, ref)
		return
	}
	defer p.finish(up, ev)
	hp := hostPort(ev.Host, port)

	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		p.refuse(c, ev, &refusal{0, "upstream_error", fmt.Sprintf("tunnel to %s: the client went away: %v", hp, err)})
		return
	}
	c.SetWriteDeadline(time.Time{})

	// Nothing is relayed until the ClientHello is judged: a tunnel carries TLS for the host it
	// named, or nothing.
	c.SetReadDeadline(time.Now().Add(headTimeout))
	raw, hello, err := readClientHello(br)
	c.SetReadDeadline(time.Time{})
	if err != nil && p.ctx.Err() != nil {
		p.refuse(c, ev, &refusal{0, "closed", fmt.Sprintf("the tunnel to %s was cut because the call ended", hp)})
		return
	}
	if r := judgeHello(ev.Host, hp, hello, err); r != nil {
		ev.Allowed = false
		p.refuse(c, ev, r)
		return
	}
	if _, err := up.Write(raw); err != nil {
		p.endTunnel(ev, up, hp, err)
		return
	}
	p.endTunnel(ev, up, hp, relay(c, br, up))
}

// judgeHello refuses a tunnel whose first bytes are not a ClientHello for host.
func judgeHello(host, hp string, h clientHello, err error) *refusal {
	switch {
	case errors.Is(err, errNotTLS):
		return &refusal{0, "not_tls", fmt.Sprintf("the tunnel to %s does not start with a TLS ClientHello (%v); CONNECT carries TLS only: send plain http:// requests to the proxy as absolute-URI requests", hp, err)}
	case err != nil:
		return &refusal{0, "bad_hello", fmt.Sprintf("the tunnel to %s: %v; a CONNECT tunnel must start with one well-formed TLS ClientHello", hp, err)}
	case h.ech:
		// With ECH the visible server name is the provider's public name and the real one is
		// encrypted: exactly the fronting this check exists to stop.
		return &refusal{0, "ech", fmt.Sprintf("the ClientHello for %s uses Encrypted Client Hello, which hides the real server name; turn ECH off in the client", hp)}
	case h.serverName == "":
		return &refusal{0, "no_sni", fmt.Sprintf("the ClientHello for %s carries no server name (SNI), so the tunnel cannot be checked against the host it named; connect by host name, not by address", hp)}
	}
	sni, err := canonicalHost(h.serverName)
	if err != nil || sni != host {
		return &refusal{0, "sni_mismatch", fmt.Sprintf("the TLS server name %q does not match the CONNECT host %s; a tunnel carries TLS for the host it named only (another name on the same server is domain fronting); CONNECT to %q itself if it should be reachable, and the operator can allow it in the profile's network.allow",
			h.serverName, hp, h.serverName)}
	}
	return nil
}

// relay copies both ways until both directions end or one fails, then closes both sides. A
// clean end of one direction is passed on as a half-close so request/response protocols
// finish.
func relay(client net.Conn, clientR io.Reader, up *meteredConn) error {
	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(up, clientR)
		if err == nil {
			closeWrite(up)
		}
		errc <- err
	}()
	go func() {
		_, err := io.Copy(client, up)
		if err == nil {
			closeWrite(client)
		}
		errc <- err
	}()
	err := <-errc
	if err != nil {
		// One side failed (the byte cap, a reset, Close): stop the other at once.
		client.Close()
		up.Conn.Close()
	}
	err2 := <-errc
	client.Close()
	if err == nil {
		err = err2
	}
	return err
}

// endTunnel records how an established tunnel ended.
func (p *Proxy) endTunnel(ev *Event, up *meteredConn, hp string, err error) {
	switch {
	case up.capped.Load():
		p.refuse(nil, ev, &refusal{0, "byte_cap", fmt.Sprintf("the tunnel to %s was cut: this call has moved all %d bytes of its egress budget; the operator can raise the call's egress byte cap", hp, p.cfg.MaxBytes)})
	case p.ctx.Err() != nil:
		p.refuse(nil, ev, &refusal{0, "closed", fmt.Sprintf("the tunnel to %s was cut because the call ended", hp)})
	case err != nil && !isClosedErr(err):
		ev.Code, ev.Reason = "upstream_error", fmt.Sprintf("the tunnel to %s ended with an error: %v", hp, err)
	}
}

// isClosedErr is true for the ordinary ways a relayed connection ends.
func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset by peer") || strings.Contains(err.Error(), "broken pipe")
}
