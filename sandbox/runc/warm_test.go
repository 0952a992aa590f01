package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/oci"
	"github.com/airlock-mcp/airlock/sandbox/warmproto"
)

// runMode runs s cold (Run) or in a sandbox prestarted for it (Prestart, then the warm Run).
func runMode(t *testing.T, b *Backend, warm bool, s sandbox.Spec) (sandbox.Result, error) {
	t.Helper()
	if !warm {
		return b.Run(context.Background(), s)
	}
	w, err := b.Prestart(context.Background(), s)
	if err != nil {
		t.Fatalf("Prestart: %v", err)
	}
	res, err := w.Run(context.Background(), s)
	if !res.Warm {
		t.Errorf("the result of a warm run does not say Warm")
	}
	return res, err
}

// TestWarmConfigIsColdConfig: the bundle runc starts a warm sandbox from is the configuration
// a cold run of the same spec gets, byte for byte, except the process's argv, environment and
// directory, which the init takes with its command.
func TestWarmConfigIsColdConfig(t *testing.T) {
	b := newTestBackend(t)
	ws := t.TempDir()
	cases := map[string]sandbox.Spec{
		"default":      spec(t, sandbox.WithArgv("sh", "-c", "echo hi")),
		"workspace-rw": spec(t, sandbox.WithArgv("ls"), sandbox.WithWorkspace(ws, sandbox.ReadWrite), sandbox.WithMemory(300<<20), sandbox.WithPids(99)),
		"files":        spec(t, sandbox.WithArgv("true"), sandbox.WithSeccomp(sandbox.SeccompFiles), sandbox.WithLabel("tool", "read_file")),
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			w, err := b.Prestart(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			wr := w.(*warmRun)
			raw, err := os.ReadFile(filepath.Join(wr.bundle, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var warm specs.Spec
			if err := json.Unmarshal(raw, &warm); err != nil {
				t.Fatal(err)
			}
			cold, _, err := b.config(context.Background(), s, wr.id)
			if err != nil {
				t.Fatal(err)
			}
			wantArgs := []string{oci.InitPath, "init", "--warm", "--idle", WarmIdleLimit.String()}
			if !slices.Equal(warm.Process.Args, wantArgs) || len(warm.Process.Env) != 0 || warm.Process.Cwd != "/" {
				t.Errorf("warm process %q env %q cwd %q; want %q, no environment, /", warm.Process.Args, warm.Process.Env, warm.Process.Cwd, wantArgs)
			}
			// The spec's labels belong to a call; the warm container has none of them.
			if _, ok := warm.Annotations["tool"]; ok {
				t.Errorf("warm container carries a call's label: %v", warm.Annotations)
			}
			delete(cold.Annotations, "tool")
			warm.Process.Args, warm.Process.Env, warm.Process.Cwd = cold.Process.Args, cold.Process.Env, cold.Process.Cwd
			coldJSON, _ := json.Marshal(cold)
			warmJSON, _ := json.Marshal(&warm)
			if !bytes.Equal(coldJSON, warmJSON) {
				t.Errorf("warm configuration differs from the cold one beyond the process:\nwarm %s\ncold %s", warmJSON, coldJSON)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
	assertNoLeftovers(t, b)
}

// TestWarmRunCarriesTheCall: argv, environment, directory, stdin, output caps and exit status
// all come with the command, and the container is gone afterwards.
func TestWarmRunCarriesTheCall(t *testing.T) {
	b := newTestBackend(t)
	ws := t.TempDir()
	if err := os.Mkdir(filepath.Join(ws, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := spec(t, sandbox.WithWorkspace(ws, sandbox.ReadOnly), sandbox.WithWorkdir("/workspace/sub"),
		sandbox.WithEnv("GREETING=hello there"), sandbox.WithStdin([]byte("from stdin\n")), sandbox.WithOutputCaps(64, 1<<20),
		sandbox.WithArgv("sh", "-c", `echo "$GREETING|$(pwd)|$(cat)|$0" a; env | grep -c . >&2; yes | head -c 1000; exit 3`))
	res, err := runMode(t, b, true, s)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || !res.StdoutTruncated || !strings.HasPrefix(string(res.Stdout), "hello there|/workspace/sub|from stdin|sh a\n") || len(res.Stdout) != 64 {
		t.Errorf("exit %d stdout %q (truncated %v)", res.ExitCode, res.Stdout, res.StdoutTruncated)
	}
	// Exactly the spec's environment, as in a cold run: nothing of the warm init's.
	s.Argv, s.Stdin = []string{"env"}, nil
	cold, err := runMode(t, b, false, s)
	if err != nil {
		t.Fatal(err)
	}
	warm, err := runMode(t, b, true, s)
	if err != nil || string(warm.Stdout) != string(cold.Stdout) || len(warm.Stdout) == 0 {
		t.Errorf("environment: warm %q, cold %q (%v)", warm.Stdout, cold.Stdout, err)
	}
	// Without stdin the command reads /dev/null, as in a cold run.
	res, err = runMode(t, b, true, spec(t, sandbox.WithArgv("sh", "-c", "cat; readlink /proc/self/fd/0")))
	if err != nil || string(res.Stdout) != "/dev/null\n" {
		t.Errorf("no stdin: %q, %v; want /dev/null", res.Stdout, err)
	}
	// A working directory that is not there: nothing ran, and the error says why.
	res, err = runMode(t, b, true, spec(t, sandbox.WithArgv("true"), sandbox.WithWorkdir("/nonexistent")))
	if err == nil || res.Ran || !strings.Contains(err.Error(), "/nonexistent") {
		t.Errorf("missing workdir: ran %v, err %v; want an error naming it", res.Ran, err)
	}
	assertNoLeftovers(t, b)
}

// TestWarmTimeoutAndCancel: the host timer and a cancelled call kill a warm sandbox as they
// kill a cold one.
func TestWarmTimeoutAndCancel(t *testing.T) {
	b := newTestBackend(t)
	res, err := runMode(t, b, true, spec(t, sandbox.WithTimeout(time.Second), sandbox.WithArgv("sh", "-c", "sleep 100 & sleep 100")))
	if err != nil || !res.TimedOut || res.ExitCode != sandbox.ExitTimeout {
		t.Errorf("timeout: exit %d timed_out %v err %v", res.ExitCode, res.TimedOut, err)
	}
	s := spec(t, sandbox.WithArgv("sleep", "100"))
	w, err := b.Prestart(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err = w.Run(ctx, s)
	if !errors.Is(err, context.DeadlineExceeded) || res.ExitCode != sandbox.ExitKilled || time.Since(start) > 5*time.Second {
		t.Errorf("cancel: exit %d err %v after %s", res.ExitCode, err, time.Since(start))
	}
	assertNoLeftovers(t, b)
}

// TestWarmOneCommand: a warm sandbox runs one command; a second Run, a Run after Close and a
// spec of another shape are refused, and nothing runs.
func TestWarmOneCommand(t *testing.T) {
	b := newTestBackend(t)
	s := spec(t, sandbox.WithArgv("true"))
	w, err := b.Prestart(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Run(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if res, err := w.Run(context.Background(), s); !errors.Is(err, sandbox.ErrInvalidSpec) || res.Ran {
		t.Errorf("second Run: ran %v err %v", res.Ran, err)
	}
	w, err = b.Prestart(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	other := spec(t, sandbox.WithArgv("true"), sandbox.WithMemory(64<<20))
	if res, err := w.Run(context.Background(), other); !errors.Is(err, sandbox.ErrInvalidSpec) || res.Ran {
		t.Errorf("another shape: ran %v err %v", res.Ran, err)
	}
	w, err = b.Prestart(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if res, err := w.Run(context.Background(), s); err == nil || res.Ran {
		t.Errorf("Run after Close: ran %v err %v", res.Ran, err)
	}
	assertNoLeftovers(t, b)
}

// TestWarmInitEndsWithAirlock: the waiting init exits by itself once Airlock's end of its
// socket closes (Airlock died), having run nothing.
func TestWarmInitEndsWithAirlock(t *testing.T) {
	b := newTestBackend(t)
	w, err := b.Prestart(context.Background(), spec(t, sandbox.WithArgv("true")))
	if err != nil {
		t.Fatal(err)
	}
	wr := w.(*warmRun)
	wr.ctrl.Close() // what the kernel does when Airlock dies
	if !wr.awaitExit() {
		t.Fatal("the warm init still runs after its socket closed")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoLeftovers(t, b)
}

// TestWarmUnwarmable: specs a prestarted sandbox cannot run have no key and are refused.
func TestWarmUnwarmable(t *testing.T) {
	b := newTestBackend(t)
	for name, s := range map[string]sandbox.Spec{
		"egress": spec(t, sandbox.WithArgv("true"), sandbox.WithEgress("/run/x.sock")),
		"copy":   spec(t, sandbox.WithArgv("true"), sandbox.WithWorkspace(t.TempDir(), sandbox.CopyOnWrite)),
	} {
		if _, ok, err := b.WarmKey(context.Background(), s); ok || err != nil {
			t.Errorf("%s: WarmKey ok %v err %v; want not warmable", name, ok, err)
		}
		if _, err := b.Prestart(context.Background(), s); !errors.Is(err, sandbox.ErrInvalidSpec) {
			t.Errorf("%s: Prestart err %v; want ErrInvalidSpec", name, err)
		}
	}
	a, _, _ := b.WarmKey(context.Background(), spec(t, sandbox.WithArgv("a"), sandbox.WithEnv("X=1"), sandbox.WithLabel("k", "v")))
	c, _, _ := b.WarmKey(context.Background(), spec(t, sandbox.WithArgv("b"), sandbox.WithTimeout(time.Hour)))
	d, _, _ := b.WarmKey(context.Background(), spec(t, sandbox.WithArgv("b"), sandbox.WithPids(9)))
	if a != c || a == d || len(a) != 32 {
		t.Errorf("keys %q %q %q: want the first two equal (command, env, labels, timeout differ) and the third other (limits differ)", a, c, d)
	}
}

// TestWarmTimeoutHoldsWithoutAirlock: Airlock sends a warm sandbox its command and dies (its
// end of the socket and of the pipes close; no host timer is left). The command and everything
// it started still run past Spec.Timeout, and none is left by Spec.Timeout + oci.InitGrace +
// 1 s: the waiting init took the deadline with the command and enforced it.
func TestWarmTimeoutHoldsWithoutAirlock(t *testing.T) {
	b := newTestBackend(t)
	const timeout = 2 * time.Second
	marker := uniqueSleep(t)
	s := spec(t, sandbox.WithTimeout(timeout), sandbox.WithEnv(markerEnv+"="+marker), sandbox.WithArgv("sh", "-c",
		"sleep "+marker+" & (trap '' TERM; sleep "+marker+") & setsid sleep "+marker+" & sleep "+marker))
	w, err := b.Prestart(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	wr := w.(*warmRun)
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("removing %s: %v", wr.id, err)
		}
		assertNoLeftovers(t, b)
	})
	req, err := warmproto.Encode(warmproto.Request{Argv: s.Argv, Env: s.Env, Dir: s.Workdir, Deadline: timeout + oci.InitGrace})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := wr.ctrl.Write(req); err != nil {
		t.Fatal(err)
	}
	// Airlock dies: the kernel closes everything it held.
	for _, f := range []*os.File{wr.ctrl, wr.stdin, wr.stdout, wr.stderr} {
		f.Close()
	}
	container := func() []string { return processesOf(b, wr.id, marker) }
	for len(container()) < 5 {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("the command never started its processes: %v", container())
		}
		time.Sleep(10 * time.Millisecond)
	}
	procs := container()
	time.Sleep(time.Until(start.Add(timeout + 500*time.Millisecond)))
	if now := container(); len(now) < len(procs) {
		t.Fatalf("%s after the request only %d of %d processes run: something but the init's deadline ended them", time.Since(start).Round(time.Millisecond), len(now), len(procs))
	}
	limit := start.Add(timeout + oci.InitGrace + time.Second)
	for left := container(); len(left) > 0; left = container() {
		if time.Now().After(limit) {
			t.Fatalf("%s after the request, %d processes of the warm sandbox still run with no Airlock: %v", time.Since(start).Round(time.Millisecond), len(left), left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("all %d processes gone %s after the request", len(procs), time.Since(start).Round(time.Millisecond))
}

// TestWarmStaleSource: a workspace removed and made again at the same path after a sandbox
// mounted it is not the sandbox's any more: the claim is refused as stale (the pool then runs
// the call in a fresh sandbox), and nothing ran on the old tree.
func TestWarmStaleSource(t *testing.T) {
	b := newTestBackend(t)
	ws := filepath.Join(t.TempDir(), "ws")
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	s := spec(t, sandbox.WithWorkspace(ws, sandbox.ReadOnly), sandbox.WithArgv("ls", "/workspace"))
	w, err := b.Prestart(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(ws, ws+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := w.Run(context.Background(), s)
	if !errors.Is(err, sandbox.ErrStale) || res.Ran {
		t.Errorf("claim after the workspace was replaced: ran %v, err %v; want ErrStale", res.Ran, err)
	}
	assertNoLeftovers(t, b)
}

// TestWarmImageWithoutWarmInit: an image whose init predates prestarted sandboxes (it refuses
// --warm and exits) is found out when the sandbox starts, with an error that says to rebuild
// the image, rather than failing a call later.
func TestWarmImageWithoutWarmInit(t *testing.T) {
	b := newTestBackend(t)
	root := b.images.(testImages).rootfs
	old := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("cp", "-a", root, old).CombinedOutput(); err != nil {
		t.Fatalf("copying the rootfs: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(old, oci.InitPath), []byte("#!/bin/sh\necho 'usage: airlock-toolbox init --deadline D -- CMD' >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b.images = testImages{rootfs: old}
	_, err := b.Prestart(context.Background(), spec(t, sandbox.WithArgv("true")))
	if err == nil || !strings.Contains(err.Error(), "airlock images build") {
		t.Errorf("Prestart on an image without a warm init: %v; want an error saying to rebuild it", err)
	}
	assertNoLeftovers(t, b)
}
