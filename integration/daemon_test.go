package integration

// The daemon for agents that do not run as root: `airlock serve --socket` as root, and an
// agent running as a user this test creates, whose MCP stdio command is `airlock connect`.
// The daemon maps the client's uid (SO_PEERCRED) to a grant.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// createUser adds a system user for the test and removes it afterwards.
func createUser(t *testing.T) (name string, uid, gid uint32) {
	t.Helper()
	if os.Getuid() != 0 {
		testenv.Unavailable(t, "creating a user needs root")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		testenv.Unavailable(t, "useradd: %v", err)
	}
	name = "airlock-it-" + strings.ToLower(rand.Text()[:8])
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	out, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	u, _ := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 32)
	out, err = exec.Command("id", "-g", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	g, _ := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 32)
	return name, uint32(u), uint32(g)
}

// publicDir is a directory every user can enter, holding a copy of the airlock binary (the
// test binaries' own directory is root's alone).
func publicDir(t *testing.T, bin string) (dir, airlock string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "airlock-daemon-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	airlock = filepath.Join(dir, "airlock")
	if err := os.WriteFile(airlock, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, airlock
}

// asUser is `airlock connect --socket sock` run as uid/gid.
func asUser(bin, sock string, uid, gid uint32) *exec.Cmd {
	cmd := exec.Command(bin, "connect", "--socket", sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	return cmd
}

func TestDaemonSocket(t *testing.T) {
	user, uid, gid := createUser(t)
	const policy = `{"version": "1", "default": "deny", "tools": {"run_command": {
	  "require": [{"conditions": [{"path": "grant.id", "op": "eq", "value": "bob"}], "on_deny": "Only bob."}]}}}`
	e := faultEnv(t, policy, time.Minute)
	dir, bin := publicDir(t, e.bin)
	sock := filepath.Join(dir, "mcp.sock")
	srv := e.command(context.Background(), append([]string{"serve", "--socket", sock}, e.serveArgs(t)...)...)
	srv.Stdout, srv.Stderr = e.logWriter(t, "serve --socket"), e.logWriter(t, "serve --socket")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = srv.Process.Kill()
		}
	})
	if _, ok := faultWait(30*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }); !ok {
		t.Fatal("the daemon socket never appeared")
	}

	// A user without a grant is refused, with what to do.
	var stderr bytes.Buffer
	cmd := asUser(bin, sock, uid, gid)
	cmd.Stdin, cmd.Stderr = strings.NewReader(""), &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), fmt.Sprintf("no grant matches uid %d", uid)) {
		t.Fatalf("%s without a grant: %v, %q; want refused naming the uid", user, err, stderr.String())
	}

	if out, errOut, code := e.airlockCLI(t, "grant", "create", "bob", "--uid", strconv.Itoa(int(uid)), "--no-token", "--config", e.config); code != 0 || out != "" {
		t.Fatalf("grant create --uid: %d %q %q", code, out, errOut)
	}
	connect := func(cmd *exec.Cmd) *mcp.ClientSession {
		t.Helper()
		cmd.Stderr = e.logWriter(t, "airlock connect")
		client := mcp.NewClient(&mcp.Implementation{Name: "agent-as-" + user, Version: "0"}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd, TerminateDuration: 5 * time.Second}, nil)
		if err != nil {
			t.Fatalf("connecting through airlock connect: %v", err)
		}
		return cs
	}
	bob := connect(asUser(bin, sock, uid, gid))
	if res, err := callCommand(t, bob, "echo as-bob"); err != nil || res.IsError || !strings.Contains(mcpText(res), "as-bob") {
		t.Fatalf("run_command as bob: %v %+v", err, res)
	}
	// Root, Airlock's own user, is the config's grant (local), which the policy refuses.
	root := connect(exec.Command(bin, "connect", "--socket", sock))
	if res, err := callCommand(t, root, "echo as-root"); err != nil || !res.IsError || !strings.Contains(mcpText(res), "Only bob") {
		t.Fatalf("run_command as root (grant local): %v %+v", err, res)
	}
	root.Close()

	// Revoked while connected: the next call is refused.
	if _, _, code := e.airlockCLI(t, "grant", "revoke", "bob", "--config", e.config); code != 0 {
		t.Fatal("grant revoke failed")
	}
	if res, err := callCommand(t, bob, "echo after-revoke"); err == nil && !res.IsError {
		t.Fatalf("a revoked uid's call ran: %+v", res)
	}
	bob.Close()
	cmd = asUser(bin, sock, uid, gid)
	stderr.Reset()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(""), io.Discard, &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "grant bob is revoked") {
		t.Fatalf("reconnecting with a revoked grant: %v %q", err, stderr.String())
	}

	recs := readAudit(t, e.audit)
	var grants []string
	for _, r := range recs {
		grants = append(grants, r.Grant+":"+r.Decision)
	}
	if got := strings.Join(grants, " "); got != "bob:allow local:deny" {
		t.Errorf("records: %s; want bob's allowed call and local's denied one", got)
	}
}
