package runc

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// TestDetectCgroupsRefuses: a host without usable cgroups is unavailable, never "run without
// limits".
func TestDetectCgroupsRefuses(t *testing.T) {
	for name, root := range map[string]string{"not a cgroup fs": t.TempDir(), "missing": "/nonexistent/cgroup"} {
		if _, err := detectCgroups(root); !errors.Is(err, sandbox.ErrUnavailable) {
			t.Errorf("%s: detectCgroups = %v, want ErrUnavailable", name, err)
		}
	}
}

func TestRecordedCgroupsStaysUnderCgroupRoot(t *testing.T) {
	dir := t.TempDir()
	state := `{"cgroup_paths":{"memory":"/sys/fs/cgroup/memory/airlock/x","evil":"/etc","dots":"/sys/fs/cgroup/../../etc"}}`
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := recordedCgroups(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "/sys/fs/cgroup/memory/airlock/x" {
		t.Errorf("recordedCgroups = %v; want only the path under /sys/fs/cgroup", got)
	}
}

// TestDetectCgroupsV1Layout: every mounted v1 hierarchy is found once, under its real path,
// whether its directory is the mount itself or a link to a combined mount (cpu ->
// cpu,cpuacct); entries that are not hierarchies are skipped.
func TestDetectCgroupsV1Layout(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cpu,cpuacct", "memory", "pids", "unified", "not-a-hierarchy"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if d != "not-a-hierarchy" {
			if err := os.WriteFile(filepath.Join(root, d, "cgroup.procs"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for link, target := range map[string]string{"cpu": "cpu,cpuacct", "cpuacct": "cpu,cpuacct", "dangling": "gone"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "a-file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cg, err := detectCgroups(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(root, "cpu,cpuacct"), filepath.Join(root, "memory"), filepath.Join(root, "pids"), filepath.Join(root, "unified")}
	slices.Sort(cg.roots)
	if cg.v2 || !slices.Equal(cg.roots, want) || cg.memory != filepath.Join(root, "memory") {
		t.Errorf("detectCgroups = %+v; want v1 roots %v and memory %s", cg, want, filepath.Join(root, "memory"))
	}
}

// TestDetectCgroupsHost: on this host, the roots are exactly the real paths of the
// directories under /sys/fs/cgroup that hold a cgroup.procs, each once.
func TestDetectCgroupsHost(t *testing.T) {
	cg, err := detectCgroups(cgroupRoot)
	if err != nil {
		testenv.Unavailable(t, "usable cgroups at %s: %v", cgroupRoot, err)
	}
	if cg.v2 {
		return
	}
	entries, err := os.ReadDir(cgroupRoot)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var want []string
	for _, e := range entries {
		real, err := filepath.EvalSymlinks(filepath.Join(cgroupRoot, e.Name()))
		if err != nil || seen[real] {
			continue
		}
		if _, err := os.Stat(filepath.Join(real, "cgroup.procs")); err == nil {
			seen[real] = true
			want = append(want, real)
		}
	}
	got := slices.Clone(cg.roots)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("roots = %v; want %v", got, want)
	}
}
