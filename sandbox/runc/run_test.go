package runc

import (
	"bytes"
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

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
)

// TestRunIsolation runs commands that observe one isolation property each from inside a real
// container. Every case names the property; docs/sandbox.md lists the same ones.
func TestRunIsolation(t *testing.T) {
	b := newTestBackend(t)
	tests := []struct {
		name       string
		opts       []sandbox.Option
		script     string
		wantCode   int
		wantStdout string // exact, unless empty
		contains   string // substring of stdout
	}{
		{"exit code propagated", nil, "exit 3", 3, "", ""},
		{"uid and gid 65534 without supplementary groups", nil, "id", 0, "uid=65534 gid=65534\n", ""},
		{"hostname airlock", nil, "hostname", 0, "airlock\n", ""},
		{"env is exactly the spec's", []sandbox.Option{sandbox.WithEnv("ONLY=this")}, "env | sort", 0, wantEnv(t, "ONLY=this"), ""},
		{"read-only root", nil, "touch /bin/x 2>/dev/null && echo wrote || echo refused", 0, "refused\n", ""},
		{"tmp is a writable 1777 tmpfs", nil, "echo x > /tmp/f && cat /tmp/f && stat -c %a /tmp", 0, "x\n1777\n", ""},
		{"no capabilities", nil, "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status", 0,
			"CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n", ""},
		{"no_new_privs", nil, "grep NoNewPrivs /proc/self/status", 0, "NoNewPrivs:\t1\n", ""},
		{"seccomp filter on", nil, "grep '^Seccomp:' /proc/self/status", 0, "Seccomp:\t2\n", ""},
		{"loopback only", nil, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", 0, "lo\n", ""},
		{"new pid namespace", nil, "set -- /proc/[0-9]*; echo $#; [ $1 = /proc/1 ] && [ $2 = /proc/$$ ] && echo init and shell", 0, "2\ninit and shell\n", ""}, // builtins only: pid 1 is the sandbox init, the shell its only child
		{"RLIMIT_CORE 0 and NOFILE 1024", nil, "ulimit -c; ulimit -n", 0, "0\n1024\n", ""},
		{"masked proc paths read empty", nil, "for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/acpi /proc/scsi /sys/firmware; do [ -e $p ] || continue; [ -d $p ] && n=$(ls $p | wc -l) || n=$(wc -c < $p); [ $n -eq 0 ] || echo $p $n; done; echo done", 0, "done\n", ""},
		{"proc sys read-only", nil, "grep ' /proc/sys ' /proc/self/mounts | grep -c '[ ,]ro[ ,]'", 0, "1\n", ""},
		{"sys read-only", nil, "grep ' /sys ' /proc/self/mounts | grep -c '[ ,]ro[ ,]'", 0, "1\n", ""},
		{"no cgroupfs", nil, "grep -c cgroup /proc/self/mounts", 1, "0\n", ""},
		{"stdin at end-of-file", nil, "cat; echo eof", 0, "eof\n", ""},
		{"stdin from spec", []sandbox.Option{sandbox.WithStdin([]byte("fed in"))}, "cat", 0, "fed in", ""},
		{"minimal dev", nil, "ls /dev | tr '\\n' ' '", 0, "", "null"},
		{"pids limit", []sandbox.Option{sandbox.WithPids(10)}, "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done 2>&1; wait", 2, "", "can't fork"}, // the init's threads hold 4-5
		{"command not found is 127", nil, "", 127, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			argv := []string{"sh", "-c", tt.script}
			if tt.name == "command not found is 127" {
				argv = []string{"no-such-command"}
			}
			s := spec(t, append([]sandbox.Option{sandbox.WithArgv(argv...), sandbox.WithTimeout(20 * time.Second)}, tt.opts...)...)
			res, err := b.Run(context.Background(), s)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.ExitCode != tt.wantCode {
				t.Errorf("exit code %d, want %d; stdout %q stderr %q", res.ExitCode, tt.wantCode, res.Stdout, res.Stderr)
			}
			if tt.wantStdout != "" && string(res.Stdout) != tt.wantStdout {
				t.Errorf("stdout %q, want %q (stderr %q)", res.Stdout, tt.wantStdout, res.Stderr)
			}
			if tt.contains != "" && !strings.Contains(string(res.Stdout), tt.contains) {
				t.Errorf("stdout %q does not contain %q", res.Stdout, tt.contains)
			}
			if res.TimedOut || res.OOMKilled {
				t.Errorf("unexpected timed_out=%v oom=%v", res.TimedOut, res.OOMKilled)
			}
		})
	}
	t.Cleanup(func() { assertNoLeftovers(t, b) })
}

// wantEnv is `env | sort` inside a container of a default Spec with extra variables: exactly
// the Spec's environment plus the two variables sh sets itself.
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
			if err := os.Chown(ws, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(filepath.Join(ws, "f"), 65534, 65534); err != nil {
				t.Fatal(err)
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
		})
	}
	// A copy mount's upper layer lives in the bundle, which is gone after the run.
	assertNoLeftovers(t, b)
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
	assertNoLeftovers(t, b)
}

// TestRunOutputCap floods 100 MB through a 1 MiB stdout cap: the run completes, keeps exactly
// the cap and says it truncated; the retained buffer is no larger than the cap.
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
	assertNoLeftovers(t, b)
}

// hostHasProcess reports whether any host process has marker among its arguments.
func hostHasProcess(t *testing.T, marker string) bool {
	t.Helper()
	return hasProcess(marker)
}

// hasProcess reports whether a host process has marker as one of its arguments.
func hasProcess(marker string) bool {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(string(b), "\x00"), marker) {
			return true
		}
	}
	return false
}

// waitGone polls until no host process carries marker (the kernel reaps asynchronously).
func waitGone(t *testing.T, marker string) {
	t.Helper()
	for range 100 {
		if !hostHasProcess(t, marker) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("a process with argument %s survived its sandbox", marker)
}

func uniqueSleep(t *testing.T) string {
	return fmt.Sprintf("%d", 900000+time.Now().UnixNano()%99999)
}

func TestRunTimeoutKillsEverything(t *testing.T) {
	b := newTestBackend(t)
	marker := uniqueSleep(t)
	start := time.Now()
	res, err := b.Run(context.Background(), spec(t,
		sandbox.WithArgv("sh", "-c", "sleep "+marker+" & echo started; sleep "+marker),
		// Long enough for sh to start and print on a loaded host (make test runs the
		// backends' suites side by side), short enough to show the kill.
		sandbox.WithTimeout(3*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.ExitCode != sandbox.ExitTimeout {
		t.Errorf("timed_out %v exit %d; want true 124", res.TimedOut, res.ExitCode)
	}
	if string(res.Stdout) != "started\n" {
		t.Errorf("output before the timeout lost: %q", res.Stdout)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("timeout of 3s took %s", d)
	}
	waitGone(t, marker)
	assertNoLeftovers(t, b)
}

func TestRunBackgroundChildDiesWithInit(t *testing.T) {
	b := newTestBackend(t)
	marker := uniqueSleep(t)
	res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("sh", "-c", "sleep "+marker+" >/dev/null 2>&1 & echo bg")))
	if err != nil || res.ExitCode != 0 || string(res.Stdout) != "bg\n" {
		t.Fatalf("res %+v err %v", res, err)
	}
	waitGone(t, marker)
	assertNoLeftovers(t, b)
}

func TestRunContextCancel(t *testing.T) {
	b := newTestBackend(t)
	marker := uniqueSleep(t)
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	res, err := b.Run(ctx, spec(t, sandbox.WithArgv("sh", "-c", "sleep "+marker+" & sleep "+marker)))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want one wrapping context.DeadlineExceeded", err)
	}
	// The caller's cancellation is not the spec's timeout: the command started (it has a
	// container) and was killed on the caller's behalf.
	if res.TimedOut || res.ExitCode != sandbox.ExitKilled || res.ContainerID == "" || !res.Ran {
		t.Errorf("timed_out %v exit %d container %q ran %v; want false 137, the container id and ran", res.TimedOut, res.ExitCode, res.ContainerID, res.Ran)
	}
	waitGone(t, marker)
	assertNoLeftovers(t, b)

	// An already-cancelled context starts nothing.
	if _, err := b.Run(ctx, spec(t, sandbox.WithArgv("true"))); !errors.Is(err, context.DeadlineExceeded) {
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
	assertNoLeftovers(t, b)
}

// TestRunSignalExit: a command killed by a signal from outside exits 128+n.
func TestRunSignalExit(t *testing.T) {
	b := newTestBackend(t)
	done := make(chan struct{})
	var res sandbox.Result
	var err error
	go func() {
		defer close(done)
		res, err = b.Run(context.Background(), spec(t, sandbox.WithArgv("sleep", "30")))
	}()
	id := fmt.Sprintf("airlock-%s-1", b.token)
	killed := false
	for i := 0; i < 500 && !killed; i++ {
		time.Sleep(10 * time.Millisecond)
		// Kill only a running container: one still being created fails to start instead.
		if out, _ := b.runcCmd(context.Background(), "state", id); !bytes.Contains(out, []byte(`"status": "running"`)) {
			continue
		}
		_, kerr := b.runcCmd(context.Background(), "kill", id, "KILL")
		killed = kerr == nil
	}
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if !killed || res.ExitCode != 128+9 || res.TimedOut || res.OOMKilled {
		t.Errorf("killed %v: exit %d timed_out %v oom %v; want 137 false false", killed, res.ExitCode, res.TimedOut, res.OOMKilled)
	}
	assertNoLeftovers(t, b)
}

func TestRunParallel(t *testing.T) {
	b := newTestBackend(t)
	const n = 20
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
	assertNoLeftovers(t, b)
}

func TestRunRefusals(t *testing.T) {
	b := newTestBackend(t)
	tests := []struct {
		name    string
		seccomp func(string, sandbox.Network) (*specs.LinuxSeccomp, error)
		spec    sandbox.Spec
		want    string
	}{
		{"seccomp error refuses the run", func(string, sandbox.Network) (*specs.LinuxSeccomp, error) {
			return nil, errors.New("profile broken")
		}, spec(t, sandbox.WithArgv("true")), "profile broken"},
		{"nil filter for a confined profile refuses the run", func(string, sandbox.Network) (*specs.LinuxSeccomp, error) {
			return nil, nil
		}, spec(t, sandbox.WithArgv("true")), "refusing to run without seccomp"},
		{"unknown image", nil, spec(t, sandbox.WithArgv("true"), sandbox.WithImage("nope")), "airlock images build nope"},
		{"invalid spec", nil, sandbox.Spec{}, "invalid sandbox spec"},
		{"copy of a missing dir", nil, spec(t, sandbox.WithArgv("true"), sandbox.WithWorkspace("/nonexistent/dir", sandbox.CopyOnWrite)), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.seccomp != nil {
				orig := b.seccompFor
				b.seccompFor = tt.seccomp
				defer func() { b.seccompFor = orig }()
			}
			res, err := b.Run(context.Background(), tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q (res %+v)", err, tt.want, res)
			}
			if res.Ran {
				t.Error("a refused run reports that its command ran")
			}
		})
	}
	assertNoLeftovers(t, b)
}

func TestRunAfterClose(t *testing.T) {
	b := newTestBackend(t)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("true"))); !errors.Is(err, sandbox.ErrUnavailable) {
		t.Errorf("Run after Close: %v", err)
	}
	if _, err := os.Stat(b.lockPath(b.token)); !os.IsNotExist(err) {
		t.Errorf("owner lock file still there after Close: %v", err)
	}
}

func TestLoosenedCopied(t *testing.T) {
	b := newTestBackend(t)
	res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("true"), sandbox.WithWorkspace(t.TempDir(), sandbox.ReadWrite)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Loosened, []string{"workspace:rw"}) {
		t.Errorf("Loosened = %v", res.Loosened)
	}
	if !bytes.HasPrefix([]byte(res.ContainerID), []byte("airlock-"+b.token+"-")) {
		t.Errorf("container id %q", res.ContainerID)
	}
}

// TestRunPanicCleansUp: a panic while the container runs (or is still being created) still
// removes the container, its processes, cgroup and bundle.
func TestRunPanicCleansUp(t *testing.T) {
	for _, tc := range []struct {
		name        string
		waitRunning bool
	}{{"while creating", false}, {"while running", true}} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestBackend(t)
			marker := uniqueSleep(t)
			b.afterStart = func(id string) {
				for i := 0; tc.waitRunning && i < 500 && !containerRunning(t, b, id); i++ {
					time.Sleep(10 * time.Millisecond)
				}
				panic("boom")
			}
			func() {
				defer func() {
					if r := recover(); r != "boom" {
						t.Errorf("recovered %v, want the panic to propagate", r)
					}
				}()
				_, _ = b.Run(context.Background(), spec(t, sandbox.WithArgv("sh", "-c", "sleep "+marker+" & sleep "+marker)))
			}()
			waitGone(t, marker)
			assertNoLeftovers(t, b)
		})
	}
}

// TestRunRefusesOtherRuntimes: a profile that asks for gVisor or a VM runtime is refused
// here rather than run under plain runc with less isolation than it asked for.
func TestRunRefusesOtherRuntimes(t *testing.T) {
	b := newTestBackend(t)
	for _, rt := range []string{"runsc", "kata"} {
		res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("true"), sandbox.WithRuntime(rt)))
		if !errors.Is(err, sandbox.ErrInvalidSpec) || !strings.Contains(err.Error(), "--backend docker") || res.Ran {
			t.Errorf("runtime %s: ran %v, err %v; want ErrInvalidSpec naming the docker backend", rt, res.Ran, err)
		}
	}
	if res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("true"), sandbox.WithRuntime("runc"))); err != nil || res.ExitCode != 0 {
		t.Errorf("runtime runc: %+v, %v; want it to run", res, err)
	}
	if _, err := sandbox.New(sandbox.WithRuntime("/usr/bin/runc")); !errors.Is(err, sandbox.ErrInvalidSpec) {
		t.Errorf("a runtime path: %v, want ErrInvalidSpec", err)
	}
}
