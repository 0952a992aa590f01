package integration

// Escape cases: the network.

import (
	"bytes"
	"net"
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
// did, see CVE-2020-15257) out of reach. The host listener accepts nothing; a socket file in a
// mounted directory, the documented way to share one, stays reachable as a control.
func testAbstractUnix(t *testing.T, s *escapeSuite) {
	name := "@airlock-escape-" + escRandomToken(t)
	ln, err := net.Listen("unix", name)
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
	res := s.run(t, sandbox.WithWorkspace(s.probeDir, sandbox.ReadOnly),
		sandbox.WithArgv("/workspace/probe", "connect-unix", name))
	time.Sleep(100 * time.Millisecond)
	ln.Close()
	<-done
	a, ok := escProbeAttempts(t, res.Stdout)["connect-unix "+name]
	if !ok || a.OK {
		t.Errorf("connect to the host's abstract socket %s from inside: reported %v ok=%v (stdout %q stderr %q)", name, ok, a.OK, res.Stdout, res.Stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if accepted != 0 {
		t.Errorf("the host's abstract socket accepted %d connections from the sandbox", accepted)
	}
}
