// Command probe runs inside a container during seccomp's runc test. It makes each syscall
// Airlock's profiles refuse, with arguments chosen so that the kernel itself would answer with
// something other than EPERM (ESRCH, EFAULT, EBADF, success...) if the call got past the
// filter, and prints {"op": "errno name or ok"} as one JSON object. It also starts goroutines
// and writes a file, to show a Go program runs normally under the profile.
package main

import (
	"encoding/json"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

func result(err error) string {
	if err == nil {
		return "ok"
	}
	if errno, ok := err.(syscall.Errno); ok {
		if errno == 0 {
			return "ok"
		}
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

func raw(nr uintptr, args ...uintptr) string {
	var a [6]uintptr
	copy(a[:], args)
	_, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	return result(e)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "compat" {
		compat()
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "compat-child" {
		compatChild()
		return
	}
	if len(os.Args) > 2 && os.Args[1] == "setid" {
		out := map[string]string{}
		setidOps(out, os.Args[2])
		_ = json.NewEncoder(os.Stdout).Encode(out)
		return
	}
	out := map[string]string{}
	const noSuchPid = 0x3fffffff
	out["ptrace"] = raw(unix.SYS_PTRACE, unix.PTRACE_PEEKDATA, noSuchPid, 0, 0)
	out["process_vm_readv"] = raw(unix.SYS_PROCESS_VM_READV, noSuchPid, 0, 0, 0, 0, 0)
	out["bpf"] = raw(unix.SYS_BPF, 9999, 0, 0)
	out["keyctl"] = raw(unix.SYS_KEYCTL, 9999, 0, 0, 0, 0)
	out["add_key"] = raw(unix.SYS_ADD_KEY, 0, 0, 0, 0, 0)
	out["perf_event_open"] = raw(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0)
	out["io_uring_setup"] = raw(unix.SYS_IO_URING_SETUP, 0, 0)
	out["unshare"] = raw(unix.SYS_UNSHARE, 0)
	out["setns"] = raw(unix.SYS_SETNS, ^uintptr(0), 0)
	out["mount"] = raw(unix.SYS_MOUNT, 0, 0, 0, 0, 0)
	out["chroot"] = raw(unix.SYS_CHROOT, 0)
	out["open_by_handle_at"] = raw(unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(0), 0, 0)
	out["name_to_handle_at"] = raw(unix.SYS_NAME_TO_HANDLE_AT, ^uintptr(0), 0, 0, 0, 0)
	out["clone3"] = raw(unix.SYS_CLONE3, 0, 0)
	// CLONE_NEWUSER with CLONE_FS is invalid (EINVAL) if it reaches the kernel, so no child is
	// ever created; the filter refuses it first because a namespace flag is set.
	out["clone_newuser"] = raw(unix.SYS_CLONE, unix.CLONE_NEWUSER|unix.CLONE_FS|uintptr(syscall.SIGCHLD), 0, 0, 0, 0)

	for _, s := range []struct {
		name   string
		domain int
	}{{"socket_inet", unix.AF_INET}, {"socket_inet6", unix.AF_INET6}, {"socket_netlink", unix.AF_NETLINK},
		{"socket_packet", unix.AF_PACKET}, {"socket_vsock", unix.AF_VSOCK}, {"socket_alg", unix.AF_ALG}, {"socket_unix", unix.AF_UNIX}} {
		fd, err := unix.Socket(s.domain, unix.SOCK_DGRAM, 0)
		out[s.name] = result(err)
		if err == nil {
			unix.Close(fd)
		}
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	out["socketpair_unix"] = result(err)
	if err == nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
	}
	out["setuid"] = raw(unix.SYS_SETUID, uintptr(os.Getuid()))
	fd, err := unix.MemfdCreate("x", 0)
	out["memfd_create"] = result(err)
	if err == nil {
		unix.Close(fd)
	}

	// A Go program with goroutines and file I/O works.
	var wg sync.WaitGroup
	sums := make([]int, 8)
	for i := range sums {
		wg.Go(func() {
			for j := range 100000 {
				sums[i] += j % (i + 1)
			}
		})
	}
	wg.Wait()
	out["goroutines"] = "ok"
	err = os.WriteFile("/tmp/probe.txt", []byte("hello"), 0o600)
	if err == nil {
		var b []byte
		b, err = os.ReadFile("/tmp/probe.txt")
		if err == nil && string(b) != "hello" {
			err = syscall.EIO
		}
	}
	out["file_io"] = result(err)
	_ = json.NewEncoder(os.Stdout).Encode(out)
}
