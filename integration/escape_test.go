package integration

// The escape suite: each case tries to break one isolation property of Airlock's sandbox
// against REAL runc and asserts that the property held, both in the run's result and on the
// host (listener accept counts, file hashes, /proc scans, cgroup directories). docs/security.md
// lists every property with the name of the case (escape_*_test.go) that attacks it.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/runc"
)

// escapeMarkerEnv is set in every container of the suite to "<suite marker>-<case>", so the
// host can find the suite's processes by scanning /proc/*/environ.
const escapeMarkerEnv = "AIRLOCK_ESCAPE_MARKER"

// escapeCanaryEnv is planted in the test process's own environment; no container may see it.
const escapeCanaryEnv = "AIRLOCK_ESCAPE_HOST_CANARY"

// escapeSuite is one runc backend shared by every case, and what the final leftover check
// needs to find anything the suite left behind.
type escapeSuite struct {
	backend      *runc.Backend
	runc         string
	stateDir     string // the backend's private state: bundles/, root/
	cgroupParent string // unique to this test process
	marker       string // prefix of every container's escapeMarkerEnv value
	canary       string // value of escapeCanaryEnv in the test process
	images       *images.Store
	busybox      sandbox.Image
	probeDir     string // 0755 directory holding the static probe binary "probe"

	binOnce sync.Once
	bin     string // built airlock binary (CLI cases)
}

func TestEscape(t *testing.T) {
	runcBin := testenv.Runc(t)
	ctx := context.Background()
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		testenv.Unavailable(t, "image store %s: %v", testenv.StateDir(), err)
	}
	bb, err := store.Resolve(ctx, "busybox")
	if err != nil {
		testenv.Unavailable(t, "image busybox (run `make images`): %v", err)
	}
	s := &escapeSuite{
		runc:         runcBin,
		stateDir:     t.TempDir(),
		cgroupParent: fmt.Sprintf("airlock-test-%d", os.Getpid()),
		marker:       "escape-" + escRandomToken(t),
		canary:       "canary-" + escRandomToken(t),
		images:       store,
		busybox:      bb,
	}
	// Every container below is started after this: if the backend leaked the host
	// environment into a container, the canary would show up there.
	t.Setenv(escapeCanaryEnv, s.canary)
	s.probeDir = escBuildProbe(t)

	s.backend, err = runc.New(runc.Config{
		Runc:         runcBin,
		StateDir:     s.stateDir,
		Images:       store,
		CgroupParent: s.cgroupParent,
		Logger:       zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatalf("runc backend: %v", err)
	}
	// Registered before the cases run; runs after every parallel case has finished.
	t.Cleanup(func() {
		if err := s.backend.Close(); err != nil {
			t.Errorf("closing the backend: %v", err)
		}
		s.checkNoLeftovers(t)
	})

	par := func(f func(*testing.T, *escapeSuite)) func(*testing.T) {
		return func(t *testing.T) { t.Parallel(); f(t, s) }
	}
	// Not parallel: if the check regressed, it would change the shared image, which ReadOnlyRoot
	// hashes. Sequential subtests finish before any parallel one starts.
	t.Run("MissingWorkdirRefused", func(t *testing.T) { testMissingWorkdir(t, s) })

	t.Run("NoNetwork", par(testNoNetwork))
	t.Run("OnlyLoopback", par(testOnlyLoopback))
	t.Run("ReadOnlyRoot", par(testReadOnlyRoot))
	t.Run("ReadOnlyWorkspace", par(testReadOnlyWorkspace))
	t.Run("CopyWorkspaceLeavesHostUnchanged", par(testCopyWorkspace))
	t.Run("WorkspaceSymlinksStayInside", par(testSymlinks))
	t.Run("SetuidBinaryGainsNothing", par(testSetuid))
	t.Run("ForkBombStopsAtPidsLimit", par(testForkBomb))
	t.Run("MemoryBombIsOOMKilled", par(testMemoryBomb))
	t.Run("KernelMemoryIsCharged", par(testKernelMemory))
	t.Run("CPUQuotaHolds", par(testCPUQuota))
	t.Run("TimeoutKillsEveryProcess", par(testTimeout))
	t.Run("BackgroundChildrenDieWithCommand", par(testBackgroundChildren))
	t.Run("TmpfsFillStopsAtCap", par(testTmpfsFill))
	t.Run("ForbiddenSyscallsFail", par(testSyscalls))
	t.Run("NoHostEnvironment", par(testHostEnv))
	t.Run("KernelInterfacesMasked", par(testMasked))
	t.Run("OutputFloodIsTruncated", par(testOutputFlood))
	t.Run("NoCapabilitiesNoNewPrivs", par(testCapabilities))
	t.Run("RootInsideGainsNothing", par(testRootInside))
	t.Run("NoHostAbstractUnixSockets", par(testAbstractUnix))
	t.Run("NoInheritedFileDescriptors", par(testFDs))
	t.Run("WorkdirThroughLeakedFDStaysInside", par(testWorkdirThroughFD))
	t.Run("NoHostDevices", par(testDevices))
	t.Run("NoHostProcessesOrIdentity", par(testHostProcesses))
	t.Run("HostImageExposesNoSecrets", par(testHostImage))
	t.Run("CLIHoldsTheSameProperties", par(testCLI))
	t.Run("NoSetuidBitsOnWritableMounts", par(testNoSetuidOnWritableMounts))

}

// ---- the cases ----

// run executes one spec on the suite's backend; the sandbox itself must not fail.
func (s *escapeSuite) run(t *testing.T, opts ...sandbox.Option) sandbox.Result {
	t.Helper()
	res, err := s.runErr(t, opts...)
	if err != nil {
		t.Fatalf("sandbox run: %v", err)
	}
	return res
}

// runErr executes one spec on the suite's backend and returns the sandbox's error, if any.
func (s *escapeSuite) runErr(t *testing.T, opts ...sandbox.Option) (sandbox.Result, error) {
	t.Helper()
	all := append([]sandbox.Option{sandbox.WithEnv(escapeMarkerEnv + "=" + s.caseMarker(t))}, opts...)
	spec, err := sandbox.New(all...)
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), spec.Timeout+2*time.Minute)
	defer cancel()
	res, err := s.backend.Run(ctx, spec)
	if err != nil {
		return res, fmt.Errorf("%q: %w", spec.Argv, err)
	}
	t.Logf("%q: exit %d timed_out %v oom %v truncated %v in %s (%s)", spec.Argv, res.ExitCode, res.TimedOut,
		res.OOMKilled, res.Truncated(), res.Duration.Round(time.Millisecond), res.ContainerID)
	return res, nil
}

// caseMarker is the escapeMarkerEnv value of t's containers.
func (s *escapeSuite) caseMarker(t *testing.T) string {
	return s.marker + "-" + strings.ReplaceAll(t.Name(), "/", ".")
}

// workspace is a fresh directory the sandbox user can read.
func (s *escapeSuite) workspace(t *testing.T) string {
	ws := t.TempDir()
	escChmod(t, ws, 0o755)
	return ws
}

func (s *escapeSuite) airlockBin(t *testing.T) string {
	s.binOnce.Do(func() { s.bin = filepath.Join(testenv.Binaries(t), "airlock") })
	if s.bin == "" {
		t.Fatal("building airlock failed in another case")
	}
	return s.bin
}

// assertContainerGone checks that container id has no bundle under stateDir and no cgroup.
func (s *escapeSuite) assertContainerGone(t *testing.T, id, stateDir, parent string) {
	t.Helper()
	if id == "" {
		t.Error("the result carries no container id")
		return
	}
	if _, err := os.Lstat(filepath.Join(stateDir, "bundles", id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("bundle of %s remains (%v)", id, err)
	}
	if d := escCgroupDirs(filepath.Join(parent, id)); len(d) > 0 {
		t.Errorf("cgroups of %s remain: %v", id, d)
	}
	out, err := exec.Command(s.runc, "--root", filepath.Join(stateDir, "root"), "state", id).CombinedOutput()
	if err == nil {
		t.Errorf("runc still knows container %s: %s", id, out)
	}
}

// checkNoLeftovers runs after every case: no bundle, runc container, cgroup or process of the
// suite may remain.
func (s *escapeSuite) checkNoLeftovers(t *testing.T) {
	if ents, err := os.ReadDir(filepath.Join(s.stateDir, "bundles")); err == nil && len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("bundles left in %s: %v", s.stateDir, names)
	}
	root := filepath.Join(s.stateDir, "root")
	if _, err := os.Stat(root); err == nil {
		out, err := exec.Command(s.runc, "--root", root, "list", "-q").CombinedOutput()
		if err != nil {
			t.Errorf("runc list: %v: %s", err, out)
		} else if strings.TrimSpace(string(out)) != "" {
			t.Errorf("runc still lists containers: %s", out)
		}
	}
	for _, dir := range escCgroupDirs(s.cgroupParent) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() {
				t.Errorf("cgroup left behind: %s", filepath.Join(dir, e.Name()))
			}
		}
		os.Remove(dir) // the suite's own parent; fails harmlessly if something is left inside
	}
	if left := escProcessesWith(s.marker); len(left) > 0 {
		t.Errorf("processes of the suite still running: %v", left)
	}
}
