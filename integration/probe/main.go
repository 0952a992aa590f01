// Command probe runs INSIDE an Airlock sandbox during the escape tests. It attempts the
// operations a container escape or a host attack starts with and prints one JSON line per
// attempt, so the test on the host can assert that each one failed and with which errno.
//
// Every attempt is chosen to be harmless even if the sandbox failed to stop it: mounts and
// namespaces are private to the container, reboot uses an invalid magic number, module loading
// gets no file, and nothing is written outside /tmp.
//
// Usage:
//
//	probe syscalls          try every forbidden operation
//	probe connect ADDR...   try a TCP connection to each host:port
//	probe connect-unix P... try a unix socket connection to each path or @abstract name
//	probe echo ADDR N       N concurrent TCP connections to ADDR, each sending "cI\n" and
//	                        expecting "echo:cI\n" back (the egress tests' socket server)
//	probe resolve NAME...   resolve each name with Go's own DNS client
//	probe tunnel PROXY HOST:PORT SNI
//	                        through the HTTP proxy at PROXY, CONNECT HOST:PORT, then a TLS
//	                        handshake naming SNI (verified against the system roots, which
//	                        SSL_CERT_FILE can replace) and one GET / (domain-fronting tests)
//	probe pause             sleep (a ptrace target)
//	probe ids               print real, effective and saved uid/gid
//	probe pipes             fill pipe buffers up to the descriptor limit, print the bytes held
//	probe setid DIR         try to create setuid/setgid files in DIR (a :rw workspace)
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Attempt is one line of output.
type Attempt struct {
	Op    string `json:"op"`
	OK    bool   `json:"ok"`              // the operation succeeded
	Errno string `json:"errno,omitempty"` // e.g. "EPERM" when it failed with an errno
	Err   string `json:"err,omitempty"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe syscalls | connect ADDR... | connect-unix PATH... | pause | ids")
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	emit := func(op string, err error) {
		a := Attempt{Op: op, OK: err == nil}
		if err != nil {
			a.Err = err.Error()
			var errno syscall.Errno
			if errors.As(err, &errno) {
				a.Errno = unix.ErrnoName(errno)
			}
		}
		_ = enc.Encode(a)
	}
	switch os.Args[1] {
	case "syscalls":
		// As root outside a sandbox these attempts would succeed and change this machine
		// (a tmpfs mounted, the clock set); the sandbox always runs the probe as uid 65534.
		// The escape suite also runs it as uid 0 inside a sandbox, and says so explicitly.
		if os.Geteuid() == 0 && os.Getenv("AIRLOCK_PROBE_INSIDE_SANDBOX") != "1" {
			fmt.Fprintln(os.Stderr, "probe: refusing to run as root; run it inside an Airlock sandbox")
			os.Exit(2)
		}
		for _, p := range probes() {
			emit(p.op, p.try())
		}
	case "connect":
		for _, addr := range os.Args[2:] {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err == nil {
				c.Close()
			}
			emit("connect "+addr, err)
		}
	case "connect-unix":
		// Abstract names start with "@"; they live in the network namespace, not the file system.
		for _, addr := range os.Args[2:] {
			c, err := net.DialTimeout("unix", addr, 2*time.Second)
			if err == nil {
				c.Close()
			}
			emit("connect-unix "+addr, err)
		}
	case "echo":
		if len(os.Args) != 4 {
			fmt.Fprintln(os.Stderr, "usage: probe echo ADDR N")
			os.Exit(2)
		}
		n, _ := strconv.Atoi(os.Args[3])
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = echoOnce(os.Args[2], fmt.Sprintf("c%d", i))
			}()
		}
		wg.Wait()
		for i, err := range errs {
			emit(fmt.Sprintf("echo %s c%d", os.Args[2], i), err)
		}
	case "resolve":
		r := &net.Resolver{PreferGo: true}
		for _, name := range os.Args[2:] {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			addrs, err := r.LookupHost(ctx, name)
			cancel()
			if err == nil && len(addrs) == 0 {
				err = errors.New("no addresses")
			}
			emit("resolve "+name, err)
		}
	case "tunnel":
		if len(os.Args) != 5 {
			fmt.Fprintln(os.Stderr, "usage: probe tunnel PROXY HOST:PORT SNI")
			os.Exit(2)
		}
		emit(fmt.Sprintf("tunnel %s %s", os.Args[3], os.Args[4]), tunnel(os.Args[2], os.Args[3], os.Args[4]))
	case "pipes":
		// Fill as many pipe buffers as the descriptor limit allows and report how many bytes
		// the kernel is holding for this process: kernel memory the memory cgroup must charge.
		total := 0
		chunk := make([]byte, 64<<10)
		for {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
				break
			}
			for {
				n, err := unix.Write(p[1], chunk)
				if n > 0 {
					total += n
				}
				if err != nil || n < len(chunk) {
					break
				}
			}
		}
		_ = enc.Encode(map[string]int{"buffered": total})
		// Hold the buffers a moment. Not time.Sleep: with every descriptor used, the Go
		// runtime's timer setup cannot open its eventfd.
		_ = unix.Nanosleep(&unix.Timespec{Sec: 1}, nil)
	case "setid":
		// Try to give files in DIR (a :rw workspace) the setuid or setgid bit every way the
		// file system calls allow; see setidProbes.
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: probe setid DIR")
			os.Exit(2)
		}
		for _, p := range setidProbes(os.Args[2]) {
			emit(p.op, p.try())
		}
	case "pause":
		time.Sleep(time.Minute)
	case "ids":
		// Real, effective and saved ids: a setuid binary that gained privileges shows euid 0.
		ruid, euid, suid := unix.Getresuid()
		rgid, egid, sgid := unix.Getresgid()
		_ = enc.Encode(map[string]int{"uid": ruid, "euid": euid, "suid": suid, "gid": rgid, "egid": egid, "sgid": sgid})
	default:
		fmt.Fprintf(os.Stderr, "probe: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

// echoOnce sends msg and a newline on a new TCP connection to addr and expects "echo:" msg
// and a newline back.
func echoOnce(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != "echo:"+msg+"\n" {
		return fmt.Errorf("got %q, want %q", got, "echo:"+msg+"\n")
	}
	return nil
}

// tunnel asks the HTTP proxy at proxy for a CONNECT tunnel to target, then runs a TLS
// handshake that names sni and one GET / over it. A client that fronts a domain does exactly
// this: it names an allowed host to the proxy and another one to the TLS server.
func tunnel(proxy, target, sni string) error {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the proxy's answer: %w", err)
	}
	var refused string
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("reading the proxy's headers: %w", err)
		}
		if h == "\r\n" || h == "\n" {
			break
		}
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "X-Airlock-Egress") {
			refused = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(status, "HTTP/1.1 200") {
		return fmt.Errorf("proxy answered %q (X-Airlock-Egress: %s)", strings.TrimSpace(status), refused)
	}
	if br.Buffered() > 0 {
		return fmt.Errorf("the proxy sent %d bytes after its answer", br.Buffered())
	}
	tc := tls.Client(c, &tls.Config{ServerName: sni, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake naming %s: %w", sni, err)
	}
	if _, err := fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", sni); err != nil {
		return err
	}
	resp, err := bufio.NewReader(tc).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the response through the tunnel: %w", err)
	}
	if !strings.HasPrefix(resp, "HTTP/1.1 200") {
		return fmt.Errorf("the server answered %q", strings.TrimSpace(resp))
	}
	return nil
}

type probe struct {
	op  string
	try func() error
}

// closeFD turns a successful fd-returning call into a nil error, closing the fd.
func closeFD(fd int, err error) error {
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func rawErr(e syscall.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

func probes() []probe {
	return []probe{
		// A new mount over a masked path (or anywhere) would let the command undo the masks.
		{"mount", func() error {
			dir := "/tmp/airlock-probe-mnt"
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			return unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m")
		}},
		// Unmounting the /dev/null bind over /proc/kcore would expose host kernel memory.
		{"umount", func() error { return unix.Unmount("/proc/kcore", unix.MNT_DETACH) }},
		{"unshare_mount", func() error { return unix.Unshare(unix.CLONE_NEWNS) }},
		// A user namespace gives the process a full capability set over new namespaces: the
		// start of most kernel privilege-escalation exploits. Go cannot unshare(CLONE_NEWUSER)
		// once multi-threaded, so a child is cloned into one instead.
		{"unshare_user", func() error { return runChild(unix.CLONE_NEWUSER) }},
		{"setns", func() error {
			fd, err := unix.Open("/proc/self/ns/uts", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Setns(fd, unix.CLONE_NEWUTS)
		}},
		{"ptrace", ptraceChild},
		// Reading another process's memory without ptrace: EFAULT (bad address) would mean the
		// call was allowed, EPERM that it was filtered.
		{"process_vm_readv", func() error {
			cmd := exec.Command("/proc/self/exe", "pause")
			if err := cmd.Start(); err != nil {
				return fmt.Errorf("start target: %w", err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			buf := make([]byte, 8)
			local := []unix.Iovec{{Base: &buf[0], Len: 8}}
			remote := []unix.RemoteIovec{{Base: 0x10000, Len: 8}}
			_, err := unix.ProcessVMReadv(cmd.Process.Pid, local, remote, 0)
			return err
		}},
		{"bpf", func() error {
			attr := struct{ mapType, keySize, valueSize, maxEntries uint32 }{2 /* array */, 4, 4, 1}
			fd, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
			if e == 0 {
				unix.Close(int(fd))
			}
			return rawErr(e)
		}},
		{"keyctl", func() error {
			_, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, true)
			return err
		}},
		{"add_key", func() error {
			_, err := unix.AddKey("user", "airlock-probe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
			return err
		}},
		{"perf_event_open", func() error {
			attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
			attr.Size = uint32(unsafe.Sizeof(attr))
			return closeFD(unix.PerfEventOpen(&attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC))
		}},
		{"io_uring_setup", func() error {
			var params [120]byte // struct io_uring_params, zeroed
			fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
			if e == 0 {
				unix.Close(int(fd))
			}
			return rawErr(e)
		}},
		{"userfaultfd", func() error {
			const userModeOnly = 1 // UFFD_USER_MODE_ONLY: allowed unprivileged unless filtered
			fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|userModeOnly, 0, 0)
			if e == 0 {
				unix.Close(int(fd))
			}
			return rawErr(e)
		}},
		{"socket_raw_inet", func() error { return closeFD(unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)) }},
		{"socket_packet", func() error { return closeFD(unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)) }},
		{"socket_inet_tcp", func() error { return closeFD(unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)) }},
		{"socket_inet6_tcp", func() error { return closeFD(unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0)) }},
		{"socket_inet_udp", func() error { return closeFD(unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)) }},
		{"socket_unix", func() error { return closeFD(unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)) }},
		{"setuid_root", func() error { return unix.Setuid(0) }},
		{"chroot", func() error { return unix.Chroot("/tmp") }},
		{"mknod_dev", func() error {
			err := unix.Mknod("/tmp/probe-null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
			if err == nil {
				unix.Unlink("/tmp/probe-null")
			}
			return err
		}},
		// "Shocker": open_by_handle_at reads host files by inode handle, bypassing the mount view.
		{"open_by_handle_at", func() error {
			root, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(root)
			h := unix.NewFileHandle(1 /* FILEID_INO32_GEN */, make([]byte, 8))
			return closeFD(unix.OpenByHandleAt(root, h, unix.O_RDONLY))
		}},
		{"finit_module", func() error {
			_, _, e := unix.Syscall(unix.SYS_FINIT_MODULE, ^uintptr(0) /* fd -1 */, 0, 0)
			return rawErr(e)
		}},
		// Invalid magic: even a permitted reboot(2) returns EINVAL and does nothing.
		{"reboot", func() error {
			_, _, e := unix.Syscall6(unix.SYS_REBOOT, 0, 0, 0, 0, 0, 0)
			return rawErr(e)
		}},
		{"clock_settime", func() error {
			var ts unix.Timespec
			if err := unix.ClockGettime(unix.CLOCK_REALTIME, &ts); err != nil {
				return err
			}
			return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
		}},
	}
}

// runChild starts this binary again in new namespaces given by cloneflags.
func runChild(cloneflags uintptr) error {
	cmd := exec.Command("/proc/self/exe", "pause")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneflags}
	if err := cmd.Start(); err != nil {
		return err
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil
}

// ptraceChild attaches to a child of the same user: allowed by the kernel without Yama, so only
// the seccomp profile stands between the command and reading/writing another process's memory.
func ptraceChild() error {
	cmd := exec.Command("/proc/self/exe", "pause")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start target: %w", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return unix.PtraceAttach(cmd.Process.Pid)
}
