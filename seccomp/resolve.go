package seccomp

import (
	"fmt"
	"runtime"
	"slices"

	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Target is the machine a profile is resolved for: Docker's profile has rules that apply only on
// some architectures or from some kernel version on.
type Target struct {
	Arch   string // GOARCH: "amd64" or "arm64"
	Kernel Kernel // running kernel; rules with a minKernel above it are left out
}

// Kernel is a kernel "version.major" pair, e.g. 6.18 (minor and suffixes are ignored, as Docker does).
type Kernel struct {
	Version, Major uint64
}

func (k Kernel) atLeast(min moby.KernelVersion) bool {
	return k.Version > min.Kernel || (k.Version == min.Kernel && k.Major >= min.Major)
}

// HostTarget describes the running machine.
func HostTarget() (Target, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return Target{}, fmt.Errorf("seccomp: uname: %w", err)
	}
	k, err := ParseKernel(unix.ByteSliceToString(uts.Release[:]))
	if err != nil {
		return Target{}, err
	}
	return Target{Arch: runtime.GOARCH, Kernel: k}, nil
}

// ParseKernel reads the "version.major" prefix of a kernel release such as "6.18.44-fc-v669".
func ParseKernel(release string) (Kernel, error) {
	var k Kernel
	if _, err := fmt.Sscanf(release, "%d.%d", &k.Version, &k.Major); err != nil {
		return Kernel{}, fmt.Errorf("seccomp: kernel release %q: want VERSION.MAJOR...: %w", release, err)
	}
	return k, nil
}

// archInfo maps a GOARCH to libseccomp's native name (used by Docker's includes/excludes) and to
// the architecture the filter covers.
//
// Only the native architecture is listed, never Docker's compat sub-architectures (x86 and x32
// on amd64, arm on arm64). A syscall made through a compat entry point (int $0x80 from a 64-bit
// process, or a 32-bit binary) then matches no architecture of the filter and gets libseccomp's
// bad-arch action (the calling thread is killed with SIGSYS) instead of reaching an allow rule;
// TestCompatSyscallsRefused shows it in a real container. This closes two
// holes Docker leaves open: on i386 socket() goes through socketcall(2), whose arguments live
// in memory, so the AF_UNIX-only socket rule could not be enforced there; and the compat
// syscall tables have been a recurring source of kernel bugs. Sandboxed tools are 64-bit.
func archInfo(goarch string) (native string, arch specs.Arch, err error) {
	switch goarch {
	case "amd64":
		return "amd64", specs.ArchX86_64, nil
	case "arm64":
		return "arm64", specs.ArchAARCH64, nil
	}
	return "", "", fmt.Errorf("seccomp: architecture %q is not supported; Airlock's profiles cover amd64 and arm64", goarch)
}

// resolveDocker turns Docker's default profile (conditional rules) into the plain OCI rules that
// apply to a container with NO capabilities on t. It follows moby's own resolution
// (profiles/seccomp setupSeccomp) with an empty capability set:
//   - a rule whose includes name any capability is left out (we hold none);
//   - a rule whose excludes name capabilities still applies (we hold none of them);
//   - includes.arches / excludes.arches compare against the native architecture name;
//   - includes.minKernel needs t.Kernel >= min; excludes.minKernel drops the rule when it holds.
//
// The result is a fresh value owned by the caller.
func resolveDocker(t Target) (*specs.LinuxSeccomp, error) {
	native, arch, err := archInfo(t.Arch)
	if err != nil {
		return nil, err
	}
	p := moby.DefaultProfile()
	out := &specs.LinuxSeccomp{
		DefaultAction:   p.DefaultAction,
		DefaultErrnoRet: cloneUint(p.DefaultErrnoRet),
		Architectures:   []specs.Arch{arch},
	}
	for _, rule := range p.Syscalls {
		if !applies(rule, native, t.Kernel) {
			continue
		}
		names := slices.Clone(rule.Names)
		if rule.Name != "" {
			names = append(names, rule.Name)
		}
		out.Syscalls = append(out.Syscalls, specs.LinuxSyscall{
			Names:    names,
			Action:   rule.Action,
			ErrnoRet: cloneUint(rule.ErrnoRet),
			Args:     slices.Clone(rule.Args),
		})
	}
	return out, nil
}

func applies(rule *moby.Syscall, native string, k Kernel) bool {
	if ex := rule.Excludes; ex != nil {
		if slices.Contains(ex.Arches, native) {
			return false
		}
		// ex.Caps: the container holds no capabilities, so a capability exclusion never fires.
		if ex.MinKernel != nil && k.atLeast(*ex.MinKernel) {
			return false
		}
	}
	if in := rule.Includes; in != nil {
		if len(in.Arches) > 0 && !slices.Contains(in.Arches, native) {
			return false
		}
		if len(in.Caps) > 0 {
			return false // the rule is for containers holding a capability; Airlock grants none
		}
		if in.MinKernel != nil && !k.atLeast(*in.MinKernel) {
			return false
		}
	}
	return true
}

func cloneUint(p *uint) *uint {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
