package runc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
)

// cgroupRoot is where the cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroups describes the host's cgroup layout, found once when the Backend is made.
type cgroups struct {
	v2 bool
	// roots are the mount points of every hierarchy runc creates a container cgroup in: each
	// v1 controller (plus the hybrid "unified" and "systemd" ones), or the single v2 root.
	roots []string
	// memory is the root of the memory hierarchy, where OOM kills are counted.
	memory string
}

// detectCgroups refuses hosts where the limits Airlock promises could not be enforced: a run
// without a memory, pids or cpu controller would have no memory cap, no fork-bomb cap or no
// CPU quota, so such a host is "unavailable", never "run without limits".
func detectCgroups(root string) (cgroups, error) {
	unavailable := func(format string, a ...any) (cgroups, error) {
		return cgroups{}, fmt.Errorf("%w: cgroups: %s; Airlock needs cgroup v1 or v2 with the memory, pids and cpu controllers mounted at %s (run as root on a host, or a container started with --cgroupns=host and a writable %s)",
			sandbox.ErrUnavailable, fmt.Sprintf(format, a...), root, root)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return unavailable("%v", err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err != nil {
			return unavailable("%v", err)
		}
		have := strings.Fields(string(b))
		for _, c := range []string{"memory", "pids", "cpu"} {
			if !slices.Contains(have, c) {
				return unavailable("controller %q missing from %s/cgroup.controllers (%s)", c, root, strings.TrimSpace(string(b)))
			}
		}
		if unix.Access(root, unix.W_OK) != nil {
			return unavailable("%s is not writable", root)
		}
		return cgroups{v2: true, roots: []string{root}, memory: root}, nil
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return unavailable("%v", err)
	}
	// Resolve the root once and only the entries that are links (cpu -> cpu,cpuacct on some
	// hosts): EvalSymlinks on every entry costs dozens of sysfs lookups on each airlock exec.
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return unavailable("%v", err)
	}
	cg := cgroups{}
	seen := map[string]bool{}
	for _, e := range entries {
		real := filepath.Join(realRoot, e.Name())
		if e.Type()&fs.ModeSymlink != 0 {
			if real, err = filepath.EvalSymlinks(real); err != nil {
				continue
			}
		}
		if seen[real] {
			continue
		}
		if _, err := os.Stat(filepath.Join(real, "cgroup.procs")); err != nil {
			continue
		}
		seen[real] = true
		cg.roots = append(cg.roots, real)
	}
	for _, c := range []string{"memory", "pids", "cpu"} {
		dir := filepath.Join(root, c)
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
			return unavailable("controller %q is not mounted at %s", c, dir)
		}
		if unix.Access(dir, unix.W_OK) != nil {
			return unavailable("%s is not writable", dir)
		}
	}
	cg.memory, _ = filepath.EvalSymlinks(filepath.Join(root, "memory"))
	return cg, nil
}

// paths are the directories a container with cgroupsPath rel has in every hierarchy.
func (c cgroups) paths(rel string) []string {
	out := make([]string, 0, len(c.roots))
	for _, r := range c.roots {
		out = append(out, filepath.Join(r, rel))
	}
	return out
}

// oomKills reads how many processes the kernel's OOM killer killed in the memory cgroup dir:
// "oom_kill N" in memory.oom_control (v1) or memory.events (v2).
func (c cgroups) oomKills(dir string) (int64, error) {
	file := "memory.oom_control"
	if c.v2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
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
	return 0, fmt.Errorf("%s/%s has no oom_kill counter (kernel older than 4.13?)", dir, file)
}

// removeCgroup removes one container cgroup dir. Processes of a container whose init just
// died can linger for a moment while the kernel reaps them (rmdir says EBUSY), so it SIGKILLs
// whatever is still listed and retries for up to a second. A missing dir is not an error.
func removeCgroup(dir string) error {
	var err error
	for delay := time.Millisecond; ; delay *= 2 {
		err = unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || delay > 512*time.Millisecond {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		killCgroupProcs(dir)
		time.Sleep(delay)
	}
}

// killCgroupProcs SIGKILLs every process listed in the cgroup dir. Only used on a container's
// own cgroup after its init is gone (or its owner is dead).
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
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
