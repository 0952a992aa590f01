package integration

// The egress allowlist as an agent and an operator meet it: a real `airlock serve`, driven by
// the Go SDK's MCP client, runs http_fetch and configured tools under profiles whose
// network.allow names hosts. Servers on the host's loopback stand in for the internet; they are
// reached by name through egress.hosts and egress.allow_private, as an operator would reach an
// internal registry. Each case checks both sides: what the agent was told (result, structured
// egress, refusal note), and what the host saw (the call's audit record, and each server's own
// log of connections, TLS hellos and requests: a refused request must never arrive).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// egtServer is a server on 127.0.0.1 (plain HTTP, or HTTPS with a certificate of the test's
// CA) that logs everything that reaches it.
type egtServer struct {
	port     int
	mu       sync.Mutex
	conns    int      // TCP connections accepted
	hellos   []string // the server name of every TLS ClientHello read
	requests []string // "METHOD HOST PATH" of every request served
}

// startEgtServer serves handle on a free port of 127.0.0.1 until the test ends; with cert, as
// HTTPS.
func startEgtServer(t *testing.T, handle http.HandlerFunc, cert *tls.Certificate) *egtServer {
	t.Helper()
	s := &egtServer{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.Host+" "+r.URL.Path)
		s.mu.Unlock()
		handle(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	// A refused tunnel ends in a handshake error here, which is the point, not news.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if cert != nil {
		srv.TLS = &tls.Config{
			Certificates: []tls.Certificate{*cert},
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				s.mu.Lock()
				s.hellos = append(s.hellos, h.ServerName)
				s.mu.Unlock()
				return nil, nil
			},
		}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	s.port = srv.Listener.Addr().(*net.TCPAddr).Port
	return s
}

// seen returns copies of what has reached the server so far.
func (s *egtServer) seen() (conns int, hellos, requests []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, slices.Clone(s.hellos), slices.Clone(s.requests)
}

// egtCA is a throwaway certificate authority: its certificate in dir/ca.pem (dir is 0755 so
// the sandbox's uid 65534 can read it through a mount) and a server certificate it signed.
func egtCA(t *testing.T, names ...string) (dir string, server tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "airlock egress test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	escChmod(t, dir, 0o755)
	escWriteFile(t, filepath.Join(dir, "ca.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), 0o644)
	return dir, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
}

// egtCall is one tool call as both sides saw it.
type egtCall struct {
	res  *mcp.CallToolResult
	text string
	st   map[string]any // structuredContent
	rec  mcpAuditRecord // the call's closing audit record
}

// egtWant is one connection a call's egress record must show.
type egtWant struct {
	host    string
	port    int
	allowed bool
	code    string // "" for a connection that went through
}

// egtCaller calls tools on one session and finds each call's audit record.
type egtCaller struct {
	cs    *mcp.ClientSession
	audit string
}

func (c egtCaller) call(t *testing.T, tool string, args map[string]any) egtCall {
	t.Helper()
	start := time.Now()
	res := gatewayCall(t, c.cs, tool, args)
	out := egtCall{res: res, text: mcpText(res), st: mcpStructured(t, res)}
	id, _ := out.st["audit_id"].(string)
	if id == "" {
		t.Fatalf("%s: no audit_id in structuredContent %v", tool, out.st)
	}
	found := false
	for _, r := range readAudit(t, c.audit) {
		if r.AuditID == id {
			out.rec, found = r, true
		}
	}
	if !found {
		t.Fatalf("%s: no closing audit record %s in %s", tool, id, c.audit)
	}
	t.Logf("%s %v: %s, is_error %v, egress %+v", tool, args, time.Since(start).Round(time.Millisecond), res.IsError, out.rec.Egress)
	return out
}

// wantEgress checks the call's connections in the audit record and in the structured egress
// the agent gets: host, port, verdict and code, and bytes moved by every connection that went
// through and by none that was refused. Each wanted connection must be there exactly once, in
// any order: the proxy records a connection when it ends, so one a client keeps alive (the
// first hop of a redirect) can come after one opened later.
func (c egtCall) wantEgress(t *testing.T, want ...egtWant) {
	t.Helper()
	got := c.rec.Egress
	if len(got) != len(want) || c.rec.EgressCount != len(want) {
		t.Errorf("audit record: egress_count %d, egress %+v; want %d connections %+v", c.rec.EgressCount, got, len(want), want)
		return
	}
	st, _ := c.st["egress"].([]any)
	if len(st) != len(want) {
		t.Errorf("structuredContent egress %v; want %d connections", c.st["egress"], len(want))
		return
	}
	taken := make([]bool, len(got))
	for _, w := range want {
		i := -1
		for k, g := range got {
			if !taken[k] && g.Host == w.host && g.Port == w.port && g.Allowed == w.allowed && g.Code == w.code {
				i = k
				break
			}
		}
		if i < 0 {
			t.Errorf("audit record egress %+v lacks %+v", got, w)
			continue
		}
		taken[i] = true
		c.wantEgressAt(t, i, w)
	}
}

// wantEgressAt checks the call's i-th connection (which must exist) against w.
func (c egtCall) wantEgressAt(t *testing.T, i int, w egtWant) {
	t.Helper()
	g := c.rec.Egress[i]
	if g.Host != w.host || g.Port != w.port || g.Allowed != w.allowed || g.Code != w.code {
		t.Errorf("audit record egress[%d] = %+v; want %+v", i, g, w)
	}
	if w.allowed && (g.BytesSent == 0 || g.BytesReceived == 0) {
		t.Errorf("audit record egress[%d] = %+v: an allowed connection that moved no bytes", i, g)
	}
	if !w.allowed && g.BytesSent+g.BytesReceived != 0 {
		t.Errorf("audit record egress[%d] = %+v: a refused connection moved bytes to or from its destination", i, g)
	}
	st, _ := c.st["egress"].([]any)
	if i >= len(st) {
		t.Errorf("structuredContent egress %v lacks connection %d", c.st["egress"], i)
		return
	}
	s, _ := st[i].(map[string]any)
	code, _ := s["code"].(string)
	bytes, _ := s["bytes"].(float64)
	if s["host"] != w.host || s["port"] != float64(w.port) || s["allowed"] != w.allowed || code != w.code || int64(bytes) != g.BytesSent+g.BytesReceived {
		t.Errorf("structuredContent egress[%d] = %v; want %+v and bytes %d", i, s, w, g.BytesSent+g.BytesReceived)
	}
}

// wantIPLiteral checks that the call's i-th connection, to ip:port, was refused for naming an
// address (ip_literal), in the record, the structured egress and the result's note.
func (c egtCall) wantIPLiteral(t *testing.T, i int, ip string, port int) {
	t.Helper()
	c.wantEgressAt(t, i, egtWant{strconv.Quote(ip), port, false, "ip_literal"})
	note := fmt.Sprintf("[airlock: egress refused: %q:%d: an IP address; only allowed host names can be reached]", ip, port)
	if !strings.Contains(c.text, note) {
		t.Errorf("the result does not carry the note %q:\n%s", note, c.text)
	}
}

// wantNotAllowed checks that the result's text names hp as refused and tells the operator the
// exact entry that would allow it.
func (c egtCall) wantNotAllowed(t *testing.T, hp string) {
	t.Helper()
	note := fmt.Sprintf(`[airlock: egress refused: %s: not on this tool's network allowlist; an operator can allow it by adding %q to the profile's network.allow]`, hp, hp)
	if !strings.Contains(c.text, note) {
		t.Errorf("the result does not carry the refusal note %s:\n%s", note, c.text)
	}
}

// TestEgressTools runs the egress cases through `airlock serve` on every backend, one server
// per backend for all its cases.
func TestEgressTools(t *testing.T) {
	probe := filepath.Join(escBuildProbe(t), "probe")
	for _, backend := range []string{"runc", "docker", "containerd"} {
		t.Run(backend, func(t *testing.T) { testEgressTools(t, backend, probe) })
	}
}

func testEgressTools(t *testing.T, backend, probe string) {
	requireGatewayBackend(t, backend)
	begin := time.Now()
	e := newMCPEnv(t, `{"version":"1","default":"allow"}`, nil)
	e.backend = backend
	e.quiet = true
	escCopyFile(t, probe, filepath.Join(e.workspace, "probe"))

	// evil is what no call may reach: not on any allowlist, though egress.hosts names it
	// (so a refusal is the allowlist's, not a failed lookup).
	evil := startEgtServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "evil-secret\n") }, nil)
	files := startEgtServer(t, func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/redirect"); ok {
			http.Redirect(w, r, fmt.Sprintf("http://evil.test:%d%s", evil.port, rest), http.StatusFound)
			return
		}
		fmt.Fprintf(w, "files-ok %s\n", r.URL.Path)
	}, nil)
	caDir, cert := egtCA(t, "secure.test")
	secure := startEgtServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "secure-ok %s\n", r.URL.Path) }, &cert)
	// A listener on every IPv4 address of the host, which nothing inside may reach directly.
	rawTargets, stopRaw := escTCPListener(t)
	for _, target := range rawTargets {
		if c, err := net.DialTimeout("tcp4", target, 2*time.Second); err != nil {
			t.Fatalf("control dial from the host to %s: %v", target, err)
		} else {
			c.Close()
		}
	}

	filesHP := net.JoinHostPort("files.test", strconv.Itoa(files.port))
	secureHP := net.JoinHostPort("secure.test", strconv.Itoa(secure.port))
	evilHP := net.JoinHostPort("evil.test", strconv.Itoa(evil.port))
	// Both profiles: the allowlist, and the test CA mounted read-only and named by
	// SSL_CERT_FILE (which Go's TLS, the toolbox's and the probe's, reads).
	common := fmt.Sprintf("    env: [\"SSL_CERT_FILE=/tmp/ca/ca.pem\"]\n    mounts:\n      - {source: %q, target: /tmp/ca}\n    network:\n      allow: [%q, %q]\n",
		caDir, filesHP, secureHP)
	e.extraProfiles = "  net:\n    image: host\n    seccomp: default\n    workspace: ro\n    pids: 64\n    timeout: 30s\n" + common +
		"  fetch:\n    image: busybox\n    seccomp: default\n    workspace: none\n    pids: 32\n    timeout: 30s\n" + common
	e.extraYAML = `egress:
  allow_private: ["127.0.0.1/32"]
  hosts: {files.test: 127.0.0.1, secure.test: 127.0.0.1, evil.test: 127.0.0.1, other.test: 127.0.0.1}
tools:
  - name: net_wget
    description: Fetch a URL with wget.
    profile: net
    argv: [wget, -q, -O, "-", "{{args.url}}"]
    input_schema: {type: object, properties: {url: {type: string}}, required: [url], additionalProperties: false}
  - name: net_sh
    description: Run a shell script with network access to the allowed hosts.
    profile: net
    argv: [sh, -c, "{{args.script}}"]
    input_schema: {type: object, properties: {script: {type: string}}, required: [script], additionalProperties: false}
`
	s := e.startHTTP(t)
	c := egtCaller{cs: connectHTTP(t, s, "", nil), audit: e.audit}
	t.Logf("%s: airlock serve ready after %s", backend, time.Since(begin).Round(time.Millisecond))

	// checkEvil: nothing any case did reached the server no call may reach.
	checkEvil := func(t *testing.T) {
		t.Helper()
		if conns, hellos, reqs := evil.seen(); conns != 0 || len(hellos) != 0 || len(reqs) != 0 {
			t.Errorf("the refused server was reached: %d connections, requests %q", conns, reqs)
		}
	}
	// fetchBody is the response body http_fetch returned in structuredContent.result.
	fetchBody := func(x egtCall) string {
		r, _ := x.st["result"].(map[string]any)
		body, _ := r["body"].(string)
		return body
	}

	// 1. An allowed host over plain HTTP: the body arrives through http_fetch and through a
	// configured wget, and the server logged each request under the allowed name.
	t.Run("AllowedHTTP", func(t *testing.T) {
		for _, tool := range []string{"http_fetch", "net_wget"} {
			path := "/c1-" + tool
			x := c.call(t, tool, map[string]any{"url": "http://" + filesHP + path})
			got := x.text
			if tool == "http_fetch" {
				got = fetchBody(x)
			}
			if x.res.IsError || !strings.Contains(got, "files-ok "+path+"\n") {
				t.Errorf("%s: is_error %v, want the body %q; text:\n%s", tool, x.res.IsError, "files-ok "+path, x.text)
			}
			x.wantEgress(t, egtWant{"files.test", files.port, true, ""})
			if _, _, reqs := files.seen(); !slices.Contains(reqs, "GET "+filesHP+" "+path) {
				t.Errorf("%s: the server's log %q lacks the request", tool, reqs)
			}
		}
		checkEvil(t)
	})

	// 2. An allowed host over HTTPS, through CONNECT: the toolbox verifies the server's
	// certificate against the mounted CA; the server read a ClientHello naming the allowed
	// host and served the request.
	t.Run("AllowedHTTPS", func(t *testing.T) {
		x := c.call(t, "http_fetch", map[string]any{"url": "https://" + secureHP + "/c2"})
		if body := fetchBody(x); x.res.IsError || body != "secure-ok /c2\n" {
			t.Errorf("is_error %v body %q, want secure-ok /c2; text:\n%s", x.res.IsError, body, x.text)
		}
		x.wantEgress(t, egtWant{"secure.test", secure.port, true, ""})
		if _, hellos, reqs := secure.seen(); !slices.Contains(hellos, "secure.test") || !slices.Contains(reqs, "GET "+secureHP+" /c2") {
			t.Errorf("the TLS server saw hellos %q and requests %q; want secure.test and GET /c2", hellos, reqs)
		}
	})

	// 3. Hosts not on the list: another name, an allowed name on another port, and a CONNECT
	// to a name not on the list. Each is refused, the agent is told which host and how the
	// operator would allow it, and no server saw a connection.
	t.Run("NotAllowed", func(t *testing.T) {
		secConns, secHellos, _ := secure.seen()
		wrongPort := net.JoinHostPort("files.test", strconv.Itoa(evil.port))
		evilTLS := net.JoinHostPort("evil.test", strconv.Itoa(secure.port))
		for _, tc := range []struct {
			tool, url, hp, host string
			port                int
		}{
			{"http_fetch", "http://" + evilHP + "/c3", evilHP, "evil.test", evil.port},
			{"http_fetch", "http://" + wrongPort + "/c3-port", wrongPort, "files.test", evil.port},
			{"net_wget", "http://" + evilHP + "/c3-wget", evilHP, "evil.test", evil.port},
			{"http_fetch", "https://" + evilTLS + "/c3-tls", evilTLS, "evil.test", secure.port},
		} {
			x := c.call(t, tc.tool, map[string]any{"url": tc.url})
			if !x.res.IsError || strings.Contains(x.text, "evil-secret") || strings.Contains(x.text, "-ok ") {
				t.Errorf("%s %s: is_error %v, want an error without a body; text:\n%s", tc.tool, tc.url, x.res.IsError, x.text)
			}
			x.wantNotAllowed(t, tc.hp)
			x.wantEgress(t, egtWant{tc.host, tc.port, false, "not_allowed"})
		}
		if conns, hellos, _ := secure.seen(); conns != secConns || len(hellos) != len(secHellos) {
			t.Errorf("the TLS server was reached by a refused CONNECT: connections %d -> %d, hellos %q -> %q", secConns, conns, secHellos, hellos)
		}
		checkEvil(t)
	})

	// 4. IP literals, which skip every name check: refused (ip_literal) whether the client
	// sends an absolute-form request (curl, told to ignore NO_PROXY) or a CONNECT (the probe),
	// and through http_fetch with a non-loopback address. http_fetch to 127.0.0.1 does not
	// use the proxy at all (NO_PROXY, and Go never proxies loopback): it finds nothing
	// listening on the sandbox's own loopback. No listener saw any of it.
	t.Run("IPLiteral", func(t *testing.T) {
		_, rawPort, _ := net.SplitHostPort(rawTargets[0])
		loop := net.JoinHostPort("127.0.0.1", strconv.Itoa(evil.port))
		loopTLS := net.JoinHostPort("127.0.0.1", strconv.Itoa(secure.port))
		x := c.call(t, "net_sh", map[string]any{"script": "curl -sS -f -m 10 --noproxy '' http://" + loop + "/c4; echo curl_exit=$?; " +
			"/workspace/probe tunnel 127.0.0.1:3128 " + loopTLS + " secure.test"})
		if strings.Contains(x.text, "evil-secret") || !strings.Contains(x.text, "curl_exit=22\n") {
			t.Errorf("curl through the proxy to %s: want exit 22 (the proxy's 403):\n%s", loop, x.text)
		}
		if a := escProbeAttempts(t, []byte(x.text))["tunnel "+loopTLS+" secure.test"]; a.OK || !strings.Contains(a.Err, "403") || !strings.Contains(a.Err, "ip_literal") {
			t.Errorf("CONNECT %s: ok=%v err %q; want a 403 ip_literal", loopTLS, a.OK, a.Err)
		}
		if len(x.rec.Egress) == 2 {
			x.wantIPLiteral(t, 0, "127.0.0.1", evil.port)
			x.wantIPLiteral(t, 1, "127.0.0.1", secure.port)
		} else {
			t.Errorf("audit record egress %+v; want the two refused connections", x.rec.Egress)
		}

		if len(rawTargets) > 1 {
			hostIP, _, _ := net.SplitHostPort(rawTargets[1])
			x := c.call(t, "http_fetch", map[string]any{"url": "http://" + rawTargets[1] + "/c4"})
			if !x.res.IsError || !strings.Contains(x.text, "refused by Airlock's egress proxy") {
				t.Errorf("http_fetch to %s: is_error %v; want the proxy's refusal:\n%s", rawTargets[1], x.res.IsError, x.text)
			}
			if len(x.rec.Egress) == 1 {
				x.wantIPLiteral(t, 0, hostIP, egtAtoi(t, rawPort))
			} else {
				t.Errorf("audit record egress %+v; want the refused connection", x.rec.Egress)
			}
		} else {
			t.Logf("the host has no non-loopback IPv4 address; skipping http_fetch to one")
		}
		x = c.call(t, "http_fetch", map[string]any{"url": "http://" + loop + "/c4-direct"})
		if !x.res.IsError || strings.Contains(x.text, "evil-secret") {
			t.Errorf("http_fetch to %s: is_error %v; want a failed connection:\n%s", loop, x.res.IsError, x.text)
		}
		x.wantEgress(t)
		checkEvil(t)
	})

	// 5. Domain fronting: CONNECT to the allowed host, then a ClientHello naming another. The
	// proxy refuses (sni_mismatch) before relaying a byte: the TLS server never reads a
	// ClientHello. The same probe naming the allowed host is the control: it completes the
	// handshake and a request.
	t.Run("SNIMismatch", func(t *testing.T) {
		connsBefore, hellosBefore, _ := secure.seen()
		x := c.call(t, "net_sh", map[string]any{"script": "/workspace/probe tunnel 127.0.0.1:3128 " + secureHP + " secure.test; " +
			"/workspace/probe tunnel 127.0.0.1:3128 " + secureHP + " other.test"})
		attempts := escProbeAttempts(t, []byte(x.text))
		if a := attempts["tunnel "+secureHP+" secure.test"]; !a.OK {
			t.Errorf("control: the tunnel naming secure.test failed (%s); the refusal below proves nothing:\n%s", a.Err, x.text)
		}
		if a, ok := attempts["tunnel "+secureHP+" other.test"]; !ok || a.OK {
			t.Errorf("the tunnel to %s naming other.test: reported %v ok=%v (%s)", secureHP, ok, a.OK, a.Err)
		}
		if !strings.Contains(x.text, `[airlock: egress refused: `+secureHP+`: the TLS handshake did not name the host the tunnel was opened to (sni_mismatch)]`) {
			t.Errorf("the result does not carry the sni_mismatch note:\n%s", x.text)
		}
		x.wantEgress(t, egtWant{"secure.test", secure.port, true, ""}, egtWant{"secure.test", secure.port, false, "sni_mismatch"})
		conns, hellos, _ := secure.seen()
		if added := hellos[len(hellosBefore):]; !slices.Equal(added, []string{"secure.test"}) {
			t.Errorf("the TLS server read ClientHellos %q during the case; want only the control's secure.test", added)
		}
		// The proxy connects before it reads the ClientHello (egress/doc.go, steps 4 and 5), so
		// the refused tunnel's TCP connection reaches the server, carrying nothing.
		t.Logf("the TLS server accepted %d TCP connections during the case and read %d ClientHellos", conns-connsBefore, len(hellos)-len(hellosBefore))
	})

	// 6. A redirect from the allowed host to one that is not: http_fetch follows it through
	// the proxy, which refuses the second hop; both hops are in the record, the refused
	// server saw nothing.
	t.Run("RedirectToRefused", func(t *testing.T) {
		x := c.call(t, "http_fetch", map[string]any{"url": "http://" + filesHP + "/redirect/c6"})
		if !x.res.IsError || strings.Contains(x.text, "evil-secret") || !strings.Contains(x.text, "refused by Airlock's egress proxy") {
			t.Errorf("is_error %v; want the redirect's refusal:\n%s", x.res.IsError, x.text)
		}
		x.wantNotAllowed(t, evilHP)
		x.wantEgress(t, egtWant{"files.test", files.port, true, ""}, egtWant{"evil.test", evil.port, false, "not_allowed"})
		if _, _, reqs := files.seen(); !slices.Contains(reqs, "GET "+filesHP+" /redirect/c6") {
			t.Errorf("the allowed server's log %q lacks the first hop", reqs)
		}
		checkEvil(t)
	})

	// 7. No DNS inside: Go's resolver and the C library's (getent) find nothing, not even a
	// name egress.hosts maps, while the proxy, which resolves on the host, still works.
	t.Run("NoDNS", func(t *testing.T) {
		x := c.call(t, "net_sh", map[string]any{"script": "/workspace/probe resolve files.test example.com; " +
			"getent hosts files.test example.com; echo getent_exit=$?; wget -q -O - http://" + filesHP + "/c7"})
		attempts := escProbeAttempts(t, []byte(x.text))
		for _, name := range []string{"files.test", "example.com"} {
			if a, ok := attempts["resolve "+name]; !ok || a.OK {
				t.Errorf("resolve %s inside: reported %v ok=%v", name, ok, a.OK)
			}
		}
		if !strings.Contains(x.text, "getent_exit=2\n") {
			t.Errorf("getent hosts resolved something (want exit 2):\n%s", x.text)
		}
		if !strings.Contains(x.text, "files-ok /c7\n") {
			t.Errorf("wget through the proxy failed:\n%s", x.text)
		}
		x.wantEgress(t, egtWant{"files.test", files.port, true, ""})
	})

	// 8. Raw TCP, around the proxy: to the host listener on loopback and on every other host
	// address, with the probe and with curl told not to use the proxy. All fail, the listener
	// accepts nothing, and the proxy saw nothing.
	t.Run("RawTCP", func(t *testing.T) {
		script := "/workspace/probe connect " + strings.Join(rawTargets, " ")
		for _, target := range rawTargets {
			script += "; curl -sS -m 3 --noproxy '*' http://" + target + "/; echo curl_exit=$?"
		}
		x := c.call(t, "net_sh", map[string]any{"script": script})
		attempts := escProbeAttempts(t, []byte(x.text))
		for _, target := range rawTargets {
			if a, ok := attempts["connect "+target]; !ok || a.OK {
				t.Errorf("connect %s from inside: reported %v ok=%v", target, ok, a.OK)
			} else {
				t.Logf("connect %s: %s", target, a.Err)
			}
		}
		if n := strings.Count(x.text, "curl_exit="); n != len(rawTargets) || strings.Contains(x.text, "curl_exit=0") {
			t.Errorf("curl around the proxy: want %d failures:\n%s", len(rawTargets), x.text)
		}
		x.wantEgress(t)
		if accepted := stopRaw(); len(accepted) != len(rawTargets) {
			t.Errorf("the host listener accepted %d connections %v; want only the %d control connections", len(accepted), accepted, len(rawTargets))
		}
	})

	// Afterwards: nothing reached the refused server, and the audit log's chain is intact.
	s.stop()
	checkEvil(t)
	if code, out := e.verifyAudit(t, e.audit); code != 0 {
		t.Errorf("airlock audit verify: exit %d\n%s", code, out)
	}
	t.Logf("%s: %s for all cases", backend, time.Since(begin).Round(time.Millisecond))
}

func egtAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
