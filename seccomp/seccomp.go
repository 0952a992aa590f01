// Package seccomp holds Airlock's seccomp profiles and converts them to OCI and Docker form.
//
// Every profile starts from Docker's default profile (github.com/moby/profiles/seccomp) resolved
// for a container with no capabilities on the running architecture and kernel, and then only
// REMOVES syscalls from its allow lists (see Refusals) or narrows an allow with an argument
// condition (see SetIDModeRules). The default action stays EPERM.
//
//   - default: Docker's profile minus process inspection, io_uring, keyrings, eBPF/perf/
//     userfaultfd/kexec, file handles and the mount/namespace family; openat2 and fchmodat2
//     return ENOSYS; file creation and chmod only with modes free of setuid/setgid bits;
//     with network none, sockets only for AF_UNIX; with network proxy, for AF_UNIX, AF_INET and
//     AF_INET6 (the egress forwarder listens on loopback; the namespace has nothing else).
//   - files: default minus sockets, identity changes, IPC, fileless exec and other kernel
//     interfaces a file tool never needs.
//   - unconfined: no filter at all; only ever an explicit, recorded choice.
package seccomp

import (
	"encoding/json"
	"fmt"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/airlock-mcp/airlock/sandbox"
)

// Profiles is every Airlock profile compiled for one Target. It is immutable after
// NewProfiles returns and safe for concurrent use.
type Profiles struct {
	target Target
	oci    map[key]*specs.LinuxSeccomp
	docker map[key][]byte
}

type key struct {
	profile string
	network sandbox.Network
}

// Variant is one compiled combination of a profile and a network mode.
type Variant struct {
	Profile string
	Network sandbox.Network
}

// Variants are the combinations NewProfiles compiles: default for network none and proxy,
// files for none only (it has no sockets, so sandbox.Spec.Validate refuses it with proxy).
func Variants() []Variant {
	return []Variant{
		{sandbox.SeccompDefault, sandbox.NetworkNone},
		{sandbox.SeccompDefault, sandbox.NetworkProxy},
		{sandbox.SeccompFiles, sandbox.NetworkNone},
	}
}

// NewProfiles compiles every Variant on t.
func NewProfiles(t Target) (*Profiles, error) {
	p := &Profiles{target: t, oci: map[key]*specs.LinuxSeccomp{}, docker: map[key][]byte{}}
	for _, v := range Variants() {
		s, err := build(v.Profile, v.Network, t)
		if err != nil {
			return nil, err
		}
		j, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("seccomp: encoding profile %s: %w", v.Profile, err)
		}
		k := key{v.Profile, v.Network}
		p.oci[k], p.docker[k] = s, append(j, '\n')
	}
	return p, nil
}

// Target is what the profiles were compiled for.
func (p *Profiles) Target() Target { return p.target }

// OCI returns the compiled profile for the runc backend, or (nil, nil) for
// sandbox.SeccompUnconfined (no filter; the caller records that it loosened the sandbox).
// The returned value is shared by every caller: it must not be modified.
func (p *Profiles) OCI(profile string, network sandbox.Network) (*specs.LinuxSeccomp, error) {
	if profile == sandbox.SeccompUnconfined {
		return nil, nil
	}
	s, ok := p.oci[key{profile, network}]
	if !ok {
		return nil, p.missing(profile, network)
	}
	return s, nil
}

// Docker returns the profile as Docker's seccomp JSON (for HostConfig.SecurityOpt
// "seccomp=<json>"), or (nil, nil) for sandbox.SeccompUnconfined. The bytes are a fresh copy.
func (p *Profiles) Docker(profile string, network sandbox.Network) ([]byte, error) {
	if profile == sandbox.SeccompUnconfined {
		return nil, nil
	}
	j, ok := p.docker[key{profile, network}]
	if !ok {
		return nil, p.missing(profile, network)
	}
	return append([]byte(nil), j...), nil
}

func (p *Profiles) missing(profile string, network sandbox.Network) error {
	switch profile {
	case sandbox.SeccompDefault:
		return fmt.Errorf("seccomp: profile %s has no variant for network %q; use %q or %q",
			profile, network, sandbox.NetworkNone, sandbox.NetworkProxy)
	case sandbox.SeccompFiles:
		return fmt.Errorf("seccomp: profile %s has no variant for network %q: it refuses every socket; use %s with network %q",
			profile, network, sandbox.SeccompDefault, network)
	}
	return unknownProfile(profile)
}

// host compiles the profiles for this machine once, on first use. It is a package-level value,
// but not mutable state: the function is pure (uname plus constant data), its result is never
// written after it is computed, and computing it has no side effects, so sharing it cannot make
// one caller observe another. Tests and tools that want another Target use NewProfiles.
var host = sync.OnceValues(func() (*Profiles, error) {
	t, err := HostTarget()
	if err != nil {
		return nil, err
	}
	return NewProfiles(t)
})

// OCI returns the compiled, cached profile for the runc backend on this machine. It returns
// (nil, nil) only for sandbox.SeccompUnconfined. The returned value is shared: callers must
// not modify it.
func OCI(profile string, network sandbox.Network) (*specs.LinuxSeccomp, error) {
	if profile == sandbox.SeccompUnconfined {
		return nil, nil
	}
	p, err := host()
	if err != nil {
		return nil, err
	}
	return p.OCI(profile, network)
}

// Docker returns the profile in Docker's seccomp JSON form for this machine, or (nil, nil)
// for sandbox.SeccompUnconfined.
func Docker(profile string, network sandbox.Network) ([]byte, error) {
	if profile == sandbox.SeccompUnconfined {
		return nil, nil
	}
	p, err := host()
	if err != nil {
		return nil, err
	}
	return p.Docker(profile, network)
}
