package seccomp

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/sandbox"
)

var update = flag.Bool("update", false, "rewrite the golden profiles under testdata/")

// fixed targets make the golden files independent of the machine running the tests.
var targets = map[string]Target{
	"amd64": {Arch: "amd64", Kernel: Kernel{6, 18}},
	"arm64": {Arch: "arm64", Kernel: Kernel{6, 18}},
}

func mustProfiles(t *testing.T, arch string) *Profiles {
	t.Helper()
	p, err := NewProfiles(targets[arch])
	if err != nil {
		t.Fatalf("NewProfiles(%s): %v", arch, err)
	}
	return p
}

// allowed returns every syscall name any allow rule of p mentions, conditional or not.
func allowed(p *specs.LinuxSeccomp) map[string]bool {
	out := map[string]bool{}
	for _, r := range p.Syscalls {
		if r.Action == specs.ActAllow {
			for _, n := range r.Names {
				out[n] = true
			}
		}
	}
	return out
}

func TestRefusedAbsentFromEveryAllowRule(t *testing.T) {
	// The list from the threat model, spelled out here rather than taken from Refusals so that
	// shrinking Refusals fails this test.
	mustRefuse := []string{
		"ptrace", "process_vm_readv", "process_vm_writev",
		"io_uring_setup", "io_uring_enter", "io_uring_register",
		"keyctl", "add_key", "request_key", "bpf", "userfaultfd", "perf_event_open",
		"kexec_load", "kexec_file_load", "open_by_handle_at", "name_to_handle_at",
		"mount", "umount", "umount2", "mount_setattr", "move_mount", "open_tree",
		"fsopen", "fsconfig", "fsmount", "fspick", "pivot_root", "unshare", "setns", "chroot",
		"socketcall", "openat2", "fchmodat2",
	}
	filesAlsoRefuse := []string{
		"socket", "socketpair", "connect", "bind", "listen", "accept4", "sendmsg",
		"setuid", "setresuid", "setgroups", "capset", "memfd_create", "execveat", "shmget", "msgget",
	}
	for _, arch := range []string{"amd64", "arm64"} {
		p := mustProfiles(t, arch)
		for _, v := range Variants() {
			profile := v.Profile
			s, err := p.OCI(profile, v.Network)
			if err != nil {
				t.Fatal(err)
			}
			names := mustRefuse
			if profile == sandbox.SeccompFiles {
				names = append(slices.Clone(mustRefuse), filesAlsoRefuse...)
			}
			got := allowed(s)
			for _, n := range names {
				t.Run(arch+"/"+profile+"-"+string(v.Network)+"/"+n, func(t *testing.T) {
					if got[n] {
						t.Errorf("%s is allowed by profile %s on %s", n, profile, arch)
					}
				})
			}
		}
	}
}

func TestDefaultActionAndArchitectures(t *testing.T) {
	cases := []struct {
		arch string
		want []specs.Arch
	}{
		{"amd64", []specs.Arch{specs.ArchX86_64}},
		{"arm64", []specs.Arch{specs.ArchAARCH64}},
	}
	for _, c := range cases {
		t.Run(c.arch, func(t *testing.T) {
			p := mustProfiles(t, c.arch)
			for _, profile := range []string{sandbox.SeccompDefault, sandbox.SeccompFiles} {
				s, _ := p.OCI(profile, sandbox.NetworkNone)
				if s.DefaultAction != specs.ActErrno || s.DefaultErrnoRet == nil || *s.DefaultErrnoRet != uint(unix.EPERM) {
					t.Errorf("%s: default action %s errno %v, want SCMP_ACT_ERRNO EPERM", profile, s.DefaultAction, s.DefaultErrnoRet)
				}
				if !slices.Equal(s.Architectures, c.want) {
					t.Errorf("%s: architectures %v, want only the native %v", profile, s.Architectures, c.want)
				}
			}
		})
	}
}

// rulesFor returns the rules of p that name syscall.
func rulesFor(p *specs.LinuxSeccomp, syscall string) []specs.LinuxSyscall {
	var out []specs.LinuxSyscall
	for _, r := range p.Syscalls {
		if slices.Contains(r.Names, syscall) {
			out = append(out, r)
		}
	}
	return out
}

// TestSocketFamiliesWithNetworkProxy: with network proxy, socket is allowed for AF_UNIX,
// AF_INET and AF_INET6 only, each by its own rule, and socketpair for AF_UNIX only; socketcall
// (whose arguments seccomp cannot see) stays refused.
func TestSocketFamiliesWithNetworkProxy(t *testing.T) {
	for arch := range targets {
		s, err := mustProfiles(t, arch).OCI(sandbox.SeccompDefault, sandbox.NetworkProxy)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(arch, func(t *testing.T) {
			var families []uint64
			for _, r := range rulesFor(s, "socket") {
				if r.Action != specs.ActAllow || len(r.Args) != 1 || r.Args[0].Index != 0 || r.Args[0].Op != specs.OpEqualTo {
					t.Fatalf("socket rule %+v is not an allow on arg0 == family", r)
				}
				families = append(families, r.Args[0].Value)
			}
			slices.Sort(families)
			if want := []uint64{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6}; !slices.Equal(families, want) {
				t.Errorf("socket allowed for families %v, want %v", families, want)
			}
			pair := rulesFor(s, "socketpair")
			want := []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_UNIX, Op: specs.OpEqualTo}}
			if len(pair) != 1 || !slices.Equal(pair[0].Args, want) {
				t.Errorf("socketpair rules %+v, want one allow with arg0 == AF_UNIX", pair)
			}
			if allowed(s)["socketcall"] {
				t.Error("socketcall is allowed")
			}
		})
	}
	if _, err := Refusals(sandbox.SeccompFiles, sandbox.NetworkProxy); err == nil {
		t.Error("Refusals(files, proxy) succeeded; the files profile has no sockets")
	}
}

func TestSocketOnlyAFUnixWithNetworkNone(t *testing.T) {
	for arch := range targets {
		s, err := mustProfiles(t, arch).OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"socket", "socketpair"} {
			t.Run(arch+"/"+name, func(t *testing.T) {
				rules := rulesFor(s, name)
				want := []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_UNIX, Op: specs.OpEqualTo}}
				if len(rules) != 1 || rules[0].Action != specs.ActAllow || !slices.Equal(rules[0].Args, want) {
					t.Fatalf("rules for %s = %+v, want exactly one allow with arg0 == AF_UNIX", name, rules)
				}
			})
		}
	}
}

func TestCloneKeepsDockerRestrictions(t *testing.T) {
	nsFlags := uint64(unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
		unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP)
	for arch := range targets {
		for _, profile := range []string{sandbox.SeccompDefault, sandbox.SeccompFiles} {
			t.Run(arch+"/"+profile, func(t *testing.T) {
				s, _ := mustProfiles(t, arch).OCI(profile, sandbox.NetworkNone)
				clone := rulesFor(s, "clone")
				if len(clone) != 1 || clone[0].Action != specs.ActAllow || len(clone[0].Args) != 1 ||
					clone[0].Args[0] != (specs.LinuxSeccompArg{Index: 0, Value: nsFlags, Op: specs.OpMaskedEqual}) {
					t.Errorf("clone rules = %+v, want one allow when (flags & namespace flags) == 0", clone)
				}
				clone3 := rulesFor(s, "clone3")
				if len(clone3) != 1 || clone3[0].Action != specs.ActErrno || clone3[0].ErrnoRet == nil ||
					*clone3[0].ErrnoRet != uint(unix.ENOSYS) {
					t.Errorf("clone3 rules = %+v, want one errno ENOSYS rule so libc falls back to clone", clone3)
				}
			})
		}
	}
}

func TestFilesIsSubsetOfDefault(t *testing.T) {
	for arch := range targets {
		t.Run(arch, func(t *testing.T) {
			p := mustProfiles(t, arch)
			def, _ := p.OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
			files, _ := p.OCI(sandbox.SeccompFiles, sandbox.NetworkNone)
			// Every allow rule of files must be an allow rule of default (same names, same args).
			for _, fr := range files.Syscalls {
				if fr.Action != specs.ActAllow {
					continue
				}
				for _, n := range fr.Names {
					ok := false
					for _, dr := range rulesFor(def, n) {
						if dr.Action == specs.ActAllow && slices.Equal(dr.Args, fr.Args) {
							ok = true
						}
					}
					if !ok {
						t.Errorf("files allows %s (args %v) but default does not", n, fr.Args)
					}
				}
			}
			if len(allowed(files)) >= len(allowed(def)) {
				t.Errorf("files allows %d syscalls, default %d: files must be strictly smaller", len(allowed(files)), len(allowed(def)))
			}
		})
	}
}

func TestFilesKeepsWhatGoAndBusyboxNeed(t *testing.T) {
	need := []string{
		"execve", "mmap", "munmap", "mprotect", "madvise", "brk", "clone", "futex", "rt_sigaction",
		"rt_sigprocmask", "rt_sigreturn", "sigaltstack", "sched_yield", "sched_getaffinity",
		"getrandom", "prlimit64", "tgkill", "gettid", "getpid", "nanosleep", "clock_gettime",
		"epoll_create1", "epoll_ctl", "epoll_pwait", "eventfd2", "pipe2", "wait4", "exit_group",
		"openat", "read", "write", "close", "close_range", "fcntl", "newfstatat", "fstat", "statx",
		"getdents64", "lseek", "pread64", "pwrite64", "readlinkat", "mkdirat", "unlinkat",
		"renameat2", "fsync", "fchmod", "utimensat", "ftruncate", "getcwd", "chdir", "dup3",
		"ioctl", "uname", "set_tid_address", "set_robust_list", "rseq", "getuid", "umask",
	}
	s, err := mustProfiles(t, "amd64").OCI(sandbox.SeccompFiles, sandbox.NetworkNone)
	if err != nil {
		t.Fatal(err)
	}
	got := allowed(s)
	for _, n := range append(need, "arch_prctl") { // arch_prctl: amd64 TLS setup
		if !got[n] {
			t.Errorf("files profile refuses %s, which a static Go program or busybox needs", n)
		}
	}
}

// TestNoSyscallInTwoRules guards normalise: a syscall in the unconditional allow list must not
// appear in any other rule, or the filter's meaning would depend on libseccomp's rule merging.
func TestNoSyscallInTwoRules(t *testing.T) {
	for arch := range targets {
		p := mustProfiles(t, arch)
		for _, profile := range []string{sandbox.SeccompDefault, sandbox.SeccompFiles} {
			t.Run(arch+"/"+profile, func(t *testing.T) {
				s, _ := p.OCI(profile, sandbox.NetworkNone)
				plain := s.Syscalls[0]
				if plain.Action != specs.ActAllow || len(plain.Args) != 0 {
					t.Fatalf("first rule is %+v, want the unconditional allow list", plain)
				}
				if !slices.IsSorted(plain.Names) {
					t.Error("unconditional allow list is not sorted")
				}
				for _, r := range s.Syscalls[1:] {
					for _, n := range r.Names {
						if slices.Contains(plain.Names, n) {
							t.Errorf("%s is in the unconditional allow list and in rule %+v", n, r)
						}
					}
				}
			})
		}
	}
}

func TestLookups(t *testing.T) {
	p := mustProfiles(t, "amd64")
	cases := []struct {
		name    string
		profile string
		network sandbox.Network
		wantNil bool
		wantErr bool
	}{
		{"default", sandbox.SeccompDefault, sandbox.NetworkNone, false, false},
		{"files", sandbox.SeccompFiles, sandbox.NetworkNone, false, false},
		{"unconfined is nil, nil", sandbox.SeccompUnconfined, sandbox.NetworkNone, true, false},
		{"unknown profile", "strict", sandbox.NetworkNone, true, true},
		{"empty profile", "", sandbox.NetworkNone, true, true},
		{"unknown network", sandbox.SeccompDefault, sandbox.Network("host"), true, true},
		{"default with proxy", sandbox.SeccompDefault, sandbox.NetworkProxy, false, false},
		{"files with proxy has no sockets", sandbox.SeccompFiles, sandbox.NetworkProxy, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := p.OCI(c.profile, c.network)
			if (err != nil) != c.wantErr || (s == nil) != c.wantNil {
				t.Errorf("OCI = %v, %v; want nil=%v err=%v", s, err, c.wantNil, c.wantErr)
			}
			j, err := p.Docker(c.profile, c.network)
			if (err != nil) != c.wantErr || (j == nil) != c.wantNil {
				t.Errorf("Docker = %d bytes, %v; want nil=%v err=%v", len(j), err, c.wantNil, c.wantErr)
			}
		})
	}
}

func TestUnsupportedArch(t *testing.T) {
	if _, err := NewProfiles(Target{Arch: "riscv64", Kernel: Kernel{6, 18}}); err == nil {
		t.Error("NewProfiles(riscv64) succeeded; want an error naming the supported architectures")
	}
}

func TestParseKernel(t *testing.T) {
	cases := []struct {
		release string
		want    Kernel
		wantErr bool
	}{
		{"6.18.44-fc-v669", Kernel{6, 18}, false},
		{"3.12-1-amd64", Kernel{3, 12}, false},
		{"5.4", Kernel{5, 4}, false},
		{"linux", Kernel{}, true},
		{"", Kernel{}, true},
	}
	for _, c := range cases {
		t.Run(c.release, func(t *testing.T) {
			got, err := ParseKernel(c.release)
			if (err != nil) != c.wantErr || got != c.want {
				t.Errorf("ParseKernel(%q) = %v, %v; want %v, err=%v", c.release, got, err, c.want, c.wantErr)
			}
		})
	}
}

// TestMinKernel: Docker allows ptrace and process_vm_* only from 4.8 on (minKernel). The
// resolution must honour that (absent on 4.4) even though Airlock removes them afterwards.
func TestMinKernel(t *testing.T) {
	cases := []struct {
		kernel Kernel
		want   bool
	}{
		{Kernel{4, 4}, false},
		{Kernel{4, 8}, true},
		{Kernel{6, 18}, true},
	}
	for _, c := range cases {
		p, err := resolveDocker(Target{Arch: "amd64", Kernel: c.kernel})
		if err != nil {
			t.Fatal(err)
		}
		if got := allowed(p)["ptrace"]; got != c.want {
			t.Errorf("kernel %v: Docker's ptrace rule included=%v, want %v", c.kernel, got, c.want)
		}
	}
}

// TestArchSpecificRules: arch_prctl is in Docker's amd64-only list, and arm_fadvise64_64 in the
// arm/arm64 one; each must appear only on its architecture.
func TestArchSpecificRules(t *testing.T) {
	cases := []struct {
		arch, present, absent string
	}{
		{"amd64", "arch_prctl", "arm_fadvise64_64"},
		{"arm64", "arm_fadvise64_64", "arch_prctl"},
	}
	for _, c := range cases {
		t.Run(c.arch, func(t *testing.T) {
			s, _ := mustProfiles(t, c.arch).OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
			got := allowed(s)
			if !got[c.present] || got[c.absent] {
				t.Errorf("%s: %s allowed=%v (want true), %s allowed=%v (want false)",
					c.arch, c.present, got[c.present], c.absent, got[c.absent])
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	for arch, tgt := range targets {
		t.Run(arch, func(t *testing.T) {
			a, _ := NewProfiles(tgt)
			b, _ := NewProfiles(tgt)
			for _, profile := range []string{sandbox.SeccompDefault, sandbox.SeccompFiles} {
				ja, _ := a.Docker(profile, sandbox.NetworkNone)
				jb, _ := b.Docker(profile, sandbox.NetworkNone)
				if !bytes.Equal(ja, jb) {
					t.Errorf("%s: two compilations differ", profile)
				}
			}
		})
	}
}

// TestGolden compares the generated profiles with testdata/<profile>-<network>.<arch>.json so
// that any change to what a sandbox may call shows up in review. Regenerate with
// `go test ./seccomp -run TestGolden -update`.
func TestGolden(t *testing.T) {
	for arch := range targets {
		p := mustProfiles(t, arch)
		for _, v := range Variants() {
			name := v.Profile + "-" + string(v.Network) + "." + arch + ".json"
			t.Run(name, func(t *testing.T) {
				got, err := p.Docker(v.Profile, v.Network)
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join("testdata", name)
				if *update {
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the generated profile; review the change and run with -update", path)
				}
			})
		}
	}
}

// TestDockerJSONRoundTrip: the Docker form decodes back into the OCI value.
func TestDockerJSONRoundTrip(t *testing.T) {
	p := mustProfiles(t, "amd64")
	j, _ := p.Docker(sandbox.SeccompDefault, sandbox.NetworkNone)
	var back specs.LinuxSeccomp
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	s, _ := p.OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
	again, _ := json.Marshal(&back)
	orig, _ := json.Marshal(s)
	if !bytes.Equal(again, orig) {
		t.Error("Docker JSON does not decode to the OCI profile")
	}
}

func TestHostOCICached(t *testing.T) {
	a, err := OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
	if a != b {
		t.Error("OCI compiled the profile twice; want one shared value")
	}
	if s, err := OCI(sandbox.SeccompUnconfined, sandbox.NetworkNone); s != nil || err != nil {
		t.Errorf("OCI(unconfined) = %v, %v; want nil, nil", s, err)
	}
}

func BenchmarkOCICached(b *testing.B) {
	for b.Loop() {
		if _, err := OCI(sandbox.SeccompDefault, sandbox.NetworkNone); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	for b.Loop() {
		if _, err := NewProfiles(targets["amd64"]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDockerLoadsProfile: the Docker form is accepted by moby's own profile loader (what the
// Docker daemon runs on HostConfig.SecurityOpt "seccomp=<json>") and yields the same rules.
func TestDockerLoadsProfile(t *testing.T) {
	p, err := host()
	if err != nil {
		t.Fatal(err)
	}
	for _, profile := range []string{sandbox.SeccompDefault, sandbox.SeccompFiles} {
		t.Run(profile, func(t *testing.T) {
			j, _ := p.Docker(profile, sandbox.NetworkNone)
			loaded, err := moby.LoadProfile(string(j), &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}})
			if err != nil {
				t.Fatalf("moby.LoadProfile: %v", err)
			}
			want, _ := p.OCI(profile, sandbox.NetworkNone)
			a, _ := json.Marshal(loaded)
			b, _ := json.Marshal(want)
			if !bytes.Equal(a, b) {
				t.Errorf("Docker's loader produced a different profile:\n%s\nwant\n%s", a, b)
			}
		})
	}
}

// TestDocsNameEveryDefaultRefusal: docs/seccomp.md is what operators read; every syscall the
// default profile refuses must be named there, so the docs cannot silently fall behind.
func TestDocsNameEveryDefaultRefusal(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "seccomp.md"))
	if err != nil {
		t.Fatal(err)
	}
	refusals, err := Refusals(sandbox.SeccompDefault, sandbox.NetworkNone)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refusals {
		for _, n := range r.Names {
			if !bytes.Contains(doc, []byte("`"+n+"`")) {
				t.Errorf("docs/seccomp.md does not mention `%s` (%s)", n, r.Why)
			}
		}
	}
}

// TestSetIDModesOnlyConditional: every call that creates a file or sets its mode is allowed
// only by one rule, (mode & 06000) == 0 on its mode argument, in both profiles on both
// architectures; openat2 and fchmodat2 have exactly one rule, ENOSYS. The argument indexes are
// spelled out here rather than taken from SetIDModeRules, so a wrong index fails the test.
func TestSetIDModesOnlyConditional(t *testing.T) {
	modeArg := map[string]uint{
		"chmod": 1, "fchmod": 1, "creat": 1, "mknod": 1,
		"fchmodat": 2, "open": 2, "mknodat": 2,
		"openat": 3,
	}
	for arch := range targets {
		p := mustProfiles(t, arch)
		for _, profile := range []string{sandbox.SeccompDefault, sandbox.SeccompFiles} {
			t.Run(arch+"/"+profile, func(t *testing.T) {
				s, _ := p.OCI(profile, sandbox.NetworkNone)
				for name, idx := range modeArg {
					want := []specs.LinuxSeccompArg{{Index: idx, Value: 0o6000, ValueTwo: 0, Op: specs.OpMaskedEqual}}
					rules := rulesFor(s, name)
					if len(rules) != 1 || rules[0].Action != specs.ActAllow || !slices.Equal(rules[0].Args, want) {
						t.Errorf("rules for %s = %+v, want exactly one allow when (arg%d & 06000) == 0", name, rules, idx)
					}
				}
				for _, name := range []string{"openat2", "fchmodat2"} {
					rules := rulesFor(s, name)
					if len(rules) != 1 || rules[0].Action != specs.ActErrno || rules[0].ErrnoRet == nil ||
						*rules[0].ErrnoRet != uint(unix.ENOSYS) {
						t.Errorf("rules for %s = %+v, want one errno ENOSYS rule so libc falls back", name, rules)
					}
				}
			})
		}
	}
	var listed int
	for _, r := range SetIDModeRules() {
		for _, n := range r.Names {
			listed++
			if modeArg[n] != r.Arg {
				t.Errorf("SetIDModeRules: %s mode is argument %d, want %d", n, r.Arg, modeArg[n])
			}
		}
	}
	if listed != len(modeArg) {
		t.Errorf("SetIDModeRules lists %d calls, want %d", listed, len(modeArg))
	}
}

// TestSetIDMaskSemantics evaluates the condition as libseccomp does for SCMP_CMP_MASKED_EQ
// ((arg & Value) == ValueTwo): ordinary and sticky modes pass, any setuid or setgid bit fails,
// whatever the high bits a caller puts in the register.
func TestSetIDMaskSemantics(t *testing.T) {
	s, _ := mustProfiles(t, "amd64").OCI(sandbox.SeccompDefault, sandbox.NetworkNone)
	cond := rulesFor(s, "fchmodat")[0].Args[0]
	cases := []struct {
		mode uint64
		pass bool
	}{
		{0o755, true}, {0o644, true}, {0o1777, true}, {unix.S_IFREG | 0o644, true}, {0xffff_0000_0000_0000 | 0o755, true},
		{0o4755, false}, {0o2755, false}, {0o6755, false}, {0o4000, false}, {unix.S_IFREG | 0o2644, false},
		{0xffff_0000_0000_0000 | 0o4755, false},
	}
	for _, c := range cases {
		if got := c.mode&cond.Value == cond.ValueTwo; got != c.pass {
			t.Errorf("mode %#o: allowed=%v, want %v", c.mode, got, c.pass)
		}
	}
}

// TestDocsNameSetIDModeRules: docs/seccomp.md names every mode-restricted call.
func TestDocsNameSetIDModeRules(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "seccomp.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range SetIDModeRules() {
		for _, n := range r.Names {
			if !bytes.Contains(doc, []byte("`"+n+"`")) {
				t.Errorf("docs/seccomp.md does not mention `%s` (allowed only without setuid/setgid bits)", n)
			}
		}
	}
}
