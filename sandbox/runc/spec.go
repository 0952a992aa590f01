package runc

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

// Annotation keys Airlock puts on every container besides the Spec's labels.
const (
	// AnnotationOwner holds the owner token of the Backend that started the container, so a
	// leftover can be traced to the (dead) process that made it.
	AnnotationOwner = "airlock.owner"
)

// Hostname is the UTS host name of every sandbox; it says nothing about the host.
const Hostname = "airlock"

// DefaultCgroupParent is the cgroup under which every container gets "/<parent>/<id>".
const DefaultCgroupParent = "airlock"

// cpuPeriod is the CFS period; the quota is CPUs × cpuPeriod.
const cpuPeriod = 100000

// initPath is where every image holds the static airlock-toolbox (images.ToolboxPath), whose
// init mode is the pid 1 of every container (see withInit).
const initPath = "/.airlock/bin/airlock-toolbox"

// initGrace is how long after Spec.Timeout the sandbox init's own deadline falls: Airlock's
// timer, at Spec.Timeout, stays the normal path, and the init's is the backstop.
const initGrace = 2 * time.Second

// Sizes of the minimal /dev.
const (
	devSize    = 64 << 10 // /dev holds only device nodes and symlinks
	devShmSize = 64 << 20 // POSIX shared memory; charged to the memory cgroup like any tmpfs
)

// CopyDir is the bundle-relative directory holding the overlay upper and work dirs of the
// spec.Mounts[i] with Access copy: CopyDir(i)+"/upper" and CopyDir(i)+"/work". OCIConfig emits
// them relative to the bundle; the backend resolves them against the run's private bundle dir,
// so the copy is discarded with the bundle and the host directory is never written.
func CopyDir(i int) string { return fmt.Sprintf("copy/%d", i) }

// maskedPaths are hidden from the container (bind-mounted over with /dev/null or an empty
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
var maskedPaths = []string{
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

// readonlyPaths are remounted read-only: writing to them would change the host kernel
// (/proc/sys sysctls, /proc/sysrq-trigger, /proc/irq affinities), whatever namespace the
// writer is in.
var readonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// reservedTargets cannot be the target of a Spec mount: a host directory mounted over /proc,
// /sys or /dev would replace the masked, read-only kernel views with whatever it holds, and one
// over / would replace the image.
var reservedTargets = []string{"/proc", "/sys", "/dev"}

// parseID splits a container id "airlock-<owner>-<seq>" into its owner token: the id must be
// exactly "airlock-", 1 to 32 lower-case hex digits, "-" and one or more decimal digits.
// (Hand-written rather than a package-level regexp: compiling one costs every airlock process
// at start-up, and `airlock exec` pays start-up on every call.)
func parseID(id string) (owner string, ok bool) {
	rest, ok := strings.CutPrefix(id, "airlock-")
	if !ok {
		return "", false
	}
	owner, seq, ok := strings.Cut(rest, "-")
	if !ok || len(owner) < 1 || len(owner) > 32 || len(seq) < 1 {
		return "", false
	}
	for _, c := range []byte(owner) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	for _, c := range []byte(seq) {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return owner, true
}

// specOpt changes one aspect of an OCI spec. The hardened configuration is the list in
// OCIConfig; each option does one thing and is tested on its own.
type specOpt func(*specs.Spec) error

// OCIConfig is the OCI runtime configuration for running spec from img as container id, with
// seccomp filter sc (nil only when spec.Seccomp is unconfined). It is pure: the same inputs
// always give the same configuration, which testdata/*.json pins.
//
// Overlay upper/work dirs of copy mounts are relative to the bundle (see CopyDir); everything
// else is absolute. linux.cgroupsPath uses DefaultCgroupParent; a Backend with another
// Config.CgroupParent replaces it.
func OCIConfig(spec sandbox.Spec, img sandbox.Image, id string, sc *specs.LinuxSeccomp) (*specs.Spec, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	owner, ok := parseID(id)
	if !ok {
		return nil, fmt.Errorf("container id %q: want airlock-<owner hex>-<number>", id)
	}
	if !path.IsAbs(img.Rootfs) {
		return nil, fmt.Errorf("image %q: rootfs %q is not an absolute path; rebuild it with `airlock images build %s`", img.Name, img.Rootfs, img.Name)
	}
	if sc == nil && spec.Seccomp != sandbox.SeccompUnconfined {
		// A missing filter must never silently mean "no filter".
		return nil, fmt.Errorf("seccomp profile %q: no filter given; refusing to run without seccomp", spec.Seccomp)
	}
	s := &specs.Spec{Version: specs.Version}
	opts := []specOpt{
		withRootfs(img.Rootfs),
		withProcess(spec),
		withInit(spec.Timeout),
		withNoCapabilities(),
		withRlimits(spec.Limits.NoFile),
		withHostname(Hostname),
		withNamespaces(),
		withBaseMounts(),
		withTmpfs(spec.Tmpfs),
		withBinds(img.Binds, "image bind"),
		withSpecMounts(spec.Mounts),
		withMaskedPaths(),
		withResources(spec.Limits),
		withCgroupsPath(CgroupsPath(DefaultCgroupParent, id)),
		withSeccomp(sc),
		withAnnotations(spec.Labels, owner),
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func linuxOf(s *specs.Spec) *specs.Linux {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	return s.Linux
}

func resourcesOf(s *specs.Spec) *specs.LinuxResources {
	l := linuxOf(s)
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

// withRootfs uses the image's root file system in place, read-only: nothing a run does can
// change the image the next run starts from.
func withRootfs(rootfs string) specOpt {
	return func(s *specs.Spec) error {
		s.Root = &specs.Root{Path: rootfs, Readonly: true}
		linuxOf(s).RootfsPropagation = "rprivate"
		return nil
	}
}

// withProcess sets the command, its environment (exactly spec.Env: nothing of the host's
// environment, which holds tokens and keys, is inherited), its directory and its identity.
// no_new_privileges stops setuid binaries and file capabilities in the image from raising it.
func withProcess(spec sandbox.Spec) specOpt {
	return func(s *specs.Spec) error {
		oomScore := 1000 // under host-wide memory pressure, sandboxed tools die first
		s.Process = &specs.Process{
			Terminal:        false,
			User:            specs.User{UID: spec.User.UID, GID: spec.User.GID},
			Args:            slices.Clone(spec.Argv),
			Env:             append([]string{}, spec.Env...),
			Cwd:             path.Clean(spec.Workdir),
			NoNewPrivileges: true,
			OOMScoreAdj:     &oomScore,
		}
		return nil
	}
}

// withInit makes the sandbox init (the image's airlock-toolbox in init mode) the container's
// pid 1 and the command its child. The init kills every process and exits 124 at its own
// deadline, Spec.Timeout plus initGrace, whether or not Airlock is still there: if Airlock is
// SIGKILLed or OOM-killed mid-call, runc dies with it and no host timer is left, so without
// the init the command would run unbounded until the next Airlock start reaped it. The init
// starts the command as runc did (same argv lookup, environment, directory and descriptors)
// and passes its exit status on, so results read as before; it never widens anything: it runs
// as the command's user, under the same capabilities, seccomp filter and limits.
func withInit(timeout time.Duration) specOpt {
	return func(s *specs.Spec) error {
		s.Process.Args = append([]string{initPath, "init", "--deadline", (timeout + initGrace).String(), "--"}, s.Process.Args...)
		return nil
	}
}

// withNoCapabilities empties all five capability sets: even uid 0 inside the container could
// not use a privileged operation.
func withNoCapabilities() specOpt {
	return func(s *specs.Spec) error {
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding:    []string{},
			Effective:   []string{},
			Inheritable: []string{},
			Permitted:   []string{},
			Ambient:     []string{},
		}
		return nil
	}
}

// withRlimits: no core dumps (they would write the process's memory, secrets included, to
// disk) and a bounded number of open files.
func withRlimits(noFile uint64) specOpt {
	return func(s *specs.Spec) error {
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Hard: 0, Soft: 0}}
		if noFile > 0 {
			s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: noFile, Soft: noFile})
		}
		return nil
	}
}

func withHostname(name string) specOpt {
	return func(s *specs.Spec) error { s.Hostname = name; return nil }
}

// withNamespaces gives every run new pid, ipc, uts, mount, network and cgroup namespaces. The
// new network namespace has only loopback (runc brings lo up), so there is no route out; the
// pid namespace makes killing the init kill every process the command started.
func withNamespaces() specOpt {
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

// withBaseMounts: a private /proc of the new pid namespace, a minimal /dev (runc adds only
// null, zero, full, random, urandom, tty and the /dev/fd links), a private devpts, a capped
// /dev/shm, and a read-only /sys. No cgroupfs is mounted.
func withBaseMounts() specOpt {
	return func(s *specs.Spec) error {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			specs.Mount{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "noexec", "strictatime", "mode=755", fmt.Sprintf("size=%d", devSize)}},
			specs.Mount{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", fmt.Sprintf("size=%d", devShmSize)}},
			specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		)
		return nil
	}
}

// withTmpfs adds the Spec's size-capped tmpfs mounts (/tmp by default). They are nosuid and
// nodev but executable: test runners build and run binaries in /tmp.
func withTmpfs(tmpfs []sandbox.Tmpfs) specOpt {
	return func(s *specs.Spec) error {
		for _, t := range tmpfs {
			target := path.Clean(t.Target)
			if err := checkTarget(target); err != nil {
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

// withBinds adds read-only binds (the image's host binds are always read-only, whatever their
// declared access).
func withBinds(binds []sandbox.Mount, what string) specOpt {
	return func(s *specs.Spec) error {
		for _, m := range binds {
			mnt, err := bindMount(m, sandbox.ReadOnly, what)
			if err != nil {
				return err
			}
			s.Mounts = append(s.Mounts, mnt)
		}
		return nil
	}
}

// withSpecMounts adds the workspace and other host directories: ro and rw as binds, copy as an
// overlay whose upper layer lives in the bundle (see CopyDir).
func withSpecMounts(mounts []sandbox.Mount) specOpt {
	return func(s *specs.Spec) error {
		for i, m := range mounts {
			if m.Access != sandbox.CopyOnWrite {
				mnt, err := bindMount(m, m.Access, "mount")
				if err != nil {
					return err
				}
				s.Mounts = append(s.Mounts, mnt)
				continue
			}
			src, target := path.Clean(m.Source), path.Clean(m.Target)
			if err := checkTarget(target); err != nil {
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

// bindMount is a non-recursive bind (submounts under the source stay hidden, so a read-only
// bind cannot expose a writable submount), always nosuid and nodev, and read-only unless
// access is rw.
func bindMount(m sandbox.Mount, access sandbox.Access, what string) (specs.Mount, error) {
	src, target := path.Clean(m.Source), path.Clean(m.Target)
	if !path.IsAbs(src) || !path.IsAbs(target) {
		return specs.Mount{}, fmt.Errorf("%w: %s %s:%s: source and target must be absolute", sandbox.ErrInvalidSpec, what, m.Source, m.Target)
	}
	if err := checkTarget(target); err != nil {
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

func checkTarget(target string) error {
	if target == "/" {
		return fmt.Errorf("%w: a mount cannot replace the root file system; pick a target such as %s", sandbox.ErrInvalidSpec, sandbox.WorkspaceTarget)
	}
	for _, r := range reservedTargets {
		if target == r || strings.HasPrefix(target, r+"/") {
			return fmt.Errorf("%w: mount target %s is under %s, which Airlock provides itself; pick another target", sandbox.ErrInvalidSpec, target, r)
		}
	}
	return nil
}

func withMaskedPaths() specOpt {
	return func(s *specs.Spec) error {
		l := linuxOf(s)
		l.MaskedPaths = slices.Clone(maskedPaths)
		l.ReadonlyPaths = slices.Clone(readonlyPaths)
		return nil
	}
}

// withResources: memory with swap equal (no swap beyond the limit), a pids cap (fork bombs
// stop at the limit), a CFS CPU quota, and no device access beyond runc's minimal defaults.
func withResources(l sandbox.Limits) specOpt {
	return func(s *specs.Spec) error {
		r := resourcesOf(s)
		mem, pids := l.MemoryBytes, l.Pids
		swap := mem
		quota := int64(math.Ceil(l.CPUs * cpuPeriod))
		period := uint64(cpuPeriod)
		r.Memory = &specs.LinuxMemory{Limit: &mem, Swap: &swap}
		r.Pids = &specs.LinuxPids{Limit: &pids}
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
		r.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
		return nil
	}
}

// CgroupsPath is the container's cgroup: "/<parent>/<id>".
func CgroupsPath(parent, id string) string { return "/" + parent + "/" + id }

func withCgroupsPath(p string) specOpt {
	return func(s *specs.Spec) error { linuxOf(s).CgroupsPath = p; return nil }
}

func withSeccomp(sc *specs.LinuxSeccomp) specOpt {
	return func(s *specs.Spec) error { linuxOf(s).Seccomp = sc; return nil }
}

// withAnnotations copies the Spec's labels and adds the owner token, so leftovers are
// recognisable as Airlock's and attributable to the process that made them.
func withAnnotations(labels map[string]string, owner string) specOpt {
	return func(s *specs.Spec) error {
		s.Annotations = make(map[string]string, len(labels)+2)
		for k, v := range labels {
			s.Annotations[k] = v
		}
		s.Annotations["airlock"] = "1"
		s.Annotations[AnnotationOwner] = owner
		return nil
	}
}
