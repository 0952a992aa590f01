package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/runtime"
)

// typoPolicy has an entry for run_comand: run_command's calls fall to default allow.
const typoPolicy = `{"version":"1","default":"allow","tools":{
  "run_comand":{"deny_if":[{"conditions":[{"path":"args.command","op":"regex","value":"rm"}],"on_deny":"no rm"}]},
  "read_file":{},
  "write_file":{}}}`

func writeConfigAndPolicy(t *testing.T, policy string) (dir, cfgFile, polFile string) {
	t.Helper()
	dir = t.TempDir()
	polFile = filepath.Join(dir, "policy.json")
	cfgFile = filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(polFile, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, []byte("policy: policy.json\nbuiltins: [read_file, run_command]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, cfgFile, polFile
}

func TestPolicyCheckConfig(t *testing.T) {
	_, cfgFile, polFile := writeConfigAndPolicy(t, typoPolicy)
	wantErr := polFile + ": /tools/run_comand: no tool run_comand in this config (did you mean run_command?"
	wantNote := polFile + ": note: /tools/write_file: write_file is a built-in this config does not serve"
	for name, args := range map[string][]string{
		"config's own policy": {"check", "--config", cfgFile},
		"file then flag":      {"check", polFile, "--config", cfgFile},
		"flag then file":      {"check", "--config", cfgFile, polFile},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runPolicy(t, args...)
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout %s\nstderr %s", code, out, errs)
			}
			if !strings.Contains(errs, wantErr) || !strings.Contains(errs, "1 entry for tools "+cfgFile+" does not serve") {
				t.Errorf("stderr lacks %q:\n%s", wantErr, errs)
			}
			if !strings.Contains(out, wantNote) {
				t.Errorf("stdout lacks %q:\n%s", wantNote, out)
			}
		})
	}
	// Without --config the same file is a valid policy: it does not know the tool set.
	if code, out, errs := runPolicy(t, "check", polFile); code != 0 {
		t.Errorf("without --config: exit %d\n%s%s", code, out, errs)
	}
	// A config without a policy checks the embedded default, which names only built-ins.
	plain := filepath.Join(t.TempDir(), "airlock.yaml")
	if err := os.WriteFile(plain, []byte("grant: {id: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runPolicy(t, "check", "--config", plain); code != 0 || !strings.Contains(out, "ok (") {
		t.Errorf("default policy: exit %d\n%s%s", code, out, errs)
	}
	for _, bad := range [][]string{{"check"}, {"check", "a", "b"}, {"check", "--bogus", polFile}} {
		if code, _, _ := runPolicy(t, bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
	broken := filepath.Join(t.TempDir(), "airlock.yaml")
	if err := os.WriteFile(broken, []byte("workspce: .\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runPolicy(t, "check", "--config", broken, polFile); code != 2 || !strings.Contains(errs, "did you mean workspace?") {
		t.Errorf("broken config: exit %d: %s", code, errs)
	}
}

// TestServeWarnsOfUnknownPolicyTools: serve's start-up warning names the typo and the tool meant.
func TestServeWarnsOfUnknownPolicyTools(t *testing.T) {
	_, cfgFile, polFile := writeConfigAndPolicy(t, typoPolicy)
	cfg, err := runtime.LoadConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Resolve(runtime.Overrides{Workspace: t.TempDir(), StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	warnPolicyTools(&b, cfg)
	want := "airlock serve: warning: policy " + polFile + ": /tools/run_comand: no tool run_comand in this config (did you mean run_command?"
	if !strings.Contains(b.String(), want) {
		t.Errorf("warning %q\nwant it to contain %q", b.String(), want)
	}
	if strings.Contains(b.String(), "write_file") {
		t.Errorf("a built-in left out of builtins: is not worth a warning at every start: %s", b.String())
	}
}
