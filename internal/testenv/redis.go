package testenv

import (
	"bytes"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Redis is a redis-server of a test's own: an ephemeral port and a Unix socket, no
// persistence, killed at cleanup. Tests never touch a Redis they did not start.
type Redis struct {
	t     testing.TB
	bin   string
	Port  int
	Sock  string // its Unix socket
	extra []string
	cmd   *exec.Cmd
	log   *bytes.Buffer
}

// StartRedis starts a redis-server with extra arguments, in which {port} is its port (later
// arguments win, so "--port 0 --tls-port {port}" makes it a TLS server). Without redis-server
// on PATH the test is Unavailable: skipped loudly, failed under AIRLOCK_REQUIRE_SANDBOX=1,
// where `make setup` installed it.
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Unavailable(t, "no redis-server on PATH (apt-get install redis-server, or make setup)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &Redis{t: t, bin: bin, Port: port, Sock: filepath.Join(t.TempDir(), "redis.sock"), extra: extra}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start starts the server (again, after Stop: same port, empty data).
func (r *Redis) Start() {
	r.t.Helper()
	args := []string{
		"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--unixsocket", r.Sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", r.t.TempDir(), "--loglevel", "warning",
	}
	for _, a := range r.extra {
		args = append(args, strings.ReplaceAll(a, "{port}", strconv.Itoa(r.Port)))
	}
	r.log = &bytes.Buffer{}
	r.cmd = exec.Command(r.bin, args...)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", r.Sock); err == nil {
			c.Close()
			return
		}
	}
	r.Stop()
	r.t.Fatalf("redis-server on port %d did not start within 10 s:\n%s", r.Port, r.log)
}

// Stop kills the server (an outage, as far as clients can tell).
func (r *Redis) Stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// URL is the server's redis:// URL on database 0, with an optional query.
func (r *Redis) URL(query string) string {
	u := "redis://127.0.0.1:" + strconv.Itoa(r.Port) + "/0"
	if query != "" {
		u += "?" + query
	}
	return u
}
