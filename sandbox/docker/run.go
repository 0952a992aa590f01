package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/inflight"
	"github.com/airlock-mcp/airlock/sandbox/oci"
	"github.com/airlock-mcp/airlock/sandbox/rundir"
	"github.com/airlock-mcp/airlock/seccomp"
)

// Grace periods of the kill and cleanup paths.
const (
	// killGrace is how long the daemon gets to report a killed container's exit, and the
	// attach stream to end after the exit.
	killGrace = 5 * time.Second
	// cleanupTimeout bounds the removal of a container.
	cleanupTimeout = 30 * time.Second
)

// Run executes spec in a fresh container and force-removes the container (with its anonymous
// volumes) and its run directory before returning, on every path (deferred, so errors and
// panics included).
//
// A Spec.Timeout expiry is a Result with TimedOut and ExitCode 124. A cancelled ctx kills the
// container the same way and returns a Result with ExitCode 137 and the ContainerID (the
// command did start) together with an error wrapping ctx's cause. OOM (the daemon's
// State.OOMKilled) is OOMKilled with ExitCode 137.
func (b *Backend) Run(ctx context.Context, spec sandbox.Spec) (res sandbox.Result, err error) {
	started := time.Now()
	if err := b.running.Start(ctx, spec, "docker"); err != nil {
		return res, err
	}
	defer b.running.Done()

	sc, img, err := oci.Inputs(ctx, spec, seccomp.OCI, b.images)
	if err != nil {
		return res, err
	}
	if err := b.checkLocal(spec, img); err != nil {
		return res, err
	}
	ref, err := b.image(ctx, img)
	if err != nil {
		return res, err
	}
	s, err := oci.Build(spec, img, sc)
	if err != nil {
		return res, err
	}
	// The daemon's runc creates a missing mount target or working directory, inside the
	// workspace's host directory when it is mounted rw: refuse, as every backend does. The
	// image store's copy of the root file system is what the daemon imported.
	if err := oci.CheckMountPoints(s); err != nil {
		return res, err
	}
	if err := oci.CheckWorkdir(s); err != nil {
		return res, err
	}

	name := fmt.Sprintf("airlock-%s-%d", b.lock.Token(), b.seq.Add(1))
	runDir := filepath.Join(b.runs, name)
	runtime := b.runtime
	if spec.Runtime != "" {
		runtime = spec.Runtime // the profile's runtime: (runsc, kata, airlock-runc)
	}
	cfg, hc, err := Translate(s, Target{
		Image: ref, Runtime: runtime, CopyRoot: runDir, Stdin: spec.Input() != nil, CgroupParent: b.cgroup,
		Labels: map[string]string{LabelOwner: b.lock.Token(), LabelState: b.dir},
	})
	if err != nil {
		return res, err
	}
	st := &runState{name: name, runDir: runDir}
	defer inflight.Cleanup(b.log, name, &err, func() error { return b.cleanup(st) })
	// The run directory exists only for copy layers (the daemon keeps everything else).
	if rundir.HasCopies(spec.Mounts) {
		if err := os.Mkdir(runDir, 0o700); err != nil {
			return res, fmt.Errorf("copy layers: %w", err)
		}
		if err := rundir.PrepareCopies(runDir, spec.Mounts, spec.Limits.MemoryBytes); err != nil {
			return res, err
		}
	}

	res, err = b.execute(ctx, spec, st, cfg, hc)
	if errors.Is(err, errImageGone) {
		// Someone removed the imported image (docker image prune -a): import it again
		// and retry once; nothing was created.
		b.forgetImage(img.ID)
		if cfg.Image, err = b.image(ctx, img); err == nil {
			res, err = b.execute(ctx, spec, st, cfg, hc)
		}
	}
	res.ContainerID = st.id
	res.Loosened = append([]string(nil), spec.Loosened...)
	res.Duration = time.Since(started)
	b.log.Debug().Str("event", "sandbox.run").Str("container", name).Str("image", img.Name).
		Int("exit_code", res.ExitCode).Bool("timed_out", res.TimedOut).Bool("oom_killed", res.OOMKilled).
		Bool("truncated", res.Truncated()).Dur("duration", res.Duration).Err(err).Msg("container finished")
	return res, err
}

// checkLocal refuses host binds (the host image's, the workspace, copy mounts) on a daemon that
// is not on this machine: it would mount ITS directories of the same names, not the ones the
// policy was evaluated against.
func (b *Backend) checkLocal(spec sandbox.Spec, img sandbox.Image) error {
	if b.local || (len(img.Binds) == 0 && len(spec.Mounts) == 0 && spec.Egress == nil) {
		return nil
	}
	what := "mounts of host directories (the workspace)"
	if spec.Egress != nil {
		what = "the egress proxy's socket (network proxy)"
	}
	if len(img.Binds) > 0 {
		what = fmt.Sprintf("image %q, which binds host directories,", img.Name)
	}
	return fmt.Errorf("%w: %s can only run on a local docker daemon (a unix socket); the daemon at %s may be on another machine, where the same paths hold other files: use a local daemon, the busybox image without a workspace, or the runc backend",
		sandbox.ErrUnavailable, what, b.host)
}

// runState is what cleanup needs to know about how far a run got.
type runState struct {
	name   string
	id     string // set once the container exists
	runDir string
}

// execute creates, attaches, starts and waits for the container and collects the outcome.
func (b *Backend) execute(ctx context.Context, spec sandbox.Spec, st *runState, cfg *container.Config, hc *container.HostConfig) (sandbox.Result, error) {
	var res sandbox.Result
	created, err := b.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: st.name, Config: cfg, HostConfig: hc})
	if err != nil {
		if ctx.Err() != nil {
			// The daemon may have created it before the request was abandoned.
			st.id = st.name
		}
		return res, b.createError(err)
	}
	st.id = created.ID
	for _, w := range created.Warnings {
		b.log.Warn().Str("event", "sandbox.docker_warning").Str("container", st.name).Msg(w)
	}

	// Attach before start, so no output is lost; stdout and stderr arrive multiplexed
	// (no terminal) and are split into the capped buffers (or the live streams).
	in := spec.Input()
	att, err := b.cli.ContainerAttach(ctx, st.id, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true, Stdin: in != nil})
	if err != nil {
		return res, fmt.Errorf("docker: attaching to container %s: %w", st.name, err)
	}
	defer att.Close()
	stdout, stderr, collect := spec.Outputs()
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(stdout, stderr, att.Reader)
		copied <- err
	}()
	if in != nil {
		// The container's stdin is closed once this writer closes its side (StdinOnce). A
		// command that never reads leaves the write blocked until the connection closes.
		go func() {
			_, _ = io.Copy(att.Conn, in)
			_ = att.CloseWrite()
		}()
	}

	// The wait is registered before the start (next-exit), so a command that exits at once
	// is not missed; it has its own context so a cancelled ctx still gets the exit reported.
	waitCtx, stopWait := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWait()
	wait := b.cli.ContainerWait(waitCtx, st.id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	waited := false // one of wait's channels was read
	defer func() {
		if !waited {
			// The client's wait goroutine sends its one outcome on an unbuffered channel;
			// take it so the goroutine ends (stopWait makes that prompt).
			go func() {
				select {
				case <-wait.Result:
				case <-wait.Error:
				}
			}()
		}
	}()

	res.Ran = true // until the daemon says it could not start the container
	if _, err := b.cli.ContainerStart(ctx, st.id, client.ContainerStartOptions{}); err != nil {
		res.Ran = b.mayHaveStarted(st.id)
		if !res.Ran {
			if strings.Contains(err.Error(), oci.InitPath) {
				return res, fmt.Errorf("docker could not start container %s: %v: the image has no sandbox init (the airlock-toolbox at %s); rebuild it with `airlock images build`", st.name, err, oci.InitPath)
			}
			return res, fmt.Errorf("docker could not start container %s: %w", st.name, err)
		}
		if ctx.Err() == nil {
			return res, fmt.Errorf("docker: starting container %s: %w", st.name, err)
		}
		// Cancelled mid-start: kill it below like any cancelled run.
	}
	running := time.Now()

	timer := time.NewTimer(spec.Timeout)
	defer timer.Stop()
	var cancelled bool
	var code int64 = -1
	var waitErr error
	select {
	case r := <-wait.Result:
		waited = true
		code = r.StatusCode
		if r.Error != nil && r.Error.Message != "" {
			waitErr = errors.New(r.Error.Message)
		}
	case err := <-wait.Error:
		waited = true
		waitErr = err
	case <-timer.C:
		res.TimedOut = true
	case <-ctx.Done():
		cancelled = true
	}
	if res.TimedOut || cancelled {
		b.log.Info().Str("event", "sandbox.timeout").Str("container", st.name).Bool("cancelled", cancelled).Dur("timeout", spec.Timeout).Msg("killing container")
		code, waited, waitErr = b.kill(st, wait)
	}
	// The streams end when the container's last writer is gone; with the pid namespace gone
	// that is at once, but never wait on them unbounded.
	select {
	case <-copied:
	case <-time.After(killGrace):
		att.Close()
		<-copied
	}
	collect(&res)
	if waitErr != nil && !res.TimedOut && !cancelled {
		return res, fmt.Errorf("docker: waiting for container %s: %w", st.name, waitErr)
	}

	if !res.TimedOut && !cancelled && code == sandbox.ExitTimeout && time.Since(running) >= spec.Timeout {
		// The init's own deadline (Spec.Timeout plus its grace) fired before this process's
		// timer was served (a host too loaded to run it in time): still the timeout.
		res.TimedOut = true
	}
	if b.oomKilled(ctx, st.id, !res.TimedOut && !cancelled && code == sandbox.ExitKilled) {
		res.OOMKilled = true
		b.log.Info().Str("event", "sandbox.oom").Str("container", st.name).Msg("memory limit hit")
	}

	res.ExitCode = sandbox.ExitCodeOf(int(code), res.TimedOut, cancelled, res.OOMKilled)
	if cancelled {
		return res, fmt.Errorf("sandbox run %s killed: %w", st.name, context.Cause(ctx))
	}
	return res, nil
}

// errImageGone: the daemon no longer has the image the container was to run.
var errImageGone = errors.New("the imported image is gone from the docker daemon")

// createError says what a failed create means for the operator.
func (b *Backend) createError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unknown or invalid runtime"):
		return fmt.Errorf("%w: docker: %v; register the runtime with the daemon or leave it empty", sandbox.ErrUnavailable, err)
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("docker: creating the container: %w: %w", errImageGone, err)
	}
	return fmt.Errorf("docker: creating the container: %w", err)
}

// mayHaveStarted asks the daemon whether container id ever ran after a failed start: a start
// the daemon refused (the runtime could not set the container up, the init is missing)
// never ran the command. If the daemon cannot say, the command may have run.
func (b *Backend) mayHaveStarted(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	ins, err := b.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil || ins.Container.State == nil {
		return true
	}
	s := ins.Container.State
	return s.Running || s.Pid != 0 || (s.StartedAt != "" && !strings.HasPrefix(s.StartedAt, "0001-01-01"))
}

// kill SIGKILLs the container's init; the kernel then kills every other process of its pid
// namespace, background children included. It returns the exit the daemon reports (waited:
// it was read from wait), or an error when it does not report one within killGrace (cleanup
// then force-removes the container, which kills again).
func (b *Backend) kill(st *runState, wait client.ContainerWaitResult) (code int64, waited bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), killGrace)
	defer cancel()
	if _, err := b.cli.ContainerKill(ctx, st.id, client.ContainerKillOptions{Signal: "KILL"}); err != nil && !cerrdefs.IsConflict(err) && !cerrdefs.IsNotFound(err) {
		b.log.Warn().Err(err).Str("container", st.name).Msg("kill failed; the container is force-removed")
	}
	select {
	case r := <-wait.Result:
		return r.StatusCode, true, nil
	case err := <-wait.Error:
		return -1, true, err
	case <-ctx.Done():
		return -1, false, fmt.Errorf("docker did not report the exit of killed container %s within %s", st.name, killGrace)
	}
}

// cleanup force-removes the container with its anonymous volumes (the copy overlays, which
// the daemon unmounts first), then the run directory and its tmpfs.
func (b *Backend) cleanup(st *runState) error {
	var errs []error
	if st.id != "" {
		if err := b.removeContainer(st.id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := rundir.Remove(st.runDir, rundir.DetachIfBusy); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeContainer force-removes container id (killing it if it still runs) and its anonymous
// volumes; a container that is already gone is not an error.
func (b *Backend) removeContainer(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_, err := b.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: removing container %s: %w", id, err)
	}
	return nil
}

// oomKilled asks the daemon whether the kernel's OOM killer ended container id. The daemon
// learns of an OOM kill from an event that can arrive after the exit it reported (seen on
// cgroup v1 under load: exit 137, OOMKilled false), so when the command died of SIGKILL that
// nobody here sent (maybeOOM) it asks again for a little while before saying no.
func (b *Backend) oomKilled(ctx context.Context, id string, maybeOOM bool) bool {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		ins, err := b.cli.ContainerInspect(ictx, id, client.ContainerInspectOptions{})
		if err == nil && ins.Container.State != nil && ins.Container.State.OOMKilled {
			return true
		}
		// Up to 10 s: under load (a CI host running three backends' suites at once) the event
		// took longer than half a second, once longer than 2 s and once longer than 5 s, to
		// reach the daemon. Only a command SIGKILLed outside a timeout or a cancellation waits
		// this long.
		if !maybeOOM || attempt == 200 || ictx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
