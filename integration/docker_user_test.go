package integration

// A non-root operator in the docker group runs Airlock with the Docker backend, for real: a
// user the test creates, the real daemon, the real Go SDK client over stdio.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/sandbox/backends"
)

func TestDockerGroupUserServes(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "creating a user needs root (euid %d)", os.Geteuid())
	}
	if backends.Default()["docker"] == nil {
		t.Fatal("this airlock has no docker backend")
	}
	grp, err := user.LookupGroup("docker")
	if err != nil {
		testenv.Unavailable(t, "no docker group (make docker installs docker.io, which creates it): %v", err)
	}
	dockerGID, _ := strconv.ParseUint(grp.Gid, 10, 32)

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "airlock-dkr-" + hex.EncodeToString(b)
	if out, err := exec.Command("useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "useradd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid64, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid64, _ := strconv.ParseUint(u.Gid, 10, 32)
	uid, gid := uint32(uid64), uint32(gid64)

	// Everything the user runs or owns lives in directories it can reach.
	mkdir := func(owner bool) string {
		d, err := os.MkdirTemp("", "airlock-dkr-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if owner {
			if err := os.Chown(d, int(uid), int(gid)); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	bin, state, ws := mkdir(false), mkdir(true), mkdir(false)
	for _, f := range []string{"airlock", "airlock-toolbox"} {
		escCopyFile(t, filepath.Join(testenv.Binaries(t), f), filepath.Join(bin, f))
		if err := os.Chmod(filepath.Join(bin, f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ws, "hello.txt"), []byte("hello from the workspace\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	asUser := func(ctx context.Context, groups []uint32, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "airlock"), args...)
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + state, "AIRLOCK_STATE_DIR=" + state}
		if h := os.Getenv("DOCKER_HOST"); h != "" {
			cmd.Env = append(cmd.Env, "DOCKER_HOST="+h)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
		return cmd
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, img := range []string{"busybox", "host"} {
		if out, err := asUser(ctx, nil, "images", "build", img).CombinedOutput(); err != nil {
			t.Fatalf("airlock images build %s as %s: %v\n%s", img, name, err, out)
		}
	}

	// Outside the docker group the daemon refuses the user, and so does Airlock: no fallback.
	var stdout, stderr bytes.Buffer
	noGroup := asUser(ctx, nil, "exec", "--backend", "docker", "--", "true")
	noGroup.Stdout, noGroup.Stderr = &stdout, &stderr
	if err := noGroup.Run(); err == nil || noGroup.ProcessState.ExitCode() != 125 {
		t.Errorf("exec --backend docker outside the docker group: %v, stderr %q; want exit 125", err, stderr.String())
	}
	// Under runc the doctor explains the choices a non-root user has.
	stdout.Reset()
	doc := asUser(ctx, nil, "doctor", "--backend", "runc", "--no-smoke")
	doc.Stdout = &stdout
	if err := doc.Run(); err == nil || !strings.Contains(stdout.String(), "docker group") {
		t.Errorf("doctor --backend runc as %s: %v; want exit 1 and the docker group named as a choice:\n%s", name, err, stdout.String())
	}

	// In the docker group: serve over stdio, with the Go SDK's client.
	serve := asUser(ctx, []uint32{uint32(dockerGID)}, "serve", "--stdio", "--backend", "docker", "--workspace", ws)
	serve.Stderr = &mcpLogWriter{t: t, prefix: "airlock serve (docker, " + name + ")"}
	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-integration", Version: "0"}, nil)
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: serve, TerminateDuration: 5 * time.Second}, nil)
	if err != nil {
		t.Fatalf("connecting to airlock serve --backend docker as %s: %v", name, err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_command",
		Arguments: map[string]any{"command": "id -u; cat /workspace/hello.txt; cat /proc/net/dev"}})
	if err != nil {
		t.Fatalf("run_command: %v", err)
	}
	out := mcpText(res)
	if res.IsError || !strings.Contains(out, "65534\n") || !strings.Contains(out, "hello from the workspace") {
		t.Errorf("run_command through the docker backend as %s: isError %v, output:\n%s", name, res.IsError, out)
	}
	for _, iface := range []string{"eth", "ens", "docker0"} {
		if strings.Contains(out, iface) {
			t.Errorf("the sandbox sees network interface %q:\n%s", iface, out)
		}
	}
	cs.Close()

	// The call is in the user's own audit log, with the docker backend's container.
	f, err := os.Open(filepath.Join(state, "audit", "audit.jsonl"))
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	var ran []pipeline.Record
	if err := pipeline.ReadRecords(f, func(_ []byte, r pipeline.Record) error {
		if r.Tool == "run_command" && r.Phase == "" {
			ran = append(ran, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 1 || ran[0].Decision != "allow" || ran[0].Backend != "docker" || ran[0].ContainerID == "" {
		t.Errorf("audit records of run_command: %+v; want one allowed call run by the docker backend", ran)
	}
}
