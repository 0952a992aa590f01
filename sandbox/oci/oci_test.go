package oci

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
)

var testSeccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}

func mustSpec(t *testing.T, opts ...sandbox.Option) sandbox.Spec {
	t.Helper()
	s, err := sandbox.New(append([]sandbox.Option{sandbox.WithArgv("true")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func apply(t *testing.T, opts ...SpecOpt) *specs.Spec {
	t.Helper()
	s := &specs.Spec{}
	if err := Apply(s, opts...); err != nil {
		t.Fatal(err)
	}
	return s
}

func mountAt(s *specs.Spec, dest string) (specs.Mount, bool) {
	for _, m := range s.Mounts {
		if m.Destination == dest {
			return m, true
		}
	}
	return specs.Mount{}, false
}

// TestOptions checks each option of the hardened profile on its own, applied to an empty spec,
// so a failure names the one property that was lost.
func TestOptions(t *testing.T) {
	spec := mustSpec(t, sandbox.WithEnv("A=b"), sandbox.WithWorkdir("/tmp/../workspace"))
	tests := []struct {
		name string
		opt  SpecOpt
		ok   func(*specs.Spec) bool
	}{
		{"rootfs read-only in place", WithRootfs(sandbox.Image{Name: "x", Rootfs: "/images/x"}), func(s *specs.Spec) bool {
			return s.Root.Path == "/images/x" && s.Root.Readonly && s.Linux.RootfsPropagation == "rprivate"
		}},
		{"seccomp filter set", WithSeccomp(sandbox.SeccompDefault, testSeccomp), func(s *specs.Spec) bool { return s.Linux.Seccomp == testSeccomp }},
		{"unconfined without filter", WithSeccomp(sandbox.SeccompUnconfined, nil), func(s *specs.Spec) bool { return s.Linux.Seccomp == nil }},
		{"process is exactly the spec's", WithProcess(spec), func(s *specs.Spec) bool {
			p := s.Process
			return slices.Equal(p.Args, spec.Argv) && slices.Equal(p.Env, spec.Env) && p.Cwd == "/workspace" &&
				p.User.UID == spec.User.UID && p.User.GID == spec.User.GID && len(p.User.AdditionalGids) == 0 && !p.Terminal
		}},
		{"no_new_privileges", WithNoNewPrivileges(), func(s *specs.Spec) bool { return s.Process.NoNewPrivileges }},
		{"oom score 1000", WithOOMScoreAdj(1000), func(s *specs.Spec) bool { return *s.Process.OOMScoreAdj == 1000 }},
		{"no capabilities in any set", WithNoCapabilities(), func(s *specs.Spec) bool {
			c := s.Process.Capabilities
			return c != nil && c.Bounding != nil && len(c.Bounding)+len(c.Effective)+len(c.Inheritable)+len(c.Permitted)+len(c.Ambient) == 0
		}},
		{"RLIMIT_CORE 0 and NOFILE", WithRlimits(1024), func(s *specs.Spec) bool {
			return slices.Equal(s.Process.Rlimits, []specs.POSIXRlimit{{Type: "RLIMIT_CORE"}, {Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}})
		}},
		{"RLIMIT_CORE 0 without NOFILE", WithRlimits(0), func(s *specs.Spec) bool {
			return slices.Equal(s.Process.Rlimits, []specs.POSIXRlimit{{Type: "RLIMIT_CORE"}})
		}},
		{"hostname", WithHostname(Hostname), func(s *specs.Spec) bool { return s.Hostname == "airlock" }},
		{"new namespaces", WithNamespaces(), func(s *specs.Spec) bool {
			var got []specs.LinuxNamespaceType
			for _, n := range s.Linux.Namespaces {
				if n.Path != "" {
					return false // joining an existing namespace
				}
				got = append(got, n.Type)
			}
			return slices.Equal(got, []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace, specs.NetworkNamespace, specs.CgroupNamespace})
		}},
		{"private proc", WithProc(), func(s *specs.Spec) bool {
			m, ok := mountAt(s, "/proc")
			return ok && m.Type == "proc" && slices.Contains(m.Options, "nosuid") && slices.Contains(m.Options, "noexec")
		}},
		{"minimal dev and private devpts", WithDev(), func(s *specs.Spec) bool {
			d, ok1 := mountAt(s, "/dev")
			p, ok2 := mountAt(s, "/dev/pts")
			return ok1 && ok2 && d.Type == "tmpfs" && slices.Contains(d.Options, "size=65536") && slices.Contains(p.Options, "newinstance")
		}},
		{"capped dev shm", WithDevShm(1 << 20), func(s *specs.Spec) bool {
			m, ok := mountAt(s, "/dev/shm")
			return ok && m.Type == "tmpfs" && slices.Contains(m.Options, "size=1048576") && slices.Contains(m.Options, "nodev") && slices.Contains(m.Options, "nosuid")
		}},
		{"sysfs read-only", WithSysfs(), func(s *specs.Spec) bool {
			m, ok := mountAt(s, "/sys")
			return ok && m.Type == "sysfs" && slices.Contains(m.Options, "ro")
		}},
		{"tmp tmpfs capped, nosuid nodev", WithTmpfs(spec.Tmpfs), func(s *specs.Spec) bool {
			m, ok := mountAt(s, "/tmp")
			return ok && m.Type == "tmpfs" && slices.Contains(m.Options, "mode=1777") && slices.Contains(m.Options, "size=67108864") &&
				slices.Contains(m.Options, "nosuid") && slices.Contains(m.Options, "nodev")
		}},
		{"image binds forced read-only", WithBinds([]sandbox.Mount{{Source: "/usr", Target: "/usr", Access: sandbox.ReadWrite}}, "image bind"), func(s *specs.Spec) bool {
			m, ok := mountAt(s, "/usr")
			return ok && slices.Contains(m.Options, "ro") && !slices.Contains(m.Options, "rw")
		}},
		{"all kernel interfaces masked", WithMaskedPaths(), func(s *specs.Spec) bool {
			return slices.Equal(s.Linux.MaskedPaths, MaskedPaths()) && slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") &&
				slices.Contains(s.Linux.MaskedPaths, "/proc/keys") && slices.Contains(s.Linux.MaskedPaths, "/sys/firmware")
		}},
		{"kernel knobs read-only", WithReadonlyPaths(), func(s *specs.Spec) bool {
			return slices.Equal(s.Linux.ReadonlyPaths, ReadonlyPaths()) && slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") &&
				slices.Contains(s.Linux.ReadonlyPaths, "/proc/sysrq-trigger")
		}},
		{"memory swap equal", WithMemory(256 << 20), func(s *specs.Spec) bool {
			return *s.Linux.Resources.Memory.Limit == 256<<20 && *s.Linux.Resources.Memory.Swap == 256<<20
		}},
		{"pids", WithPids(64), func(s *specs.Spec) bool { return *s.Linux.Resources.Pids.Limit == 64 }},
		{"cpu quota rounds up", WithCPUs(1.000001), func(s *specs.Spec) bool {
			return *s.Linux.Resources.CPU.Quota == 100001 && *s.Linux.Resources.CPU.Period == 100000
		}},
		{"devices deny all", WithDevices(), func(s *specs.Spec) bool {
			d := s.Linux.Resources.Devices
			return len(d) == 1 && !d[0].Allow && d[0].Access == "rwm" && d[0].Type == ""
		}},
		{"labels and airlock mark", WithAnnotations(map[string]string{"tool": "x"}), func(s *specs.Spec) bool {
			return len(s.Annotations) == 2 && s.Annotations["tool"] == "x" && s.Annotations["airlock"] == "1"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s := apply(t, tt.opt); !tt.ok(s) {
				t.Errorf("spec after option: %+v", s)
			}
		})
	}
}

// TestOptionsRefuse: options that check their input refuse what would weaken isolation.
func TestOptionsRefuse(t *testing.T) {
	tests := []struct {
		name    string
		opt     SpecOpt
		invalid bool // want sandbox.ErrInvalidSpec
	}{
		{"no seccomp filter for default profile", WithSeccomp(sandbox.SeccompDefault, nil), false},
		{"no seccomp filter for files profile", WithSeccomp(sandbox.SeccompFiles, nil), false},
		{"relative rootfs", WithRootfs(sandbox.Image{Name: "x", Rootfs: "rootfs"}), false},
		{"tmpfs over /dev", WithTmpfs([]sandbox.Tmpfs{{Target: "/dev/x", SizeBytes: 1}}), true},
		{"image bind over /proc", WithBinds([]sandbox.Mount{{Source: "/x", Target: "/proc", Access: sandbox.ReadOnly}}, "image bind"), true},
		{"relative bind source", WithSpecMounts([]sandbox.Mount{{Source: "x", Target: "/workspace", Access: sandbox.ReadOnly}}), true},
		{"unknown access", WithSpecMounts([]sandbox.Mount{{Source: "/x", Target: "/workspace", Access: "exec"}}), true},
		{"copy source with comma", WithSpecMounts([]sandbox.Mount{{Source: "/src,upperdir=/etc", Target: "/workspace", Access: sandbox.CopyOnWrite}}), true},
		{"copy source with colon", WithSpecMounts([]sandbox.Mount{{Source: "/a:/etc", Target: "/workspace", Access: sandbox.CopyOnWrite}}), true},
		{"copy source with backslash", WithSpecMounts([]sandbox.Mount{{Source: `/a\b`, Target: "/workspace", Access: sandbox.CopyOnWrite}}), true},
		{"copy over /sys", WithSpecMounts([]sandbox.Mount{{Source: "/src", Target: "/x/../sys", Access: sandbox.CopyOnWrite}}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Apply(&specs.Spec{}, tt.opt)
			if err == nil {
				t.Fatal("option accepted it")
			}
			if tt.invalid && !errors.Is(err, sandbox.ErrInvalidSpec) {
				t.Errorf("err = %v, want ErrInvalidSpec", err)
			}
		})
	}
}

// TestSpecMounts: ro and rw binds are non-recursive, nosuid and nodev; a copy mount is an
// overlay whose layers live in the bundle (CopyDir of its index).
func TestSpecMounts(t *testing.T) {
	tests := []struct {
		name  string
		mount sandbox.Mount
		want  specs.Mount
	}{
		{"ro bind", sandbox.Mount{Source: "/src/", Target: "/workspace", Access: sandbox.ReadOnly},
			specs.Mount{Destination: "/workspace", Type: "bind", Source: "/src", Options: []string{"bind", "rprivate", "nosuid", "nodev", "ro"}}},
		{"rw bind", sandbox.Mount{Source: "/src", Target: "/workspace", Access: sandbox.ReadWrite},
			specs.Mount{Destination: "/workspace", Type: "bind", Source: "/src", Options: []string{"bind", "rprivate", "nosuid", "nodev", "rw"}}},
		{"copy overlay in bundle", sandbox.Mount{Source: "/src", Target: "/workspace", Access: sandbox.CopyOnWrite},
			specs.Mount{Destination: "/workspace", Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/src", "upperdir=copy/1/upper", "workdir=copy/1/work", "nosuid", "nodev"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := sandbox.Mount{Source: "/other", Target: "/other", Access: sandbox.ReadOnly}
			s := apply(t, WithSpecMounts([]sandbox.Mount{first, tt.mount}))
			if got := s.Mounts[1]; got.Destination != tt.want.Destination || got.Type != tt.want.Type ||
				got.Source != tt.want.Source || !slices.Equal(got.Options, tt.want.Options) {
				t.Errorf("mount = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCheckTarget(t *testing.T) {
	for _, tc := range []struct {
		target string
		ok     bool
	}{
		{"/workspace", true},
		{"/devices", true},
		{"/procfs", true},
		{"/", false},
		{"/proc", false},
		{"/proc/sys", false},
		{"/sys", false},
		{"/sys/fs/cgroup", false},
		{"/dev", false},
		{"/dev/shm", false},
	} {
		err := CheckTarget(tc.target)
		if (err == nil) != tc.ok {
			t.Errorf("CheckTarget(%q) = %v, want ok=%v", tc.target, err, tc.ok)
		}
		if err != nil && !errors.Is(err, sandbox.ErrInvalidSpec) {
			t.Errorf("CheckTarget(%q) = %v, want ErrInvalidSpec", tc.target, err)
		}
	}
}

// TestListsAreFresh: the masked, read-only and reserved lists cannot be changed for anyone
// else through a returned slice (there is no package-level mutable list).
func TestListsAreFresh(t *testing.T) {
	for name, f := range map[string]func() []string{"MaskedPaths": MaskedPaths, "ReadonlyPaths": ReadonlyPaths, "ReservedTargets": ReservedTargets} {
		a := f()
		a[0] = "/changed"
		if f()[0] == "/changed" {
			t.Errorf("%s returns a shared slice", name)
		}
	}
	s := apply(t, WithMaskedPaths())
	s.Linux.MaskedPaths[0] = "/changed"
	if MaskedPaths()[0] == "/changed" {
		t.Error("WithMaskedPaths shares its slice")
	}
}

// TestWithInit: the sandbox init is every container's pid 1, with its own deadline at
// Spec.Timeout plus InitGrace, and the command after "--" exactly as given, so nothing in it is
// read as an option of the init.
func TestWithInit(t *testing.T) {
	for _, tc := range []struct {
		timeout  time.Duration
		argv     []string
		deadline string
	}{
		{30 * time.Second, []string{"true"}, "32s"},
		{time.Minute, []string{"go", "test", "./..."}, "1m2s"},
		{1500 * time.Millisecond, []string{"--deadline", "1h", "--", "x"}, "3.5s"},
	} {
		s := apply(t, WithProcess(mustSpec(t, sandbox.WithArgv(tc.argv...))), WithInit(tc.timeout))
		want := append([]string{"/.airlock/bin/airlock-toolbox", "init", "--deadline", tc.deadline, "--"}, tc.argv...)
		if !slices.Equal(s.Process.Args, want) {
			t.Errorf("timeout %s argv %q: process args %q, want %q", tc.timeout, tc.argv, s.Process.Args, want)
		}
	}
}

// TestWithEgressProxy: network proxy binds the proxy's socket read-only at
// sandbox.EgressSocketTarget, has the init start the forwarder (the command after "--"
// unchanged), and sets the proxy variables over any the spec had; network none changes nothing.
func TestWithEgressProxy(t *testing.T) {
	spec := mustSpec(t, sandbox.WithArgv("--egress", "x"), sandbox.WithEnv("HTTP_PROXY=http://evil:1", "A=b"), sandbox.WithEgress("/run/airlock/egress.sock"))
	if !slices.Contains(spec.Loosened, "network:proxy") {
		t.Errorf("Loosened %v lacks network:proxy", spec.Loosened)
	}
	s := apply(t, WithProcess(spec), WithInit(time.Minute), WithEgressProxy(spec.Network, spec.Egress))
	want := []string{InitPath, "init", "--deadline", "1m2s", "--egress", "127.0.0.1:3128=/.airlock/egress.sock", "--", "--egress", "x"}
	if !slices.Equal(s.Process.Args, want) {
		t.Errorf("args %q, want %q", s.Process.Args, want)
	}
	for _, e := range append(EgressEnv(), "A=b") {
		if !slices.Contains(s.Process.Env, e) {
			t.Errorf("env %q lacks %s", s.Process.Env, e)
		}
	}
	if slices.Contains(s.Process.Env, "HTTP_PROXY=http://evil:1") {
		t.Errorf("env %q keeps the spec's own HTTP_PROXY", s.Process.Env)
	}
	m, ok := mountAt(s, sandbox.EgressSocketTarget)
	if !ok || m.Type != "bind" || m.Source != "/run/airlock/egress.sock" ||
		!slices.Equal(m.Options, []string{"bind", "rprivate", "nosuid", "nodev", "noexec", "ro"}) {
		t.Errorf("egress mount %+v", m)
	}

	none := mustSpec(t)
	s = apply(t, WithProcess(none), WithInit(time.Minute), WithEgressProxy(none.Network, none.Egress))
	if slices.Contains(s.Process.Args, "--egress") || len(s.Mounts) != 0 || slices.ContainsFunc(s.Process.Env, func(e string) bool { return strings.Contains(e, "PROXY") }) {
		t.Errorf("network none got egress: %+v", s)
	}

	for name, opt := range map[string]SpecOpt{
		"proxy without egress": WithEgressProxy(sandbox.NetworkProxy, nil),
		"egress with none":     WithEgressProxy(sandbox.NetworkNone, &sandbox.Egress{Socket: "/s"}),
		"relative socket":      WithEgressProxy(sandbox.NetworkProxy, &sandbox.Egress{Socket: "s"}),
		"planned, no proxy":    WithEgressProxy(sandbox.NetworkProxy, &sandbox.Egress{Allow: []string{"a.example"}}),
		"not after WithInit":   WithEgressProxy(sandbox.NetworkProxy, &sandbox.Egress{Socket: "/s"}),
	} {
		opts := []SpecOpt{WithProcess(none)}
		if name != "not after WithInit" {
			opts = append(opts, WithInit(time.Minute))
		}
		if err := Apply(&specs.Spec{}, append(opts, opt)...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestBuild: Build validates the spec, applies Hardened and then the backend's own options
// (which may override), and refuses a confined profile without its filter.
func TestBuild(t *testing.T) {
	img := sandbox.Image{Name: "busybox", Rootfs: "/images/busybox"}
	s, err := Build(mustSpec(t, sandbox.WithTimeout(time.Minute)), img, testSeccomp, func(s *specs.Spec) error {
		s.Linux.CgroupsPath = "/x/y"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != specs.Version || s.Linux.CgroupsPath != "/x/y" || s.Hostname != Hostname || s.Process.Args[0] != InitPath ||
		!s.Process.NoNewPrivileges || s.Linux.Seccomp != testSeccomp || !s.Root.Readonly {
		t.Errorf("Build = %+v", s)
	}
	var order []string
	for _, m := range s.Mounts {
		order = append(order, m.Destination)
	}
	if got := strings.Join(order, " "); got != "/proc /dev /dev/pts /dev/shm /sys /tmp" {
		t.Errorf("mount order %s", got)
	}
	if _, err := Build(sandbox.Spec{}, img, testSeccomp); err == nil {
		t.Error("Build accepted an invalid spec")
	}
	if _, err := Build(mustSpec(t), img, nil); err == nil {
		t.Error("Build accepted the default profile without a seccomp filter")
	}
}
