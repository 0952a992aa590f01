package seccomp

import (
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
)

// Refusal is a group of syscalls a profile removes from Docker's allow lists, with the reason.
// Removed syscalls are simply not allowed any more, so they get the default action (EPERM), or
// the Refusal's Errno through a rule of their own; Airlock never adds a deny rule in front of an
// allow for the same syscall, because with libseccomp the most permissive matching rule for a
// syscall is not guaranteed to lose.
type Refusal struct {
	Why   string
	Names []string
	// Errno, when set, is what the refused calls return instead of the default EPERM: ENOSYS
	// for newer calls whose work libc and Go then redo with an older call the filter can see.
	Errno uint
}

// SetIDModeRule names syscalls that create a file or change its mode, and the index of their
// mode argument. They stay allowed only while (mode & (S_ISUID|S_ISGID)) == 0; any other mode
// gets the default action (EPERM). See setIDModeRules.
type SetIDModeRule struct {
	Names []string
	Arg   uint
}

// setIDBits is S_ISUID|S_ISGID (06000).
const setIDBits = unix.S_ISUID | unix.S_ISGID

// defaultRefusals are removed from Docker's profile for every Airlock profile. Most of them
// already need a capability Airlock never grants; removing them anyway means a kernel bug in
// the capability check, or a future Docker profile that allows them, does not reopen the path.
func defaultRefusals() []Refusal {
	return []Refusal{
		{
			Why: "inspect or write another process's memory: ptrace and process_vm_* read secrets from " +
				"and inject code into any process the tool can see, including a sibling in the same sandbox",
			Names: []string{"ptrace", "process_vm_readv", "process_vm_writev"},
		},
		{
			Why: "io_uring performs file and network operations that seccomp never sees (the rings bypass " +
				"the syscall filter) and has been the source of many kernel privilege escalations",
			Names: []string{"io_uring_setup", "io_uring_enter", "io_uring_register"},
		},
		{
			Why: "kernel keyrings are not namespaced per container: a key added or read here can leak to " +
				"or from other containers and the host",
			Names: []string{"keyctl", "add_key", "request_key"},
		},
		{
			Why: "large kernel attack surfaces a tool never needs: eBPF programs, userfaultfd (used to win " +
				"kernel races), perf events (side channels, many CVEs) and loading a new kernel",
			Names: []string{"bpf", "userfaultfd", "perf_event_open", "kexec_load", "kexec_file_load"},
		},
		{
			Why: "file handles open any inode of a mounted file system by number, escaping bind mounts " +
				"and the container's root (the 2014 'shocker' Docker breakout)",
			Names: []string{"open_by_handle_at", "name_to_handle_at"},
		},
		{
			Why: "mount and namespace changes are how container escapes rearrange the file system view " +
				"(runc CVE-2025-31133/52565/52881 race mounts over /proc and /dev); a tool runs in the " +
				"namespaces it was given and never builds new ones. clone with namespace flags stays " +
				"refused by Docker's masked clone rule and clone3 returns ENOSYS so libc falls back to it",
			Names: []string{
				"mount", "umount", "umount2", "mount_setattr", "move_mount", "open_tree",
				"fsopen", "fsconfig", "fsmount", "fspick", "pivot_root", "unshare", "setns", "chroot",
			},
		},
		{
			Why: "openat2 passes its mode inside a struct in memory, which seccomp cannot read, so " +
				"no rule could keep it from creating a setuid file; fchmodat2 goes with it so that " +
				"fchmodat is the one path-based chmod. Both return ENOSYS: glibc, musl, Go and runc " +
				"fall back to openat and fchmodat, whose modes the setuid/setgid rules check",
			Names: []string{"openat2", "fchmodat2"},
			Errno: uint(unix.ENOSYS),
		},
	}
}

// setIDModeRules keep every syscall that can create a file or set its mode from giving it the
// setuid or setgid bit, in every profile and for every run. A :rw workspace is a host
// directory: a setuid (or setgid) file left there runs as its owner (the sandbox's uid, root
// when a profile runs as a root-owned workspace's owner) for any host user who can reach it.
// The mounts are nosuid and no_new_privs is set, so inside the sandbox such a bit never
// mattered; refusing it here stops a tool from planting one on the host. Nothing ordinary
// needs it: cp, chmod 755, mkdir, compilers, git and test runners never set these bits.
//
// mkdir/mkdirat are not listed: the kernel drops S_ISUID and S_ISGID from mkdir's mode (a new
// directory only inherits setgid from a setgid parent the host already made). chown needs
// CAP_CHOWN to give a file to another uid, and an unprivileged chown clears both bits.
func setIDModeRules() []SetIDModeRule {
	return []SetIDModeRule{
		{Names: []string{"chmod", "fchmod", "creat", "mknod"}, Arg: 1},
		{Names: []string{"fchmodat", "open", "mknodat"}, Arg: 2},
		{Names: []string{"openat"}, Arg: 3},
	}
}

// SetIDModeRules lists the syscalls allowed only with a mode free of S_ISUID and S_ISGID; every
// profile has them. It is what docs/seccomp.md describes and what the tests check.
func SetIDModeRules() []SetIDModeRule { return setIDModeRules() }

// filesRefusals are removed on top of defaultRefusals by the files profile, which is for tools
// that only open, read, write, stat and walk files (airlock-toolbox, busybox file applets).
//
// What stays is what a static Go program and busybox need to start and run: execve, mmap and
// friends, brk, arch_prctl, clone without namespace flags (goroutine threads, busybox sh
// pipelines), futex, rt_sig*, sigaltstack, tgkill (Go's async preemption), sched_*, getrandom,
// prlimit64, epoll_* and eventfd2 (Go's netpoller, initialised on the first pipe write), pipe2,
// wait4, the *at file calls, getdents64, fsync, rename, unlink, chmod, utimensat, and runc's
// own last steps before exec (open, write, close, close_range, getpid).
func filesRefusals() []Refusal {
	return []Refusal{
		{
			Why: "no sockets at all: a file tool has no peer to talk to, and without socket and " +
				"socketpair it cannot reach even a unix socket that a mount might expose",
			Names: socketCalls(),
		},
		{
			Why: "identity changes: a file tool runs as the uid it was given; with no capabilities these " +
				"calls can only shuffle its own ids, but they are the first step of every setuid-style exploit",
			Names: []string{
				"setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32", "setregid", "setregid32",
				"setresuid", "setresuid32", "setresgid", "setresgid32", "setgroups", "setgroups32",
				"setfsuid", "setfsuid32", "setfsgid", "setfsgid32", "capset", "setsid", "personality",
			},
		},
		{
			Why: "System V and POSIX IPC objects outlive the process and are a channel to anything else " +
				"in the IPC namespace; file tools use none",
			Names: []string{
				"ipc", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop",
				"semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget", "mq_getsetattr", "mq_notify",
				"mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
				"mq_unlink",
			},
		},
		{
			Why: "fileless execution and fd theft: memfd_create+execveat runs code that never touched " +
				"the (read-only) file system; kcmp and pidfd_getfd inspect and take other processes' files",
			Names: []string{"memfd_create", "memfd_secret", "execveat", "kcmp", "pidfd_getfd"},
		},
		{
			Why: "kernel interfaces with a history of exploitable bugs that reading and writing files does " +
				"not need: vmsplice/tee (pipe page tricks), Linux AIO, NUMA memory policy, mlock, " +
				"inotify/fanotify, clock adjustment, mount introspection, quotas, x86 LDT changes " +
				"(modify_ldt: several privilege escalations), remap_file_pages and process_mrelease",
			Names: []string{
				"vmsplice", "tee",
				"io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
				"io_pgetevents_time64",
				"mbind", "set_mempolicy", "get_mempolicy", "migrate_pages", "move_pages", "set_mempolicy_home_node",
				"mlock", "mlock2", "mlockall", "munlock", "munlockall",
				"inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
				"adjtimex", "clock_adjtime", "clock_adjtime64",
				"listmount", "statmount", "quotactl", "quotactl_fd",
				"fanotify_mark", "modify_ldt", "remap_file_pages", "process_mrelease",
			},
		},
	}
}

// socketCalls are the syscalls that create or use sockets.
func socketCalls() []string {
	return []string{
		"socket", "socketpair", "socketcall", "connect", "accept", "accept4", "bind", "listen",
		"getsockname", "getpeername", "getsockopt", "setsockopt", "sendto", "recvfrom", "send", "recv",
		"sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "recvmmsg_time64", "shutdown",
	}
}

// Refusals lists, in order, what profile removes from Docker's default profile for network.
// It is what docs/seccomp.md describes and what the tests check.
func Refusals(profile string, network sandbox.Network) ([]Refusal, error) {
	switch profile {
	case sandbox.SeccompDefault, sandbox.SeccompFiles:
	default:
		return nil, unknownProfile(profile)
	}
	switch network {
	case sandbox.NetworkNone, sandbox.NetworkProxy:
	default:
		return nil, fmt.Errorf("seccomp: unknown network mode %q; use %s or %s", network, sandbox.NetworkNone, sandbox.NetworkProxy)
	}
	out := defaultRefusals()
	if profile == sandbox.SeccompFiles {
		if network != sandbox.NetworkNone {
			return nil, fmt.Errorf("seccomp: the %s profile has no sockets, so it cannot run with network %s; use %s",
				profile, network, sandbox.SeccompDefault)
		}
		return append(out, filesRefusals()...), nil
	}
	// socketcall is the i386 multiplexer whose arguments seccomp cannot see; it is refused in
	// every mode so the family rules of socketFamilies are the only way to create a socket.
	switch network {
	case sandbox.NetworkNone:
		out = append(out, Refusal{
			Why: "network none: sockets only through the AF_UNIX-only rule (socket and socketpair " +
				"with arg0 == AF_UNIX), so a tool cannot open netlink, packet, vsock, AF_ALG or " +
				"inet sockets to attack kernel protocol code even in an empty network namespace",
			Names: []string{"socket", "socketpair", "socketcall"},
		})
	case sandbox.NetworkProxy:
		out = append(out, Refusal{
			Why: "network proxy: sockets only through the family rules (socket with arg0 == AF_UNIX, " +
				"AF_INET or AF_INET6; socketpair with AF_UNIX): inet sockets are for the egress " +
				"forwarder on loopback (the namespace has no other interface), and netlink, packet, " +
				"vsock and AF_ALG stay out of reach",
			Names: []string{"socket", "socketpair", "socketcall"},
		})
	}
	return out, nil
}

// socketFamilies are the address families socket(2) may use with the default profile in
// network mode network; socketpair(2) always only AF_UNIX (the kernel has no inet pairs).
func socketFamilies(network sandbox.Network) []uint64 {
	if network == sandbox.NetworkProxy {
		return []uint64{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6}
	}
	return []uint64{unix.AF_UNIX}
}

func unknownProfile(profile string) error {
	return fmt.Errorf("seccomp: unknown profile %q; use %s, %s or %s", profile,
		sandbox.SeccompDefault, sandbox.SeccompFiles, sandbox.SeccompUnconfined)
}

// build compiles profile for network on t. The result is a fresh value.
func build(profile string, network sandbox.Network, t Target) (*specs.LinuxSeccomp, error) {
	refusals, err := Refusals(profile, network)
	if err != nil {
		return nil, err
	}
	p, err := resolveDocker(t)
	if err != nil {
		return nil, err
	}
	refused := map[string]bool{}
	for _, r := range refusals {
		for _, n := range r.Names {
			refused[n] = true
		}
	}
	// Mode-restricted calls leave the unconditional lists too, and come back below only as
	// conditional allows, and only if Docker allowed them (Airlock never adds an allow).
	dockerAllows := allowedPlain(p)
	for _, r := range setIDModeRules() {
		for _, n := range r.Names {
			refused[n] = true
		}
	}
	removeAllowed(p, refused)
	for _, r := range refusals {
		if r.Errno != 0 {
			errno := r.Errno
			p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{
				Names: slices.Clone(r.Names), Action: specs.ActErrno, ErrnoRet: &errno,
			})
		}
	}
	for _, r := range setIDModeRules() {
		names := slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool { return !dockerAllows[n] })
		if len(names) == 0 {
			continue
		}
		// libseccomp's masked compare: Value is the mask, ValueTwo the datum, so this allows
		// the call when (arg & 06000) == 0 (runc passes them to libseccomp-golang's
		// MakeCondition in that order; Docker's clone rule uses the same form).
		p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{
			Names:  names,
			Action: specs.ActAllow,
			Args:   []specs.LinuxSeccompArg{{Index: r.Arg, Value: setIDBits, ValueTwo: 0, Op: specs.OpMaskedEqual}},
		})
	}
	if profile == sandbox.SeccompDefault {
		// One rule per family: libseccomp ANDs the conditions of one rule and ORs rules.
		for _, family := range socketFamilies(network) {
			names := []string{"socket"}
			if family == unix.AF_UNIX {
				names = append(names, "socketpair")
			}
			p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{
				Names:  names,
				Action: specs.ActAllow,
				Args:   []specs.LinuxSeccompArg{{Index: 0, Value: family, Op: specs.OpEqualTo}},
			})
		}
	}
	normalise(p)
	return p, nil
}

// allowedPlain returns the names p allows with no argument condition.
func allowedPlain(p *specs.LinuxSeccomp) map[string]bool {
	out := map[string]bool{}
	for _, r := range p.Syscalls {
		if r.Action == specs.ActAllow && len(r.Args) == 0 {
			for _, n := range r.Names {
				out[n] = true
			}
		}
	}
	return out
}

// removeAllowed drops refused names from every allow rule, and rules left without names.
// Errno rules (clone3 -> ENOSYS) are kept: they refuse, they never allow.
func removeAllowed(p *specs.LinuxSeccomp, refused map[string]bool) {
	rules := p.Syscalls[:0]
	for _, r := range p.Syscalls {
		if r.Action == specs.ActAllow {
			r.Names = slices.DeleteFunc(r.Names, func(n string) bool { return refused[n] })
			if len(r.Names) == 0 {
				continue
			}
		}
		rules = append(rules, r)
	}
	p.Syscalls = rules
}

// normalise merges every unconditional allow rule into one sorted rule at the front, so the
// golden files read as one list and a change to it is a one-line diff. Rule order does not
// change the filter's meaning: libseccomp decides per syscall, and no syscall is in both the
// unconditional list and another rule (a test checks this).
func normalise(p *specs.LinuxSeccomp) {
	var plain []string
	var rest []specs.LinuxSyscall
	for _, r := range p.Syscalls {
		if r.Action == specs.ActAllow && len(r.Args) == 0 {
			plain = append(plain, r.Names...)
			continue
		}
		rest = append(rest, r)
	}
	slices.Sort(plain)
	plain = slices.Compact(plain)
	p.Syscalls = append([]specs.LinuxSyscall{{Names: plain, Action: specs.ActAllow}}, rest...)
}
