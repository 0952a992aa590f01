package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/cgroup"
	"github.com/airlock-mcp/airlock/sandbox/oci"
	"github.com/airlock-mcp/airlock/sandbox/rundir"
)

// TestTimeoutHoldsWithoutAirlock: the container's timeout holds with no Airlock left to
// enforce it. A bundle generated exactly as Run generates it (Spec.Timeout 2 s) runs `sleep`
// with background children (one ignoring SIGTERM, one in its own session, one orphaned, one
// stopped) under a plain `runc run`, and runc is then SIGKILLed, as it is when Airlock dies
// (Pdeathsig): no host timer and no runc remain. The host sees every process of the container
// still alive after Spec.Timeout, and none left by Spec.Timeout + oci.InitGrace + 1 s: the
// sandbox init's own deadline killed them.
func TestTimeoutHoldsWithoutAirlock(t *testing.T) {
	b := newTestBackend(t)
	const timeout = 2 * time.Second
	marker := uniqueSleep(t)
	s := spec(t, sandbox.WithTimeout(timeout), sandbox.WithEnv(markerEnv+"="+marker), sandbox.WithArgv("sh", "-c",
		"sleep "+marker+" & (trap '' TERM; sleep "+marker+") & setsid sleep "+marker+" & "+
			"(sleep "+marker+" &) ; sleep "+marker+" & kill -STOP $! ; sleep "+marker))
	id, bundle := writeBundle(t, b, s)
	t.Cleanup(func() {
		if err := b.removeContainer(id, true); err != nil {
			t.Errorf("removing %s: %v", id, err)
		}
		if err := rundir.Remove(bundle, rundir.Detach); err != nil {
			t.Error(err)
		}
		assertNoLeftovers(t, b)
	})

	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	runc := exec.Command(b.runc, "--root", b.root, "run", "--bundle", bundle, id)
	runc.Stdout, runc.Stderr = stderr, stderr
	start := time.Now()
	if err := runc.Start(); err != nil {
		t.Fatal(err)
	}
	// Every process of the container: the init, and the sleeps with what runs them.
	container := func() []string { return processesOf(b, id, marker) }
	for len(container()) < 7 {
		if time.Since(start) > 20*time.Second {
			_ = runc.Process.Kill()
			out, _ := os.ReadFile(stderr.Name())
			t.Fatalf("the container never started its processes: %v; runc said %q", container(), out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the last forks
	procs := container()
	// Airlock dies; runc dies with it.
	if err := runc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = runc.Wait()
	t.Logf("runc SIGKILLed %s after starting the container", time.Since(start).Round(time.Millisecond))

	// Past Spec.Timeout, where Airlock's timer would have killed the container, it still runs:
	// runc's death did not end it, so what ends it below is the init's deadline.
	time.Sleep(time.Until(start.Add(timeout + 500*time.Millisecond)))
	if now := container(); len(now) != len(procs) {
		t.Fatalf("%s after the start %d processes run, want the %d there were (nothing should have killed them yet): %v",
			time.Since(start).Round(time.Millisecond), len(now), len(procs), now)
	}
	limit := start.Add(timeout + oci.InitGrace + time.Second)
	for left := container(); len(left) > 0; left = container() {
		if time.Now().After(limit) {
			t.Fatalf("%s after the start (timeout %s + grace %s + 1 s), %d of the container's %d processes still run with no Airlock: %v",
				time.Since(start).Round(time.Millisecond), timeout, oci.InitGrace, len(left), len(procs), left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("all %d processes of the container gone %s after the start", len(procs), time.Since(start).Round(time.Millisecond))
}

// writeBundle writes the bundle Run would write for s (same OCIConfig, cgroup and seccomp
// filter) into b's bundle directory, and returns the container id and the bundle path.
func writeBundle(t *testing.T, b *Backend, s sandbox.Spec) (id, bundle string) {
	t.Helper()
	sc, err := b.seccompFor(s.Seccomp, s.Network)
	if err != nil {
		t.Fatal(err)
	}
	img, err := b.images.Resolve(context.Background(), s.Image)
	if err != nil {
		t.Fatal(err)
	}
	id = fmt.Sprintf("airlock-%s-%d", b.token, b.seq.Add(1))
	cfg, err := OCIConfig(s, img, id, sc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Linux.CgroupsPath = cgroup.Path(b.cgroupParent, id)
	bundle = filepath.Join(b.bundles, id)
	if err := os.Mkdir(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return id, bundle
}

// markerEnv marks every process of a test's container in its environment.
const markerEnv = "AIRLOCK_INIT_TEST"

// processesOf lists the live host processes of container id of b: those in its cgroups, and
// those whose environment holds markerEnv=marker wherever they are. A zombie has left its
// cgroups and its environment reads empty, so it does not count.
func processesOf(b *Backend, id, marker string) []string {
	seen := map[string]bool{}
	for _, dir := range b.cg.paths(cgroup.Path(b.cgroupParent, id)) {
		procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, pid := range strings.Fields(string(procs)) {
			seen[pid] = true
		}
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*/environ")
	want := []byte(markerEnv + "=" + marker + "\x00")
	for _, d := range dirs {
		if env, err := os.ReadFile(d); err == nil && bytes.Contains(env, want) {
			seen[filepath.Base(filepath.Dir(d))] = true
		}
	}
	pids := make([]string, 0, len(seen))
	for pid := range seen {
		if _, err := os.Stat(filepath.Join("/proc", pid)); err == nil {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// TestInitRuns covers the sandbox init in real containers: it starts under both seccomp
// profiles, passes the command's status on, reports commands that cannot start as runc did,
// reaps orphans, survives a fork bomb at the pids limit, and is itself out of the command's
// reach.
func TestInitRuns(t *testing.T) {
	b := newTestBackend(t)
	tests := []struct {
		name   string
		opts   []sandbox.Option
		code   int
		stdout string // exact
		stderr string // exact, unless empty
	}{
		{name: "default profile", opts: []sandbox.Option{sandbox.WithArgv("sh", "-c", "echo ok; exit 7")}, code: 7, stdout: "ok\n"},
		{name: "files profile", opts: []sandbox.Option{sandbox.WithSeccomp(sandbox.SeccompFiles), sandbox.WithArgv("sh", "-c", "echo ok; exit 7")},
			code: 7, stdout: "ok\n"},
		{name: "files profile runs the toolbox", opts: []sandbox.Option{sandbox.WithSeccomp(sandbox.SeccompFiles),
			sandbox.WithArgv(oci.InitPath, "list_directory", `{}`)}, code: 0, stdout: `{"path":".","entries":[],"truncated":false}` + "\n"},
		{name: "killed by a signal is 128+N", opts: []sandbox.Option{sandbox.WithArgv("sh", "-c", "kill -KILL $$")}, code: 137},
		{name: "not found", opts: []sandbox.Option{sandbox.WithArgv("no-such-command", "x")}, code: 127,
			stderr: "airlock: \"no-such-command\": executable file not found in $PATH\n"},
		{name: "not found under files", opts: []sandbox.Option{sandbox.WithSeccomp(sandbox.SeccompFiles), sandbox.WithArgv("/no/such")}, code: 127,
			stderr: "airlock: \"/no/such\": stat /no/such: no such file or directory\n"},
		{name: "not executable", opts: []sandbox.Option{sandbox.WithArgv("/etc")}, code: 126, stderr: "airlock: \"/etc\": is a directory\n"},
		{name: "orphans are reaped", opts: []sandbox.Option{sandbox.WithArgv("sh", "-c",
			"(sleep 0.1 &); (sleep 0.1 &); (sleep 0.1 &); sleep 1; grep -l '^State:.Z' /proc/[0-9]*/status; echo done")}, code: 0, stdout: "done\n"},
		{name: "the command cannot touch the init", opts: []sandbox.Option{sandbox.WithArgv("sh", "-c",
			"for s in TERM INT HUP QUIT USR1 SEGV STOP KILL; do kill -$s 1; done; "+
				"cat /proc/1/environ /proc/1/mem 2>/dev/null || echo closed; grep -q '^State:.T' /proc/1/status || echo running; exit 5")},
			code: 5, stdout: "closed\nrunning\n"},
		{name: "fork bomb at the pids limit", opts: []sandbox.Option{sandbox.WithPids(24), sandbox.WithArgv("sh", "-c",
			"f() { sleep 3 & f & f & }; f; sleep 1; grep ^Threads /proc/1/status; exit 9")}, code: 9},
	}
	for _, tt := range tests {
		for _, warm := range []bool{false, true} {
			name := tt.name
			if warm {
				name = "warm/" + name
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				res, err := runMode(t, b, warm, spec(t, append([]sandbox.Option{sandbox.WithTimeout(20 * time.Second)}, tt.opts...)...))
				if err != nil {
					t.Fatal(err)
				}
				checkInitRun(t, res, tt.name, tt.code, tt.stdout, tt.stderr)
			})
		}
	}
	t.Cleanup(func() { assertNoLeftovers(t, b) })
}

// checkInitRun checks one TestInitRuns case's result.
func checkInitRun(t *testing.T, res sandbox.Result, name string, code int, stdout, stderr string) {
	t.Helper()
	if res.ExitCode != code || res.TimedOut || res.OOMKilled {
		t.Errorf("exit %d timed_out %v oom %v, want %d (stdout %q stderr %q)", res.ExitCode, res.TimedOut, res.OOMKilled, code, res.Stdout, res.Stderr)
	}
	if name == "fork bomb at the pids limit" {
		// The bomb filled the limit, and the init needed no new thread to go on: the
		// run ends with the command's status, not a runtime crash of pid 1.
		if !bytes.Contains(res.Stderr, []byte("can't fork")) || bytes.Contains(res.Stderr, []byte("runtime:")) {
			t.Errorf("stderr %q: want the bomb's fork failures and no runtime error", truncate(res.Stderr, 600))
		}
		t.Logf("init after the bomb: %s", bytes.TrimSpace(res.Stdout))
		return
	}
	if string(res.Stdout) != stdout {
		t.Errorf("stdout %q, want %q", res.Stdout, stdout)
	}
	if stderr != "" && (string(res.Stderr) != stderr || res.StderrTruncated) {
		t.Errorf("stderr %q, want %q", res.Stderr, stderr)
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// TestRunReportsImageWithoutInit: an image without the toolbox cannot run anything, and the
// error says to rebuild it rather than blaming the command.
func TestRunReportsImageWithoutInit(t *testing.T) {
	b := newTestBackend(t)
	rootfs := b.images.(testImages).rootfs
	if err := os.Rename(filepath.Join(rootfs, oci.InitPath), filepath.Join(rootfs, oci.InitPath+".moved")); err != nil {
		t.Fatal(err)
	}
	_, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("true")))
	if err == nil || !strings.Contains(err.Error(), "no sandbox init") || !strings.Contains(err.Error(), "airlock images build") {
		t.Fatalf("err = %v; want an error naming the missing sandbox init and how to rebuild the image", err)
	}
	assertNoLeftovers(t, b)
}
