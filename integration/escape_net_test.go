package integration

// Escape cases: the network.

import (
	"bytes"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// testNoNetwork: a listener on the host (loopback and every host address) gets no connection
// from inside, and the attempt fails inside.
func testNoNetwork(t *testing.T, s *escapeSuite) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	var mu sync.Mutex
	var accepted []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c.RemoteAddr().String())
			mu.Unlock()
			c.Close()
		}
	}()
	targets := []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				targets = append(targets, net.JoinHostPort(ipn.IP.String(), strconv.Itoa(port)))
			}
		}
	}
	// A control from the host proves the listener accepts when a route exists.
	if c, err := net.DialTimeout("tcp4", targets[0], 2*time.Second); err != nil {
		t.Fatalf("control dial from the host: %v", err)
	} else {
		c.Close()
	}

	script := "/workspace/probe connect " + strings.Join(targets, " ") +
		"; nc -w 2 127.0.0.1 " + strconv.Itoa(port) + " </dev/null; echo nc_exit=$?"
	res := s.run(t, sandbox.WithWorkspace(s.probeDir, sandbox.ReadOnly), sandbox.WithArgv("sh", "-c", script))

	time.Sleep(200 * time.Millisecond) // let a queued connection reach Accept
	ln.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(accepted) != 1 { // the host's own control connection
		t.Errorf("host listener accepted %d connections %v; want only the host's control connection", len(accepted), accepted)
	}
	attempts := escProbeAttempts(t, res.Stdout)
	for _, target := range targets {
		a, ok := attempts["connect "+target]
		if !ok {
			t.Errorf("no connect attempt to %s in the output:\n%s", target, res.Stdout)
			continue
		}
		if a.OK {
			t.Errorf("connect %s from inside succeeded", target)
		}
	}
	if !bytes.Contains(res.Stdout, []byte("nc_exit=")) || bytes.Contains(res.Stdout, []byte("nc_exit=0")) {
		t.Errorf("busybox nc to the host listener did not fail: stdout %q stderr %q", res.Stdout, res.Stderr)
	}
}

// testOnlyLoopback: the network namespace holds only lo.
func testOnlyLoopback(t *testing.T, s *escapeSuite) {
	res := s.run(t, sandbox.WithArgv("sh", "-c", "cat /proc/net/dev; echo ==; ls /sys/class/net"))
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

// testAbstractUnix: abstract unix sockets belong to the network namespace. AF_UNIX is allowed by
// seccomp, so only the new namespace keeps a host service listening on one (container shims
// did, see CVE-2020-15257) out of reach. The host's abstract listener accepts nothing. As a
// control, a socket FILE in the mounted workspace is reachable (so the probe can connect, and
// docs/security.md warns that sockets in a workspace are exposed).
func testAbstractUnix(t *testing.T, s *escapeSuite) {
	ws := s.workspace(t)
	escCopyFile(t, filepath.Join(s.probeDir, "probe"), filepath.Join(ws, "probe"))
	abstract := "@airlock-escape-" + escRandomToken(t)
	file := filepath.Join(ws, "service.sock")
	abstractAccepts := escUnixListener(t, abstract)
	fileAccepts := escUnixListener(t, file)
	escChmod(t, file, 0o777)

	res := s.run(t, sandbox.WithWorkspace(ws, sandbox.ReadOnly),
		sandbox.WithArgv("/workspace/probe", "connect-unix", abstract, "/workspace/service.sock"))
	got := escProbeAttempts(t, res.Stdout)
	if a, ok := got["connect-unix "+abstract]; !ok || a.OK {
		t.Errorf("connect to the host's abstract socket %s from inside: reported %v ok=%v (stdout %q stderr %q)", abstract, ok, a.OK, res.Stdout, res.Stderr)
	}
	if n := abstractAccepts(); n != 0 {
		t.Errorf("the host's abstract socket accepted %d connections from the sandbox", n)
	}
	if a := got["connect-unix /workspace/service.sock"]; !a.OK || fileAccepts() != 1 {
		t.Errorf("control: the socket file in the workspace was not reachable (%s %s); the probe cannot detect a connection", a.Errno, a.Err)
	}
}

// escUnixListener listens on a unix socket address until the test ends; the returned function
// stops it and reports how many connections it accepted.
func escUnixListener(t *testing.T, addr string) func() int {
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	accepted := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			mu.Unlock()
			c.Close()
		}
	}()
	var once sync.Once
	stop := func() int {
		once.Do(func() {
			time.Sleep(100 * time.Millisecond) // let a queued connection reach Accept
			ln.Close()
			<-done
		})
		mu.Lock()
		defer mu.Unlock()
		return accepted
	}
	t.Cleanup(func() { stop() })
	return stop
}
