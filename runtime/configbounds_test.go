package runtime

import (
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/sandbox"
)

// TestProfileBoundsAccepted: the smallest and largest values checkBounds allows load.
func TestProfileBoundsAccepted(t *testing.T) {
	for _, y := range []string{
		"profiles:\n  p:\n    image: host\n    memory: 4Mi\n    pids: 8\n    cpus: 0.01\n    timeout: 1s\n    tmpfs: 1Mi\n    stdout: 1Ki\n    stderr: 1Ki\n",
		"profiles:\n  p:\n    image: host\n    memory: 64Gi\n    pids: 100000\n    cpus: 1024\n    timeout: 24h\n",
	} {
		if _, err := ParseConfig("x.yaml", []byte(y)); err != nil {
			t.Errorf("%s: %v", y, err)
		}
	}
}

// TestMinMemoryIsTheSandboxFloor keeps minMemory in step with sandbox.Spec.Validate: a config
// must not accept a memory limit every run would refuse.
func TestMinMemoryIsTheSandboxFloor(t *testing.T) {
	if _, err := sandbox.New(sandbox.WithArgv("true"), sandbox.WithMemory(minMemory)); err != nil {
		t.Errorf("sandbox refuses minMemory: %v", err)
	}
	if _, err := sandbox.New(sandbox.WithArgv("true"), sandbox.WithMemory(minMemory-1)); err == nil {
		t.Errorf("sandbox accepts less than minMemory; lower minMemory to its floor")
	}
	for name, p := range builtinProfiles() {
		if p.limits.memory < minMemory || p.Pids < minPids || p.CPUs < minCPUs ||
			time.Duration(p.Timeout) < minTimeout || time.Duration(p.Timeout) > maxTimeout {
			t.Errorf("built-in profile %s is outside the bounds configs are held to: %+v", name, p)
		}
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"workspace", "backend", "policy", "audit", "profiles", "tools"}
	tests := []struct{ word, want string }{
		{"workspce", "workspace"},
		{"wokrspace", "workspace"}, // a swapped pair is one edit
		{"polcy", "policy"},
		{"tool", "tools"},
		{"xyz", ""},
		{"workspace", ""}, // the word itself is not a suggestion
		{"run_comand", ""},
	}
	for _, tc := range tests {
		if got := suggest(tc.word, keys); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
	if got := suggest("run_comand", BuiltinNames()); got != "run_command" {
		t.Errorf("suggest(run_comand) = %q, want run_command", got)
	}
	if d := editDistance("kitten", "sitting"); d != 3 {
		t.Errorf("editDistance(kitten, sitting) = %d, want 3", d)
	}
}
