package docker

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/oci"
	"github.com/airlock-mcp/airlock/sandbox/owner"
	"github.com/airlock-mcp/airlock/seccomp"
)

// reapHelperEnv makes the test binary act as an Airlock process that starts a long run on the
// state dir it names and is then SIGKILLed by TestReapDeadOwner.
const reapHelperEnv = "AIRLOCK_DOCKER_REAP_HELPER_STATE"

// TestReapHelperProcess is not a test: it is the Airlock process TestReapDeadOwner kills.
func TestReapHelperProcess(t *testing.T) {
	state := os.Getenv(reapHelperEnv)
	if state == "" {
		t.Skip("helper process for TestReapDeadOwner")
	}
	store, err := images.Open(testenv.StateDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(context.Background(), Config{StateDir: state, Images: store, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ws := os.Getenv(reapHelperEnv + "_WS")
	_, _ = b.Run(context.Background(), spec(t, sandbox.WithArgv("sleep", "600"), sandbox.WithTimeout(10*time.Minute),
		sandbox.WithLabel(sandbox.LabelAuditID, "call-dead"), sandbox.WithWorkspace(ws, sandbox.CopyOnWrite)))
	t.Fatal("the helper's run ended before it was killed")
}

// TestReapDeadOwner: an Airlock process is SIGKILLed while its container runs (with a copy
// workspace, so it leaves a run directory and an overlay volume too). Another backend on the
// same state dir reaps that container, reporting it with its audit label and as running, and
// removes the run directory and the lock file; containers of a live owner and of another
// state dir are left alone.
func TestReapDeadOwner(t *testing.T) {
	b := newTestBackend(t)
	state := filepath.Dir(b.dir)

	// A live owner in this state dir (this process holds its lock) with a running container,
	// and a container of another state dir whose owner has no lock file here.
	live, err := owner.Take(b.owners)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Release()
	liveID := startRaw(t, b, map[string]string{LabelOwner: live.Token(), LabelState: b.dir})
	otherID := startRaw(t, b, map[string]string{LabelOwner: "0123456789ab", LabelState: "/elsewhere/docker"})
	defer func() {
		for _, id := range []string{liveID, otherID} {
			if err := b.removeContainer(id); err != nil {
				t.Error(err)
			}
		}
	}()

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestReapHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), reapHelperEnv+"="+state, reapHelperEnv+"_WS="+t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var deadID string
	for i := 0; i < 300 && deadID == ""; i++ {
		time.Sleep(50 * time.Millisecond)
		list, err := b.list(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			if c.Labels[sandbox.LabelAuditID] == "call-dead" && c.State == "running" {
				deadID = c.ID
			}
		}
	}
	if deadID == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("the helper's container never ran")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// While the owner lived, nothing of it may be reaped; now its lock is free.
	reaped, err := b.Reap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(reaped) != 1 || reaped[0].ContainerID != deadID || !reaped[0].Running || reaped[0].Labels[sandbox.LabelAuditID] != "call-dead" {
		t.Fatalf("reaped %+v; want only the dead owner's running container %s with its audit label", reaped, deadID)
	}
	if _, ok := reaped[0].Labels[LabelOwner]; ok {
		t.Errorf("reaped labels carry the backend's bookkeeping: %v", reaped[0].Labels)
	}
	for _, id := range []string{liveID, otherID} {
		if _, err := b.cli.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{}); err != nil {
			t.Errorf("Reap touched container %s of a live owner or another state dir: %v", id, err)
		}
	}
	locks, _ := filepath.Glob(filepath.Join(b.owners, "*"+owner.LockSuffix))
	if len(locks) != 2 { // this backend's and the live one's
		t.Errorf("lock files after reaping: %v", locks)
	}
	// Reaping again finds nothing.
	if again, err := b.Reap(context.Background()); err != nil || len(again) != 0 {
		t.Errorf("second Reap: %+v %v", again, err)
	}
}

// startRaw starts a `sleep` container with Airlock's labels plus extra, as a backend would.
func startRaw(t *testing.T, b *Backend, extra map[string]string) string {
	t.Helper()
	ctx := context.Background()
	img, err := b.images.Resolve(ctx, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := b.image(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	s := spec(t, sandbox.WithArgv("sleep", "600"), sandbox.WithTimeout(10*time.Minute))
	sc, err := seccomp.OCI(s.Seccomp, s.Network)
	if err != nil {
		t.Fatal(err)
	}
	o, err := oci.Build(s, img, sc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, hc, err := Translate(o, Target{Image: ref, Labels: extra})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.cli.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
		_ = b.removeContainer(c.ID)
		t.Fatal(err)
	}
	return c.ID
}

// TestReapOwnerless: a container of this state dir whose owner has no lock file (it
// closed, or a reaper removed its lock) is a leftover too.
func TestReapOwnerless(t *testing.T) {
	b := newTestBackend(t)
	id := startRaw(t, b, map[string]string{LabelOwner: "00000000beef", LabelState: b.dir, sandbox.LabelTool: "run_command"})
	reaped, err := b.Reap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(reaped, func(r sandbox.Reaped) bool {
		return r.ContainerID == id && r.Labels[sandbox.LabelTool] == "run_command"
	}) {
		_ = b.removeContainer(id)
		t.Fatalf("reaped %+v; want the ownerless container %s", reaped, id)
	}
}
