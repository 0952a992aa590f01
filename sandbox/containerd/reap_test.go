package containerd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/oci"
	"github.com/airlock-mcp/airlock/sandbox/owner"
)

const helperEnv = "AIRLOCK_CONTAINERD_REAP_HELPER" // "<namespace>|<state dir>|<marker>|<timeout>"

// fakeShimEnv makes the test binary stand in for a shim the daemon lost track of.
const fakeShimEnv = "AIRLOCK_CONTAINERD_FAKE_SHIM"

func TestMain(m *testing.M) {
	if arg := os.Getenv(helperEnv); arg != "" {
		reapHelper(arg)
		return
	}
	if os.Getenv(fakeShimEnv) == "1" {
		select {} // until killed
	}
	os.Exit(m.Run())
}

// reapHelper is a second Airlock process for TestReap (the test binary re-executed): it starts
// a long container in the given namespace, reports it once the command runs, and waits to be
// SIGKILLed.
func reapHelper(arg string) {
	parts := strings.Split(arg, "|")
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(1)
	}
	st, err := images.Open(testenv.StateDir())
	if err != nil {
		fail(err)
	}
	b, err := Open(context.Background(), Config{Address: testAddress(), Namespace: parts[0], StateDir: parts[1], Images: st, Logger: zerolog.Nop()})
	if err != nil {
		fail(err)
	}
	timeout, err := time.ParseDuration(parts[3])
	if err != nil {
		fail(err)
	}
	s, err := sandbox.New(sandbox.WithArgv("sh", "-c", "sleep "+parts[2]+" & sleep "+parts[2]), sandbox.WithTimeout(timeout),
		sandbox.WithWorkspace(os.TempDir(), sandbox.CopyOnWrite), // a copy layer tmpfs to reap
		sandbox.WithLabel(sandbox.LabelAuditID, "audit-"+parts[2]), sandbox.WithLabel(sandbox.LabelTool, "run_command"))
	if err != nil {
		fail(err)
	}
	started := make(chan string, 1)
	b.afterStart = func(id string) { started <- id }
	go func() {
		if _, err := b.Run(context.Background(), s); err != nil {
			fail(err)
		}
	}()
	id := <-started
	for !hasProcess(parts[2]) {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("running", id)
	select {} // until killed
}

// startHelper runs reapHelper in a new process and returns it with the id of its container.
func startHelper(t *testing.T, ns, stateDir, marker string, timeout time.Duration) (*exec.Cmd, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+ns+"|"+stateDir+"|"+marker+"|"+timeout.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	id, ok := strings.CutPrefix(strings.TrimSpace(line), "running ")
	if err != nil || !ok {
		t.Fatalf("helper: %q %v", line, err)
	}
	return cmd, id
}

// TestReap: the leftovers of a SIGKILLed Airlock process (a running container, its task, its
// copy-layer tmpfs and run dir, its owner lock) are removed by the next one's Reap and reported
// with the call's labels, while a live process's container is never touched.
func TestReap(t *testing.T) {
	ns, stateDir := testNamespace(t), t.TempDir()
	b := openTestBackend(t, ns, stateDir, storeImages(t))

	deadMarker, liveMarker := uniqueSleep(), fmt.Sprint(800000+time.Now().UnixNano()%99999)
	dead, deadID := startHelper(t, ns, stateDir, deadMarker, time.Minute)
	live, liveID := startHelper(t, ns, stateDir, liveMarker, time.Minute)
	if err := dead.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = dead.Wait()
	// The dead process's shim keeps its container running: that is what Reap is for.
	if !hasProcess(deadMarker) {
		t.Fatal("the dead owner's container stopped by itself; nothing to reap")
	}

	reaped, err := b.Reap(context.Background())
	if err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if len(reaped) != 1 || reaped[0].ContainerID != deadID || !reaped[0].Running ||
		reaped[0].Labels[sandbox.LabelAuditID] != "audit-"+deadMarker || reaped[0].Labels[sandbox.LabelTool] != "run_command" {
		t.Fatalf("reaped %+v, want only %s, running, with its labels", reaped, deadID)
	}
	if _, ok := reaped[0].Labels[LabelStateDir]; ok {
		t.Errorf("reaped labels carry the state dir: %v", reaped[0].Labels)
	}
	if _, ok := reaped[0].Labels[LabelOwner]; ok {
		t.Errorf("reaped labels carry the owner token: %v", reaped[0].Labels)
	}
	waitGone(t, deadMarker)
	if !hasProcess(liveMarker) {
		t.Error("Reap killed the container of a live Airlock process")
	}
	if _, err := b.client.LoadContainer(context.Background(), liveID); err != nil {
		t.Errorf("live container %s: %v", liveID, err)
	}
	if _, err := os.Stat(filepath.Join(b.runsDir, deadID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead owner's run dir remains: %v", err)
	}
	tok, _ := parseID(deadID)
	if _, err := os.Stat(b.lockPath(tok)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead owner's lock file remains: %v", err)
	}
	// A cgroup runc left for a dead owner (its run was cut short mid-creation) goes too, once
	// the owner's lock here proves it dead; one of an owner unknown here (another state dir's)
	// stays.
	deadToken, otherToken := strings.Repeat("d", 12), strings.Repeat("e", 12)
	if err := os.WriteFile(b.lockPath(deadToken), nil, 0o600); err != nil { // a crashed owner's, unlocked
		t.Fatal(err)
	}
	orphanDir := filepath.Join(b.cg.memory, b.cg.path(containerID(deadToken, 1)))
	otherDir := filepath.Join(b.cg.memory, b.cg.path(containerID(otherToken, 1)))
	for _, d := range []string{orphanDir, otherDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	defer os.Remove(otherDir)
	if _, err := b.Reap(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphanDir); !errors.Is(err, os.ErrNotExist) {
		_ = os.Remove(orphanDir)
		t.Errorf("orphan cgroup %s remains: %v", orphanDir, err)
	}
	if _, err := os.Stat(otherDir); err != nil {
		t.Errorf("cgroup of an owner unknown here was removed: %v", err)
	}
	if _, err := os.Stat(b.lockPath(deadToken)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead owner's lock file remains: %v", err)
	}
	// Reaping again finds nothing.
	if again, err := b.Reap(context.Background()); err != nil || len(again) != 0 {
		t.Errorf("second Reap: %v %v", again, err)
	}

	// Once the live one dies too, its container goes.
	_ = live.Process.Signal(syscall.SIGKILL)
	_ = live.Wait()
	reaped, err = b.Reap(context.Background())
	if err != nil || len(reaped) != 1 || reaped[0].ContainerID != liveID {
		t.Errorf("Reap after the second death: %+v %v", reaped, err)
	}
	waitGone(t, liveMarker)
	assertNoLeftovers(t, b)
}

// TestTimeoutHoldsWithoutAirlock: when Airlock dies mid-call, the sandbox init still kills
// every process at the call's deadline (plus its grace), and the stopped leftover is reaped and
// reported as not running.
func TestTimeoutHoldsWithoutAirlock(t *testing.T) {
	ns, stateDir := testNamespace(t), t.TempDir()
	b := openTestBackend(t, ns, stateDir, storeImages(t))
	marker := uniqueSleep()
	helper, id := startHelper(t, ns, stateDir, marker, time.Second)
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	deadline := time.Now().Add(1*time.Second + oci.InitGrace + 5*time.Second)
	for hasProcess(marker) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if hasProcess(marker) {
		t.Fatalf("the command outlived its deadline by more than 5s without Airlock")
	}
	// The shim reports the exit a moment after the processes are gone.
	var reaped []sandbox.Reaped
	var err error
	for range 50 {
		if st, _ := b.taskStatus(id); st != client.Stopped {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		break
	}
	if reaped, err = b.Reap(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(reaped) != 1 || reaped[0].ContainerID != id || reaped[0].Running {
		t.Errorf("reaped %+v, want %s, not running", reaped, id)
	}
	assertNoLeftovers(t, b)
}

// taskStatus is the status of container id's task.
func (b *Backend) taskStatus(id string) (client.ProcessStatus, error) {
	ctx := context.Background()
	c, err := b.client.LoadContainer(ctx, id)
	if err != nil {
		return "", err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return "", err
	}
	st, err := task.Status(ctx)
	return st.Status, err
}

// TestReapIgnoresForeignContainers: a container in the namespace without Airlock's labels, with
// an owner label Airlock never writes, or of another state dir, is left alone.
func TestReapIgnoresForeignContainers(t *testing.T) {
	b := newTestBackend(t)
	ctx := context.Background()
	for id, labels := range map[string]map[string]string{
		"foreign":     {"app": "x"},
		"odd-owner":   {"airlock": "1", LabelOwner: "../../etc", LabelStateDir: b.stateDir},
		"empty-owner": {"airlock": "1", LabelStateDir: b.stateDir},
		// An Airlock with another state dir: its owners' locks are not here to ask.
		"other-state-dir": {"airlock": "1", LabelOwner: strings.Repeat("a", 12), LabelStateDir: "/elsewhere/containerd"},
	} {
		c, err := b.client.NewContainer(ctx, id, withLabelsOnly(labels))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background()) })
	}
	reaped, err := b.Reap(ctx)
	if err != nil || len(reaped) != 0 {
		t.Fatalf("Reap: %+v %v", reaped, err)
	}
	cs, _ := b.client.Containers(ctx)
	if len(cs) != 4 {
		t.Errorf("%d containers remain, want 4", len(cs))
	}
	for _, c := range cs {
		_ = c.Delete(ctx)
	}
}

func TestOpenUnavailable(t *testing.T) {
	testenv.Runc(t)
	_, err := Open(context.Background(), Config{Address: filepath.Join(t.TempDir(), "none.sock"), StateDir: t.TempDir(), Images: fixedImage{}, Logger: zerolog.Nop()})
	if !errors.Is(err, sandbox.ErrUnavailable) || !strings.Contains(err.Error(), "make containerd") {
		t.Errorf("err = %v, want ErrUnavailable saying how to start containerd", err)
	}
	if _, err := Open(context.Background(), Config{Namespace: "../x", StateDir: t.TempDir(), Images: fixedImage{}, Logger: zerolog.Nop()}); err == nil {
		t.Error("invalid namespace accepted")
	}
}

func TestInfo(t *testing.T) {
	b := newTestBackend(t)
	info, err := b.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info.DaemonVersion, "2.") || info.Namespace != b.namespace ||
		info.Runtime != DefaultRuntime || info.RuncBinary == "" || !strings.Contains(info.RuncVersion, "libseccomp") ||
		info.Snapshotter != "none" || info.CgroupMode == "" || info.ShimVersion == "" {
		t.Errorf("info %+v", info)
	}
	t.Logf("%+v", info)
}

func TestParseID(t *testing.T) {
	for id, want := range map[string]bool{
		"airlock-0123456789ab-1":   true,
		"airlock-0123456789ab-":    false,
		"airlock-0123456789AB-1":   false,
		"airlock-0123456789a-1":    false,
		"airlock-0123456789ab-1x":  false,
		"airlock-../../etc-1":      false,
		"other-0123456789ab-1":     false,
		"airlock-0123456789abc-12": false,
	} {
		if _, ok := parseID(id); ok != want {
			t.Errorf("parseID(%q) ok = %v, want %v", id, ok, want)
		}
	}
}

// withLabelsOnly makes a bare container record (never run) with labels.
func withLabelsOnly(labels map[string]string) client.NewContainerOpts {
	return func(ctx context.Context, c *client.Client, r *containers.Container) error {
		r.Labels = labels
		return client.WithNewSpec()(ctx, c, r)
	}
}

// TestReapOrphanShim: a shim left for a dead owner's container that the daemon no longer
// tracks is killed; one of a live owner is not (nor, since a shim does not say which state dir
// it belongs to, one whose owner has no lock here to prove it dead).
func TestReapOrphanShim(t *testing.T) {
	b := newTestBackend(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dead, err := owner.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	start := func(owner string) *exec.Cmd {
		cmd := &exec.Cmd{Path: exe, Args: []string{"containerd-shim-runc-v2", "-namespace", b.namespace, "-id", containerID(owner, 1), "-address", b.address}}
		cmd.Env = append(os.Environ(), fakeShimEnv+"=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	// The dead owner crashed: its lock file is here, unlocked.
	if err := os.WriteFile(b.lockPath(dead), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	orphan, live := start(dead), start(b.token)
	if _, err := b.Reap(context.Background()); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- orphan.Wait() }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Error("the orphaned shim of a dead owner was not killed")
	}
	if err := live.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the shim of a live owner was killed: %v", err)
	}
}
