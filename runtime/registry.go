package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/testcache"
)

// BuildTools makes the tools cfg serves for its (resolved) workspace, in a stable order:
// built-ins first in BuiltinNames order, then configured tools in file order.
func BuildTools(cfg *Config) ([]*Tool, error) {
	ws, err := inspectWorkspace(cfg.Workspace)
	if err != nil {
		return nil, err
	}
	specs := builtinSpecs()
	configured := map[string]bool{}
	for _, t := range cfg.Tools {
		configured[t.Name] = true
	}
	var tools []*Tool
	names := BuiltinNames()
	if cfg.Builtins != nil {
		names = *cfg.Builtins
	}
	for _, name := range BuiltinNames() {
		if !slices.Contains(names, name) || configured[name] {
			continue
		}
		t, err := cfg.builtinTool(name, name, specs[name], "", ws)
		if err != nil {
			return nil, err
		}
		tools = append(tools, t)
	}
	for i, tc := range cfg.Tools {
		var t *Tool
		if tc.Builtin != "" {
			t, err = cfg.builtinTool(tc.Name, tc.Builtin, specs[tc.Builtin], tc.Profile, ws)
			if err != nil {
				return nil, err
			}
			if tc.Description != "" {
				t.description = tc.Description
			}
			if tc.Title != "" {
				t.title = tc.Title
			}
		} else {
			t, err = cfg.commandTool(i, tc, ws)
			if err != nil {
				return nil, err
			}
		}
		if tc.Annotations != nil {
			if tc.Annotations.ReadOnly && profileWrites(t.profile) {
				return nil, cfg.errAt(fmt.Sprintf("read_only: true, but profile %s can write the host (workspace: rw or an rw mount); "+
					"clients approve read-only tools without asking, so remove read_only or give the tool a profile that cannot write", t.profileName),
					"tools", i, "annotations", "read_only")
			}
			t.annotations = *tc.Annotations
		}
		t.untrusted = trustSetting(tc.Trust, t.untrusted)
		tools = append(tools, t)
	}
	return tools, nil
}

func (c *Config) builtinTool(name, builtin string, spec builtinSpec, profile string, ws workspaceInfo) (*Tool, error) {
	if profile == "" {
		profile = spec.profile
		if builtin == "run_tests" && c.Tests.Profile != "" {
			profile = c.Tests.Profile
		}
	}
	p, ok := c.profile(profile)
	if !ok {
		return nil, fmt.Errorf("tool %s: unknown profile %q", name, profile)
	}
	t := &Tool{
		name: name, title: spec.title, description: spec.description, schema: json.RawMessage(spec.schema),
		annotations: profileHints(spec.annotations, p), profileName: profile, profile: p, ws: ws,
		argv: spec.argv, render: spec.render, env: spec.env, envDefaults: spec.envDefaults, progress: spec.progress,
		fields: spec.fields, untrusted: spec.untrusted,
	}
	if spec.network && len(p.Network.Allow) == 0 {
		t.argv = func(map[string]any) ([]string, []byte, error) {
			return nil, nil, fmt.Errorf("its profile %s allows no host; an operator lists the hosts it may reach under profiles.%s.network.allow in the Airlock config (docs/egress.md)", profile, profile)
		}
	}
	if spec.result != "" {
		t.result = json.RawMessage(spec.result)
	}
	if builtin == "write_file" {
		t.argv = guardOwnFiles(spec.argv, ws.dir, c.ownFiles())
	}
	if builtin == "run_tests" && c.stateDir != "" && (c.Tests.Cache == nil || *c.Tests.Cache) {
		t.cache = testcache.New(c.stateDir, ws.dir, c.Tests.cacheMax)
	}
	if builtin == "run_tests" {
		argv := c.Tests.Argv
		if len(argv) == 0 {
			argv = detectTestCommand(ws.dir)
		}
		t.argv = func(map[string]any) ([]string, []byte, error) {
			if len(argv) == 0 {
				return nil, nil, errors.New("no test command: set tests.argv in the Airlock config (nothing detected: no go.mod, package.json, Cargo.toml or Makefile in the workspace)")
			}
			return slices.Clone(argv), nil, nil
		}
		if len(argv) > 0 {
			t.description += fmt.Sprintf(" Test command: %q.", argv)
		}
	}
	return t, nil
}

func (c *Config) commandTool(i int, tc ToolConfig, ws workspaceInfo) (*Tool, error) {
	tmpl, err := parseTemplate(tc.Argv)
	if err != nil {
		return nil, c.errAt(err.Error(), "tools", i, "argv")
	}
	profile := tc.Profile
	if profile == "" {
		profile = "command"
	}
	p, ok := c.profile(profile)
	if !ok {
		return nil, c.errAt(fmt.Sprintf("unknown profile %q", profile), "tools", i, "profile")
	}
	schema := json.RawMessage(`{"type":"object","properties":{},"additionalProperties":false}`)
	if tc.InputSchema != nil {
		if schema, err = json.Marshal(tc.InputSchema); err != nil {
			return nil, c.errAt("input_schema: "+err.Error(), "tools", i, "input_schema")
		}
	}
	// Default hints follow from the sandbox: nothing reaches the network, and only a rw
	// workspace lets the tool change anything that outlives the call.
	rw := profileWrites(p)
	return &Tool{
		name: tc.Name, title: tc.Title, description: tc.Description, schema: schema,
		annotations: Annotations{ReadOnly: !rw, Destructive: ptr(rw), OpenWorld: ptr(len(p.Network.Allow) > 0)},
		profileName: profile, profile: p, ws: ws,
		argv: func(args map[string]any) ([]string, []byte, error) {
			argv, err := tmpl.expand(args)
			return argv, nil, err
		},
		envDefaults: []string{"PATH=/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"},
		// A configured command may run as long as its profile allows, like run_command.
		progress: true,
	}, nil
}

// profileWrites reports whether a profile lets a tool change anything that outlives the call:
// a rw workspace or a rw mount (copy-on-write ones vanish with the container).
func profileWrites(p Profile) bool {
	return p.Workspace == "rw" || slices.ContainsFunc(p.Mounts, func(m MountConfig) bool { return m.Access == "rw" })
}

// profileHints are a built-in tool's MCP hints under the profile it actually runs with.
// Clients approve tools that say readOnlyHint without asking, so a built-in that is read-only by
// nature (run_command, git_status, run_tests) is not reported so once its profile can write the
// host: a "builtin: run_command" alias with workspace: rw can change every file. A profile never
// makes a writing tool look read-only.
func profileHints(spec Annotations, p Profile) Annotations {
	if !spec.ReadOnly || !profileWrites(p) {
		return spec
	}
	return Annotations{ReadOnly: false, Destructive: ptr(true), Idempotent: false, OpenWorld: spec.OpenWorld}
}

// inspectWorkspace checks the workspace is a directory and records its owner, which profiles
// with user: workspace-owner run as.
func inspectWorkspace(dir string) (workspaceInfo, error) {
	if !filepath.IsAbs(dir) {
		return workspaceInfo{}, fmt.Errorf("workspace %q must be an absolute path", dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return workspaceInfo{}, fmt.Errorf("workspace: %w (set --workspace or workspace: in the config)", err)
	}
	if !fi.IsDir() {
		return workspaceInfo{}, fmt.Errorf("workspace %s is not a directory", dir)
	}
	ws := workspaceInfo{dir: dir, uid: 65534, gid: 65534}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ws.uid, ws.gid = st.Uid, st.Gid
	}
	return ws, nil
}

// detectTestCommand guesses run_tests' command from the files at the workspace root.
func detectTestCommand(dir string) []string {
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	switch {
	case exists("go.mod"):
		// -json: each test's outcome and output, which run_tests summarises.
		return []string{"go", "test", "-json", "./..."}
	case exists("package.json"):
		return []string{"npm", "test"}
	case exists("Cargo.toml"):
		return []string{"cargo", "test", "--offline"}
	case exists("pyproject.toml"), exists("setup.py"), exists("setup.cfg"), exists("pytest.ini"), exists("tox.ini"):
		// -rA: a summary line per test, which run_tests reads; -p no:cacheprovider: the
		// workspace copy is thrown away, a cache in it would only cost time.
		return []string{"python3", "-m", "pytest", "-rA", "-p", "no:cacheprovider"}
	case exists("Makefile"):
		return []string{"make", "test"}
	}
	return nil
}

// ownFiles are Airlock's own files: its config, policy and audit log.
func (c *Config) ownFiles() []string {
	var out []string
	for _, p := range []string{c.File, c.Policy, c.Audit.Path} {
		if p == "" {
			continue
		}
		if a, err := filepath.Abs(p); err == nil {
			out = append(out, realPath(a))
		}
	}
	return out
}

// guardOwnFiles refuses a write_file whose target is Airlock's own config or policy file when
// they live in the workspace (a config next to the project, "policy: policy.json"). A policy
// that lets an agent write the workspace without asking would otherwise let it rewrite the
// policy itself, and the next start would enforce the agent's rules (allowing .git writes,
// whose hooks and config the host's git runs). The toolbox refuses symlinks in any component
// and "..", so the lexical path under the workspace is the file that would be written.
func guardOwnFiles(next func(map[string]any) ([]string, []byte, error), ws string, own []string) func(map[string]any) ([]string, []byte, error) {
	return func(args map[string]any) ([]string, []byte, error) {
		if p, ok := args["path"].(string); ok {
			rel := p
			if r, ok := strings.CutPrefix(p, sandbox.WorkspaceTarget+"/"); ok {
				rel = r
			}
			if !strings.HasPrefix(rel, "/") {
				target := filepath.Join(ws, filepath.FromSlash(rel))
				for _, f := range own {
					if target == f {
						return nil, nil, fmt.Errorf("%s is Airlock's own config, policy or audit log; it is changed by the operator, not through write_file", p)
					}
				}
			}
		}
		return next(args)
	}
}
