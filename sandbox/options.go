package sandbox

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Option changes one aspect of a Spec. Options are applied in order on top of Defaults.
type Option func(*Spec) error

// WorkspaceTarget is where the workspace appears inside every sandbox.
const WorkspaceTarget = "/workspace"

// Defaults is the hardened baseline every run starts from: busybox image, uid/gid 65534, 256 MiB
// memory (swap equal), one CPU, 64 pids, 1024 open files, Airlock's default seccomp profile, no
// network, a 64 MiB /tmp, a 30 s timeout and 1 MiB per output stream.
func Defaults() Spec {
	return Spec{
		Image:   "busybox",
		Env:     []string{"PATH=/usr/local/bin:/usr/local/go/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/tmp", "LANG=C.UTF-8"},
		Workdir: "/",
		Tmpfs:   []Tmpfs{{Target: "/tmp", SizeBytes: 64 << 20, Mode: 0o1777}},
		User:    User{UID: 65534, GID: 65534},
		Limits: Limits{
			MemoryBytes: 256 << 20,
			CPUs:        1,
			Pids:        64,
			NoFile:      1024,
		},
		Seccomp:   SeccompDefault,
		Network:   NetworkNone,
		Timeout:   30 * time.Second,
		StdoutCap: 1 << 20,
		StderrCap: 1 << 20,
		Labels:    map[string]string{"airlock": "1"},
	}
}

// New builds a Spec from Defaults and opts, then validates it.
func New(opts ...Option) (Spec, error) {
	s := Defaults()
	for _, o := range opts {
		if err := o(&s); err != nil {
			return Spec{}, err
		}
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// Validate checks the invariants every backend relies on.
func (s Spec) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, a...))
	}
	if s.Image == "" {
		return bad("no image; set one with --image (busybox or host)")
	}
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return bad("no command to run")
	}
	if !path.IsAbs(s.Workdir) {
		return bad("workdir %q must be an absolute path inside the container", s.Workdir)
	}
	for _, m := range s.Mounts {
		if !path.IsAbs(m.Source) || !path.IsAbs(m.Target) {
			return bad("mount %s:%s: source and target must be absolute paths", m.Source, m.Target)
		}
		switch m.Access {
		case ReadOnly, ReadWrite, CopyOnWrite:
		default:
			return bad("mount %s: access %q is not one of ro, rw, copy", m.Target, m.Access)
		}
	}
	for _, t := range s.Tmpfs {
		if !path.IsAbs(t.Target) || t.SizeBytes <= 0 {
			return bad("tmpfs %s: needs an absolute target and a positive size", t.Target)
		}
	}
	if s.Limits.MemoryBytes < 4<<20 {
		return bad("memory limit %d bytes is below the 4 MiB a container needs to start", s.Limits.MemoryBytes)
	}
	if s.Limits.CPUs <= 0 {
		return bad("cpus must be positive, got %v", s.Limits.CPUs)
	}
	if s.Limits.Pids < MinPids {
		return bad("pids limit %d is below %d: the sandbox's init and the command need that many processes and threads to start", s.Limits.Pids, MinPids)
	}
	if s.Timeout <= 0 {
		return bad("timeout must be positive, got %s", s.Timeout)
	}
	if s.StdoutCap < 0 || s.StderrCap < 0 {
		return bad("output caps must not be negative")
	}
	switch s.Seccomp {
	case SeccompDefault, SeccompFiles, SeccompUnconfined:
	default:
		return bad("seccomp profile %q is not one of default, files, unconfined", s.Seccomp)
	}
	switch s.Network {
	case NetworkNone:
		if s.Egress != nil {
			return bad("an egress proxy is set but the network mode is none; use WithEgress")
		}
	case NetworkProxy:
		switch {
		case s.Egress == nil:
			return bad("network proxy needs an egress proxy; use WithEgress or WithEgressAllow")
		case s.Egress.Socket == "" && len(s.Egress.Allow) > 0:
			// Planned: the runtime starts the proxy and sets the socket before the run.
		case !path.IsAbs(s.Egress.Socket) || path.Clean(s.Egress.Socket) != s.Egress.Socket:
			return bad("network proxy needs the absolute, clean host path of the egress proxy's unix socket")
		}
		// The forwarder and the command reach the proxy through socket(2); the files
		// profile refuses every socket call, so the run could never use its egress.
		if s.Seccomp == SeccompFiles {
			return bad("network proxy needs sockets, which the %s seccomp profile refuses; use %s", SeccompFiles, SeccompDefault)
		}
		// The forwarder is a second Go process beside the init: a few more threads.
		if s.Limits.Pids < MinPidsEgress {
			return bad("pids limit %d is below %d: with network proxy the egress forwarder runs beside the init and the command", s.Limits.Pids, MinPidsEgress)
		}
	default:
		return bad("network mode %q is not supported; use none or proxy", s.Network)
	}
	return nil
}

func (s *Spec) loosen(what string) {
	if !slices.Contains(s.Loosened, what) {
		s.Loosened = append(s.Loosened, what)
	}
}

// WithImage selects the image by name.
func WithImage(name string) Option {
	return func(s *Spec) error { s.Image = name; return nil }
}

// WithArgv sets the command. No shell is involved unless argv names one.
func WithArgv(argv ...string) Option {
	return func(s *Spec) error { s.Argv = slices.Clone(argv); return nil }
}

// WithEnv adds KEY=VALUE pairs, replacing defaults of the same key.
func WithEnv(kv ...string) Option {
	return func(s *Spec) error {
		for _, e := range kv {
			k, _, ok := strings.Cut(e, "=")
			if !ok || k == "" {
				return fmt.Errorf("%w: environment entry %q is not KEY=VALUE", ErrInvalidSpec, e)
			}
			s.Env = slices.DeleteFunc(s.Env, func(old string) bool { return strings.HasPrefix(old, k+"=") })
			s.Env = append(s.Env, e)
		}
		return nil
	}
}

// WithWorkdir sets the working directory inside the container.
func WithWorkdir(dir string) Option {
	return func(s *Spec) error { s.Workdir = dir; return nil }
}

// WithWorkspace mounts hostDir at /workspace and makes it the working directory.
// ReadWrite is recorded as loosened: the command can change host files.
func WithWorkspace(hostDir string, access Access) Option {
	return func(s *Spec) error {
		if access == ReadWrite {
			s.loosen("workspace:rw")
		}
		s.Mounts = append(s.Mounts, Mount{Source: hostDir, Target: WorkspaceTarget, Access: access})
		s.Workdir = WorkspaceTarget
		return nil
	}
}

// WithMount adds a mount. A ReadWrite mount is recorded as loosened.
func WithMount(m Mount) Option {
	return func(s *Spec) error {
		if m.Access == ReadWrite {
			s.loosen("mount:" + m.Target + ":rw")
		}
		s.Mounts = append(s.Mounts, m)
		return nil
	}
}

// WithMemory sets the memory limit in bytes (swap is set equal: no extra swap).
func WithMemory(bytes int64) Option {
	return func(s *Spec) error { s.Limits.MemoryBytes = bytes; return nil }
}

// WithCPUs sets the CPU quota in cores.
func WithCPUs(cpus float64) Option {
	return func(s *Spec) error { s.Limits.CPUs = cpus; return nil }
}

// MinPids is the smallest pids limit a run accepts: the sandbox's init (a Go program, a few
// threads) and the command it starts.
const MinPids = 8

// MinPidsEgress is the smallest pids limit of a NetworkProxy run: the init, the egress
// forwarder (another small Go program) and the command.
const MinPidsEgress = 16

// WithPids sets the maximum number of processes and threads.
func WithPids(n int64) Option {
	return func(s *Spec) error { s.Limits.Pids = n; return nil }
}

// WithTimeout sets the wall-clock limit.
func WithTimeout(d time.Duration) Option {
	return func(s *Spec) error { s.Timeout = d; return nil }
}

// WithTmpfsSize sets the size of the /tmp tmpfs.
func WithTmpfsSize(bytes int64) Option {
	return func(s *Spec) error {
		for i := range s.Tmpfs {
			if s.Tmpfs[i].Target == "/tmp" {
				s.Tmpfs[i].SizeBytes = bytes
				return nil
			}
		}
		s.Tmpfs = append(s.Tmpfs, Tmpfs{Target: "/tmp", SizeBytes: bytes, Mode: 0o1777})
		return nil
	}
}

// WithSeccomp selects a seccomp profile; unconfined is recorded as loosened.
func WithSeccomp(profile string) Option {
	return func(s *Spec) error {
		if profile == SeccompUnconfined {
			s.loosen("seccomp:unconfined")
		}
		s.Seccomp = profile
		return nil
	}
}

// WithEgress gives the run a way out through Airlock's egress proxy listening on the Unix
// socket at host path socket (see NetworkProxy); the backend sets the proxy variables of the
// command's environment (package oci, WithEgressProxy). The network namespace still holds only
// loopback. Recorded as loosened ("network:proxy"): the command can reach whatever the proxy
// allows.
func WithEgress(socket string) Option {
	return func(s *Spec) error {
		s.loosen("network:proxy")
		s.Network = NetworkProxy
		s.Egress = &Egress{Socket: socket}
		return nil
	}
}

// WithEgressAllow gives the run a way out to the hosts allow names (package egress patterns),
// through an egress proxy that Airlock's runtime starts for this run alone and stops after it
// (the socket is set then). An empty allow changes nothing: the run keeps no network.
// Recorded as loosened ("network:proxy").
func WithEgressAllow(allow []string) Option {
	return func(s *Spec) error {
		if len(allow) == 0 {
			return nil
		}
		s.loosen("network:proxy")
		s.Network = NetworkProxy
		s.Egress = &Egress{Allow: slices.Clone(allow)}
		return nil
	}
}

// WithRuntime names the OCI runtime the container runs under (see Spec.Runtime).
func WithRuntime(name string) Option {
	return func(s *Spec) error {
		if name != "" && !validRuntimeName(name) {
			return fmt.Errorf("%w: runtime %q: want a registered runtime's name (letters, digits, . _ -)", ErrInvalidSpec, name)
		}
		s.Runtime = name
		return nil
	}
}

// validRuntimeName accepts what Docker and containerd accept as a runtime's name: letters,
// digits, ".", "_" and "-", up to 64 bytes. A path or a space is never a name.
func validRuntimeName(name string) bool {
	if len(name) > 64 {
		return false
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return false
		}
	}
	return true
}

// WithOutputCaps sets how many bytes of stdout and stderr are kept.
func WithOutputCaps(stdout, stderr int64) Option {
	return func(s *Spec) error { s.StdoutCap, s.StderrCap = stdout, stderr; return nil }
}

// WithStdin feeds data to the command's standard input.
func WithStdin(data []byte) Option {
	return func(s *Spec) error { s.Stdin = slices.Clone(data); return nil }
}

// WithLabel attaches a label to the container.
func WithLabel(key, value string) Option {
	return func(s *Spec) error {
		if key == "airlock" {
			return fmt.Errorf("%w: label %q is reserved", ErrInvalidSpec, key)
		}
		s.Labels[key] = value
		return nil
	}
}

// ParseBytes parses sizes such as "256Mi", "1G", "64k" or "1048576".
// Binary suffixes (Ki, Mi, Gi) and decimal ones (k, M, G) are both accepted.
func ParseBytes(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30},
		{"K", 1000}, {"k", 1000}, {"M", 1000 * 1000}, {"G", 1000 * 1000 * 1000},
	}
	num, mult := v, int64(1)
	for _, u := range units {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSuffix(v, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a number with an optional suffix Ki, Mi, Gi, k, M or G (e.g. 256Mi)", v)
	}
	return n * mult, nil
}
