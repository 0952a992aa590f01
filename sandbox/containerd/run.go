package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/inflight"
	"github.com/airlock-mcp/airlock/sandbox/oci"
	"github.com/airlock-mcp/airlock/sandbox/rundir"
)

// Each run has a private directory StateDir/containerd/runs/<id> (0700) holding its FIFOs and,
// for copy mounts, the overlay layers (package rundir). It is removed before Run returns; Reap
// removes those of dead owners.

// fifoDir is the run-dir directory holding the stdio FIFOs.
const fifoDir = "fifo"

// Grace periods of the kill and cleanup paths.
const (
	// killRetry is how often the task is SIGKILLed again while it has not reported its exit.
	killRetry = 100 * time.Millisecond
	// killGrace is how long a killed task gets to report its exit, and its output streams to
	// reach end-of-file, before cleanup force-deletes it.
	killGrace = 5 * time.Second
	// createTimeout bounds the creation and start of the container and its task.
	createTimeout = time.Minute
	// cleanupTimeout bounds the deletion of the task and the container.
	cleanupTimeout = 30 * time.Second
)

// Run executes spec in a fresh container and deletes the task, the container and the run's
// private dir before returning, on every path (deferred, so errors and panics included).
//
// A Spec.Timeout expiry is a Result with TimedOut and ExitCode 124. A cancelled ctx kills the
// container the same way and returns a Result with ExitCode 137 and the ContainerID (the
// command did start) together with an error wrapping ctx's cause.
func (b *Backend) Run(ctx context.Context, spec sandbox.Spec) (res sandbox.Result, err error) {
	started := time.Now()
	if err := b.runs.Start(ctx, spec, "containerd"); err != nil {
		return res, err
	}
	defer b.runs.Done()

	sc, img, err := oci.Inputs(ctx, spec, b.seccompFor, b.images)
	if err != nil {
		return res, err
	}
	id := containerID(b.token, b.seq.Add(1))
	runDir := filepath.Join(b.runsDir, id)
	ociSpec, err := OCISpec(spec, img, b.cg.path(id), b.token, runDir, sc)
	if err != nil {
		return res, err
	}
	// runc creates missing mount points and working directories inside the root it is given,
	// which here is the image store's shared directory: refuse rather than change the image.
	if err := oci.CheckMountPoints(ociSpec); err != nil {
		return res, fmt.Errorf("image %s: %w", img.Name, err)
	}
	if err := oci.CheckWorkdir(ociSpec); err != nil {
		return res, fmt.Errorf("image %s: %w", img.Name, err)
	}

	if err := os.Mkdir(runDir, 0o700); err != nil {
		return res, fmt.Errorf("creating run dir for %s: %w", id, err)
	}
	st := &runState{id: id}
	defer inflight.Cleanup(b.log, id, &err, func() error { return b.cleanup(st, runDir) })
	if err := rundir.PrepareCopies(runDir, spec.Mounts, spec.Limits.MemoryBytes); err != nil {
		return res, err
	}

	res, err = b.execute(ctx, spec, st, ociSpec, runDir)
	res.ContainerID = id
	res.Loosened = append([]string(nil), spec.Loosened...)
	res.Duration = time.Since(started)
	b.log.Debug().Str("event", "sandbox.run").Str("container", id).Str("image", img.Name).
		Int("exit_code", res.ExitCode).Bool("timed_out", res.TimedOut).Bool("oom_killed", res.OOMKilled).
		Bool("truncated", res.Truncated()).Dur("duration", res.Duration).Err(err).Msg("container finished")
	return res, err
}

// runState is what cleanup needs to know about how far a run got.
type runState struct {
	id        string
	creating  bool             // the container was asked for: it may exist even if the call failed
	container client.Container // created in containerd
	task      client.Task      // created: the shim and runc's container exist
	io        *runIO
	exited    bool // the task reported its exit
}

// execute creates the container and its task, starts it, waits for its exit, the timeout or
// ctx, and collects the outcome. cleanup (deferred by Run) deletes whatever was created.
func (b *Backend) execute(ctx context.Context, spec sandbox.Spec, st *runState, ociSpec *specs.Spec, runDir string) (sandbox.Result, error) {
	var res sandbox.Result
	// Creation and start are not interrupted by ctx: a call cancelled in flight would leave
	// the daemon, the shim or runc half way (a temporary lease, a runc container without its
	// cgroups recorded). They take a few hundred milliseconds at most; ctx is checked after
	// each, and the deferred cleanup removes whatever was made.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	notStarted := func() (sandbox.Result, error) {
		return res, fmt.Errorf("sandbox run %s not started: %w", st.id, context.Cause(ctx))
	}
	runtime, runtimeOpts, err := b.runtimeFor(spec.Runtime)
	if err != nil {
		return res, err
	}
	st.creating = true
	container, err := b.client.NewContainer(cctx, st.id,
		client.WithSpec(ociSpec),
		client.WithRuntime(runtime, runtimeOpts),
		client.WithContainerLabels(containerLabels(spec, b.token, b.stateDir)),
	)
	if err != nil {
		return res, b.rpcError("creating container "+st.id, err)
	}
	st.container = container
	if ctx.Err() != nil {
		return notStarted()
	}

	stdout, stderr, collect := spec.Outputs()
	var stdin io.Reader // nil: the shim gives the container /dev/null
	var stdinEOF chan struct{}
	if in := spec.Input(); in != nil {
		stdinEOF = make(chan struct{})
		stdin = &eofReader{r: in, eof: stdinEOF}
	}
	creator := cio.NewCreator(cio.WithStreams(stdin, stdout, stderr), cio.WithFIFODir(filepath.Join(runDir, fifoDir)))
	task, err := container.NewTask(cctx, func(id string) (cio.IO, error) {
		inner, err := creator(id)
		if err != nil {
			return nil, err
		}
		st.io = &runIO{inner: inner}
		return st.io, nil
	})
	if err != nil {
		// runc create failed (a bad mount, a limit the kernel refuses, no sandbox init...):
		// the sandbox could not be built and the command never started.
		return res, b.startError("creating task", st.id, err)
	}
	st.task = task
	if ctx.Err() != nil {
		return notStarted()
	}
	if stdinEOF != nil {
		// The shim holds a write end of the stdin FIFO of its own (so that a client could
		// reattach); the command sees end-of-file only once the shim is told to close it,
		// after everything was written.
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-stdinEOF:
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killGrace)
				defer cancel()
				if err := task.CloseIO(cctx, client.WithStdinCloser); err != nil && !errdefs.IsNotFound(err) {
					b.log.Debug().Err(err).Str("container", st.id).Msg("closing stdin")
				}
			case <-done:
			}
		}()
	}

	// Wait before Start, so the exit cannot be missed. The wait outlives ctx: a cancelled
	// call still waits for the killed task's exit.
	waitCtx, stopWait := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWait()
	exitCh, err := task.Wait(waitCtx)
	if err != nil {
		return res, b.rpcError("waiting for task "+st.id, err)
	}
	if err := task.Start(cctx); err != nil {
		// The command may have started if the call itself broke (the daemon went away, the
		// call timed out); a refusal by runc means it did not.
		res.Ran = errdefs.IsUnavailable(err) || errdefs.IsCanceled(err) || errdefs.IsDeadlineExceeded(err)
		return res, b.startError("starting task", st.id, err)
	}
	res.Ran = true
	if b.afterStart != nil {
		b.afterStart(st.id)
	}

	running := time.Now()
	timer := time.NewTimer(spec.Timeout)
	defer timer.Stop()
	var status client.ExitStatus
	var waitErr error // the wait itself failed (the daemon went away): the outcome is unknown
	var cancelled bool
	select {
	case status = <-exitCh:
		waitErr = status.Error()
		st.exited = waitErr == nil
	case <-timer.C:
		res.TimedOut = true
	case <-ctx.Done():
		cancelled = true
	}
	if res.TimedOut || cancelled {
		b.log.Info().Str("event", "sandbox.timeout").Str("container", st.id).Bool("cancelled", cancelled).Dur("timeout", spec.Timeout).Msg("killing container")
		status, st.exited = b.kill(task, exitCh)
	}
	// Output: the shim closes the FIFOs once every process holding the container's stdout
	// and stderr is gone, which the pid namespace guarantees once the init exited.
	if st.exited {
		st.io.drain(killGrace)
	}
	collect(&res)

	if waitErr != nil {
		// cleanup kills the task, which may still be running.
		return res, b.rpcError("waiting for task "+st.id, waitErr)
	}
	code := -1
	if st.exited {
		if status.ExitCode() != client.UnknownExitStatus {
			code = int(status.ExitCode())
		}
	}
	if !res.TimedOut && !cancelled && code == sandbox.ExitTimeout && time.Since(running) >= spec.Timeout {
		// The init's own deadline (Spec.Timeout plus its grace) fired before this process's
		// timer was served (a host too loaded to run it in time): still the timeout.
		res.TimedOut = true
	}
	// The cgroup lives until the task is deleted, so the counter is still there.
	if n, err := b.cg.oomKills(st.id); err == nil && n > 0 {
		res.OOMKilled = true
		b.log.Info().Str("event", "sandbox.oom").Str("container", st.id).Int64("oom_kills", n).Msg("memory limit hit")
	}

	res.ExitCode = sandbox.ExitCodeOf(code, res.TimedOut, cancelled, res.OOMKilled)
	if cancelled {
		return res, fmt.Errorf("sandbox run %s killed: %w", st.id, context.Cause(ctx))
	}
	return res, nil
}

// kill SIGKILLs every process of the task (the init first; the kernel then kills the rest of
// its pid namespace, background children included), retrying until the exit is reported or
// killGrace passes. It returns the exit status and whether the exit was seen; if it was not,
// cleanup force-deletes the task.
func (b *Backend) kill(task client.Task, exitCh <-chan client.ExitStatus) (client.ExitStatus, bool) {
	deadline := time.NewTimer(killGrace)
	defer deadline.Stop()
	tick := time.NewTicker(killRetry)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), killGrace)
		if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
			b.log.Debug().Err(err).Str("container", task.ID()).Msg("kill")
		}
		cancel()
		select {
		case s := <-exitCh:
			// A failed wait (the daemon went away) is not an exit: cleanup kills again.
			return s, s.Error() == nil
		case <-tick.C:
		case <-deadline.C:
			return client.ExitStatus{}, false
		}
	}
}

// cleanup deletes the task (killing it first if its exit was never seen), the container, the
// FIFOs and the run dir, with a context of its own: a cancelled call still cleans up.
func (b *Backend) cleanup(st *runState, runDir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	if st.container == nil && st.creating {
		// The create call failed, but the daemon may have made the container anyway (the
		// call was cancelled in flight, say).
		if c, err := b.client.LoadContainer(ctx, st.id); err == nil {
			st.container = c
		}
	}
	if st.task == nil && st.container != nil {
		// Likewise a task whose create call failed may exist: load it to delete it.
		if t, err := st.container.Task(ctx, nil); err == nil {
			st.task = t
		}
	}
	if st.task != nil {
		var opts []client.ProcessDeleteOpts
		if !st.exited {
			opts = append(opts, client.WithProcessKill)
		}
		if _, err := st.task.Delete(ctx, opts...); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting task %s: %w", st.id, err))
		}
	}
	if st.io != nil {
		st.io.release()
	}
	if st.task != nil && len(errs) == 0 {
		if err := b.cg.removeCgroups(st.id); err != nil {
			errs = append(errs, err)
		}
	}
	if st.container != nil && len(errs) == 0 {
		if err := st.container.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting container %s: %w", st.id, err))
		}
	}
	if len(errs) == 0 {
		if err := rundir.Remove(runDir, rundir.Detach); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// startError wraps an error creating or starting the task, naming the usual cause when the
// image has no sandbox init.
func (b *Backend) startError(what, id string, err error) error {
	if strings.Contains(err.Error(), oci.InitPath) {
		return fmt.Errorf("containerd could not run container %s: %v: the image has no sandbox init (the airlock-toolbox at %s); rebuild it with `airlock images build`", id, err, oci.InitPath)
	}
	return b.rpcError(what+" "+id, err)
}

// rpcError wraps an error of the daemon: one that says the daemon is gone is ErrUnavailable.
func (b *Backend) rpcError(what string, err error) error {
	err = errgrpc.ToNative(err) // a wait's error arrives as a gRPC status
	if errdefs.IsUnavailable(err) {
		return fmt.Errorf("%w: %s: containerd at %s: %v", sandbox.ErrUnavailable, what, b.address, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// runIO wraps the FIFO copier cio.NewCreator makes, so that the run, not task.Delete, decides
// when output is complete. task.Delete cancels the copier, which closes the FIFOs' read ends:
// output the shim had not yet copied when the exit was reported would be lost. Instead Run
// waits (bounded) for both streams to reach end-of-file, and only then lets Delete and Close
// through.
type runIO struct {
	inner    cio.IO
	released bool
}

func (r *runIO) Config() cio.Config { return r.inner.Config() }

// Cancel, Wait and Close are no-ops until release: task.Delete calls them.
func (r *runIO) Cancel() {
	if r.released {
		r.inner.Cancel()
	}
}

func (r *runIO) Wait() {
	if r.released {
		r.inner.Wait()
	}
}

func (r *runIO) Close() error {
	if r.released {
		return r.inner.Close()
	}
	return nil
}

// drain waits up to grace for stdout and stderr to reach end-of-file.
func (r *runIO) drain(grace time.Duration) {
	done := make(chan struct{})
	go func() {
		r.inner.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		// Something still holds the streams open: stop copying rather than hang the call.
		r.inner.Cancel()
		<-done
	}
}

// release stops the copier and removes the FIFOs.
func (r *runIO) release() {
	r.released = true
	r.inner.Cancel()
	r.inner.Wait()
	_ = r.inner.Close()
}

// eofReader closes eof when r reaches end-of-file.
type eofReader struct {
	r    io.Reader
	eof  chan struct{}
	once sync.Once
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.once.Do(func() { close(e.eof) })
	}
	return n, err
}
