package containerd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/cgroup"
)

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
	if err := unix.Statfs(cgroup.Root, &st); err != nil {
		return cgroups{}, fmt.Errorf("%w: cgroups: %v; Airlock needs cgroup v1 or v2 mounted at %s", sandbox.ErrUnavailable, err, cgroup.Root)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return cgroups{v2: true, mode: "v2", memory: cgroup.Root, roots: []string{cgroup.Root}}, nil
	}
	mem, err := filepath.EvalSymlinks(filepath.Join(cgroup.Root, "memory"))
	if err != nil {
		return cgroups{}, fmt.Errorf("%w: cgroups: no memory controller at %s/memory (%v); Airlock needs it to cap memory", sandbox.ErrUnavailable, cgroup.Root, err)
	}
	mode := "v1"
	if _, err := os.Stat(filepath.Join(cgroup.Root, "unified", "cgroup.procs")); err == nil {
		mode = "v1 (hybrid)"
	}
	cg := cgroups{mode: mode, memory: mem}
	cg.roots, _ = cgroup.Hierarchies(cgroup.Root)
	return cg, nil
}

// removeCgroups removes container id's cgroup dirs that runc left, which it does only when it
// was stopped half way through creating the container (runc delete removes the ones it
// recorded). Processes still listed are SIGKILLed first: only a container of this backend
// whose task is gone, or whose owner is dead, gets here. A missing dir is not an error.
func (c cgroups) removeCgroups(id string) error {
	var errs []error
	for _, r := range c.roots {
		if err := cgroup.Remove(filepath.Join(r, c.path(id))); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// path is container id's cgroup: "/<parent>/<id>".
func (c cgroups) path(id string) string { return cgroup.Path(c.parent, id) }

// oomKills reads how many processes the kernel's OOM killer killed in container id's memory
// cgroup. The cgroup exists until the task is deleted, so this is read after the exit and
// before the delete.
func (c cgroups) oomKills(id string) (int64, error) {
	return cgroup.OOMKills(filepath.Join(c.memory, c.path(id)), c.v2)
}
