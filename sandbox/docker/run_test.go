package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// TestRunIsolation runs commands that observe one isolation property each from inside a real
// Docker container: the same properties the runc backend's test observes.
func TestRunIsolation(t *testing.T) {
	b := newTestBackend(t)
	tests := []struct {
		name       string
		opts       []sandbox.Option
		argv       []string // default: sh -c script
		script     string
		wantCode   int
		wantStdout string // exact, unless empty
		contains   string // substring of stdout
	}{
		{"echo", nil, []string{"echo", "hello"}, "", 0, "hello\n", ""},
		{"exit code propagated", nil, nil, "exit 3", 3, "", ""},
		{"command not found is 127", nil, []string{"no-such-command"}, "", 127, "", ""},
		{"uid and gid 65534 without supplementary groups", nil, nil, "id", 0, "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n", ""},
		{"hostname airlock", nil, nil, "hostname", 0, "airlock\n", ""},
		{"env is the spec's plus Docker's HOSTNAME", []sandbox.Option{sandbox.WithEnv("ONLY=this")}, nil, "env | sort", 0, wantEnv(t, "ONLY=this", "HOSTNAME=airlock"), ""},
		{"read-only root", nil, nil, "touch /bin/x 2>/dev/null && echo wrote || echo refused", 0, "refused\n", ""},
		{"tmp is a writable, executable 1777 tmpfs", nil, nil, "echo x > /tmp/f && cat /tmp/f && stat -c %a /tmp && grep ' /tmp ' /proc/self/mounts | grep -c noexec", 1, "x\n1777\n0\n", ""},
		{"tmp size capped", nil, nil, "grep ' /tmp ' /proc/self/mounts", 0, "", "size=65536k"},
		{"dev shm capped", nil, nil, "grep ' /dev/shm ' /proc/self/mounts", 0, "", "size=65536k"},
		{"no capabilities", nil, nil, "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status", 0,
			"CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n", ""},
		{"no_new_privs", nil, nil, "grep NoNewPrivs /proc/self/status", 0, "NoNewPrivs:\t1\n", ""},
		{"seccomp filter on", nil, nil, "grep '^Seccomp:' /proc/self/status", 0, "Seccomp:\t2\n", ""},
		{"seccomp is Airlock's, not Docker's default: no inet sockets", nil, nil, "nc 127.0.0.1 1 </dev/null 2>&1; true", 0, "", "not permitted"},
		{"loopback only", nil, nil, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", 0, "lo\n", ""},
		{"loopback up", nil, nil, "cat /sys/class/net/lo/flags", 0, "0x9\n", ""},
		{"new pid namespace, init is the sandbox init", nil, nil, "set -- /proc/[0-9]*; echo $#; [ $1 = /proc/1 ] && [ $2 = /proc/$$ ] && echo init and shell; tr '\\0' ' ' < /proc/1/cmdline | cut -d' ' -f2", 0, "2\ninit and shell\ninit\n", ""},
		{"RLIMIT_CORE 0 and NOFILE 1024", nil, nil, "ulimit -c; ulimit -n", 0, "0\n1024\n", ""},
		{"masked proc paths read empty", nil, nil, "for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/acpi /proc/scsi /sys/firmware /proc/cmdline /proc/slabinfo; do [ -e $p ] || continue; [ -d $p ] && n=$(ls $p | wc -l) || n=$(wc -c < $p); [ $n -eq 0 ] || echo $p $n; done; echo done", 0, "done\n", ""},
		{"proc sys read-only", nil, nil, "grep ' /proc/sys ' /proc/self/mounts | grep -c '[ ,]ro[ ,]'", 0, "1\n", ""},
		{"sys read-only", nil, nil, "grep ' /sys ' /proc/self/mounts | grep -c '[ ,]ro[ ,]'", 0, "1\n", ""},
		{"stdin at end-of-file", nil, nil, "cat; echo eof", 0, "eof\n", ""},
		{"stdin from spec", []sandbox.Option{sandbox.WithStdin([]byte("fed in"))}, nil, "cat", 0, "fed in", ""},
		// The limits themselves are in TestTranslateParity and the OOM tests: Docker's cgroup
		// file system is masked, so nothing of the host's cgroups can be read inside.
		{"cgroup file system masked", nil, nil, "ls -A /sys/fs/cgroup | wc -l", 0, "0\n", ""},
		{"pids limit", []sandbox.Option{sandbox.WithPids(10)}, nil, "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done 2>&1; wait", 2, "", "can't fork"},
		{"stderr separate", nil, nil, "echo out; echo err >&2", 0, "out\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			argv := tt.argv
			if argv == nil {
				argv = []string{"sh", "-c", tt.script}
			}
			s := spec(t, append([]sandbox.Option{sandbox.WithArgv(argv...), sandbox.WithTimeout(30 * time.Second)}, tt.opts...)...)
			res, err := b.Run(context.Background(), s)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if !res.Ran || res.ContainerID == "" {
				t.Errorf("ran %v container %q", res.Ran, res.ContainerID)
			}
			if res.ExitCode != tt.wantCode {
				t.Errorf("exit code %d, want %d; stdout %q stderr %q", res.ExitCode, tt.wantCode, res.Stdout, res.Stderr)
			}
			if tt.wantStdout != "" && string(res.Stdout) != tt.wantStdout {
				t.Errorf("stdout %q, want %q (stderr %q)", res.Stdout, tt.wantStdout, res.Stderr)
			}
			if tt.contains != "" && !strings.Contains(string(res.Stdout), tt.contains) {
				t.Errorf("stdout %q does not contain %q (stderr %q)", res.Stdout, tt.contains, res.Stderr)
			}
			if tt.name == "stderr separate" && string(res.Stderr) != "err\n" {
				t.Errorf("stderr %q", res.Stderr)
			}
			if res.TimedOut || res.OOMKilled {
				t.Errorf("unexpected timed_out=%v oom=%v", res.TimedOut, res.OOMKilled)
			}
		})
	}
}

// wantEnv is `env | sort` inside a container of a default Spec with extra variables: exactly
// the Spec's environment plus the variables sh sets itself.
func wantEnv(t *testing.T, extra ...string) string {
	s := sandbox.Defaults()
	if err := sandbox.WithEnv(extra...)(&s); err != nil {
		t.Fatal(err)
	}
	env := append(s.Env, "PWD=/", "SHLVL=1")
	slices.Sort(env)
	return strings.Join(env, "\n") + "\n"
}

// TestRunMounts checks workspace access modes against the host directory.
func TestRunMounts(t *testing.T) {
	b := newTestBackend(t)
	tests := []struct {
		name       string
		access     sandbox.Access
		wantCode   int
		wantHost   string // content of the host file afterwards
		wantNew    bool   // whether the new file exists on the host afterwards
		wantLoosen bool
	}{
		{"ro writes refused and host unchanged", sandbox.ReadOnly, 1, "original\n", false, false},
		{"rw writes reach the host", sandbox.ReadWrite, 0, "changed\n", true, true},
		{"copy writes visible inside and host unchanged", sandbox.CopyOnWrite, 0, "original\n", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := t.TempDir()
			if err := os.WriteFile(filepath.Join(ws, "f"), []byte("original\n"), 0o666); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{ws, filepath.Join(ws, "f")} {
				if err := os.Chown(p, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			}
			s := spec(t, sandbox.WithArgv("sh", "-c", "echo changed > f && echo new > new && cat f new"),
				sandbox.WithWorkspace(ws, tt.access))
			res, err := b.Run(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tt.wantCode {
				t.Errorf("exit %d, want %d: %q %q", res.ExitCode, tt.wantCode, res.Stdout, res.Stderr)
			}
			if tt.wantCode == 0 && string(res.Stdout) != "changed\nnew\n" {
				t.Errorf("inside the sandbox the writes did not show: %q", res.Stdout)
			}
			got, _ := os.ReadFile(filepath.Join(ws, "f"))
			if string(got) != tt.wantHost {
				t.Errorf("host file %q, want %q", got, tt.wantHost)
			}
			if _, err := os.Stat(filepath.Join(ws, "new")); (err == nil) != tt.wantNew {
				t.Errorf("host new file exists=%v, want %v", err == nil, tt.wantNew)
			}
			if slices.Contains(res.Loosened, "workspace:rw") != tt.wantLoosen {
				t.Errorf("Loosened = %v", res.Loosened)
			}
			assertNoLeftovers(t, b)
		})
	}
}

// TestRunWorkspaceBindIsolated: the workspace bind is non-recursive (a mount under the
// workspace on the host is not visible through it) and read-only.
func TestRunWorkspaceBindIsolated(t *testing.T) {
	b := newTestBackend(t)
	ws := t.TempDir()
	res, err := b.Run(context.Background(), spec(t,
		sandbox.WithArgv("sh", "-c", "grep ' /workspace ' /proc/self/mounts"),
		sandbox.WithWorkspace(ws, sandbox.ReadOnly)))
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || !strings.Contains(string(res.Stdout), " ro,") {
		t.Errorf("workspace mount %q (exit %d, stderr %q); want read-only", res.Stdout, res.ExitCode, res.Stderr)
	}
}

// TestRunCopyLayerCapped: a copy mount's writes live in a tmpfs capped at the memory limit, so
// filling it cannot fill the host's disk.
func TestRunCopyLayerCapped(t *testing.T) {
	b := newTestBackend(t)
	ws := t.TempDir()
	if err := os.Chown(ws, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	res, err := b.Run(context.Background(), spec(t,
		sandbox.WithArgv("sh", "-c", "dd if=/dev/zero of=/workspace/big bs=1048576 count=256"),
		sandbox.WithWorkspace(ws, sandbox.CopyOnWrite), sandbox.WithMemory(32<<20)))
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode == 0 {
		t.Errorf("writing 256 MiB into a copy workspace with a 32 MiB memory limit succeeded: %q", res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(ws, "big")); !os.IsNotExist(err) {
		t.Errorf("the copy reached the host: %v", err)
	}
}

// TestRunOutputCap floods 100 MB through a 1 MiB stdout cap: the run completes, keeps exactly
// the cap and says it truncated.
func TestRunOutputCap(t *testing.T) {
	b := newTestBackend(t)
	const limit = 1 << 20
	res, err := b.Run(context.Background(), spec(t,
		sandbox.WithArgv("sh", "-c", "dd if=/dev/zero bs=1048576 count=100 2>/dev/null; echo tail >&2"),
		sandbox.WithOutputCaps(limit, 3)))
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %q", res.ExitCode, res.Stderr)
	}
	if len(res.Stdout) != limit || cap(res.Stdout) > limit || !res.StdoutTruncated {
		t.Errorf("stdout len %d cap %d truncated %v; want %d, <= %d, true", len(res.Stdout), cap(res.Stdout), res.StdoutTruncated, limit, limit)
	}
	if string(res.Stderr) != "tai" || !res.StderrTruncated || !res.Truncated() {
		t.Errorf("stderr %q truncated %v; want \"tai\" true", res.Stderr, res.StderrTruncated)
	}
}

func TestRunTimeoutKillsEverything(t *testing.T) {
	b := newTestBackend(t)
	marker := uniqueSleep()
	start := time.Now()
	res, err := b.Run(context.Background(), spec(t,
		sandbox.WithArgv("sh", "-c", "sleep "+marker+" & echo started; sleep "+marker),
		sandbox.WithTimeout(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.ExitCode != sandbox.ExitTimeout || !res.Ran {
		t.Errorf("timed_out %v exit %d ran %v; want true 124 true", res.TimedOut, res.ExitCode, res.Ran)
	}
	if string(res.Stdout) != "started\n" {
		t.Errorf("output before the timeout lost: %q", res.Stdout)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("timeout of 1s took %s", d)
	}
	waitGone(t, marker)
}

func TestRunBackgroundChildDiesWithInit(t *testing.T) {
	b := newTestBackend(t)
	marker := uniqueSleep()
	res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("sh", "-c", "sleep "+marker+" >/dev/null 2>&1 & echo bg")))
	if err != nil || res.ExitCode != 0 || string(res.Stdout) != "bg\n" {
		t.Fatalf("res %+v err %v", res, err)
	}
	waitGone(t, marker)
}

func TestRunContextCancel(t *testing.T) {
	b := newTestBackend(t)
	marker := uniqueSleep()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Cancel once the command runs.
		for range 500 {
			if hasProcess(marker) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	res, err := b.Run(ctx, spec(t, sandbox.WithArgv("sh", "-c", "sleep "+marker+" & sleep "+marker)))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want one wrapping context.Canceled", err)
	}
	if res.TimedOut || res.ExitCode != sandbox.ExitKilled || res.ContainerID == "" || !res.Ran {
		t.Errorf("timed_out %v exit %d container %q ran %v; want false 137, the container id and ran", res.TimedOut, res.ExitCode, res.ContainerID, res.Ran)
	}
	waitGone(t, marker)
	assertNoLeftovers(t, b)

	// An already-cancelled context starts nothing.
	if _, err := b.Run(ctx, spec(t, sandbox.WithArgv("true"))); !errors.Is(err, context.Canceled) {
		t.Errorf("run with a done context: err = %v", err)
	}
}

func TestRunOOM(t *testing.T) {
	b := newTestBackend(t)
	res, err := b.Run(context.Background(), spec(t,
		sandbox.WithArgv("sh", "-c", `a=$(head -c 200000000 /dev/zero | tr '\0' x); echo survived`),
		sandbox.WithMemory(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	if !res.OOMKilled || res.ExitCode != sandbox.ExitKilled || res.TimedOut {
		t.Errorf("oom %v exit %d timed_out %v; want true 137 false (stdout %q stderr %q)", res.OOMKilled, res.ExitCode, res.TimedOut, res.Stdout, res.Stderr)
	}
}

func TestRunParallel(t *testing.T) {
	b := newTestBackend(t)
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, n)
	ids := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			want := fmt.Sprintf("run %d", i)
			res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("echo", want)))
			switch {
			case err != nil:
				errs <- err
			case res.ExitCode != 0 || string(res.Stdout) != want+"\n":
				errs <- fmt.Errorf("run %d: exit %d stdout %q stderr %q", i, res.ExitCode, res.Stdout, res.Stderr)
			}
			ids <- res.ContainerID
		})
	}
	wg.Wait()
	close(errs)
	close(ids)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("container id %s used twice", id)
		}
		seen[id] = true
	}
}

// TestRunHostImage: the host image's read-only binds of the host's /usr, /bin, /lib work on a
// local daemon.
func TestRunHostImage(t *testing.T) {
	b := newTestBackend(t, func(c *Config) { c.Images = testImages(t, "host") })
	res, err := b.Run(context.Background(), spec(t, sandbox.WithImage("host"),
		sandbox.WithArgv("sh", "-c", "ls /usr/bin | grep -c . >/dev/null && touch /usr/x 2>/dev/null || echo ro")))
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || string(res.Stdout) != "ro\n" {
		t.Errorf("exit %d stdout %q stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
}

// TestRunRemoteDaemonRefusesHostBinds: on a daemon that is not on a unix socket, the host
// image and workspace binds would mount another machine's directories; they are refused
// before anything is created.
func TestRunRemoteDaemonRefusesHostBinds(t *testing.T) {
	b := newTestBackend(t)
	b.local = false
	defer func() { b.local = true }()
	for _, s := range []sandbox.Spec{
		spec(t, sandbox.WithArgv("true"), sandbox.WithWorkspace(t.TempDir(), sandbox.ReadOnly)),
	} {
		res, err := b.Run(context.Background(), s)
		if !errors.Is(err, sandbox.ErrUnavailable) || !strings.Contains(err.Error(), "local docker daemon") || res.Ran {
			t.Errorf("err = %v ran %v; want ErrUnavailable naming the local daemon", err, res.Ran)
		}
	}
	img := sandbox.Image{Name: "host", ID: "sha256:0123456789abcdef", Rootfs: "/x", Binds: []sandbox.Mount{{Source: "/usr", Target: "/usr", Access: sandbox.ReadOnly}}}
	if err := b.checkLocal(spec(t, sandbox.WithArgv("true")), img); !errors.Is(err, sandbox.ErrUnavailable) || !strings.Contains(err.Error(), `image "host"`) {
		t.Errorf("host image on a remote daemon: %v", err)
	}
}

func TestRunRefusals(t *testing.T) {
	b := newTestBackend(t)
	tests := []struct {
		name string
		spec sandbox.Spec
		want string
	}{
		{"unknown image", spec(t, sandbox.WithArgv("true"), sandbox.WithImage("nope")), "nope"},
		{"invalid spec", sandbox.Spec{}, "invalid sandbox spec"},
		{"copy of a missing dir", spec(t, sandbox.WithArgv("true"), sandbox.WithWorkspace("/nonexistent/dir", sandbox.CopyOnWrite)), "no such file"},
		{"workdir that is a file", spec(t, sandbox.WithArgv("true"), sandbox.WithWorkdir("/bin/busybox")), "workdir /bin/busybox is not an existing directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := b.Run(context.Background(), tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q (res %+v)", err, tt.want, res)
			}
			if res.Ran {
				t.Error("a refused run reports that its command ran")
			}
		})
	}
}

func TestRunAfterClose(t *testing.T) {
	b := newTestBackend(t)
	b2, err := Open(context.Background(), Config{StateDir: filepath.Dir(b.dir), Images: b.images})
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Run(context.Background(), spec(t, sandbox.WithArgv("true"))); !errors.Is(err, sandbox.ErrUnavailable) {
		t.Errorf("Run after Close: %v", err)
	}
	if _, err := os.Stat(b2.lock.Path()); !os.IsNotExist(err) {
		t.Errorf("owner lock file still there after Close: %v", err)
	}
}

// resolverFunc resolves images with a function (tests that need an image of their own).
type resolverFunc func(ctx context.Context, name string) (sandbox.Image, error)

func (f resolverFunc) Resolve(ctx context.Context, name string) (sandbox.Image, error) {
	return f(ctx, name)
}

// TestRunImageWithoutInit: an image without the sandbox init cannot start; the command never
// ran (Ran false) and the error says to rebuild the image.
func TestRunImageWithoutInit(t *testing.T) {
	rootfs := t.TempDir()
	for _, d := range []string{"bin", "tmp", "proc", "dev", "sys", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	id := fmt.Sprintf("sha256:%064x", time.Now().UnixNano())
	b := newTestBackend(t, func(c *Config) {
		c.Images = resolverFunc(func(context.Context, string) (sandbox.Image, error) {
			return sandbox.Image{Name: "noinit", ID: id, Rootfs: rootfs}, nil
		})
	})
	t.Cleanup(func() {
		if ref, err := ImageRef(sandbox.Image{Name: "noinit", ID: id}); err == nil {
			_, _ = b.cli.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{Force: true})
		}
	})
	res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("true")))
	if err == nil || !strings.Contains(err.Error(), "airlock images build") || res.Ran {
		t.Errorf("err = %v ran %v; want an error naming `airlock images build` and ran false", err, res.Ran)
	}
}

// TestRunLargeStdin: stdin larger than any pipe buffer is streamed whole to a reader, and a
// command that never reads it still finishes at once (the writer does not hold the run).
func TestRunLargeStdin(t *testing.T) {
	b := newTestBackend(t)
	in := make([]byte, 8<<20)
	res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("sh", "-c", "wc -c"), sandbox.WithStdin(in)))
	if err != nil || res.ExitCode != 0 || strings.TrimSpace(string(res.Stdout)) != "8388608" {
		t.Errorf("wc -c of 8 MiB stdin: %q %q exit %d err %v", res.Stdout, res.Stderr, res.ExitCode, err)
	}
	start := time.Now()
	res, err = b.Run(context.Background(), spec(t, sandbox.WithArgv("true"), sandbox.WithStdin(in), sandbox.WithTimeout(20*time.Second)))
	if err != nil || res.ExitCode != 0 || res.TimedOut {
		t.Errorf("true with unread stdin: %+v %v", res, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a command that ignores stdin took %s", d)
	}
}

// TestRootRunCannotReadKernelHeapMaps: a run as uid 0 (a profile that runs as the workspace
// owner when root owns it) passes the owner check of /proc's 0400 root files; the kernel heap
// and page maps are masked. The control reads them on the host.
func TestRootRunCannotReadKernelHeapMaps(t *testing.T) {
	paths := []string{"/proc/slabinfo", "/proc/vmallocinfo", "/proc/pagetypeinfo"}
	var present []string
	for _, p := range paths {
		if f, err := os.Open(p); err == nil {
			if n, _ := f.Read(make([]byte, 1)); n == 1 {
				present = append(present, p)
			}
			f.Close()
		}
	}
	if len(present) == 0 {
		testenv.NotApplicable(t, "this kernel exposes none of %v to root on the host, so there is no heap or page map for the sandbox to mask", paths)
	}
	b := newTestBackend(t)
	script := "for p in " + strings.Join(present, " ") + "; do n=$(head -c 64 $p 2>/dev/null | wc -c); echo $p $n; done"
	res, err := b.Run(context.Background(), spec(t, sandbox.WithUser(0, 0), sandbox.WithArgv("sh", "-c", script)))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		if !strings.HasSuffix(l, " 0") {
			t.Errorf("uid 0 in the sandbox read %s bytes", l)
		}
	}
}
