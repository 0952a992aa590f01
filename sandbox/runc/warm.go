package runc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/inflight"
	"github.com/airlock-mcp/airlock/sandbox/oci"
	"github.com/airlock-mcp/airlock/sandbox/rundir"
	"github.com/airlock-mcp/airlock/sandbox/warmproto"
)

// Warm sandboxes (sandbox.Prestarter). Prestart builds the container a Run of the same shape
// would, with one difference in its process: the sandbox init runs in warm mode
// (`airlock-toolbox init --warm`, see package warmproto), with no command, no environment and
// / as its directory, and one end of a socket pair as its descriptor 3. `runc run --detach`
// creates and starts it, so the expensive part of a run, runc itself, is over before any call
// comes. Its stdin, stdout and stderr are pipes whose other ends the warm sandbox keeps.
//
// A claim (warmRun.Run) sends the command over the socket, copies the pipes into the Result's
// capped buffers, waits for the init's reply under the same host timer as Run and for the init
// to be gone (and with it every process of the sandbox), then returns; the container's records
// (its cgroup directories and runc state, removed without runc as Run removes a stopped one,
// and the bundle) go in the background, and Close waits for them. The
// container's configuration is the cold one but for the process's argv, environment and
// directory, which TestWarmConfigIsColdConfig pins; the shapes are compared on every claim.

// WarmIdleLimit is how long a warm sandbox's init waits for its command before it exits on its
// own; a pool replaces its sandboxes well before (pool.DefaultMaxAge). It bounds what a stuck
// or leaking Airlock leaves running; a dead one closes the socket and the init exits at once.
const WarmIdleLimit = 20 * time.Minute

// shapePlaceholderID is the container id the configuration a shape key hashes is built for.
const shapePlaceholderID = "airlock-0-0"

var _ sandbox.Prestarter = (*Backend)(nil)

// WarmKey is the hash of spec's OCI configuration without the process's argv, environment and
// directory, the annotations and the cgroup path: everything that makes the container what it
// is, and nothing that a warm sandbox takes with its command or that names one container.
func (b *Backend) WarmKey(ctx context.Context, spec sandbox.Spec) (string, bool, error) {
	if !warmable(spec) {
		return "", false, nil
	}
	if err := spec.Validate(); err != nil {
		return "", false, err
	}
	cfg, _, err := b.config(ctx, spec, shapePlaceholderID)
	if err != nil {
		return "", false, err
	}
	key, err := shapeKey(cfg)
	return key, err == nil, err
}

// warmable: a live stream needs the runtime's own stdio handling, an egress proxy lives for one
// call and its socket is part of the configuration, copy-on-write layers would be made before
// the workspace they copy is final, and another runtime is refused by Run.
func warmable(spec sandbox.Spec) bool {
	return spec.Streams == nil && spec.Network == sandbox.NetworkNone && spec.Egress == nil &&
		(spec.Runtime == "" || spec.Runtime == "runc") && !rundir.HasCopies(spec.Mounts)
}

// shapeKey hashes cfg without what differs between containers of one shape.
func shapeKey(cfg *specs.Spec) (string, error) {
	c := *cfg
	proc := *cfg.Process
	proc.Args, proc.Env, proc.Cwd = nil, nil, ""
	c.Process = &proc
	c.Annotations = nil
	if cfg.Linux != nil {
		lin := *cfg.Linux
		lin.CgroupsPath = ""
		c.Linux = &lin
	}
	raw, err := json.Marshal(&c)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:16]), nil
}

// warmProcess turns a run's process into the warm init's.
func warmProcess(p *specs.Process) {
	p.Args = []string{oci.InitPath, "init", "--warm", "--idle", WarmIdleLimit.String()}
	p.Env = []string{}
	p.Cwd = "/"
}

// Prestart creates and starts a container of spec's shape whose init waits for one command.
// spec's labels are not the container's: they belong to a call, and the call that claims the
// sandbox records its own.
func (b *Backend) Prestart(ctx context.Context, spec sandbox.Spec) (w sandbox.Warm, err error) {
	if !warmable(spec) {
		return nil, fmt.Errorf("%w: this spec cannot run in a prestarted sandbox (a live stream, an egress proxy, copy mounts or another runtime)", sandbox.ErrInvalidSpec)
	}
	if err := b.runs.Start(ctx, spec, "runc"); err != nil {
		return nil, err
	}
	// The warm sandbox is a run under way until it is removed: Close waits for it.
	registered := true
	defer func() {
		if registered {
			b.runs.Done()
		}
	}()
	defer b.startPriming()()
	spec.Labels = nil
	p, err := b.prepare(ctx, spec, warmProcess)
	if err != nil {
		return nil, err
	}
	st := &runState{id: p.id}
	cleanup := func() error { return b.cleanup(st, p.bundle) }
	defer func() {
		if err != nil {
			inflight.Cleanup(b.log, p.id, &err, cleanup)
		}
	}()
	// The shape leaves out the process warmProcess rewrote: this is spec's WarmKey.
	key, err := shapeKey(p.cfg)
	if err != nil {
		return nil, err
	}
	if err := p.write(spec); err != nil {
		return nil, err
	}
	sources, err := identify(spec.Mounts)
	if err != nil {
		return nil, err
	}
	wr := &warmRun{b: b, key: key, id: p.id, bundle: p.bundle, st: st, pidfd: -1, sources: sources}
	if err := wr.start(ctx); err != nil {
		wr.closeFiles()
		return nil, err
	}
	registered = false
	return wr, nil
}

// warmRun is a started warm container.
type warmRun struct {
	b          *Backend
	key        string
	id, bundle string
	st         *runState

	sources               []fileID // the identity of each mount source when it was mounted
	ctrl                  *os.File // Airlock's end of the socket pair
	stdin, stdout, stderr *os.File // the pipes' ends Airlock keeps
	pidfd                 int      // the container init's
	used                  atomic.Bool
	removeOnce            sync.Once
	removeErr             error
}

// start runs `runc run --detach` for the bundle with the pipes and the socket as the init's
// descriptors, and opens a pidfd of the init it started.
func (w *warmRun) start(ctx context.Context) error {
	b := w.b
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("warm sandbox %s: socket pair: %w", w.id, err)
	}
	// Airlock's end non-blocking, so reads can have deadlines; the init's stays blocking.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return fmt.Errorf("warm sandbox %s: socket pair: %w", w.id, err)
	}
	w.ctrl = os.NewFile(uintptr(fds[0]), "warm-control")
	child := os.NewFile(uintptr(fds[1]), "warm-control-init")
	var ends [3]*os.File // the init's: stdin's read end, stdout's and stderr's write ends
	// Once runc is done, the init holds the only copies: its exit is then the end of
	// every stream.
	closeEnds := func() {
		for _, f := range append(ends[:], child) {
			if f != nil {
				f.Close()
			}
		}
	}
	defer closeEnds()
	if ends[0], w.stdin, err = os.Pipe(); err != nil {
		return err
	}
	if w.stdout, ends[1], err = os.Pipe(); err != nil {
		return err
	}
	if w.stderr, ends[2], err = os.Pipe(); err != nil {
		return err
	}
	logFile := filepath.Join(w.bundle, "runc.log")
	pidFile := filepath.Join(w.bundle, "init.pid")
	cmd := exec.Command(b.runc, "--root", b.root, "--log", logFile, "--log-format", "json",
		"run", "--detach", "--preserve-fds", "1", "--pid-file", pidFile, "--bundle", w.bundle, w.id)
	cmd.Dir = w.bundle
	cmd.Env = runcEnv()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = ends[0], ends[1], ends[2]
	cmd.ExtraFiles = []*os.File{child} // the init's descriptor 3 (warmproto.ControlFD)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	waited, err := startPinned(cmd)
	if err != nil {
		return fmt.Errorf("%w: starting %s: %v", sandbox.ErrUnavailable, b.runc, err)
	}
	w.st.started = true
	timer := time.NewTimer(cleanupTimeout)
	defer timer.Stop()
	select {
	case err = <-waited:
	case <-timer.C:
		_ = cmd.Process.Kill()
		err = fmt.Errorf("runc did not start container %s within %s", w.id, cleanupTimeout)
		<-waited
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-waited
		err = fmt.Errorf("warm sandbox %s not started: %w", w.id, context.Cause(ctx))
	}
	closeEnds()
	if err != nil {
		w.st.orphan = true
		if msg := runcError(logFile); msg != "" {
			return fmt.Errorf("runc could not start warm container %s: %s", w.id, msg)
		}
		return fmt.Errorf("runc could not start warm container %s: %v", w.id, err)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		w.st.orphan = true
		return fmt.Errorf("warm container %s: %w", w.id, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		w.st.orphan = true
		return fmt.Errorf("warm container %s: bad pid file %q", w.id, raw)
	}
	// The init says it waits. An image built before warm sandboxes existed has an init
	// that refuses --warm and exits; it must not be filed as ready.
	if err := w.awaitReady(); err != nil {
		w.st.orphan = true
		return err
	}
	// Opened while the init is known to wait, so the pid is still its own.
	if w.pidfd, err = unix.PidfdOpen(pid, 0); err != nil {
		w.st.orphan = true
		return fmt.Errorf("warm container %s: pidfd of its init: %w", w.id, err)
	}
	return nil
}

// readyTimeout bounds the wait for a started init's Ready byte.
const readyTimeout = 10 * time.Second

// awaitReady reads the init's Ready byte.
func (w *warmRun) awaitReady() error {
	_ = w.ctrl.SetReadDeadline(time.Now().Add(readyTimeout))
	defer w.ctrl.SetReadDeadline(time.Time{})
	var b [1]byte
	if _, err := io.ReadFull(w.ctrl, b[:]); err != nil || b[0] != warmproto.Ready {
		return fmt.Errorf("warm container %s: its sandbox init did not report ready (%v): an image built before prestarted sandboxes has an init without them; rebuild it with `airlock images build`", w.id, err)
	}
	return nil
}

// Key is the shape the sandbox was started for.
func (w *warmRun) Key() string { return w.key }

// Run sends spec's command to the waiting init and reports its outcome as Backend.Run does.
func (w *warmRun) Run(ctx context.Context, spec sandbox.Spec) (res sandbox.Result, err error) {
	started := time.Now()
	if !w.used.CompareAndSwap(false, true) {
		return res, fmt.Errorf("%w: warm sandbox %s was used already; a sandbox runs one command", sandbox.ErrInvalidSpec, w.id)
	}
	finished := false // the command ran and every process of the sandbox is gone
	defer func() {
		if finished {
			// The call is over: a reaper finding what is left must not record it as
			// interrupted.
			_ = os.Remove(filepath.Join(w.bundle, claimLabels))
			// What is left is records (cgroup directories, runc's state, the bundle), not
			// processes: they go off the call's path, before the backend closes.
			w.b.removals.Add(1)
			go func() {
				defer w.b.removals.Done()
				var rerr error
				inflight.Cleanup(w.b.log, w.id, &rerr, w.remove)
			}()
			return
		}
		inflight.Cleanup(w.b.log, w.id, &err, w.remove)
	}()
	res.ContainerID = w.id
	res.Warm = true
	res.Loosened = append([]string(nil), spec.Loosened...)
	if err := spec.Validate(); err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("sandbox run not started: %w", context.Cause(ctx))
	}
	// The call's own configuration, checked as a cold run's is (its working directory
	// must exist in the image or a mount), and then compared with the sandbox's shape.
	cfg, _, err := w.b.config(ctx, spec, w.id)
	if err == nil {
		err = oci.CheckWorkdir(cfg)
	}
	if err != nil {
		return res, err
	}
	key, err := shapeKey(cfg)
	switch {
	case err != nil:
		return res, err
	case !warmable(spec) || key != w.key:
		// Never run a call in a sandbox built for another shape: its limits, mounts or
		// filter would not be the ones its profile asked for.
		return res, fmt.Errorf("%w: warm sandbox %s has another shape than this spec", sandbox.ErrInvalidSpec, w.id)
	}
	if err := w.sameSources(spec.Mounts); err != nil {
		return res, err
	}
	// Before the command: should this process die during the call, the reaper ties the
	// container to its call by these, as it does a cold run's by its config.
	if err := w.writeLabels(spec.Labels); err != nil {
		return res, err
	}
	req, err := warmproto.Encode(warmproto.Request{Argv: spec.Argv, Env: spec.Env, Dir: spec.Workdir,
		Deadline: spec.Timeout + oci.InitGrace, Stdin: spec.Stdin != nil})
	if err != nil {
		return res, err
	}
	if _, err := w.ctrl.Write(req); err != nil {
		// The init is gone (it timed out idle, or something killed it): nothing ran.
		return res, fmt.Errorf("%w: warm sandbox %s: sending the command: %v", sandbox.ErrStale, w.id, err)
	}
	if rc, err := w.ctrl.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _ = unix.Shutdown(int(fd), unix.SHUT_WR) })
	}
	res.Ran = true

	stdout, stderr, collect := spec.Outputs()
	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); _, _ = io.Copy(stdout, w.stdout) }()
	go func() { defer copies.Done(); _, _ = io.Copy(stderr, w.stderr) }()
	go func() {
		if spec.Stdin != nil {
			_, _ = w.stdin.Write(spec.Stdin)
		}
		w.stdin.Close()
	}()
	replied := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(w.ctrl, 4096))
		replied <- b
	}()

	timer := time.NewTimer(spec.Timeout)
	defer timer.Stop()
	var raw []byte
	var cancelled bool
	select {
	case raw = <-replied:
	case <-timer.C:
		res.TimedOut = true
	case <-ctx.Done():
		cancelled = true
	}
	if res.TimedOut || cancelled {
		w.b.log.Info().Str("event", "sandbox.timeout").Str("container", w.id).Bool("cancelled", cancelled).Dur("timeout", spec.Timeout).Msg("killing container")
		_ = unix.PidfdSendSignal(w.pidfd, unix.SIGKILL, nil, 0)
		raw = <-replied
	}
	gone := w.awaitExit()
	if !gone {
		w.st.orphan = true
		_ = unix.PidfdSendSignal(w.pidfd, unix.SIGKILL, nil, 0)
	}
	// The pid namespace is gone with its init, and with it every writer of the pipes.
	if !waitGroupWithin(&copies, killGrace) {
		w.stdout.Close()
		w.stderr.Close()
		copies.Wait()
	}
	collect(&res)
	res.Duration = time.Since(started)

	reply, replyOK, rerr := warmproto.DecodeReply(raw)
	if rerr != nil {
		return res, rerr
	}
	if replyOK && reply.Error != "" {
		res.Ran = false
		return res, fmt.Errorf("sandbox %s could not start the command: %s", w.id, reply.Error)
	}
	code := reply.Code
	if !replyOK {
		code = sandbox.ExitKilled // the init itself was killed: by us, or by the OOM killer
	}
	if n, err := w.b.cg.oomKills(w.b.memoryCgroup(w.id)); err == nil && n > 0 {
		res.OOMKilled = true
		w.b.log.Info().Str("event", "sandbox.oom").Str("container", w.id).Int64("oom_kills", n).Msg("memory limit hit")
	}
	finished = gone
	if !res.TimedOut && !cancelled && code == sandbox.ExitTimeout && time.Since(started) >= spec.Timeout {
		res.TimedOut = true
	}
	res.ExitCode = sandbox.ExitCodeOf(code, res.TimedOut, cancelled, res.OOMKilled)
	w.b.log.Debug().Str("event", "sandbox.run").Str("container", w.id).Bool("warm", true).
		Int("exit_code", res.ExitCode).Bool("timed_out", res.TimedOut).Bool("oom_killed", res.OOMKilled).
		Bool("truncated", res.Truncated()).Dur("duration", res.Duration).Msg("container finished")
	if cancelled {
		return res, fmt.Errorf("sandbox run %s killed: %w", w.id, context.Cause(ctx))
	}
	return res, nil
}

// writeLabels records the call's labels beside the bundle's configuration, so a reaper that
// finds the container after this process died can tie it to its call (bundleLabels).
func (w *warmRun) writeLabels(labels map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	raw, err := json.Marshal(labels)
	if err != nil {
		return err
	}
	tmp := filepath.Join(w.bundle, claimLabels+".tmp")
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("warm sandbox %s: recording the call's labels: %w", w.id, err)
	}
	return os.Rename(tmp, filepath.Join(w.bundle, claimLabels))
}

// fileID is a file's identity: a directory replaced at the same path has another.
type fileID struct{ dev, ino uint64 }

// identify is the identity of each mount's source.
func identify(mounts []sandbox.Mount) ([]fileID, error) {
	ids := make([]fileID, len(mounts))
	for i, m := range mounts {
		var st unix.Stat_t
		if err := unix.Stat(m.Source, &st); err != nil {
			return nil, fmt.Errorf("mount source %s: %w", m.Source, err)
		}
		ids[i] = fileID{dev: st.Dev, ino: st.Ino}
	}
	return ids, nil
}

// sameSources checks that the call's mount sources are still the directories the sandbox
// mounted: one removed and made again (a re-cloned workspace, a cleared cache) would leave
// the sandbox on the old, deleted tree. Another one makes the sandbox stale; nothing ran.
func (w *warmRun) sameSources(mounts []sandbox.Mount) error {
	now, err := identify(mounts)
	if err != nil || len(now) != len(w.sources) {
		return fmt.Errorf("%w: warm sandbox %s: its mount sources changed (%v)", sandbox.ErrStale, w.id, err)
	}
	for i := range now {
		if now[i] != w.sources[i] {
			return fmt.Errorf("%w: warm sandbox %s: %s was replaced since it was mounted", sandbox.ErrStale, w.id, mounts[i].Source)
		}
	}
	return nil
}

// claimLabels is the bundle file with the labels of the call that claimed a warm container.
const claimLabels = "labels.json"

// awaitExit waits, at most killGrace, for the init to be gone (its pidfd turns readable when
// it has exited, and the kernel has then killed and reaped the rest of its pid namespace), and
// reaps it if this process is its parent (Airlock running as a pid namespace's init, or a
// subreaper); otherwise whoever adopted it does.
func (w *warmRun) awaitExit() bool {
	fds := []unix.PollFd{{Fd: int32(w.pidfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(killGrace)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false
		}
		if n > 0 {
			var info unix.Siginfo
			_ = unix.Waitid(unix.P_PIDFD, w.pidfd, &info, unix.WEXITED|unix.WNOHANG, nil)
			return true
		}
	}
}

// Close removes a sandbox that was never used: closing the socket ends the waiting init
// without it running anything.
func (w *warmRun) Close() error {
	if !w.used.CompareAndSwap(false, true) {
		return nil // Run removes it
	}
	return w.remove()
}

// remove ends the init (closing the socket first; SIGKILL if it does not go), then removes the
// container and the bundle, once; the backend's count of runs is released then.
func (w *warmRun) remove() error {
	w.removeOnce.Do(func() {
		defer w.b.runs.Done()
		w.ctrl.Close()
		if !w.awaitExit() {
			_ = unix.PidfdSendSignal(w.pidfd, unix.SIGKILL, nil, 0)
			if !w.awaitExit() {
				w.st.orphan = true
			}
		}
		w.closeFiles()
		w.removeErr = w.b.cleanup(w.st, w.bundle)
	})
	return w.removeErr
}

// closeFiles closes every descriptor the warm sandbox holds.
func (w *warmRun) closeFiles() {
	for _, f := range []*os.File{w.ctrl, w.stdin, w.stdout, w.stderr} {
		if f != nil {
			f.Close()
		}
	}
	if w.pidfd >= 0 {
		unix.Close(w.pidfd)
		w.pidfd = -1
	}
}

// waitGroupWithin waits for wg at most d and reports whether it finished.
func waitGroupWithin(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
