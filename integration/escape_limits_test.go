package integration

// Escape cases: resource limits (pids, memory, timeout, tmpfs, output).

import (
	"bytes"
	"cmp"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	// The limit was reached when the kernel refused forks; the host's 10 ms samples of
	// pids.current can miss the moments at the limit on a loaded host (seen: peak 62 of 64,
	// with fork failures in stderr).
	forkFailed := bytes.Contains(res.Stderr, []byte("can't fork"))
	if !forkFailed {
		t.Errorf("no fork failure in stderr: the bomb never reached the limit, so the limit was not tested (pids.current peak %d): %q", p.current, escTruncate(res.Stderr, 500))
	} else if p.current < pids {
		t.Logf("pids.current sampled at most %d of %d, and forks failed at the limit", p.current, pids)
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

// escContainerCgroups lists the cgroups under parent, one per hierarchy (each v1 controller,
// the hybrid unified one, or the single v2 tree), that hold one of pids.
func escContainerCgroups(parent string, pids []string) []string {
	if len(pids) == 0 {
		return nil
	}
	var found []string
	for _, dir := range escCgroupDirs(parent) {
		kids, _ := os.ReadDir(dir)
		for _, k := range kids {
			cg := filepath.Join(dir, k.Name())
			procs, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
			if !k.IsDir() || err != nil {
				continue
			}
			members := strings.Fields(string(procs))
			if slices.ContainsFunc(pids, func(p string) bool { return slices.Contains(members, p) }) {
				found = append(found, cg)
			}
		}
	}
	return found
}

// escCgroupFiles finds the cgroup under parent (in any controller) that holds one of pids and
// has every one of files, and returns their trimmed contents.
func escCgroupFiles(parent string, pids []string, files ...string) (map[string]string, bool) {
	for _, cg := range escContainerCgroups(parent, pids) {
		vals := map[string]string{}
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(cg, f))
			if err != nil {
				break // another controller's directory
			}
			vals[f] = strings.TrimSpace(string(b))
		}
		if len(vals) == len(files) {
			return vals, true
		}
	}
	return nil, false
}

// escPidsCgroupOf returns pids.current and pids.max of the pids cgroup holding one of pids.
func escPidsCgroupOf(parent string, pids []string) (current int, limit string, ok bool) {
	vals, ok := escCgroupFiles(parent, pids, "pids.current", "pids.max")
	if !ok {
		return 0, "", false
	}
	n, err := strconv.Atoi(vals["pids.current"])
	return n, vals["pids.max"], err == nil
}

// testCPUQuota: two busy loops under --cpus 0.5 get at most half a core between them, measured
// from the host in the container's cgroup while they run: the quota and usage of the cgroup v1
// cpu/cpuacct controllers where cpu is mounted as v1 (runc enforces the quota there, also on a
// hybrid host whose unified tree lacks the cpu controller), else cgroup v2's cpu.max and cpu.stat.
func testCPUQuota(t *testing.T, s *escapeSuite) {
	const cpus = 0.5
	layout := escCPULayout()
	if layout == "" {
		t.Fatalf("no cgroup layout to measure CPU use with: neither a cgroup v1 cpu controller (%s) nor cgroup v2 with the cpu controller (%s)",
			escCPUv1Quota, escCPUv2Controllers)
	}
	marker := s.caseMarker(t)
	ctx, stop := context.WithCancel(context.Background())
	type sample struct {
		at    time.Time
		usage int64 // ns
		quota string
	}
	samples := make(chan []sample, 1)
	go func() {
		var got []sample
		quota := ""
		for ctx.Err() == nil {
			if q, usage, ok := escCPUOf(layout, s.cgroupParent, escPidsWith(marker)); ok {
				quota = cmp.Or(q, quota)
				got = append(got, sample{time.Now(), usage, quota})
			}
			time.Sleep(100 * time.Millisecond)
		}
		samples <- got
	}()
	res := s.run(t, sandbox.WithCPUs(cpus), sandbox.WithTimeout(4*time.Second),
		sandbox.WithArgv("sh", "-c", "(while :; do :; done) & while :; do :; done"))
	stop()
	got := <-samples
	if !res.TimedOut {
		t.Errorf("the busy loops ended before the timeout: exit %d", res.ExitCode)
	}
	// Skip the first samples (start-up) and use the longest window that remains.
	if len(got) < 10 {
		t.Fatalf("only %d CPU samples of the container's cgroup (%s layout); cannot measure", len(got), layout)
	}
	first, last := got[3], got[len(got)-1]
	rate := float64(last.usage-first.usage) / float64(last.at.Sub(first.at).Nanoseconds())
	t.Logf("CPU use %.2f cores over %s (cgroup %s, quota and period %q)", rate, last.at.Sub(first.at).Round(time.Millisecond), layout, last.quota)
	if last.quota != "50000 100000" {
		t.Errorf("the container's CPU quota and period (cgroup %s) are %q on the host, want \"50000 100000\"", layout, last.quota)
	}
	if rate > cpus*1.2 {
		t.Errorf("two busy loops used %.2f cores; the quota is %.1f", rate, cpus)
	}
	if rate < 0.05 {
		t.Errorf("the busy loops used only %.2f cores: they did not run, so the quota was not tested", rate)
	}
}

const (
	escCPUv1Quota       = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"
	escCPUv2Controllers = "/sys/fs/cgroup/cgroup.controllers"
)

// escCPULayout says which cgroup hierarchy enforces the CPU quota: "v1" when the v1 cpu
// controller is mounted (runc sets the quota there, whatever the unified tree of a hybrid host
// holds), "v2" when /sys/fs/cgroup is a v2 tree with the cpu controller, else "".
func escCPULayout() string {
	if _, err := os.Stat(escCPUv1Quota); err == nil {
		return "v1"
	}
	if b, err := os.ReadFile(escCPUv2Controllers); err == nil && slices.Contains(strings.Fields(string(b)), "cpu") {
		return "v2"
	}
	return ""
}

// escCPUOf reads the quota ("quota period", as in cpu.max) and the CPU time used so far (ns)
// of the container cgroup holding one of pids. v1: cpu.cfs_quota_us and cpu.cfs_period_us, and
// cpuacct.usage (or, without cpuacct, the unified tree's cpu.stat). v2: cpu.max and cpu.stat's
// usage_usec. ok is false until the usage can be read; quota is "" until it can.
func escCPUOf(layout, parent string, pids []string) (quota string, usage int64, ok bool) {
	usage = -1
	for _, cg := range escContainerCgroups(parent, pids) {
		read := func(f string) (string, bool) {
			b, err := os.ReadFile(filepath.Join(cg, f))
			return strings.TrimSpace(string(b)), err == nil
		}
		if layout == "v1" {
			q, okQ := read("cpu.cfs_quota_us")
			p, okP := read("cpu.cfs_period_us")
			if okQ && okP {
				quota = q + " " + p
			}
			if v, okU := read("cpuacct.usage"); okU {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					usage = n
				}
			}
		} else if q, okQ := read("cpu.max"); okQ {
			quota = q
		}
		if layout == "v2" || usage < 0 {
			// Every v2 cgroup (the hybrid unified one too) accounts usage_usec in cpu.stat;
			// v1's cpu.stat has throttling counters only, so it never matches.
			stat, _ := read("cpu.stat")
			if us, err := strconv.ParseInt(escRegexpFind(`(?m)^usage_usec (\d+)$`, stat), 10, 64); err == nil {
				usage = us * 1000
			}
		}
	}
	return quota, usage, usage >= 0
}

// testKernelMemory: memory the kernel holds for the command (here pipe buffers, up to 1024
// descriptors in each of 8 processes) is charged to its memory cgroup: under a 32 MiB limit the
// fillers are OOM-killed or hold no more than the limit, while a control run with room to spare
// must hold more than 32 MiB, or the limited run would prove nothing.
//
// The fillers run as a uid no other process uses: once a uid holds pipe-user-pages-soft pages
// of pipes (64 MiB by default), every further pipe of that uid gets 2 pages instead of 16, and
// uid 65534 is shared with every other sandbox on the host. With a quota of its own the control
// holds 64 MiB in its first pipes alone.
func testKernelMemory(t *testing.T, s *escapeSuite) {
	const limit = 32 << 20
	// Unique on this host while the test process lives; never a uid of /etc/passwd.
	base := uint32(1_800_000_000 + 2*os.Getpid())
	fill := func(memory int64, uid uint32) (sandbox.Result, int) {
		res := s.run(t, sandbox.WithMemory(memory), sandbox.WithUser(uid, uid),
			sandbox.WithWorkspace(s.probeDir, sandbox.ReadOnly),
			sandbox.WithArgv("sh", "-c", "for i in 1 2 3 4 5 6 7 8; do /workspace/probe pipes & done; wait"))
		total := 0
		for _, m := range regexp.MustCompile(`"buffered":(\d+)`).FindAllStringSubmatch(string(res.Stdout), -1) {
			n, _ := strconv.Atoi(m[1])
			total += n
		}
		return res, total
	}
	res, control := fill(512<<20, base)
	t.Logf("control (512 MiB, uid %d): the fillers held %d MiB of pipe buffers", base, control>>20)
	if control <= limit {
		t.Fatalf("control: with 512 MiB the fillers held only %d MiB of pipe buffers (exit %d, oom %v, stderr %q), "+
			"not more than the %d MiB limit, so the limited run could not show that kernel memory is charged",
			control>>20, res.ExitCode, res.OOMKilled, escTruncate(res.Stderr, 300), limit>>20)
	}
	res, total := fill(limit, base+1)
	t.Logf("limited (32 MiB, uid %d): oom_killed %v, the fillers reported %d MiB", base+1, res.OOMKilled, total>>20)
	if !res.OOMKilled && total > limit {
		t.Errorf("the fillers held %d MiB of kernel memory under a %d MiB limit and were not OOM-killed", total>>20, limit>>20)
	}
}

// testMemoryBomb: allocating past the memory limit gets the command OOM-killed.
func testMemoryBomb(t *testing.T, s *escapeSuite) {
	res := s.run(t, sandbox.WithMemory(32<<20),
		sandbox.WithArgv("dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"))
	if !res.OOMKilled || res.ExitCode != sandbox.ExitKilled {
		t.Errorf("oom_killed %v exit %d, want true 137 (stderr %q)", res.OOMKilled, res.ExitCode, res.Stderr)
	}
}

// testTimeout: a busy loop with backgrounded children, one ignoring SIGTERM, one in its own
// session, one double-forked and one stopped (SIGSTOP), is killed at the timeout, and no process of the container remains on the host.
func testTimeout(t *testing.T, s *escapeSuite) {
	marker := s.caseMarker(t)
	start := time.Now()
	res := s.run(t, sandbox.WithTimeout(2*time.Second), sandbox.WithArgv("sh", "-c",
		`sleep 1000 & (trap "" TERM HUP INT; while :; do sleep 1; done) & setsid sh -c 'sleep 1000' & `+
			`(sh -c 'sleep 1000 &' &); sleep 1000 & kill -STOP $!; while :; do :; done`))
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
