package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	goruntime "runtime"
	"runtime/debug"
	"strings"

	"github.com/airlock-mcp/airlock/runtime"
	"github.com/airlock-mcp/airlock/sandbox/runc"
)

const versionUsage = `usage: airlock version [--json]

Prints Airlock's version (and the commit it was built from, when known), the Go version it was
built with, and the runc it would use: its path and version, or why none was found. Runs
'runc --version' and nothing else; no network.
`

// versionInfo is what `airlock version` reports.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	Go        string `json:"go"`
	Platform  string `json:"platform"`
	Runc      string `json:"runc,omitempty"` // path of the runc binary
	RuncVer   string `json:"runc_version,omitempty"`
	Seccomp   string `json:"libseccomp,omitempty"` // libseccomp runc was linked with
	RuncError string `json:"runc_error,omitempty"` // why runc was not found or did not answer
}

func cmdVersion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock version", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "")
	if code, ok := parseNoArgs(fs, args, versionUsage, stdout, stderr); !ok {
		return code
	}
	info := collectVersion(ctx, runc.Find, runOutput)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(info); err != nil {
			return 1
		}
		return 0
	}
	printVersion(stdout, info)
	return 0
}

// collectVersion gathers the report. find and command are runc.Find and runOutput outside tests.
func collectVersion(ctx context.Context, find func() (string, error), command func(ctx context.Context, name string, args ...string) ([]byte, error)) versionInfo {
	info := versionInfo{Version: runtime.Version, Go: goruntime.Version(), Platform: goruntime.GOOS + "/" + goruntime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	path, err := find()
	if err != nil {
		info.RuncError = err.Error()
		return info
	}
	info.Runc = path
	out, err := command(ctx, path, "--version")
	if err != nil {
		info.RuncError = err.Error()
		return info
	}
	if v, err := parseRuncVersion(string(out)); err == nil {
		info.RuncVer = v.String()
	} else {
		info.RuncError = err.Error()
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "libseccomp:"); ok {
			info.Seccomp = strings.TrimSpace(v)
		}
	}
	return info
}

func printVersion(w io.Writer, info versionInfo) {
	line := "airlock " + info.Version
	if info.Commit != "" {
		c := info.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if info.Modified {
			c += ", modified"
		}
		line += " (commit " + c + ")"
	}
	fmt.Fprintln(w, line)
	fmt.Fprintf(w, "go:      %s %s\n", info.Go, info.Platform)
	switch {
	case info.Runc == "":
		fmt.Fprintf(w, "runc:    not found: %s\n", info.RuncError)
	case info.RuncVer == "":
		fmt.Fprintf(w, "runc:    %s (version unknown: %s)\n", info.Runc, info.RuncError)
	default:
		r := fmt.Sprintf("runc:    %s %s", info.Runc, info.RuncVer)
		if info.Seccomp != "" {
			r += ", libseccomp " + info.Seccomp
		}
		fmt.Fprintln(w, r)
	}
}
