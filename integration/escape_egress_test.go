package integration

// The egress suite: network proxy on every backend of the registry. The sandbox's network
// namespace still holds only loopback; the one way out is the egress proxy's Unix socket,
// reached through the forwarder the sandbox init starts on 127.0.0.1:3128. Here a small
// socket server on the host stands in for the proxy (package egress is the real one), and each
// case tries to get around it or checks that it is there only when asked for.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// egressServer is the stand-in proxy: on each connection it reads one line; for an HTTP
// request it answers 200 with "via-proxy:" and the request line, otherwise "echo:" and the line.
type egressServer struct {
	socket string
	mu     sync.Mutex
	lines  []string
}

// startEgressServer listens on a 0666 unix socket in a fresh directory until the test ends.
func startEgressServer(t *testing.T) *egressServer {
	t.Helper()
	dir := t.TempDir()
	escChmod(t, dir, 0o755)
	e := &egressServer{socket: filepath.Join(dir, "egress.sock")}
	ln, err := net.Listen("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	// What Airlock's proxy does: the sandbox user (65534) must be able to connect.
	escChmod(t, e.socket, 0o666)
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return e
}

func (e *egressServer) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	line = strings.TrimRight(line, "\r\n")
	e.mu.Lock()
	e.lines = append(e.lines, line)
	e.mu.Unlock()
	if strings.HasPrefix(line, "GET ") {
		for {
			h, err := r.ReadString('\n')
			if err != nil || strings.TrimRight(h, "\r\n") == "" {
				break
			}
		}
		body := "via-proxy:" + line + "\n"
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		return
	}
	_, _ = io.WriteString(c, "echo:"+line+"\n")
}

// received is every first line the server has read so far.
func (e *egressServer) received() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.lines)
}

// TestEgressSandbox runs the egress cases on every backend of the registry, as TestEscape does.
func TestEgressSandbox(t *testing.T) {
	runcBin := testenv.Runc(t)
	ctx := context.Background()
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		testenv.Unavailable(t, "image store %s: %v", testenv.StateDir(), err)
	}
	bb, err := store.Resolve(ctx, "busybox")
	if err != nil {
		testenv.Unavailable(t, "image busybox (run `make images`): %v", err)
	}
	if _, err := os.Lstat(filepath.Join(bb.Rootfs, strings.TrimPrefix(sandbox.EgressSocketTarget, "/"))); err != nil {
		testenv.Unavailable(t, "image busybox predates network proxy (no %s mount point; run `airlock images build busybox`): %v", sandbox.EgressSocketTarget, err)
	}
	probeDir := escBuildProbe(t)
	forEachBackend(t, "egress", func(t *testing.T, name string, b sandbox.Backend, o sandbox.OpenOptions) {
		s := &escapeSuite{
			name: name, backend: b, host: escapeHostFor(t, name, runcBin, o), runc: runcBin,
			cgroupParent: o.CgroupParent, marker: "egress-" + escRandomToken(t), images: store, busybox: bb, probeDir: probeDir,
		}
		t.Cleanup(func() {
			s.checkNoLeftovers(t)
		})
		par := func(f func(*testing.T, *escapeSuite)) func(*testing.T) {
			return func(t *testing.T) { t.Parallel(); f(t, s) }
		}
		t.Run("ReachesHostSocketOnly", par(testEgressReachesSocket))
		t.Run("ManyConnectionsAtOnce", par(testEgressManyConnections))
		t.Run("NoOtherRoute", par(testEgressNoOtherRoute))
		t.Run("NoDNS", par(testEgressNoDNS))
		t.Run("OnlyLoopback", par(testEgressOnlyLoopback))
		t.Run("ProxyEnvironment", par(testEgressEnvironment))
		t.Run("NoneModeUnchanged", par(testEgressNoneUnchanged))
		t.Run("ForwarderDiesWithContainer", par(testEgressForwarderDies))
		t.Run("TimeoutKillsForwarder", par(testEgressTimeout))
	})
}

// proxyRun runs argv with network proxy through server e, the probe in /workspace.
func (s *escapeSuite) proxyRun(t *testing.T, e *egressServer, opts ...sandbox.Option) sandbox.Result {
	t.Helper()
	return s.run(t, append([]sandbox.Option{sandbox.WithEgress(e.socket), sandbox.WithWorkspace(s.probeDir, sandbox.ReadOnly)}, opts...)...)
}

// testEgressReachesSocket: the command's very first connection to 127.0.0.1:3128 (no retry, no
// wait) reaches the host's socket, bytes both ways, with busybox nc, the probe and busybox wget
// through the proxy variables.
func testEgressReachesSocket(t *testing.T, s *escapeSuite) {
	e := startEgressServer(t)
	res := s.proxyRun(t, e, sandbox.WithArgv("sh", "-c",
		"echo first-$$ | nc 127.0.0.1 3128; echo nc_exit=$?; /workspace/probe echo 127.0.0.1:3128 1; wget -q -O - http://egress-test.invalid/path; echo wget_exit=$?"))
	out := string(res.Stdout)
	if res.ExitCode != 0 || !escRegexpMatch(`(?m)^echo:first-\d+$`, out) || !strings.Contains(out, "nc_exit=0") {
		t.Errorf("busybox nc through the forwarder: exit %d stdout %q stderr %q", res.ExitCode, out, res.Stderr)
	}
	if a := escProbeAttempts(t, res.Stdout)["echo 127.0.0.1:3128 c0"]; !a.OK {
		t.Errorf("probe echo through the forwarder failed: %s %s", a.Errno, a.Err)
	}
	if !strings.Contains(out, "via-proxy:GET http://egress-test.invalid/path HTTP/1.1\n") || !strings.Contains(out, "wget_exit=0") {
		t.Errorf("busybox wget did not go through the proxy: stdout %q stderr %q", out, res.Stderr)
	}
	got := e.received()
	if len(got) != 3 || !slices.Contains(got, "c0") {
		t.Errorf("the socket server read %q; want the nc line, c0 and the wget request", got)
	}
}

// testEgressManyConnections: 40 connections at once all get through, each with its own bytes.
func testEgressManyConnections(t *testing.T, s *escapeSuite) {
	e := startEgressServer(t)
	const n = 40
	res := s.proxyRun(t, e, sandbox.WithArgv("/workspace/probe", "echo", sandbox.EgressListen, strconv.Itoa(n)))
	attempts := escProbeAttempts(t, res.Stdout)
	ok := 0
	for i := range n {
		if a := attempts[fmt.Sprintf("echo %s c%d", sandbox.EgressListen, i)]; a.OK {
			ok++
		} else {
			t.Errorf("connection c%d: %s %s", i, a.Errno, a.Err)
		}
	}
	if ok != n || len(e.received()) != n {
		t.Errorf("%d of %d connections echoed, the server read %d (stderr %q)", ok, n, len(e.received()), res.Stderr)
	}
}

// testEgressNoOtherRoute: with inet sockets allowed, still no route out: a host listener on
// the host's loopback and on every other host address, and 1.1.1.1:53, are unreachable, and
// the host listener accepts nothing; the egress socket server sees nothing of it either.
func testEgressNoOtherRoute(t *testing.T, s *escapeSuite) {
	e := startEgressServer(t)
	targets, stop := escTCPListener(t)
	for _, target := range targets {
		if c, err := net.DialTimeout("tcp4", target, 2*time.Second); err != nil {
			t.Fatalf("control dial from the host to %s: %v", target, err)
		} else {
			c.Close()
		}
	}
	all := append(slices.Clone(targets), "1.1.1.1:53", "[2606:4700:4700::1111]:53")
	_, port, _ := net.SplitHostPort(targets[0])
	res := s.proxyRun(t, e, sandbox.WithArgv("sh", "-c",
		"/workspace/probe connect "+strings.Join(all, " ")+"; nc -w 2 127.0.0.1 "+port+" </dev/null; echo nc_exit=$?"))
	accepted := stop()
	if len(accepted) != len(targets) { // only the host's own control connections
		t.Errorf("host listener accepted %d connections %v; want only the %d control connections", len(accepted), accepted, len(targets))
	}
	attempts := escProbeAttempts(t, res.Stdout)
	for _, target := range all {
		a, ok := attempts["connect "+target]
		if !ok {
			t.Errorf("no connect attempt to %s in the output:\n%s", target, res.Stdout)
		} else if a.OK {
			t.Errorf("connect %s from inside succeeded", target)
		}
	}
	if bytes := res.Stdout; !strings.Contains(string(bytes), "nc_exit=") || strings.Contains(string(bytes), "nc_exit=0") {
		t.Errorf("busybox nc to the host listener did not fail: stdout %q stderr %q", res.Stdout, res.Stderr)
	}
	if got := e.received(); len(got) != 0 {
		t.Errorf("the egress socket server was reached: %q", got)
	}
}

// testEgressNoDNS: no name resolves (no resolver, no route to one): Go's DNS client and busybox
// nslookup. The image has no resolv.conf; Docker mounts one of its own even with network
// none, and what it names is as unreachable as anything else.
func testEgressNoDNS(t *testing.T, s *escapeSuite) {
	e := startEgressServer(t)
	res := s.proxyRun(t, e, sandbox.WithArgv("sh", "-c",
		"/workspace/probe resolve example.com localhost.example one.one.one.one; nslookup example.com; echo nslookup_exit=$?; cat /etc/resolv.conf 2>/dev/null | sed 's/^/resolv.conf: /'; true"))
	attempts := escProbeAttempts(t, res.Stdout)
	for _, name := range []string{"example.com", "localhost.example", "one.one.one.one"} {
		if a, ok := attempts["resolve "+name]; !ok || a.OK {
			t.Errorf("resolve %s from inside: reported %v ok=%v", name, ok, a.OK)
		}
	}
	out := string(res.Stdout)
	if !strings.Contains(out, "nslookup_exit=") || strings.Contains(out, "nslookup_exit=0") {
		t.Errorf("busybox nslookup resolved: stdout %q stderr %q", out, res.Stderr)
	}
	if s.name != "docker" && strings.Contains(out, "resolv.conf: ") {
		t.Errorf("the %s backend gave the sandbox a resolv.conf: %q", s.name, out)
	}
}

// testEgressOnlyLoopback: network proxy adds no interface.
func testEgressOnlyLoopback(t *testing.T, s *escapeSuite) {
	e := startEgressServer(t)
	res := s.proxyRun(t, e, sandbox.WithArgv("sh", "-c", "cat /proc/net/dev; echo ==; ls /sys/class/net"))
	dev, sys, ok := strings.Cut(string(res.Stdout), "==\n")
	if !ok {
		t.Fatalf("unexpected output %q (stderr %q)", res.Stdout, res.Stderr)
	}
	var ifaces []string
	for _, line := range strings.Split(dev, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(name, "|") {
			ifaces = append(ifaces, strings.TrimSpace(name))
		}
	}
	if !slices.Equal(ifaces, []string{"lo"}) {
		t.Errorf("/proc/net/dev lists %q; want only lo", ifaces)
	}
	if got := strings.Fields(sys); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("/sys/class/net lists %q; want only lo", got)
	}
}

// testEgressEnvironment: the proxy variables are set for the command, over the spec's own, and
// the socket is a socket owned by the host side, read-only in the sandbox.
func testEgressEnvironment(t *testing.T, s *escapeSuite) {
	e := startEgressServer(t)
	res := s.proxyRun(t, e, sandbox.WithEnv("HTTPS_PROXY=http://attacker.example:1"), sandbox.WithArgv("sh", "-c",
		"env | grep -i _proxy= | sort; [ -S "+sandbox.EgressSocketTarget+" ] && echo is_socket; chmod 777 "+sandbox.EgressSocketTarget+" 2>/dev/null || echo chmod_refused"))
	want := []string{
		"HTTPS_PROXY=http://127.0.0.1:3128", "HTTP_PROXY=http://127.0.0.1:3128",
		"NO_PROXY=localhost,127.0.0.1,::1",
		"http_proxy=http://127.0.0.1:3128", "https_proxy=http://127.0.0.1:3128",
		"no_proxy=localhost,127.0.0.1,::1",
	}
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	var env []string
	for _, l := range lines {
		if strings.Contains(l, "=") {
			env = append(env, l)
		}
	}
	slices.Sort(env)
	slices.Sort(want)
	if !slices.Equal(env, want) {
		t.Errorf("proxy environment %q, want %q", env, want)
	}
	if !slices.Contains(lines, "is_socket") || !slices.Contains(lines, "chmod_refused") {
		t.Errorf("%s: want a socket that cannot be changed; stdout %q stderr %q", sandbox.EgressSocketTarget, res.Stdout, res.Stderr)
	}
	if !slices.Contains(res.Loosened, "network:proxy") {
		t.Errorf("Loosened %v lacks network:proxy", res.Loosened)
	}
}

// testEgressNoneUnchanged: without network proxy, inet sockets stay refused by seccomp (EPERM,
// not a refused connection), nothing listens on 127.0.0.1:3128, the mount point is an empty
// regular file, and no proxy variable is set.
func testEgressNoneUnchanged(t *testing.T, s *escapeSuite) {
	res := s.run(t, sandbox.WithWorkspace(s.probeDir, sandbox.ReadOnly), sandbox.WithArgv("sh", "-c",
		"/workspace/probe connect 127.0.0.1:3128 [::1]:3128; /workspace/probe connect-unix "+sandbox.EgressSocketTarget+
			"; [ -S "+sandbox.EgressSocketTarget+" ] && echo is_socket; [ -f "+sandbox.EgressSocketTarget+" ] && echo regular; env | grep -ci proxy"))
	attempts := escProbeAttempts(t, res.Stdout)
	for _, target := range []string{"127.0.0.1:3128", "[::1]:3128"} {
		if a := attempts["connect "+target]; a.OK || a.Errno != "EPERM" {
			t.Errorf("connect %s without network proxy: ok=%v errno %q (%s); want EPERM from seccomp", target, a.OK, a.Errno, a.Err)
		}
	}
	if a, ok := attempts["connect-unix "+sandbox.EgressSocketTarget]; !ok || a.OK {
		t.Errorf("connect to %s without network proxy: reported %v ok=%v", sandbox.EgressSocketTarget, ok, a.OK)
	}
	out := string(res.Stdout)
	if strings.Contains(out, "is_socket") || !strings.Contains(out, "regular") || !strings.HasSuffix(out, "0\n") {
		t.Errorf("without network proxy: stdout %q stderr %q; want a regular file and no proxy variables", out, res.Stderr)
	}
}

// testEgressForwarderDies: the forwarder is a process of its own inside the sandbox (the
// command sees it in its /proc, running as the command's uid), and nothing of it is left on the
// host once the run is over: the container is gone and no process carries the case's marker.
func testEgressForwarderDies(t *testing.T, s *escapeSuite) {
	e := startEgressServer(t)
	res := s.proxyRun(t, e, sandbox.WithArgv("sh", "-c",
		`for p in /proc/[0-9]*; do c=$(tr '\0' ' ' < $p/cmdline 2>/dev/null); case "$c" in *egress-forward*) echo "fwd $c uid=$(awk '/^Uid:/{print $2}' $p/status)";; esac; done; (sleep 1000 &); echo ok`))
	out := string(res.Stdout)
	if !escRegexpMatch(`(?m)^fwd /\.airlock/bin/airlock-toolbox egress-forward fd:3 /\.airlock/egress\.sock +uid=65534$`, out) || !strings.Contains(out, "ok") {
		t.Errorf("no forwarder process running as 65534 inside: stdout %q stderr %q", out, res.Stderr)
	}
	s.host.assertGone(t, res.ContainerID)
	if left := escProcessesWith(s.caseMarker(t)); len(left) > 0 {
		t.Errorf("processes of the run remain on the host: %v", left)
	}
}

// testEgressTimeout: at the timeout every process dies, the forwarder with them, with a
// connection through it open.
func testEgressTimeout(t *testing.T, s *escapeSuite) {
	e := startEgressServer(t)
	start := time.Now()
	res := s.proxyRun(t, e, sandbox.WithTimeout(2*time.Second), sandbox.WithArgv("sh", "-c",
		"(sleep 1000 | nc 127.0.0.1 3128 >/dev/null &); sleep 1000"))
	if !res.TimedOut || res.ExitCode != sandbox.ExitTimeout {
		t.Errorf("timed_out %v exit %d, want a timeout (stderr %q)", res.TimedOut, res.ExitCode, res.Stderr)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the run took %s", took)
	}
	s.host.assertGone(t, res.ContainerID)
	if left := escProcessesWith(s.caseMarker(t)); len(left) > 0 {
		t.Errorf("processes of the run remain on the host: %v", left)
	}
}
