// Command airlock is a policy-governed, container-sandboxed runtime for the tools AI agents call.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand. It returns the process exit code.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"exec":      {"run one command in a fresh sandbox", cmdExec},
		"call":      {"run one tool call through all seven stages", cmdCall},
		"serve":     {"serve MCP over stdio, streamable HTTP or a daemon socket", cmdServe},
		"connect":   {"connect an agent's stdio to a daemon socket", cmdConnect},
		"policy":    {"check, evaluate and test policies", cmdPolicy},
		"audit":     {"verify and read the audit log", cmdAudit},
		"pins":      {"review and approve upstream tools' pins", cmdPins},
		"upstreams": {"list and check upstream MCP servers", cmdUpstreams},
		"grant":     {"create, list and revoke grants", cmdGrant},
		"kill":      {"stop a tool, grant, session or everything now", cmdKill},
		"resume":    {"turn a kill switch off", cmdResume},
		"cache":     {"list and clear run_tests' caches", cmdCache},
		"images":    {"build and list sandbox images", cmdImages},
		"doctor":    {"report what works on this machine", cmdDoctor},
		"version":   {"print the versions of airlock, Go and runc", cmdVersion},
	}
}

func main() {
	// A write to a closed stdout or stderr (the client died, or closed the pipe it gave us
	// for diagnostics) must be an error Airlock handles, not SIGPIPE: dying there would leave
	// the running containers without their owner and the calls without their records.
	signal.Ignore(syscall.SIGPIPE)
	// A closed terminal or dropped SSH session (SIGHUP) and SIGQUIT stop Airlock the way
	// SIGTERM does: calls in flight are cancelled, their containers killed and recorded.
	// After the first signal the defaults return, so a second one stops Airlock at once.
	// Under nohup SIGHUP arrives ignored, and must stay so: registering it would undo that.
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT}
	if !signal.Ignored(syscall.SIGHUP) && !hangupReloads(os.Args[1:]) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	go func() { <-ctx.Done(); stop() }()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// hangupReloads reports whether the command is a server without a terminal (serve --http or
// --socket), for which SIGHUP means what it means to daemons: reload the policy. A stdio
// server keeps SIGHUP as the end of its terminal.
func hangupReloads(args []string) bool {
	if len(args) == 0 || args[0] != "serve" {
		return false
	}
	for _, a := range args[1:] {
		if a == "--stdio" || a == "-stdio" {
			return false
		}
	}
	return true
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		args = []string{"version"}
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "airlock: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: airlock COMMAND [flags]")
	fmt.Fprintln(w)
	for _, name := range []string{"serve", "connect", "call", "exec", "policy", "grant", "kill", "resume", "audit", "upstreams", "pins", "cache", "images", "doctor", "version"} {
		fmt.Fprintf(w, "  %-9s %s\n", name, cmds[name].summary)
	}
	fmt.Fprintln(w, "\nRun 'airlock COMMAND -h' for the flags of one command.")
}
