package containerd

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
)

// cgroupRoot is where the cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroups is what the backend reads of the host's cgroups: where OOM kills are counted.
type cgroups struct {
	v2     bool
	mode   string // for doctor: "v2", "v1 (hybrid)", "v1"
	memory string // root of the memory hierarchy
}

// detectCgroups finds the memory hierarchy. A host without one is unavailable: runc would
// refuse the memory limit anyway, and Airlock never runs without it.
func detectCgroups() (cgroups, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return cgroups{}, fmt.Errorf("%w: cgroups: %v; Airlock needs cgroup v1 or v2 mounted at %s", sandbox.ErrUnavailable, err, cgroupRoot)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return cgroups{v2: true, mode: "v2", memory: cgroupRoot}, nil
	}
	mem, err := filepath.EvalSymlinks(filepath.Join(cgroupRoot, "memory"))
	if err != nil {
		return cgroups{}, fmt.Errorf("%w: cgroups: no memory controller at %s/memory (%v); Airlock needs it to cap memory", sandbox.ErrUnavailable, cgroupRoot, err)
	}
	mode := "v1"
	if _, err := os.Stat(filepath.Join(cgroupRoot, "unified", "cgroup.procs")); err == nil {
		mode = "v1 (hybrid)"
	}
	return cgroups{mode: mode, memory: mem}, nil
}

// cgroupsPath is container id's cgroup: "/<CgroupParent>/<id>".
func cgroupsPath(id string) string { return "/" + CgroupParent + "/" + id }

// oomKills reads how many processes the kernel's OOM killer killed in container id's memory
// cgroup: "oom_kill N" in memory.oom_control (v1) or memory.events (v2). The cgroup exists until
// the task is deleted, so this is read after the exit and before the delete.
func (c cgroups) oomKills(id string) (int64, error) {
	file := "memory.oom_control"
	if c.v2 {
		file = "memory.events"
	}
	p := filepath.Join(c.memory, cgroupsPath(id), file)
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
