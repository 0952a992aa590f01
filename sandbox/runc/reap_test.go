package runc

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

const helperEnv = "AIRLOCK_RUNC_REAP_HELPER" // "<state dir>|<rootfs>|<marker>"

func TestMain(m *testing.M) {
	if arg := os.Getenv(helperEnv); arg != "" {
		reapHelper(arg)
		return
	}
	os.Exit(m.Run())
}

// reapHelper is a second Airlock process for TestReap (the test binary re-executed): it starts
// a long container, reports it, and waits to be SIGKILLed.
func reapHelper(arg string) {
	parts := strings.Split(arg, "|")
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(1)
	}
	b, err := New(Config{Runc: os.Getenv("AIRLOCK_RUNC"), StateDir: parts[0], Images: testImages{rootfs: parts[1]}, Logger: zerolog.Nop()})
	if err != nil {
		fail(err)
	}
	s, err := sandbox.New(sandbox.WithArgv("sh", "-c", "sleep "+parts[2]+" & sleep "+parts[2]))
	if err != nil {
		fail(err)
	}
	go func() { _, _ = b.Run(context.Background(), s) }()
	id := fmt.Sprintf("airlock-%s-1", b.token)
	// Running, and the command's sleep started (the init starts it a moment after runc
	// reports the container running).
	for {
		out, _ := b.runcCmd(context.Background(), "state", id)
		if bytes.Contains(out, []byte(`"status": "running"`)) && hasProcess(parts[2]) {
			fmt.Println("running", id)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {} // until killed
}

// TestReap: leftovers of a SIGKILLed Airlock process are removed by the next one's Reap, and
// a live process's container is never touched.
func TestReap(t *testing.T) {
	runcBin := testenv.Runc(t)
	b := newTestBackend(t)
	marker := uniqueSleep(t)

	helper := exec.Command(os.Args[0])
	helper.Env = append(os.Environ(), helperEnv+"="+b.stateDir+"|"+testRootfs(t)+"|"+marker, "AIRLOCK_RUNC="+runcBin)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = helper.Process.Kill(); _ = helper.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "running ") {
		t.Fatalf("helper: %q %v", line, err)
	}
	id := strings.TrimSpace(strings.TrimPrefix(line, "running "))
	owner, _ := parseID(id)

	// A live owner's container survives Reap.
	if _, err := b.Reap(context.Background()); err != nil {
		t.Fatalf("Reap with a live owner: %v", err)
	}
	if !containerRunning(t, b, id) || !hostHasProcess(t, marker) {
		t.Fatal("Reap touched the container of a live Airlock process")
	}

	// The owner dies without cleaning up; its container outlives it.
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	time.Sleep(100 * time.Millisecond) // runc run follows via its parent-death signal
	if !hostHasProcess(t, marker) {
		t.Fatal("expected the dead owner's container to outlive it (nothing to reap otherwise)")
	}

	// A cgroup of an owner this state dir does not know belongs to someone else: kept.
	foreign := filepath.Join(b.cg.memory, b.cgroupParent, "airlock-0000000f0000-1")
	if err := os.MkdirAll(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(foreign)
	// A bundle whose owner has no lock file at all is a leftover.
	orphan := filepath.Join(b.bundles, "airlock-00000000dead-3")
	if err := os.MkdirAll(orphan, 0o700); err != nil {
		t.Fatal(err)
	}

	if _, err := b.Reap(context.Background()); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	waitGone(t, marker)
	if containerRunning(t, b, id) {
		t.Error("dead owner's container still known to runc")
	}
	for _, p := range []string{filepath.Join(b.root, id), filepath.Join(b.bundles, id), orphan, b.lockPath(owner)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived Reap (%v)", p, err)
		}
	}
	for _, r := range b.cg.roots {
		if _, err := os.Stat(filepath.Join(r, b.cgroupParent, id)); !os.IsNotExist(err) {
			t.Errorf("cgroup %s/%s/%s survived Reap", r, b.cgroupParent, id)
		}
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("Reap removed a cgroup of an owner it cannot prove dead: %v", err)
	}
	if _, err := os.Stat(b.lockPath(b.token)); err != nil {
		t.Errorf("Reap removed its own lock: %v", err)
	}
	assertNoLeftovers(t, b)
}

func containerRunning(t *testing.T, b *Backend, id string) bool {
	t.Helper()
	out, err := b.runcCmd(context.Background(), "state", id)
	return err == nil && bytes.Contains(out, []byte(`"status": "running"`))
}

// TestOwnerLocks: two Backends on one state dir get distinct tokens, each sees the other as
// alive, and Close releases the lock so the next Reap can take it.
func TestOwnerLocks(t *testing.T) {
	a := newTestBackend(t)
	b, err := New(Config{Runc: a.runc, StateDir: a.stateDir, Images: a.images, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.token == b.token {
		t.Fatal("two backends share an owner token")
	}
	for _, tc := range []struct {
		name  string
		token string
	}{{"a sees b alive", b.token}, {"b sees a alive", a.token}} {
		f, err := tryLock(a.lockPath(tc.token))
		if err != nil || f != nil {
			t.Errorf("%s: tryLock = %v, %v; want nil, nil", tc.name, f, err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.lockPath(b.token)); !os.IsNotExist(err) {
		t.Errorf("Close left its lock file: %v", err)
	}
}

func TestFind(t *testing.T) {
	runcBin := testenv.Runc(t)
	t.Setenv("AIRLOCK_RUNC", runcBin)
	if got, err := Find(); err != nil || got != runcBin {
		t.Errorf("Find() = %q, %v; want %q", got, err, runcBin)
	}
	t.Setenv("AIRLOCK_RUNC", "/nonexistent/runc")
	if _, err := Find(); err == nil || !strings.Contains(err.Error(), "make setup") {
		t.Errorf("Find() with a bad AIRLOCK_RUNC: %v", err)
	}
	t.Setenv("AIRLOCK_RUNC", "")
	t.Setenv("PATH", t.TempDir())
	if got, err := Find(); err != nil {
		if !strings.Contains(err.Error(), "make setup") {
			t.Errorf("Find() error does not say what to do: %v", err)
		}
	} else if !isExecutable(got) {
		t.Errorf("Find() = %q, not executable", got)
	}
}

func TestVersion(t *testing.T) {
	b := newTestBackend(t)
	v, err := b.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "runc 1.") || !strings.Contains(v, "libseccomp") {
		t.Errorf("Version() = %q", v)
	}
}

func TestNewRefuses(t *testing.T) {
	runcBin := testenv.Runc(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"missing runc", Config{Runc: "/nonexistent/runc", StateDir: t.TempDir(), Images: testImages{}}},
		{"no images", Config{Runc: runcBin, StateDir: t.TempDir()}},
		{"no state dir", Config{Runc: runcBin, Images: testImages{}}},
		{"cgroup parent escapes", Config{Runc: runcBin, StateDir: t.TempDir(), Images: testImages{}, CgroupParent: "../x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := New(tt.cfg); err == nil {
				b.Close()
				t.Fatal("New accepted it")
			}
		})
	}
}

func TestStateDirPrivate(t *testing.T) {
	b := newTestBackend(t)
	for _, d := range []string{b.stateDir, b.bundles, b.root, b.owners} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, fi.Mode().Perm())
		}
	}
}
