package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/runtime"
	"github.com/airlock-mcp/airlock/sandbox/backends"
)

const serveUsage = `usage: airlock serve (--stdio | --http ADDR | --socket PATH) [--config F] [--workspace DIR] [--policy F]

Serves Airlock's tools over MCP. Every tool call runs through the policy and a fresh sandbox.

  --stdio           MCP over stdin/stdout (for Claude Code, Cursor and other local clients)
  --http ADDR       streamable HTTP at http://ADDR/mcp (e.g. 127.0.0.1:8811); beyond loopback
                    it needs bearer tokens (http.tokens in the config, or airlock grant)
  --socket PATH     a daemon for agents of other users: each runs airlock connect --socket
                    PATH as its MCP stdio command and acts as the grant of its uid
                    (airlock grant create NAME --uid N --no-token); runs as root
  --config F        YAML config (docs/config.md); default: built-in tools, safe default policy
  --workspace DIR   directory the tools see at /workspace (default: the config's, else .)
  --policy F        policy file, overriding the config's (default: the embedded safe policy)
  --backend NAME    sandbox backend (runc, docker, containerd), overriding the config's
                    backend: (default runc)
`

// runtimeFlags are the flags serve and call share.
type runtimeFlags struct {
	config, workspace, policy, backend string
}

func (f *runtimeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "YAML config file")
	fs.StringVar(&f.workspace, "workspace", "", "workspace directory")
	fs.StringVar(&f.policy, "policy", "", "policy file")
	fs.StringVar(&f.backend, "backend", "", "sandbox backend")
}

// loadConfig reads and resolves the config (or the built-in default).
func (f *runtimeFlags) loadConfig() (*runtime.Config, error) {
	cfg, err := readConfig(f.config)
	if err != nil {
		return nil, err
	}
	if err := cfg.Resolve(runtime.Overrides{Workspace: f.workspace, Policy: f.policy, Backend: f.backend, StateDir: stateDir()}); err != nil {
		return nil, err
	}
	return cfg, nil
}

// readConfig reads the config file at path, or the built-in default for "".
func readConfig(path string) (*runtime.Config, error) {
	if path != "" {
		return runtime.LoadConfig(path)
	}
	return runtime.ParseConfig("", nil)
}

func newLogger(stderr io.Writer) zerolog.Logger {
	return zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true}).With().Timestamp().Logger().Level(zerolog.InfoLevel)
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	fs := flag.NewFlagSet("airlock serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var rf runtimeFlags
	rf.register(fs)
	stdio := fs.Bool("stdio", false, "serve over stdio")
	httpAddr := fs.String("http", "", "serve streamable HTTP on ADDR")
	socket := fs.String("socket", "", "serve airlock connect clients on a Unix socket")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, serveUsage)
			return 0
		}
		fmt.Fprintf(stderr, "airlock serve: %v\n\n%s", err, serveUsage)
		return 2
	}
	modes := 0
	for _, on := range []bool{*stdio, *httpAddr != "", *socket != ""} {
		if on {
			modes++
		}
	}
	if fs.NArg() > 0 || modes != 1 {
		fmt.Fprintf(stderr, "airlock serve: give exactly one of --stdio, --http ADDR or --socket PATH\n\n%s", serveUsage)
		return 2
	}
	cfg, err := rf.loadConfig()
	if err != nil {
		fmt.Fprintf(stderr, "airlock serve: %v\n", err)
		return 2
	}
	var ln net.Listener
	log := newLogger(stderr)
	rt, err := runtime.Open(ctx, cfg, runtime.Options{StateDir: stateDir(), Backends: backends.Default(), Logger: log, Prestart: true})
	if err != nil {
		fmt.Fprintf(stderr, "airlock serve: %v\n", err)
		return 2
	}
	defer func() {
		// Closing writes the records of calls still being cancelled, and any held for lack of
		// disk space: a failure there is a lost record, which the exit code must not hide.
		if err := rt.Close(); err != nil {
			fmt.Fprintf(stderr, "airlock serve: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}()
	if *httpAddr != "" {
		// Checked before listening, so a refused bind never opens the port.
		if err := runtime.CheckBind(*httpAddr, len(cfg.HTTP.Tokens) > 0 || cfg.HTTP.JWT != nil || rt.HaveGrants(ctx)); err != nil {
			fmt.Fprintf(stderr, "airlock serve: %v\n", err)
			return 2
		}
	}
	warnImages(ctx, stderr)
	warnPolicyTools(stderr, cfg)
	stopAdmin := serveAdmin(ctx, rt, log)
	defer stopAdmin()
	if hangupReloads(append([]string{"serve"}, args...)) {
		defer reloadOnHangup(ctx, rt)()
	}
	if *httpAddr != "" {
		ln, err = net.Listen("tcp", *httpAddr)
		if err != nil {
			fmt.Fprintf(stderr, "airlock serve: %v\n", err)
			return 1
		}
		printConnect(stderr, cfg, rf, ln.Addr().String())
		if err := rt.ServeHTTP(ctx, ln); err != nil {
			fmt.Fprintf(stderr, "airlock serve: %v\n", err)
			return 1
		}
		fmt.Fprintln(stderr, "airlock serve: shut down")
		return 0
	}
	if *socket != "" {
		dl, err := runtime.ListenDaemon(*socket)
		if err != nil {
			fmt.Fprintf(stderr, "airlock serve: --socket: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "airlock serve: daemon socket %s: clients run `airlock connect --socket %s`; each acts as the grant of its uid (airlock grant create NAME --uid N)\n", *socket, *socket)
		if err := rt.ServeDaemon(ctx, dl); err != nil {
			fmt.Fprintf(stderr, "airlock serve: %v\n", err)
			return 1
		}
		fmt.Fprintln(stderr, "airlock serve: shut down")
		return 0
	}
	printConnect(stderr, cfg, rf, "")
	if err := rt.ServeTransport(ctx, &runtime.StdioTransport{}); err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "airlock serve: %v\n", err)
		return 1
	}
	return 0
}

// warnImages says up front when the images tools run on are missing, instead of at the first call.
func warnImages(ctx context.Context, stderr io.Writer) {
	store, err := images.Open(stateDir())
	if err != nil {
		return
	}
	for _, name := range []string{"busybox", "host"} {
		if _, err := store.Resolve(ctx, name); err != nil {
			fmt.Fprintf(stderr, "airlock serve: warning: %v\n", err)
		}
	}
}

// warnPolicyTools says at start which policy entries judge nothing because they name a tool
// this config does not serve (a typo such as run_comand leaves run_command to the default).
// A warning, not a refusal: the policy still fails closed for the tools that are served, and
// one policy may be shared by configs that serve different tools.
func warnPolicyTools(stderr io.Writer, cfg *runtime.Config) {
	p, err := cfg.LoadPolicy()
	if err != nil {
		return // Open loaded it already; nothing new to say
	}
	for _, is := range cfg.CheckPolicyTools(p) {
		if is.Unknown {
			fmt.Fprintf(stderr, "airlock serve: warning: policy %s: %s: %s\n", p.Name(), is.Pointer, is.Message)
		}
	}
}

// printConnect tells the operator how to connect clients (on stderr: stdout is the MCP stream).
func printConnect(w io.Writer, cfg *runtime.Config, rf runtimeFlags, httpAddr string) {
	self, err := os.Executable()
	if err == nil {
		if p, err := filepath.EvalSymlinks(self); err == nil {
			self = p
		}
	} else {
		self = "airlock"
	}
	policy := cfg.Policy
	if policy == "" {
		policy = "embedded safe default"
	}
	fmt.Fprintf(w, "airlock %s: workspace %s, grant %s, backend %s, policy %s, audit %s\n",
		runtime.Version, cfg.Workspace, cfg.Grant.ID, cfg.Backend, policy, cfg.Audit.Path)
	stdioArgs := []string{"serve", "--stdio", "--workspace", cfg.Workspace}
	if rf.config != "" {
		if abs, err := filepath.Abs(rf.config); err == nil {
			stdioArgs = append(stdioArgs, "--config", abs)
		}
	}
	if rf.policy != "" {
		stdioArgs = append(stdioArgs, "--policy", cfg.Policy)
	}
	if httpAddr == "" {
		fmt.Fprintf(w, "\nConnect Claude Code:\n  claude mcp add airlock -- %s %s\n", shellQuote(self), shellJoin(stdioArgs))
		cursor, _ := json.Marshal(map[string]any{"mcpServers": map[string]any{"airlock": map[string]any{"command": self, "args": stdioArgs}}})
		fmt.Fprintf(w, "Connect Cursor (.cursor/mcp.json):\n  %s\n", cursor)
		fmt.Fprintf(w, "Over HTTP instead: %s serve --http %s  ->  %s\n\n", shellQuote(self), cfg.HTTP.Addr, runtime.URL(cfg.HTTP.Addr))
		return
	}
	u := runtime.URL(httpAddr)
	fmt.Fprintf(w, "\nMCP endpoint (streamable HTTP): %s\n", u)
	auth := ""
	if len(cfg.HTTP.Tokens) > 0 {
		auth = ` --header "Authorization: Bearer $AIRLOCK_TOKEN"`
	}
	fmt.Fprintf(w, "Connect Claude Code:\n  claude mcp add --transport http airlock %s%s\n", u, auth)
	entry := map[string]any{"url": u}
	if auth != "" {
		entry["headers"] = map[string]string{"Authorization": "Bearer ${env:AIRLOCK_TOKEN}"}
	}
	cursor, _ := json.Marshal(map[string]any{"mcpServers": map[string]any{"airlock": entry}})
	fmt.Fprintf(w, "Connect Cursor (.cursor/mcp.json):\n  %s\n", cursor)
	fmt.Fprintf(w, "Or over stdio:\n  claude mcp add airlock -- %s %s\n\n", shellQuote(self), shellJoin(stdioArgs))
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it (the snippet is pasted into one).
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:@,+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// serveAdmin serves this process's admin socket (airlock kill, resume, policy reload) until
// the returned function is called. Without it those commands still take effect through the
// state store, within a poll; so a socket that cannot be made is a warning.
func serveAdmin(ctx context.Context, rt *runtime.Runtime, log zerolog.Logger) func() {
	ln, err := runtime.ListenAdmin(runtime.AdminDir(stateDir()))
	if err != nil {
		log.Warn().Err(err).Str("event", "admin.unavailable").Msg("no admin socket: kill switches and revocations apply within 0.25 s instead of at once; policy reload only by SIGHUP or a file change")
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := rt.ServeAdmin(ctx, ln); err != nil {
			log.Warn().Err(err).Str("event", "admin.stopped").Msg("admin socket stopped")
		}
	}()
	return func() { cancel(); <-done }
}

// reloadOnHangup reloads the policy on each SIGHUP until the returned function is called.
func reloadOnHangup(ctx context.Context, rt *runtime.Runtime) func() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_, _ = rt.ReloadPolicy() // logged either way
			}
		}
	}()
	return func() { signal.Stop(hup); cancel(); <-done }
}
