package runc

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json golden OCI configs")

const (
	goldenID     = "airlock-0123456789ab-7"
	goldenRootfs = "/var/lib/airlock/images/busybox/rootfs"
)

// goldenSeccomp stands in for package seccomp's filter: the golden files pin what this package
// does with a filter (put it in linux.seccomp), while the filter's own content is pinned by
// package seccomp's tests.
var goldenSeccomp = &specs.LinuxSeccomp{
	DefaultAction: specs.ActErrno,
	Architectures: []specs.Arch{specs.ArchX86_64},
	Syscalls:      []specs.LinuxSyscall{{Names: []string{"read", "write"}, Action: specs.ActAllow}},
}

func goldenCases(t *testing.T) []struct {
	name string
	spec sandbox.Spec
	img  sandbox.Image
	sc   *specs.LinuxSeccomp
} {
	t.Helper()
	mk := func(opts ...sandbox.Option) sandbox.Spec {
		s, err := sandbox.New(opts...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	busybox := sandbox.Image{Name: "busybox", ID: "sha256:0", Rootfs: goldenRootfs}
	host := sandbox.Image{Name: "host", ID: "sha256:1", Rootfs: "/var/lib/airlock/images/host/rootfs", Binds: []sandbox.Mount{
		{Source: "/usr", Target: "/usr", Access: sandbox.ReadOnly},
		{Source: "/etc/ssl/certs", Target: "/etc/ssl/certs", Access: sandbox.ReadWrite}, // forced ro
	}}
	return []struct {
		name string
		spec sandbox.Spec
		img  sandbox.Image
		sc   *specs.LinuxSeccomp
	}{
		{"default", mk(sandbox.WithArgv("sh", "-c", "echo hello")), busybox, goldenSeccomp},
		{"workspace-ro", mk(sandbox.WithArgv("ls"), sandbox.WithWorkspace("/home/dev/project", sandbox.ReadOnly)), busybox, goldenSeccomp},
		{"workspace-rw-copy", mk(
			sandbox.WithArgv("go", "test", "./..."),
			sandbox.WithWorkspace("/home/dev/project", sandbox.ReadWrite),
			sandbox.WithMount(sandbox.Mount{Source: "/home/dev/cache", Target: "/cache", Access: sandbox.CopyOnWrite}),
			sandbox.WithMemory(512<<20), sandbox.WithCPUs(1.5), sandbox.WithPids(128),
			sandbox.WithTmpfsSize(128<<20), sandbox.WithTimeout(time.Minute),
			sandbox.WithEnv("GOFLAGS=-mod=mod"), sandbox.WithLabel("tool", "run_tests"),
		), busybox, goldenSeccomp},
		{"egress-proxy", mk(sandbox.WithArgv("wget", "-qO-", "https://example.com/"), sandbox.WithEgress("/run/airlock/egress.sock")), busybox, goldenSeccomp},
		{"host-unconfined", mk(sandbox.WithArgv("git", "status"), sandbox.WithImage("host"),
			sandbox.WithWorkspace("/home/dev/project", sandbox.ReadOnly), sandbox.WithSeccomp(sandbox.SeccompUnconfined)), host, nil},
	}
}

// TestOCIConfigGolden pins the generated OCI configuration: any change to isolation shows up
// as a diff of testdata/*.json in review. Regenerate with `go test ./sandbox/runc -run Golden -update`.
func TestOCIConfigGolden(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := OCIConfig(tc.spec, tc.img, goldenID, tc.sc)
			if err != nil {
				t.Fatal(err)
			}
			got := maskVolatile(t, cfg, goldenID, tc.img.Rootfs)
			file := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("OCI config for %s differs from %s; if the isolation change is intended, rerun with -update and review the diff.\n got: %s", tc.name, file, got)
			}
		})
	}
}

// maskVolatile renders cfg as indented JSON with the container id and image path replaced by
// placeholders, so the golden files do not depend on where images live or how ids are made.
func maskVolatile(t *testing.T, cfg *specs.Spec, id, rootfs string) []byte {
	t.Helper()
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	owner, _ := parseID(id)
	s := strings.ReplaceAll(string(b), rootfs, "<rootfs>")
	s = strings.ReplaceAll(s, id, "<id>")
	s = strings.ReplaceAll(s, `"`+owner+`"`, `"<owner>"`)
	return []byte(s + "\n")
}

func mustSpec(t *testing.T, opts ...sandbox.Option) sandbox.Spec {
	t.Helper()
	s, err := sandbox.New(append([]sandbox.Option{sandbox.WithArgv("true")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOCIConfigHardening asserts each hardened default on its own, so a failure names the
// property that was lost (the golden test only says "something changed").
func TestOCIConfigHardening(t *testing.T) {
	img := sandbox.Image{Name: "busybox", Rootfs: goldenRootfs}
	cfg, err := OCIConfig(mustSpec(t, sandbox.WithEnv("A=b")), img, goldenID, goldenSeccomp)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"root read-only, image used in place", cfg.Root.Readonly && cfg.Root.Path == goldenRootfs},
		{"no capabilities in any set", cfg.Process.Capabilities != nil &&
			len(cfg.Process.Capabilities.Bounding)+len(cfg.Process.Capabilities.Effective)+
				len(cfg.Process.Capabilities.Inheritable)+len(cfg.Process.Capabilities.Permitted)+
				len(cfg.Process.Capabilities.Ambient) == 0},
		{"no_new_privileges", cfg.Process.NoNewPrivileges},
		{"uid/gid 65534", cfg.Process.User.UID == 65534 && cfg.Process.User.GID == 65534 && len(cfg.Process.User.AdditionalGids) == 0},
		{"env is exactly the spec's", slices.Equal(cfg.Process.Env, mustSpec(t, sandbox.WithEnv("A=b")).Env)},
		{"no terminal", !cfg.Process.Terminal},
		{"hostname", cfg.Hostname == "airlock"},
		{"RLIMIT_CORE 0", slices.Contains(cfg.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_CORE"})},
		{"RLIMIT_NOFILE 1024", slices.Contains(cfg.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024})},
		{"seccomp set", cfg.Linux.Seccomp == goldenSeccomp},
		{"memory swap equal", *cfg.Linux.Resources.Memory.Limit == 256<<20 && *cfg.Linux.Resources.Memory.Swap == 256<<20},
		{"pids", *cfg.Linux.Resources.Pids.Limit == 64},
		{"cpu quota", *cfg.Linux.Resources.CPU.Quota == 100000 && *cfg.Linux.Resources.CPU.Period == 100000},
		{"devices deny all", len(cfg.Linux.Resources.Devices) == 1 && !cfg.Linux.Resources.Devices[0].Allow && cfg.Linux.Resources.Devices[0].Access == "rwm"},
		{"cgroups path", cfg.Linux.CgroupsPath == "/airlock/"+goldenID},
		{"owner annotation", cfg.Annotations[AnnotationOwner] == "0123456789ab" && cfg.Annotations["airlock"] == "1"},
		{"/proc/kcore masked", slices.Contains(cfg.Linux.MaskedPaths, "/proc/kcore")},
		{"/proc/keys masked", slices.Contains(cfg.Linux.MaskedPaths, "/proc/keys")},
		{"/sys/firmware masked", slices.Contains(cfg.Linux.MaskedPaths, "/sys/firmware")},
		{"/proc/sys read-only", slices.Contains(cfg.Linux.ReadonlyPaths, "/proc/sys")},
		{"/proc/sysrq-trigger read-only", slices.Contains(cfg.Linux.ReadonlyPaths, "/proc/sysrq-trigger")},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("hardened default lost: %s", c.name)
		}
	}
	var ns []specs.LinuxNamespaceType
	for _, n := range cfg.Linux.Namespaces {
		if n.Path != "" {
			t.Errorf("namespace %s joins %s; every run needs a new one", n.Type, n.Path)
		}
		ns = append(ns, n.Type)
	}
	for _, want := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace, specs.NetworkNamespace, specs.CgroupNamespace} {
		if !slices.Contains(ns, want) {
			t.Errorf("namespace %s missing", want)
		}
	}
	mounts := map[string]specs.Mount{}
	for _, m := range cfg.Mounts {
		mounts[m.Destination] = m
	}
	if m := mounts["/sys"]; !slices.Contains(m.Options, "ro") {
		t.Errorf("/sys not read-only: %v", m.Options)
	}
	if m := mounts["/tmp"]; m.Type != "tmpfs" || !slices.Contains(m.Options, "mode=1777") || !slices.Contains(m.Options, "size=67108864") ||
		!slices.Contains(m.Options, "nosuid") || !slices.Contains(m.Options, "nodev") {
		t.Errorf("/tmp = %+v; want a 64 MiB nosuid,nodev tmpfs with mode 1777", m)
	}
	if _, ok := mounts["/sys/fs/cgroup"]; ok {
		t.Error("cgroupfs mounted; the sandbox has no use for it")
	}
}

func TestOCIConfigMounts(t *testing.T) {
	img := sandbox.Image{Name: "host", Rootfs: goldenRootfs, Binds: []sandbox.Mount{{Source: "/usr", Target: "/usr", Access: sandbox.ReadWrite}}}
	tests := []struct {
		name    string
		mount   sandbox.Mount
		wantErr bool
		check   func(specs.Mount) bool
	}{
		{"ro bind", sandbox.Mount{Source: "/src", Target: "/workspace", Access: sandbox.ReadOnly}, false,
			func(m specs.Mount) bool {
				return m.Type == "bind" && slices.Contains(m.Options, "ro") && slices.Contains(m.Options, "nosuid") && slices.Contains(m.Options, "nodev") && !slices.Contains(m.Options, "rbind")
			}},
		{"rw bind", sandbox.Mount{Source: "/src", Target: "/workspace", Access: sandbox.ReadWrite}, false,
			func(m specs.Mount) bool {
				return m.Type == "bind" && slices.Contains(m.Options, "rw") && !slices.Contains(m.Options, "ro") && slices.Contains(m.Options, "nosuid")
			}},
		{"copy overlay in bundle", sandbox.Mount{Source: "/src", Target: "/workspace", Access: sandbox.CopyOnWrite}, false,
			func(m specs.Mount) bool {
				return m.Type == "overlay" && slices.Equal(m.Options, []string{"lowerdir=/src", "upperdir=copy/0/upper", "workdir=copy/0/work", "nosuid", "nodev"})
			}},
		{"copy source with comma refused", sandbox.Mount{Source: "/src,upperdir=/etc", Target: "/workspace", Access: sandbox.CopyOnWrite}, true, nil},
		{"copy source with colon refused", sandbox.Mount{Source: "/a:/etc", Target: "/workspace", Access: sandbox.CopyOnWrite}, true, nil},
		{"target over /proc refused", sandbox.Mount{Source: "/src", Target: "/proc/sys", Access: sandbox.ReadOnly}, true, nil},
		{"target /dev refused", sandbox.Mount{Source: "/src", Target: "/dev", Access: sandbox.ReadOnly}, true, nil},
		{"target / refused", sandbox.Mount{Source: "/src", Target: "/", Access: sandbox.ReadOnly}, true, nil},
		{"target /sys/.. cleaned and refused", sandbox.Mount{Source: "/src", Target: "/x/../sys", Access: sandbox.ReadOnly}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := mustSpec(t, sandbox.WithMount(tt.mount))
			cfg, err := OCIConfig(spec, img, goldenID, goldenSeccomp)
			if tt.wantErr {
				if !errors.Is(err, sandbox.ErrInvalidSpec) {
					t.Fatalf("err = %v, want ErrInvalidSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			last := cfg.Mounts[len(cfg.Mounts)-1]
			if !tt.check(last) {
				t.Errorf("mount = %+v", last)
			}
			for _, m := range cfg.Mounts {
				if m.Destination == "/usr" && !slices.Contains(m.Options, "ro") {
					t.Errorf("image bind /usr is not read-only: %v", m.Options)
				}
			}
		})
	}
}

func TestOCIConfigRefuses(t *testing.T) {
	img := sandbox.Image{Name: "busybox", Rootfs: goldenRootfs}
	tests := []struct {
		name string
		spec sandbox.Spec
		img  sandbox.Image
		id   string
		sc   *specs.LinuxSeccomp
	}{
		{"no seccomp filter for default profile", mustSpec(t), img, goldenID, nil},
		{"no seccomp filter for files profile", mustSpec(t, sandbox.WithSeccomp(sandbox.SeccompFiles)), img, goldenID, nil},
		{"relative rootfs", mustSpec(t), sandbox.Image{Name: "x", Rootfs: "rootfs"}, goldenID, goldenSeccomp},
		{"id not ours", mustSpec(t), img, "mycontainer", goldenSeccomp},
		{"invalid spec", sandbox.Spec{}, img, goldenID, goldenSeccomp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if cfg, err := OCIConfig(tt.spec, tt.img, tt.id, tt.sc); err == nil {
				t.Fatalf("OCIConfig accepted it: %+v", cfg)
			}
		})
	}
	if _, err := OCIConfig(mustSpec(t, sandbox.WithSeccomp(sandbox.SeccompUnconfined)), img, goldenID, nil); err != nil {
		t.Errorf("unconfined with nil filter: %v", err)
	}
}
