package seccomp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// This file runs the profiles in real runc containers built by hand (not through the runc
// backend), so it tests exactly what this package produces: a static Go probe makes each
// refused syscall and must get EPERM, and busybox file applets must still work.

// testRootfs builds a root file system with busybox and the probe, once per test.
func testRootfs(t *testing.T) string {
	t.Helper()
	busybox := "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		testenv.Unavailable(t, "no %s (apt-get install busybox-static)", busybox)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "tmp", "proc", "dev", "workspace"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "cat", "ls", "mkdir", "mv", "find", "stat", "wc", "grep", "cp", "rm", "sort", "head", "sha256sum", "touch", "chmod"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(root, "probe"), ".")
	build.Dir = filepath.Join("testdata", "probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, out)
	}
	return root
}

// runInRunc runs argv as uid 65534 with no capabilities, no_new_privileges, a read-only root,
// an empty network namespace and the given seccomp profile (nil = none).
func runInRunc(t *testing.T, runc, rootfs string, sc *specs.LinuxSeccomp, argv ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runInRuncWith(t, runc, rootfs, sc, nil, argv...)
}

func runInRuncWith(t *testing.T, runc, rootfs string, sc *specs.LinuxSeccomp, extra []specs.Mount, argv ...string) (stdout, stderr string, err error) {
	t.Helper()
	dir := t.TempDir()
	spec := specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfs, Readonly: true},
		Process: &specs.Process{
			Args:            argv,
			Env:             []string{"PATH=/bin"},
			Cwd:             "/",
			User:            specs.User{UID: 65534, GID: 65534},
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{},
		},
		Hostname: "seccomp-test",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=16m"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			Seccomp: sc,
		},
	}
	spec.Mounts = append(spec.Mounts, extra...)
	cfg, err := json.Marshal(&spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := fmt.Sprintf("seccomp-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	cmd := exec.CommandContext(ctx, runc, "--root", filepath.Join(dir, "state"), "run", "--bundle", dir, id)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func probe(t *testing.T, runc, rootfs string, sc *specs.LinuxSeccomp) map[string]string {
	t.Helper()
	out, errOut, err := runInRunc(t, runc, rootfs, sc, "/probe")
	if err != nil {
		t.Fatalf("probe in runc: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	got := map[string]string{}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("probe output %q: %v (stderr %s)", out, err, errOut)
	}
	return got
}

func TestProfilesInRunc(t *testing.T) {
	runc := testenv.Runc(t)
	rootfs := testRootfs(t)
	p, err := host()
	if err != nil {
		t.Fatal(err)
	}
	def, _ := p.OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
	files, _ := p.OCI(sandbox.SeccompFiles, sandbox.NetworkNone)
	proxy, _ := p.OCI(sandbox.SeccompDefault, sandbox.NetworkProxy)
	const defaultProxy = sandbox.SeccompDefault + "+" + string(sandbox.NetworkProxy)

	// The baseline without a filter shows which calls the kernel itself would let through or
	// answer differently; for those, an EPERM under the profile is the filter's doing.
	base := probe(t, runc, rootfs, nil)
	got := map[string]map[string]string{
		sandbox.SeccompDefault: probe(t, runc, rootfs, def),
		sandbox.SeccompFiles:   probe(t, runc, rootfs, files),
		defaultProxy:           probe(t, runc, rootfs, proxy),
	}
	refusedByBoth := []string{
		"ptrace", "process_vm_readv", "bpf", "keyctl", "add_key", "perf_event_open", "io_uring_setup",
		"unshare", "setns", "mount", "chroot", "open_by_handle_at", "name_to_handle_at",
		"clone_newuser", "socket_inet", "socket_netlink",
	}
	cases := []struct {
		profile, op, want string
	}{
		{sandbox.SeccompDefault, "socket_unix", "ok"},
		{sandbox.SeccompDefault, "socketpair_unix", "ok"},
		{sandbox.SeccompDefault, "setuid", "ok"},
		{sandbox.SeccompDefault, "memfd_create", "ok"},
		{sandbox.SeccompDefault, "clone3", "ENOSYS"},
		{sandbox.SeccompDefault, "goroutines", "ok"},
		{sandbox.SeccompDefault, "file_io", "ok"},
		{sandbox.SeccompFiles, "socket_unix", "EPERM"},
		{sandbox.SeccompFiles, "socketpair_unix", "EPERM"},
		{sandbox.SeccompFiles, "setuid", "EPERM"},
		{sandbox.SeccompFiles, "memfd_create", "EPERM"},
		{sandbox.SeccompFiles, "clone3", "ENOSYS"},
		{sandbox.SeccompFiles, "goroutines", "ok"},
		{sandbox.SeccompFiles, "file_io", "ok"},
		// Network proxy: inet sockets for the egress forwarder, nothing else new.
		{defaultProxy, "socket_inet", "ok"},
		{defaultProxy, "socket_inet6", "ok"},
		{defaultProxy, "socket_unix", "ok"},
		{defaultProxy, "socketpair_unix", "ok"},
		{defaultProxy, "socket_netlink", "EPERM"},
		{defaultProxy, "socket_packet", "EPERM"},
		{defaultProxy, "socket_vsock", "EPERM"},
		{defaultProxy, "socket_alg", "EPERM"},
		{defaultProxy, "clone3", "ENOSYS"},
		{sandbox.SeccompDefault, "socket_inet6", "EPERM"},
		{sandbox.SeccompDefault, "socket_packet", "EPERM"},
		{sandbox.SeccompDefault, "socket_vsock", "EPERM"},
		{sandbox.SeccompDefault, "socket_alg", "EPERM"},
	}
	for _, op := range refusedByBoth {
		if op != "socket_inet" {
			cases = append(cases, struct{ profile, op, want string }{defaultProxy, op, "EPERM"})
		}
		for _, profile := range []string{sandbox.SeccompDefault, sandbox.SeccompFiles} {
			cases = append(cases, struct{ profile, op, want string }{profile, op, "EPERM"})
		}
	}
	for _, c := range cases {
		t.Run(c.profile+"/"+c.op, func(t *testing.T) {
			if g := got[c.profile][c.op]; g != c.want {
				t.Errorf("%s under %s = %q, want %q", c.op, c.profile, g, c.want)
			}
			if c.want == "EPERM" && base[c.op] == "EPERM" {
				t.Logf("%s: the kernel also refuses it without a filter (EPERM); the profile is defence in depth here", c.op)
			}
		})
	}
	t.Logf("without a filter: %v", base)
}

// TestBusyboxFileAppletsUnderFiles: the files profile is meant for file tools; busybox's
// shell, pipelines and file applets must work under it.
func TestBusyboxFileAppletsUnderFiles(t *testing.T) {
	runc := testenv.Runc(t)
	rootfs := testRootfs(t)
	files, err := OCI(sandbox.SeccompFiles, sandbox.NetworkNone)
	if err != nil {
		t.Fatal(err)
	}
	script := `set -e
cd /tmp
echo hello > a.txt
mkdir -p d/e
cp a.txt d/e/b.txt
mv d/e/b.txt d/c.txt
chmod 600 d/c.txt
touch d/e/f
cat a.txt | wc -c
find d | sort
grep -c hello d/c.txt
stat -c %a d/c.txt
ls d | head -n 1
sha256sum a.txt
rm -r d
ls`
	out, errOut, err := runInRunc(t, runc, rootfs, files, "/bin/sh", "-c", script)
	if err != nil {
		t.Fatalf("busybox under files: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	want := "6\nd\nd/c.txt\nd/e\nd/e/f\n1\n600\nc.txt\n" +
		"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  a.txt\na.txt\n"
	if out != want {
		t.Errorf("busybox output:\n%s\nwant:\n%s\nstderr: %s", out, want, errOut)
	}
}

// TestToolboxUnderFiles runs the real airlock-toolbox, the tool the files profile is for, under
// it: every file tool must work and print a result, not an error.
func TestToolboxUnderFiles(t *testing.T) {
	runc := testenv.Runc(t)
	rootfs := testRootfs(t)
	data, err := os.ReadFile(filepath.Join(testenv.Binaries(t), "airlock-toolbox"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "airlock-toolbox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "notes.txt"), []byte("alpha\nneedle here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// uid 65534 must be able to write into the workspace.
	if err := os.Chmod(ws, 0o777); err != nil {
		t.Fatal(err)
	}
	bind := []specs.Mount{{Destination: "/workspace", Type: "bind", Source: ws, Options: []string{"rbind", "rw", "nosuid", "nodev"}}}
	files, err := OCI(sandbox.SeccompFiles, sandbox.NetworkNone)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		tool, args, want string
	}{
		{"write_file", `{"path":"out/new.txt","content":"written under seccomp"}`, `"path"`},
		{"read_file", `{"path":"notes.txt"}`, `needle here`},
		{"list_directory", `{"path":"."}`, `"notes.txt"`},
		{"search_files", `{"pattern":"needle","path":"."}`, `"line":2`},
	}
	for _, c := range cases {
		t.Run(c.tool, func(t *testing.T) {
			out, errOut, err := runInRuncWith(t, runc, rootfs, files, bind, "/bin/airlock-toolbox", c.tool, c.args)
			if err != nil || !strings.Contains(out, c.want) || strings.Contains(out, `"error"`) {
				t.Fatalf("%s under files: err %v\nstdout: %s\nstderr: %s\nwant stdout containing %s", c.tool, err, out, errOut, c.want)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(ws, "out", "new.txt")); err != nil || string(b) != "written under seccomp" {
		t.Errorf("write_file result on the host: %q, %v", b, err)
	}
}

// TestCompatSyscallsRefused checks the one place Airlock deliberately differs from Docker's
// architecture list: a 32-bit syscall (int $0x80) from a 64-bit program must not reach the
// allow rules. Docker lists x86 as a sub-architecture, so i386 getpid would answer there.
//
// A kernel without IA32 emulation (CONFIG_IA32_EMULATION off, ia32_emulation=0, or a
// hypervisor that turns it off) has no 32-bit syscalls to guard: int $0x80 faults with SIGSEGV
// before any filter runs. The probe, run directly on the host, tells the two kernels apart.
func TestCompatSyscallsRefused(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		testenv.NotApplicable(t, "int $0x80 compat syscalls exist on amd64 only (GOARCH=%s)", runtime.GOARCH)
	}
	runc := testenv.Runc(t)
	rootfs := testRootfs(t)

	// On the host: no container, no filter, so the kernel alone decides.
	hostCmd := exec.Command(filepath.Join(rootfs, "probe"), "compat")
	var hostOut, hostErr bytes.Buffer
	hostCmd.Stdout, hostCmd.Stderr = &hostOut, &hostErr
	err := hostCmd.Run()
	host := compatResult(t, hostOut.String(), hostErr.String(), err, "on the host")
	switch {
	case strings.HasPrefix(host, "answered"):
	case strings.HasPrefix(host, "SIGSEGV"):
		testenv.NotApplicable(t, "this kernel has no 32-bit syscalls: i386 getpid via int $0x80, run on the host "+
			"without any filter, got %q, so there is no compat syscall table for a filter to guard "+
			"(the profile's x86_64-only architecture list is still checked by TestDefaultActionAndArchitectures)", host)
	default:
		t.Fatalf("i386 getpid via int $0x80 on the host without a filter: %q; want an answer, or SIGSEGV on a kernel without IA32 emulation", host)
	}

	def, err := OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
	if err != nil {
		t.Fatal(err)
	}
	withX86 := *def
	withX86.Architectures = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	cases := []struct {
		name string
		sc   *specs.LinuxSeccomp
		want string
	}{
		{"no filter answers", nil, "answered"},
		{"docker's arch list answers", &withX86, "answered"},
		{"airlock default refuses", def, "no answer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, err := runInRunc(t, runc, rootfs, c.sc, "/probe", "compat")
			if got := compatResult(t, out, errOut, err, "in runc"); !strings.HasPrefix(got, c.want) {
				t.Errorf("i386 getpid via int $0x80: %q, want %q", got, c.want)
			}
		})
	}
}

// compatResult is the probe's answer to "compat"; a probe that did not answer fails t.
func compatResult(t *testing.T, out, errOut string, err error, where string) string {
	t.Helper()
	if err != nil {
		t.Fatalf("probe compat %s: %v\nstdout: %s\nstderr: %s", where, err, out, errOut)
	}
	var got struct{ Compat string }
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Compat == "" {
		t.Fatalf("probe compat %s: output %q: %v (stderr %s)", where, out, err, errOut)
	}
	return got.Compat
}

// TestSetIDModesInRunc: under both profiles, no file-creating or mode-changing call can give a
// file the setuid or setgid bit (EPERM; openat2 and fchmodat2 ENOSYS), while the same calls with
// an ordinary mode work. Without a filter the kernel lets uid 65534 set both bits on its own
// files, so the refusals are the filter's.
func TestSetIDModesInRunc(t *testing.T) {
	runc := testenv.Runc(t)
	rootfs := testRootfs(t)
	p, err := host()
	if err != nil {
		t.Fatal(err)
	}
	run := func(sc *specs.LinuxSeccomp) map[string]string {
		out, errOut, err := runInRunc(t, runc, rootfs, sc, "/probe", "setid", "/tmp")
		if err != nil {
			t.Fatalf("probe setid: %v\nstdout: %s\nstderr: %s", err, out, errOut)
		}
		got := map[string]string{}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("probe output %q: %v (stderr %s)", out, err, errOut)
		}
		return got
	}
	refused := []string{
		"fchmodat_setuid", "fchmodat_setgid", "fchmod_setuid", "fchmod_setgid",
		"openat_create_setuid", "openat_create_setgid", "openat_tmpfile_setuid",
		"mknodat_setuid", "mknodat_setgid",
	}
	allowed := []string{"fchmodat_plain", "fchmodat_sticky", "fchmod_plain", "openat_create_plain", "mknodat_plain"}
	if runtime.GOARCH == "amd64" {
		refused = append(refused, "chmod_setuid", "creat_setuid", "open_create_setgid", "mknod_setuid")
		allowed = append(allowed, "chmod_plain", "creat_plain", "open_create_plain")
	}

	base := run(nil)
	for _, op := range refused {
		if base[op] != "ok" {
			t.Errorf("control without a filter: %s = %q, want ok (else the case proves nothing)", op, base[op])
		}
	}
	if base["setid_left"] == "none" {
		t.Errorf("control without a filter left no setuid/setgid file: %v", base)
	}
	for _, profile := range []string{sandbox.SeccompDefault, sandbox.SeccompFiles} {
		sc, err := p.OCI(profile, sandbox.NetworkNone)
		if err != nil {
			t.Fatal(err)
		}
		got := run(sc)
		t.Run(profile, func(t *testing.T) {
			for _, op := range refused {
				if got[op] != "EPERM" {
					t.Errorf("%s = %q, want EPERM", op, got[op])
				}
			}
			for _, op := range []string{"openat2_create_setuid", "fchmodat2_setuid"} {
				if got[op] != "ENOSYS" {
					t.Errorf("%s = %q, want ENOSYS (so libc falls back to the filtered call)", op, got[op])
				}
			}
			for _, op := range allowed {
				if got[op] != "ok" {
					t.Errorf("%s = %q, want ok: an ordinary mode must keep working", op, got[op])
				}
			}
			if got["setid_left"] != "none" {
				t.Errorf("files with setuid/setgid bits were left: %s", got["setid_left"])
			}
		})
	}
}
