package docker

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/oci"
	"github.com/airlock-mcp/airlock/seccomp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json golden Docker create requests")

const (
	goldenImage    = "airlock/busybox:0123456789abcdef"
	goldenCopyRoot = "/var/lib/airlock/docker/runs/airlock-0123456789ab-7"
)

// goldenSeccomp stands in for package seccomp's filter in the golden files: they pin what
// Translate does with a filter, while the filter's content is pinned by package seccomp.
var goldenSeccomp = &specs.LinuxSeccomp{
	DefaultAction: specs.ActErrno,
	Architectures: []specs.Arch{specs.ArchX86_64},
	Syscalls:      []specs.LinuxSyscall{{Names: []string{"read", "write"}, Action: specs.ActAllow}},
}

type translateCase struct {
	name   string
	spec   sandbox.Spec
	img    sandbox.Image
	sc     *specs.LinuxSeccomp
	target Target
}

func translateCases(t *testing.T) []translateCase {
	t.Helper()
	mk := func(opts ...sandbox.Option) sandbox.Spec {
		s, err := sandbox.New(opts...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	busybox := sandbox.Image{Name: "busybox", ID: "sha256:0", Rootfs: "/var/lib/airlock/images/busybox/rootfs"}
	host := sandbox.Image{Name: "host", ID: "sha256:1", Rootfs: "/var/lib/airlock/images/host/rootfs", Binds: []sandbox.Mount{
		{Source: "/usr", Target: "/usr", Access: sandbox.ReadOnly},
		{Source: "/etc/ssl/certs", Target: "/etc/ssl/certs", Access: sandbox.ReadWrite}, // forced ro
	}}
	target := Target{Image: goldenImage, CopyRoot: goldenCopyRoot, Labels: map[string]string{LabelOwner: "0123456789ab", LabelState: "/var/lib/airlock/docker"}}
	withStdin, withRuntime := target, target
	withStdin.Stdin = true
	withRuntime.Runtime = "runsc"
	return []translateCase{
		{"default", mk(sandbox.WithArgv("sh", "-c", "echo hello")), busybox, goldenSeccomp, target},
		{"workspace-ro", mk(sandbox.WithArgv("ls"), sandbox.WithWorkspace("/home/dev/project", sandbox.ReadOnly)), busybox, goldenSeccomp, target},
		{"workspace-rw-copy", mk(
			sandbox.WithArgv("go", "test", "./..."),
			sandbox.WithWorkspace("/home/dev/project", sandbox.ReadWrite),
			sandbox.WithMount(sandbox.Mount{Source: "/home/dev/cache", Target: "/cache", Access: sandbox.CopyOnWrite}),
			sandbox.WithMemory(512<<20), sandbox.WithCPUs(1.5), sandbox.WithPids(128),
			sandbox.WithTmpfsSize(128<<20), sandbox.WithTimeout(time.Minute),
			sandbox.WithEnv("GOFLAGS=-mod=mod"), sandbox.WithLabel("tool", "run_tests"),
			sandbox.WithStdin([]byte("input")),
		), busybox, goldenSeccomp, withStdin},
		{"egress-proxy", mk(sandbox.WithArgv("wget", "-qO-", "https://example.com/"), sandbox.WithEgress("/run/airlock/egress.sock")), busybox, goldenSeccomp, target},
		{"host-unconfined-runsc", mk(sandbox.WithArgv("git", "status"), sandbox.WithImage("host"),
			sandbox.WithWorkspace("/home/dev/project", sandbox.ReadOnly), sandbox.WithSeccomp(sandbox.SeccompUnconfined)), host, nil, withRuntime},
	}
}

func translate(t *testing.T, tc translateCase) (*specs.Spec, *container.Config, *container.HostConfig) {
	t.Helper()
	s, err := oci.Build(tc.spec, tc.img, tc.sc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, hc, err := Translate(s, tc.target)
	if err != nil {
		t.Fatal(err)
	}
	return s, cfg, hc
}

// TestTranslateGolden pins the Docker create request of each case: any change to isolation
// shows up as a diff of testdata/*.json in review. Regenerate with
// `go test ./sandbox/docker -run Golden -update`.
func TestTranslateGolden(t *testing.T) {
	for _, tc := range translateCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, cfg, hc := translate(t, tc)
			got, err := json.MarshalIndent(container.CreateRequest{Config: cfg, HostConfig: hc}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			file := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Docker create request of %s differs from %s (run with -update if intended):\n%s", tc.name, file, got)
			}
		})
	}
}

// TestTranslateParity proves, property by property, that every hardening property of the OCI
// spec (checked on the spec, so the table is anchored in what oci.Build promises) has its
// Docker counterpart in the translated request.
func TestTranslateParity(t *testing.T) {
	cases := translateCases(t)
	byName := map[string]translateCase{}
	for _, tc := range cases {
		byName[tc.name] = tc
	}
	type docker = func(s *specs.Spec, cfg *container.Config, hc *container.HostConfig) error
	check := func(ok bool, format string, a ...any) error {
		if ok {
			return nil
		}
		return fmt.Errorf(format, a...)
	}
	props := []struct {
		name     string
		cases    []string // default: every case
		oci      func(s *specs.Spec) bool
		docker   docker
		whyNoOCI string // set where the OCI side is a constant of the backend
	}{
		{"network none", nil, func(s *specs.Spec) bool { return hasNS(s, specs.NetworkNamespace) },
			func(_ *specs.Spec, cfg *container.Config, hc *container.HostConfig) error {
				return check(hc.NetworkMode == "none" && cfg.NetworkDisabled && len(hc.DNS) == 0 && len(hc.ExtraHosts) == 0 && len(hc.PortBindings) == 0,
					"NetworkMode %q NetworkDisabled %v", hc.NetworkMode, cfg.NetworkDisabled)
			}, ""},
		{"read-only root", nil, func(s *specs.Spec) bool { return s.Root.Readonly },
			func(_ *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				return check(hc.ReadonlyRootfs, "ReadonlyRootfs false")
			}, ""},
		{"no capabilities", nil, func(s *specs.Spec) bool {
			c := s.Process.Capabilities
			return c != nil && len(c.Bounding)+len(c.Effective)+len(c.Inheritable)+len(c.Permitted)+len(c.Ambient) == 0
		}, func(_ *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
			return check(slices.Equal(hc.CapDrop, []string{"ALL"}) && len(hc.CapAdd) == 0 && !hc.Privileged, "CapDrop %v CapAdd %v Privileged %v", hc.CapDrop, hc.CapAdd, hc.Privileged)
		}, ""},
		{"no_new_privileges", nil, func(s *specs.Spec) bool { return s.Process.NoNewPrivileges },
			func(_ *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				return check(slices.Contains(hc.SecurityOpt, "no-new-privileges:true"), "SecurityOpt %v", hc.SecurityOpt)
			}, ""},
		{"seccomp filter is the spec's", []string{"default", "workspace-ro", "workspace-rw-copy", "egress-proxy"}, func(s *specs.Spec) bool { return s.Linux.Seccomp != nil },
			func(s *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				j, err := seccompOpt(hc)
				if err != nil {
					return err
				}
				var got specs.LinuxSeccomp
				if err := json.Unmarshal([]byte(j), &got); err != nil {
					return fmt.Errorf("seccomp option is not profile JSON: %v", err)
				}
				return check(equalJSON(&got, s.Linux.Seccomp), "seccomp profile differs from the spec's")
			}, ""},
		{"unconfined seccomp is explicit", []string{"host-unconfined-runsc"}, func(s *specs.Spec) bool { return s.Linux.Seccomp == nil },
			func(_ *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				return check(slices.Contains(hc.SecurityOpt, "seccomp=unconfined"), "SecurityOpt %v", hc.SecurityOpt)
			}, ""},
		{"masked paths", nil, func(s *specs.Spec) bool { return slices.Equal(s.Linux.MaskedPaths, oci.MaskedPaths()) },
			func(s *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				// Plus the cgroup file system Docker always mounts (translate.go says why).
				return check(slices.Equal(hc.MaskedPaths, append(slices.Clone(s.Linux.MaskedPaths), "/sys/fs/cgroup")), "MaskedPaths %v", hc.MaskedPaths)
			}, ""},
		{"read-only paths", nil, func(s *specs.Spec) bool { return slices.Equal(s.Linux.ReadonlyPaths, oci.ReadonlyPaths()) },
			func(s *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				return check(slices.Equal(hc.ReadonlyPaths, s.Linux.ReadonlyPaths), "ReadonlyPaths %v", hc.ReadonlyPaths)
			}, ""},
		{"memory limit, swap equal", nil, func(s *specs.Spec) bool {
			m := s.Linux.Resources.Memory
			return m != nil && *m.Limit > 0 && *m.Swap == *m.Limit
		}, func(s *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
			return check(hc.Memory == *s.Linux.Resources.Memory.Limit && hc.MemorySwap == hc.Memory, "Memory %d MemorySwap %d", hc.Memory, hc.MemorySwap)
		}, ""},
		{"pids limit", nil, func(s *specs.Spec) bool { return s.Linux.Resources.Pids != nil && *s.Linux.Resources.Pids.Limit > 0 },
			func(s *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				return check(hc.PidsLimit != nil && *hc.PidsLimit == *s.Linux.Resources.Pids.Limit, "PidsLimit %v", hc.PidsLimit)
			}, ""},
		{"CPU quota", nil, func(s *specs.Spec) bool { return s.Linux.Resources.CPU != nil && *s.Linux.Resources.CPU.Quota > 0 },
			func(s *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				c := s.Linux.Resources.CPU
				return check(hc.CPUQuota == *c.Quota && hc.CPUPeriod == int64(*c.Period) && hc.NanoCPUs == 0, "CPUQuota %d CPUPeriod %d", hc.CPUQuota, hc.CPUPeriod)
			}, ""},
		{"tmpfs size, mode, nosuid, nodev, exec", nil, func(s *specs.Spec) bool { return findMount(s, "/tmp") != nil },
			func(s *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				opts := strings.Split(hc.Tmpfs["/tmp"], ",")
				for _, o := range findMount(s, "/tmp").Options {
					if !slices.Contains(opts, o) {
						return fmt.Errorf("tmpfs /tmp %q lacks %s", hc.Tmpfs["/tmp"], o)
					}
				}
				return check(slices.Contains(opts, "exec") && !slices.Contains(opts, "noexec"), "tmpfs /tmp %q is not executable as in the spec", hc.Tmpfs["/tmp"])
			}, ""},
		{"/dev/shm size", nil, func(s *specs.Spec) bool { return findMount(s, "/dev/shm") != nil },
			func(s *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				size, _ := sizeOption(findMount(s, "/dev/shm").Options)
				return check(hc.ShmSize == size && size > 0, "ShmSize %d, spec %d", hc.ShmSize, size)
			}, ""},
		{"user uid:gid", nil, func(s *specs.Spec) bool { return len(s.Process.User.AdditionalGids) == 0 },
			func(s *specs.Spec, cfg *container.Config, _ *container.HostConfig) error {
				want := fmt.Sprintf("%d:%d", s.Process.User.UID, s.Process.User.GID)
				return check(cfg.User == want, "User %q, want %q", cfg.User, want)
			}, ""},
		{"rlimits, core 0", nil, func(s *specs.Spec) bool {
			return slices.Contains(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_CORE"})
		}, func(s *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
			for _, rl := range s.Process.Rlimits {
				name := strings.ToLower(strings.TrimPrefix(rl.Type, "RLIMIT_"))
				if !slices.ContainsFunc(hc.Ulimits, func(u *container.Ulimit) bool {
					return u.Name == name && u.Soft == int64(rl.Soft) && u.Hard == int64(rl.Hard)
				}) {
					return fmt.Errorf("Ulimits lack %s %d/%d", name, rl.Soft, rl.Hard)
				}
			}
			return check(len(hc.Ulimits) == len(s.Process.Rlimits), "Ulimits %d, rlimits %d", len(hc.Ulimits), len(s.Process.Rlimits))
		}, ""},
		{"binds: non-recursive, rprivate, ro unless rw", nil, func(s *specs.Spec) bool { return true },
			func(s *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				for _, m := range s.Mounts {
					if m.Type != "bind" {
						continue
					}
					i := slices.IndexFunc(hc.Mounts, func(d mount.Mount) bool { return d.Target == m.Destination })
					if i < 0 {
						return fmt.Errorf("bind %s missing", m.Destination)
					}
					d := hc.Mounts[i]
					if d.Type != mount.TypeBind || d.Source != m.Source || d.ReadOnly != slices.Contains(m.Options, "ro") ||
						d.BindOptions == nil || !d.BindOptions.NonRecursive || d.BindOptions.Propagation != mount.PropagationRPrivate {
						return fmt.Errorf("bind %s translated as %+v %+v", m.Destination, d, d.BindOptions)
					}
				}
				return nil
			}, ""},
		{"egress: the proxy's socket bound read-only, the init forwards, proxy variables set", []string{"egress-proxy"}, func(s *specs.Spec) bool {
			m := findMount(s, sandbox.EgressSocketTarget)
			return m != nil && m.Type == "bind" && slices.Contains(m.Options, "ro") && slices.Contains(s.Process.Args, "--egress") &&
				slices.Contains(s.Process.Env, "HTTPS_PROXY=http://"+sandbox.EgressListen)
		}, func(s *specs.Spec, cfg *container.Config, hc *container.HostConfig) error {
			i := slices.IndexFunc(hc.Mounts, func(d mount.Mount) bool { return d.Target == sandbox.EgressSocketTarget })
			if i < 0 {
				return fmt.Errorf("egress socket bind missing")
			}
			d := hc.Mounts[i]
			// Still no network: the namespace holds only loopback, the socket is the way out.
			return check(d.Type == mount.TypeBind && d.Source == "/run/airlock/egress.sock" && d.ReadOnly &&
				slices.Equal(cfg.Entrypoint, s.Process.Args) && slices.Equal(cfg.Env, s.Process.Env) &&
				hc.NetworkMode == "none" && cfg.NetworkDisabled, "egress mount %+v NetworkMode %q", d, hc.NetworkMode)
		}, ""},
		{"copy: overlay volume over the run dir, nosuid, nodev, no copy-up", []string{"workspace-rw-copy"}, func(s *specs.Spec) bool { return findMount(s, "/cache") != nil },
			func(s *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				i := slices.IndexFunc(hc.Mounts, func(d mount.Mount) bool { return d.Target == "/cache" })
				if i < 0 {
					return fmt.Errorf("copy mount missing")
				}
				d := hc.Mounts[i]
				want := "lowerdir=/home/dev/cache,upperdir=" + goldenCopyRoot + "/copy/1/upper,workdir=" + goldenCopyRoot + "/copy/1/work,nosuid,nodev"
				return check(d.Type == mount.TypeVolume && d.Source == "" && d.VolumeOptions != nil && d.VolumeOptions.NoCopy &&
					d.VolumeOptions.DriverConfig.Name == "local" && d.VolumeOptions.DriverConfig.Options["type"] == "overlay" &&
					d.VolumeOptions.DriverConfig.Options["o"] == want, "copy mount %+v %+v", d, d.VolumeOptions)
			}, ""},
		{"hostname", nil, func(s *specs.Spec) bool { return s.Hostname == oci.Hostname },
			func(s *specs.Spec, cfg *container.Config, _ *container.HostConfig) error {
				return check(cfg.Hostname == s.Hostname, "Hostname %q", cfg.Hostname)
			}, ""},
		{"env exactly the spec's", nil, func(s *specs.Spec) bool { return len(s.Process.Env) > 0 },
			func(s *specs.Spec, cfg *container.Config, _ *container.HostConfig) error {
				return check(slices.Equal(cfg.Env, s.Process.Env), "Env %v", cfg.Env)
			}, ""},
		{"workdir", nil, func(s *specs.Spec) bool { return s.Process.Cwd != "" },
			func(s *specs.Spec, cfg *container.Config, _ *container.HostConfig) error {
				return check(cfg.WorkingDir == s.Process.Cwd, "WorkingDir %q", cfg.WorkingDir)
			}, ""},
		{"sandbox init is pid 1, not Docker's", nil, func(s *specs.Spec) bool { return s.Process.Args[0] == oci.InitPath },
			func(s *specs.Spec, cfg *container.Config, hc *container.HostConfig) error {
				return check(slices.Equal(cfg.Entrypoint, s.Process.Args) && len(cfg.Cmd) == 0 && cfg.Cmd != nil && hc.Init != nil && !*hc.Init,
					"Entrypoint %v Cmd %v Init %v", cfg.Entrypoint, cfg.Cmd, hc.Init)
			}, ""},
		{"labels: annotations plus owner", nil, func(s *specs.Spec) bool { return s.Annotations["airlock"] == "1" },
			func(s *specs.Spec, cfg *container.Config, _ *container.HostConfig) error {
				for k, v := range s.Annotations {
					if cfg.Labels[k] != v {
						return fmt.Errorf("label %s=%q, want %q", k, cfg.Labels[k], v)
					}
				}
				return check(cfg.Labels[LabelOwner] != "" && cfg.Labels[LabelState] != "", "owner labels missing: %v", cfg.Labels)
			}, ""},
		{"OOM score 1000", nil, func(s *specs.Spec) bool { return *s.Process.OOMScoreAdj == 1000 },
			func(s *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				return check(hc.OomScoreAdj == *s.Process.OOMScoreAdj, "OomScoreAdj %d", hc.OomScoreAdj)
			}, ""},
		{"private ipc and cgroup namespaces", nil, func(s *specs.Spec) bool { return hasNS(s, specs.IPCNamespace) && hasNS(s, specs.CgroupNamespace) },
			func(_ *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				return check(hc.IpcMode == container.IPCModePrivate && hc.CgroupnsMode == container.CgroupnsModePrivate && hc.PidMode == "" && hc.UTSMode == "" && hc.UsernsMode == "",
					"IpcMode %q CgroupnsMode %q PidMode %q UTSMode %q", hc.IpcMode, hc.CgroupnsMode, hc.PidMode, hc.UTSMode)
			}, ""},
		{"no terminal, stdin only when given", nil, func(s *specs.Spec) bool { return !s.Process.Terminal },
			func(_ *specs.Spec, cfg *container.Config, _ *container.HostConfig) error {
				return check(!cfg.Tty && cfg.OpenStdin == cfg.AttachStdin && cfg.StdinOnce == cfg.OpenStdin, "Tty %v OpenStdin %v", cfg.Tty, cfg.OpenStdin)
			}, ""},
		{"output never stored by the daemon", nil, nil,
			func(_ *specs.Spec, _ *container.Config, hc *container.HostConfig) error {
				return check(hc.LogConfig.Type == "none" && !hc.AutoRemove && hc.RestartPolicy.Name == container.RestartPolicyDisabled, "LogConfig %+v", hc.LogConfig)
			}, "output capture is the backend's (attach), not part of the OCI spec"},
	}
	for _, p := range props {
		t.Run(p.name, func(t *testing.T) {
			names := p.cases
			if names == nil {
				names = slices.Collect(func(yield func(string) bool) {
					for _, tc := range cases {
						if !yield(tc.name) {
							return
						}
					}
				})
			}
			for _, n := range names {
				s, cfg, hc := translate(t, byName[n])
				if p.oci != nil && !p.oci(s) {
					t.Fatalf("%s: the OCI spec does not have the property; the table is out of date", n)
				}
				if p.oci == nil && p.whyNoOCI == "" {
					t.Fatal("a property without an OCI check must say why")
				}
				if err := p.docker(s, cfg, hc); err != nil {
					t.Errorf("%s: %v", n, err)
				}
			}
		})
	}
}

// TestTranslateSeccompIsAirlocks: with the real compiled profile, the seccomp option carries
// exactly what seccomp.Docker gives for the profile (the profile Docker loads is Airlock's,
// not the daemon's default).
func TestTranslateSeccompIsAirlocks(t *testing.T) {
	for _, profile := range []string{sandbox.SeccompDefault, sandbox.SeccompFiles} {
		sc, err := seccomp.OCI(profile, sandbox.NetworkNone)
		if err != nil {
			t.Fatal(err)
		}
		want, err := seccomp.Docker(profile, sandbox.NetworkNone)
		if err != nil {
			t.Fatal(err)
		}
		s, err := sandbox.New(sandbox.WithArgv("true"), sandbox.WithSeccomp(profile))
		if err != nil {
			t.Fatal(err)
		}
		tc := translateCase{spec: s, img: sandbox.Image{Name: "busybox", ID: "sha256:0", Rootfs: "/r"}, sc: sc, target: Target{Image: goldenImage}}
		_, _, hc := translate(t, tc)
		j, err := seccompOpt(hc)
		if err != nil {
			t.Fatal(err)
		}
		var got, exp any
		if err := json.Unmarshal([]byte(j), &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want, &exp); err != nil {
			t.Fatal(err)
		}
		if !equalJSON(got, exp) {
			t.Errorf("%s: the seccomp option is not seccomp.Docker's profile", profile)
		}
	}
}

// TestTranslateRefuses: what Translate cannot express is an error, never dropped silently, so
// a hardening option added to oci.Hardened later fails here until the backend handles it.
func TestTranslateRefuses(t *testing.T) {
	base := func(t *testing.T) *specs.Spec {
		s, err := oci.Build(translateCases(t)[2].spec, sandbox.Image{Name: "busybox", ID: "sha256:0", Rootfs: "/r"}, goldenSeccomp)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name   string
		mutate func(*specs.Spec)
		want   string
	}{
		{"writable root", func(s *specs.Spec) { s.Root.Readonly = false }, "writable"},
		{"a capability", func(s *specs.Spec) { s.Process.Capabilities.Bounding = []string{"CAP_CHOWN"} }, "capabilit"},
		{"no capability sets", func(s *specs.Spec) { s.Process.Capabilities = nil }, "capabilit"},
		{"shared network namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
		}, "shares namespaces"},
		{"joined namespace", func(s *specs.Spec) { s.Linux.Namespaces[0].Path = "/proc/1/ns/pid" }, "joining"},
		{"user namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		}, "user namespace"},
		{"unknown mount type", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "nfs", Source: "h:/x"})
		}, "not supported"},
		{"bind option", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/x", Options: []string{"bind", "rshared"}})
		}, "rshared"},
		{"noexec bind other than the egress socket", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/x", Options: []string{"bind", "noexec", "ro"}})
		}, "noexec"},
		{"proc options", func(s *specs.Spec) { findMount(s, "/proc").Options = []string{"nosuid"} }, "/proc"},
		{"sys writable", func(s *specs.Spec) { findMount(s, "/sys").Options = []string{"nosuid", "noexec", "nodev"} }, "/sys"},
		{"device allowed", func(s *specs.Spec) {
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Access: "rwm"})
		}, "allows a device"},
		{"memory without swap", func(s *specs.Spec) { s.Linux.Resources.Memory.Swap = nil }, "swap"},
		{"cgroups path", func(s *specs.Spec) { s.Linux.CgroupsPath = "/x" }, "linux options"},
		{"sysctl", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"} }, "linux options"},
		{"terminal", func(s *specs.Spec) { s.Process.Terminal = true }, "terminal"},
		{"apparmor profile", func(s *specs.Spec) { s.Process.ApparmorProfile = "x" }, "process options"},
		{"supplementary groups", func(s *specs.Spec) { s.Process.User.AdditionalGids = []uint32{0} }, "uid:gid"},
		{"copy upper dir outside the run dir", func(s *specs.Spec) {
			m := findMount(s, "/cache")
			for i, o := range m.Options {
				if strings.HasPrefix(o, "upperdir=") {
					m.Options[i] = "upperdir=/etc"
				}
			}
		}, "outside the run directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base(t)
			tt.mutate(s)
			_, _, err := Translate(s, Target{Image: goldenImage, CopyRoot: goldenCopyRoot})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, _, err := Translate(base(t), Target{Image: goldenImage, CopyRoot: "relative"}); err == nil {
		t.Error("a relative copy root was accepted")
	}
}

func hasNS(s *specs.Spec, typ specs.LinuxNamespaceType) bool {
	return slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == typ && n.Path == "" })
}

func findMount(s *specs.Spec, dest string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dest {
			return &s.Mounts[i]
		}
	}
	return nil
}

func seccompOpt(hc *container.HostConfig) (string, error) {
	var found []string
	for _, o := range hc.SecurityOpt {
		if v, ok := strings.CutPrefix(o, "seccomp="); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("want one seccomp option, got %d in %v", len(found), hc.SecurityOpt)
	}
	return found[0], nil
}

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}
