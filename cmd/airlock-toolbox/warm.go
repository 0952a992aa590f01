package main

// The warm sandbox init: a runc sandbox pre-started by Airlock's pool runs
//
//	airlock-toolbox init --warm --idle 20m
//
// as its pid 1 with one end of a Unix socket pair as descriptor 3 (see package warmproto). It
// makes sure the socket is close-on-exec, says it is ready (one byte), then waits, at most the idle limit, for its one request: the command's argv, environment, working
// directory, deadline and whether it reads stdin. It then enters the directory, takes the
// environment, starts the command as the plain init does and supervises it under the same
// deadline rules, writes the exit status back and exits: the container ends with its one
// command. End of stream before a request (Airlock drained the pool, closed or died) or the idle
// limit ends the init at once, having run nothing.
//
// Everything the plain init does for safety is done before the wait (not dumpable, deaf to
// signals from inside, every other descriptor close-on-exec, one P), and the wait and the read
// are raw system calls on the one goroutine, so the runtime starts no thread while it waits.

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox/warmproto"
)

// warmMain serves the one request of a warm sandbox and returns the init's exit code.
func warmMain(idle time.Duration) int {
	// The socket must never reach the command: with it, the command could write the
	// reply itself. The init's blanket close-on-exec (close_range) is not on every kernel or
	// under every outer filter, so this one is made sure of, or nothing runs.
	if _, err := unix.FcntlInt(uintptr(warmproto.ControlFD), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		writeStderr("airlock: the control socket cannot be kept from the command: " + err.Error() + "\n")
		return exitInitFail
	}
	if flags, err := unix.FcntlInt(uintptr(warmproto.ControlFD), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		writeStderr("airlock: the control socket cannot be kept from the command\n")
		return exitInitFail
	}
	if !send([]byte{warmproto.Ready}) {
		return 0 // Airlock is gone already
	}
	raw, ok := readRequest(warmproto.ControlFD, time.Now().Add(idle))
	if !ok {
		return 0 // drained, closed or idle: nothing ran
	}
	req, err := warmproto.DecodeRequest(raw)
	if err != nil {
		return replyError(err.Error())
	}
	if err := enterDir(req.Dir); err != nil {
		return replyError("working directory " + req.Dir + ": " + unwrapPathError(err))
	}
	os.Clearenv()
	for _, kv := range req.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			_ = os.Setenv(k, v)
		}
	}
	if _, ok := os.LookupEnv("HOME"); !ok {
		// What runc gives a process without one: the user's home in the image's
		// /etc/passwd, or /.
		_ = os.Setenv("HOME", homeOf(os.Getuid()))
	}
	if !req.Stdin {
		null, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return replyError("opening /dev/null for stdin: " + err.Error())
		}
		_ = unix.Dup3(null, 0, 0)
		unix.Close(null)
	}
	start := time.Now()
	pid, err := startCommand(req.Argv)
	if err != nil {
		code, msg := startFailure(req.Argv[0], err)
		writeStderr("airlock: " + msg + "\n")
		return reply(warmproto.Reply{Code: code})
	}
	return reply(warmproto.Reply{Code: supervise(pid, start.Add(req.Deadline), req.Deadline)})
}

// enterDir makes dir the working directory, creating it if it is missing, as runc does for a
// container's cwd. Airlock checked on the host that a missing one lies in a file system that
// exists for this run only (a tmpfs), so nothing outside the run is created; unlike runc, the
// init creates it as the command's user, not as root.
func enterDir(dir string) error {
	err := os.Chdir(dir)
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.Chdir(dir)
}

// readRequest reads fd to end of stream, waiting until deadline for it to begin; ok is false
// when nothing arrived (end of stream first, the deadline, an error) or more than
// warmproto.MaxRequest did.
func readRequest(fd int, deadline time.Time) (b []byte, ok bool) {
	buf := make([]byte, 64<<10)
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		left := time.Until(deadline)
		if left <= 0 && len(b) == 0 {
			return nil, false
		}
		if len(b) == 0 {
			// Only the wait for the first byte is bounded by the idle limit: Airlock writes
			// the whole request at once.
			// Every signal blocked while it waits, as in supervise: the runtime's
			// preemption signal would otherwise wake an idle sandbox many times a second.
			ts := unix.NsecToTimespec(int64(left))
			_, _, e := syscall.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 1, uintptr(unsafe.Pointer(&ts)), uintptr(unsafe.Pointer(&blockAll)), 8, 0)
			if e == syscall.EINTR {
				continue
			}
			if e != 0 {
				return nil, false
			}
			if fds[0].Revents == 0 {
				continue // timed out: the loop ends it
			}
		}
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		switch {
		case e == syscall.EINTR || e == syscall.EAGAIN:
			continue
		case e != 0:
			return nil, false
		case n == 0:
			return b, len(b) > 0
		}
		b = append(b, buf[:n]...)
		if len(b) > warmproto.MaxRequest {
			return nil, false
		}
	}
}

// blockAll is ppoll's signal mask while the init waits for its request.
var blockAll = ^uint64(0)

// reply writes r to the control socket and returns r.Code, the init's exit code.
func reply(r warmproto.Reply) int {
	if b, err := warmproto.Encode(r); err == nil {
		send(b) // if Airlock is gone, the exit status is all that is left
	}
	return r.Code
}

// send writes b to the control socket; false when it could not.
func send(b []byte) bool {
	for len(b) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, warmproto.ControlFD, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// homeOf is uid's home directory in /etc/passwd, or /.
func homeOf(uid int) string {
	raw, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return "/"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 6 && f[2] == strconv.Itoa(uid) && strings.HasPrefix(f[5], "/") {
			return f[5]
		}
	}
	return "/"
}

// replyError reports that the command could not be started at all.
func replyError(msg string) int {
	writeStderr("airlock: " + msg + "\n")
	return reply(warmproto.Reply{Code: exitInitFail, Error: msg})
}

// unwrapPathError is err's reason without the operation and path os adds.
func unwrapPathError(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}
