package main

// The warm sandbox init: a runc sandbox pre-started by Airlock's pool runs
//
//	airlock-toolbox init --warm --idle 11m
//
// as its pid 1 with one end of a Unix socket pair as descriptor 3 (see package warmproto). It
// waits, at most the idle limit, for its one request: the command's argv, environment, working
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
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox/warmproto"
)

// warmMain serves the one request of a warm sandbox and returns the init's exit code.
func warmMain(idle time.Duration) int {
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
			ts := unix.NsecToTimespec(int64(left))
			_, _, e := syscall.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
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

// reply writes r to the control socket and returns r.Code, the init's exit code.
func reply(r warmproto.Reply) int {
	b, err := warmproto.Encode(r)
	if err == nil {
		for len(b) > 0 {
			n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, warmproto.ControlFD, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			if e == syscall.EINTR {
				continue
			}
			if e != 0 {
				break // Airlock is gone: the exit status is all that is left
			}
			b = b[n:]
		}
	}
	return r.Code
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
