package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/runtime"
	"github.com/airlock-mcp/airlock/sandbox"
)

const upstreamsUsage = `usage:
  airlock upstreams list [--config F] [--json]
      The config's upstream MCP servers: URL or stdio command, tool-name prefix, pin mode,
      timeout.
  airlock upstreams check [--config F] [--json] NAME
      Connect to one upstream (a stdio server is started in its sandbox on the configured
      backend), list its tools and check each against its pins, recording what
      was seen as 'airlock serve' would (the first check of an upstream pins its tools).
      Prints each tool's name as served, its pin verdict and whether it would be served.
      Exit 0 every tool served, 1 a tool is withheld, 2 usage, config or connection error.

Upstreams are configured under upstreams: (docs/gateway.md).
`

func cmdUpstreams(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, upstreamsUsage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, upstreamsUsage)
		return 0
	case "list", "check":
	default:
		fmt.Fprintf(stderr, "airlock upstreams: unknown subcommand %q\n\n%s", args[0], upstreamsUsage)
		return 2
	}
	fs := flag.NewFlagSet("airlock upstreams "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var rf runtimeFlags
	rf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	rest, err := parseInterleaved(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, upstreamsUsage)
			return 0
		}
		fmt.Fprintf(stderr, "airlock upstreams %s: %v\n\n%s", args[0], err, upstreamsUsage)
		return 2
	}
	if (args[0] == "list") != (len(rest) == 0) || len(rest) > 1 {
		fmt.Fprintf(stderr, "airlock upstreams %s: wrong arguments\n\n%s", args[0], upstreamsUsage)
		return 2
	}
	cfg, err := rf.loadConfig()
	if err != nil {
		fmt.Fprintf(stderr, "airlock upstreams: %v\n", err)
		return 2
	}
	stdout = clientTextWriter{stdout}
	if args[0] == "list" {
		type row struct {
			Name    string `json:"name"`
			URL     string `json:"url,omitempty"`
			Command bool   `json:"stdio,omitempty"`
			Prefix  string `json:"prefix"`
			Pins    string `json:"pins"`
			Timeout string `json:"timeout"`
		}
		rows := []row{}
		for _, name := range slices.Sorted(maps.Keys(cfg.Upstreams)) {
			u := cfg.Upstreams[name]
			r := row{Name: name, URL: u.URL, Command: len(u.Command) > 0, Prefix: name, Pins: u.Pins, Timeout: runtime.DefaultUpstreamTimeout.String()}
			if u.Prefix != nil {
				r.Prefix = *u.Prefix
			}
			if r.Pins == "" {
				r.Pins = "enforce"
			}
			if u.Timeout > 0 {
				r.Timeout = time.Duration(u.Timeout).String()
			}
			rows = append(rows, r)
		}
		if *asJSON {
			b, _ := json.MarshalIndent(rows, "", "  ")
			fmt.Fprintf(stdout, "%s\n", b)
			return 0
		}
		if len(rows) == 0 {
			fmt.Fprintln(stdout, "no upstreams configured")
			return 0
		}
		for _, r := range rows {
			where := r.URL
			if r.Command {
				where = "stdio: " + strings.Join(cfg.Upstreams[r.Name].Command, " ")
			}
			fmt.Fprintf(stdout, "%-16s %s  prefix=%q pins=%s timeout=%s\n", r.Name, where, r.Prefix, r.Pins, r.Timeout)
		}
		return 0
	}
	var backend sandbox.Backend
	if u, ok := cfg.Upstreams[rest[0]]; ok && len(u.Command) > 0 {
		// A stdio server is checked where it would serve: in its sandbox, on the backend.
		b, closeBackend, err := openRegistered(ctx, cfg.Backend, newLogger(stderr).Level(zerolog.WarnLevel))
		if err != nil {
			fmt.Fprintf(stderr, "airlock upstreams check: sandbox backend %s is not usable (stdio servers never run unsandboxed): %v\n", cfg.Backend, err)
			return 2
		}
		defer closeBackend()
		backend = b
	}
	tools, err := runtime.CheckUpstream(ctx, cfg, backend, stateDir(), rest[0])
	if err != nil {
		fmt.Fprintf(stderr, "airlock upstreams check: %v\n", err)
		return 2
	}
	code := 0
	for _, t := range tools {
		if !t.Served {
			code = 1
		}
	}
	if *asJSON {
		b, _ := json.MarshalIndent(tools, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return code
	}
	for _, t := range tools {
		state := "served"
		if !t.Served {
			state = "WITHHELD"
		}
		fmt.Fprintf(stdout, "%-40s %-10s %-9s %s\n", t.Exposed, t.Decision, state, shortHash(t.Hash))
		if t.Message != "" {
			fmt.Fprintf(stdout, "    %s\n", t.Message)
		}
	}
	return code
}
