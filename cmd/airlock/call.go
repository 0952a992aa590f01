package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/pipeline"
	"github.com/airlock-mcp/airlock/policies"
	"github.com/airlock-mcp/airlock/runtime"
	"github.com/airlock-mcp/airlock/sandbox/backends"
)

const callUsage = `usage: airlock call [--config F] [--workspace DIR] [--policy F] [--backend NAME] [--grant ID] TOOL 'JSON'

Runs one tool call through all seven stages (schema, policy, sandbox, sanitising, audit) and
prints the MCP CallToolResult as JSON. JSON '-' reads the arguments from stdin.

Exit codes: 0 ok, 1 the tool failed, 3 denied by policy (or approval declined), 2 usage/config.

  --config F        YAML config (docs/config.md); default: built-in tools, safe default policy
  --workspace DIR   directory the tool sees at /workspace (default: the config's, else .)
  --policy F        policy file, overriding the config's
  --backend NAME    sandbox backend (runc, docker, containerd), overriding the config's
  --grant ID        act as this grant id (default: the config's grant, else "local")

A call that needs approval (approve_if) asks on the terminal when stdin is one; otherwise it is
denied.
`

func cmdCall(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	fs := flag.NewFlagSet("airlock call", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var rf runtimeFlags
	rf.register(fs)
	grant := fs.String("grant", "", "grant id")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, callUsage)
			return 0
		}
		fmt.Fprintf(stderr, "airlock call: %v\n\n%s", err, callUsage)
		return 2
	}
	if fs.NArg() != 2 {
		fmt.Fprintf(stderr, "airlock call: want TOOL and 'JSON' arguments, got %d\n\n%s", fs.NArg(), callUsage)
		return 2
	}
	tool, rawArgs := fs.Arg(0), []byte(fs.Arg(1))
	fromStdin := fs.Arg(1) == "-"
	if fromStdin {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
		if err != nil {
			fmt.Fprintf(stderr, "airlock call: reading arguments from stdin: %v\n", err)
			return 2
		}
		rawArgs = b
	}
	if !json.Valid(rawArgs) {
		fmt.Fprintf(stderr, "airlock call: arguments are not valid JSON: %s\n", strings.TrimSpace(string(rawArgs)))
		return 2
	}
	cfg, err := rf.loadConfig()
	if err != nil {
		fmt.Fprintf(stderr, "airlock call: %v\n", err)
		return 2
	}
	rt, err := runtime.Open(ctx, cfg, runtime.Options{StateDir: stateDir(), Backends: backends.Default(), Logger: newLogger(stderr).Level(zerolog.WarnLevel)})
	if err != nil {
		fmt.Fprintf(stderr, "airlock call: %v\n", err)
		return 2
	}
	defer func() {
		// Closing writes the records of calls still being cancelled, and any held for lack of
		// disk space: a failure there is a lost record, which the exit code must not hide.
		if err := rt.Close(); err != nil {
			fmt.Fprintf(stderr, "airlock call: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}()
	if _, ok := rt.Tool(tool); !ok && !rt.IsUpstreamTool(ctx, tool) {
		fmt.Fprintf(stderr, "airlock call: unknown tool %q; this config serves: %s\n", tool, toolNames(rt))
		return 2
	}
	g := rt.Grant()
	if *grant != "" {
		g = policies.Grant{ID: *grant}
	}
	call := pipeline.Call{Tool: tool, Args: rawArgs, Grant: g, Session: "cli-" + rand.Text()}
	if !fromStdin && isTerminal(os.Stdin) {
		call.Approver = terminalApprover{in: os.Stdin, out: stderr}
	}
	res := rt.Run(ctx, call)
	out, err := json.MarshalIndent(runtime.CallToolResult(res, rt.OutputPlacement(nil)), "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "airlock call: encoding result: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", out)
	switch {
	case res.Denied:
		return 3
	case res.IsError:
		return 1
	}
	return 0
}

func toolNames(rt *runtime.Runtime) string {
	var names []string
	for _, n := range runtime.BuiltinNames() {
		if _, ok := rt.Tool(n); ok {
			names = append(names, n)
		}
	}
	for _, t := range rt.Config().Tools {
		names = append(names, t.Name)
	}
	return strings.Join(names, ", ")
}

// isTerminal reports whether f is a terminal (not merely a character device like /dev/null).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// terminalApprover asks the operator at the terminal. Anything but "y"/"yes" denies.
type terminalApprover struct {
	in  io.Reader
	out io.Writer
}

func (a terminalApprover) Approve(ctx context.Context, req pipeline.ApprovalRequest) (bool, error) {
	// The same rendering as the MCP approval form: every argument on its own line, short ones
	// first, every byte of them, and no byte that could drive the terminal (json.Marshal leaves
	// C1 controls and bidi overrides as they are). Arguments too long to review (a 4 MiB content
	// scrolled the prompt away) are refused without asking.
	shown, err := runtime.ShowArgs(req.Args)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(a.out, "airlock: %s\n  tool: %s\n  args:\n%s\n  rule: %s\napprove? [y/N] ",
		req.Decision.Message, req.Tool, shown, req.Decision.Rule)
	line, err := bufio.NewReader(a.in).ReadString('\n')
	if err != nil && line == "" {
		return false, fmt.Errorf("reading the answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
