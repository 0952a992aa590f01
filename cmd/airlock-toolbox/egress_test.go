package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// egressClientMain is `<test binary> egress-client ADDR N`: N concurrent connections to ADDR,
// each sending its own payload, half-closing, and expecting it back from an echo server. It
// prints "ok N" or the first failure; it runs as the command of an init under test.
func egressClientMain(args []string) int {
	n, _ := strconv.Atoi(args[1])
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- echoOnce(args[0], fmt.Sprintf("payload %d %s", i, strings.Repeat("x", i*997%65536)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			fmt.Println("fail:", err)
			return 1
		}
	}
	fmt.Println("ok", n)
	return 0
}

func echoOnce(addr, payload string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, payload); err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(got) != "echo:"+payload {
		return fmt.Errorf("got %d bytes %.40q, want %d", len(got), got, len("echo:")+len(payload))
	}
	return nil
}

// echoServer serves "echo:" + everything read until the client half-closes, on a 0666 unix
// socket in a fresh directory, until the test ends. It returns the socket's path and a counter
// of accepted connections.
func echoServer(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "egress.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				b, err := io.ReadAll(c)
				if err == nil {
					_, _ = c.Write(append([]byte("echo:"), b...))
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return sock, &n
}

// freePort is a TCP port on 127.0.0.1 nobody listened on a moment ago. (The init tests share
// the host's network namespace, so 3128 could be taken.)
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// forwarderPid is the host pid of a live forwarder for socket, or 0.
func forwarderPid(socket string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if bytes.Contains(cmd, []byte("egress-forward\x00fd:3\x00"+socket+"\x00")) && !bytes.Contains(stat, []byte(") Z ")) {
			return pid
		}
	}
	return 0
}

// TestForwarderStandalone: the forwarder pipes many concurrent connections, byte for byte
// both ways with half-closes, to the unix socket.
func TestForwarderStandalone(t *testing.T) {
	sock, accepted := echoServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- forward(ln, sock) }()
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := echoOnce(ln.Addr().String(), fmt.Sprintf("p%d-%s", i, strings.Repeat("y", i*4099))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := accepted.Load(); got != n {
		t.Errorf("the socket accepted %d connections, want %d", got, n)
	}
	ln.Close()
	if err := <-done; err == nil {
		t.Error("forward returned nil after its listener closed")
	}
}

// TestForwarderProxyDown: with nothing listening on the socket the client's connection is
// closed, and the forwarder keeps serving.
func TestForwarderProxyDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { _ = forward(ln, filepath.Join(t.TempDir(), "none.sock")) }()
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || len(b) != 0 {
			t.Errorf("read %q, %v; want the connection closed", b, err)
		}
	}
}

// TestInitEgress runs the init as pid 1 with --egress: the command's very first connection
// reaches the socket (the listener is up before the command starts), many connections at once
// work, the forwarder is gone when the init is, and the deadline still ends the run.
func TestInitEgress(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("first connection and many at once", func(t *testing.T) {
		sock, accepted := echoServer(t)
		addr := freePort(t)
		r := runInitArgs(t, []string{"--deadline", "1m", "--egress", addr + "=" + sock, "--", self, "egress-client", addr, "64"}, initEnv, t.TempDir())
		if r.code != 0 || r.stdout != "ok 64\n" {
			t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		if got := accepted.Load(); got != 64 {
			t.Errorf("the socket accepted %d connections, want 64", got)
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts after the init exited: the forwarder survived", addr)
		}
	})
	t.Run("deadline kills the forwarder too", func(t *testing.T) {
		sock, _ := echoServer(t)
		addr := freePort(t)
		r := runInitArgs(t, []string{"--deadline", "1s", "--egress", addr + "=" + sock, "--", "sh", "-c", "sleep 1000"}, initEnv, t.TempDir())
		if r.code != exitTimeout {
			t.Fatalf("exit %d, want %d (stderr %q)", r.code, exitTimeout, r.stderr)
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts after the deadline: the forwarder survived", addr)
		}
	})
	t.Run("killing the forwarder does not end the run", func(t *testing.T) {
		sock, _ := echoServer(t)
		addr := freePort(t)
		dir := t.TempDir()
		// The test shares the host's /proc (and pids inside count the init's threads), so the
		// host kills the forwarder between the command's two connections: the second fails,
		// and the init goes on to report the command's own exit code.
		go func() {
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := os.Stat(filepath.Join(dir, "first")); err == nil {
					if pid := forwarderPid(sock); pid > 0 {
						_ = syscall.Kill(pid, syscall.SIGKILL)
						for forwarderPid(sock) > 0 && time.Now().Before(deadline) {
							time.Sleep(10 * time.Millisecond)
						}
						_ = os.WriteFile(filepath.Join(dir, "killed"), nil, 0o644)
						return
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		r := runInitArgs(t, []string{"--deadline", "1m", "--egress", addr + "=" + sock, "--", "sh", "-c",
			`"$0" egress-client "$1" 1; touch first; while [ ! -e killed ]; do sleep 0.05; done; "$0" egress-client "$1" 1; exit 7`, self, addr}, initEnv, dir)
		if r.code != 7 || !strings.HasPrefix(r.stdout, "ok 1\nfail:") {
			t.Fatalf("exit %d stdout %q stderr %q; want 7, a connection through the forwarder, then none", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("listen address taken", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		r := runInitArgs(t, []string{"--deadline", "1m", "--egress", ln.Addr().String() + "=/nonexistent.sock", "--", "sh", "-c", "echo ran"}, initEnv, t.TempDir())
		if r.code != exitInitFail || r.stdout != "" || !bytes.Contains([]byte(r.stderr), []byte("egress forwarder")) {
			t.Fatalf("exit %d stdout %q stderr %q; want %d before the command runs", r.code, r.stdout, r.stderr, exitInitFail)
		}
	})
}
