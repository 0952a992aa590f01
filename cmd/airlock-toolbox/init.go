package main

// The sandbox init: every runc sandbox runs the toolbox as its pid 1,
//
//	airlock-toolbox init --deadline 32s [--egress 127.0.0.1:3128=/.airlock/egress.sock] -- CMD ARGS...
//
// which starts CMD as its only child, reaps every process that ends up its child, and exits
// with CMD's status: the code CMD exited with, or 128+N when signal N killed it (what runc
// reported when CMD itself was pid 1, so 137 OOM kills read the same). When pid 1 exits the
// kernel kills every other process of the pid namespace, so background children still die with
// the command.
//
// At the deadline it kills every process and exits 124. Airlock's own timer (at Spec.Timeout,
// a little before the deadline) is the normal path; this one holds when Airlock was SIGKILLed
// or OOM-killed mid-call and runc died with it, which used to leave the container running with
// no timeout at all until the next Airlock start reaped it.
//
// With --egress LISTEN=SOCKET (a run with network proxy) it first listens on LISTEN itself and
// hands the listening socket to a forwarder process (egress.go), then starts CMD: connections
// CMD makes to LISTEN queue in the listener's backlog from the start, so they never race the
// forwarder's start-up. The forwarder is a child like any other: the deadline's kill(-1) and
// the end of pid 1 kill it with everything else, and nothing it does reaches the init, which
// it shares no memory with and which ignores its signals as it ignores CMD's.
//
// Pids and memory: the init is charged to the container's limits like everything in it (the Go
// runtime's few threads count against the pids limit), so it creates no thread once CMD runs:
// it supervises from one goroutine with raw system calls that keep its only P, so the runtime
// never has to start a thread for the scheduler, and a fork bomb that fills the pids limit
// cannot make it fail.

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Exit codes of the init itself; every other code is CMD's.
const (
	exitInitUsage = 2   // malformed init command line: a bug in the backend, never CMD's doing
	exitInitFail  = 125 // the sandbox could not be set up (the egress forwarder did not start)
	exitTimeout   = 124 // the deadline passed (sandbox.ExitTimeout)
	exitNotExec   = 126 // CMD exists but could not be executed (the shell's code)
	exitNotFound  = 127 // CMD was not found (the shell's code)
)

// sweepEvery bounds how long an orphan's zombie waits to be reaped when no signal wakes the
// init (its SIGCHLD can reach another of the runtime's threads). In practice the runtime's
// preemption tick wakes it about every 10 ms anyway.
const sweepEvery = 50 * time.Millisecond

// initConfig is the init's command line.
type initConfig struct {
	deadline time.Duration
	egress   *egressConfig // nil without --egress
	argv     []string
	// warm: the command comes later, over the control socket (warm.go); idle bounds the
	// wait for it. deadline and argv are then the request's.
	warm bool
	idle time.Duration
}

// egressConfig is --egress LISTEN=SOCKET: the TCP address the forwarder listens on inside the
// sandbox, and the path of the proxy's Unix socket it forwards to.
type egressConfig struct {
	listen netip.AddrPort
	socket string
}

// initArgs parses `--deadline D [--egress LISTEN=SOCKET] -- CMD ARGS...`: exactly that order,
// D a positive Go duration, LISTEN a numeric IP:port, SOCKET an absolute path, CMD non-empty.
// Nothing else is accepted, so no part of CMD can ever be read as an option of the init.
func initArgs(args []string) (initConfig, error) {
	const usage = "usage: airlock-toolbox init --deadline DURATION [--egress IP:PORT=SOCKET] -- CMD [ARGS...] | init --warm --idle DURATION"
	if len(args) == 3 && args[0] == "--warm" && args[1] == "--idle" {
		d, err := time.ParseDuration(args[2])
		if err != nil || d <= 0 {
			return initConfig{}, errors.New(usage + ": the idle limit must be a positive duration such as 10m")
		}
		return initConfig{warm: true, idle: d}, nil
	}
	if len(args) < 4 || args[0] != "--deadline" {
		return initConfig{}, errors.New(usage)
	}
	d, err := time.ParseDuration(args[1])
	if err != nil || d <= 0 {
		return initConfig{}, errors.New(usage + ": the deadline must be a positive duration such as 32s")
	}
	c := initConfig{deadline: d}
	rest := args[2:]
	if len(rest) >= 2 && rest[0] == "--egress" {
		e, err := parseEgress(rest[1])
		if err != nil {
			return initConfig{}, errors.New(usage + ": " + err.Error())
		}
		c.egress, rest = &e, rest[2:]
	}
	if len(rest) < 2 || rest[0] != "--" || rest[1] == "" {
		return initConfig{}, errors.New(usage)
	}
	c.argv = rest[1:]
	return c, nil
}

// parseEgress parses LISTEN=SOCKET.
func parseEgress(v string) (egressConfig, error) {
	listen, socket, ok := strings.Cut(v, "=")
	ap, err := netip.ParseAddrPort(listen)
	if !ok || err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" || !path.IsAbs(socket) {
		return egressConfig{}, errors.New("--egress wants IP:PORT=/absolute/socket/path, such as 127.0.0.1:3128=/.airlock/egress.sock")
	}
	return egressConfig{listen: ap, socket: socket}, nil
}

// initMain is `airlock-toolbox init ARGS...`; it returns the init's exit code.
func initMain(args []string) int {
	start := time.Now()
	cfg, err := initArgs(args)
	if err != nil {
		writeStderr("airlock-toolbox init: " + err.Error() + "\n")
		return exitInitUsage
	}
	if os.Getpid() != 1 {
		// Its deadline kills every process it may signal, which outside a fresh pid
		// namespace is far more than one sandbox.
		writeStderr("airlock-toolbox init: refusing to run as pid " + strconv.Itoa(os.Getpid()) + ": the init runs only as pid 1 of a sandbox\n")
		return exitInitUsage
	}
	// One P and no collector: the init allocates almost nothing and lives for one call; the
	// loop below relies on holding the only P (see supervise).
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(-1)
	// Not dumpable: CMD runs as the same uid, and could otherwise read and write the init's
	// memory through /proc/1/mem to switch its deadline off. (execve makes CMD dumpable
	// again; nothing else about it changes.)
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	// runc hands over stdin, stdout and stderr only; should anything else arrive open, it
	// stays out of CMD.
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) != nil {
		cloexecEach() // close_range is newer than 5.11, or an outer filter refuses it
	}
	ignoreSignals()

	if cfg.warm {
		return warmMain(cfg.idle)
	}
	if cfg.egress != nil {
		// Before CMD: its first connection must find the listener there.
		if err := startForwarder(*cfg.egress); err != nil {
			writeStderr("airlock: egress forwarder on " + cfg.egress.listen.String() + ": " + err.Error() + "\n")
			return exitInitFail
		}
	}
	pid, err := startCommand(cfg.argv)
	if err != nil {
		code, msg := startFailure(cfg.argv[0], err)
		writeStderr("airlock: " + msg + "\n")
		return code
	}
	return supervise(pid, start.Add(cfg.deadline), cfg.deadline)
}

// cloexecEach marks every open descriptor from 3 up close-on-exec, one by one.
func cloexecEach() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= 3 {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}

// startForwarder listens on e.listen and starts `airlock-toolbox egress-forward fd:3 SOCKET`
// (this same binary) with the listening socket as its descriptor 3, /dev/null as stdin and
// stdout (CMD's input and output are not the forwarder's) and stderr shared, in a process group
// of its own, with CMD's environment (which names the sandbox, so a leftover is findable). The
// init keeps no copy of the listener: if the forwarder dies, connections are refused rather
// than left hanging in a backlog nobody accepts from.
func startForwarder(e egressConfig) error {
	lfd, err := listenTCP(e.listen)
	if err != nil {
		return err
	}
	defer unix.Close(lfd)
	null, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(null)
	_, err = syscall.ForkExec("/proc/self/exe", []string{os.Args[0], "egress-forward", "fd:3", e.socket}, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{uintptr(null), uintptr(null), 2, uintptr(lfd)},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	return err
}

// listenTCP is a close-on-exec TCP socket listening on ap, made with plain system calls (the
// net package would start the runtime's network poller in the init).
func listenTCP(ap netip.AddrPort) (int, error) {
	addr := ap.Addr().Unmap()
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: addr.As16()}
	if addr.Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: addr.As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// startCommand starts argv exactly as runc started a container's process: argv[0] looked up
// in the PATH of the environment (which runc set to the Spec's), that same environment, the
// init's working directory, and stdin, stdout and stderr as the only descriptors (everything
// the Go runtime opens is close-on-exec). CMD leads a process group of its own, as it did as
// pid 1, so a `kill 0` in it reaches what it started and not the init.
func startCommand(argv []string) (int, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return 0, err
	}
	return syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
}

// startFailure maps an error starting CMD to the shell's exit code and the message runc used to
// log for it, `"CMD": reason`: 127 when CMD (or the interpreter its #! line names) does not
// exist, 126 when it exists but cannot be executed.
func startFailure(name string, err error) (int, string) {
	reason := err.Error() // ForkExec: the bare errno of the failed execve
	var ee *exec.Error
	if errors.As(err, &ee) {
		reason = ee.Err.Error() // LookPath: runc logged `exec: "CMD": reason`
	}
	code := exitNotExec
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		code = exitNotFound
	}
	return code, strconv.Quote(name) + ": " + reason
}

// fatalSignals are the signals on which the Go runtime ends the process when another process
// sends them: SIGHUP, SIGINT and SIGTERM exit, the others crash with a trace. The runtime's
// handlers drop every other signal already.
var fatalSignals = []syscall.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM,
	syscall.SIGQUIT, syscall.SIGABRT, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGSTKFLT, syscall.SIGSYS,
	syscall.SIGBUS, syscall.SIGFPE, syscall.SIGSEGV,
}

// ignoreSignals makes the init deaf to signals from inside the sandbox. The kernel drops a
// signal sent to a pid namespace's init from inside it unless the init handles it, but the Go
// runtime handles them all and exits on fatalSignals: CMD could end the whole run with
// `kill 1`. Back at SIG_DFL the kernel drops them. SIGKILL and SIGSTOP cannot be sent to the
// init from inside at all. CMD is unaffected: Go resets every signal it handles to SIG_DFL in
// the child before exec, and a signal CMD would inherit ignored stays ignored.
func ignoreSignals() {
	type sigaction struct {
		handler, flags, restorer uintptr
		mask                     uint64
	}
	const sigIgn = 1
	var dfl, old sigaction
	for _, sig := range fatalSignals {
		if sig == syscall.SIGHUP || sig == syscall.SIGINT {
			// The only two the runtime leaves alone when they arrive ignored; CMD inherits
			// them ignored, as it did from runc, so they must stay so.
			if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 || old.handler == sigIgn {
				continue
			}
		}
		_, _, _ = syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0)
	}
}

// supervise reaps zombies until CMD (pid child) exits, and returns its exit status, or kills
// every process and returns 124 once the deadline passes.
//
// Every system call here is raw: the goroutine keeps the only P while it blocks, so the
// scheduler never hands the P to another thread and the runtime never needs a new one (under
// a full pids cgroup creating one would fail, and the runtime would crash). While ppoll waits,
// every signal but SIGCHLD is blocked on this thread: the runtime's preemption signal (it
// sees a goroutine running for 10 ms and asks it to yield) then waits for the loop's next
// turn instead of waking it a hundred times a second. (The runtime's monitor thread still
// ticks every 10 ms while the P is held: about 0.5% of a core on a slow VM, the price of never
// depending on an idle thread being there to take the P over.)
func supervise(child int, deadline time.Time, limit time.Duration) int {
	pidfd := -1
	if fd, _, e := syscall.RawSyscall(unix.SYS_PIDFD_OPEN, uintptr(child), 0, 0); e == 0 {
		pidfd = int(fd) // readable once CMD has exited; close-on-exec like every pidfd
	}
	var ws syscall.WaitStatus
	fds := [1]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	onlySIGCHLD := ^uint64(1 << (syscall.SIGCHLD - 1)) // ppoll's mask while it waits
	for {
		for {
			pid, _, e := syscall.RawSyscall6(syscall.SYS_WAIT4, ^uintptr(0), uintptr(unsafe.Pointer(&ws)), syscall.WNOHANG, 0, 0, 0)
			if e == syscall.EINTR {
				continue
			}
			if e != 0 || pid == 0 {
				break // no zombie left
			}
			if int(pid) == child {
				return exitStatus(ws)
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return deadlinePassed(limit)
		}
		ts := unix.NsecToTimespec(int64(min(left, sweepEvery)))
		nfds := uintptr(1)
		if pidfd < 0 {
			nfds = 0 // no pidfd (a kernel before 5.3): SIGCHLD and the sweep wake the loop
		}
		_, _, _ = syscall.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), nfds, uintptr(unsafe.Pointer(&ts)), uintptr(unsafe.Pointer(&onlySIGCHLD)), 8, 0)
	}
}

// exitStatus is what runc reported for a container whose pid 1 ended with ws.
func exitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// deadlinePassed kills every other process of the pid namespace (the init is its pid 1, so
// kill(-1) reaches all of them and nothing outside), says so on stderr, and returns 124. Killing
// comes first: a stderr nobody reads must not keep the processes alive. Exiting would kill
// them too; the explicit SIGKILL stops them before the runtime's exit path runs.
func deadlinePassed(limit time.Duration) int {
	_, _, _ = syscall.RawSyscall(syscall.SYS_KILL, ^uintptr(0), uintptr(syscall.SIGKILL), 0)
	writeStderr("airlock: deadline of " + limit.String() + " passed; the sandbox init killed every process\n")
	return exitTimeout
}

// writeStderr writes s to fd 2 with one raw write. Not os.Stderr: on a broken pipe (Airlock
// and runc gone) the os package raises SIGPIPE, and the runtime then exits with code 2.
func writeStderr(s string) {
	b := []byte(s)
	_, _, _ = syscall.RawSyscall(syscall.SYS_WRITE, 2, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
}
