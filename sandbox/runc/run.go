package runc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/cgroup"
	"github.com/airlock-mcp/airlock/sandbox/inflight"
	"github.com/airlock-mcp/airlock/sandbox/oci"
	"github.com/airlock-mcp/airlock/sandbox/rundir"
)

// Grace periods of the kill path.
const (
	// killRetry is how often `runc kill` is retried while the container is still being created.
	killRetry = 50 * time.Millisecond
	// killGrace is how long runc gets to report the killed container's exit before runc
	// itself is killed and the container force-deleted.
	killGrace = 5 * time.Second
	// cleanupTimeout bounds each runc management command run during cleanup.
	cleanupTimeout = 30 * time.Second
)

// Run executes spec in a fresh container and removes the container, its cgroup and its bundle
// before returning, on every path (deferred, so errors and panics included).
//
// A Spec.Timeout expiry is a Result with TimedOut and ExitCode 124. A cancelled ctx kills the
// container the same way and returns a Result with ExitCode 137 and the ContainerID (the
// command did start) together with an error wrapping ctx's cause.
func (b *Backend) Run(ctx context.Context, spec sandbox.Spec) (res sandbox.Result, err error) {
	started := time.Now()
	if err := b.runs.Start(ctx, spec, "runc"); err != nil {
		return res, err
	}
	defer b.runs.Done()
	if spec.Runtime != "" && spec.Runtime != "runc" {
		// The profile asked for isolation this backend cannot give (gVisor, a VM): running the
		// tool under plain runc instead would quietly weaken it.
		return res, fmt.Errorf("%w: runtime %q is for the docker and containerd backends; the runc backend runs only runc (use --backend docker or containerd, or drop runtime: from the profile)", sandbox.ErrInvalidSpec, spec.Runtime)
	}
	defer b.startPriming()() // let runc's cgroup migration find the RCU grace period passed

	p, err := b.prepare(ctx, spec, nil)
	if err != nil {
		return res, err
	}
	st := &runState{id: p.id}
	defer inflight.Cleanup(b.log, p.id, &err, func() error { return b.cleanup(st, p.bundle) })
	if err := p.write(spec); err != nil {
		return res, err
	}
	id, img := p.id, p.img

	res, err = b.execute(ctx, spec, st, p.bundle)
	res.ContainerID = id
	res.Loosened = append([]string(nil), spec.Loosened...)
	res.Duration = time.Since(started)
	b.log.Debug().Str("event", "sandbox.run").Str("container", id).Str("image", img.Name).
		Int("exit_code", res.ExitCode).Bool("timed_out", res.TimedOut).Bool("oom_killed", res.OOMKilled).
		Bool("truncated", res.Truncated()).Dur("duration", res.Duration).Err(err).Msg("container finished")
	return res, err
}

// prepared is a container's id, its bundle directory (created, empty) and its configuration.
type prepared struct {
	id, bundle string
	img        sandbox.Image
	cfg        *specs.Spec
}

// prepare is the common start of Run and Prestart: it compiles spec's seccomp profile,
// resolves its image, builds and checks its OCI configuration for a new container id
// (process, when not nil, then rewrites the process), and creates the bundle directory. The
// caller removes the bundle (cleanup) once prepare succeeded.
func (b *Backend) prepare(ctx context.Context, spec sandbox.Spec, process func(*specs.Process)) (prepared, error) {
	id := fmt.Sprintf("airlock-%s-%d", b.token, b.seq.Add(1))
	cfg, img, err := b.config(ctx, spec, id)
	if err != nil {
		return prepared{}, err
	}
	if process != nil {
		process(cfg.Process)
	}
	if err := oci.CheckWorkdir(cfg); err != nil {
		return prepared{}, fmt.Errorf("image %s: %w", img.Name, err)
	}
	p := prepared{id: id, img: img, cfg: cfg}
	p.bundle = filepath.Join(b.bundles, p.id)
	if err := os.Mkdir(p.bundle, 0o700); err != nil {
		return prepared{}, fmt.Errorf("creating bundle for %s: %w", p.id, err)
	}
	return p, nil
}

// config is the checked OCI configuration of spec as container id, and spec's image.
func (b *Backend) config(ctx context.Context, spec sandbox.Spec, id string) (*specs.Spec, sandbox.Image, error) {
	sc, img, err := oci.Inputs(ctx, spec, b.seccompFor, b.images)
	if err != nil {
		return nil, img, err
	}
	cfg, err := OCIConfig(spec, img, id, sc)
	if err != nil {
		return nil, img, err
	}
	cfg.Linux.CgroupsPath = cgroup.Path(b.cgroupParent, id)
	if err := oci.CheckMountPoints(cfg); err != nil {
		return nil, img, fmt.Errorf("image %s: %w", img.Name, err)
	}
	return cfg, img, nil
}

// write fills the bundle: the copy-on-write layers of spec's copy mounts and config.json.
func (p prepared) write(spec sandbox.Spec) error {
	if err := rundir.PrepareCopies(p.bundle, spec.Mounts, spec.Limits.MemoryBytes); err != nil {
		return err
	}
	if err := oci.WithCopyDirsUnder(p.bundle)(p.cfg); err != nil {
		return err
	}
	cfgJSON, err := json.Marshal(p.cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.bundle, "config.json"), cfgJSON, 0o600); err != nil {
		return fmt.Errorf("writing bundle for %s: %w", p.id, err)
	}
	return nil
}

// runState is what cleanup needs to know about how far a run got.
type runState struct {
	id      string
	started bool // `runc run` was started: state and cgroup may exist
	exited  bool // `runc run` exited and was waited for
	orphan  bool // runc was killed before it reported the exit: the init may still run
}

// execute runs `runc run --keep` to completion and collects the outcome. --keep leaves the
// stopped container's cgroup in place so the OOM counter can be read before cleanup removes it.
func (b *Backend) execute(ctx context.Context, spec sandbox.Spec, st *runState, bundle string) (sandbox.Result, error) {
	var res sandbox.Result
	stdout, stderr, collect := spec.Outputs()
	logFile := filepath.Join(bundle, "runc.log")
	cmd := exec.Command(b.runc, "--root", b.root, "--log", logFile, "--log-format", "json",
		"run", "--keep", "--bundle", bundle, st.id)
	cmd.Dir = bundle
	cmd.Env = runcEnv()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if spec.Streams != nil && spec.Streams.Stdout != nil {
		// A live stdout is handed to runc, and so to the command, as the pipe itself: no
		// copy by this process. A write once its reader is gone fails in the container
		// (EPIPE), not here.
		cmd.Stdout = spec.Streams.Stdout
	}
	if in := spec.Input(); in != nil {
		cmd.Stdin = in
	} // else exec.Cmd connects /dev/null
	// If Airlock dies, runc dies with it; the orphaned container is reaped at the next start.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The pid namespace dies with the init, so nothing should hold the pipes open after runc
	// exits; if something does, stop waiting for it rather than hang the call.
	cmd.WaitDelay = killGrace

	waited, err := startPinned(cmd)
	if err != nil {
		return res, fmt.Errorf("%w: starting %s: %v", sandbox.ErrUnavailable, b.runc, err)
	}
	st.started = true
	res.Ran = true // until runc says it could not build the container
	defer func() {
		if !st.exited {
			// Leaving early (a panic): runc may still be running the container. Kill it
			// and let cleanup force-delete the container rather than race a live one.
			// (The goroutine above reaps runc; waited is buffered, so it does not block.)
			st.orphan = true
			_ = cmd.Process.Kill()
		}
	}()
	if b.afterStart != nil {
		b.afterStart(st.id)
	}

	running := time.Now()
	timer := time.NewTimer(spec.Timeout)
	defer timer.Stop()
	var waitErr error
	var cancelled bool
	select {
	case waitErr = <-waited:
	case <-timer.C:
		res.TimedOut = true
	case <-ctx.Done():
		cancelled = true
	}
	if res.TimedOut || cancelled {
		b.log.Info().Str("event", "sandbox.timeout").Str("container", st.id).Bool("cancelled", cancelled).Dur("timeout", spec.Timeout).Msg("killing container")
		waitErr = b.kill(st, cmd, waited)
	}
	st.exited = true
	collect(&res)

	code := -1
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
		code = 0
	case errors.As(waitErr, &exitErr):
		ws, _ := exitErr.Sys().(syscall.WaitStatus)
		switch {
		case ws.Exited():
			code = ws.ExitStatus()
		case ws.Signaled():
			code = 128 + int(ws.Signal())
		}
	default:
		if !res.TimedOut && !cancelled {
			return res, fmt.Errorf("waiting for runc (container %s): %w", st.id, waitErr)
		}
	}

	if !res.TimedOut && !cancelled && code == sandbox.ExitTimeout && time.Since(running) >= spec.Timeout {
		// The init's own deadline (Spec.Timeout plus its grace) fired before this process's
		// timer was served (a host too loaded to run it in time): still the timeout.
		res.TimedOut = true
	}
	if n, err := b.cg.oomKills(b.memoryCgroup(st.id)); err == nil && n > 0 {
		res.OOMKilled = true
		b.log.Info().Str("event", "sandbox.oom").Str("container", st.id).Int64("oom_kills", n).Msg("memory limit hit")
	}

	res.ExitCode = sandbox.ExitCodeOf(code, res.TimedOut, cancelled, res.OOMKilled)
	if !res.TimedOut && !res.OOMKilled && !cancelled {
		if msg := runcError(logFile); msg != "" {
			// runc itself failed (a bad mount, a working directory it cannot enter...): the
			// sandbox could not be built, which is an error. A command that cannot be started
			// is not this: runc starts the sandbox init, which reports that as the command's
			// outcome, 127 or 126 like a shell, with the message runc used to log.
			res.Ran = false
			if strings.Contains(msg, `exec: "`+oci.InitPath+`"`) {
				return res, fmt.Errorf("runc could not run container %s: %s: the image has no sandbox init (the airlock-toolbox at %s); rebuild it with `airlock images build`", st.id, msg, oci.InitPath)
			}
			return res, fmt.Errorf("runc could not run container %s: %s", st.id, msg)
		}
	}
	if cancelled {
		return res, fmt.Errorf("sandbox run %s killed: %w", st.id, context.Cause(ctx))
	}
	return res, nil
}

// startPinned starts cmd, which asks for a parent-death signal, and returns the channel its
// Wait's error arrives on. The parent-death signal fires when the OS thread that forked the
// process exits, not the process; the Go runtime may end a thread under us, so the fork
// happens on a thread locked to a goroutine that lives exactly as long as the process.
func startPinned(cmd *exec.Cmd) (<-chan error, error) {
	startErr, waited := make(chan error, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			startErr <- err
			return
		}
		startErr <- nil
		waited <- cmd.Wait()
	}()
	return waited, <-startErr
}

// kill SIGKILLs the container's init; the kernel then kills every other process of its pid
// namespace, background children included. `runc kill` is retried while the container is still
// being created. If runc does not report the exit within killGrace, runc is killed too and
// the container is marked orphaned so cleanup force-deletes it.
func (b *Backend) kill(st *runState, cmd *exec.Cmd, waited <-chan error) error {
	deadline := time.NewTimer(killGrace)
	defer deadline.Stop()
	tick := time.NewTicker(killRetry)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), killGrace)
		_, _ = b.runcCmd(ctx, "kill", st.id, "KILL")
		cancel()
		select {
		case err := <-waited:
			return err
		case <-tick.C:
		case <-deadline.C:
			_ = cmd.Process.Kill()
			st.orphan = true
			return <-waited
		}
	}
}

// memoryCgroup is the container's memory cgroup directory.
func (b *Backend) memoryCgroup(id string) string {
	return filepath.Join(b.cg.memory, cgroup.Path(b.cgroupParent, id))
}

// cleanup removes the container (state and cgroups) and then the bundle. A stopped container
// is removed directly (its runc state dir and its cgroup dirs: what `runc delete` does, without
// the cost of another runc process per call); anything unusual falls back to
// `runc delete --force`, which also kills a still-running init.
func (b *Backend) cleanup(st *runState, bundle string) error {
	var errs []error
	if st.started {
		if err := b.removeContainer(st.id, st.orphan); err != nil {
			errs = append(errs, err)
		}
	}
	if err := rundir.Remove(bundle, rundir.Detach); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeContainer deletes container id. force (or any failure of the direct path) uses
// `runc delete --force`.
func (b *Backend) removeContainer(id string, force bool) error {
	if !force {
		if err := b.removeStopped(id); err == nil {
			return nil
		} else {
			b.log.Debug().Err(err).Str("container", id).Msg("direct removal failed; using runc delete --force")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	out, err := b.runcCmd(ctx, "delete", "--force", id)
	if err != nil && !strings.Contains(string(out), "does not exist") {
		return fmt.Errorf("runc delete --force %s: %v: %s", id, err, bytes.TrimSpace(out))
	}
	// Deleted, or runc never finished creating it: remove what runc had not recorded yet
	// (a runc killed mid-creation leaves a state dir without state.json and an unrecorded
	// cgroup whose processes removeCgroups kills).
	if err := b.removeCgroups(id, nil); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(b.root, id))
}

// removeStopped removes a stopped container without runc: its cgroup dirs (those runc
// recorded in its state plus the ones Airlock's layout predicts) and its state dir.
func (b *Backend) removeStopped(id string) error {
	stateDir := filepath.Join(b.root, id)
	recorded, err := recordedCgroups(stateDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := b.removeCgroups(id, recorded); err != nil {
		return err
	}
	return os.RemoveAll(stateDir)
}

func (b *Backend) removeCgroups(id string, recorded []string) error {
	var errs []error
	for _, dir := range append(recorded, b.cg.paths(cgroup.Path(b.cgroupParent, id))...) {
		if err := cgroup.Remove(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// recordedCgroups reads the cgroup dirs runc recorded in the container's state.json. Only
// paths under /sys/fs/cgroup are returned: the state dir is root-only, but the file is still
// input and must not steer an rmdir elsewhere.
func recordedCgroups(stateDir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, "state.json"))
	if err != nil {
		return nil, err
	}
	var st struct {
		CgroupPaths map[string]string `json:"cgroup_paths"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s/state.json: %w", stateDir, err)
	}
	var out []string
	for _, p := range st.CgroupPaths {
		if p = filepath.Clean(p); strings.HasPrefix(p, cgroupRoot+"/") {
			out = append(out, p)
		}
	}
	return out, nil
}

// runcError returns the first error logged by runc, or "".
func runcError(logFile string) string {
	f, err := os.Open(logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			return e.Msg
		}
	}
	return ""
}
