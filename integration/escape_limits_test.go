package integration

// Escape cases: resource limits (pids, memory, timeout, tmpfs, output).

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

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
