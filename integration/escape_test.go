package integration

// The escape suite: each case tries to break one isolation property of Airlock's sandbox
// against every real backend (runc, and the daemons' backends) and asserts that the property held, both in the run's result and on the
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

// escapeSuite is one backend shared by every case, and what the final leftover check needs to
// find anything the suite left behind.
type escapeSuite struct {
	name         string // the backend's registry name
	backend      sandbox.Backend
	host         escapeHost // the host-side checks for this backend
	runc         string     // runc binary (the CLI case runs with it)
	cgroupParent string     // unique to this test process and backend
	marker       string     // prefix of every container's escapeMarkerEnv value
	canary       string     // value of escapeCanaryEnv in the test process
	images       *images.Store
	busybox      sandbox.Image
	probeDir     string // 0755 directory holding the static probe binary "probe"

	// longLived runs every spec through sandbox.Start, as a stdio MCP server's container,
	// instead of Backend.Run (see runProcess).
	longLived bool

	binOnce *sync.Once
	bin     *string // built airlock binary (CLI cases), shared with the LongLived copy
}

// escapeHost is what the suite checks on the host, per backend: that one run's container is
// gone, and that nothing of the suite's runs remains.
type escapeHost interface {
	assertGone(t *testing.T, id string)
	leftovers(t *testing.T) []string
}

// escapeHostFor is the host check of the backend registered as name, opened with o. Every
// backend in the registry must have one: the suite runs on all of them.
func escapeHostFor(t *testing.T, name, runcBin string, o sandbox.OpenOptions) escapeHost {
	switch name {
	case "runc", poolVariant:
		run := o.RunDir
		if run == "" {
			run = filepath.Join(o.StateDir, "run")
		}
		parent := o.CgroupParent
		if parent == "" {
			parent = runc.DefaultCgroupParent
		}
		return runcHost{runc: runcBin, runDir: run, cgroupParent: parent}
	case "docker":
		state := o.RunDir
		if state == "" {
			state = o.StateDir
		}
		return newDockerHost(t, state, o.CgroupParent)
	case "containerd":
		state := o.RunDir
		if state == "" {
			state = o.StateDir
		}
		return newContainerdHost(t, state, o.CgroupParent)
	}
	t.Fatalf("the escape suite has no host checks for backend %q: add them to escapeHostFor", name)
	return nil
}

// TestEscape runs every case on every backend of the registry (the same registry serve, call,
// exec and doctor use). A backend that cannot run here fails the suite under
// AIRLOCK_REQUIRE_SANDBOX: each promises every property.
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
	canary := "canary-" + escRandomToken(t)
	// Every container below is started after this: if a backend leaked the host environment
	// into a container, the canary would show up there.
	t.Setenv(escapeCanaryEnv, canary)
	probeDir := escBuildProbe(t)
	forEachBackendAndPool(t, "escape", func(t *testing.T, name string, b sandbox.Backend, o sandbox.OpenOptions) {
		s := &escapeSuite{
			name:         name,
			backend:      b,
			host:         escapeHostFor(t, name, runcBin, o),
			runc:         runcBin,
			cgroupParent: o.CgroupParent,
			marker:       "escape-" + escRandomToken(t),
			canary:       canary,
			images:       store,
			busybox:      bb,
			probeDir:     probeDir,
			binOnce:      &sync.Once{},
			bin:          new(string),
		}
		// Registered before the cases run; runs after every parallel case has finished.
		t.Cleanup(func() {
			s.checkNoLeftovers(t)
		})
		s.runCases(t)
		if name != poolVariant {
			// A live stream never runs in a prestarted sandbox: these would be runc's again.
			s.runLongLivedCases(t)
		}
	})
}

func (s *escapeSuite) runCases(t *testing.T) {
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
	run := s.backend.Run
	if s.longLived {
		run = s.runProcess
	}
	res, err := run(ctx, spec)
	if err != nil {
		return res, fmt.Errorf("%q: %w", spec.Argv, err)
	}
	if s.name == poolVariant && !s.longLived && escWarmable(spec) && !res.Warm {
		t.Errorf("%q ran cold behind the pool: the case did not test a prestarted sandbox", spec.Argv)
	}
	t.Logf("%q: exit %d timed_out %v oom %v truncated %v in %s (%s)", spec.Argv, res.ExitCode, res.TimedOut,
		res.OOMKilled, res.Truncated(), res.Duration.Round(time.Millisecond), res.ContainerID)
	return res, nil
}

// escWarmable: a spec the pool runs in a prestarted sandbox (no live stream, no egress proxy,
// no copy-on-write mount).
func escWarmable(spec sandbox.Spec) bool {
	for _, m := range spec.Mounts {
		if m.Access == sandbox.CopyOnWrite {
			return false
		}
	}
	return spec.Streams == nil && spec.Network == sandbox.NetworkNone
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
	s.binOnce.Do(func() { *s.bin = filepath.Join(testenv.Binaries(t), "airlock") })
	if *s.bin == "" {
		t.Fatal("building airlock failed in another case")
	}
	return *s.bin
}

// checkNoLeftovers runs after every case: nothing of the backend's runs and no process of the
// suite may remain.
func (s *escapeSuite) checkNoLeftovers(t *testing.T) {
	for _, l := range s.host.leftovers(t) {
		t.Errorf("left behind by the %s backend: %s", s.name, l)
	}
	if left := escProcessesWith(s.marker); len(left) > 0 {
		t.Errorf("processes of the suite still running: %v", left)
	}
}

// runcHost checks runc's bundles, containers and cgroups.
type runcHost struct {
	runc         string
	runDir       string // the backend's state: bundles/, root/
	cgroupParent string
}

// assertGone checks that container id has no bundle, no runc state and no cgroup.
func (h runcHost) assertGone(t *testing.T, id string) {
	t.Helper()
	if id == "" {
		t.Error("the result carries no container id")
		return
	}
	if _, err := os.Lstat(filepath.Join(h.runDir, "bundles", id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("bundle of %s remains (%v)", id, err)
	}
	if d := escCgroupDirs(filepath.Join(h.cgroupParent, id)); len(d) > 0 {
		t.Errorf("cgroups of %s remain: %v", id, d)
	}
	out, err := exec.Command(h.runc, "--root", filepath.Join(h.runDir, "root"), "state", id).CombinedOutput()
	if err == nil {
		t.Errorf("runc still knows container %s: %s", id, out)
	}
}

func (h runcHost) leftovers(t *testing.T) []string {
	var left []string
	if ents, err := os.ReadDir(filepath.Join(h.runDir, "bundles")); err == nil {
		for _, e := range ents {
			left = append(left, "bundle "+e.Name())
		}
	}
	root := filepath.Join(h.runDir, "root")
	if _, err := os.Stat(root); err == nil {
		out, err := exec.Command(h.runc, "--root", root, "list", "-q").CombinedOutput()
		if err != nil {
			left = append(left, fmt.Sprintf("runc list failed: %v: %s", err, out))
		} else if l := strings.TrimSpace(string(out)); l != "" {
			left = append(left, "runc containers "+l)
		}
	}
	left = append(left, escCgroupLeftovers(h.cgroupParent)...)
	return left
}

// escCgroupLeftovers lists the child cgroups left under parent (in every hierarchy) and
// removes parent itself when it is empty.
func escCgroupLeftovers(parent string) []string {
	var left []string
	for _, dir := range escCgroupDirs(parent) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() {
				left = append(left, "cgroup "+filepath.Join(dir, e.Name()))
			}
		}
		os.Remove(dir) // the suite's own parent; fails harmlessly if something is left inside
	}
	return left
}
