package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox/warmproto"
)

func TestWarmInitArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		ok   bool
		idle time.Duration
	}{
		{"warm", []string{"--warm", "--idle", "300ms"}, true, 300 * time.Millisecond},
		{"warm minutes", []string{"--warm", "--idle", "11m"}, true, 11 * time.Minute},
		{"no idle", []string{"--warm"}, false, 0},
		{"idle without value", []string{"--warm", "--idle"}, false, 0},
		{"zero idle", []string{"--warm", "--idle", "0s"}, false, 0},
		{"negative idle", []string{"--warm", "--idle", "-1m"}, false, 0},
		{"idle without unit", []string{"--warm", "--idle", "600"}, false, 0},
		{"idle option form", []string{"--warm", "--idle=1m"}, false, 0},
		{"warm option form", []string{"--warm=true", "--idle", "1m"}, false, 0},
		{"idle before warm", []string{"--idle", "1m", "--warm"}, false, 0},
		{"idle alone", []string{"--idle", "1m"}, false, 0},
		{"warm twice", []string{"--warm", "--warm", "--idle", "1m"}, false, 0},
		{"separator after", []string{"--warm", "--idle", "1m", "--"}, false, 0},
		{"command after", []string{"--warm", "--idle", "1m", "--", "sh"}, false, 0},
		{"deadline after", []string{"--warm", "--idle", "1m", "--deadline", "32s"}, false, 0},
		{"warm with deadline", []string{"--warm", "--deadline", "32s", "--", "sh"}, false, 0},
		{"deadline then warm", []string{"--deadline", "32s", "--warm", "--idle", "1m"}, false, 0},
		{"deadline then warm and command", []string{"--deadline", "32s", "--warm", "--idle", "1m", "--", "sh"}, false, 0},
		{"egress with warm", []string{"--warm", "--idle", "1m", "--egress", "127.0.0.1:3128=/s"}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := initArgs(tt.args)
			if !tt.ok {
				if err == nil {
					t.Fatalf("accepted %q: %+v", tt.args, c)
				}
				return
			}
			if err != nil || !c.warm || c.idle != tt.idle || c.deadline != 0 || c.argv != nil || c.egress != nil {
				t.Fatalf("got %+v %v, want warm with idle %s and nothing else", c, err, tt.idle)
			}
		})
	}
}

// TestWarmInitArgsCommandIsNotWarm: "--warm" after the plain init's separator is the command's,
// never an option of the init.
func TestWarmInitArgsCommandIsNotWarm(t *testing.T) {
	c, err := initArgs([]string{"--deadline", "32s", "--", "--warm", "--idle", "1m"})
	if err != nil || c.warm || c.idle != 0 || !slices.Equal(c.argv, []string{"--warm", "--idle", "1m"}) {
		t.Fatalf("got %+v %v, want a plain init running the command --warm --idle 1m", c, err)
	}
}

// warmRun is one run of the warm init: its exit, its output, and what it replied on the socket.
type warmRun struct {
	initRun
	ready bool   // the init wrote warmproto.Ready first
	reply []byte // what it wrote after that
}

// runWarm starts the test binary as `init --warm --idle idle` as pid 1 of a new pid namespace,
// as runc starts a warm sandbox: one end of a Unix socket pair as its descriptor 3, a second
// stray descriptor as 4, and pipes as stdin (carrying stdin), stdout and stderr. send then talks
// to the socket's other end; unless it closed it, runWarm reads the reply to end of stream and
// waits for the init.
func runWarm(t *testing.T, idle time.Duration, stdin string, send func(*net.UnixConn)) warmRun {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED, capability missing: a new pid namespace needs root")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	child := os.NewFile(uintptr(fds[1]), "control (init's end)")
	defer child.Close()
	parentFile := os.NewFile(uintptr(fds[0]), "control (Airlock's end)")
	fc, err := net.FileConn(parentFile)
	parentFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	conn := fc.(*net.UnixConn)
	defer conn.Close()
	// A descriptor the init inherits without close-on-exec must still not reach the command.
	extra, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()

	cmd := exec.Command(os.Args[0], "init", "--warm", "--idle", idle.String())
	// The init's own environment and directory, which the request's must replace.
	cmd.Env, cmd.Dir = []string{"PATH=/usr/bin:/bin", "INIT_ONLY=not the command's"}, "/"
	cmd.Stdin = strings.NewReader(stdin) // a pipe even when empty
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.ExtraFiles = []*os.File{child, extra} // descriptors 3 (warmproto.ControlFD) and 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the init: %v", err)
	}
	child.Close() // the init holds the only copy: its exit is the socket's end of stream
	send(conn)
	var reply []byte
	var readErr error
	if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err == nil { // not closed by send
		reply, readErr = io.ReadAll(conn)
	}
	if readErr != nil {
		_ = cmd.Process.Kill()
	}
	err = cmd.Wait()
	r := warmRun{initRun: initRun{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}, reply: reply}
	if len(reply) > 0 && reply[0] == warmproto.Ready {
		r.ready, r.reply = true, reply[1:]
	}
	if readErr != nil {
		t.Fatalf("reading the reply: %v (stdout %q stderr %q)", readErr, r.stdout, r.stderr)
	}
	r.code = initExitCode(t, err)
	return r
}

// sendRequest writes b and shuts down the sending side, as Airlock does.
func sendRequest(t *testing.T, b []byte) func(*net.UnixConn) {
	return func(c *net.UnixConn) {
		if _, err := c.Write(b); err != nil {
			t.Errorf("writing the request: %v", err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Errorf("shutting down the request's side: %v", err)
		}
	}
}

// encode is req's wire form.
func encode(t *testing.T, req warmproto.Request) []byte {
	t.Helper()
	b, err := warmproto.Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// padded is req's wire form padded with spaces (still valid JSON) to n bytes.
func padded(t *testing.T, req warmproto.Request, n int) []byte {
	t.Helper()
	b := encode(t, req)
	if len(b) > n {
		t.Fatalf("request of %d bytes, more than %d", len(b), n)
	}
	return append(b, bytes.Repeat([]byte{' '}, n-len(b))...)
}

var warmEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "ONLY=this one", "EMPTY="}

// ranMarker is a command that says when it ran, which no refused request may do.
var ranMarker = []string{"sh", "-c", "echo ran"}

// TestWarmInitRuns sends the warm init its one request as pid 1 of a real pid namespace: the
// command's argv, environment, working directory, stdin, descriptors, exit status and deadline,
// and requests it must refuse without running anything.
func TestWarmInitRuns(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A working directory that is missing but cannot be created: the symlink is in the way.
	if err := os.Symlink(filepath.Join(dir, "gone", "x"), filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	// A program only the request's PATH finds.
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "hello"), []byte("#!/bin/sh\necho hello \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	req := func(argv ...string) warmproto.Request {
		return warmproto.Request{Argv: argv, Env: warmEnv, Dir: dir, Deadline: time.Minute}
	}
	with := func(r warmproto.Request, f func(*warmproto.Request)) warmproto.Request { f(&r); return r }
	tests := []struct {
		name    string
		req     warmproto.Request
		raw     []byte // sent instead of req when not nil
		stdin   string
		code    int    // the reply's and the init's exit code
		errText string // the reply's Error contains it; "" for a reply without Error
		stdout  string // exact
		stderr  string // exact when not empty
		minTook time.Duration
		maxTook time.Duration
	}{
		{name: "exit code", req: req("sh", "-c", "exit 3"), code: 3},
		{name: "success", req: req("true"), code: 0},
		{name: "killed by a signal is 128+N", req: req("sh", "-c", "kill -KILL $$"), code: 137},
		{name: "argv exactly", req: req("sh", "-c", `printf '%s|' "$0" "$@"`, "a b", "", "c*", "$HOME"),
			stdout: "a b||c*|$HOME|"},
		{name: "argv[0] is looked up in the request's PATH", req: with(req("hello", "world"), func(r *warmproto.Request) {
			r.Env = []string{"PATH=" + dir + "/bin:/usr/bin:/bin"}
		}), stdout: "hello world\n"},
		{name: "environment is exactly the request's", req: req("env"), stdout: strings.Join(warmEnv, "\n") + "\n"},
		{name: "empty environment gets HOME as runc gives it", req: with(req("/usr/bin/env"), func(r *warmproto.Request) { r.Env = nil }),
			stdout: "HOME=" + homeOf(os.Getuid()) + "\n"},
		{name: "a HOME of the request's own stays", req: with(req("/usr/bin/env"), func(r *warmproto.Request) { r.Env = []string{"HOME=/tmp"} }),
			stdout: "HOME=/tmp\n"},
		{name: "working directory", req: req("readlink", "/proc/self/cwd"), stdout: dir + "\n"},
		{name: "without stdin the command reads /dev/null", req: req("readlink", "/proc/self/fd/0"), stdin: "secret\n",
			stdout: "/dev/null\n"},
		{name: "without stdin the pipe's data is not read", req: req("cat"), stdin: "secret\n", stdout: ""},
		{name: "with stdin the command reads the pipe", req: with(req("cat"), func(r *warmproto.Request) { r.Stdin = true }),
			stdin: "line one\nline two\n", stdout: "line one\nline two\n"},
		{name: "with stdin fd 0 is the pipe", req: with(req("sh", "-c", `case $(readlink /proc/self/fd/0) in pipe:*) echo pipe;; esac`),
			func(r *warmproto.Request) { r.Stdin = true }), stdout: "pipe\n"},
		{name: "control socket is not inherited", req: req("sh", "-c", "(: <&3) 2>/dev/null && echo leaked; echo done"), stdout: "done\n"},
		{name: "only stdin, stdout and stderr", req: req("sh", "-c", "for fd in 3 4 5 6 7 8 9; do (: <&$fd) 2>/dev/null && echo $fd; done; echo done"),
			stdout: "done\n"},
		{name: "command leads its own process group", req: req("sh", "-c", `read -r pid comm state ppid pgrp rest < /proc/self/stat; [ $pid = $pgrp ] && echo leader`),
			stdout: "leader\n"},
		{name: "background children do not hold the run", req: req("sh", "-c", "sleep 100 & (sleep 100 &); exit 4"), code: 4,
			maxTook: 5 * time.Second},
		{name: "deadline kills everything", req: with(req("sh", "-c", "sleep 100 & sleep 100"), func(r *warmproto.Request) { r.Deadline = time.Second }),
			code: 124, stderr: "airlock: deadline of 1s passed; the sandbox init killed every process\n",
			minTook: time.Second, maxTook: 5 * time.Second},
		{name: "not found", req: req("no-such-command"), code: 127,
			stderr: "airlock: \"no-such-command\": executable file not found in $PATH\n"},
		{name: "missing path", req: req(dir + "/none"), code: 127},
		{name: "not executable", req: req(dir + "/file"), code: 126},
		{name: "request of exactly MaxRequest bytes", raw: padded(t, req(ranMarker...), warmproto.MaxRequest), stdout: "ran\n"},

		{name: "invalid JSON", raw: []byte("argv=sh -c 'echo ran'\n"), code: exitInitFail, errText: "warm request"},
		{name: "truncated request", raw: bytes.TrimSuffix(encode(t, req(ranMarker...)), []byte("}\n")), code: exitInitFail,
			errText: "warm request"},
		{name: "second request after the first", raw: append(encode(t, req(ranMarker...)), encode(t, req(ranMarker...))...),
			code: exitInitFail, errText: "warm request"},
		{name: "empty argv", req: req(), code: exitInitFail, errText: "empty argv"},
		{name: "empty command name", req: req(""), code: exitInitFail, errText: "empty argv"},
		{name: "relative working directory", req: with(req(ranMarker...), func(r *warmproto.Request) { r.Dir = "tmp" }),
			code: exitInitFail, errText: `working directory "tmp" is not absolute`},
		{name: "empty working directory", req: with(req(ranMarker...), func(r *warmproto.Request) { r.Dir = "" }),
			code: exitInitFail, errText: "is not absolute"},
		{name: "zero deadline", req: with(req(ranMarker...), func(r *warmproto.Request) { r.Deadline = 0 }),
			code: exitInitFail, errText: "not positive"},
		{name: "missing working directory is created", req: with(req("readlink", "/proc/self/cwd"), func(r *warmproto.Request) {
			r.Dir = dir + "/new/deeper"
		}), stdout: dir + "/new/deeper\n"},
		{name: "working directory that cannot be created", req: with(req(ranMarker...), func(r *warmproto.Request) { r.Dir = dir + "/dangling" }),
			code: exitInitFail, errText: "working directory " + dir + "/dangling: file exists",
			stderr: "airlock: working directory " + dir + "/dangling: file exists\n"},
		{name: "working directory under a file", req: with(req(ranMarker...), func(r *warmproto.Request) { r.Dir = dir + "/file/sub" }),
			code: exitInitFail, errText: "working directory " + dir + "/file/sub: not a directory"},
		{name: "working directory is a file", req: with(req(ranMarker...), func(r *warmproto.Request) { r.Dir = dir + "/file" }),
			code: exitInitFail, errText: "working directory " + dir + "/file: not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw := tt.raw
			if raw == nil {
				raw = encode(t, tt.req)
			}
			r := runWarm(t, time.Minute, tt.stdin, sendRequest(t, raw))
			if !r.ready {
				t.Errorf("the init did not say it was ready before its reply %q", r.reply)
			}
			reply, ok, err := warmproto.DecodeReply(r.reply)
			if err != nil || !ok {
				t.Fatalf("reply %q: ok %v, %v (exit %d, stdout %q, stderr %q)", r.reply, ok, err, r.code, r.stdout, r.stderr)
			}
			if reply.Code != tt.code || r.code != tt.code {
				t.Errorf("reply code %d, exit %d, want %d (stdout %q stderr %q)", reply.Code, r.code, tt.code, r.stdout, r.stderr)
			}
			switch {
			case tt.errText == "" && reply.Error != "":
				t.Errorf("reply error %q, want none", reply.Error)
			case tt.errText != "" && !strings.Contains(reply.Error, tt.errText):
				t.Errorf("reply error %q, want it to contain %q", reply.Error, tt.errText)
			case tt.errText != "" && r.stderr != "airlock: "+reply.Error+"\n":
				t.Errorf("stderr %q, want the reply's error %q", r.stderr, reply.Error)
			}
			if r.stdout != tt.stdout {
				t.Errorf("stdout %q, want %q (stderr %q)", r.stdout, tt.stdout, r.stderr)
			}
			if tt.stderr != "" && r.stderr != tt.stderr {
				t.Errorf("stderr %q, want %q", r.stderr, tt.stderr)
			}
			if r.took < tt.minTook {
				t.Errorf("ended after %s, before %s", r.took, tt.minTook)
			}
			if tt.maxTook > 0 && r.took > tt.maxTook {
				t.Errorf("took %s, want under %s", r.took, tt.maxTook)
			}
		})
	}
}

// TestWarmInitWithoutRequest: end of stream before a request (Airlock closed its end or died),
// the idle limit, or a request over warmproto.MaxRequest end the init with 0, no reply, and
// nothing run; end of stream does so at once.
func TestWarmInitWithoutRequest(t *testing.T) {
	ranRequest := warmproto.Request{Argv: ranMarker, Env: warmEnv, Dir: "/", Deadline: time.Minute}
	tests := []struct {
		name    string
		idle    time.Duration
		send    func(t *testing.T) func(*net.UnixConn)
		minTook time.Duration
		maxTook time.Duration
	}{
		{name: "closed before a request", idle: time.Minute, maxTook: 5 * time.Second,
			send: func(*testing.T) func(*net.UnixConn) { return func(c *net.UnixConn) { c.Close() } }},
		{name: "shut down before a request", idle: time.Minute, maxTook: 5 * time.Second,
			send: func(t *testing.T) func(*net.UnixConn) { return sendRequest(t, nil) }},
		{name: "idle limit", idle: 300 * time.Millisecond, minTook: 300 * time.Millisecond, maxTook: 5 * time.Second,
			send: func(*testing.T) func(*net.UnixConn) { return func(*net.UnixConn) {} }},
		{name: "request over MaxRequest", idle: time.Minute, maxTook: 10 * time.Second,
			send: func(t *testing.T) func(*net.UnixConn) {
				b := padded(t, ranRequest, warmproto.MaxRequest+1)
				return func(c *net.UnixConn) {
					_, _ = c.Write(b) // the init may stop reading once the request is too long
					_ = c.CloseWrite()
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runWarm(t, tt.idle, "", tt.send(t))
			if r.code != 0 || len(r.reply) != 0 || r.stdout != "" || r.stderr != "" {
				t.Errorf("exit %d, reply %q, stdout %q, stderr %q; want exit 0 with no reply and no output", r.code, r.reply, r.stdout, r.stderr)
			}
			if r.took < tt.minTook {
				t.Errorf("ended after %s, before the idle limit of %s", r.took, tt.minTook)
			}
			if r.took > tt.maxTook {
				t.Errorf("took %s, want under %s", r.took, tt.maxTook)
			}
		})
	}
}

// TestWarmInitRefusesOutsidePid1: the warm init kills as the plain one does at its deadline, so
// it too starts only as pid 1 of its own namespace.
func TestWarmInitRefusesOutsidePid1(t *testing.T) {
	cmd := exec.Command(os.Args[0], "init", "--warm", "--idle", "1s")
	out, err := cmd.CombinedOutput()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != exitInitUsage || !strings.Contains(string(out), "only as pid 1") {
		t.Fatalf("err %v, output %q; want exit %d saying it runs only as pid 1", err, out, exitInitUsage)
	}
}
