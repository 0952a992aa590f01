package docker

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
)

// TestDockerDifferences covers, one case each, the hardening properties of the OCI spec that
// Docker's API cannot express exactly (see the package documentation), by observing inside a
// real container that the attack the property stops is still stopped.
func TestDockerDifferences(t *testing.T) {
	b := newTestBackend(t)
	ws := t.TempDir()
	if err := os.Chmod(ws, 0o755); err != nil { // t.TempDir is 0700: the sandbox user must reach the files
		t.Fatal(err)
	}
	// A setuid-root program that prints its effective uid (busybox would not do: it drops
	// setuid privileges itself) and a /dev/mem device node in the workspace: Docker binds
	// have no nosuid or nodev.
	plantSetuidEuid(t, filepath.Join(ws, "euid"))
	if err := unix.Mknod(filepath.Join(ws, "mem"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 1))); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, why, script, want string
	}{
		{"setuid bits on a bind stay inert",
			"Docker binds have no nosuid; no_new_privileges makes exec ignore setuid bits and file capabilities",
			"test -u /workspace/euid && /workspace/euid", "65534\n"},
		{"a device node on a bind opens nothing",
			"Docker binds have no nodev; Docker's device cgroup allows only the standard devices, so /dev/mem (1:1) is refused",
			"test -c /workspace/mem && { head -c1 /workspace/mem >/dev/null 2>&1 && echo opened || echo refused; }", "refused\n"},
		{"no device node can be made",
			"the device cgroup allows mknod, but no capability (CAP_MKNOD) does",
			"mknod /tmp/n c 1 1 2>/dev/null && echo made || echo refused", "refused\n"},
		{"/dev is not writable by the sandbox user",
			"Docker's /dev tmpfs is 64 MiB and executable rather than 64 KiB and noexec; it is root's, mode 755",
			"touch /dev/x 2>/dev/null && echo wrote || echo refused", "refused\n"},
		{"cgroupfs is read-only and private",
			"Docker always mounts /sys/fs/cgroup: the hierarchies read-only under a root-owned mode 555 tmpfs; the private cgroup namespace shows only the run's own cgroup",
			"grep ' cgroup' /proc/self/mounts | grep -v '[ ,]ro[ ,]' | wc -l; touch /sys/fs/cgroup/x 2>/dev/null && echo wrote", "0\n"},
		{"the daemon's /etc files are read-only",
			"with the network disabled Docker mounts none of its /etc files; should it (a daemon or API change), they must be read-only",
			"for f in /etc/hosts /etc/hostname /etc/resolv.conf; do echo x 2>/dev/null >> $f && echo wrote $f; done; echo done", "done\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, user := range []uint32{65534, 0} {
				want := tt.want
				if user == 0 && tt.name == "setuid bits on a bind stay inert" {
					want = "0\n"
				}
				if user == 0 && tt.name == "/dev is not writable by the sandbox user" {
					continue // root owns Docker's /dev; see the package documentation
				}
				res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("sh", "-c", tt.script),
					sandbox.WithWorkspace(ws, sandbox.ReadOnly), sandbox.WithUser(user, user)))
				if err != nil {
					t.Fatal(err)
				}
				if string(res.Stdout) != want {
					t.Errorf("as uid %d: %s\nstdout %q, want %q (exit %d, stderr %q)", user, tt.why, res.Stdout, want, res.ExitCode, strings.TrimSpace(string(res.Stderr)))
				}
			}
		})
	}
}

// plantSetuidEuid builds a static program that prints its effective uid at dst, owned by root
// and setuid.
func plantSetuidEuid(t *testing.T, dst string) {
	t.Helper()
	dir := t.TempDir()
	src := "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() { fmt.Println(os.Geteuid()) }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module euid\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", dst, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the setuid probe: %v\n%s", err, out)
	}
	if err := os.Chown(dst, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
}
