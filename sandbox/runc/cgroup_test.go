package runc

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/airlock-mcp/airlock/sandbox"
)

func TestOOMKills(t *testing.T) {
	tests := []struct {
		name    string
		v2      bool
		file    string
		content string
		want    int64
		wantErr bool
	}{
		{"v1 no kill", false, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", 0, false},
		{"v1 killed", false, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", 2, false},
		{"v2 killed", true, "memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n", 1, false},
		{"v2 oom without kill", true, "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n", 0, false},
		{"old kernel without counter", false, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n", 0, true},
		{"missing file", false, "other", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tt.file), []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := cgroups{v2: tt.v2}.oomKills(dir)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("oomKills = %d, %v; want %d, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

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
