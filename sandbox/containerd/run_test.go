package containerd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// TestRunIsolation runs commands that observe one isolation property each from inside a real
// containerd container.
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
		{"echo", nil, "echo hello", 0, "hello\n", ""},
		{"exit code propagated", nil, "exit 3", 3, "", ""},
		{"signal exit is 128+n", nil, "kill -TERM $$", 143, "", ""},
		{"uid and gid 65534 without supplementary groups", nil, "id -u; id -g; grep ^Groups: /proc/self/status | tr -d ' \\t'", 0, "65534\n65534\nGroups:\n", ""},
		{"hostname airlock", nil, "hostname", 0, "airlock\n", ""},
		{"env is exactly the spec's", []sandbox.Option{sandbox.WithEnv("ONLY=this")}, "env | grep -c ONLY=this", 0, "1\n", ""},
		{"read-only root", nil, "touch /bin/x 2>/dev/null && echo wrote || echo refused", 0, "refused\n", ""},
		{"tmp is a writable 1777 tmpfs", nil, "echo x > /tmp/f && cat /tmp/f && stat -c %a /tmp", 0, "x\n1777\n", ""},
		{"no capabilities", nil, "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status", 0,
			"CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n", ""},
		{"no_new_privs", nil, "grep NoNewPrivs /proc/self/status", 0, "NoNewPrivs:\t1\n", ""},
		{"seccomp filter on", nil, "grep '^Seccomp:' /proc/self/status", 0, "Seccomp:\t2\n", ""},
		{"loopback only", nil, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", 0, "lo\n", ""},
		{"new pid namespace", nil, "set -- /proc/[0-9]*; echo $#", 0, "2\n", ""}, // the sandbox init and this shell
		{"RLIMIT_CORE 0 and NOFILE 1024", nil, "ulimit -c; ulimit -n", 0, "0\n1024\n", ""},
		{"masked proc paths read empty", nil, "for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/acpi /proc/scsi /proc/cmdline /sys/firmware; do [ -e $p ] || continue; [ -d $p ] && n=$(ls $p | wc -l) || n=$(wc -c < $p); [ $n -eq 0 ] || echo $p $n; done; echo done", 0, "done\n", ""},
		{"proc sys read-only", nil, "grep ' /proc/sys ' /proc/self/mounts | grep -c '[ ,]ro[ ,]'", 0, "1\n", ""},
		{"sys read-only", nil, "grep ' /sys ' /proc/self/mounts | grep -c '[ ,]ro[ ,]'", 0, "1\n", ""},
		{"no cgroupfs", nil, "grep -c cgroup /proc/self/mounts", 1, "0\n", ""},
		{"stdin at end-of-file", nil, "cat; echo eof", 0, "eof\n", ""},
		{"stdin is /dev/null", nil, "readlink /proc/self/fd/0", 0, "/dev/null\n", ""},
		{"stdin from spec", []sandbox.Option{sandbox.WithStdin([]byte("fed in"))}, "cat", 0, "fed in", ""},
		{"large stdin", []sandbox.Option{sandbox.WithStdin(bytes.Repeat([]byte("y"), 1<<20))}, "wc -c", 0, "1048576\n", ""},
		{"stdin not read", []sandbox.Option{sandbox.WithStdin(bytes.Repeat([]byte("y"), 1<<20))}, "echo ignored", 0, "ignored\n", ""},
		{"stderr separate", nil, "echo out; echo err >&2", 0, "out\n", ""},
		{"pids limit", []sandbox.Option{sandbox.WithPids(10)}, "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2 & done 2>&1; wait", 2, "", "can't fork"},
		{"command not found is 127", nil, "", 127, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			argv := []string{"sh", "-c", tt.script}
			if tt.name == "command not found is 127" {
				argv = []string{"no-such-command"}
			}
			res, err := b.Run(context.Background(), spec(t, append([]sandbox.Option{sandbox.WithArgv(argv...)}, tt.opts...)...))
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.ExitCode != tt.wantCode {
				t.Errorf("exit code %d, want %d (stdout %q stderr %q)", res.ExitCode, tt.wantCode, res.Stdout, res.Stderr)
			}
			if tt.wantStdout != "" && string(res.Stdout) != tt.wantStdout {
				t.Errorf("stdout %q, want %q (stderr %q)", res.Stdout, tt.wantStdout, res.Stderr)
			}
			if tt.contains != "" && !strings.Contains(string(res.Stdout), tt.contains) {
				t.Errorf("stdout %q does not contain %q", res.Stdout, tt.contains)
			}
			if tt.name == "stderr separate" && string(res.Stderr) != "err\n" {
				t.Errorf("stderr %q, want \"err\\n\"", res.Stderr)
			}
			if !res.Ran || res.ContainerID == "" || res.TimedOut || res.OOMKilled {
				t.Errorf("ran %v container %q timed_out %v oom %v", res.Ran, res.ContainerID, res.TimedOut, res.OOMKilled)
			}
		})
	}
}

// TestRunMounts: the workspace is read-only by default, rw writes reach the host, and a copy
// lets the command write while the host directory stays untouched.
func TestRunMounts(t *testing.T) {
	b := newTestBackend(t)
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "file"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{ws, filepath.Join(ws, "file")} {
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	run := func(access sandbox.Access, script string) sandbox.Result {
		t.Helper()
		res, err := b.Run(context.Background(), spec(t, sandbox.WithWorkspace(ws, access), sandbox.WithWorkdir(sandbox.WorkspaceTarget), sandbox.WithArgv("sh", "-c", script)))
		if err != nil {
			t.Fatalf("%s: %v", access, err)
		}
		return res
	}
	if res := run(sandbox.ReadOnly, "cat file; echo new > new 2>/dev/null && echo wrote || echo refused"); string(res.Stdout) != "host\nrefused\n" {
		t.Errorf("ro workspace: %q %q", res.Stdout, res.Stderr)
	}
	if res := run(sandbox.CopyOnWrite, "echo changed > file && echo new > new && cat file new"); string(res.Stdout) != "changed\nnew\n" {
		t.Errorf("copy workspace: %q %q", res.Stdout, res.Stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "file")); string(b) != "host\n" {
		t.Errorf("copy mode changed the host file: %q", b)
	}
	if _, err := os.Stat(filepath.Join(ws, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("copy mode created a host file: %v", err)
	}
	if res := run(sandbox.ReadWrite, "echo rw > new && echo ok"); string(res.Stdout) != "ok\n" {
		t.Errorf("rw workspace: %q %q", res.Stdout, res.Stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "new")); string(b) != "rw\n" {
		t.Errorf("rw write did not reach the host: %q", b)
	}
}

// TestRunMissingWorkdirLeavesImageAlone: a working directory the image lacks is refused
// before runc could create it in the shared image directory.
func TestRunMissingWorkdirLeavesImageAlone(t *testing.T) {
	rootfs := copyRootfs(t)
	b := openTestBackend(t, testNamespace(t), t.TempDir(), fixedImage{rootfs: rootfs})
	_, err := b.Run(context.Background(), spec(t, sandbox.WithWorkdir("/nonexistent/dir"), sandbox.WithArgv("true")))
	if !errors.Is(err, sandbox.ErrInvalidSpec) {
		t.Errorf("err = %v, want ErrInvalidSpec", err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "nonexistent")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the image gained /nonexistent: %v", err)
	}
}

func TestRunOutputCap(t *testing.T) {
	b := newTestBackend(t)
	const limit = 1000
	res, err := b.Run(context.Background(), spec(t,
		sandbox.WithArgv("sh", "-c", "yes | head -c 5000000; printf tail >&2"),
		sandbox.WithOutputCaps(limit, 3)))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) != limit || !res.StdoutTruncated {
		t.Errorf("stdout len %d truncated %v; want %d true", len(res.Stdout), res.StdoutTruncated, limit)
	}
	if string(res.Stderr) != "tai" || !res.StderrTruncated || !res.Truncated() {
		t.Errorf("stderr %q truncated %v; want \"tai\" true", res.Stderr, res.StderrTruncated)
	}
	if res.ExitCode != 0 {
		t.Errorf("exit %d", res.ExitCode)
	}
	// Output that fits is whole, not truncated.
	res, err = b.Run(context.Background(), spec(t, sandbox.WithArgv("sh", "-c", "head -c 200000 /dev/zero")))
	if err != nil || len(res.Stdout) != 200000 || res.Truncated() {
		t.Errorf("200000 bytes: got %d truncated %v err %v", len(res.Stdout), res.Truncated(), err)
	}
}

func TestRunTimeoutKillsEverything(t *testing.T) {
	b := newTestBackend(t)
	marker := uniqueSleep()
	start := time.Now()
	res, err := b.Run(context.Background(), spec(t,
		sandbox.WithArgv("sh", "-c", "sleep "+marker+" & echo started; sleep "+marker),
		sandbox.WithTimeout(500*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.ExitCode != sandbox.ExitTimeout || !res.Ran {
		t.Errorf("timed_out %v exit %d ran %v; want true 124 true", res.TimedOut, res.ExitCode, res.Ran)
	}
	if string(res.Stdout) != "started\n" {
		t.Errorf("output before the timeout lost: %q", res.Stdout)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("timeout of 500ms took %s", d)
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
	b.afterStart = func(string) { time.AfterFunc(300*time.Millisecond, cancel) }
	res, err := b.Run(ctx, spec(t, sandbox.WithArgv("sh", "-c", "sleep "+marker+" & sleep "+marker)))
	b.afterStart = nil
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want one wrapping context.Canceled", err)
	}
	if res.TimedOut || res.ExitCode != sandbox.ExitKilled || res.ContainerID == "" || !res.Ran {
		t.Errorf("timed_out %v exit %d container %q ran %v; want false 137, the container id and ran", res.TimedOut, res.ExitCode, res.ContainerID, res.Ran)
	}
	waitGone(t, marker)
	assertNoLeftovers(t, b)

	// An already-cancelled context starts nothing.
	if res, err := b.Run(ctx, spec(t, sandbox.WithArgv("true"))); !errors.Is(err, context.Canceled) || res.Ran {
		t.Errorf("run with a done context: err = %v ran %v", err, res.Ran)
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
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	outs := make([]string, n)
	ids := make([]string, n)
	for i := range n {
		wg.Go(func() {
			res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("sh", "-c", "echo $0", "run"+string(rune('a'+i)))))
			errs[i], outs[i], ids[i] = err, string(res.Stdout), res.ContainerID
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("run %d: %v", i, errs[i])
		}
		if want := "run" + string(rune('a'+i)) + "\n"; outs[i] != want {
			t.Errorf("run %d: stdout %q, want %q", i, outs[i], want)
		}
		if seen[ids[i]] {
			t.Errorf("container id %s used twice", ids[i])
		}
		seen[ids[i]] = true
	}
}

func TestRunRefusals(t *testing.T) {
	b := newTestBackend(t)
	if _, err := b.Run(context.Background(), spec(t, sandbox.WithImage("no-such-image"), sandbox.WithArgv("true"))); err == nil {
		t.Error("unknown image: no error")
	}
	bad := spec(t, sandbox.WithArgv("true"))
	bad.Argv = nil
	if res, err := b.Run(context.Background(), bad); !errors.Is(err, sandbox.ErrInvalidSpec) || res.Ran {
		t.Errorf("empty argv: err %v ran %v", err, res.Ran)
	}
}

func TestRunAfterClose(t *testing.T) {
	b := openTestBackend(t, testNamespace(t), t.TempDir(), storeImages(t))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("true"))); !errors.Is(err, sandbox.ErrUnavailable) {
		t.Errorf("run after Close: %v", err)
	}
}

func TestLoosenedCopied(t *testing.T) {
	b := newTestBackend(t)
	res, err := b.Run(context.Background(), spec(t, sandbox.WithSeccomp(sandbox.SeccompUnconfined), sandbox.WithArgv("sh", "-c", "grep '^Seccomp:' /proc/self/status")))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Loosened) == 0 || string(res.Stdout) != "Seccomp:\t0\n" {
		t.Errorf("loosened %v stdout %q", res.Loosened, res.Stdout)
	}
}

// TestRunReportsImageWithoutInit: an image without the sandbox init is an error that says to
// rebuild it, and nothing ran.
func TestRunReportsImageWithoutInit(t *testing.T) {
	rootfs := copyRootfs(t)
	if err := os.RemoveAll(filepath.Join(rootfs, ".airlock")); err != nil {
		t.Fatal(err)
	}
	b := openTestBackend(t, testNamespace(t), t.TempDir(), fixedImage{rootfs: rootfs})
	res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("true")))
	if err == nil || !strings.Contains(err.Error(), "airlock images build") || res.Ran {
		t.Errorf("err = %v ran %v; want an error saying to rebuild the image, not ran", err, res.Ran)
	}
}

// TestRunCancelledWhileCreating: a call cancelled at any point of container and task creation
// leaves nothing behind, even when the daemon finishes what the cancelled call asked for.
func TestRunCancelledWhileCreating(t *testing.T) {
	b := newTestBackend(t)
	for _, d := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 60 * time.Millisecond, 120 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		res, err := b.Run(ctx, spec(t, sandbox.WithArgv("sleep", "5")))
		cancel()
		if err == nil {
			t.Errorf("cancel after %s: no error (%+v)", d, res)
		}
		assertNoLeftovers(t, b)
	}
}
