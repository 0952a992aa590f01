package runtime

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/sandbox"
)

// checkReplaces refuses a configured tool that takes a built-in's name without saying so. The
// built-in would silently disappear and its policy entry, written for the built-in's
// arguments (read_file's path_within on args.path), would judge a different program whose
// arguments mean something else.
func (c *Config) checkReplaces(i int, t ToolConfig) error {
	builtin := slices.Contains(BuiltinNames(), t.Name)
	switch {
	case builtin && t.Replaces == "":
		return c.errAt(fmt.Sprintf("%q is the name of a built-in tool; add replaces: %s to serve this tool in its place "+
			"(the policy's %s entry then judges this tool), or choose another name", t.Name, t.Name, t.Name), "tools", i, "name")
	case t.Replaces == "":
		return nil
	case t.Replaces != t.Name:
		return c.errAt(fmt.Sprintf("replaces %q must be this tool's own name %q: a tool replaces the built-in it is named like "+
			"(to serve a built-in under another name use builtin:, to drop one leave it out of builtins:)", t.Replaces, t.Name), "tools", i, "replaces")
	case !builtin:
		return c.errAt(fmt.Sprintf("%q is not a built-in tool, so there is nothing to replace; remove replaces (built-ins are %s)",
			t.Replaces, strings.Join(BuiltinNames(), ", ")), "tools", i, "replaces")
	}
	return nil
}

// ToolNames lists the tools the config serves, without looking at the workspace: the selected
// built-ins (those a configured tool replaces excluded), then the configured tools in file order.
func (c *Config) ToolNames() []string {
	selected := BuiltinNames()
	if c.Builtins != nil {
		selected = *c.Builtins
	}
	var names []string
	for _, b := range BuiltinNames() {
		if slices.Contains(selected, b) && !slices.ContainsFunc(c.Tools, func(t ToolConfig) bool { return t.Name == b }) {
			names = append(names, b)
		}
	}
	for _, t := range c.Tools {
		names = append(names, t.Name)
	}
	return names
}

// PolicyPath is the policy file the config names, absolute (relative to the config file's
// directory), or "" for the embedded default.
func (c *Config) PolicyPath() string {
	if c.Policy == "" || filepath.IsAbs(c.Policy) || c.File == "" {
		return c.Policy
	}
	return filepath.Join(filepath.Dir(c.File), c.Policy)
}

// PolicyToolIssue is a policy entry that names a tool the config does not serve.
type PolicyToolIssue struct {
	Tool    string
	Pointer string // JSON pointer of the entry, /tools/NAME
	Message string
	// Unknown: no such tool at all (a typo, or a tool removed from the config). Otherwise the
	// tool is a built-in this config leaves out, which a policy shared by several configs may
	// well name.
	Unknown bool
}

// CheckPolicyTools reports the policy's tool entries that judge nothing under this config. An
// entry for "run_comand" is never consulted: calls to run_command are judged by the default
// instead, which allows everything under "default": "allow" and denies what the entry meant to
// allow otherwise, either way not what its author wrote.
func (c *Config) CheckPolicyTools(p *policies.Policy) []PolicyToolIssue {
	served := c.ToolNames()
	var issues []PolicyToolIssue
	for _, name := range p.Tools() {
		if slices.Contains(served, name) {
			continue
		}
		is := PolicyToolIssue{Tool: name, Pointer: "/tools/" + escapePointerToken(name)}
		if slices.Contains(BuiltinNames(), name) {
			is.Message = fmt.Sprintf("%s is a built-in this config does not serve (builtins:); the entry judges nothing", name)
		} else {
			is.Unknown = true
			hint := ""
			if s := suggest(name, served); s != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", s)
				if !slices.Contains(p.Tools(), s) {
					hint = fmt.Sprintf(" (did you mean %s? it has no entry, so the policy's default judges its calls)", s)
				}
			}
			is.Message = fmt.Sprintf("no tool %s in this config%s; the entry judges nothing. Tools: %s",
				name, hint, strings.Join(served, ", "))
		}
		issues = append(issues, is)
	}
	return issues
}

// escapePointerToken escapes a JSON pointer token (RFC 6901).
func escapePointerToken(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// ProfileOptions are the sandbox options of a profile for the resolved config's workspace
// (image, seccomp, workspace mount, user, limits, env, mounts): what every tool on the profile
// runs with, before its own command and environment. airlock doctor --config runs `true` with
// them, which finds what config validation cannot: a mount target the image lacks, a
// workspace the profile's user cannot enter.
func (c *Config) ProfileOptions(name string) ([]sandbox.Option, error) {
	p, ok := c.profile(name)
	if !ok {
		return nil, fmt.Errorf("unknown profile %q", name)
	}
	ws, err := inspectWorkspace(c.Workspace)
	if err != nil {
		return nil, err
	}
	return profileOptions(p, ws)
}
