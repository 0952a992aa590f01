package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/runtime"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/backends"
)

// Exit codes of `airlock exec` that are not the command's own.
const (
	exitUsage    = 2   // bad flags or arguments
	exitSandbox  = 125 // the sandbox could not run the command (as docker/podman use 125)
	exitCanceled = 130 // interrupted (SIGINT/SIGTERM) before the command finished
)

const execUsage = `usage: airlock exec [flags] -- CMD ARGS...

Runs one command in a fresh, hardened sandbox (no network, read-only root, uid 65534, no
capabilities, seccomp, memory/pids/CPU limits, wall-clock timeout) and removes it afterwards.
Exits with the command's exit code; 124 on timeout, 137 when killed (out of memory),
125 when the sandbox itself failed, 2 on a usage error.

flags:
  --image NAME            image to run: %s (default busybox)
  --workspace DIR[:MODE]  mount DIR at /workspace and run there; MODE is ro (default),
                          rw (writes reach DIR) or copy (writes are discarded)
  --user USER             nobody (default): uid/gid 65534, which can write only what
                          65534 may write, so DIR:rw of a root-owned DIR fails with
                          "Permission denied"; workspace-owner: the uid/gid that owns
                          DIR, so writes succeed and keep its ownership (uid 0 when root
                          owns it: still no capabilities, listed as user:root in loosened)
  --memory SIZE           memory limit, swap equal (default 256Mi)
  --cpus N                CPU quota in cores (default 1)
  --pids N                max processes and threads (default 64)
  --timeout DURATION      wall-clock limit, e.g. 30s, 2m (default 30s)
  --tmpfs-size SIZE       size of the /tmp tmpfs (default 64Mi)
  --seccomp PROFILE       default, files or unconfined (unconfined prints a warning)
  --backend NAME          sandbox backend: %s (default runc)
  --json                  print {"exit_code","stdout","stderr","truncated","timed_out",
                          "oom_killed","duration_ms","container_id"[,"loosened"]}
`

// execRequest is a parsed `airlock exec` command line.
type execRequest struct {
	spec    sandbox.Spec
	backend string // a name in backends.Default
	json    bool
	// notes are said on stderr before the run: a flag combination that works but will
	// probably not do what was meant.
	notes []string
}

// usageError is a mistake on the command line; it exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

// parseExecArgs turns the command line into a validated Spec. Only flags given explicitly
// change the hardened defaults of sandbox.Defaults.
func parseExecArgs(args []string, stateDir string) (execRequest, error) {
	fs := flag.NewFlagSet("airlock exec", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	var opts []sandbox.Option
	add := func(o sandbox.Option) { opts = append(opts, o) }
	var req execRequest
	user := "nobody"
	var wsDir string
	var wsAccess sandbox.Access

	fs.Func("image", "", func(v string) error {
		if !slices.Contains(images.Names(), v) {
			return fmt.Errorf("unknown image %q; choose one of %s", v, strings.Join(images.Names(), ", "))
		}
		add(sandbox.WithImage(v))
		return nil
	})
	fs.Func("workspace", "", func(v string) error {
		dir, access := parseWorkspace(v)
		if dir == "" {
			return fmt.Errorf("empty directory; give one, e.g. --workspace .:ro")
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("%q: %w", dir, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return fmt.Errorf("%q is not an existing directory; create it or point at one", dir)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%q is a file; give the directory that holds it", dir)
		}
		// Check (and mount) the directory the path really names: runc follows symlinks in a
		// mount source, so a link to / must be judged as /.
		if abs, err = filepath.EvalSymlinks(abs); err != nil {
			return fmt.Errorf("%q: %w", dir, err)
		}
		// The host root, or any directory holding Airlock's state, would show the command the
		// images, other runs' bundles and the audit log; refuse rather than rely on file modes.
		if state, err := filepath.Abs(stateDir); err == nil {
			if real, err := filepath.EvalSymlinks(state); err == nil {
				state = real
			}
			if abs == "/" || state == abs || strings.HasPrefix(state, abs+"/") {
				return fmt.Errorf("%q contains the host root or Airlock's state directory %s; mount a project directory instead", dir, state)
			}
		}
		add(sandbox.WithWorkspace(abs, access))
		wsDir, wsAccess = abs, access
		return nil
	})
	fs.Func("user", "", func(v string) error {
		if v != "nobody" && v != "workspace-owner" {
			return fmt.Errorf("unknown user %q; choose nobody (uid 65534) or workspace-owner (the owner of --workspace DIR)", v)
		}
		user = v
		return nil
	})
	fs.Func("memory", "", func(v string) error {
		n, err := sandbox.ParseBytes(v)
		if err != nil {
			return err
		}
		add(sandbox.WithMemory(n))
		return nil
	})
	fs.Func("tmpfs-size", "", func(v string) error {
		n, err := sandbox.ParseBytes(v)
		if err != nil {
			return err
		}
		if n <= 0 {
			return fmt.Errorf("size must be positive, e.g. 64Mi")
		}
		add(sandbox.WithTmpfsSize(n))
		return nil
	})
	fs.Func("cpus", "", func(v string) error {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n <= 0 || n > 1024 {
			return fmt.Errorf("%q is not a positive number of cores, e.g. 1 or 0.5", v)
		}
		add(sandbox.WithCPUs(n))
		return nil
	})
	fs.Func("pids", "", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a positive whole number, e.g. 64", v)
		}
		add(sandbox.WithPids(n))
		return nil
	})
	fs.Func("timeout", "", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not a positive duration, e.g. 30s or 2m", v)
		}
		add(sandbox.WithTimeout(d))
		return nil
	})
	fs.Func("seccomp", "", func(v string) error {
		switch v {
		case sandbox.SeccompDefault, sandbox.SeccompFiles, sandbox.SeccompUnconfined:
		default:
			return fmt.Errorf("unknown profile %q; choose default, files or unconfined", v)
		}
		add(sandbox.WithSeccomp(v))
		return nil
	})
	fs.BoolVar(&req.json, "json", false, "")
	req.backend = "runc"
	fs.Func("backend", "", func(v string) error {
		if names := backends.Default().Names(); !slices.Contains(names, v) {
			return fmt.Errorf("unknown backend %q; choose one of %s", v, strings.Join(names, ", "))
		}
		req.backend = v
		return nil
	})

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return req, err
		}
		return req, usagef("%s", flagError(err))
	}
	argv := fs.Args()
	if len(argv) == 0 || argv[0] == "" {
		return req, usagef("no command given; put it after --, e.g. airlock exec -- ls -l /workspace")
	}
	switch {
	case user == "workspace-owner" && wsDir == "":
		return req, usagef("--user workspace-owner runs as the owner of the workspace; give --workspace DIR too")
	case user == "workspace-owner":
		fi, err := os.Stat(wsDir)
		if err != nil {
			return req, usagef("--workspace %s: %v", wsDir, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return req, usagef("--user workspace-owner: cannot read the owner of %s", wsDir)
		}
		add(sandbox.WithUser(st.Uid, st.Gid))
	case wsAccess == sandbox.ReadWrite:
		u := sandbox.Defaults().User
		if fi, err := os.Stat(wsDir); err == nil && !writableBy(fi, u.UID, u.GID) {
			req.notes = append(req.notes, fmt.Sprintf("%s is not writable by uid %d, which the command runs as, so writes to /workspace will fail; "+
				"add --user workspace-owner to run as its owner", wsDir, u.UID))
		}
	}
	add(sandbox.WithArgv(argv...))
	spec, err := sandbox.New(opts...)
	if err != nil {
		return req, usagef("%v", err)
	}
	req.spec = spec
	return req, nil
}

// writableBy reports whether a process of uid/gid (and no capabilities) may create files in
// the directory fi describes, by its mode bits.
func writableBy(fi os.FileInfo, uid, gid uint32) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true // nothing to judge by: say nothing
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == uid:
		return perm&0o300 == 0o300
	case st.Gid == gid:
		return perm&0o030 == 0o030
	}
	return perm&0o003 == 0o003
}

// flagError rewrites the flag package's messages to name the flag the way users type it.
func flagError(err error) string {
	msg := err.Error()
	// "invalid value \"x\" for flag -memory: <why>" -> "--memory \"x\": <why>"
	if rest, ok := strings.CutPrefix(msg, "invalid value "); ok {
		if val, after, ok := strings.Cut(rest, " for flag -"); ok {
			if name, why, ok := strings.Cut(after, ": "); ok {
				return fmt.Sprintf("--%s %s: %s", name, val, why)
			}
		}
	}
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Sprintf("unknown flag --%s; run 'airlock exec -h' for the list", strings.TrimPrefix(name, "-"))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Sprintf("--%s needs a value, e.g. --%s=VALUE", name, name)
	}
	return msg
}

// parseWorkspace splits "DIR[:ro|:rw|:copy]". A colon followed by anything else is part of
// the directory name.
func parseWorkspace(v string) (string, sandbox.Access) {
	if i := strings.LastIndexByte(v, ':'); i >= 0 {
		switch a := sandbox.Access(v[i+1:]); a {
		case sandbox.ReadOnly, sandbox.ReadWrite, sandbox.CopyOnWrite:
			return v[:i], a
		}
	}
	return v, sandbox.ReadOnly
}

// execResult is the --json output.
type execResult struct {
	ExitCode    int      `json:"exit_code"`
	Stdout      string   `json:"stdout"`
	Stderr      string   `json:"stderr"`
	Truncated   bool     `json:"truncated"`
	TimedOut    bool     `json:"timed_out"`
	OOMKilled   bool     `json:"oom_killed"`
	DurationMS  int64    `json:"duration_ms"`
	ContainerID string   `json:"container_id"`
	Loosened    []string `json:"loosened,omitempty"`
}

// openBackend opens the sandbox backend registered as name; close releases it.
type openBackend func(ctx context.Context, name string, log zerolog.Logger) (b sandbox.Backend, close func() error, err error)

// openRegistered opens a backend of backends.Default with its state under stateDir() and
// removes what dead Airlock processes left in it.
func openRegistered(ctx context.Context, name string, log zerolog.Logger) (sandbox.Backend, func() error, error) {
	b, closeFn, err := backends.Default().Open(ctx, name, sandbox.OpenOptions{StateDir: stateDir(), Logger: log})
	if err != nil {
		return nil, nil, err
	}
	runtime.ReapLeftovers(ctx, b, log)
	return b, closeFn, nil
}

// execMemoryLimit is the heap size at which a one-shot `airlock exec` process starts
// collecting garbage (see cmdExec). Its heap is the bundle's config and the captured output,
// which the output caps bound (1 MiB each by default): far below this.
const execMemoryLimit = 64 << 20

func cmdExec(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// One exec is one short-lived process, and package initialisation leaves its heap close to
	// the first collection: a collection now would run beside runc's start-up on a machine with
	// few cores and delay the command. Collect only if the heap ever nears execMemoryLimit.
	// An operator's own GOGC or GOMEMLIMIT wins.
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(execMemoryLimit)
	}
	if writerIsTerminal(stdout) {
		stdout = terminalWriter{stdout}
	}
	if writerIsTerminal(stderr) {
		stderr = terminalWriter{stderr}
	}
	return execMain(ctx, args, stdout, stderr, openRegistered)
}

func execMain(ctx context.Context, args []string, stdout, stderr io.Writer, open openBackend) int {
	req, err := parseExecArgs(args, stateDir())
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, execUsage, strings.Join(images.Names(), ", "), strings.Join(backends.Default().Names(), ", "))
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "airlock exec: %v\nRun 'airlock exec -h' for usage.\n", err)
		return exitUsage
	}
	for _, n := range req.notes {
		fmt.Fprintf(stderr, "airlock exec: note: %s\n", n)
	}
	log := zerolog.New(stderr).Level(zerolog.WarnLevel).With().Timestamp().Str("cmd", "exec").Logger()
	if req.spec.Seccomp == sandbox.SeccompUnconfined {
		// An explicit operator choice, made visible: without the filter every syscall the kernel
		// offers (bpf, io_uring, keyctl, userfaultfd...) is reachable from the command, and those
		// are where kernel exploits start. Meant only for finding what a profile must allow.
		fmt.Fprintln(stderr, "airlock exec: WARNING: --seccomp unconfined: the command runs without a syscall filter; use it only to tune a profile")
		log.Warn().Strs("loosened", req.spec.Loosened).Str("image", req.spec.Image).Msg("sandbox.loosened")
	}

	backend, closeBackend, err := open(ctx, req.backend, log)
	if err != nil {
		fmt.Fprintf(stderr, "airlock exec: sandbox unavailable: %v\n", err)
		return exitSandbox
	}
	defer func() {
		if err := closeBackend(); err != nil {
			fmt.Fprintf(stderr, "airlock exec: closing the sandbox backend: %v\n", err)
		}
	}()

	res, err := backend.Run(ctx, req.spec)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(stderr, "airlock exec: interrupted: %v\n", err)
			return exitCanceled
		case errors.Is(err, sandbox.ErrInvalidSpec):
			fmt.Fprintf(stderr, "airlock exec: %v\n", err)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "airlock exec: sandbox failed: %v\n", err)
			return exitSandbox
		}
	}
	loosened := res.Loosened
	if len(loosened) == 0 {
		loosened = req.spec.Loosened
	}
	if req.json {
		out := execResult{
			ExitCode:    res.ExitCode,
			Stdout:      string(res.Stdout),
			Stderr:      string(res.Stderr),
			Truncated:   res.Truncated(),
			TimedOut:    res.TimedOut,
			OOMKilled:   res.OOMKilled,
			DurationMS:  res.Duration.Milliseconds(),
			ContainerID: res.ContainerID,
			Loosened:    loosened,
		}
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "airlock exec: writing the result: %v\n", err)
			return exitSandbox
		}
		return res.ExitCode
	}
	stdout.Write(res.Stdout)
	stderr.Write(res.Stderr)
	if res.StdoutTruncated {
		fmt.Fprintf(stderr, "airlock exec: stdout truncated to %d bytes\n", req.spec.StdoutCap)
	}
	if res.StderrTruncated {
		fmt.Fprintf(stderr, "airlock exec: stderr truncated to %d bytes\n", req.spec.StderrCap)
	}
	switch {
	case res.TimedOut:
		fmt.Fprintf(stderr, "airlock exec: timed out after %s; every process of the sandbox was killed\n", req.spec.Timeout)
	case res.OOMKilled:
		fmt.Fprintf(stderr, "airlock exec: killed: out of memory (limit %d bytes; raise it with --memory)\n", req.spec.Limits.MemoryBytes)
	}
	return res.ExitCode
}
