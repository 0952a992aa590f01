package integration

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// Helpers for the gateway tests: real upstream MCP servers on 127.0.0.1 behind a real
// `airlock serve --http`.

// loopbackListen is preloaded into node so that a server calling listen(port) without a host
// (Express's app.listen, as server-everything does) binds 127.0.0.1 instead of every
// interface: the tests start servers on loopback only.
const loopbackListen = `const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if ((typeof args[0] === "number" || typeof args[0] === "string") && typeof args[1] !== "string") {
    args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
`

// freeLoopbackPort returns a TCP port free on 127.0.0.1 a moment ago.
func freeLoopbackPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// startEverything runs @modelcontextprotocol/server-everything (installed by `make upstreams`)
// over streamable HTTP on 127.0.0.1 with env added to its environment, and returns its MCP
// endpoint.
func startEverything(t testing.TB, env ...string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Unavailable(t, "node is not installed (make node)")
	}
	index := filepath.Join(testenv.RepoRoot(t), "upstream", "servers", "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
	if _, err := os.Stat(index); err != nil {
		testenv.Unavailable(t, "server-everything is not installed (make upstreams): %v", err)
	}
	preload := filepath.Join(t.TempDir(), "loopback.cjs")
	if err := os.WriteFile(preload, []byte(loopbackListen), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freeLoopbackPort(t)
	cmd := exec.Command(node, "--require", preload, index, "streamableHttp")
	cmd.Env = append(append(os.Environ(), env...), fmt.Sprintf("PORT=%d", port))
	logs := &mcpTailWriter{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting server-everything: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("server-everything output (tail):\n%s", logs.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(t, addr, func() string { return logs.String() })
	return "http://" + addr + "/mcp"
}

// waitListening waits until addr accepts TCP connections.
func waitListening(t testing.TB, addr string, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 30s: %v\n%s", addr, err, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// uniqueUpstream is an upstream name no other test run uses: containers are labelled with it,
// and pins kept in the shared state directory (a config without state:, beside the images),
// one file per upstream name, are removed when the test ends.
func uniqueUpstream(t testing.TB, base string) string {
	t.Helper()
	name := base + "-" + strings.ToLower(rand.Text()[:10])
	t.Cleanup(func() {
		dir := filepath.Join(testenv.StateDir(), "pins")
		os.Remove(filepath.Join(dir, name+".json"))
		os.Remove(filepath.Join(dir, name+".lock"))
	})
	return name
}

// gatewayCall is a tools/call with a deadline.
func gatewayCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
