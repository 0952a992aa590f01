package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

func TestParseExecArgs(t *testing.T) {
	ws := t.TempDir()
	file := filepath.Join(ws, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	def := sandbox.Defaults()
	stateParent := t.TempDir()
	state := filepath.Join(stateParent, "airlock")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(ws, "rootlink")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		args    []string
		wantErr string // substring of the usage error; "" = success
		check   func(t *testing.T, s sandbox.Spec)
	}{
		{name: "defaults", args: []string{"--", "id"}, check: func(t *testing.T, s sandbox.Spec) {
			if s.Image != "busybox" || !slices.Equal(s.Argv, []string{"id"}) || s.Limits != def.Limits ||
				s.Timeout != def.Timeout || s.Seccomp != sandbox.SeccompDefault || len(s.Mounts) != 0 || len(s.Loosened) != 0 {
				t.Errorf("spec = %+v, want hardened defaults running id", s)
			}
		}},
		{name: "no double dash", args: []string{"ls", "-l"}, check: func(t *testing.T, s sandbox.Spec) {
			if !slices.Equal(s.Argv, []string{"ls", "-l"}) {
				t.Errorf("argv = %q", s.Argv)
			}
		}},
		{name: "flags after command belong to it", args: []string{"--", "sh", "-c", "echo --json"}, check: func(t *testing.T, s sandbox.Spec) {
			if !slices.Equal(s.Argv, []string{"sh", "-c", "echo --json"}) {
				t.Errorf("argv = %q", s.Argv)
			}
		}},
		{name: "all limits", args: []string{"--image", "host", "--memory", "128Mi", "--cpus", "0.5", "--pids", "32",
			"--timeout", "5s", "--tmpfs-size", "8Mi", "--seccomp", "files", "--", "true"},
			check: func(t *testing.T, s sandbox.Spec) {
				want := sandbox.Limits{MemoryBytes: 128 << 20, CPUs: 0.5, Pids: 32, NoFile: def.Limits.NoFile}
				if s.Image != "host" || s.Limits != want || s.Timeout != 5*time.Second || s.Seccomp != "files" {
					t.Errorf("spec = %+v", s)
				}
				if len(s.Tmpfs) != 1 || s.Tmpfs[0].Target != "/tmp" || s.Tmpfs[0].SizeBytes != 8<<20 {
					t.Errorf("tmpfs = %+v, want one 8Mi /tmp", s.Tmpfs)
				}
			}},
		{name: "equals form", args: []string{"--memory=1G", "--json=true", "--", "true"}, check: func(t *testing.T, s sandbox.Spec) {
			if s.Limits.MemoryBytes != 1e9 {
				t.Errorf("memory = %d", s.Limits.MemoryBytes)
			}
		}},
		{name: "workspace read-only by default", args: []string{"--workspace", ws, "--", "ls"}, check: func(t *testing.T, s sandbox.Spec) {
			want := []sandbox.Mount{{Source: ws, Target: "/workspace", Access: sandbox.ReadOnly}}
			if !slices.Equal(s.Mounts, want) || s.Workdir != "/workspace" || len(s.Loosened) != 0 {
				t.Errorf("mounts = %+v workdir %q loosened %q", s.Mounts, s.Workdir, s.Loosened)
			}
		}},
		{name: "workspace rw is loosened", args: []string{"--workspace", ws + ":rw", "--", "ls"}, check: func(t *testing.T, s sandbox.Spec) {
			if len(s.Mounts) != 1 || s.Mounts[0].Access != sandbox.ReadWrite || !slices.Contains(s.Loosened, "workspace:rw") {
				t.Errorf("mounts = %+v loosened %q", s.Mounts, s.Loosened)
			}
		}},
		{name: "workspace copy", args: []string{"--workspace", ws + ":copy", "--", "ls"}, check: func(t *testing.T, s sandbox.Spec) {
			if len(s.Mounts) != 1 || s.Mounts[0].Access != sandbox.CopyOnWrite || s.Mounts[0].Source != ws {
				t.Errorf("mounts = %+v", s.Mounts)
			}
		}},
		{name: "seccomp unconfined is loosened", args: []string{"--seccomp", "unconfined", "--", "true"}, check: func(t *testing.T, s sandbox.Spec) {
			if !slices.Contains(s.Loosened, "seccomp:unconfined") {
				t.Errorf("loosened = %q", s.Loosened)
			}
		}},
		{name: "no command", args: []string{"--json"}, wantErr: "no command given"},
		{name: "empty after dashes", args: []string{"--"}, wantErr: "no command given"},
		{name: "bad memory", args: []string{"--memory", "lots", "--", "true"}, wantErr: `--memory "lots": size "lots": want a number`},
		{name: "memory too small", args: []string{"--memory", "1Ki", "--", "true"}, wantErr: "below the 4 MiB"},
		{name: "bad cpus", args: []string{"--cpus", "-1", "--", "true"}, wantErr: `--cpus "-1": "-1" is not a positive number`},
		{name: "zero pids", args: []string{"--pids", "0", "--", "true"}, wantErr: `--pids "0"`},
		{name: "bad timeout", args: []string{"--timeout", "5", "--", "true"}, wantErr: `--timeout "5": "5" is not a positive duration, e.g. 30s`},
		{name: "zero tmpfs", args: []string{"--tmpfs-size", "0", "--", "true"}, wantErr: "--tmpfs-size"},
		{name: "unknown image", args: []string{"--image", "ubuntu", "--", "true"}, wantErr: `unknown image "ubuntu"; choose one of busybox, host`},
		{name: "unknown backend", args: []string{"--backend", "podman", "--", "true"}, wantErr: `unknown backend "podman"; choose one of containerd, docker, runc`},
		{name: "unknown seccomp", args: []string{"--seccomp", "off", "--", "true"}, wantErr: `unknown profile "off"; choose default, files or unconfined`},
		{name: "missing workspace", args: []string{"--workspace", filepath.Join(ws, "nope"), "--", "true"}, wantErr: "is not an existing directory"},
		{name: "workspace is a file", args: []string{"--workspace", file, "--", "true"}, wantErr: "is a file"},
		{name: "host root", args: []string{"--workspace", "/", "--", "true"}, wantErr: "contains the host root"},
		{name: "symlink to host root", args: []string{"--workspace", filepath.Join(ws, "rootlink"), "--", "true"}, wantErr: "contains the host root"},
		{name: "state dir", args: []string{"--workspace", state, "--", "true"}, wantErr: "Airlock's state directory"},
		{name: "parent of state dir", args: []string{"--workspace", stateParent + ":ro", "--", "true"}, wantErr: "Airlock's state directory"},
		{name: "unknown flag", args: []string{"--network", "host", "--", "true"}, wantErr: "unknown flag --network"},
		{name: "flag without value", args: []string{"--memory"}, wantErr: "--memory needs a value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := parseExecArgs(tc.args, state)
			if tc.wantErr != "" {
				var ue *usageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want a usage error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			tc.check(t, req.spec)
		})
	}
}

func TestParseWorkspace(t *testing.T) {
	tests := []struct {
		in     string
		dir    string
		access sandbox.Access
	}{
		{"/src", "/src", sandbox.ReadOnly},
		{"/src:ro", "/src", sandbox.ReadOnly},
		{"/src:rw", "/src", sandbox.ReadWrite},
		{"/src:copy", "/src", sandbox.CopyOnWrite},
		{"/odd:name", "/odd:name", sandbox.ReadOnly},
		{"/odd:name:rw", "/odd:name", sandbox.ReadWrite},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			dir, access := parseWorkspace(tc.in)
			if dir != tc.dir || access != tc.access {
				t.Errorf("parseWorkspace(%q) = %q, %q; want %q, %q", tc.in, dir, access, tc.dir, tc.access)
			}
		})
	}
}

// fakeBackend returns a fixed result and records the spec it was given.
type fakeBackend struct {
	res  sandbox.Result
	err  error
	spec sandbox.Spec
}

func (f *fakeBackend) Name() string                                       { return "fake" }
func (f *fakeBackend) Reap(ctx context.Context) ([]sandbox.Reaped, error) { return nil, nil }
func (f *fakeBackend) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	f.spec = spec
	return f.res, f.err
}

func TestExecMainOutput(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		res        sandbox.Result
		runErr     error
		openErr    error
		wantCode   int
		wantStdout string // exact, or JSON compared after decoding when args has --json
		wantStderr string // substring
	}{
		{name: "passthrough", args: []string{"--", "echo"}, res: sandbox.Result{ExitCode: 3, Stdout: []byte("out"), Stderr: []byte("err")},
			wantCode: 3, wantStdout: "out", wantStderr: "err"},
		{name: "timeout", args: []string{"--", "sleep"}, res: sandbox.Result{ExitCode: 124, TimedOut: true},
			wantCode: 124, wantStderr: "timed out after 30s"},
		{name: "oom", args: []string{"--", "x"}, res: sandbox.Result{ExitCode: 137, OOMKilled: true},
			wantCode: 137, wantStderr: "out of memory"},
		{name: "truncated note", args: []string{"--", "yes"}, res: sandbox.Result{Stdout: []byte("y"), StdoutTruncated: true},
			wantCode: 0, wantStdout: "y", wantStderr: "stdout truncated to 1048576 bytes"},
		{name: "json", args: []string{"--json", "--seccomp", "unconfined", "--", "id"},
			res: sandbox.Result{ExitCode: 1, Stdout: []byte("a\x00b"), Stderr: []byte("<e>"), StderrTruncated: true,
				Duration: 1500 * time.Millisecond, ContainerID: "airlock-x", Loosened: []string{"seccomp:unconfined"}},
			wantCode: 1,
			wantStdout: `{"exit_code":1,"stdout":"a\u0000b","stderr":"<e>","truncated":true,"timed_out":false,` +
				`"oom_killed":false,"duration_ms":1500,"container_id":"airlock-x","loosened":["seccomp:unconfined"]}`,
			wantStderr: "WARNING: --seccomp unconfined"},
		{name: "json omits empty loosened", args: []string{"--json", "--", "id"}, res: sandbox.Result{ContainerID: "c"},
			wantStdout: `{"exit_code":0,"stdout":"","stderr":"","truncated":false,"timed_out":false,"oom_killed":false,"duration_ms":0,"container_id":"c"}`},
		{name: "sandbox failure", args: []string{"--", "id"}, runErr: sandbox.ErrUnavailable, wantCode: 125, wantStderr: "sandbox failed"},
		{name: "backend unavailable", args: []string{"--", "id"}, openErr: errors.New("no runc"), wantCode: 125, wantStderr: "sandbox unavailable: no runc"},
		{name: "usage", args: []string{"--pids", "x"}, wantCode: 2, wantStderr: "Run 'airlock exec -h'"},
		{name: "help", args: []string{"-h"}, wantCode: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fb := &fakeBackend{res: tc.res, err: tc.runErr}
			open := func(ctx context.Context, _ string, log zerolog.Logger) (sandbox.Backend, func() error, error) {
				if tc.openErr != nil {
					return nil, nil, tc.openErr
				}
				return fb, func() error { return nil }, nil
			}
			var stdout, stderr bytes.Buffer
			code := execMain(context.Background(), tc.args, &stdout, &stderr, open)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tc.wantCode, stderr.String())
			}
			if slices.Contains(tc.args, "--json") {
				var got, want any
				if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
					t.Fatalf("stdout is not JSON: %v: %q", err, stdout.String())
				}
				if err := json.Unmarshal([]byte(tc.wantStdout), &want); err != nil {
					t.Fatal(err)
				}
				gb, _ := json.Marshal(got)
				wb, _ := json.Marshal(want)
				if !bytes.Equal(gb, wb) {
					t.Errorf("json = %s\nwant   %s", gb, wb)
				}
			} else if tc.wantStdout != "" && stdout.String() != tc.wantStdout {
				t.Errorf("stdout = %q, want %q", stdout.String(), tc.wantStdout)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}

// TestExecBinary runs the built airlock binary against real runc: the CLI path end to end.
func TestExecBinary(t *testing.T) {
	runcBin := testenv.Runc(t)
	bin := filepath.Join(testenv.Binaries(t), "airlock")
	ws := t.TempDir()
	if err := os.Chmod(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "hello.txt"), []byte("hello from the workspace\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	run := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"exec"}, args...)...)
		cmd.Env = append(os.Environ(), "AIRLOCK_RUNC="+runcBin, "AIRLOCK_STATE_DIR="+testenv.StateDir())
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("running airlock exec: %v", err)
		}
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}

	if code, _, errOut := run(t, "--", "true"); code == exitSandbox {
		testenv.Unavailable(t, "airlock exec cannot run a sandbox here (images in %s; run `make setup`): %s", testenv.StateDir(), errOut)
	}
	t.Run("passthrough", func(t *testing.T) {
		code, out, errOut := run(t, "--workspace", ws, "--", "sh", "-c", "cat hello.txt; id -u; echo oops >&2; exit 7")
		if code != 7 || out != "hello from the workspace\n65534\n" || !strings.Contains(errOut, "oops") {
			t.Errorf("code %d stdout %q stderr %q; want 7, workspace file and uid 65534, oops", code, out, errOut)
		}
	})
	t.Run("json timeout", func(t *testing.T) {
		code, out, errOut := run(t, "--json", "--timeout", "1s", "--", "sleep", "30")
		var res execResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("stdout %q stderr %q: %v", out, errOut, err)
		}
		if code != 124 || res.ExitCode != 124 || !res.TimedOut || res.ContainerID == "" || res.DurationMS > 20000 {
			t.Errorf("code %d result %+v; want 124, timed_out, a container id", code, res)
		}
	})
	t.Run("interrupt", func(t *testing.T) {
		secs := strconv.Itoa(100000 + int(time.Now().UnixNano()%800000)) // names this run's process
		cmd := exec.Command(bin, "exec", "--timeout", "60s", "--", "sleep", secs)
		cmd.Env = append(os.Environ(), "AIRLOCK_RUNC="+runcBin, "AIRLOCK_STATE_DIR="+testenv.StateDir())
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		start := time.Now()
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != exitCanceled || time.Since(start) > 15*time.Second {
			t.Errorf("after SIGINT: exit %d after %s, stderr %q; want %d promptly", code, time.Since(start), stderr.String(), exitCanceled)
		}
		// The container's process must be gone with it.
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, err := os.ReadFile(p); err == nil && string(b) == "sleep\x00"+secs+"\x00" {
				t.Errorf("the sandboxed command survived the interrupt: %s", p)
			}
		}
	})
	t.Run("usage error", func(t *testing.T) {
		code, _, errOut := run(t, "--memory", "lots", "--", "true")
		if code != 2 || !strings.Contains(errOut, "--memory") {
			t.Errorf("code %d stderr %q; want 2 naming --memory", code, errOut)
		}
	})
}
