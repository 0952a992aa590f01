package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary be the init: `<test binary> init ...` runs initMain, so the
// tests below start it as pid 1 of a new pid namespace, as runc does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		os.Exit(initMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "egress-forward" {
		os.Exit(egressForwardMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "egress-client" {
		os.Exit(egressClientMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func TestInitArgs(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		deadline time.Duration
		argv     []string
		egress   string // "LISTEN=SOCKET" as parsed, "" for none
	}{
		{"command", []string{"--deadline", "32s", "--", "sh", "-c", "exit 3"}, 32 * time.Second, []string{"sh", "-c", "exit 3"}, ""},
		{"command that looks like options", []string{"--deadline", "1.5s", "--", "--deadline", "--"}, 1500 * time.Millisecond, []string{"--deadline", "--"}, ""},
		{"no command", []string{"--deadline", "32s", "--"}, 0, nil, ""},
		{"empty command", []string{"--deadline", "32s", "--", ""}, 0, nil, ""},
		{"no separator", []string{"--deadline", "32s", "sh"}, 0, nil, ""},
		{"no deadline", []string{"--", "sh"}, 0, nil, ""},
		{"zero deadline", []string{"--deadline", "0s", "--", "sh"}, 0, nil, ""},
		{"negative deadline", []string{"--deadline", "-1s", "--", "sh"}, 0, nil, ""},
		{"deadline without unit", []string{"--deadline", "32", "--", "sh"}, 0, nil, ""},
		{"option form", []string{"--deadline=32s", "--", "sh"}, 0, nil, ""},
		{"egress", []string{"--deadline", "32s", "--egress", "127.0.0.1:3128=/.airlock/egress.sock", "--", "wget", "x"}, 32 * time.Second,
			[]string{"wget", "x"}, "127.0.0.1:3128=/.airlock/egress.sock"},
		{"egress ipv6", []string{"--deadline", "32s", "--egress", "[::1]:3128=/s", "--", "sh"}, 32 * time.Second, []string{"sh"}, "[::1]:3128=/s"},
		{"egress after the separator is the command's", []string{"--deadline", "1s", "--", "--egress", "127.0.0.1:1=/s"}, time.Second,
			[]string{"--egress", "127.0.0.1:1=/s"}, ""},
		{"egress before the deadline", []string{"--egress", "127.0.0.1:3128=/s", "--deadline", "32s", "--", "sh"}, 0, nil, ""},
		{"egress twice", []string{"--deadline", "32s", "--egress", "127.0.0.1:3128=/s", "--egress", "127.0.0.1:3129=/s", "--", "sh"}, 0, nil, ""},
		{"egress without value", []string{"--deadline", "32s", "--egress", "--", "sh"}, 0, nil, ""},
		{"egress host name", []string{"--deadline", "32s", "--egress", "localhost:3128=/s", "--", "sh"}, 0, nil, ""},
		{"egress port 0", []string{"--deadline", "32s", "--egress", "127.0.0.1:0=/s", "--", "sh"}, 0, nil, ""},
		{"egress relative socket", []string{"--deadline", "32s", "--egress", "127.0.0.1:3128=s.sock", "--", "sh"}, 0, nil, ""},
		{"egress without socket", []string{"--deadline", "32s", "--egress", "127.0.0.1:3128", "--", "sh"}, 0, nil, ""},
		{"egress without command", []string{"--deadline", "32s", "--egress", "127.0.0.1:3128=/s", "--"}, 0, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := initArgs(tt.args)
			if tt.argv == nil {
				if err == nil {
					t.Fatalf("accepted %q: %+v", tt.args, c)
				}
				return
			}
			egress := ""
			if c.egress != nil {
				egress = c.egress.listen.String() + "=" + c.egress.socket
			}
			if err != nil || c.deadline != tt.deadline || !slices.Equal(c.argv, tt.argv) || egress != tt.egress {
				t.Fatalf("got %v %q %q %v, want %v %q %q", c.deadline, c.argv, egress, err, tt.deadline, tt.argv, tt.egress)
			}
		})
	}
}

// TestStartFailure pins the results runc used to give for a command it could not start (the
// runc backend's execFailureCode and execFailureText): 127 and `"CMD": reason` when it does
// not exist, 126 when it cannot be executed.
func TestStartFailure(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code int
		msg  string
	}{
		{"not in PATH", &exec.Error{Name: "nosuch", Err: exec.ErrNotFound}, 127, `"nosuch": executable file not found in $PATH`},
		{"missing path", &exec.Error{Name: "/nosuch", Err: &os.PathError{Op: "stat", Path: "/nosuch", Err: syscall.ENOENT}}, 127, `"/nosuch": stat /nosuch: no such file or directory`},
		{"not executable", &exec.Error{Name: "/etc/passwd", Err: os.ErrPermission}, 126, `"/etc/passwd": permission denied`},
		{"directory", &exec.Error{Name: "/etc", Err: syscall.EISDIR}, 126, `"/etc": is a directory`},
		{"relative PATH entry", &exec.Error{Name: "x", Err: exec.ErrDot}, 126, `"x": cannot run executable found relative to current directory`},
		{"exec format error", syscall.ENOEXEC, 126, `"x": exec format error`},
		{"missing interpreter", syscall.ENOENT, 127, `"x": no such file or directory`},
		{"no memory", syscall.ENOMEM, 126, `"x": cannot allocate memory`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "x"
			if ee := (*exec.Error)(nil); errors.As(tt.err, &ee) {
				name = ee.Name
			}
			code, msg := startFailure(name, tt.err)
			if code != tt.code || msg != tt.msg {
				t.Errorf("got %d %q, want %d %q", code, msg, tt.code, tt.msg)
			}
		})
	}
}

// initRun is one run of the init as pid 1 of a new pid namespace.
type initRun struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// runInit starts the test binary as `init --deadline deadline -- argv...` in a new pid
// namespace with env and dir, and waits for it. It needs root (CLONE_NEWPID).
func runInit(t *testing.T, deadline time.Duration, env []string, dir string, argv ...string) initRun {
	t.Helper()
	return runInitArgs(t, append([]string{"--deadline", deadline.String(), "--"}, argv...), env, dir)
}

// runInitArgs is runInit with the init's whole command line after "init".
func runInitArgs(t *testing.T, args []string, env []string, dir string) initRun {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED, capability missing: a new pid namespace needs root")
	}
	cmd := exec.Command(os.Args[0], append([]string{"init"}, args...)...)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	// A descriptor the init inherits without close-on-exec must still not reach the command.
	extra, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	cmd.ExtraFiles = []*os.File{extra}
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err = cmd.Run()
	r := initRun{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	r.code = initExitCode(t, err)
	return r
}

var initEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "ONLY=this one"}

// TestInitAsPid1 runs the init as pid 1 of a real pid namespace: the command's exit status,
// start failures, environment, descriptors and the deadline.
func TestInitAsPid1(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"plain": "not a program\n", "garbage": "\x00\x01\x02\x03", "script": "#!/nonexistent/interpreter\n"} {
		mode := os.FileMode(0o755)
		if name == "plain" {
			mode = 0o644
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		deadline time.Duration
		argv     []string
		code     int
		stdout   string // exact, when not empty
		stderr   string // exact, when not empty
		maxTook  time.Duration
	}{
		{name: "exit code", argv: []string{"sh", "-c", "exit 3"}, code: 3},
		{name: "killed by a signal is 128+N", argv: []string{"sh", "-c", "kill -KILL $$"}, code: 137},
		{name: "terminated is 143", argv: []string{"sh", "-c", "kill -TERM $$"}, code: 143},
		{name: "not found", argv: []string{"no-such-command"}, code: 127,
			stderr: "airlock: \"no-such-command\": executable file not found in $PATH\n"},
		{name: "missing path", argv: []string{dir + "/none"}, code: 127,
			stderr: "airlock: \"" + dir + "/none\": stat " + dir + "/none: no such file or directory\n"},
		{name: "not executable", argv: []string{dir + "/plain"}, code: 126,
			stderr: "airlock: \"" + dir + "/plain\": permission denied\n"},
		{name: "directory", argv: []string{dir}, code: 126, stderr: "airlock: \"" + dir + "\": is a directory\n"},
		{name: "exec format error", argv: []string{dir + "/garbage"}, code: 126,
			stderr: "airlock: \"" + dir + "/garbage\": exec format error\n"},
		{name: "missing interpreter", argv: []string{dir + "/script"}, code: 127,
			stderr: "airlock: \"" + dir + "/script\": no such file or directory\n"},
		{name: "relative path from the working directory", argv: []string{"./none"}, code: 127,
			stderr: "airlock: \"./none\": stat ./none: no such file or directory\n"},
		{name: "environment is exactly the given one", argv: []string{"env"}, stdout: strings.Join(initEnv, "\n") + "\n"},
		{name: "argv and working directory", argv: []string{"sh", "-c", `echo "$0|$1|$(readlink /proc/self/cwd)"`, "a b", "c"},
			stdout: "a b|c|" + dir + "\n"},
		{name: "only stdin, stdout and stderr", argv: []string{"sh", "-c", "for fd in 3 4 5 6 7 8 9; do (: <&$fd) 2>/dev/null && echo $fd; done; echo done"},
			stdout: "done\n"},
		{name: "command leads its own process group", argv: []string{"sh", "-c", `read -r pid comm state ppid pgrp rest < /proc/self/stat; [ $pid = $pgrp ] && echo leader`},
			stdout: "leader\n"},
		{name: "background children do not hold the run", argv: []string{"sh", "-c", "sleep 1000 & (sleep 1000 &); exit 4"}, code: 4,
			maxTook: 5 * time.Second},
		{name: "signals from inside do not stop the init", argv: []string{"sh", "-c",
			"for s in $(seq 1 64); do case $s in 9|19|32|33) ;; *) kill -$s 1;; esac; done; sleep 0.2; exit 5"}, code: 5},
		{name: "deadline kills everything", deadline: time.Second,
			argv: []string{"sh", "-c", "trap '' TERM; sleep 1000 & (sleep 1000 &); setsid sleep 1000 & while :; do :; done"},
			code: 124, stderr: "airlock: deadline of 1s passed; the sandbox init killed every process\n", maxTook: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			deadline := tt.deadline
			if deadline == 0 {
				deadline = time.Minute
			}
			r := runInit(t, deadline, initEnv, dir, tt.argv...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d (stdout %q stderr %q)", r.code, tt.code, r.stdout, r.stderr)
			}
			if tt.stdout != "" && r.stdout != tt.stdout {
				t.Errorf("stdout %q, want %q", r.stdout, tt.stdout)
			}
			if tt.stderr != "" && r.stderr != tt.stderr {
				t.Errorf("stderr %q, want %q", r.stderr, tt.stderr)
			}
			if tt.deadline > 0 && r.took < tt.deadline {
				t.Errorf("ended after %s, before its deadline of %s", r.took, tt.deadline)
			}
			if tt.maxTook > 0 && r.took > tt.maxTook {
				t.Errorf("took %s, want under %s", r.took, tt.maxTook)
			}
		})
	}
}

// initExitCode is the exit code of an init that ended with err (from Wait).
func initExitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("running the init: %v", err)
	return 0
}

// TestInitRefusesOutsidePid1: anywhere but pid 1 of its own namespace, the deadline's
// kill(-1) would reach every process the caller may signal, so the init does not start.
func TestInitRefusesOutsidePid1(t *testing.T) {
	cmd := exec.Command(os.Args[0], "init", "--deadline", "1s", "--", "true")
	out, err := cmd.CombinedOutput()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != exitInitUsage || !strings.Contains(string(out), "only as pid 1") {
		t.Fatalf("err %v, output %q; want exit %d saying it runs only as pid 1", err, out, exitInitUsage)
	}
}
