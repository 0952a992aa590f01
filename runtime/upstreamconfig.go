package runtime

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/upstream/pins"
)

// UpstreamConfig is one third-party MCP server Airlock serves as a gateway (docs/gateway.md):
// a remote server over streamable HTTP (url), or a stdio server (command) run in a long-lived
// hardened container of its profile, on the configured backend.
type UpstreamConfig struct {
	// URL is a remote server's streamable-HTTP endpoint (https, or http on loopback).
	URL string `yaml:"url"`
	// Headers are sent with every request to the upstream; their values come from the
	// environment or a file and are never shown to the agent (and redacted from results).
	Headers map[string]SecretSource `yaml:"headers"`
	// Command is a stdio server's argv, run inside its sandbox (argv[0] is looked up in the
	// image's PATH). Env is its environment on top of the profile's: values come from the
	// environment or a file, reach only the server, and are redacted from its results.
	Command []string                `yaml:"command"`
	Env     map[string]SecretSource `yaml:"env"`
	// Profile is the sandbox a stdio server runs in; default "upstream" (host image, no
	// workspace, no network, 512Mi, 256 pids, a 12h lifetime).
	Profile string `yaml:"profile"`
	// Mounts are host directories the server needs (its code, say), read-only unless access
	// says copy; added to the profile's.
	Mounts []MountConfig `yaml:"mounts"`
	// Workdir is the server's working directory inside its sandbox; default /.
	Workdir string `yaml:"workdir"`
	// Lifecycle is session (default: one container per client session, started at its first
	// call) or call (a fresh container for every tools/call).
	Lifecycle string `yaml:"lifecycle"`
	// IdleTimeout stops a session's server after that long without a call (default 10m);
	// the next call starts a new one.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// Prefix is put before the upstream's tool names, with "__": default the upstream's
	// name; "" keeps the upstream's own names.
	Prefix *string `yaml:"prefix"`
	// Pins is enforce (default), warn or off (see package pins).
	Pins string `yaml:"pins"`
	// Timeout bounds one call to the upstream; default 60s.
	Timeout Duration `yaml:"timeout"`
	// Trust is trusted (default) or untrusted: whether what the upstream's tools return
	// taints the session (see trust.go).
	Trust string `yaml:"trust"`
}

// SecretSource is a value Airlock holds for an upstream: from an environment variable or a
// file (trailing newline trimmed), with an optional prefix ("Bearer "), or a plain value for
// what is not secret.
type SecretSource struct {
	FromEnv  string `yaml:"from_env"`
	FromFile string `yaml:"from_file"`
	Value    string `yaml:"value"`
	Prefix   string `yaml:"prefix"`
}

// DefaultUpstreamTimeout bounds a call to an upstream without timeout:.
const DefaultUpstreamTimeout = 60 * time.Second

// DefaultUpstreamIdle stops a session's stdio server after that long without a call.
const DefaultUpstreamIdle = 10 * time.Minute

// UpstreamProfile is the built-in profile of stdio servers.
const UpstreamProfile = "upstream"

// Lifecycles of a stdio server's container.
const (
	LifecycleSession = "session"
	LifecycleCall    = "call"
)

// maxToolName is the longest MCP tool name clients accept.
const maxToolName = 64

var (
	upstreamName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	namePrefix   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	headerName   = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`)
)

// ExposedName is the name clients see for an upstream's tool: prefix__tool, or tool itself
// when the prefix is "".
func ExposedName(prefix, tool string) string {
	if prefix == "" {
		return tool
	}
	return prefix + "__" + tool
}

// prefix is the upstream's effective name prefix.
func (u UpstreamConfig) prefix(name string) string {
	if u.Prefix == nil {
		return name
	}
	return *u.Prefix
}

// validateUpstreams checks the upstreams: section.
func (c *Config) validateUpstreams() error {
	prefixes := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.Upstreams)) {
		u := c.Upstreams[name]
		at := func(msg string, key ...any) error { return c.errAt(msg, append([]any{"upstreams", name}, key...)...) }
		if !upstreamName.MatchString(name) {
			return at(fmt.Sprintf("upstream name %q: 1-64 of letters, digits, _ . - starting with a letter or digit (it names its pin file)", name))
		}
		switch {
		case u.URL != "" && len(u.Command) > 0:
			return at("set either url (a remote server) or command (a stdio server), not both")
		case u.URL != "":
			if err := checkUpstreamURL(u.URL); err != nil {
				return at(err.Error(), "url")
			}
			for key, set := range map[string]bool{"env": len(u.Env) > 0, "profile": u.Profile != "", "mounts": len(u.Mounts) > 0,
				"workdir": u.Workdir != "", "lifecycle": u.Lifecycle != "", "idle_timeout": u.IdleTimeout != 0} {
				if set {
					return at(key+" is for stdio servers (command:); a remote server runs elsewhere and gets headers:", key)
				}
			}
		case len(u.Command) > 0:
			if u.Command[0] == "" {
				return at("command[0] is empty", "command")
			}
			if len(u.Headers) > 0 {
				return at("headers are for remote servers (url:); a stdio server gets env:", "headers")
			}
			if err := c.validateStdio(name, u); err != nil {
				return err
			}
		default:
			return at("set url (a remote streamable-HTTP server) or command (a stdio server)")
		}
		for _, h := range slices.Sorted(maps.Keys(u.Headers)) {
			if !headerName.MatchString(h) {
				return at(fmt.Sprintf("%q is not an HTTP header name", h), "headers", h)
			}
			switch http.CanonicalHeaderKey(h) {
			case "Host", "Content-Length", "Content-Type", "Accept", "Connection", "Transfer-Encoding", "Mcp-Session-Id", "Mcp-Protocol-Version", "Last-Event-Id":
				return at(fmt.Sprintf("header %s is set by Airlock's MCP client, not the config", h), "headers", h)
			}
			if err := u.Headers[h].check(); err != nil {
				return at(err.Error(), "headers", h)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(u.Env)) {
			if err := u.Env[k].check(); err != nil {
				return at(err.Error(), "env", k)
			}
		}
		if _, err := pins.ParseMode(u.Pins); err != nil {
			return at(err.Error(), "pins")
		}
		if err := checkTrust(u.Trust); err != nil {
			return at(err.Error(), "trust")
		}
		p := u.prefix(name)
		if p != "" {
			if !namePrefix.MatchString(p) {
				return at(fmt.Sprintf("prefix %q: use letters, digits, _ . - (it starts MCP tool names)", p), "prefix")
			}
			if len(ExposedName(p, "x")) > maxToolName {
				return at(fmt.Sprintf("prefix %q leaves no room for a tool name within MCP's %d characters", p, maxToolName), "prefix")
			}
			if other, dup := prefixes[p]; dup {
				return at(fmt.Sprintf("prefix %q is also upstream %s's: their tool names would collide", p, other), "prefix")
			}
			prefixes[p] = name
		}
	}
	for i, t := range c.Tools {
		for p, up := range prefixes {
			if strings.HasPrefix(t.Name, p+"__") {
				return c.errAt(fmt.Sprintf("tool name %q is in the name space of upstream %s (prefix %s__)", t.Name, up, p), "tools", i, "name")
			}
		}
	}
	return nil
}

// validateStdio checks what only a stdio server has: its profile, mounts, lifecycle.
func (c *Config) validateStdio(name string, u UpstreamConfig) error {
	at := func(msg string, key ...any) error { return c.errAt(msg, append([]any{"upstreams", name}, key...)...) }
	if _, ok := c.profile(u.stdioProfile()); !ok {
		return at(fmt.Sprintf("unknown profile %q (profiles: %s)", u.Profile, strings.Join(c.profileNames(), ", ")), "profile")
	}
	switch u.Lifecycle {
	case "", LifecycleSession, LifecycleCall:
	default:
		return at(fmt.Sprintf("lifecycle %q: want session (one server per client session) or call (a fresh one per call)", u.Lifecycle), "lifecycle")
	}
	if u.IdleTimeout < 0 {
		return at("idle_timeout must not be negative", "idle_timeout")
	}
	if u.Workdir != "" && !path.IsAbs(u.Workdir) {
		return at(fmt.Sprintf("workdir %q must be an absolute path inside the sandbox", u.Workdir), "workdir")
	}
	for i, m := range u.Mounts {
		if m.Source == "" {
			return at("mount source is empty (a host directory, relative to the config file)", "mounts", i, "source")
		}
		if !path.IsAbs(m.Target) {
			return at(fmt.Sprintf("mount target %q must be an absolute path inside the sandbox", m.Target), "mounts", i, "target")
		}
		switch m.Access {
		case "", "ro", "copy":
		default:
			return at(fmt.Sprintf("access %q: an upstream's own mounts are ro or copy (give a profile the workspace rw if the server must write it)", m.Access), "mounts", i, "access")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(u.Env)) {
		if !envName.MatchString(k) {
			return at(fmt.Sprintf("%q is not an environment variable name", k), "env", k)
		}
	}
	return nil
}

// stdioProfile is the profile a stdio server runs in.
func (u UpstreamConfig) stdioProfile() string {
	if u.Profile == "" {
		return UpstreamProfile
	}
	return u.Profile
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (s SecretSource) check() error {
	n := 0
	for _, v := range []string{s.FromEnv, s.FromFile, s.Value} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("set exactly one of from_env, from_file or value (secrets come from the environment or a file, never the config)")
	}
	return nil
}

// checkUpstreamURL accepts https URLs, and http ones on a loopback host only: over plain HTTP
// beyond the machine, the brokered credentials and every result would cross the network in
// clear, and anyone on the path could rewrite the tools the model is shown.
func checkUpstreamURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.User != nil {
		return fmt.Errorf("credentials in the URL would be shown wherever the URL is; use headers: with from_env or from_file")
	}
	host := u.Hostname()
	switch {
	case host == "":
		return fmt.Errorf("%q has no host", raw)
	case u.Scheme == "https":
	case u.Scheme == "http":
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("%q: plain http is allowed only on loopback; use https", raw)
		}
	default:
		return fmt.Errorf("%q: want an https URL (or http on loopback)", raw)
	}
	return nil
}

// resolve reads the value (relative files against dir).
func (s SecretSource) resolve(dir string) (string, error) {
	var v string
	switch {
	case s.FromEnv != "":
		e, ok := os.LookupEnv(s.FromEnv)
		if !ok || e == "" {
			return "", fmt.Errorf("environment variable %s is not set", s.FromEnv)
		}
		v = e
	case s.FromFile != "":
		p := s.FromFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		v = strings.TrimRight(string(b), "\r\n")
	default:
		v = s.Value
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return "", fmt.Errorf("the value holds a line break or NUL")
	}
	return s.Prefix + v, nil
}

// secret reports whether the value is a credential (to redact from results).
func (s SecretSource) secret() bool { return s.Value == "" }
