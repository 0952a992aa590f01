package integration

// Escape cases: the kernel surface (syscalls, capabilities, /proc, devices, descriptors).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/oci"
)

// testFDs: the command starts with stdin, stdout and stderr only (no descriptor of the host or
// of runc leaks in, the CVE-2024-21626 pattern), stdin gives EOF at once, and its cwd is inside.
// ls is started by the sandbox's init exactly as runc starts a process, so what it lists is
// exactly what it was given (plus the directory it opened itself).
func testFDs(t *testing.T, s *escapeSuite) {
	res := s.run(t, sandbox.WithArgv("ls", "-l", "/proc/self/fd/"))
	fds := map[string]string{}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		if m := regexp.MustCompile(`\s(\d+) -> (.*)$`).FindStringSubmatch(line); m != nil {
			fds[m[1]] = m[2]
		}
	}
	for fd, target := range fds {
		switch {
		case fd == "0" && (target == "/dev/null" || strings.HasPrefix(target, "pipe:")):
		case (fd == "1" || fd == "2") && strings.HasPrefix(target, "pipe:"):
		case strings.HasPrefix(target, "/proc/"): // ls's own handle on the directory it lists
		default:
			t.Errorf("descriptor %s -> %q is open in the container's first process", fd, target)
		}
	}
	if len(fds) < 3 || len(fds) > 4 {
		t.Errorf("descriptors %v; want 0, 1, 2 and ls's own", fds)
	}
	res = s.run(t, sandbox.WithArgv("sh", "-c", "echo cwd=$(readlink /proc/self/cwd) stdin=$(head -c 16 | wc -c)"))
	if out := strings.TrimSpace(string(res.Stdout)); out != "cwd=/ stdin=0" {
		t.Errorf("got %q, want cwd=/ and an empty stdin (stderr %q)", out, res.Stderr)
	}
}

// testWorkdirThroughFD: a working directory of /proc/self/fd/N (the CVE-2024-21626 "Leaky
// Vessels" pattern: runc leaked a descriptor of the host's cgroup directory, and a container
// whose cwd named it started outside its root) either fails to start or lands inside.
func testWorkdirThroughFD(t *testing.T, s *escapeSuite) {
	for fd := 3; fd <= 9; fd++ {
		spec, err := sandbox.New(sandbox.WithEnv(escapeMarkerEnv+"="+s.caseMarker(t)),
			sandbox.WithWorkdir(fmt.Sprintf("/proc/self/fd/%d", fd)),
			sandbox.WithArgv("sh", "-c", "echo cwd=$(pwd -P); ls -a; ls -a ../../.."))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		res, err := s.backend.Run(ctx, spec)
		cancel()
		if err != nil {
			t.Logf("fd %d: refused to start: %v", fd, err)
			continue
		}
		out := string(res.Stdout)
		t.Logf("fd %d: exit %d %q", fd, res.ExitCode, escTruncate(res.Stdout, 200))
		for _, hostOnly := range []string{"cgroup.procs", "bundles", "config.json", "images"} {
			if strings.Contains(out, hostOnly) {
				t.Errorf("workdir /proc/self/fd/%d reached a host directory (%s listed):\n%s", fd, hostOnly, out)
			}
		}
	}
}

// testDevices: /dev holds only the harmless character devices runc provides; no disk,
// memory or kernel device node of the host exists inside.
func testDevices(t *testing.T, s *escapeSuite) {
	res := s.run(t, sandbox.WithArgv("sh", "-c", `find /dev -type b -o -type c | sort`))
	allowed := []string{"/dev/full", "/dev/null", "/dev/ptmx", "/dev/random", "/dev/tty", "/dev/urandom", "/dev/zero", "/dev/pts/ptmx"}
	nodes := strings.Fields(string(res.Stdout))
	for _, n := range nodes {
		if !slices.Contains(allowed, n) {
			t.Errorf("device node %s exists inside; allowed are %v", n, allowed)
		}
	}
	if !slices.Contains(nodes, "/dev/null") {
		t.Errorf("no /dev/null inside, so the listing is broken: %q %q", res.Stdout, res.Stderr)
	}
}

// testHostProcesses: the command sees only its own processes (a new pid namespace), cannot
// signal the test process, and sees its own host name, not the host's.
func testHostProcesses(t *testing.T, s *escapeSuite) {
	self := os.Getpid()
	host, _ := os.Hostname()
	res := s.run(t, sandbox.WithArgv("sh", "-c", fmt.Sprintf(
		`ls -d /proc/[0-9]* | wc -l; if kill -0 %d; then echo SIGNALLED; fi; hostname; cat /proc/sys/kernel/hostname`, self)))
	lines := strings.Fields(string(res.Stdout))
	if len(lines) < 3 {
		t.Fatalf("output %q stderr %q", res.Stdout, res.Stderr)
	}
	if n, _ := strconv.Atoi(lines[0]); n < 1 || n > 5 {
		t.Errorf("the container sees %s processes; a new pid namespace shows only its own few", lines[0])
	}
	if strings.Contains(string(res.Stdout), "SIGNALLED") {
		t.Errorf("kill -0 %d (the test process) succeeded from inside", self)
	}
	for _, h := range lines[len(lines)-2:] {
		if h == host || h != oci.Hostname {
			t.Errorf("host name inside is %q (host %q), want %q", h, host, oci.Hostname)
		}
	}
}

// escProbeDenied are the errnos that mean "refused" (by seccomp, capabilities or sysctl).
var escProbeDenied = []string{"EPERM", "EACCES", "ENOSYS", "EAFNOSUPPORT", "EPROTONOSUPPORT"}

// testSyscalls: every escape-starting syscall fails under the default and files profiles;
// AF_UNIX sockets still work. A run with seccomp unconfined shows the probe does detect success.
func testSyscalls(t *testing.T, s *escapeSuite) {
	mustFail := []string{
		"mount", "umount", "unshare_mount", "unshare_user", "setns", "ptrace", "bpf", "keyctl",
		"add_key", "perf_event_open", "process_vm_readv", "io_uring_setup", "userfaultfd", "socket_raw_inet",
		"socket_packet", "socket_inet_tcp", "socket_inet6_tcp", "socket_inet_udp", "setuid_root",
		"chroot", "mknod_dev", "open_by_handle_at", "finit_module", "reboot", "clock_settime",
	}
	for _, profile := range []string{sandbox.SeccompDefault, sandbox.SeccompFiles} {
		res := s.run(t, sandbox.WithSeccomp(profile), sandbox.WithWorkspace(s.probeDir, sandbox.ReadOnly),
			sandbox.WithArgv("/workspace/probe", "syscalls"))
		got := escProbeAttempts(t, res.Stdout)
		for _, op := range mustFail {
			a, ok := got[op]
			switch {
			case !ok:
				t.Errorf("%s: probe did not report %s (stdout %q stderr %q)", profile, op, res.Stdout, res.Stderr)
			case a.OK:
				t.Errorf("%s: %s SUCCEEDED inside the sandbox", profile, op)
			case !slices.Contains(escProbeDenied, a.Errno):
				t.Errorf("%s: %s failed with %s (%s), want one of %v", profile, op, a.Errno, a.Err, escProbeDenied)
			}
			if ok {
				t.Logf("%s: %s -> ok=%v %s", profile, op, a.OK, a.Errno)
			}
		}
		if a := got["socket_unix"]; profile == sandbox.SeccompDefault && !a.OK {
			t.Errorf("%s: AF_UNIX socket failed (%s); local IPC must keep working", profile, a.Err)
		}
	}

	// Control: without the filter the same probe sees syscalls succeed, so a pass above
	// is the profile's doing, not a broken probe.
	res := s.run(t, sandbox.WithSeccomp(sandbox.SeccompUnconfined), sandbox.WithWorkspace(s.probeDir, sandbox.ReadOnly),
		sandbox.WithArgv("/workspace/probe", "syscalls"))
	got := escProbeAttempts(t, res.Stdout)
	for _, op := range []string{"io_uring_setup", "socket_inet_tcp", "keyctl", "ptrace", "userfaultfd", "unshare_user"} {
		if !got[op].OK {
			t.Errorf("control (seccomp unconfined): %s failed with %s; the probe cannot detect a missing filter", op, got[op].Errno)
		}
	}
	if e := got["process_vm_readv"].Errno; e != "EFAULT" {
		t.Errorf("control (seccomp unconfined): process_vm_readv gave %q, want EFAULT (allowed, bad address)", e)
	}
	if !slices.Contains(res.Loosened, "seccomp:unconfined") {
		t.Errorf("an unconfined run's result does not say so: loosened %q", res.Loosened)
	}
}

// testRootInside: uid 0 inside (a workspace-owner profile on a root-owned workspace runs so,
// and without a user namespace it is uid 0 on the host) still has no capability: the
// escape-starting syscalls fail, the image and /proc/sys stay read-only, the kernel log stays
// closed and masked paths stay masked.
func testRootInside(t *testing.T, s *escapeSuite) {
	res := s.run(t, sandbox.WithUser(0, 0), sandbox.WithWorkspace(s.probeDir, sandbox.ReadOnly),
		sandbox.WithEnv("AIRLOCK_PROBE_INSIDE_SANDBOX=1"),
		sandbox.WithArgv("sh", "-c", `/workspace/probe syscalls
if echo x > /etc/passwd; then echo WROTE /etc/passwd; fi
if echo x > /proc/sys/kernel/hostname; then echo WROTE hostname; fi
if head -c 1 /proc/kmsg >/dev/null; then echo READ kmsg; fi
if dmesg >/dev/null; then echo READ dmesg; fi
grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status`))
	out := string(res.Stdout)
	status := escParseStatus(out)
	if !strings.HasPrefix(status["Uid"], "0\t") {
		t.Fatalf("not running as uid 0 (Uid %q), so the case tests nothing:\n%s\n%s", status["Uid"], out, res.Stderr)
	}
	for k, v := range map[string]string{"CapEff": "0000000000000000", "CapBnd": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"} {
		if status[k] != v {
			t.Errorf("as root: %s = %q, want %q", k, status[k], v)
		}
	}
	for _, bad := range []string{"WROTE", "READ"} {
		if strings.Contains(out, bad) {
			t.Errorf("as root inside: %s\n%s", bad, out)
		}
	}
	got := escProbeAttempts(t, res.Stdout)
	for _, op := range []string{"mount", "umount", "unshare_mount", "unshare_user", "setns", "ptrace", "bpf",
		"keyctl", "perf_event_open", "io_uring_setup", "socket_raw_inet", "socket_inet_tcp", "chroot",
		"mknod_dev", "open_by_handle_at", "finit_module", "reboot", "clock_settime"} {
		if a, ok := got[op]; !ok || a.OK {
			t.Errorf("as root inside: %s reported %v ok=%v", op, ok, a.OK)
		}
	}
	if !slices.Contains(res.Loosened, "user:root") {
		t.Errorf("a run as root is not reported as loosened: %q", res.Loosened)
	}
}

// testHostEnv: nothing of the host environment (the canary planted in this test process) is
// visible inside.
func testHostEnv(t *testing.T, s *escapeSuite) {
	if os.Getenv(escapeCanaryEnv) != s.canary {
		t.Fatal("the canary is not set in the test process")
	}
	res := s.run(t, sandbox.WithArgv("sh", "-c", "cat /proc/self/environ; echo; cat /proc/1/environ; echo; env"))
	for _, needle := range []string{s.canary, escapeCanaryEnv, os.Getenv("HOME") + "\x00", "GOPATH", "AIRLOCK_RUNC"} {
		if needle != "\x00" && bytes.Contains(res.Stdout, []byte(needle)) {
			t.Errorf("host environment %q visible inside:\n%s", needle, bytes.ReplaceAll(res.Stdout, []byte{0}, []byte{'\n'}))
		}
	}
	if !bytes.Contains(res.Stdout, []byte(escapeMarkerEnv)) {
		t.Errorf("the spec's own environment is missing, so the check proves nothing: %q", res.Stdout)
	}
}

// testMasked: the kernel interfaces that leak host state (/proc/kcore, /proc/keys, /proc/timer_list,
// the host's boot command line in /proc/cmdline, ...) are masked and read empty, /sys/firmware is empty, and /proc/sys and /proc/sysrq-trigger
// are read-only mounts. A path this kernel does not have is logged and must be absent inside.
func testMasked(t *testing.T, s *escapeSuite) {
	masked := []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats", "/proc/cmdline"}
	emptyDirs := []string{"/sys/firmware", "/sys/devices/virtual/powercap", "/sys/fs/cgroup"}
	readOnly := []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq"}
	var script strings.Builder
	for _, p := range masked {
		fmt.Fprintf(&script, "if [ -e %s ]; then echo \"%s=$(head -c 64 %s 2>/dev/null | wc -c)\"; else echo '%s=absent'; fi\n", p, p, p, p)
	}
	for _, p := range emptyDirs {
		fmt.Fprintf(&script, "echo \"%s=$(ls -A %s 2>/dev/null | wc -l)\"\n", p, p)
	}
	script.WriteString(`awk '$2 ~ /^\/proc\// {print "mnt " $2 " " $4}' /proc/mounts` + "\n")
	script.WriteString(`awk '$2 == "/sys" {print "mnt /sys " $4} $3 ~ /^cgroup/ {print "cgroupfs " $2 " " $4}' /proc/mounts` + "\n")
	res := s.run(t, sandbox.WithArgv("sh", "-c", script.String()))
	out := string(res.Stdout)

	demonstrated := 0
	for _, p := range masked {
		v := escRegexpFind(regexp.QuoteMeta(p)+`=\s*(\w+)`, out)
		host, err := os.ReadFile(p)
		switch {
		case err != nil && errors.Is(err, fs.ErrNotExist):
			t.Logf("%s does not exist on this kernel; nothing to mask", p)
			if v != "absent" {
				t.Errorf("%s is absent on the host but %q inside", p, v)
			}
			continue
		case len(host) > 0:
			demonstrated++ // the host sees data here, so an empty read inside is the mask's doing
		}
		if v != "0" {
			t.Errorf("%s exposes data inside (%q bytes); want it masked:\n%s", p, v, out)
		}
		if !strings.Contains(out, "mnt "+p+" ") {
			t.Errorf("%s has no mask mounted over it:\n%s", p, out)
		}
	}
	if demonstrated == 0 {
		t.Errorf("no masked path has content on the host, so the test cannot tell masking from an empty file")
	}
	for _, p := range emptyDirs {
		if v := escRegexpFind(regexp.QuoteMeta(p)+`=\s*(\d+)`, out); v != "0" {
			t.Errorf("%s has %q entries inside; want it masked empty", p, v)
		}
	}
	// A writable cgroup file system is how release_agent escapes (CVE-2022-0492) start; none is
	// mounted, and /sys as a whole is read-only. Docker always mounts one (read-only, the
	// container's own cgroup namespace), which its backend masks: then every cgroup mount must
	// be read-only and /sys/fs/cgroup must read empty (checked with emptyDirs above).
	for _, m := range regexp.MustCompile(`(?m)^cgroupfs (\S+) (\S+)$`).FindAllStringSubmatch(out, -1) {
		switch {
		case s.name != "docker":
			t.Errorf("a cgroup file system is mounted inside at %s:\n%s", m[1], out)
		case !slices.Contains(strings.Split(m[2], ","), "ro"):
			t.Errorf("the cgroup file system at %s is writable (%s)", m[1], m[2])
		}
	}
	if !escRegexpMatch(`mnt /sys ro(,|$|\n)`, out) {
		t.Errorf("/sys is not mounted read-only:\n%s", out)
	}
	for _, p := range readOnly {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			t.Logf("%s does not exist on this kernel; nothing to make read-only", p)
			continue
		}
		if !escRegexpMatch(`mnt `+regexp.QuoteMeta(p)+` ro(,|$|\n)`, out) {
			t.Errorf("%s is not a read-only mount:\n%s", p, out)
		}
	}
}

// testCapabilities: uid/gid 65534, all capability sets empty, no_new_privs, seccomp filter mode.
func testCapabilities(t *testing.T, s *escapeSuite) {
	res := s.run(t, sandbox.WithArgv("sh", "-c", "cat /proc/self/status; id; grep -E 'Max (core file size|open files)' /proc/self/limits"))
	status := escParseStatus(string(res.Stdout))
	want := map[string]string{
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "2",
		"Uid": "65534\t65534\t65534\t65534", "Gid": "65534\t65534\t65534\t65534", "Groups": "",
	}
	// Docker lists the primary group among the supplementary ones; a group the process already
	// has as its gid grants nothing more.
	if s.name == "docker" && status["Groups"] == "65534" {
		status["Groups"] = ""
	}
	for k, v := range want {
		if status[k] != v {
			t.Errorf("%s = %q, want %q", k, status[k], v)
		}
	}
	if !bytes.Contains(res.Stdout, []byte("uid=65534")) {
		t.Errorf("id: %q", res.Stdout)
	}
	// No core dumps: they would write the process's memory, secrets included, to disk.
	if !escRegexpMatch(`Max core file size\s+0\s+0\s`, string(res.Stdout)) {
		t.Errorf("core dumps are not disabled: %s", escRegexpFind(`(Max core file size.*)`, string(res.Stdout)))
	}
	if !escRegexpMatch(`Max open files\s+1024\s+1024\s`, string(res.Stdout)) {
		t.Errorf("RLIMIT_NOFILE is not the default 1024: %s", escRegexpFind(`(Max open files.*)`, string(res.Stdout)))
	}
}
