package containerd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
)

// cgroupRoot is where the cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroups is what the backend reads of the host's cgroups: where OOM kills are counted.
type cgroups struct {
	v2     bool
	mode   string   // for doctor: "v2", "v1 (hybrid)", "v1"
	memory string   // root of the memory hierarchy
	roots  []string // every hierarchy runc creates a container cgroup in
	parent string   // containers get "/<parent>/<id>" (Config.CgroupParent)
}

// detectCgroups finds the memory hierarchy. A host without one is unavailable: runc would
// refuse the memory limit anyway, and Airlock never runs without it.
func detectCgroups() (cgroups, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return cgroups{}, fmt.Errorf("%w: cgroups: %v; Airlock needs cgroup v1 or v2 mounted at %s", sandbox.ErrUnavailable, err, cgroupRoot)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return cgroups{v2: true, mode: "v2", memory: cgroupRoot, roots: []string{cgroupRoot}}, nil
	}
	mem, err := filepath.EvalSymlinks(filepath.Join(cgroupRoot, "memory"))
	if err != nil {
		return cgroups{}, fmt.Errorf("%w: cgroups: no memory controller at %s/memory (%v); Airlock needs it to cap memory", sandbox.ErrUnavailable, cgroupRoot, err)
	}
	mode := "v1"
	if _, err := os.Stat(filepath.Join(cgroupRoot, "unified", "cgroup.procs")); err == nil {
		mode = "v1 (hybrid)"
	}
	cg := cgroups{mode: mode, memory: mem}
	entries, _ := os.ReadDir(cgroupRoot)
	seen := map[string]bool{}
	for _, e := range entries {
		real, err := filepath.EvalSymlinks(filepath.Join(cgroupRoot, e.Name()))
		if err != nil || seen[real] {
			continue
		}
		if _, err := os.Stat(filepath.Join(real, "cgroup.procs")); err == nil {
			seen[real] = true
			cg.roots = append(cg.roots, real)
		}
	}
	return cg, nil
}

// removeCgroups removes container id's cgroup dirs that runc left, which it does only when it
// was stopped half way through creating the container (runc delete removes the ones it
// recorded). Processes still listed are SIGKILLed first: only a container of this backend
// whose task is gone, or whose owner is dead, gets here. A missing dir is not an error.
func (c cgroups) removeCgroups(id string) error {
	var errs []error
	for _, r := range c.roots {
		dir := filepath.Join(r, c.path(id))
		for delay := time.Millisecond; ; delay *= 2 {
			err := unix.Rmdir(dir)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || delay > 512*time.Millisecond {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dir, err))
				break
			}
			killCgroupProcs(dir)
			time.Sleep(delay)
		}
	}
	return errors.Join(errs...)
}

// killCgroupProcs SIGKILLs every process listed in the cgroup dir.
func killCgroupProcs(dir string) {
	if os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) == nil {
		return // cgroup v2 kills the whole subtree atomically
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// path is container id's cgroup: "/<parent>/<id>".
func (c cgroups) path(id string) string { return "/" + c.parent + "/" + id }

// oomKills reads how many processes the kernel's OOM killer killed in container id's memory
// cgroup: "oom_kill N" in memory.oom_control (v1) or memory.events (v2). The cgroup exists until
// the task is deleted, so this is read after the exit and before the delete.
func (c cgroups) oomKills(id string) (int64, error) {
	file := "memory.oom_control"
	if c.v2 {
		file = "memory.events"
	}
	p := filepath.Join(c.memory, c.path(id), file)
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == "oom_kill" {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no oom_kill counter (kernel older than 4.13?)", p)
}
