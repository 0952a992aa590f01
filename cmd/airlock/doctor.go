package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/airlock-mcp/airlock/images"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/runc"
	"github.com/airlock-mcp/airlock/seccomp"
)

const doctorUsage = `usage: airlock doctor [--json] [--no-smoke]

Reports what works on this machine for Airlock's default backend (runc): the runc binary
and its version, seccomp in runc and in the kernel, cgroups and their controllers,
namespaces, root, and the built images; then, when nothing failed, runs 'true' in a real
sandbox. Exits 1 when the default backend cannot run here, 0 otherwise, 2 on a usage error.

flags:
  --json      print the rows as a JSON array of {"check","status","detail"}
  --no-smoke  do not run the sandbox smoke test
`

// checkStatus is the verdict of one doctor row.
type checkStatus string

const (
	statusOK   checkStatus = "ok"
	statusWarn checkStatus = "warn" // works, but weaker or degraded; the detail says how to fix it
	statusFail checkStatus = "fail" // the default backend cannot run until this is fixed
)

// checkRow is one line of the doctor's report.
type checkRow struct {
	Check  string      `json:"check"`
	Status checkStatus `json:"status"`
	Detail string      `json:"detail"`
}

// doctorEnv is everything the doctor looks at, so tests can point it at fixtures.
type doctorEnv struct {
	euid      int
	runc      func() (string, error)                                                 // locates the runc binary
	command   func(ctx context.Context, name string, args ...string) ([]byte, error) // runs a command, stdout only
	procRoot  string                                                                 // "/proc"
	images    func(ctx context.Context) []checkRow                                   // the image rows
	writable  func(path string) bool
	sockets   func(path string) bool // whether a unix socket exists at path
	open      openBackend            // the configured backend, for the smoke test; nil skips it
	smokeTime time.Duration
}

func hostDoctorEnv() doctorEnv {
	return doctorEnv{
		euid:     os.Geteuid(),
		runc:     runc.Find, // the same lookup the runc backend uses
		command:  runOutput,
		procRoot: "/proc",
		images:   func(ctx context.Context) []checkRow { return checkImages(ctx, stateDir()) },
		writable: func(p string) bool { return unix.Access(p, unix.W_OK) == nil },
		sockets: func(p string) bool {
			fi, err := os.Stat(p)
			return err == nil && fi.Mode()&os.ModeSocket != 0
		},
		open:      openRunc,
		smokeTime: 20 * time.Second,
	}
}

func runOutput(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock doctor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "")
	noSmoke := fs.Bool("no-smoke", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, doctorUsage)
			return 0
		}
		fmt.Fprintf(stderr, "airlock doctor: %v\n%s", err, doctorUsage)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "airlock doctor: unexpected argument %q\n%s", fs.Arg(0), doctorUsage)
		return 2
	}
	env := hostDoctorEnv()
	if *noSmoke {
		env.open = nil
	}
	rows := runDoctor(ctx, env)
	if err := printRows(stdout, rows, *asJSON); err != nil {
		fmt.Fprintf(stderr, "airlock doctor: %v\n", err)
		return 1
	}
	return doctorExit(rows)
}

// doctorExit is 1 when any row failed: the default backend cannot run here.
func doctorExit(rows []checkRow) int {
	if slices.ContainsFunc(rows, func(r checkRow) bool { return r.Status == statusFail }) {
		return 1
	}
	return 0
}

func printRows(w io.Writer, rows []checkRow, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Check, r.Status, r.Detail)
	}
	return tw.Flush()
}

// runDoctor runs every check in order. The smoke test runs only when nothing failed before it.
func runDoctor(ctx context.Context, env doctorEnv) []checkRow {
	var rows []checkRow
	rows = append(rows, checkRoot(env.euid))
	rows = append(rows, checkRunc(ctx, env)...)
	rows = append(rows, checkKernelSeccomp(env.procRoot))
	rows = append(rows, checkProfiles())
	rows = append(rows, checkCgroups(env)...)
	rows = append(rows, checkNamespaces(env.procRoot))
	rows = append(rows, env.images(ctx)...)
	rows = append(rows, checkOptionalBackends(env.sockets)...)
	if env.open != nil {
		if doctorExit(rows) != 0 {
			rows = append(rows, checkRow{"sandbox smoke test", statusWarn, "not run: fix the failures above first"})
		} else {
			rows = append(rows, smokeTest(ctx, env))
		}
	}
	return rows
}

func checkRoot(euid int) checkRow {
	if euid == 0 {
		return checkRow{"root", statusOK, "euid 0"}
	}
	return checkRow{"root", statusFail, fmt.Sprintf("euid %d: the runc backend creates namespaces and cgroups and needs root; run airlock as root (sudo)", euid)}
}

// checkRunc reports the runc binary, its version and whether it was built with seccomp.
func checkRunc(ctx context.Context, env doctorEnv) []checkRow {
	path, err := env.runc()
	if err != nil {
		return []checkRow{
			{"runc", statusFail, err.Error()},
			{"runc seccomp", statusFail, "no runc to ask"},
		}
	}
	var rows []checkRow
	out, err := env.command(ctx, path, "--version")
	if err != nil {
		rows = append(rows, checkRow{"runc", statusFail, fmt.Sprintf("%s: %v", path, err)})
	} else if v, err := parseRuncVersion(string(out)); err != nil {
		rows = append(rows, checkRow{"runc", statusFail, fmt.Sprintf("%s: %v", path, err)})
	} else {
		st, why := runcVersionStatus(v)
		rows = append(rows, checkRow{"runc", st, fmt.Sprintf("%s %s: %s", path, v, why)})
	}
	out, err = env.command(ctx, path, "features")
	if err != nil {
		return append(rows, checkRow{"runc seccomp", statusFail, fmt.Sprintf("runc features: %v; Airlock needs runc 1.1+ built with libseccomp (make setup)", err)})
	}
	return append(rows, runcSeccompRow(out))
}

// runcFeatures is the part of `runc features` the doctor reads.
type runcFeatures struct {
	Linux struct {
		Seccomp *struct {
			Enabled *bool `json:"enabled"`
		} `json:"seccomp"`
	} `json:"linux"`
	Annotations map[string]string `json:"annotations"`
}

func runcSeccompRow(featuresJSON []byte) checkRow {
	var f runcFeatures
	if err := json.Unmarshal(featuresJSON, &f); err != nil {
		return checkRow{"runc seccomp", statusFail, fmt.Sprintf("runc features printed invalid JSON (%v)", err)}
	}
	if f.Linux.Seccomp == nil || f.Linux.Seccomp.Enabled == nil || !*f.Linux.Seccomp.Enabled {
		// Without seccomp support runc would refuse (or, older versions, ignore) the profile;
		// Airlock never runs a tool without its filter by accident.
		return checkRow{"runc seccomp", statusFail, "runc was built without seccomp: rebuild it with libseccomp (apt-get install libseccomp-dev; make setup)"}
	}
	lib := f.Annotations["io.github.seccomp.libseccomp.version"]
	if lib == "" {
		return checkRow{"runc seccomp", statusOK, "enabled"}
	}
	return checkRow{"runc seccomp", statusOK, "enabled, libseccomp " + lib}
}

// semver is a parsed runc version. pre is the pre-release ("rc.3"), empty for a release.
type semver struct {
	major, minor, patch int
	pre                 string
}

func (v semver) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch)
	if v.pre != "" {
		s += "-" + v.pre
	}
	return s
}

// compare orders versions; a pre-release sorts before its release, and "rc.N" pre-releases
// compare by N.
func (v semver) compare(o semver) int {
	for _, d := range []int{v.major - o.major, v.minor - o.minor, v.patch - o.patch} {
		if d != 0 {
			return d
		}
	}
	switch {
	case v.pre == o.pre:
		return 0
	case v.pre == "":
		return 1
	case o.pre == "":
		return -1
	}
	a, errA := strconv.Atoi(strings.TrimPrefix(v.pre, "rc."))
	b, errB := strconv.Atoi(strings.TrimPrefix(o.pre, "rc."))
	if errA == nil && errB == nil {
		return a - b
	}
	return strings.Compare(v.pre, o.pre)
}

// parseRuncVersion reads the first line of `runc --version`: "runc version 1.5.2" (possibly
// "1.2.8+dev" or "1.4.0-rc.3").
func parseRuncVersion(out string) (semver, error) {
	line, _, _ := strings.Cut(out, "\n")
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "runc version ")
	if !ok {
		return semver{}, fmt.Errorf("unexpected `runc --version` output %q", line)
	}
	return parseSemver(strings.TrimSpace(rest))
}

func parseSemver(s string) (semver, error) {
	core, _, _ := strings.Cut(s, "+") // build metadata does not order versions
	core, pre, _ := strings.Cut(core, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return semver{}, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return semver{}, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH", s)
		}
		n[i] = v
	}
	return semver{n[0], n[1], n[2], pre}, nil
}

// runcVersionStatus judges a runc version against the November 2025 container-breakout fixes
// (CVE-2025-31133, CVE-2025-52565, CVE-2025-52881: races that redirect runc's writes to /proc
// and /dev via malicious mounts), released in 1.2.8, 1.3.3 and 1.4.0-rc.3. Anything before
// 1.2.8 fails: an image or a tool could take over the host. A 1.3.x or 1.4.0 pre-release
// without the fixes warns, so the operator upgrades.
func runcVersionStatus(v semver) (checkStatus, string) {
	const cves = "CVE-2025-31133, CVE-2025-52565, CVE-2025-52881"
	fixed128 := semver{1, 2, 8, ""}
	switch {
	case v.compare(fixed128) < 0:
		return statusFail, "older than 1.2.8, vulnerable to container breakouts (" + cves + "): upgrade to 1.2.8+, 1.3.3+ or later (make setup)"
	case v.major == 1 && v.minor == 3 && v.compare(semver{1, 3, 3, ""}) < 0:
		return statusWarn, "1.3.x before 1.3.3 lacks the fixes for " + cves + ": upgrade to 1.3.3+ (make setup)"
	case v.major == 1 && v.minor == 4 && v.patch == 0 && v.pre != "" && v.compare(semver{1, 4, 0, "rc.3"}) < 0:
		return statusWarn, "1.4.0 pre-release before rc.3 lacks the fixes for " + cves + ": upgrade (make setup)"
	}
	return statusOK, "has the fixes for " + cves
}

// checkKernelSeccomp asks the kernel for seccomp filter support: /proc/self/status lists a
// "Seccomp:" field when CONFIG_SECCOMP is on, and prctl(PR_SET_SECCOMP, FILTER, NULL) fails
// with EFAULT (bad pointer, nothing installed) rather than EINVAL when filters are compiled in.
func checkKernelSeccomp(procRoot string) checkRow {
	status, err := os.ReadFile(filepath.Join(procRoot, "self", "status"))
	if err != nil {
		return checkRow{"kernel seccomp", statusFail, fmt.Sprintf("reading %s/self/status: %v", procRoot, err)}
	}
	mode, ok := parseSeccompMode(string(status))
	if !ok {
		return checkRow{"kernel seccomp", statusFail, "the kernel has no seccomp (no Seccomp: field in /proc/self/status): use a kernel built with CONFIG_SECCOMP_FILTER"}
	}
	err = unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, 0, 0, 0)
	if errors.Is(err, unix.EINVAL) {
		return checkRow{"kernel seccomp", statusFail, "the kernel has seccomp but not filter mode: use a kernel built with CONFIG_SECCOMP_FILTER"}
	}
	detail := "filter mode available"
	if mode != 0 {
		// airlock itself runs filtered (e.g. inside a container): runc can still stack Airlock's
		// filter, but only syscalls both filters allow will work.
		return checkRow{"kernel seccomp", statusWarn, fmt.Sprintf("%s, but airlock itself already runs under seccomp mode %d: tools see the intersection of both filters", detail, mode)}
	}
	return checkRow{"kernel seccomp", statusOK, detail}
}

// parseSeccompMode reads the Seccomp field of /proc/PID/status (0 none, 1 strict, 2 filter).
func parseSeccompMode(status string) (int, bool) {
	for line := range strings.SplitSeq(status, "\n") {
		v, ok := strings.CutPrefix(line, "Seccomp:")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		return n, err == nil
	}
	return 0, false
}

// cgroupMode is how cgroups are mounted.
type cgroupMode string

const (
	cgroupNone    cgroupMode = "none"
	cgroupV1      cgroupMode = "v1"
	cgroupHybrid  cgroupMode = "hybrid" // v1 controllers plus a cgroup2 tree without them
	cgroupUnified cgroupMode = "v2"
)

// cgroupMount is one cgroup or cgroup2 file system in /proc/self/mountinfo.
type cgroupMount struct {
	Point    string
	V2       bool
	Options  []string // super-block options; for v1 they name the controllers
	ReadOnly bool
}

// cgroupLayout is what parseCgroupMounts found.
type cgroupLayout struct {
	Mode   cgroupMode
	Mounts []cgroupMount
}

// parseCgroupMounts reads /proc/self/mountinfo text. Each line is
// "ID PARENT MAJ:MIN ROOT MOUNTPOINT MOUNTOPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS".
func parseCgroupMounts(mountinfo string) cgroupLayout {
	var l cgroupLayout
	var v1, v2, v2AtRoot bool
	for line := range strings.SplitSeq(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 6 || len(g) < 3 {
			continue
		}
		var m cgroupMount
		switch g[0] {
		case "cgroup":
			v1 = true
		case "cgroup2":
			v2, m.V2 = true, true
			if f[4] == "/sys/fs/cgroup" {
				v2AtRoot = true
			}
		default:
			continue
		}
		m.Point = unescapeMountinfo(f[4])
		m.Options = strings.Split(g[2], ",")
		m.ReadOnly = slices.Contains(strings.Split(f[5], ","), "ro") || slices.Contains(m.Options, "ro")
		l.Mounts = append(l.Mounts, m)
	}
	switch {
	case v2AtRoot || (v2 && !v1):
		l.Mode = cgroupUnified
	case v1 && v2:
		l.Mode = cgroupHybrid
	case v1:
		l.Mode = cgroupV1
	default:
		l.Mode = cgroupNone
	}
	return l
}

// unescapeMountinfo undoes the octal escapes (\040 for a space...) of mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// neededControllers are the cgroup controllers the runc backend sets limits with.
func neededControllers() []string { return []string{"memory", "pids", "cpu"} }

// controllerMount finds where a v1 controller is mounted, or the v2 mount when the layout is
// unified and controllers lists it (the root's cgroup.controllers).
func controllerMount(l cgroupLayout, controller string, v2Controllers []string) (cgroupMount, bool) {
	for _, m := range l.Mounts {
		if l.Mode == cgroupUnified {
			if m.V2 && slices.Contains(v2Controllers, controller) {
				return m, true
			}
			continue
		}
		if !m.V2 && slices.Contains(m.Options, controller) {
			return m, true
		}
	}
	return cgroupMount{}, false
}

func checkCgroups(env doctorEnv) []checkRow {
	info, err := os.ReadFile(filepath.Join(env.procRoot, "self", "mountinfo"))
	if err != nil {
		return []checkRow{{"cgroups", statusFail, fmt.Sprintf("reading mountinfo: %v", err)}}
	}
	l := parseCgroupMounts(string(info))
	var v2Controllers []string
	row := checkRow{"cgroups", statusOK, ""}
	switch l.Mode {
	case cgroupNone:
		return []checkRow{{"cgroups", statusFail, "no cgroup file system mounted: mount cgroup2 on /sys/fs/cgroup (or boot with systemd)"}}
	case cgroupUnified:
		root := l.Mounts[slices.IndexFunc(l.Mounts, func(m cgroupMount) bool { return m.V2 })].Point
		data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err != nil {
			return []checkRow{{"cgroups", statusFail, fmt.Sprintf("v2 at %s but cgroup.controllers is unreadable: %v", root, err)}}
		}
		v2Controllers = strings.Fields(string(data))
		row.Detail = "v2 (unified) at " + root
	case cgroupV1:
		row.Detail = "v1 (legacy)"
	case cgroupHybrid:
		row.Detail = "hybrid: v1 controllers plus a cgroup2 tree without controllers; runc uses v1"
	}
	rows := []checkRow{row}
	for _, c := range neededControllers() {
		name := "cgroup " + c
		m, ok := controllerMount(l, c, v2Controllers)
		switch {
		case !ok:
			rows = append(rows, checkRow{name, statusFail, fmt.Sprintf("the %s controller is not mounted/enabled: Airlock's %s limit cannot be set; enable it (cgroup_enable=%s on the kernel command line, or mount it)", c, c, c)})
		case m.ReadOnly || !env.writable(m.Point):
			rows = append(rows, checkRow{name, statusFail, fmt.Sprintf("%s is not writable (a read-only cgroup mount, e.g. inside a container): run airlock where it can create cgroups (docker run --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw, or on the host)", m.Point)})
		default:
			rows = append(rows, checkRow{name, statusOK, "mounted and writable at " + m.Point})
		}
	}
	// Memory limits set swap equal to memory (no extra swap); on v1 that needs swap
	// accounting, without which the swap limit cannot be enforced.
	if l.Mode != cgroupUnified {
		if m, ok := controllerMount(l, "memory", nil); ok {
			if _, err := os.Stat(filepath.Join(m.Point, "memory.memsw.limit_in_bytes")); err != nil {
				rows = append(rows, checkRow{"cgroup swap accounting", statusWarn, "memory.memsw.* missing: a sandbox could use swap beyond its memory limit; boot with swapaccount=1"})
			} else {
				rows = append(rows, checkRow{"cgroup swap accounting", statusOK, "memory.memsw.limit_in_bytes present"})
			}
		}
	}
	return rows
}

// checkNamespaces needs the namespaces every sandbox gets (mount, pid, net, ipc, uts); user
// and cgroup namespaces are listed for information.
func checkNamespaces(procRoot string) checkRow {
	var have, missing []string
	for _, ns := range []string{"mnt", "pid", "net", "ipc", "uts", "user", "cgroup"} {
		if _, err := os.Lstat(filepath.Join(procRoot, "self", "ns", ns)); err == nil {
			have = append(have, ns)
		} else {
			missing = append(missing, ns)
		}
	}
	required := []string{"mnt", "pid", "net", "ipc", "uts"}
	for _, ns := range missing {
		if slices.Contains(required, ns) {
			return checkRow{"namespaces", statusFail, fmt.Sprintf("missing %s (have %s): the kernel lacks namespaces every sandbox needs (CONFIG_%s_NS)", strings.Join(missing, " "), strings.Join(have, " "), strings.ToUpper(ns))}
		}
	}
	if len(missing) > 0 {
		return checkRow{"namespaces", statusWarn, fmt.Sprintf("%s; missing %s (not used by the runc backend)", strings.Join(have, " "), strings.Join(missing, " "))}
	}
	return checkRow{"namespaces", statusOK, strings.Join(have, " ")}
}

// checkImages reports the busybox (the default image: fail when missing) and host images.
// It does not create the store: a doctor only looks.
func checkImages(ctx context.Context, dir string) []checkRow {
	var rows []checkRow
	store := (*images.Store)(nil)
	if _, err := os.Stat(filepath.Join(dir, "images")); err == nil {
		s, err := images.Open(dir)
		if err != nil {
			return []checkRow{{"images", statusFail, fmt.Sprintf("%v", err)}}
		}
		store = s
	}
	for _, name := range images.Names() {
		check := "image " + name
		missing := statusWarn
		if name == sandbox.Defaults().Image {
			missing = statusFail // the default image: without it no default sandbox runs
		}
		if store == nil {
			rows = append(rows, checkRow{check, missing, fmt.Sprintf("no image store at %s: run `airlock images build %s` (or make images)", filepath.Join(dir, "images"), name)})
			continue
		}
		img, err := store.Resolve(ctx, name)
		if err != nil {
			rows = append(rows, checkRow{check, missing, err.Error()})
			continue
		}
		rows = append(rows, checkRow{check, statusOK, fmt.Sprintf("%s at %s", shortID(img.ID), img.Rootfs)})
	}
	return rows
}

// smokeTest runs `true` in a real sandbox with the hardened defaults through the configured
// backend: the only proof that all the parts above work together.
func smokeTest(ctx context.Context, env doctorEnv) checkRow {
	const name = "sandbox smoke test"
	ctx, cancel := context.WithTimeout(ctx, env.smokeTime)
	defer cancel()
	backend, closeBackend, err := env.open(ctx, zerolog.Nop())
	if err != nil {
		return checkRow{name, statusFail, fmt.Sprintf("opening the runc backend: %v", err)}
	}
	defer func() { _ = closeBackend() }()
	spec, err := sandbox.New(sandbox.WithArgv("true"), sandbox.WithTimeout(env.smokeTime))
	if err != nil {
		return checkRow{name, statusFail, err.Error()}
	}
	start := time.Now()
	res, err := backend.Run(ctx, spec)
	if err != nil {
		return checkRow{name, statusFail, fmt.Sprintf("running `true` in %s: %v", spec.Image, err)}
	}
	if res.ExitCode != 0 {
		return checkRow{name, statusFail, fmt.Sprintf("`true` in %s exited %d: %s", spec.Image, res.ExitCode, strings.TrimSpace(string(res.Stderr)))}
	}
	return checkRow{name, statusOK, fmt.Sprintf("`true` ran in a fresh %s sandbox via %s in %d ms", spec.Image, backend.Name(), time.Since(start).Milliseconds())}
}

// checkProfiles compiles Airlock's seccomp profiles for this machine (architecture and kernel),
// which every sandbox needs; an unsupported architecture fails here rather than on the first call.
func checkProfiles() checkRow {
	const name = "seccomp profiles"
	var parts []string
	for _, profile := range []string{sandbox.SeccompDefault, sandbox.SeccompFiles} {
		p, err := seccomp.OCI(profile, sandbox.NetworkNone)
		if err != nil {
			return checkRow{name, statusFail, err.Error()}
		}
		allowed := map[string]bool{}
		for _, r := range p.Syscalls {
			if r.Action == specs.ActAllow {
				for _, n := range r.Names {
					allowed[n] = true
				}
			}
		}
		parts = append(parts, fmt.Sprintf("%s allows %d syscalls", profile, len(allowed)))
	}
	t, err := seccomp.HostTarget()
	if err != nil {
		return checkRow{name, statusFail, err.Error()}
	}
	return checkRow{name, statusOK, fmt.Sprintf("%s (%s, kernel %d.%d)", strings.Join(parts, ", "), t.Arch, t.Kernel.Version, t.Kernel.Major)}
}

// checkOptionalBackends notes whether the docker and containerd daemons are reachable. They
// are optional: runc is the default backend, so their absence is never a failure.
func checkOptionalBackends(socket func(string) bool) []checkRow {
	if socket == nil {
		return nil
	}
	dockerSock := "/var/run/docker.sock"
	if h, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok && h != "" {
		dockerSock = h
	}
	var rows []checkRow
	for _, b := range []struct{ name, sock string }{
		{"docker (optional)", dockerSock},
		{"containerd (optional)", "/run/containerd/containerd.sock"},
	} {
		if socket(b.sock) {
			rows = append(rows, checkRow{b.name, statusOK, "daemon socket at " + b.sock})
		} else {
			rows = append(rows, checkRow{b.name, statusOK, "no daemon socket at " + b.sock + "; not needed for the default runc backend"})
		}
	}
	return rows
}
