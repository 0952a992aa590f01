package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/policies"
)

// TestReplacesBuiltin: a configured tool that says replaces: takes the built-in's place.
func TestReplacesBuiltin(t *testing.T) {
	cfg, err := ParseConfig("x.yaml", []byte("tools:\n  - name: run_command\n    replaces: run_command\n    description: Run go vet.\n    argv: [go, vet, ./...]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Resolve(Overrides{Workspace: t.TempDir(), StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	tools, err := BuildTools(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools {
		names = append(names, tl.Name())
		if tl.Name() == "run_command" && tl.Description() != "Run go vet." {
			t.Errorf("run_command is still the built-in: %q", tl.Description())
		}
	}
	if got, want := strings.Join(names, " "), strings.Join(cfg.ToolNames(), " "); got != want {
		t.Errorf("BuildTools serves %s, ToolNames says %s", got, want)
	}
	if n := strings.Count(strings.Join(names, " "), "run_command"); n != 1 {
		t.Errorf("run_command served %d times: %v", n, names)
	}
}

func TestCheckPolicyTools(t *testing.T) {
	pol, err := policies.Parse("p.json", []byte(`{"version":"1","default":"allow","tools":{
		"run_comand":{"deny_if":[{"conditions":[{"path":"args.command","op":"regex","value":"rm"}]}]},
		"read_file":{},
		"write_file":{},
		"go_vet":{},
		"totally_else":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("x.yaml", []byte("builtins: [read_file, run_command]\ntools:\n  - name: go_vet\n    description: d\n    argv: [go, vet]\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]PolicyToolIssue{}
	for _, is := range cfg.CheckPolicyTools(pol) {
		got[is.Tool] = is
	}
	if len(got) != 3 {
		t.Fatalf("issues = %+v, want run_comand, write_file and totally_else", got)
	}
	typo := got["run_comand"]
	if !typo.Unknown || typo.Pointer != "/tools/run_comand" ||
		!strings.Contains(typo.Message, "no tool run_comand in this config (did you mean run_command? it has no entry, so the policy's default judges its calls)") {
		t.Errorf("run_comand: %+v", typo)
	}
	if is := got["write_file"]; is.Unknown || !strings.Contains(is.Message, "write_file is a built-in this config does not serve") {
		t.Errorf("write_file: %+v", is)
	}
	if is := got["totally_else"]; !is.Unknown || strings.Contains(is.Message, "did you mean") {
		t.Errorf("totally_else: %+v", is)
	}
	// The embedded default policy names only built-ins: clean under the default config.
	def, err := ParseConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := def.LoadPolicy()
	if err != nil {
		t.Fatal(err)
	}
	if issues := def.CheckPolicyTools(dp); len(issues) != 0 {
		t.Errorf("the default policy under the default config: %+v", issues)
	}
	if !slices.Equal(def.ToolNames(), BuiltinNames()) {
		t.Errorf("default ToolNames = %v", def.ToolNames())
	}
}

func TestPolicyPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(file, []byte("policy: p/policy.json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.PolicyPath(); got != filepath.Join(dir, "p", "policy.json") {
		t.Errorf("PolicyPath = %s", got)
	}
}
