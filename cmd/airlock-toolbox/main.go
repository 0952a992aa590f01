// Command airlock-toolbox runs inside sandboxes. It implements Airlock's file tools, printing
// one JSON object on stdout and never starting a shell:
//
//	airlock-toolbox TOOL 'JSON-ARGS'
//	airlock-toolbox TOOL -        (arguments read from stdin, for write_file's content)
//
// TOOL is read_file, list_directory, search_files or write_file. Paths in the arguments are
// relative to /workspace (an absolute path must lie under /workspace). On failure it prints
// {"error": "..."} and exits 1; on a usage error it exits 2.
//
// It is also every runc sandbox's pid 1, which starts the command and enforces its deadline
// even if Airlock is gone (see init.go):
//
//	airlock-toolbox init --deadline DURATION [--egress IP:PORT=SOCKET] -- CMD [ARGS...]
//
// and, in a sandbox with network proxy, the forwarder the init starts beside the command,
// which pipes TCP connections to the egress proxy's Unix socket (see egress.go):
//
//	airlock-toolbox egress-forward (IP:PORT | fd:N) SOCKET
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// workspaceRoot is where the sandbox mounts the workspace. Tests run the same code against a
// temporary directory by calling run directly.
const workspaceRoot = "/workspace"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		os.Exit(initMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "egress-forward" {
		os.Exit(egressForwardMain(os.Args[2:]))
	}
	os.Exit(run(workspaceRoot, os.Args[1:], os.Stdin, os.Stdout))
}

// maxStdinArgs bounds arguments read from stdin (write_file content plus JSON overhead).
const maxStdinArgs = 8 << 20

// run executes one tool against root and writes exactly one JSON object to out.
func run(root string, args []string, stdin io.Reader, out io.Writer) int {
	if len(args) != 2 {
		writeJSON(out, errorResult{Error: "usage: airlock-toolbox TOOL 'JSON-ARGS' or TOOL - (tools: read_file, list_directory, search_files, write_file)"})
		return 2
	}
	raw := []byte(args[1])
	if args[1] == "-" {
		// Linux caps one argv string at 128 KiB (MAX_ARG_STRLEN), so large write_file contents
		// arrive on stdin instead.
		b, err := io.ReadAll(io.LimitReader(stdin, maxStdinArgs+1))
		if err != nil || len(b) > maxStdinArgs {
			writeJSON(out, errorResult{Error: fmt.Sprintf("reading arguments from stdin: more than %d bytes or unreadable", maxStdinArgs)})
			return 2
		}
		raw = b
	}
	res, err := dispatch(root, args[0], raw)
	if err != nil {
		writeJSON(out, errorResult{Error: err.Error()})
		return 1
	}
	writeJSON(out, res)
	return 0
}

type errorResult struct {
	Error string `json:"error"`
}

func writeJSON(out io.Writer, v any) {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(out, "{\"error\": %q}\n", "encoding result: "+err.Error())
	}
}
