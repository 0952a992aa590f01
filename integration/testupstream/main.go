// Command testupstream is a small MCP server over stdio that the gateway tests run as a stdio
// upstream INSIDE an Airlock sandbox (and, for the benchmark's baseline, directly). Besides an
// echo and a lookup tool whose description an operator can change (a "rug pull"), its tools
// attempt what a hostile or compromised server would try first: reach the network, write the
// workspace and its own code, read host secrets and environments, and exit mid-call. Each
// attempt is one JSON line of the tool's text result, so the test on the host can assert both
// that it failed inside and that nothing of it showed up outside.
//
// Every attempt is harmless even if the sandbox failed to stop it: connections are closed at
// once, and writes only create files named by the test, which the test then looks for.
//
// Its fetch tool is what a well-behaved server with an API does: one HTTP GET with Go's
// default client, which goes through the proxy the environment names (HTTP_PROXY), as it
// does under a profile whose network.allow lists hosts.
//
// Flags:
//
//	-desc-file PATH   the lookup tool's description, read once at start (default: a fixed text)
//	-marker TEXT      ignored; put on the command line so the host can find the server's processes
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Attempt is one line of a tool's result.
type Attempt struct {
	Op   string `json:"op"`
	OK   bool   `json:"ok"`
	Err  string `json:"err,omitempty"`
	Data string `json:"data,omitempty"` // what a read returned (capped)
}

const dataCap = 64 << 10

type textArgs struct {
	Text string `json:"text"`
}

type wordArgs struct {
	Word string `json:"word"`
}

type netArgs struct {
	Addrs []string `json:"addrs" jsonschema:"host:port to connect to over TCP"`
	Names []string `json:"names" jsonschema:"DNS names to resolve and connect to on port 80"`
}

type pathArgs struct {
	Paths []string `json:"paths"`
}

type fetchArgs struct {
	URL string `json:"url"`
}

// Fetched is the fetch tool's result: the response's status, its X-Airlock-Egress header
// (an egress proxy's refusal says why there) and body, or the error that stopped the request.
type Fetched struct {
	URL    string `json:"url"`
	Status int    `json:"status,omitempty"`
	Egress string `json:"egress,omitempty"`
	Body   string `json:"body,omitempty"` // capped at dataCap
	Err    string `json:"err,omitempty"`
}

type procArgs struct {
	Pids []string `json:"pids,omitempty" jsonschema:"more /proc/PID/environ to read"`
}

func main() {
	descFile := flag.String("desc-file", "", "file holding the lookup tool's description")
	flag.String("marker", "", "ignored: identifies the server's processes on the host")
	flag.Parse()

	desc := "Looks up a word in the dictionary."
	if *descFile != "" {
		b, err := os.ReadFile(*descFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testupstream: %v\n", err)
			os.Exit(2)
		}
		desc = strings.TrimSpace(string(b))
	}

	s := mcp.NewServer(&mcp.Implementation{Name: "testupstream", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Echoes text."},
		func(_ context.Context, _ *mcp.CallToolRequest, a textArgs) (*mcp.CallToolResult, any, error) {
			return text("echo: " + a.Text), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "lookup", Description: desc},
		func(_ context.Context, _ *mcp.CallToolRequest, a wordArgs) (*mcp.CallToolResult, any, error) {
			return text("definition of " + a.Word), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "net", Description: "Tries to reach the network."},
		func(ctx context.Context, _ *mcp.CallToolRequest, a netArgs) (*mcp.CallToolResult, any, error) {
			var out []Attempt
			for _, addr := range a.Addrs {
				out = append(out, dial(ctx, addr))
			}
			for _, name := range a.Names {
				rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				ips, err := net.DefaultResolver.LookupHost(rctx, name)
				cancel()
				out = append(out, attempt("resolve "+name, err, strings.Join(ips, " ")))
				out = append(out, dial(ctx, net.JoinHostPort(name, "80")))
			}
			return lines(out), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "write", Description: "Tries to create or overwrite files."},
		func(_ context.Context, _ *mcp.CallToolRequest, a pathArgs) (*mcp.CallToolResult, any, error) {
			var out []Attempt
			for _, p := range a.Paths {
				err := os.WriteFile(p, []byte("written by testupstream\n"), 0o644)
				out = append(out, attempt("write "+p, err, ""))
			}
			return lines(out), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "read", Description: "Tries to read files and list directories."},
		func(_ context.Context, _ *mcp.CallToolRequest, a pathArgs) (*mcp.CallToolResult, any, error) {
			var out []Attempt
			for _, p := range a.Paths {
				out = append(out, read(p))
			}
			return lines(out), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "environ", Description: "Shows every environment it can find."},
		func(_ context.Context, _ *mcp.CallToolRequest, a procArgs) (*mcp.CallToolResult, any, error) {
			out := []Attempt{{Op: "environ self", OK: true, Data: strings.Join(os.Environ(), "\n")}}
			pids := []string{"self", "1"}
			if ents, err := os.ReadDir("/proc"); err == nil {
				for _, e := range ents {
					if n := e.Name(); n[0] >= '0' && n[0] <= '9' && !slices.Contains(pids, n) {
						pids = append(pids, n)
					}
				}
			}
			for _, pid := range append(pids, a.Pids...) {
				out = append(out, read(filepath.Join("/proc", pid, "environ")))
			}
			return lines(out), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "fetch", Description: "Fetches a URL with an HTTP GET."},
		func(ctx context.Context, _ *mcp.CallToolRequest, a fetchArgs) (*mcp.CallToolResult, any, error) {
			j, _ := json.Marshal(fetch(ctx, a.URL))
			return text(string(j)), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "crash", Description: "Exits in the middle of the call."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			fmt.Fprintln(os.Stderr, "testupstream: crashing on purpose")
			os.Exit(3)
			return nil, nil, nil
		})
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		fmt.Fprintf(os.Stderr, "testupstream: %v\n", err)
		os.Exit(1)
	}
}

func dial(ctx context.Context, addr string) Attempt {
	d := net.Dialer{Timeout: 3 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
	}
	return attempt("connect "+addr, err, "")
}

// fetch GETs url with http.DefaultTransport, whose proxy comes from the environment.
func fetch(ctx context.Context, url string) Fetched {
	out := Fetched{URL: url}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		out.Err = err.Error()
		return out
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		out.Err = err.Error()
		return out
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, dataCap))
	out.Status, out.Egress, out.Body = resp.StatusCode, resp.Header.Get("X-Airlock-Egress"), string(b)
	if err != nil {
		out.Err = err.Error()
	}
	return out
}

func read(p string) Attempt {
	fi, err := os.Stat(p)
	if err != nil {
		return attempt("read "+p, err, "")
	}
	if fi.IsDir() {
		ents, err := os.ReadDir(p)
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return attempt("read "+p, err, strings.Join(names, "\n"))
	}
	b, err := os.ReadFile(p)
	return attempt("read "+p, err, strings.ReplaceAll(string(b[:min(len(b), dataCap)]), "\x00", "\n"))
}

func attempt(op string, err error, data string) Attempt {
	a := Attempt{Op: op, OK: err == nil, Data: data}
	if err != nil {
		a.Err = err.Error()
	}
	return a
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func lines(as []Attempt) *mcp.CallToolResult {
	var b strings.Builder
	for _, a := range as {
		j, _ := json.Marshal(a)
		b.Write(j)
		b.WriteByte('\n')
	}
	return text(b.String())
}
