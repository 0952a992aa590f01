package docker

import (
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
)

// Target is what Translate needs besides the OCI spec: where the container's parts come from
// on this daemon.
type Target struct {
	// Image is the daemon's reference of the imported root file system (see Backend.image).
	Image string
	// Runtime is the OCI runtime registered with the daemon ("" = the daemon's default).
	Runtime string
	// CopyRoot is the absolute host directory the relative upper/work dirs of copy mounts
	// (oci.CopyDir) resolve against: the run's private directory.
	CopyRoot string
	// Labels are added to the spec's annotations (the owner's bookkeeping labels).
	Labels map[string]string
	// Stdin opens the container's stdin for one attached writer (Spec.Stdin != nil);
	// otherwise the command's stdin is /dev/null.
	Stdin bool
	// CgroupParent is the cgroup the daemon places the container under ("" = the daemon's
	// default, /docker with the cgroupfs driver).
	CgroupParent string
}

// Docker's own mounts, which Translate leaves to the daemon after checking that the OCI spec
// asks for nothing else: Docker mounts these itself for every unprivileged container, with
// the same options (see the parity test for the differences that remain).
var dockerOwnMounts = map[string]struct {
	typ     string
	options []string
}{
	"/proc":    {"proc", []string{"nosuid", "noexec", "nodev"}},
	"/dev":     {"tmpfs", nil}, // options checked in translateMounts
	"/dev/pts": {"devpts", []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
	"/sys":     {"sysfs", []string{"nosuid", "noexec", "nodev", "ro"}},
}

// Translate turns the hardened OCI configuration of a run (oci.Build) into Docker's typed
// create request. It is pure, and it refuses (with an error) every part of the spec it cannot
// express, rather than dropping it: a hardening option added to oci.Hardened later fails here
// loudly until it has a Docker counterpart. Fields Docker fixes for every container are set
// explicitly where a daemon default could loosen them (ipc and cgroup namespaces, init,
// logging, privileges).
func Translate(s *specs.Spec, t Target) (*container.Config, *container.HostConfig, error) {
	if s == nil || s.Process == nil || s.Linux == nil || s.Root == nil {
		return nil, nil, fmt.Errorf("docker: incomplete OCI spec (process, linux and root are required)")
	}
	if t.Image == "" {
		return nil, nil, fmt.Errorf("docker: no image reference")
	}
	cfg := &container.Config{
		Image:    t.Image,
		Hostname: s.Hostname,
		// With the network disabled the daemon skips libnetwork altogether: no sandbox, no
		// prestart hook that re-executes dockerd to set it up, no /etc/hosts or resolv.conf.
		// The runtime still creates the OCI spec's new network namespace and brings up its
		// loopback, exactly as for runc, so NetworkMode none below is belt and braces.
		NetworkDisabled: true,
		AttachStdout:    true,
		AttachStderr:    true,
		AttachStdin:     t.Stdin,
		OpenStdin:       t.Stdin,
		StdinOnce:       t.Stdin,
		Labels:          map[string]string{},
	}
	hc := &container.HostConfig{
		// The container has a new network namespace with only loopback.
		NetworkMode: "none",
		// Output is streamed through the attach connection under the run's caps and never
		// stored by the daemon, where it would outlive the call unredacted.
		LogConfig:     container.LogConfig{Type: "none"},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Runtime:       t.Runtime,
		// The sandbox init from the image is pid 1 (the entrypoint); Docker's own init
		// (docker-init, which a daemon's "init": true would add) would sit above it and
		// outlive the init's deadline logic.
		Init: new(bool),
	}
	hc.CgroupParent = t.CgroupParent
	if s.Domainname != "" {
		return nil, nil, fmt.Errorf("docker: domain name %q is not supported", s.Domainname)
	}
	if err := translateRoot(s, hc); err != nil {
		return nil, nil, err
	}
	if err := translateProcess(s.Process, cfg, hc); err != nil {
		return nil, nil, err
	}
	if err := translateLinux(s.Linux, hc); err != nil {
		return nil, nil, err
	}
	if err := translateMounts(s.Mounts, t.CopyRoot, hc); err != nil {
		return nil, nil, err
	}
	maps.Copy(cfg.Labels, s.Annotations)
	maps.Copy(cfg.Labels, t.Labels)
	return cfg, hc, nil
}

func translateRoot(s *specs.Spec, hc *container.HostConfig) error {
	if !s.Root.Readonly {
		return fmt.Errorf("docker: the OCI spec's root is writable; Airlock never runs a writable root")
	}
	hc.ReadonlyRootfs = true
	// Docker does not take a root propagation; runc's default (rslave) only lets host mount
	// events in, never container mounts out, which is what rprivate guards against.
	switch s.Linux.RootfsPropagation {
	case "", "rprivate", "private", "rslave", "slave":
	default:
		return fmt.Errorf("docker: root propagation %q is not supported", s.Linux.RootfsPropagation)
	}
	return nil
}

func translateProcess(p *specs.Process, cfg *container.Config, hc *container.HostConfig) error {
	if p.Terminal {
		return fmt.Errorf("docker: a terminal is not supported")
	}
	if len(p.Args) == 0 {
		return fmt.Errorf("docker: no command")
	}
	if len(p.User.AdditionalGids) > 0 || p.User.Username != "" || p.User.Umask != nil {
		return fmt.Errorf("docker: only a numeric uid:gid user is supported")
	}
	if p.ApparmorProfile != "" || p.SelinuxLabel != "" || p.Scheduler != nil || p.IOPriority != nil || p.ExecCPUAffinity != nil || p.ConsoleSize != nil {
		return fmt.Errorf("docker: process options beyond Airlock's hardening are not supported")
	}
	cfg.User = fmt.Sprintf("%d:%d", p.User.UID, p.User.GID)
	// The whole command line (the sandbox init, then the command after "--") is the
	// entrypoint; Cmd is empty, so nothing of an image configuration is appended.
	cfg.Entrypoint = slices.Clone(p.Args)
	cfg.Cmd = []string{}
	cfg.Env = append([]string{}, p.Env...)
	cfg.WorkingDir = p.Cwd
	if c := p.Capabilities; c != nil {
		for _, set := range [][]string{c.Bounding, c.Effective, c.Inheritable, c.Permitted, c.Ambient} {
			if len(set) > 0 {
				return fmt.Errorf("docker: capabilities %v: only an empty capability set is supported", set)
			}
		}
		hc.CapDrop = []string{"ALL"}
	} else {
		return fmt.Errorf("docker: the OCI spec has no capability sets; Docker would grant its defaults")
	}
	if p.NoNewPrivileges {
		hc.SecurityOpt = append(hc.SecurityOpt, "no-new-privileges:true")
	}
	if p.OOMScoreAdj != nil {
		hc.OomScoreAdj = *p.OOMScoreAdj
	}
	for _, rl := range p.Rlimits {
		name, ok := strings.CutPrefix(rl.Type, "RLIMIT_")
		if !ok {
			return fmt.Errorf("docker: rlimit %q is not an RLIMIT_ name", rl.Type)
		}
		hc.Ulimits = append(hc.Ulimits, &container.Ulimit{Name: strings.ToLower(name), Soft: int64(rl.Soft), Hard: int64(rl.Hard)})
	}
	return nil
}

func translateLinux(l *specs.Linux, hc *container.HostConfig) error {
	if l.CgroupsPath != "" || len(l.Sysctl) > 0 || len(l.Devices) > 0 || len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0 ||
		l.IntelRdt != nil || l.Personality != nil || l.MountLabel != "" || l.TimeOffsets != nil || l.MemoryPolicy != nil || l.NetDevices != nil {
		return fmt.Errorf("docker: linux options beyond Airlock's hardening are not supported")
	}
	want := map[specs.LinuxNamespaceType]bool{
		specs.PIDNamespace: true, specs.IPCNamespace: true, specs.UTSNamespace: true,
		specs.MountNamespace: true, specs.NetworkNamespace: true, specs.CgroupNamespace: true,
	}
	for _, ns := range l.Namespaces {
		if ns.Path != "" {
			return fmt.Errorf("docker: joining the %s namespace at %s is not supported", ns.Type, ns.Path)
		}
		if !want[ns.Type] {
			return fmt.Errorf("docker: a new %s namespace is not supported", ns.Type)
		}
		delete(want, ns.Type)
	}
	if len(want) > 0 {
		return fmt.Errorf("docker: the OCI spec shares namespaces with the host (%v); Airlock never does", slices.Sorted(maps.Keys(want)))
	}
	// pid, uts and mount namespaces are always new in Docker; ipc and cgroup depend on daemon
	// defaults (shareable ipc, host cgroupns on cgroup v1), so they are set.
	hc.IpcMode = container.IPCModePrivate
	hc.CgroupnsMode = container.CgroupnsModePrivate

	if l.Seccomp != nil {
		// Airlock's compiled profile is also valid Docker profile JSON: Docker's profile type
		// embeds the OCI one (see seccomp.Docker), so the same filter is loaded.
		j, err := json.Marshal(l.Seccomp)
		if err != nil {
			return fmt.Errorf("docker: encoding the seccomp profile: %w", err)
		}
		hc.SecurityOpt = append(hc.SecurityOpt, "seccomp="+string(j))
	} else {
		// Only the unconfined profile has no filter (oci.WithSeccomp refuses anything else);
		// without this option Docker would apply its own default filter instead.
		hc.SecurityOpt = append(hc.SecurityOpt, "seccomp=unconfined")
	}
	// Docker always mounts a cgroup file system at /sys/fs/cgroup (read-only, the container's
	// own cgroup namespace); masking it keeps the host's cgroup layout, limits and other
	// containers' names out of view, as the other backends do by never mounting it.
	hc.MaskedPaths = append(append([]string{}, l.MaskedPaths...), "/sys/fs/cgroup")
	hc.ReadonlyPaths = append([]string{}, l.ReadonlyPaths...)

	if r := l.Resources; r != nil {
		if r.HugepageLimits != nil || r.Network != nil || r.Rdma != nil || r.BlockIO != nil || len(r.Unified) > 0 {
			return fmt.Errorf("docker: resource limits beyond Airlock's hardening are not supported")
		}
		if m := r.Memory; m != nil {
			if m.Limit == nil || m.Swap == nil {
				return fmt.Errorf("docker: a memory limit without an equal swap limit is not supported")
			}
			hc.Memory, hc.MemorySwap = *m.Limit, *m.Swap
			if m.Reservation != nil || m.Kernel != nil || m.KernelTCP != nil || m.Swappiness != nil || m.DisableOOMKiller != nil {
				return fmt.Errorf("docker: memory options beyond the limit are not supported")
			}
		}
		if p := r.Pids; p != nil {
			if p.Limit == nil {
				return fmt.Errorf("docker: a pids section without a limit is not supported")
			}
			limit := *p.Limit
			hc.PidsLimit = &limit
		}
		if c := r.CPU; c != nil {
			if c.Quota != nil {
				hc.CPUQuota = *c.Quota
			}
			if c.Period != nil {
				hc.CPUPeriod = int64(*c.Period)
			}
			if c.Shares != nil || c.Cpus != "" || c.Mems != "" || c.RealtimePeriod != nil || c.RealtimeRuntime != nil || c.Idle != nil || c.Burst != nil {
				return fmt.Errorf("docker: CPU options beyond a quota are not supported")
			}
		}
		// Docker always applies its default device allowlist (null, zero, full, random,
		// urandom, tty, console, ptmx and pts, plus mknod, which no capability allows); it
		// cannot be narrowed to deny-all. Refuse any rule that would widen it.
		for _, d := range r.Devices {
			if d.Allow {
				return fmt.Errorf("docker: device cgroup rule %+v allows a device; Airlock allows none", d)
			}
		}
	}
	return nil
}

func translateMounts(mounts []specs.Mount, copyRoot string, hc *container.HostConfig) error {
	hc.Tmpfs = map[string]string{}
	for _, m := range mounts {
		if own, ok := dockerOwnMounts[m.Destination]; ok {
			if m.Type != own.typ {
				return fmt.Errorf("docker: %s as %s is not supported (Docker mounts %s there)", m.Destination, m.Type, own.typ)
			}
			if own.options != nil && !slices.Equal(m.Options, own.options) {
				return fmt.Errorf("docker: %s with options %v is not supported (Docker mounts it with %v)", m.Destination, m.Options, own.options)
			}
			if m.Destination == "/dev" && !slices.Contains(m.Options, "nosuid") {
				return fmt.Errorf("docker: /dev without nosuid is not supported")
			}
			continue
		}
		switch {
		case m.Type == "tmpfs" && m.Destination == "/dev/shm":
			size, err := sizeOption(m.Options)
			if err != nil {
				return fmt.Errorf("docker: /dev/shm: %w", err)
			}
			// Docker mounts /dev/shm nosuid, noexec, nodev, mode 1777, with this size.
			if !slices.Equal(without(m.Options, "size="), []string{"nosuid", "noexec", "nodev", "mode=1777"}) {
				return fmt.Errorf("docker: /dev/shm with options %v is not supported", m.Options)
			}
			hc.ShmSize = size
		case m.Type == "tmpfs":
			// Docker adds noexec to every tmpfs unless told "exec"; the OCI spec's tmpfs
			// mounts are executable unless they say noexec.
			opts := slices.Clone(m.Options)
			if !slices.Contains(opts, "noexec") {
				opts = append(opts, "exec")
			}
			hc.Tmpfs[m.Destination] = strings.Join(opts, ",")
		case m.Type == "bind":
			bm, err := bindMount(m)
			if err != nil {
				return err
			}
			hc.Mounts = append(hc.Mounts, bm)
		case m.Type == "overlay":
			vm, err := copyMount(m, copyRoot)
			if err != nil {
				return err
			}
			hc.Mounts = append(hc.Mounts, vm)
		default:
			return fmt.Errorf("docker: mount %s of type %s is not supported", m.Destination, m.Type)
		}
	}
	return nil
}

// bindMount is an OCI bind as a Docker bind mount: non-recursive (submounts of the source stay
// hidden, so a read-only bind cannot expose a writable submount), rprivate, read-only unless
// the spec says rw. Docker's API has no nosuid or nodev for binds: no_new_privileges makes
// setuid bits and file capabilities inert, and without CAP_MKNOD under Docker's device
// allowlist a device node found in a bind opens nothing /dev does not already give.
//
// The egress proxy's socket (sandbox.EgressSocketTarget) is a bind like any other, of a socket
// file: the daemon's runc bind-mounts it onto the image's empty file there as the runc backend
// does. Its noexec cannot be expressed either, and is the one noexec accepted: only a regular
// file can be executed, so on a socket it changes nothing.
func bindMount(m specs.Mount) (mount.Mount, error) {
	ro := false
	for _, o := range m.Options {
		switch o {
		case "bind", "rprivate", "nosuid", "nodev", "rw":
		case "ro":
			ro = true
		case "noexec":
			if m.Destination != sandbox.EgressSocketTarget {
				return mount.Mount{}, fmt.Errorf("docker: bind %s: option %q is not supported (Docker binds cannot be noexec)", m.Destination, o)
			}
		default:
			return mount.Mount{}, fmt.Errorf("docker: bind %s: option %q is not supported", m.Destination, o)
		}
	}
	return mount.Mount{
		Type: mount.TypeBind, Source: m.Source, Target: m.Destination, ReadOnly: ro,
		BindOptions: &mount.BindOptions{Propagation: mount.PropagationRPrivate, NonRecursive: true},
	}, nil
}

// copyMount is a copy-on-write workspace as an anonymous volume of the local driver that the
// daemon mounts as overlayfs: the host directory is the lower layer, the upper and work dirs
// live in the run's private directory (a tmpfs capped at the memory limit), so writes are
// seen inside the sandbox and never reach the host directory. The volume goes with the
// container (it is removed with RemoveVolumes); NoCopy keeps Docker from copying the image's
// directory into it.
func copyMount(m specs.Mount, copyRoot string) (mount.Mount, error) {
	if !path.IsAbs(copyRoot) || strings.ContainsAny(copyRoot, ",:\\") {
		return mount.Mount{}, fmt.Errorf("docker: copy mount %s: the run directory %q must be absolute and free of ',', ':' and '\\' (overlayfs takes its layers as a list)", m.Destination, copyRoot)
	}
	var o []string
	for _, opt := range m.Options {
		k, v, _ := strings.Cut(opt, "=")
		switch k {
		case "lowerdir":
			o = append(o, opt)
		case "upperdir", "workdir":
			if !path.IsAbs(v) {
				v = path.Join(copyRoot, v)
			}
			if !strings.HasPrefix(v, copyRoot+"/") {
				return mount.Mount{}, fmt.Errorf("docker: copy mount %s: %s %s is outside the run directory", m.Destination, k, v)
			}
			o = append(o, k+"="+v)
		case "nosuid", "nodev":
			o = append(o, opt)
		default:
			return mount.Mount{}, fmt.Errorf("docker: copy mount %s: option %q is not supported", m.Destination, opt)
		}
	}
	return mount.Mount{
		Type: mount.TypeVolume, Target: m.Destination,
		VolumeOptions: &mount.VolumeOptions{
			NoCopy: true,
			DriverConfig: &mount.Driver{Name: "local", Options: map[string]string{
				"type": "overlay", "device": "overlay", "o": strings.Join(o, ","),
			}},
		},
	}, nil
}

// sizeOption returns the value of the "size=" option in bytes (a plain number, as package oci
// writes it).
func sizeOption(opts []string) (int64, error) {
	for _, o := range opts {
		if v, ok := strings.CutPrefix(o, "size="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("size %q is not a positive number of bytes", v)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("no size option")
}

// without returns opts minus those starting with prefix.
func without(opts []string, prefix string) []string {
	return slices.DeleteFunc(slices.Clone(opts), func(o string) bool { return strings.HasPrefix(o, prefix) })
}
