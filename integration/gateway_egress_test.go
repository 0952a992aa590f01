package integration

// An upstream MCP server allowed only its API host: integration/testupstream, run as a stdio
// upstream of a real `airlock serve` under a profile whose network.allow names one host and
// port, fetches with Go's default client (the proxy from its environment). The API, a server
// of this test on the host's loopback, is reachable under its name (egress.hosts maps it);
// another host, another port, and IP literals are not, by both the server's result and the
// destinations' own logs; `airlock serve` logs every connection; and the same server under the
// default upstream profile reaches nothing at all. On every backend that answers here.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/flock"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"golang.org/x/sys/unix"
)

// gwHTTPServer is a destination of the test: a plain HTTP server that answers every request
// with "NAME PATH" and remembers what it was asked.
type gwHTTPServer struct {
	name string
	port int
	mu   sync.Mutex
	seen []string // "METHOD PATH host=HOST"
}

// startGWHTTPServer listens on addr ("127.0.0.1:0") until the test ends.
func startGWHTTPServer(t *testing.T, name, addr string) *gwHTTPServer {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &gwHTTPServer{name: name, port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.seen = append(s.seen, r.Method+" "+r.URL.Path+" host="+r.Host)
			s.mu.Unlock()
			fmt.Fprintf(w, "%s %s", s.name, r.URL.Path)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// requests is every request the server has answered so far.
func (s *gwHTTPServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// asked is every request the server has answered for path.
func (s *gwHTTPServer) asked(path string) []string {
	return slices.DeleteFunc(s.requests(), func(r string) bool { return !strings.HasPrefix(r, "GET "+path+" ") })
}

// beyond is every request the server has answered for a path other than path.
func (s *gwHTTPServer) beyond(path string) []string {
	return slices.DeleteFunc(s.requests(), func(r string) bool { return strings.HasPrefix(r, "GET "+path+" ") })
}

// gwFetched is the JSON result of testupstream's fetch tool.
type gwFetched struct {
	URL    string `json:"url"`
	Status int    `json:"status"`
	Egress string `json:"egress"`
	Body   string `json:"body"`
	Err    string `json:"err"`
}

// gwLog collects a server's stderr, all of it, for the test to read.
type gwLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *gwLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *gwLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// gwLogField matches one key=value of a console log line; a value with spaces is quoted.
var gwLogField = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// egressEvents are the fields of every event=egress line of an `airlock serve` log (zerolog's
// console format: time, level, message, then the fields in key order). The message is kept
// under "message", whatever precedes the first field.
func egressEvents(log string) []map[string]string {
	var out []map[string]string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, " event=egress") {
			continue
		}
		ev := map[string]string{}
		for _, m := range gwLogField.FindAllStringSubmatch(line, -1) {
			v := m[2]
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			ev[m[1]] = v
		}
		ev["line"] = line
		out = append(out, ev)
	}
	return out
}

// hostIPv4 is one IPv4 address of the host other than loopback, or "".
func hostIPv4() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	return ""
}

// TestGatewayEgress runs integration/testupstream as two stdio upstreams of one `airlock
// serve --http`: "e" under a profile allowing only api.test:PORT, "n" under the default
// upstream profile (no network). On runc, and on docker and containerd when their daemons
// answer.
func TestGatewayEgress(t *testing.T) {
	for _, backend := range []string{"runc", "docker", "containerd"} {
		t.Run(backend, func(t *testing.T) { testGatewayEgress(t, backend) })
	}
}

func testGatewayEgress(t *testing.T, backend string) {
	requireGatewayBackend(t, backend)
	// The API the server is allowed, on loopback only; another host on every address, so an
	// IP literal of the host's can name it too.
	api := startGWHTTPServer(t, "api", "127.0.0.1:0")
	other := startGWHTTPServer(t, "other", "0.0.0.0:0")
	apiHost := "api.test:" + strconv.Itoa(api.port)

	e := newMCPEnv(t, `{"version":"1","default":"allow"}`, nil)
	e.backend = backend
	e.quiet = true
	log := &gwLog{}
	e.stderrTo = log
	up := newTestUpstream(t)
	name := uniqueUpstream(t, "egress")
	nameNone := uniqueUpstream(t, "egress-none")
	e.extraProfiles = "  upstream-api:\n    image: host\n    seccomp: default\n    workspace: none\n    user: nobody\n" +
		"    memory: 256Mi\n    pids: 64\n    timeout: 1h\n    tmpfs: 16Mi\n" +
		"    network:\n      allow: [\"" + apiHost + "\"]\n"
	e.extraYAML = "builtins: []\n" +
		"egress:\n  allow_private: [127.0.0.1/32]\n  hosts: {api.test: 127.0.0.1, other.test: 127.0.0.1}\n" +
		"upstreams:\n" + up.yaml(name, "e", "profile: upstream-api") + up.yaml(nameNone, "n")

	// The proxies' sockets of this run of Airlock: none may remain once it stops.
	sockDir := filepath.Join(testenv.StateDir(), "egress")
	socketsBefore := gwSockets(sockDir)

	start := time.Now()
	s := e.startHTTP(t)
	cs := connectHTTP(t, s, "", nil)
	if l := gatewayListed(t, cs); !l["e__fetch"] || !l["n__fetch"] {
		t.Fatalf("the upstreams' fetch tools are not listed: %v", l)
	}
	fetch := func(t *testing.T, tool, url string) gwFetched {
		t.Helper()
		res := gatewayCall(t, cs, tool, map[string]any{"url": url})
		text := mcpText(res)
		if res.IsError {
			t.Fatalf("%s %s: error result: %s", tool, url, text)
		}
		var f gwFetched
		if err := json.Unmarshal([]byte(strings.TrimSpace(text)), &f); err != nil {
			t.Fatalf("%s %s: result %q is not the tool's JSON: %v", tool, url, text, err)
		}
		t.Logf("%s %s: status %d egress %q body %q err %q", tool, url, f.Status, f.Egress, escTruncate([]byte(f.Body), 200), f.Err)
		return f
	}
	// refused: the proxy answered 403 with the reason code in its header and body.
	refused := func(t *testing.T, f gwFetched, code string) {
		t.Helper()
		if f.Status != http.StatusForbidden || !strings.HasPrefix(f.Egress, code+";") || !strings.Contains(f.Body, "airlock egress proxy") {
			t.Errorf("fetch %s: want the egress proxy's 403 %s, got status %d egress %q body %q err %q", f.URL, code, f.Status, f.Egress, f.Body, f.Err)
		}
	}
	// failed: no response at all (no proxy to ask, no route).
	failed := func(t *testing.T, f gwFetched) {
		t.Helper()
		if f.Err == "" || f.Status != 0 {
			t.Errorf("fetch %s: want a failed request, got status %d body %q", f.URL, f.Status, f.Body)
		}
	}

	hostIP := hostIPv4()
	t.Run("AllowedAPIHost", func(t *testing.T) {
		f := fetch(t, "e__fetch", "http://"+apiHost+"/x")
		if f.Status != http.StatusOK || f.Body != "api /x" || f.Err != "" {
			t.Errorf("fetch of the allowed API host: status %d body %q err %q; want 200 \"api /x\"", f.Status, f.Body, f.Err)
		}
		if got, want := api.requests(), []string{"GET /x host=" + apiHost}; !slices.Equal(got, want) {
			t.Errorf("the API server saw %q, want %q", got, want)
		}
	})

	t.Run("OtherHostRefused", func(t *testing.T) {
		// Another name, mapped to a listening server like the API's, and the allowed name on
		// that server's port: the allowlist holds one host with one port.
		refused(t, fetch(t, "e__fetch", "http://other.test:"+strconv.Itoa(other.port)+"/y"), "not_allowed")
		refused(t, fetch(t, "e__fetch", "http://api.test:"+strconv.Itoa(other.port)+"/port"), "not_allowed")
		refused(t, fetch(t, "e__fetch", "http://other.test/y80"), "not_allowed")
		if got := other.requests(); len(got) != 0 {
			t.Errorf("the host not allowed was reached: it saw %q", got)
		}
	})

	t.Run("IPLiteralRefused", func(t *testing.T) {
		// A host address names the other server by IP: the proxy refuses any address, in a
		// plain request and in a CONNECT tunnel (https), whose refusal Go's client reports as
		// an error naming the status.
		if hostIP != "" {
			f := fetch(t, "e__fetch", "http://"+net.JoinHostPort(hostIP, strconv.Itoa(other.port))+"/ip")
			refused(t, f, "ip_literal")
			if f := fetch(t, "e__fetch", "https://"+net.JoinHostPort(hostIP, strconv.Itoa(api.port))+"/ip-tls"); f.Status != 0 || !strings.Contains(f.Err, "Forbidden") {
				t.Errorf("https to an IP literal: want the proxy's CONNECT refusal (Forbidden), got status %d err %q", f.Status, f.Err)
			}
		} else {
			t.Log("the host has no IPv4 address but loopback: only the loopback literal is tried")
		}
		// Loopback is exempt from the proxy (NO_PROXY): the client connects directly, to the
		// sandbox's own loopback, where the host's API is not.
		failed(t, fetch(t, "e__fetch", "http://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(api.port))+"/loopback"))
		if got := other.asked("/ip"); len(got) != 0 {
			t.Errorf("an IP literal reached the other server: it saw %q", got)
		}
		if got := api.beyond("/x"); len(got) != 0 {
			t.Errorf("an IP literal reached the API server: it saw %q", got)
		}
	})

	t.Run("NoAllowlistNoNetwork", func(t *testing.T) {
		// The same server under the default upstream profile: no proxy in its environment, no
		// forwarder on 127.0.0.1:3128, no DNS. The API's name leads nowhere.
		failed(t, fetch(t, "n__fetch", "http://"+apiHost+"/none"))
		addrs := []string{sandbox.EgressListen, net.JoinHostPort("127.0.0.1", strconv.Itoa(api.port))}
		res := gatewayCall(t, cs, "n__net", map[string]any{"addrs": addrs, "names": []string{}})
		got := tuAttempts(t, mcpText(res))
		if res.IsError || len(got) != len(addrs) {
			t.Errorf("n__net: error %v, %d attempts reported, want %d: %s", res.IsError, len(got), len(addrs), mcpText(res))
		}
		for _, a := range got {
			if a.OK {
				t.Errorf("n__net: %s succeeded without an allowlist", a.Op)
			} else {
				t.Logf("n__net: %s: %s", a.Op, a.Err)
			}
		}
		env := tuAttempts(t, mcpText(gatewayCall(t, cs, "n__environ", map[string]any{})))
		if len(env) == 0 || strings.Contains(strings.ToUpper(env[0].Data), "HTTP_PROXY=") {
			t.Errorf("the server without an allowlist has proxy variables (or no environment): %+v", env)
		}
		// The control: the allowed server has them.
		env = tuAttempts(t, mcpText(gatewayCall(t, cs, "e__environ", map[string]any{})))
		if len(env) == 0 || !strings.Contains(env[0].Data, "HTTP_PROXY=http://"+sandbox.EgressListen) {
			t.Errorf("the allowed server's environment lacks HTTP_PROXY: %+v", env)
		}
		if got := api.beyond("/x"); len(got) != 0 {
			t.Errorf("the server without an allowlist reached the API: it saw %q", got)
		}
	})

	t.Run("Logged", func(t *testing.T) {
		// Each connection is logged as it ends, which may be just after the server has read
		// the answer: the events are awaited (for a few seconds) until all are there.
		type wantEvent struct {
			hostPort, allowed string
			codes             []string // any of
			level             string
		}
		want := []wantEvent{
			{apiHost, "true", []string{""}, "INF"},
			{"other.test:" + strconv.Itoa(other.port), "false", []string{"not_allowed"}, "WRN"},
			{"api.test:" + strconv.Itoa(other.port), "false", []string{"not_allowed"}, "WRN"},
			{"other.test:80", "false", []string{"not_allowed"}, "WRN"},
		}
		if hostIP != "" {
			want = append(want,
				wantEvent{net.JoinHostPort(hostIP, strconv.Itoa(other.port)), "false", []string{"ip_literal"}, "WRN"},
				wantEvent{net.JoinHostPort(hostIP, strconv.Itoa(api.port)), "false", []string{"ip_literal"}, "WRN"})
		}
		evs := egressEvents(log.String())
		for deadline := time.Now().Add(5 * time.Second); len(evs) < len(want) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			evs = egressEvents(log.String())
		}
		byHost := map[string][]map[string]string{}
		for _, ev := range evs {
			if ev["tool"] != name {
				t.Errorf("egress event of tool %q, want only %q's: %s", ev["tool"], name, ev["line"])
			}
			// A host that is not a name (an address) is logged quoted.
			hp := net.JoinHostPort(strings.Trim(ev["host"], `"`), ev["port"])
			byHost[hp] = append(byHost[hp], ev)
		}
		for _, w := range want {
			got := byHost[w.hostPort]
			if len(got) != 1 {
				t.Errorf("%d egress events for %s, want 1: %v", len(got), w.hostPort, got)
				continue
			}
			ev := got[0]
			if ev["allowed"] != w.allowed || !slices.Contains(w.codes, ev["code"]) || !strings.Contains(ev["line"], " "+w.level+" ") {
				t.Errorf("egress event for %s: want %s allowed=%s code in %q: %s", w.hostPort, w.level, w.allowed, w.codes, ev["line"])
			}
			if w.allowed == "true" && (ev["bytes_sent"] == "0" || ev["bytes_received"] == "0") {
				t.Errorf("the allowed connection moved no bytes: %s", ev["line"])
			}
		}
		if len(evs) != len(want) {
			t.Errorf("%d egress events logged, want %d", len(evs), len(want))
		}
		for _, ev := range evs {
			t.Logf("logged: %s", ev["line"])
		}
	})

	t.Run("NothingLeft", func(t *testing.T) {
		if len(up.processes()) == 0 {
			t.Error("no server process of the upstreams found on the host while their sessions are open: the leftover check below would prove nothing")
		}
		s.stop()
		waitNoLeftovers(t, backend, up, name, nameNone)
		// Other Airlock processes (tests running beside this one) share the directory, each
		// in a subdirectory it keeps locked while it lives. One that was not there before
		// and whose lock is free belongs to no live process: this serve left it behind.
		// (Connecting to a socket to see whether it is live would be a connection in
		// another process's call.)
		for _, n := range gwSockets(sockDir) {
			if slices.Contains(socketsBefore, n) {
				continue
			}
			f, err := os.Open(filepath.Join(sockDir, filepath.Dir(n), "lock"))
			if err != nil {
				continue
			}
			if flock.Apply(f, unix.LOCK_EX|unix.LOCK_NB) == nil {
				t.Errorf("egress socket %s left in %s after Airlock stopped", n, sockDir)
			}
			f.Close()
		}
	})
	t.Logf("%s: %s from airlock serve's start to its containers' removal", backend, time.Since(start).Round(time.Millisecond))
}

// gwSockets lists the proxies' sockets in dir.
func gwSockets(dir string) []string {
	// Each Airlock process keeps its proxies' sockets in a directory of its own under dir.
	socks, _ := filepath.Glob(filepath.Join(dir, "*", "*.sock"))
	var out []string
	for _, s := range socks {
		rel, _ := filepath.Rel(dir, s)
		out = append(out, rel)
	}
	return out
}
