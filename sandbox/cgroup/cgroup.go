// Package cgroup reads and cleans up the host's container cgroups for the backends that drive
// runc themselves or through containerd: where the hierarchies are, how many OOM kills a memory
// cgroup counted, and how a container's leftover cgroup dir is removed. Each backend decides
// what it requires of the host and where its containers' cgroups are.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Root is where the cgroup file systems are mounted.
const Root = "/sys/fs/cgroup"

// Path is the cgroup of container id under parent, relative to every hierarchy's root:
// "/<parent>/<id>".
func Path(parent, id string) string { return "/" + parent + "/" + id }

// Hierarchies returns the real directories of every cgroup hierarchy mounted under the cgroup v1
// root dir: each controller (once, however many names link to it, such as cpu -> cpu,cpuacct)
// plus the hybrid "unified" and "systemd" ones; runc creates a container cgroup in each.
func Hierarchies(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	// Resolve the root once and only the entries that are links: EvalSymlinks on every entry
	// costs dozens of sysfs lookups on each airlock exec.
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	var roots []string
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
		roots = append(roots, real)
	}
	return roots, nil
}

// OOMKills reads how many processes the kernel's OOM killer killed in the memory cgroup dir:
// "oom_kill N" in memory.oom_control (v1) or memory.events (v2). A container's cgroup lives
// until the container is deleted, so the backend reads it after the exit and before that.
func OOMKills(dir string, v2 bool) (int64, error) {
	file := "memory.oom_control"
	if v2 {
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

// Remove removes one container cgroup dir. Processes of a container whose init just died can
// linger for a moment while the kernel reaps them (rmdir says EBUSY), so it SIGKILLs whatever
// is still listed (Kill) and retries for up to a second. A missing dir is not an error. Only
// for a container's own cgroup whose init is gone, or whose owner is dead.
func Remove(dir string) error {
	for delay := time.Millisecond; ; delay *= 2 {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || delay > 512*time.Millisecond {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		Kill(dir)
		time.Sleep(delay)
	}
}

// Kill SIGKILLs every process listed in the cgroup dir. Only for a container's own cgroup
// after its init is gone (or its owner is dead).
func Kill(dir string) {
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
