// Package runtime is Airlock's MCP surface: the YAML configuration, the tool registry (built-in
// and configured tools), and the MCP server over stdio and streamable HTTP that feeds every
// tools/call into the seven-stage pipeline.
package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/identity"

	"gopkg.in/yaml.v3"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/pool"
	runcbackend "github.com/airlock-mcp/airlock/sandbox/runc"
)

// Config is Airlock's configuration file. The zero value plus Defaults is the built-in setup:
// the current directory, the runc backend, the embedded safe policy and every built-in tool.
type Config struct {
	// Workspace is the host directory tools see at /workspace. Relative paths are relative to
	// the config file's directory.
	Workspace string `yaml:"workspace"`
	// Backend names the sandbox backend ("runc").
	Backend string `yaml:"backend"`
	// Policy is the policy file; empty means the embedded safe default (see DefaultPolicy).
	Policy string      `yaml:"policy"`
	Audit  AuditConfig `yaml:"audit"`
	// Grant is the identity of stdio and CLI callers (and of loopback HTTP callers without a token).
	Grant GrantConfig `yaml:"grant"`
	HTTP  HTTPConfig  `yaml:"http"`
	// Profiles add sandbox profiles or replace built-in ones of the same name.
	Profiles map[string]Profile `yaml:"profiles"`
	// Builtins selects built-in tools by name; absent means all of them, [] means none.
	Builtins *[]string `yaml:"builtins"`
	// Tools are configured tools: an argv template run in a sandbox, or a built-in under
	// another name or profile.
	Tools []ToolConfig `yaml:"tools"`
	// Tests configures run_tests.
	Tests TestsConfig `yaml:"tests"`
	// Results configures what a tool result carries.
	Results ResultsConfig `yaml:"results"`
	// Upstreams are third-party MCP servers served through Airlock (docs/gateway.md).
	Upstreams map[string]UpstreamConfig `yaml:"upstreams"`
	// Egress configures the proxies of profiles with a network allowlist (docs/egress.md).
	Egress EgressConfig `yaml:"egress"`
	// Pool keeps sandboxes started ahead of the calls that will use them (docs/pool.md).
	Pool PoolConfig `yaml:"pool"`
	// Console is the web console on the HTTP listener (docs/console.md).
	Console ConsoleConfig `yaml:"console"`
	// State is where rate-limit counters, grants, kill switches and the gateway's pins live
	// (docs/operate.md): a directory (default $AIRLOCK_STATE_DIR/state, whose pins stay in
	// $AIRLOCK_STATE_DIR/pins) or redis://host:port/db, shared by replicas.
	State string `yaml:"state"`
	// Metrics configures the Prometheus metrics served at /metrics (docs/observe.md).
	Metrics MetricsConfig `yaml:"metrics"`

	// File is where the config came from ("" for the built-in default); errors name it.
	File string `yaml:"-"`
	root *yaml.Node
	// stateDir is Options.StateDir, once Resolve ran ("" before: no test caches).
	stateDir string
	// docsDir, when set, is where the file store State names keeps its documents (see
	// resolveState).
	docsDir string
}

// ResultsConfig configures what a tool result carries.
type ResultsConfig struct {
	// Output is where a call's output goes, once (see OutputPlacement): auto (default), text
	// or structured.
	Output OutputPlacement `yaml:"output"`
}

// AuditConfig places the audit log.
type AuditConfig struct {
	// Path of the append-only, hash-chained log; default $AIRLOCK_STATE_DIR/audit/audit.jsonl.
	Path string `yaml:"path"`
	// RecordArgs stores argument values in audit records (off: only keys and a hash).
	RecordArgs bool `yaml:"record_args"`
	// Rotate starts a new file by size or by day; the chain continues across files.
	Rotate AuditRotateConfig `yaml:"rotate"`
}

// GrantConfig is a caller identity as the policy sees it (grant.id, grant.labels.X).
type GrantConfig struct {
	ID     string            `yaml:"id"`
	Labels map[string]string `yaml:"labels"`
}

// HTTPConfig configures `airlock serve --http`.
type HTTPConfig struct {
	// Addr is the listen address; default 127.0.0.1:8811.
	Addr string `yaml:"addr"`
	// AllowedHosts are extra Host header values accepted besides the loopback names and the
	// listen address (e.g. "airlock.internal:8811").
	AllowedHosts []string `yaml:"allowed_hosts"`
	// AllowedOrigins are extra Origin values accepted from browsers (scheme://host[:port]).
	AllowedOrigins []string `yaml:"allowed_origins"`
	// Tokens map bearer tokens to grants. With any token configured, every request needs one.
	Tokens []TokenConfig `yaml:"tokens"`
	// JWT accepts OIDC/JWT bearer tokens of an issuer (docs/operate.md); with it, every
	// request needs a token.
	JWT *identity.JWTConfig `yaml:"jwt"`
	// Resource is the MCP endpoint's public URL (https://airlock.example.com/mcp): the
	// resource of the protected-resource metadata clients discover. Default: the listen URL.
	Resource string `yaml:"resource"`
	// MaxSessions caps the MCP sessions open at once over all grants; default 1024.
	MaxSessions int `yaml:"max_sessions"`
	// MaxSessionsPerGrant caps the MCP sessions open at once per grant; default 256 (at most
	// MaxSessions).
	MaxSessionsPerGrant int `yaml:"max_sessions_per_grant"`
	// SessionIdleTimeout closes a session that called a tool after this long without traffic
	// (a request in progress, such as an open event stream, is traffic); default 24h.
	SessionIdleTimeout Duration `yaml:"session_idle_timeout"`
	// SessionUnusedTimeout closes a session that never called a tool after this long without
	// traffic; default 5m.
	SessionUnusedTimeout Duration `yaml:"session_unused_timeout"`
}

// sessionLimits are the session caps and timeouts, defaults filled in.
func (h HTTPConfig) sessionLimits() sessionLimits {
	l := sessionLimits{maxTotal: h.MaxSessions, maxPerGrant: h.MaxSessionsPerGrant,
		idle: time.Duration(h.SessionIdleTimeout), unused: time.Duration(h.SessionUnusedTimeout)}
	if l.maxTotal <= 0 {
		l.maxTotal = defaultMaxSessions
	}
	if l.maxPerGrant <= 0 {
		l.maxPerGrant = defaultMaxSessionsPerGrant
	}
	l.maxPerGrant = min(l.maxPerGrant, l.maxTotal)
	if l.idle <= 0 {
		l.idle = defaultSessionIdleTimeout
	}
	if l.unused <= 0 {
		l.unused = min(defaultSessionUnusedTimeout, l.idle)
	}
	return l
}

// TokenConfig is one bearer token. The token itself never sits in the config file.
type TokenConfig struct {
	TokenEnv  string            `yaml:"token_env"`  // environment variable holding the token
	TokenFile string            `yaml:"token_file"` // file holding the token (trailing newline trimmed)
	Grant     string            `yaml:"grant"`      // grant id of callers presenting it
	Labels    map[string]string `yaml:"labels"`
}

// Profile is how a tool's sandbox is built.
type Profile struct {
	Image     string         `yaml:"image"`     // an image name from package images: busybox, host
	Seccomp   string         `yaml:"seccomp"`   // default, files (unconfined is refused in config)
	Runtime   string         `yaml:"runtime"`   // an OCI runtime the docker/containerd daemon has registered (runsc, kata)
	Workspace string         `yaml:"workspace"` // ro, rw, copy or none
	User      string         `yaml:"user"`      // nobody (default) or workspace-owner
	Memory    string         `yaml:"memory"`    // e.g. 256Mi
	CPUs      float64        `yaml:"cpus"`
	Pids      int64          `yaml:"pids"`
	Timeout   Duration       `yaml:"timeout"` // e.g. 30s, 10m
	Tmpfs     string         `yaml:"tmpfs"`   // size of /tmp
	Stdout    string         `yaml:"stdout"`  // stdout cap
	Stderr    string         `yaml:"stderr"`  // stderr cap
	Env       []string       `yaml:"env"`     // KEY=VALUE
	Mounts    []MountConfig  `yaml:"mounts"`  // extra host directories
	Network   NetworkConfig  `yaml:"network"` // none, or hosts reached through the egress proxy
	limits    resolvedLimits `yaml:"-"`
}

// MountConfig is an extra host directory for a profile (read-only unless access says otherwise).
type MountConfig struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
	Access string `yaml:"access"` // ro (default), rw, copy
}

type resolvedLimits struct {
	memory, tmpfs, stdout, stderr int64
}

// ToolConfig is one configured tool.
type ToolConfig struct {
	Name        string         `yaml:"name"`
	Description string         `yaml:"description"`
	Title       string         `yaml:"title"`
	Builtin     string         `yaml:"builtin"`  // a built-in tool's implementation under this name
	Replaces    string         `yaml:"replaces"` // the built-in this tool takes the place of: its own name
	Argv        []string       `yaml:"argv"`     // argv template; {{args.x}} fills a whole element
	Profile     string         `yaml:"profile"`
	InputSchema map[string]any `yaml:"input_schema"`
	Annotations *Annotations   `yaml:"annotations"`
	// Trust is trusted or untrusted (see trust.go); default trusted, except for a built-in
	// that is untrusted by nature (http_fetch).
	Trust string `yaml:"trust"`
}

// Annotations are the MCP tool hints shown to clients.
type Annotations struct {
	ReadOnly    bool  `yaml:"read_only"`
	Destructive *bool `yaml:"destructive"`
	Idempotent  bool  `yaml:"idempotent"`
	OpenWorld   *bool `yaml:"open_world"`
}

// PoolConfig sizes the pool of prestarted sandboxes (package pool): the runc backend's, the
// others run every call cold.
type PoolConfig struct {
	// Size is how many sandboxes are kept started per sandbox shape in use; default 2, 0
	// turns the pool off.
	Size *int `yaml:"size"`
	// MaxShapes is how many shapes (profiles, in effect) are kept warm at once; default 8.
	MaxShapes int `yaml:"max_shapes"`
	// MaxAge is how long a started sandbox waits for a call before it is replaced, and how
	// long an unused shape stays warm; default 10m.
	MaxAge Duration `yaml:"max_age"`
}

// Pool limits the config accepts.
const (
	maxPoolSize   = 32
	maxPoolShapes = 64
	minPoolAge    = 10 * time.Second
	maxPoolAge    = 14 * time.Minute // under runc.WarmIdleLimit, when the waiting init gives up
)

// size is the configured pool size, or pool.DefaultSize.
func (p PoolConfig) size() int {
	if p.Size == nil {
		return pool.DefaultSize
	}
	return *p.Size
}

// validatePool checks the pool section.
func (c *Config) validatePool() error {
	if n := c.Pool.size(); n < 0 || n > maxPoolSize {
		return c.errAt(fmt.Sprintf("size %d: want 0 (no pool) to %d sandboxes per shape", n, maxPoolSize), "pool", "size")
	}
	if n := c.Pool.MaxShapes; n < 0 || n > maxPoolShapes {
		return c.errAt(fmt.Sprintf("max_shapes %d: want 1 to %d", n, maxPoolShapes), "pool", "max_shapes")
	}
	if d := time.Duration(c.Pool.MaxAge); d != 0 && (d < minPoolAge || d > maxPoolAge) {
		return c.errAt(fmt.Sprintf("max_age %s: want %s to %s (a waiting sandbox's init gives up after %s)", d, minPoolAge, maxPoolAge, runcbackend.WarmIdleLimit), "pool", "max_age")
	}
	return nil
}

// TestsConfig is run_tests' command.
type TestsConfig struct {
	// Argv is the test command; empty means detected from the workspace (go.mod → go test ./...,
	// package.json → npm test, Cargo.toml → cargo test --offline, Makefile → make test).
	Argv    []string `yaml:"argv"`
	Profile string   `yaml:"profile"` // default "tests"
	// Cache keeps the toolchains' caches (Go build and modules, npm, pip) between runs, per
	// workspace, under $AIRLOCK_STATE_DIR/cache (package testcache); default true.
	Cache *bool `yaml:"cache"`
	// CacheSize is a workspace's cache size past which it is cleared; default 2Gi.
	CacheSize string `yaml:"cache_size"`

	cacheMax int64
}

// Duration is a time.Duration written as "30s" or "10m" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v <= 0 {
		return fmt.Errorf("line %d: duration %q: want a positive Go duration such as 30s or 10m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// ConfigError is a configuration problem at a line of the file.
type ConfigError struct {
	File string
	Line int    // 0 when unknown
	Path string // e.g. tools[2].profile
	Msg  string
}

func (e *ConfigError) Error() string {
	loc := e.File
	if loc == "" {
		loc = "config"
	}
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Path != "" {
		return loc + ": " + e.Path + ": " + e.Msg
	}
	return loc + ": " + e.Msg
}

// LoadConfig reads, parses and validates a config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return ParseConfig(abs, data)
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// ParseConfig parses and validates a config document. file names it in errors and anchors
// relative paths (its directory).
func ParseConfig(file string, data []byte) (*Config, error) {
	cfg := &Config{File: file}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErr(file, err)
	}
	cfg.root = &root
	if err := cfg.checkShape(); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		// Unknown keys are errors: a misspelt "workspce: ro" silently ignored would leave the
		// operator believing in a restriction that is not there.
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil {
			return nil, yamlErr(file, err)
		}
	}
	cfg.File = file
	cfg.root = &root
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// yamlErr turns yaml.v3's "line N: msg" errors into ConfigErrors (the first one).
func yamlErr(file string, err error) error {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for _, m := range msgs {
		if g := yamlLine.FindStringSubmatch(strings.TrimSpace(m)); g != nil {
			line, _ := strconv.Atoi(g[1])
			return &ConfigError{File: file, Line: line, Msg: g[2]}
		}
	}
	return &ConfigError{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
}

// line finds the line of a key path in the document: strings index mappings, ints sequences.
// It returns the line of the deepest node found.
func (c *Config) line(path ...any) int {
	if c.root == nil || len(c.root.Content) == 0 {
		return 0
	}
	n := c.root.Content[0]
	best := n.Line
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return best
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					best = n.Content[i].Line
					n = n.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return best
			}
		case int:
			if n.Kind != yaml.SequenceNode || k >= len(n.Content) {
				return best
			}
			n = n.Content[k]
			best = n.Line
		}
	}
	return best
}

func (c *Config) errAt(msg string, path ...any) error {
	var b strings.Builder
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		}
	}
	return &ConfigError{File: c.File, Line: c.line(path...), Path: b.String(), Msg: msg}
}

var toolName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)

// validate checks the parts that do not need the workspace; Resolve checks the rest.
func (c *Config) validate() error {
	if c.Backend != "" && !toolName.MatchString(c.Backend) {
		return c.errAt(fmt.Sprintf("backend %q is not a backend name (e.g. runc)", c.Backend), "backend")
	}
	if o := c.Results.Output; o != "" && !slices.Contains(outputPlacements(), o) {
		return c.errAt(fmt.Sprintf("%q is not a placement; want auto, text or structured", o), "results", "output")
	}
	if err := c.checkEgress(); err != nil {
		return err
	}
	for name, p := range c.Profiles {
		if !toolName.MatchString(name) {
			return c.errAt(fmt.Sprintf("profile name %q: use letters, digits, _ . -", name), "profiles", name)
		}
		if err := c.checkProfile(name, &p); err != nil {
			return err
		}
		c.Profiles[name] = p
	}
	for i, tok := range c.HTTP.Tokens {
		if (tok.TokenEnv == "") == (tok.TokenFile == "") {
			return c.errAt("set exactly one of token_env or token_file (the token itself never goes in the config)", "http", "tokens", i)
		}
		if tok.Grant == "" {
			return c.errAt("grant is required: the grant id callers with this token act as", "http", "tokens", i)
		}
	}
	if err := c.validateHTTPSessions(); err != nil {
		return err
	}
	if c.Builtins != nil {
		for i, b := range *c.Builtins {
			if !slices.Contains(BuiltinNames(), b) {
				return c.errAt(fmt.Sprintf("unknown built-in tool %q; built-ins are %s", b, strings.Join(BuiltinNames(), ", ")), "builtins", i)
			}
		}
	}
	seen := map[string]int{}
	for i, t := range c.Tools {
		if !toolName.MatchString(t.Name) {
			return c.errAt(fmt.Sprintf("tool name %q: 1-64 of letters, digits, _ . - (MCP tool names)", t.Name), "tools", i, "name")
		}
		if j, dup := seen[t.Name]; dup {
			return c.errAt(fmt.Sprintf("tool %q is already defined at tools[%d]", t.Name, j), "tools", i, "name")
		}
		seen[t.Name] = i
		if err := c.checkReplaces(i, t); err != nil {
			return err
		}
		if err := checkTrust(t.Trust); err != nil {
			return c.errAt(err.Error(), "tools", i, "trust")
		}
		switch {
		case t.Builtin != "" && len(t.Argv) > 0:
			return c.errAt("set either builtin or argv, not both", "tools", i)
		case t.Builtin != "":
			if !slices.Contains(BuiltinNames(), t.Builtin) {
				return c.errAt(fmt.Sprintf("unknown built-in tool %q; built-ins are %s", t.Builtin, strings.Join(BuiltinNames(), ", ")), "tools", i, "builtin")
			}
			if t.InputSchema != nil {
				return c.errAt("a built-in keeps its own input_schema; remove it", "tools", i, "input_schema")
			}
		case len(t.Argv) > 0:
			if t.Description == "" {
				return c.errAt("description is required: it is what the agent reads to decide when to call the tool", "tools", i, "description")
			}
			if _, err := parseTemplate(t.Argv); err != nil {
				return c.errAt(err.Error(), "tools", i, "argv")
			}
		default:
			return c.errAt("set argv (a command template) or builtin (a built-in tool's name)", "tools", i)
		}
		if t.InputSchema != nil {
			if typ, _ := t.InputSchema["type"].(string); typ != "object" {
				return c.errAt(`input_schema must have type: object`, "tools", i, "input_schema")
			}
		}
		if t.Profile != "" {
			if _, ok := c.profile(t.Profile); !ok {
				return c.errAt(fmt.Sprintf("unknown profile %q; define it under profiles: or use one of %s", t.Profile, strings.Join(c.profileNames(), ", ")), "tools", i, "profile")
			}
		}
	}
	if err := c.validateUpstreams(); err != nil {
		return err
	}
	if c.HTTP.JWT != nil {
		if err := c.HTTP.JWT.Validate(); err != nil {
			var ce *identity.ConfigError
			if errors.As(err, &ce) {
				return c.errAt(ce.Msg, "http", "jwt", ce.Field)
			}
			return c.errAt(err.Error(), "http", "jwt")
		}
	}
	if err := c.validateConsole(); err != nil {
		return err
	}
	if err := c.validatePool(); err != nil {
		return err
	}
	if err := c.validateAuditRotate(); err != nil {
		return err
	}
	if s := c.Tests.CacheSize; s != "" {
		n, err := sandbox.ParseBytes(s)
		if err != nil || n < 1<<20 {
			return c.errAt(fmt.Sprintf("cache_size %q: want a size of at least 1Mi, such as 2Gi", s), "tests", "cache_size")
		}
		c.Tests.cacheMax = n
	}
	if c.Tests.Profile != "" {
		if _, ok := c.profile(c.Tests.Profile); !ok {
			return c.errAt(fmt.Sprintf("unknown profile %q; use one of %s", c.Tests.Profile, strings.Join(c.profileNames(), ", ")), "tests", "profile")
		}
	}
	return nil
}

// validateHTTPSessions checks the session caps and timeouts. A cap written as 0 or less is
// refused rather than read as "unlimited": the caps are what keeps a loop of initialize
// requests from growing the server without bound.
func (c *Config) validateHTTPSessions() error {
	h := c.HTTP
	for _, k := range []struct {
		key string
		v   int
		def int
	}{{"max_sessions", h.MaxSessions, defaultMaxSessions}, {"max_sessions_per_grant", h.MaxSessionsPerGrant, defaultMaxSessionsPerGrant}} {
		if k.v <= 0 && c.has("http", k.key) {
			return c.errAt(fmt.Sprintf("%s is %d; want at least 1 (default %d; there is no unlimited)", k.key, k.v, k.def), "http", k.key)
		}
	}
	l := h.sessionLimits()
	if h.SessionUnusedTimeout > 0 && l.unused > l.idle {
		return c.errAt(fmt.Sprintf("session_unused_timeout %s is longer than session_idle_timeout %s: a session that never called a tool "+
			"would outlive one that did; lower it or raise session_idle_timeout", l.unused, l.idle), "http", "session_unused_timeout")
	}
	return nil
}

// has reports whether the document sets the key path (mapping keys only).
func (c *Config) has(path ...string) bool {
	if c.root == nil || len(c.root.Content) == 0 {
		return false
	}
	n := c.root.Content[0]
	for _, k := range path {
		if n.Kind != yaml.MappingNode {
			return false
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return false
		}
		n = next
	}
	return true
}

func (c *Config) checkProfile(name string, p *Profile) error {
	at := func(msg string, key ...any) error {
		return c.errAt(msg, append([]any{"profiles", name}, key...)...)
	}
	switch {
	case p.Image == "":
		return at("image is required ("+strings.Join(images.Names(), " or ")+")", "image")
	case !slices.Contains(images.Names(), p.Image):
		return at(fmt.Sprintf("image %q: want one of %s", p.Image, strings.Join(images.Names(), ", ")), "image")
	}
	switch p.Seccomp {
	case "", sandbox.SeccompDefault, sandbox.SeccompFiles:
	case sandbox.SeccompUnconfined:
		// Refused in config: an unconfined tool would expose the whole syscall surface to
		// whatever the model sends it; that belongs to `airlock exec` by hand, not a tool.
		return at("seccomp unconfined is not allowed for tools; use default or files", "seccomp")
	default:
		return at(fmt.Sprintf("seccomp %q: want default or files", p.Seccomp), "seccomp")
	}
	switch p.Workspace {
	case "", "ro", "rw", "copy", "none":
	default:
		return at(fmt.Sprintf("workspace %q: want ro, rw, copy or none", p.Workspace), "workspace")
	}
	switch p.User {
	case "", "nobody", "workspace-owner":
	default:
		return at(fmt.Sprintf("user %q: want nobody or workspace-owner", p.User), "user")
	}
	sizes := []struct {
		key string
		v   string
		dst *int64
	}{{"memory", p.Memory, &p.limits.memory}, {"tmpfs", p.Tmpfs, &p.limits.tmpfs}, {"stdout", p.Stdout, &p.limits.stdout}, {"stderr", p.Stderr, &p.limits.stderr}}
	for _, s := range sizes {
		if s.v == "" {
			continue
		}
		n, err := sandbox.ParseBytes(s.v)
		if err != nil {
			return at(err.Error(), s.key)
		}
		*s.dst = n
	}
	if err := c.checkBounds(name, p); err != nil {
		return err
	}
	if err := c.checkNetwork(name, p); err != nil {
		return err
	}
	for i, e := range p.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return at(fmt.Sprintf("%q is not KEY=VALUE", e), "env", i)
		}
	}
	for i, m := range p.Mounts {
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Target) {
			return at("source and target must be absolute paths", "mounts", i)
		}
		if filepath.Clean(m.Target) == sandbox.WorkspaceTarget {
			return at("target /workspace is the workspace; use workspace: instead", "mounts", i)
		}
		switch m.Access {
		case "", "ro", "rw", "copy":
		default:
			return at(fmt.Sprintf("access %q: want ro, rw or copy", m.Access), "mounts", i, "access")
		}
	}
	return nil
}

// profile returns a configured profile or the built-in one of that name.
func (c *Config) profile(name string) (Profile, bool) {
	if p, ok := c.Profiles[name]; ok {
		return p, true
	}
	p, ok := builtinProfiles()[name]
	return p, ok
}

func (c *Config) profileNames() []string {
	var names []string
	for n := range builtinProfiles() {
		names = append(names, n)
	}
	for n := range c.Profiles {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// builtinProfiles are the sandboxes of the built-in tools. A config profile of the same name
// replaces one.
func builtinProfiles() map[string]Profile {
	mk := func(p Profile) Profile {
		p.limits = resolvedLimits{memory: mustBytes(p.Memory), tmpfs: mustBytes(p.Tmpfs)}
		return p
	}
	return map[string]Profile{
		// files: the toolbox on busybox, no sockets in the seccomp filter, small limits.
		"files": mk(Profile{Image: "busybox", Seccomp: sandbox.SeccompFiles, Workspace: "ro", User: "nobody",
			Memory: "64Mi", CPUs: 0.5, Pids: 16, Timeout: Duration(15 * time.Second), Tmpfs: "8Mi"}),
		// files-write: as files, with the workspace writable for this one call, as its owner
		// (so the written file keeps the workspace's ownership). On a root-owned workspace
		// that is uid 0, on purpose: as 65534 the write would fail or leave a nobody-owned
		// file any other nobody process could change, while uid 0 here has no capabilities
		// (no chown to others, no devices) and the seccomp profiles refuse setuid/setgid
		// modes, so it can change only what root already owns in the workspace
		// (docs/security.md, TestEscape/NoSetuidBitsOnWritableMounts).
		"files-write": mk(Profile{Image: "busybox", Seccomp: sandbox.SeccompFiles, Workspace: "rw", User: "workspace-owner",
			Memory: "64Mi", CPUs: 0.5, Pids: 16, Timeout: Duration(15 * time.Second), Tmpfs: "8Mi"}),
		// command: host toolchain, read-only workspace, no network.
		"command": mk(Profile{Image: "host", Seccomp: sandbox.SeccompDefault, Workspace: "ro", User: "nobody",
			Memory: "512Mi", CPUs: 1, Pids: 128, Timeout: Duration(60 * time.Second), Tmpfs: "256Mi"}),
		// git: git on the host image against the read-only workspace.
		"git": mk(Profile{Image: "host", Seccomp: sandbox.SeccompDefault, Workspace: "ro", User: "nobody",
			Memory: "256Mi", CPUs: 1, Pids: 64, Timeout: Duration(30 * time.Second), Tmpfs: "64Mi"}),
		// tests: a copy-on-write copy of the workspace (writes vanish with the container),
		// as the workspace owner so the copy is writable, long timeout, more pids and memory.
		"tests": mk(Profile{Image: "host", Seccomp: sandbox.SeccompDefault, Workspace: "copy", User: "workspace-owner",
			Memory: "2Gi", CPUs: 2, Pids: 1024, Timeout: Duration(10 * time.Minute), Tmpfs: "1Gi"}),
		// fetch: http_fetch's toolbox on busybox, no workspace; sockets allowed (seccomp
		// default) for the egress forwarder. It reaches no host until an operator's profile
		// of this name lists some under network.allow.
		"fetch": mk(Profile{Image: "busybox", Seccomp: sandbox.SeccompDefault, Workspace: "none", User: "nobody",
			Memory: "64Mi", CPUs: 0.5, Pids: 32, Timeout: Duration(60 * time.Second), Tmpfs: "8Mi"}),
		// upstream: a stdio MCP server (upstreams: command:), long-lived: the host image for
		// its runtime (node, python), no workspace, no network; its timeout is the longest a
		// container may live, after which the next call starts a new one.
		"upstream": mk(Profile{Image: "host", Seccomp: sandbox.SeccompDefault, Workspace: "none", User: "nobody",
			Memory: "512Mi", CPUs: 1, Pids: 256, Timeout: Duration(12 * time.Hour), Tmpfs: "256Mi"}),
	}
}

func mustBytes(v string) int64 {
	if v == "" {
		return 0
	}
	n, err := sandbox.ParseBytes(v)
	if err != nil {
		panic(err) // only called on the constants above
	}
	return n
}
