package cgroup

import (
	"os"
	"path/filepath"
	"testing"
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
			got, err := OOMKills(dir, tt.v2)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("OOMKills = %d, %v; want %d, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestRemoveMissing: a cgroup dir that is already gone is not an error.
func TestRemoveMissing(t *testing.T) {
	if err := Remove(filepath.Join(t.TempDir(), "gone")); err != nil {
		t.Errorf("Remove(missing) = %v, want nil", err)
	}
}
