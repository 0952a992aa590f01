package redis

import (
	"bytes"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// server is a redis-server of the test's own: an ephemeral port, no persistence, killed at
// cleanup. The tests never touch a Redis they did not start.
type server struct {
	t     *testing.T
	bin   string
	port  int
	sock  string // its Unix socket too
	extra []string
	cmd   *exec.Cmd
	log   *bytes.Buffer
}

// startRedis starts a redis-server, with extra arguments in which {port} is its port (later
// arguments win, so "--port 0 --tls-port {port}" makes it a TLS server), skipping loudly without one (failing under
// AIRLOCK_REQUIRE_SANDBOX=1, where `make setup` installed it).
func startRedis(t *testing.T, extra ...string) *server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Unavailable(t, "no redis-server on PATH for the redis state store's tests (apt-get install redis-server, or make setup)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &server{t: t, bin: bin, port: port, sock: filepath.Join(t.TempDir(), "redis.sock"), extra: extra}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) start() {
	s.t.Helper()
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--unixsocket", s.sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.t.TempDir(), "--loglevel", "warning",
	}
	for _, a := range s.extra {
		args = append(args, strings.ReplaceAll(a, "{port}", strconv.Itoa(s.port)))
	}
	s.log = &bytes.Buffer{}
	s.cmd = exec.Command(s.bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", s.sock); err == nil {
			c.Close()
			return
		}
	}
	s.stop()
	s.t.Fatalf("redis-server on port %d did not start within 10 s:\n%s", s.port, s.log)
}

// stop kills the server (an outage, as far as clients can tell).
func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

func (s *server) url(query string) string {
	u := "redis://127.0.0.1:" + strconv.Itoa(s.port) + "/0"
	if query != "" {
		u += "?" + query
	}
	return u
}

// open opens a Store on the server, failing the test if it cannot.
func (s *server) open(t *testing.T, query string, opts ...Option) *Store {
	t.Helper()
	st, err := Open(t.Context(), s.url(query), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// raw is a plain client for looking at keys behind the store's back.
func (s *server) raw(t *testing.T) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Network: "unix", Addr: s.sock, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}
