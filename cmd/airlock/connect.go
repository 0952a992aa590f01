package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/airlock-mcp/airlock/runtime"
)

const connectUsage = `usage: airlock connect --socket PATH

The MCP stdio command for agents that do not run as root: it connects to a daemon started with
airlock serve --socket PATH and passes MCP between the agent (stdin, stdout) and the daemon,
which acts for the grant of this user's uid. In a client's config:

  {"command": "airlock", "args": ["connect", "--socket", "/run/airlock/mcp.sock"]}
`

func cmdConnect(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock connect", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	socket := fs.String("socket", "", "daemon socket")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *socket == "" {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, connectUsage)
			return 0
		}
		fmt.Fprintf(stderr, "airlock connect: give --socket PATH\n\n%s", connectUsage)
		return 2
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", *socket)
	if err != nil {
		fmt.Fprintf(stderr, "airlock connect: %v (is airlock serve --socket %s running?)\n", err, *socket)
		return 1
	}
	uc := c.(*net.UnixConn)
	defer uc.Close()
	r := bufio.NewReader(uc)
	line, err := r.ReadBytes('\n')
	var hello runtime.DaemonHello
	if err == nil {
		err = json.Unmarshal(line, &hello)
	}
	if err != nil || hello.Airlock == "" {
		fmt.Fprintf(stderr, "airlock connect: %s does not answer as an airlock daemon (%v)\n", *socket, err)
		return 1
	}
	if hello.Error != "" {
		fmt.Fprintf(stderr, "airlock connect: refused: %s\n", hello.Error)
		return 1
	}
	fmt.Fprintf(stderr, "airlock connect: connected to %s as grant %s\n", *socket, hello.Grant)
	// The agent's requests: when it closes stdin, the daemon reads EOF and ends the session
	// (cancelling its calls); the answers still in flight come back on the read side.
	go func() {
		_, _ = io.Copy(uc, os.Stdin)
		_ = uc.CloseWrite()
	}()
	// The daemon's answers. When the agent stops reading (stdout closed) or the daemon goes,
	// the connection is closed, which ends the session and its calls on the daemon's side.
	stop := context.AfterFunc(ctx, func() { uc.Close() })
	defer stop()
	if _, err := io.Copy(stdout, r); err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "airlock connect: %v\n", err)
		return 1
	}
	return 0
}
