package runc

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/cgroup"
)

// cgroupRoot is where the cgroup file systems are mounted.
const cgroupRoot = cgroup.Root

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
	roots, err := cgroup.Hierarchies(root)
	if err != nil {
		return unavailable("%v", err)
	}
	cg := cgroups{roots: roots}
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

// oomKills reads how many processes the kernel's OOM killer killed in the memory cgroup dir.
func (c cgroups) oomKills(dir string) (int64, error) { return cgroup.OOMKills(dir, c.v2) }
