// Package oci builds the backend-neutral, hardened OCI runtime configuration of a sandbox.Spec
// from small options, in the spirit of containerd's oci.SpecOpts: each SpecOpt changes one
// aspect of a specs.Spec and says which attack it stops, and the hardened default is simply
// the list Hardened returns. Every backend that consumes an OCI spec (runc today) starts from
// Build and adds only what is its own (container ids, cgroup paths, bundle paths).
package oci

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
)

// SpecOpt changes one aspect of an OCI spec. Options are applied in order; each does one thing
// and is tested on its own.
type SpecOpt func(*specs.Spec) error

// Hostname is the UTS host name of every sandbox; it says nothing about the host.
const Hostname = "airlock"

// InitPath is where every image holds the static airlock-toolbox (images.ToolboxPath), whose
// init mode is the pid 1 of every container (see WithInit).
const InitPath = "/.airlock/bin/airlock-toolbox"

// InitGrace is how long after Spec.Timeout the sandbox init's own deadline falls: Airlock's
// timer, at Spec.Timeout, stays the normal path, and the init's is the backstop.
const InitGrace = 2 * time.Second

// cpuPeriod is the CFS period; the quota is CPUs × cpuPeriod.
const cpuPeriod = 100000

// Sizes of the minimal /dev.
const (
	devSize    = 64 << 10 // /dev holds only device nodes and symlinks
	devShmSize = 64 << 20 // POSIX shared memory; charged to the memory cgroup like any tmpfs
)

// CopyRoot is the bundle-relative directory holding every copy mount's layers, the parent of
// every CopyDir. Backends mount a size-capped tmpfs there (package rundir).
const CopyRoot = "copy"

// CopyDir is the bundle-relative directory holding the overlay upper and work dirs of the
// spec.Mounts[i] with Access copy: CopyDir(i)+"/upper" and CopyDir(i)+"/work". WithSpecMounts
// emits them relative to the bundle; the backend resolves them against the run's private
// bundle dir, so the copy is discarded with the bundle and the host directory is never written.
func CopyDir(i int) string { return fmt.Sprintf("%s/%d", CopyRoot, i) }

// MaskedPaths are hidden from the container (bind-mounted over with /dev/null or an empty
// read-only tmpfs). They leak host kernel state (kcore: physical memory; keys: the kernel
// keyring; timer_list/sched_debug: other processes' names and timing) or expose firmware and
// hardware interfaces. The list is the union of runc's and Docker's defaults, plus the
// kernel heap and page allocator maps (slabinfo, vmallocinfo, pagetypeinfo): they are mode 0400
// root, so only the DAC owner check guards them, and a profile that runs as the workspace owner
// runs as uid 0 whenever root owns the workspace. No test needs them; kernel exploits use them
// to groom and find objects. (The kpage* maps need CAP_SYS_ADMIN to read, so they stay.)
// /proc/cmdline is the host kernel's boot command line, world-readable: it names the root
// device, the boot image and whatever the operator passed (sometimes credentials for network
// boot or an init system), none of which a tool needs.
//
// It returns a new slice on every call: callers cannot change the list for anyone else.
func MaskedPaths() []string {
	return []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/cmdline",
		"/proc/interrupts",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/pagetypeinfo",
		"/proc/sched_debug",
		"/proc/scsi",
		"/proc/slabinfo",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/vmallocinfo",
		"/sys/devices/virtual/powercap",
		"/sys/firmware",
	}
}

// ReadonlyPaths are remounted read-only: writing to them would change the host kernel
// (/proc/sys sysctls, /proc/sysrq-trigger, /proc/irq affinities), whatever namespace the
// writer is in. It returns a new slice on every call.
func ReadonlyPaths() []string {
	return []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
}

// ReservedTargets cannot be the target of a Spec mount: a host directory mounted over /proc,
// /sys or /dev would replace the masked, read-only kernel views with whatever it holds, and one
// over / would replace the image (CheckTarget refuses that too). It returns a new slice on
// every call.
func ReservedTargets() []string { return []string{"/proc", "/sys", "/dev"} }

// Build is the hardened OCI configuration for running spec from img with seccomp filter sc
// (nil only when spec.Seccomp is unconfined): the options of Hardened, then extra (a backend's
// own, such as its cgroup path). It is pure: the same inputs always give the same
// configuration.
//
// Overlay upper/work dirs of copy mounts are relative to the bundle (see CopyDir); everything
// else is absolute.
func Build(spec sandbox.Spec, img sandbox.Image, sc *specs.LinuxSeccomp, extra ...SpecOpt) (*specs.Spec, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	s := &specs.Spec{Version: specs.Version}
	if err := Apply(s, append(Hardened(spec, img, sc), extra...)...); err != nil {
		return nil, err
	}
	return s, nil
}

// Apply applies opts to s in order and stops at the first error.
func Apply(s *specs.Spec, opts ...SpecOpt) error {
	for _, o := range opts {
		if err := o(s); err != nil {
			return err
		}
	}
	return nil
}

// Hardened is the default profile: every isolation property Airlock promises, as a list of
// options, for spec run from img under seccomp filter sc. The order is part of the
// configuration (mounts are mounted in the order given).
func Hardened(spec sandbox.Spec, img sandbox.Image, sc *specs.LinuxSeccomp) []SpecOpt {
	return []SpecOpt{
		WithRootfs(img),
		WithSeccomp(spec.Seccomp, sc),
		WithProcess(spec),
		WithNoNewPrivileges(),
		WithOOMScoreAdj(1000),
		WithInit(spec.Timeout),
		WithNoCapabilities(),
		WithRlimits(spec.Limits.NoFile),
		WithHostname(Hostname),
		WithNamespaces(),
		WithProc(),
		WithDev(),
		WithDevShm(devShmSize),
		WithSysfs(),
		WithTmpfs(spec.Tmpfs),
		WithBinds(img.Binds, "image bind"),
		WithSpecMounts(spec.Mounts),
		WithEgressProxy(spec.Network, spec.Egress),
		WithMaskedPaths(),
		WithReadonlyPaths(),
		WithMemory(spec.Limits.MemoryBytes),
		WithPids(spec.Limits.Pids),
		WithCPUs(spec.Limits.CPUs),
		WithDevices(),
		WithAnnotations(spec.Labels),
	}
}

func linuxOf(s *specs.Spec) *specs.Linux {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	return s.Linux
}

func processOf(s *specs.Spec) *specs.Process {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
	return s.Process
}

func resourcesOf(s *specs.Spec) *specs.LinuxResources {
	l := linuxOf(s)
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

// WithSeccomp puts filter sc in linux.seccomp. A nil filter is accepted only for the
// unconfined profile: a missing filter must never silently mean "no filter".
func WithSeccomp(profile string, sc *specs.LinuxSeccomp) SpecOpt {
	return func(s *specs.Spec) error {
		if sc == nil && profile != sandbox.SeccompUnconfined {
			return fmt.Errorf("seccomp profile %q: no filter given; refusing to run without seccomp", profile)
		}
		linuxOf(s).Seccomp = sc
		return nil
	}
}

// WithRootfs uses the image's root file system in place, read-only: nothing a run does can
// change the image the next run starts from. A relative rootfs is refused: it would be
// resolved against whatever directory the runtime happens to run in.
func WithRootfs(img sandbox.Image) SpecOpt {
	return func(s *specs.Spec) error {
		if !path.IsAbs(img.Rootfs) {
			return fmt.Errorf("image %q: rootfs %q is not an absolute path; rebuild it with `airlock images build %s`", img.Name, img.Rootfs, img.Name)
		}
		s.Root = &specs.Root{Path: img.Rootfs, Readonly: true}
		linuxOf(s).RootfsPropagation = "rprivate"
		return nil
	}
}

// WithProcess sets the command, its environment (exactly spec.Env: nothing of the host's
// environment, which holds tokens and keys, is inherited), its directory and its identity
// (spec.User only, no supplementary groups), without a terminal.
func WithProcess(spec sandbox.Spec) SpecOpt {
	return func(s *specs.Spec) error {
		p := processOf(s)
		p.Terminal = false
		p.User = specs.User{UID: spec.User.UID, GID: spec.User.GID}
		p.Args = slices.Clone(spec.Argv)
		p.Env = append([]string{}, spec.Env...)
		p.Cwd = path.Clean(spec.Workdir)
		return nil
	}
}

// WithNoNewPrivileges sets no_new_privileges: setuid binaries and file capabilities in the
// image cannot raise the command's privileges.
func WithNoNewPrivileges() SpecOpt {
	return func(s *specs.Spec) error { processOf(s).NoNewPrivileges = true; return nil }
}

// WithOOMScoreAdj sets the command's OOM score adjustment: with 1000, under host-wide memory
// pressure, sandboxed tools die first, before Airlock or anything else on the host.
func WithOOMScoreAdj(score int) SpecOpt {
	return func(s *specs.Spec) error { processOf(s).OOMScoreAdj = &score; return nil }
}

// WithInit makes the sandbox init (the image's airlock-toolbox in init mode) the container's
// pid 1 and the command its child; apply it after WithProcess. The init kills every process
// and exits 124 at its own deadline, timeout plus InitGrace, whether or not Airlock is still
// there: if Airlock is SIGKILLed or OOM-killed mid-call, the runtime dies with it and no host
// timer is left, so without the init the command would run unbounded until the next Airlock
// start reaped it. The init starts the command as the runtime did (same argv lookup,
// environment, directory and descriptors) and passes its exit status on, so results read as
// before; it never widens anything: it runs as the command's user, under the same
// capabilities, seccomp filter and limits. The command follows "--", so nothing in it is read
// as an option of the init.
func WithInit(timeout time.Duration) SpecOpt {
	return func(s *specs.Spec) error {
		p := processOf(s)
		p.Args = append([]string{InitPath, "init", "--deadline", (timeout + InitGrace).String(), "--"}, p.Args...)
		return nil
	}
}

// EgressEnv is what WithEgressProxy sets in the command's environment: the proxy variables every
// common client reads (curl, wget, pip, npm, git, Go, Python; some only the lower-case ones)
// pointing at the in-sandbox forwarder, with loopback exempted so servers a tool starts for
// itself stay reachable directly. It returns a new slice on every call.
func EgressEnv() []string {
	proxy := "http://" + sandbox.EgressListen
	const noProxy = "localhost,127.0.0.1,::1"
	return []string{
		"HTTP_PROXY=" + proxy, "HTTPS_PROXY=" + proxy, "http_proxy=" + proxy, "https_proxy=" + proxy,
		"NO_PROXY=" + noProxy, "no_proxy=" + noProxy,
	}
}

// egressBindOptions: read-only (connecting to a socket needs write permission on the inode,
// which a read-only mount does not take away, while chmod, chown and utimes through it fail),
// and nosuid, nodev, noexec, though a socket can be none of those things.
func egressBindOptions() []string {
	return []string{"bind", "rprivate", "nosuid", "nodev", "noexec", "ro"}
}

// WithEgressProxy gives a NetworkProxy run its one way out, and does nothing for NetworkNone;
// apply it after WithProcess and WithInit. The network namespace stays empty (loopback only):
//
//   - egress.Socket, the host proxy's Unix socket, is bind-mounted at
//     sandbox.EgressSocketTarget (the image's empty file there is the mount point);
//   - the init gets "--egress LISTEN=SOCKET": before it starts the command it listens on
//     sandbox.EgressListen itself, so the command's first connection cannot race a forwarder
//     that is not up yet, and hands the listener to a forwarder process
//     (`airlock-toolbox egress-forward`) that pipes each connection to the socket; the
//     forwarder dies with the container, and the deadline kills it like everything else;
//   - the environment gets EgressEnv, replacing any value of the same keys, so every client
//     that honours proxy variables goes through the proxy, where policy is enforced.
//
// Nothing here is a security boundary inside the sandbox: the command could connect to the
// socket itself. What the run can reach is decided by the proxy on the host.
func WithEgressProxy(network sandbox.Network, egress *sandbox.Egress) SpecOpt {
	return func(s *specs.Spec) error {
		switch {
		case network == sandbox.NetworkNone && egress == nil:
			return nil
		case network != sandbox.NetworkProxy || egress == nil:
			return fmt.Errorf("%w: network %q with egress %v: an egress proxy goes with network proxy only", sandbox.ErrInvalidSpec, network, egress)
		}
		p := processOf(s)
		if len(p.Args) < 5 || p.Args[0] != InitPath || p.Args[1] != "init" || p.Args[2] != "--deadline" {
			return fmt.Errorf("egress proxy: the process is not the sandbox init (apply WithEgressProxy after WithInit)")
		}
		args := slices.Clone(p.Args[:4])
		args = append(args, "--egress", sandbox.EgressListen+"="+sandbox.EgressSocketTarget)
		p.Args = append(args, p.Args[4:]...)
		env := EgressEnv()
		p.Env = slices.DeleteFunc(p.Env, func(e string) bool {
			k, _, _ := strings.Cut(e, "=")
			return slices.ContainsFunc(env, func(n string) bool { return strings.HasPrefix(n, k+"=") })
		})
		p.Env = append(p.Env, env...)
		if egress.Socket == "" {
			return fmt.Errorf("%w: no egress proxy runs for this sandbox (its socket is unset); Airlock's runtime starts one for a profile's network.allow, and the run is refused without it", sandbox.ErrInvalidSpec)
		}
		src := path.Clean(egress.Socket)
		if !path.IsAbs(src) {
			return fmt.Errorf("%w: egress socket %q is not an absolute path", sandbox.ErrInvalidSpec, egress.Socket)
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: sandbox.EgressSocketTarget, Type: "bind", Source: src, Options: egressBindOptions()})
		return nil
	}
}

// WithNoCapabilities empties all five capability sets: even uid 0 inside the container could
// not use a privileged operation.
func WithNoCapabilities() SpecOpt {
	return func(s *specs.Spec) error {
		processOf(s).Capabilities = &specs.LinuxCapabilities{
			Bounding:    []string{},
			Effective:   []string{},
			Inheritable: []string{},
			Permitted:   []string{},
			Ambient:     []string{},
		}
		return nil
	}
}

// WithRlimits: no core dumps (they would write the process's memory, secrets included, to
// disk) and, when noFile > 0, a bounded number of open files.
func WithRlimits(noFile uint64) SpecOpt {
	return func(s *specs.Spec) error {
		p := processOf(s)
		p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Hard: 0, Soft: 0}}
		if noFile > 0 {
			p.Rlimits = append(p.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: noFile, Soft: noFile})
		}
		return nil
	}
}

// WithHostname sets the UTS host name (in the new UTS namespace), so the host's own name, which
// often identifies the machine, its owner or its role, does not leak.
func WithHostname(name string) SpecOpt {
	return func(s *specs.Spec) error { s.Hostname = name; return nil }
}

// WithNamespaces gives every run new pid, ipc, uts, mount, network and cgroup namespaces. The
// new network namespace has only loopback (the runtime brings lo up), so there is no route
// out; the pid namespace makes killing the init kill every process the command started.
func WithNamespaces() SpecOpt {
	return func(s *specs.Spec) error {
		linuxOf(s).Namespaces = []specs.LinuxNamespace{
			{Type: specs.PIDNamespace},
			{Type: specs.IPCNamespace},
			{Type: specs.UTSNamespace},
			{Type: specs.MountNamespace},
			{Type: specs.NetworkNamespace},
			{Type: specs.CgroupNamespace},
		}
		return nil
	}
}

// WithProc mounts a private /proc of the new pid namespace: other processes of the host are not
// visible. No cgroupfs is mounted by any option.
func WithProc() SpecOpt {
	return func(s *specs.Spec) error {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}})
		return nil
	}
}

// WithDev mounts a minimal /dev (a small tmpfs to which the runtime adds only null, zero, full,
// random, urandom, tty and the /dev/fd links; no host device is reachable) and a private devpts
// instance, so the host's terminals are not.
func WithDev() SpecOpt {
	return func(s *specs.Spec) error {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "noexec", "strictatime", "mode=755", fmt.Sprintf("size=%d", devSize)}},
			specs.Mount{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		)
		return nil
	}
}

// WithDevShm mounts a private /dev/shm capped at size bytes: POSIX shared memory is not shared
// with the host or other runs, and cannot grow beyond the cap (its pages are charged to the
// memory cgroup as well).
func WithDevShm(size int64) SpecOpt {
	return func(s *specs.Spec) error {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", fmt.Sprintf("size=%d", size)}})
		return nil
	}
}

// WithSysfs mounts /sys read-only: nothing written there can reconfigure the host's devices or
// kernel.
func WithSysfs() SpecOpt {
	return func(s *specs.Spec) error {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}})
		return nil
	}
}

// WithTmpfs adds the Spec's size-capped tmpfs mounts (/tmp by default): a command cannot fill
// the host's disk through them. They are nosuid and nodev but executable: test runners build
// and run binaries in /tmp.
func WithTmpfs(tmpfs []sandbox.Tmpfs) SpecOpt {
	return func(s *specs.Spec) error {
		for _, t := range tmpfs {
			target := path.Clean(t.Target)
			if err := CheckTarget(target); err != nil {
				return err
			}
			mode := t.Mode
			if mode == 0 {
				mode = 0o1777
			}
			s.Mounts = append(s.Mounts, specs.Mount{
				Destination: target, Type: "tmpfs", Source: "tmpfs",
				Options: []string{"nosuid", "nodev", fmt.Sprintf("mode=%o", mode), fmt.Sprintf("size=%d", t.SizeBytes)},
			})
		}
		return nil
	}
}

// WithBinds adds read-only binds (the image's host binds are always read-only, whatever their
// declared access). what names them in errors.
func WithBinds(binds []sandbox.Mount, what string) SpecOpt {
	return func(s *specs.Spec) error {
		for _, m := range binds {
			mnt, err := BindMount(m, sandbox.ReadOnly, what)
			if err != nil {
				return err
			}
			s.Mounts = append(s.Mounts, mnt)
		}
		return nil
	}
}

// WithSpecMounts adds the workspace and other host directories: ro and rw as binds, copy as an
// overlay whose upper layer lives in the bundle (see CopyDir).
func WithSpecMounts(mounts []sandbox.Mount) SpecOpt {
	return func(s *specs.Spec) error {
		for i, m := range mounts {
			if m.Access != sandbox.CopyOnWrite {
				mnt, err := BindMount(m, m.Access, "mount")
				if err != nil {
					return err
				}
				s.Mounts = append(s.Mounts, mnt)
				continue
			}
			src, target := path.Clean(m.Source), path.Clean(m.Target)
			if err := CheckTarget(target); err != nil {
				return err
			}
			// Overlay takes its layers as a comma/colon separated option string: a source
			// path containing ',' or ':' could smuggle in another lowerdir or an upperdir
			// on the host, so such paths are refused rather than escaped.
			if strings.ContainsAny(src, ",:\\") {
				return fmt.Errorf("%w: copy mount %s: source %q contains ',', ':' or '\\', which overlayfs cannot take; rename the directory or use access ro", sandbox.ErrInvalidSpec, target, src)
			}
			dir := CopyDir(i)
			s.Mounts = append(s.Mounts, specs.Mount{
				Destination: target, Type: "overlay", Source: "overlay",
				Options: []string{"lowerdir=" + src, "upperdir=" + dir + "/upper", "workdir=" + dir + "/work", "nosuid", "nodev"},
			})
		}
		return nil
	}
}

// BindMount is a non-recursive bind (submounts under the source stay hidden, so a read-only
// bind cannot expose a writable submount), always nosuid and nodev, and read-only unless
// access is rw. what names the mount in errors.
func BindMount(m sandbox.Mount, access sandbox.Access, what string) (specs.Mount, error) {
	src, target := path.Clean(m.Source), path.Clean(m.Target)
	if !path.IsAbs(src) || !path.IsAbs(target) {
		return specs.Mount{}, fmt.Errorf("%w: %s %s:%s: source and target must be absolute", sandbox.ErrInvalidSpec, what, m.Source, m.Target)
	}
	if err := CheckTarget(target); err != nil {
		return specs.Mount{}, err
	}
	opts := []string{"bind", "rprivate", "nosuid", "nodev"}
	switch access {
	case sandbox.ReadOnly:
		opts = append(opts, "ro")
	case sandbox.ReadWrite:
		opts = append(opts, "rw")
	default:
		return specs.Mount{}, fmt.Errorf("%w: %s %s: access %q is not one of ro, rw, copy", sandbox.ErrInvalidSpec, what, target, access)
	}
	return specs.Mount{Destination: target, Type: "bind", Source: src, Options: opts}, nil
}

// CheckTarget refuses a mount target (already cleaned) that is / or under one of
// ReservedTargets, with sandbox.ErrInvalidSpec.
func CheckTarget(target string) error {
	if target == "/" {
		return fmt.Errorf("%w: a mount cannot replace the root file system; pick a target such as %s", sandbox.ErrInvalidSpec, sandbox.WorkspaceTarget)
	}
	for _, r := range ReservedTargets() {
		if target == r || strings.HasPrefix(target, r+"/") {
			return fmt.Errorf("%w: mount target %s is under %s, which Airlock provides itself; pick another target", sandbox.ErrInvalidSpec, target, r)
		}
	}
	return nil
}

// WithMaskedPaths hides MaskedPaths from the container (see there for what each leaks).
func WithMaskedPaths() SpecOpt {
	return func(s *specs.Spec) error { linuxOf(s).MaskedPaths = MaskedPaths(); return nil }
}

// WithReadonlyPaths makes ReadonlyPaths read-only: writing them would change the host kernel.
func WithReadonlyPaths() SpecOpt {
	return func(s *specs.Spec) error { linuxOf(s).ReadonlyPaths = ReadonlyPaths(); return nil }
}

// WithMemory caps memory at limit bytes with swap equal to it: no swap beyond the limit, so a
// command cannot push the host into swapping; past the limit it is OOM-killed.
func WithMemory(limit int64) SpecOpt {
	return func(s *specs.Spec) error {
		swap := limit
		resourcesOf(s).Memory = &specs.LinuxMemory{Limit: &limit, Swap: &swap}
		return nil
	}
}

// WithPids caps the number of tasks: fork bombs stop at the limit.
func WithPids(limit int64) SpecOpt {
	return func(s *specs.Spec) error { resourcesOf(s).Pids = &specs.LinuxPids{Limit: &limit}; return nil }
}

// WithCPUs sets a CFS CPU quota of cpus CPUs: a busy loop cannot take more of the host.
func WithCPUs(cpus float64) SpecOpt {
	return func(s *specs.Spec) error {
		quota := int64(math.Ceil(cpus * cpuPeriod))
		period := uint64(cpuPeriod)
		resourcesOf(s).CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
		return nil
	}
}

// WithDevices denies every device in the device cgroup: no device access beyond the runtime's
// minimal defaults, so a device node made or found in the container opens nothing of the host.
func WithDevices() SpecOpt {
	return func(s *specs.Spec) error {
		resourcesOf(s).Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
		return nil
	}
}

// WithAnnotations copies the Spec's labels and marks the container as Airlock's ("airlock":
// "1"), so leftovers are recognisable. A backend adds its own keys after it.
func WithAnnotations(labels map[string]string) SpecOpt {
	return func(s *specs.Spec) error {
		if s.Annotations == nil {
			s.Annotations = make(map[string]string, len(labels)+2)
		}
		for k, v := range labels {
			s.Annotations[k] = v
		}
		s.Annotations["airlock"] = "1"
		return nil
	}
}
