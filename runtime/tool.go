package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/testcache"
)

// Tool is one tool Airlock serves. It implements pipeline.Tool: it only turns validated
// arguments into sandbox options (Plan) and a sandbox result into what the agent reads
// (Render); the pipeline does everything else.
type Tool struct {
	name        string
	title       string
	description string
	schema      json.RawMessage
	annotations Annotations
	profileName string
	profile     Profile
	ws          workspaceInfo
	// argv builds the command (and optional stdin) from validated arguments.
	argv   func(args map[string]any) (argv []string, stdin []byte, err error)
	render func(out pipeline.Output) pipeline.Rendered
	// result is the schema of the JSON object the tool prints on stdout; nil for text output.
	result json.RawMessage
	// fields are the schemas of the structuredContent fields render adds (Rendered.Fields).
	fields map[string]json.RawMessage
	// cache, when not nil, is mounted read-write at testcache.Target and named by the
	// toolchains' cache variables (run_tests).
	cache *testcache.Cache
	// env is added on top of the profile's env (hardening no profile may undo).
	env []string
	// envDefaults fills only the keys that neither the profile's env nor env sets: the
	// operator's GOCACHE or GOFLAGS in a profile win over a tool's own defaults.
	envDefaults []string
	// progress marks long-running tools that report MCP progress while they run.
	progress bool
	// untrusted: a call that executes taints its session (trust.go).
	untrusted bool
}

var _ pipeline.Tool = (*Tool)(nil)

// workspaceInfo is the host workspace and its owner (for profiles that run as the owner).
type workspaceInfo struct {
	dir      string
	uid, gid uint32
}

// Name is the MCP tool name.
func (t *Tool) Name() string { return t.name }

// Title is the human-readable name ("" if none).
func (t *Tool) Title() string { return t.title }

// Description is what the agent reads to decide when to call the tool.
func (t *Tool) Description() string { return t.description }

// InputSchema is the tool's JSON Schema.
func (t *Tool) InputSchema() json.RawMessage { return t.schema }

// OutputSchema is the JSON Schema of the tool's structuredContent, every shape a call can
// return included (see pipeline.OutputSchema).
func (t *Tool) OutputSchema() json.RawMessage { return pipeline.OutputSchema(t.result, t.fields) }

// StdoutIsJSON says the tool prints one JSON object, which stage 6 decodes before sanitising
// (pipeline.JSONOutput).
func (t *Tool) StdoutIsJSON() bool { return t.result != nil }

// Annotations are the tool's MCP hints.
func (t *Tool) Annotations() Annotations { return t.annotations }

// ProfileName is the sandbox profile the tool runs under.
func (t *Tool) ProfileName() string { return t.profileName }

// ReportsProgress says whether the tool sends MCP progress notifications while it runs.
func (t *Tool) ReportsProgress() bool { return t.progress }

// Timeout is the tool's wall-clock limit.
func (t *Tool) Timeout() time.Duration { return time.Duration(t.profile.Timeout) }

// Plan is stage 4: the sandbox options for one call. It runs nothing.
func (t *Tool) Plan(ctx context.Context, args map[string]any) ([]sandbox.Option, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	argv, stdin, err := t.argv(args)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	opts, err := profileOptions(t.profile, t.ws)
	if err != nil {
		return nil, fmt.Errorf("%s: profile %s: %w", t.name, t.profileName, err)
	}
	if len(t.env) > 0 {
		opts = append(opts, sandbox.WithEnv(t.env...))
	}
	defaults := t.envDefaults
	if dir := t.cacheDir(); dir != "" {
		opts = append(opts, sandbox.WithMount(sandbox.Mount{Source: dir, Target: testcache.Target, Access: sandbox.ReadWrite}))
		defaults = append(testcache.Env(), unsetEnv(defaults, testcache.Env())...)
	}
	if env := unsetEnv(defaults, t.profile.Env, t.env); len(env) > 0 {
		opts = append(opts, sandbox.WithEnv(env...))
	}
	opts = append(opts, sandbox.WithArgv(argv...), sandbox.WithLabel("airlock.tool", t.name))
	if stdin != nil {
		opts = append(opts, sandbox.WithStdin(stdin))
	}
	return opts, nil
}

// cacheDir prepares the tool's test cache for this run and returns the host directory to
// mount, or "" to run without one: no cache configured, one that cannot be prepared, or a
// disk with too little room left (the cache's guard would stop the run; cold is better).
// A cache costs time, not correctness, so the run goes on either way.
func (t *Tool) cacheDir() string {
	if t.cache == nil {
		return ""
	}
	if free, err := testcache.Free(t.cache.Root()); err != nil || free < 2*testcache.Reserve {
		return ""
	}
	uid, gid := 65534, 65534
	if t.profile.User == "workspace-owner" {
		uid, gid = int(t.ws.uid), int(t.ws.gid)
	}
	dir, err := t.cache.Prepare(uid, gid)
	if err != nil {
		return ""
	}
	return dir
}

// Render turns the sanitised run into the agent's view.
func (t *Tool) Render(out pipeline.Output) pipeline.Rendered {
	if t.render != nil {
		return t.render(out)
	}
	return renderCommand(out)
}

// profileOptions translates a profile into sandbox options on top of sandbox.Defaults.
func profileOptions(p Profile, ws workspaceInfo) ([]sandbox.Option, error) {
	opts := []sandbox.Option{sandbox.WithImage(p.Image)}
	if p.Seccomp != "" {
		opts = append(opts, sandbox.WithSeccomp(p.Seccomp))
	}
	if p.Runtime != "" {
		opts = append(opts, sandbox.WithRuntime(p.Runtime))
	}
	switch p.Workspace {
	case "", "ro":
		opts = append(opts, sandbox.WithWorkspace(ws.dir, sandbox.ReadOnly))
	case "rw":
		opts = append(opts, sandbox.WithWorkspace(ws.dir, sandbox.ReadWrite))
	case "copy":
		opts = append(opts, sandbox.WithWorkspace(ws.dir, sandbox.CopyOnWrite))
	case "none":
	default:
		return nil, fmt.Errorf("workspace access %q", p.Workspace)
	}
	if p.User == "workspace-owner" {
		opts = append(opts, sandbox.WithUser(ws.uid, ws.gid))
	}
	if p.limits.memory > 0 {
		opts = append(opts, sandbox.WithMemory(p.limits.memory))
	}
	if p.CPUs > 0 {
		opts = append(opts, sandbox.WithCPUs(p.CPUs))
	}
	if p.Pids > 0 {
		opts = append(opts, sandbox.WithPids(p.Pids))
	}
	if p.Timeout > 0 {
		opts = append(opts, sandbox.WithTimeout(time.Duration(p.Timeout)))
	}
	if p.limits.tmpfs > 0 {
		opts = append(opts, sandbox.WithTmpfsSize(p.limits.tmpfs))
	}
	if p.limits.stdout > 0 || p.limits.stderr > 0 {
		d := sandbox.Defaults()
		so, se := d.StdoutCap, d.StderrCap
		if p.limits.stdout > 0 {
			so = p.limits.stdout
		}
		if p.limits.stderr > 0 {
			se = p.limits.stderr
		}
		opts = append(opts, sandbox.WithOutputCaps(so, se))
	}
	if len(p.Env) > 0 {
		opts = append(opts, sandbox.WithEnv(p.Env...))
	}
	opts = append(opts, sandbox.WithEgressAllow(p.Network.Allow))
	for _, m := range p.Mounts {
		access := sandbox.Access(m.Access)
		if access == "" {
			access = sandbox.ReadOnly
		}
		opts = append(opts, sandbox.WithMount(sandbox.Mount{Source: m.Source, Target: path.Clean(m.Target), Access: access}))
	}
	return opts, nil
}

// renderCommand shows a command's output: stdout, then stderr, then how it ended.
func renderCommand(out pipeline.Output) pipeline.Rendered {
	var b strings.Builder
	b.WriteString(out.Stdout)
	if out.Stderr != "" {
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
			b.WriteByte('\n')
		}
		if b.Len() > 0 {
			b.WriteString("--- stderr ---\n")
		}
		b.WriteString(out.Stderr)
	}
	status := ""
	switch {
	case out.TimedOut:
		status = "[timed out: the command was killed at the tool's time limit]"
	case out.OOMKilled:
		status = "[killed: the command ran out of memory]"
	case out.ExitCode != 0:
		status = fmt.Sprintf("[exit code %d]", out.ExitCode)
	}
	if out.Truncated {
		status = strings.TrimSpace(status + " [output truncated]")
	}
	if status != "" {
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
			b.WriteByte('\n')
		}
		b.WriteString(status)
	}
	if b.Len() == 0 {
		b.WriteString("(no output)")
	}
	return pipeline.Rendered{
		Text:    b.String(),
		IsError: out.ExitCode != 0 || out.TimedOut || out.OOMKilled,
	}
}
