package integration

// The escape suite: each case tries to break one isolation property of Airlock's sandbox
// against REAL runc and asserts that the property held, both in the run's result and on the
// host (listener accept counts, file hashes, /proc scans, cgroup directories). docs/security.md
// lists every property with the name of the case below that attacks it.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/runc"
)

// escapeMarkerEnv is set in every container of the suite to "<suite marker>-<case>", so the
// host can find the suite's processes by scanning /proc/*/environ.
const escapeMarkerEnv = "AIRLOCK_ESCAPE_MARKER"

// escapeCanaryEnv is planted in the test process's own environment; no container may see it.
const escapeCanaryEnv = "AIRLOCK_ESCAPE_HOST_CANARY"

// escapeSuite is one runc backend shared by every case, and what the final leftover check
// needs to find anything the suite left behind.
type escapeSuite struct {
	backend      *runc.Backend
	runc         string
	stateDir     string // the backend's private state: bundles/, root/
	cgroupParent string // unique to this test process
	marker       string // prefix of every container's escapeMarkerEnv value
	canary       string // value of escapeCanaryEnv in the test process
	images       *images.Store
	busybox      sandbox.Image
	probeDir     string // 0755 directory holding the static probe binary "probe"

	binOnce sync.Once
	bin     string // built airlock binary (CLI cases)
}

func TestEscape(t *testing.T) {
	runcBin := testenv.Runc(t)
	ctx := context.Background()
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		testenv.Unavailable(t, "image store %s: %v", testenv.StateDir(), err)
	}
	bb, err := store.Resolve(ctx, "busybox")
	if err != nil {
		testenv.Unavailable(t, "image busybox (run `make images`): %v", err)
	}
	s := &escapeSuite{
		runc:         runcBin,
		stateDir:     t.TempDir(),
		cgroupParent: fmt.Sprintf("airlock-test-%d", os.Getpid()),
		marker:       "escape-" + escRandomToken(t),
		canary:       "canary-" + escRandomToken(t),
		images:       store,
		busybox:      bb,
	}
	// Every container below is started after this: if the backend leaked the host
	// environment into a container, the canary would show up there.
	t.Setenv(escapeCanaryEnv, s.canary)
	s.probeDir = escBuildProbe(t)

	s.backend, err = runc.New(runc.Config{
		Runc:         runcBin,
		StateDir:     s.stateDir,
		Images:       store,
		CgroupParent: s.cgroupParent,
		Logger:       zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatalf("runc backend: %v", err)
	}
	// Registered before the cases run; runs after every parallel case has finished.
	t.Cleanup(func() {
		if err := s.backend.Close(); err != nil {
			t.Errorf("closing the backend: %v", err)
		}
		s.checkNoLeftovers(t)
	})

	par := func(f func(*testing.T, *escapeSuite)) func(*testing.T) {
		return func(t *testing.T) { t.Parallel(); f(t, s) }
	}
	t.Run("NoNetwork", par(testNoNetwork))
	t.Run("OnlyLoopback", par(testOnlyLoopback))
	t.Run("ReadOnlyRoot", par(testReadOnlyRoot))
	t.Run("ReadOnlyWorkspace", par(testReadOnlyWorkspace))
	t.Run("CopyWorkspaceLeavesHostUnchanged", par(testCopyWorkspace))
	t.Run("WorkspaceSymlinksStayInside", par(testSymlinks))
	t.Run("SetuidBinaryGainsNothing", par(testSetuid))
	t.Run("ForkBombStopsAtPidsLimit", par(testForkBomb))
	t.Run("MemoryBombIsOOMKilled", par(testMemoryBomb))
	t.Run("TimeoutKillsEveryProcess", par(testTimeout))
	t.Run("BackgroundChildrenDieWithCommand", par(testBackgroundChildren))
	t.Run("TmpfsFillStopsAtCap", par(testTmpfsFill))
	t.Run("ForbiddenSyscallsFail", par(testSyscalls))
	t.Run("NoHostEnvironment", par(testHostEnv))
	t.Run("KernelInterfacesMasked", par(testMasked))
	t.Run("OutputFloodIsTruncated", par(testOutputFlood))
	t.Run("NoCapabilitiesNoNewPrivs", par(testCapabilities))
	t.Run("NoHostAbstractUnixSockets", par(testAbstractUnix))
	t.Run("NoInheritedFileDescriptors", par(testFDs))
	t.Run("NoHostDevices", par(testDevices))
	t.Run("NoHostProcessesOrIdentity", par(testHostProcesses))
	t.Run("HostImageExposesNoSecrets", par(testHostImage))
	t.Run("CLIHoldsTheSameProperties", par(testCLI))
}

// ---- the cases ----

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

// testFDs: the command starts with stdin, stdout and stderr only (no descriptor of the host or
// of runc leaks in, the CVE-2024-21626 pattern), stdin gives EOF at once, and its cwd is inside.
// ls runs as pid 1, directly from runc, so what it lists is exactly what it was given (plus the
// directory it opened itself).
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
		if h == host || h != runc.Hostname {
			t.Errorf("host name inside is %q (host %q), want %q", h, host, runc.Hostname)
		}
	}
}

// testReadOnlyRoot: writes anywhere in the image fail with EROFS, and the image on the host
// is unchanged.
func testReadOnlyRoot(t *testing.T, s *escapeSuite) {
	before := escHashTree(t, s.busybox.Rootfs)
	targets := []string{"/etc/passwd", "/bin/sh", "/newfile", "/etc/newfile", "/workspace/newfile", "/.airlock/x"}
	var script strings.Builder
	for _, f := range targets {
		fmt.Fprintf(&script, "if echo pwned > %s; then echo WROTE %s; fi\n", f, f)
	}
	script.WriteString("mkdir /newdir && echo WROTE /newdir\nchmod 777 /etc && echo WROTE chmod\n" +
		"awk '$2==\"/\"{print \"rootopts=\" $4}' /proc/mounts\necho end\n")
	res := s.run(t, sandbox.WithArgv("sh", "-c", script.String()))
	out := string(res.Stdout)
	if strings.Contains(out, "WROTE") || !strings.Contains(out, "end") {
		t.Errorf("a write to the root file system succeeded or the script did not finish:\n%s\nstderr:\n%s", out, res.Stderr)
	}
	if n := strings.Count(string(res.Stderr), "Read-only file system"); n < len(targets) {
		t.Errorf("%d writes failed with EROFS, want at least %d:\n%s", n, len(targets), res.Stderr)
	}
	if !escRegexpMatch(`rootopts=ro(,|$|\n)`, out) {
		t.Errorf("/ is not mounted ro: %s", out)
	}
	escAssertTreeUnchanged(t, s.busybox.Rootfs, before)
}

// testReadOnlyWorkspace: a read-only workspace whose files are world-writable on the host can
// still not be changed from inside: every attempt fails with EROFS and the host tree is unchanged.
func testReadOnlyWorkspace(t *testing.T, s *escapeSuite) {
	ws := s.workspace(t)
	escWriteFile(t, filepath.Join(ws, "data.txt"), "original\n", 0o666)
	if err := os.Mkdir(filepath.Join(ws, "sub"), 0o777); err != nil {
		t.Fatal(err)
	}
	escChmod(t, filepath.Join(ws, "sub"), 0o777) // umask-proof
	escChmod(t, ws, 0o777)
	before := escHashTree(t, ws)
	ops := []string{
		"echo x > data.txt", "echo x >> data.txt", "touch new", "rm -f data.txt", "mkdir sub/d",
		"mv data.txt moved", "ln -s / link", "chmod 600 data.txt", "truncate -s 0 data.txt",
	}
	var script strings.Builder
	for _, op := range ops {
		fmt.Fprintf(&script, "if %s; then echo 'WROTE %s'; fi\n", op, op)
	}
	script.WriteString("grep ' /workspace ' /proc/mounts\necho end\n")
	res := s.run(t, sandbox.WithWorkspace(ws, sandbox.ReadOnly), sandbox.WithArgv("sh", "-c", script.String()))
	out := string(res.Stdout)
	if strings.Contains(out, "WROTE") || !strings.Contains(out, "end") {
		t.Errorf("a workspace write succeeded:\n%s\nstderr:\n%s", out, res.Stderr)
	}
	if !strings.Contains(string(res.Stderr), "Read-only file system") {
		t.Errorf("no write failed with EROFS:\n%s", res.Stderr)
	}
	if !escRegexpMatch(` /workspace \S+ ro,`, out) {
		t.Errorf("/workspace is not mounted ro: %s", out)
	}
	escAssertTreeUnchanged(t, ws, before)
}

// testCopyWorkspace: with access copy, writes succeed inside but never reach the host.
func testCopyWorkspace(t *testing.T, s *escapeSuite) {
	ws := s.workspace(t)
	// World-writable, so that the sandbox user may write inside and only the copy layer
	// stands between those writes and the host.
	escWriteFile(t, filepath.Join(ws, "data.txt"), "original\n", 0o666)
	escChmod(t, ws, 0o777)
	before := escHashTree(t, ws)
	res := s.run(t, sandbox.WithWorkspace(ws, sandbox.CopyOnWrite),
		sandbox.WithArgv("sh", "-c", "echo changed > data.txt && touch new && rm data.txt && mkdir d && cat /proc/mounts | grep ' /workspace ' && echo ok"))
	if res.ExitCode != 0 || !strings.Contains(string(res.Stdout), "ok") {
		t.Errorf("writes in a copy workspace should succeed inside: exit %d stdout %q stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
	escAssertTreeUnchanged(t, ws, before)

	// The copy layer is memory, capped by the memory limit: a command cannot fill the host's
	// disk through it. Writing 200 MiB under a 64 MiB limit stops (ENOSPC or OOM) at the limit.
	const limit = 64 << 20
	res = s.run(t, sandbox.WithWorkspace(ws, sandbox.CopyOnWrite), sandbox.WithMemory(limit),
		sandbox.WithArgv("sh", "-c", "dd if=/dev/zero of=/workspace/big bs=1M count=200; echo size=$(wc -c < /workspace/big)"))
	n, err := strconv.Atoi(escRegexpFind(`size=(\d+)`, string(res.Stdout)))
	if err != nil && !res.OOMKilled {
		t.Fatalf("no size reported and not OOM-killed: %q %q", res.Stdout, res.Stderr)
	}
	if n > limit {
		t.Errorf("wrote %d bytes into the copy layer; the memory limit is %d", n, limit)
	}
	if !res.OOMKilled && !bytes.Contains(res.Stderr, []byte("No space left on device")) {
		t.Errorf("the 200 MiB write was neither OOM-killed nor refused with ENOSPC: %q", res.Stderr)
	}
	escAssertTreeUnchanged(t, ws, before)
}

// testSymlinks: symlinks planted in the workspace that point at a host file outside it (by
// absolute path and by ..), and .. from /workspace, resolve inside the container's own view.
func testSymlinks(t *testing.T, s *escapeSuite) {
	outside := t.TempDir()
	escChmod(t, outside, 0o755)
	token := "host-secret-" + escRandomToken(t)
	canary := filepath.Join(outside, "canary.txt")
	escWriteFile(t, canary, token+"\n", 0o644) // world-readable: only the mount view protects it
	ws := filepath.Join(outside, "ws")
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"abs":    canary,
		"rel":    "../canary.txt",
		"dotdot": "..",
		"root":   "/",
		"proc":   "/proc/1/root" + canary,
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(ws, name)); err != nil {
			t.Fatal(err)
		}
	}
	// Sanity: on the host every link reaches the canary.
	for _, p := range []string{"abs", "rel", "dotdot/canary.txt", "root" + canary} {
		if b, err := os.ReadFile(filepath.Join(ws, p)); err != nil || !strings.Contains(string(b), token) {
			t.Fatalf("host control: %s does not reach the canary (%v)", p, err)
		}
	}
	reads := []string{
		"/workspace/abs", "/workspace/rel", "/workspace/dotdot/canary.txt", "/workspace/root" + canary,
		"/workspace/proc", "/workspace/../canary.txt", "/workspace/../../canary.txt", canary,
		"/workspace/dotdot/ws/../canary.txt",
	}
	res := s.run(t, sandbox.WithWorkspace(ws, sandbox.ReadOnly),
		sandbox.WithArgv("sh", "-c", "for f in "+strings.Join(reads, " ")+"; do cat $f; done; echo end"))
	if bytes.Contains(res.Stdout, []byte(token)) || bytes.Contains(res.Stderr, []byte(token)) {
		t.Errorf("the host canary was read from inside:\nstdout %s\nstderr %s", res.Stdout, res.Stderr)
	}
	if !bytes.Contains(res.Stdout, []byte("end")) {
		t.Errorf("the script did not finish: %q %q", res.Stdout, res.Stderr)
	}
}

// testSetuid: a setuid-root binary in the workspace runs with the caller's uid (the mount is
// nosuid and no_new_privs is set). A host control shows the same file does elevate outside.
func testSetuid(t *testing.T, s *escapeSuite) {
	ws := s.workspace(t)
	escChmod(t, filepath.Dir(ws), 0o755) // the host control runs as 65534 and must reach the file
	suid := filepath.Join(ws, "suid-probe")
	escCopyFile(t, filepath.Join(s.probeDir, "probe"), suid)
	if err := os.Chown(suid, 0, 0); err != nil {
		t.Fatal(err)
	}
	escChmod(t, suid, 0o755|fs.ModeSetuid)
	if fi, err := os.Stat(suid); err != nil || fi.Mode()&fs.ModeSetuid == 0 {
		t.Fatalf("setuid bit not set on %s: %v %v", suid, fi.Mode(), err)
	}

	// Host control: run as 65534 on the host, the binary does get euid 0 (unless the host's
	// temp directory is itself nosuid, in which case the control is only logged).
	ctl := exec.Command(suid, "ids")
	ctl.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := ctl.Output(); err != nil {
		t.Logf("host control failed to run: %v", err)
	} else if ids := escParseIDs(t, out); ids["euid"] != 0 {
		t.Logf("host control: %s is on a nosuid file system here (euid %d); the in-sandbox check still applies", ws, ids["euid"])
	} else {
		t.Logf("host control: as uid 65534 on the host the binary runs with euid 0")
	}

	res := s.run(t, sandbox.WithWorkspace(ws, sandbox.ReadOnly),
		sandbox.WithArgv("sh", "-c", "/workspace/suid-probe ids; grep ' /workspace ' /proc/mounts"))
	lines := strings.SplitN(string(res.Stdout), "\n", 2)
	ids := escParseIDs(t, []byte(lines[0]))
	for _, k := range []string{"uid", "euid", "suid"} {
		if ids[k] != 65534 {
			t.Errorf("%s = %d inside, want 65534 (stdout %q stderr %q)", k, ids[k], res.Stdout, res.Stderr)
		}
	}
	if len(lines) < 2 || !strings.Contains(lines[1], "nosuid") {
		t.Errorf("/workspace is not mounted nosuid: %q", res.Stdout)
	}
}

// testForkBomb: a fork bomb never has more tasks than the pids limit: the test watches the
// container's pids cgroup from the host while the bomb runs (pids.current reaches pids.max and
// stays there) and counts its processes in /proc. The run ends on its own, and the host can
// still fork afterwards.
func testForkBomb(t *testing.T, s *escapeSuite) {
	const pids = 64
	ctx, stop := context.WithCancel(context.Background())
	marker := s.caseMarker(t)
	type peak struct {
		procs, current int
		max            string
	}
	peaks := make(chan peak, 1)
	go func() {
		var p peak
		for ctx.Err() == nil {
			procs := escPidsWith(marker)
			p.procs = max(p.procs, len(procs))
			if cur, limit, ok := escPidsCgroupOf(s.cgroupParent, procs); ok {
				p.current, p.max = max(p.current, cur), limit
			}
			time.Sleep(10 * time.Millisecond)
		}
		peaks <- p
	}()
	start := time.Now()
	res := s.run(t, sandbox.WithPids(pids), sandbox.WithTimeout(20*time.Second),
		// Every generation leaves a sleeping process behind and starts two more generations, so
		// the container plateaus at the limit; pid 1 then execs sleep (no fork needed) and the
		// run ends when it exits, taking every bomb process with it.
		sandbox.WithArgv("sh", "-c", "f() { sleep 30 & f & f & }; f; exec sleep 4"))
	elapsed := time.Since(start)
	stop()
	p := <-peaks
	t.Logf("fork bomb: exit %d in %s; host saw at most %d processes, pids.current peak %d, pids.max %q",
		res.ExitCode, elapsed, p.procs, p.current, p.max)
	if p.max != strconv.Itoa(pids) {
		t.Errorf("the container's pids.max is %q on the host, want %d", p.max, pids)
	}
	if p.current > pids || p.procs > pids {
		t.Errorf("the container had %d tasks (%d processes seen); the pids limit is %d", p.current, p.procs, pids)
	}
	if p.current < pids {
		t.Errorf("pids.current peaked at %d: the bomb never reached the limit, so the limit was not tested", p.current)
	}
	if !bytes.Contains(res.Stderr, []byte("can't fork")) {
		t.Errorf("no fork failure in stderr: %q", escTruncate(res.Stderr, 500))
	}
	if res.TimedOut || elapsed > 20*time.Second {
		t.Errorf("the run took %s (timed out %v); the bomb should end when pid 1 does, after 4s", elapsed, res.TimedOut)
	}
	if err := exec.Command("true").Run(); err != nil {
		t.Errorf("the host cannot fork after the bomb: %v", err)
	}
	if left := escProcessesWith(marker); len(left) > 0 {
		t.Errorf("processes of the bomb survived the run: %v", left)
	}
}

// escPidsCgroupOf finds the pids cgroup under parent that holds one of pids and returns its
// pids.current and pids.max.
func escPidsCgroupOf(parent string, pids []string) (current int, limit string, ok bool) {
	if len(pids) == 0 {
		return 0, "", false
	}
	for _, dir := range escCgroupDirs(parent) {
		kids, _ := os.ReadDir(dir)
		for _, k := range kids {
			cg := filepath.Join(dir, k.Name())
			procs, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
			if !k.IsDir() || err != nil {
				continue
			}
			members := strings.Fields(string(procs))
			if !slices.ContainsFunc(pids, func(p string) bool { return slices.Contains(members, p) }) {
				continue
			}
			cur, err1 := os.ReadFile(filepath.Join(cg, "pids.current"))
			lim, err2 := os.ReadFile(filepath.Join(cg, "pids.max"))
			if err1 != nil || err2 != nil {
				continue // another controller's directory
			}
			n, err := strconv.Atoi(strings.TrimSpace(string(cur)))
			if err != nil {
				continue
			}
			return n, strings.TrimSpace(string(lim)), true
		}
	}
	return 0, "", false
}

// testMemoryBomb: allocating past the memory limit gets the command OOM-killed.
func testMemoryBomb(t *testing.T, s *escapeSuite) {
	res := s.run(t, sandbox.WithMemory(32<<20),
		sandbox.WithArgv("dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"))
	if !res.OOMKilled || res.ExitCode != sandbox.ExitKilled {
		t.Errorf("oom_killed %v exit %d, want true 137 (stderr %q)", res.OOMKilled, res.ExitCode, res.Stderr)
	}
}

// testTimeout: a busy loop with backgrounded children, one ignoring SIGTERM and one in its own
// session, is killed at the timeout, and no process of the container remains on the host.
func testTimeout(t *testing.T, s *escapeSuite) {
	marker := s.caseMarker(t)
	start := time.Now()
	res := s.run(t, sandbox.WithTimeout(2*time.Second), sandbox.WithArgv("sh", "-c",
		`sleep 1000 & (trap "" TERM HUP INT; while :; do sleep 1; done) & setsid sh -c 'sleep 1000' & `+
			`(sh -c 'sleep 1000 &' &); while :; do :; done`))
	elapsed := time.Since(start)
	if !res.TimedOut || res.ExitCode != sandbox.ExitTimeout {
		t.Errorf("timed_out %v exit %d, want true 124 (stderr %q)", res.TimedOut, res.ExitCode, res.Stderr)
	}
	if elapsed < 2*time.Second || elapsed > 2*time.Second+15*time.Second {
		t.Errorf("the run took %s; the timeout was 2s", elapsed)
	}
	if left := escProcessesWith(marker); len(left) > 0 {
		t.Errorf("processes of the container outlived the timeout: %v", left)
	}
}

// testBackgroundChildren: a command that starts background processes (one in its own session)
// and exits does not leave them running: the run returns at once with the command's exit code
// and no process of the container remains on the host.
func testBackgroundChildren(t *testing.T, s *escapeSuite) {
	marker := s.caseMarker(t)
	res := s.run(t, sandbox.WithTimeout(30*time.Second),
		sandbox.WithArgv("sh", "-c", "sleep 1000 & setsid sleep 1000 & (sleep 1000 &); exit 3"))
	if res.ExitCode != 3 || res.TimedOut || res.Duration > 10*time.Second {
		t.Errorf("exit %d timed_out %v after %s; want exit 3 at once", res.ExitCode, res.TimedOut, res.Duration)
	}
	if left := escProcessesWith(marker); len(left) > 0 {
		t.Errorf("background processes outlived the command: %v", left)
	}
}

// testTmpfsFill: filling /tmp stops at the tmpfs size with ENOSPC, and so does /dev/shm at its
// fixed 64 MiB.
func testTmpfsFill(t *testing.T, s *escapeSuite) {
	const size, shm = 8 << 20, 64 << 20
	res := s.run(t, sandbox.WithTmpfsSize(size), sandbox.WithArgv("sh", "-c",
		"dd if=/dev/zero of=/tmp/fill bs=1M count=64; echo size=$(wc -c < /tmp/fill); "+
			"dd if=/dev/zero of=/dev/shm/fill bs=1M count=100; echo shm=$(wc -c < /dev/shm/fill)"))
	if n := bytes.Count(res.Stderr, []byte("No space left on device")); n != 2 {
		t.Errorf("%d of 2 fills failed with ENOSPC: %q", n, res.Stderr)
	}
	for _, c := range []struct {
		key string
		cap int
	}{{"size", size}, {"shm", shm}} {
		n, _ := strconv.Atoi(escRegexpFind(c.key+`=(\d+)`, string(res.Stdout)))
		if n > c.cap || n < c.cap-(1<<20) {
			t.Errorf("%s: the file holds %d bytes (%q); want the %d-byte cap, within 1 MiB", c.key, n, res.Stdout, c.cap)
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
		"add_key", "perf_event_open", "io_uring_setup", "userfaultfd", "socket_raw_inet",
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
	for _, op := range []string{"io_uring_setup", "socket_inet_tcp", "keyctl"} {
		if !got[op].OK {
			t.Errorf("control (seccomp unconfined): %s failed with %s; the probe cannot detect a missing filter", op, got[op].Errno)
		}
	}
	if !slices.Contains(res.Loosened, "seccomp:unconfined") {
		t.Errorf("an unconfined run's result does not say so: loosened %q", res.Loosened)
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
// ...) are masked and read empty, /sys/firmware is empty, and /proc/sys and /proc/sysrq-trigger
// are read-only mounts. A path this kernel does not have is logged and must be absent inside.
func testMasked(t *testing.T, s *escapeSuite) {
	masked := []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats"}
	emptyDirs := []string{"/sys/firmware", "/sys/devices/virtual/powercap"}
	readOnly := []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq"}
	var script strings.Builder
	for _, p := range masked {
		fmt.Fprintf(&script, "if [ -e %s ]; then echo \"%s=$(head -c 64 %s 2>/dev/null | wc -c)\"; else echo '%s=absent'; fi\n", p, p, p, p)
	}
	for _, p := range emptyDirs {
		fmt.Fprintf(&script, "echo \"%s=$(ls -A %s 2>/dev/null | wc -l)\"\n", p, p)
	}
	script.WriteString(`awk '$2 ~ /^\/proc\// {print "mnt " $2 " " $4}' /proc/mounts` + "\n")
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

// testOutputFlood: 100 MB of output is cut at the cap, flagged, and does not stall the run.
func testOutputFlood(t *testing.T, s *escapeSuite) {
	const limit = 1 << 20
	res := s.run(t, sandbox.WithOutputCaps(limit, limit), sandbox.WithTimeout(60*time.Second),
		sandbox.WithArgv("sh", "-c", "yes | head -c 100000000; yes error | head -c 5000000 >&2"))
	if !res.StdoutTruncated || !res.StderrTruncated || !res.Truncated() {
		t.Errorf("truncated flags stdout %v stderr %v, want both", res.StdoutTruncated, res.StderrTruncated)
	}
	if len(res.Stdout) != limit || len(res.Stderr) != limit {
		t.Errorf("kept %d/%d bytes, want exactly the cap %d", len(res.Stdout), len(res.Stderr), limit)
	}
	if res.TimedOut || res.ExitCode != 0 {
		t.Errorf("exit %d timed_out %v: the flood should complete normally", res.ExitCode, res.TimedOut)
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

// testHostImage: the host image binds the host's programs and libraries read-only and shows
// none of its secrets: no shadow file, no home directories, no Airlock state, not the repository.
func testHostImage(t *testing.T, s *escapeSuite) {
	if _, err := s.images.Resolve(context.Background(), "host"); err != nil {
		testenv.Unavailable(t, "image host (run `make images`): %v", err)
	}
	repo := testenv.RepoRoot(t)
	secrets := []string{"/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh", "/etc/ssl/private",
		"/var/lib/airlock", filepath.Join(repo, "go.mod"), s.probeDir,
		"/run/docker.sock", "/var/run/docker.sock", "/run/containerd", "/run/systemd", "/proc/1/root/etc/shadow"}
	var script strings.Builder
	for _, p := range secrets {
		fmt.Fprintf(&script, "if [ -e %s ]; then echo 'VISIBLE %s'; fi\n", p, p)
	}
	script.WriteString("echo home=$(ls -A /home 2>/dev/null | wc -l) root=$(ls -A /root 2>/dev/null | wc -l)\n")
	for _, p := range []string{"/usr/bin/airlock-pwned", "/bin/sh", "/etc/ld.so.cache", "/lib/airlock-pwned"} {
		fmt.Fprintf(&script, "if echo x > %s; then echo 'WROTE %s'; fi\n", p, p)
	}
	script.WriteString("git --version >/dev/null && echo git-ok\necho end\n")
	res := s.run(t, sandbox.WithImage("host"), sandbox.WithArgv("sh", "-c", script.String()))
	out := string(res.Stdout)
	if strings.Contains(out, "VISIBLE") || strings.Contains(out, "WROTE") || !strings.Contains(out, "end") {
		t.Errorf("the host image exposes or lets change the host:\n%s\nstderr:\n%s", out, res.Stderr)
	}
	if !strings.Contains(out, "home=0 root=0") {
		t.Errorf("/home or /root has entries inside: %s", out)
	}
	if n := strings.Count(string(res.Stderr), "Read-only file system"); n < 4 {
		t.Errorf("%d writes failed with EROFS, want 4:\n%s", n, res.Stderr)
	}
	if _, err := exec.LookPath("git"); err == nil && !strings.Contains(out, "git-ok") {
		t.Errorf("the host's git does not run in the host image (so the image is not what it claims): %s", res.Stderr)
	}
}

// testCLI: the same properties hold through `airlock exec`, and the CLI's container leaves no
// bundle or cgroup behind.
func testCLI(t *testing.T, s *escapeSuite) {
	bin := s.airlockBin(t)
	ws := s.workspace(t)
	escWriteFile(t, filepath.Join(ws, "data.txt"), "original\n", 0o666)
	escChmod(t, ws, 0o777)
	before := escHashTree(t, ws)
	script := "cat /proc/self/status; cat /proc/self/environ; echo; echo x > /workspace/data.txt && echo WROTE; " +
		"nc -w 2 127.0.0.1 22 </dev/null && echo CONNECTED; cat /proc/net/dev"
	cli := func(args ...string) (int, escExecJSON) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"exec", "--json"}, args...)...)
		// The test's own environment (canary included) plus where runc and the images are.
		cmd.Env = append(os.Environ(), "AIRLOCK_STATE_DIR="+testenv.StateDir(), "AIRLOCK_RUNC="+s.runc)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		_ = cmd.Run()
		var res escExecJSON
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatalf("airlock exec %q: exit %d, stdout %q stderr %q: %v", args, cmd.ProcessState.ExitCode(), stdout.String(), stderr.String(), err)
		}
		return cmd.ProcessState.ExitCode(), res
	}

	_, res := cli("--workspace", ws, "--", "sh", "-c", script)
	status := escParseStatus(res.Stdout)
	if status["CapEff"] != "0000000000000000" || status["NoNewPrivs"] != "1" || status["Seccomp"] != "2" {
		t.Errorf("CLI run: CapEff %q NoNewPrivs %q Seccomp %q", status["CapEff"], status["NoNewPrivs"], status["Seccomp"])
	}
	for _, bad := range []string{s.canary, "WROTE", "CONNECTED", "eth", "ens"} {
		if strings.Contains(res.Stdout, bad) {
			t.Errorf("CLI run: %q in the output:\n%s", bad, res.Stdout)
		}
	}
	escAssertTreeUnchanged(t, ws, before)
	s.assertContainerGone(t, res.ContainerID, filepath.Join(testenv.StateDir(), "run"), runc.DefaultCgroupParent)

	code, res := cli("--timeout", "1s", "--", "sh", "-c", "sleep 1000 & while :; do :; done")
	if code != sandbox.ExitTimeout || !res.TimedOut || res.ExitCode != sandbox.ExitTimeout {
		t.Errorf("CLI timeout: exit %d result %+v, want 124 and timed_out", code, res)
	}
	s.assertContainerGone(t, res.ContainerID, filepath.Join(testenv.StateDir(), "run"), runc.DefaultCgroupParent)

	code, res = cli("--memory", "32Mi", "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1")
	if code != sandbox.ExitKilled || !res.OOMKilled {
		t.Errorf("CLI memory bomb: exit %d result %+v, want 137 and oom_killed", code, res)
	}

	code, res = cli("--", "sh", "-c", "yes | head -c 100000000")
	if code != 0 || !res.Truncated || len(res.Stdout) != 1<<20 {
		t.Errorf("CLI flood: exit %d truncated %v stdout %d bytes, want 0 true %d", code, res.Truncated, len(res.Stdout), 1<<20)
	}
}

// escExecJSON mirrors `airlock exec --json`.
type escExecJSON struct {
	ExitCode    int      `json:"exit_code"`
	Stdout      string   `json:"stdout"`
	Stderr      string   `json:"stderr"`
	Truncated   bool     `json:"truncated"`
	TimedOut    bool     `json:"timed_out"`
	OOMKilled   bool     `json:"oom_killed"`
	DurationMS  int64    `json:"duration_ms"`
	ContainerID string   `json:"container_id"`
	Loosened    []string `json:"loosened"`
}

// ---- the suite's helpers ----

// run executes one spec on the suite's backend; the sandbox itself must not fail.
func (s *escapeSuite) run(t *testing.T, opts ...sandbox.Option) sandbox.Result {
	t.Helper()
	all := append([]sandbox.Option{sandbox.WithEnv(escapeMarkerEnv + "=" + s.caseMarker(t))}, opts...)
	spec, err := sandbox.New(all...)
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), spec.Timeout+2*time.Minute)
	defer cancel()
	res, err := s.backend.Run(ctx, spec)
	if err != nil {
		t.Fatalf("sandbox run %q: %v", spec.Argv, err)
	}
	t.Logf("%q: exit %d timed_out %v oom %v truncated %v in %s (%s)", spec.Argv, res.ExitCode, res.TimedOut,
		res.OOMKilled, res.Truncated(), res.Duration.Round(time.Millisecond), res.ContainerID)
	return res
}

// caseMarker is the escapeMarkerEnv value of t's containers.
func (s *escapeSuite) caseMarker(t *testing.T) string {
	return s.marker + "-" + strings.ReplaceAll(t.Name(), "/", ".")
}

// workspace is a fresh directory the sandbox user can read.
func (s *escapeSuite) workspace(t *testing.T) string {
	ws := t.TempDir()
	escChmod(t, ws, 0o755)
	return ws
}

func (s *escapeSuite) airlockBin(t *testing.T) string {
	s.binOnce.Do(func() { s.bin = filepath.Join(testenv.Binaries(t), "airlock") })
	if s.bin == "" {
		t.Fatal("building airlock failed in another case")
	}
	return s.bin
}

// escCgroupDirs lists the per-controller directories of cgroup path rel (v1 hybrid and v2).
func escCgroupDirs(rel string) []string {
	var dirs []string
	if fi, err := os.Stat(filepath.Join("/sys/fs/cgroup", rel)); err == nil && fi.IsDir() {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", rel))
	}
	ctrls, _ := os.ReadDir("/sys/fs/cgroup")
	for _, c := range ctrls {
		p := filepath.Join("/sys/fs/cgroup", c.Name(), rel)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			dirs = append(dirs, p)
		}
	}
	return dirs
}

// assertContainerGone checks that container id has no bundle under stateDir and no cgroup.
func (s *escapeSuite) assertContainerGone(t *testing.T, id, stateDir, parent string) {
	t.Helper()
	if id == "" {
		t.Error("the result carries no container id")
		return
	}
	if _, err := os.Lstat(filepath.Join(stateDir, "bundles", id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("bundle of %s remains (%v)", id, err)
	}
	if d := escCgroupDirs(filepath.Join(parent, id)); len(d) > 0 {
		t.Errorf("cgroups of %s remain: %v", id, d)
	}
	out, err := exec.Command(s.runc, "--root", filepath.Join(stateDir, "root"), "state", id).CombinedOutput()
	if err == nil {
		t.Errorf("runc still knows container %s: %s", id, out)
	}
}

// checkNoLeftovers runs after every case: no bundle, runc container, cgroup or process of the
// suite may remain.
func (s *escapeSuite) checkNoLeftovers(t *testing.T) {
	if ents, err := os.ReadDir(filepath.Join(s.stateDir, "bundles")); err == nil && len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("bundles left in %s: %v", s.stateDir, names)
	}
	root := filepath.Join(s.stateDir, "root")
	if _, err := os.Stat(root); err == nil {
		out, err := exec.Command(s.runc, "--root", root, "list", "-q").CombinedOutput()
		if err != nil {
			t.Errorf("runc list: %v: %s", err, out)
		} else if strings.TrimSpace(string(out)) != "" {
			t.Errorf("runc still lists containers: %s", out)
		}
	}
	for _, dir := range escCgroupDirs(s.cgroupParent) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() {
				t.Errorf("cgroup left behind: %s", filepath.Join(dir, e.Name()))
			}
		}
		os.Remove(dir) // the suite's own parent; fails harmlessly if something is left inside
	}
	if left := escProcessesWith(s.marker); len(left) > 0 {
		t.Errorf("processes of the suite still running: %v", left)
	}
}

// escPidsWith lists the pids of escProcessesWith.
func escPidsWith(marker string) []string {
	var pids []string
	for _, p := range escProcessesWith(marker) {
		pid, _, _ := strings.Cut(p, ":")
		pids = append(pids, pid)
	}
	return pids
}

// escProcessesWith lists host processes whose environment or command line contains marker.
func escProcessesWith(marker string) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := strconv.Itoa(os.Getpid())
	var found []string
	for _, e := range ents {
		pid := e.Name()
		if pid == self || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		for _, f := range []string{"environ", "cmdline"} {
			b, err := os.ReadFile(filepath.Join("/proc", pid, f))
			if err == nil && bytes.Contains(b, []byte(marker)) {
				cmd, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
				found = append(found, pid+":"+string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
				break
			}
		}
	}
	return found
}

// escBuildProbe builds integration/probe statically into a fresh 0755 directory.
func escBuildProbe(t *testing.T) string {
	dir := t.TempDir()
	escChmod(t, dir, 0o755)
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "probe"), "./probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, out)
	}
	return dir
}

// escProbeAttempt is one JSON line of the probe.
type escProbeAttempt struct {
	Op    string `json:"op"`
	OK    bool   `json:"ok"`
	Errno string `json:"errno"`
	Err   string `json:"err"`
}

func escProbeAttempts(t *testing.T, out []byte) map[string]escProbeAttempt {
	t.Helper()
	m := map[string]escProbeAttempt{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var a escProbeAttempt
		if err := json.Unmarshal(line, &a); err != nil {
			t.Fatalf("probe line %q: %v", line, err)
		}
		m[a.Op] = a
	}
	return m
}

func escParseIDs(t *testing.T, out []byte) map[string]int {
	t.Helper()
	var ids map[string]int
	if err := json.Unmarshal(bytes.TrimSpace(out), &ids); err != nil {
		t.Fatalf("probe ids output %q: %v", out, err)
	}
	return ids
}

// escParseStatus reads "Key:\tvalue" lines of /proc/self/status.
func escParseStatus(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.ContainsAny(k, " =") {
			if _, seen := m[k]; !seen {
				m[k] = strings.TrimSpace(v)
			}
		}
	}
	return m
}

// escHashTree maps every path under root to its type, mode, owner, size, content hash or link target.
func escHashTree(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d %d", fi.Mode(), st.Uid, st.Gid, fi.Size())
		switch {
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			desc += " " + hex.EncodeToString(h.Sum(nil))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		rel, _ := filepath.Rel(root, p)
		m[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("hashing %s: %v", root, err)
	}
	return m
}

func escAssertTreeUnchanged(t *testing.T, root string, before map[string]string) {
	t.Helper()
	after := escHashTree(t, root)
	for p, d := range before {
		if after[p] != d {
			t.Errorf("host %s changed: %q -> %q", filepath.Join(root, p), d, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("host %s appeared", filepath.Join(root, p))
		}
	}
}

func escRandomToken(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func escWriteFile(t *testing.T, p, data string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	escChmod(t, p, mode)
}

func escChmod(t *testing.T, p string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func escCopyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func escTruncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func escRegexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// escRegexpFind returns the first submatch of pattern in s, or "".
func escRegexpFind(pattern, s string) string {
	if m := regexp.MustCompile(pattern).FindStringSubmatch(s); len(m) > 1 {
		return m[1]
	}
	return ""
}
