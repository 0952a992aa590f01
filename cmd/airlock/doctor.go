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
	"github.com/airlock-mcp/airlock/runtime"
	"github.com/airlock-mcp/airlock/sandbox"
	"github.com/airlock-mcp/airlock/sandbox/backends"
	"github.com/airlock-mcp/airlock/sandbox/runc"
	"github.com/airlock-mcp/airlock/seccomp"
)

const doctorUsage = `usage: airlock doctor [--backend NAME] [--config F] [--json] [--no-smoke]

Reports what works on this machine for a sandbox backend (default: the config's, else runc).
For runc: the runc binary and its version, seccomp in runc and in the kernel, cgroups and
their controllers, namespaces, root, and the built images. For docker and containerd: the
daemon, its API version, the runc it runs containers with (against the versions that fix
known container breakouts), its seccomp support, cgroup driver and registered runtimes.
Then, when nothing failed, runs 'true' in a real sandbox. Exits 1 when the backend cannot
run here, 0 otherwise, 2 on a usage error.

flags:
  --backend NAME  the backend to check: runc, docker or containerd
  --config F  also check what config F needs: that it loads, its backend, its policy (and
              entries for tools it does not serve), its audit directory, the images its
              tools use (missing ones fail), and each profile its tools run under, by
              running 'true' with that profile's image, mounts, user and limits; exits 1
              when any of that fails
  --json      print the rows as a JSON array of {"check","status","detail"}
  --no-smoke  do not run the sandbox smoke test or the profile runs
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
	backend   string                                                                 // the backend checked: --backend, else the config's, else runc
	runc      func() (string, error)                                                 // locates the runc binary
	command   func(ctx context.Context, name string, args ...string) ([]byte, error) // runs a command, stdout only
	procRoot  string                                                                 // "/proc"
	images    func(ctx context.Context) []checkRow                                   // the image rows
	writable  func(path string) bool
	sockets   func(path string) bool // whether a unix socket exists at path
	open      openBackend            // the configured backend, for the smoke test; nil skips it
	smokeTime time.Duration
	config    *configCheck // --config: what that config needs; nil without the flag
}

func hostDoctorEnv() doctorEnv {
	return doctorEnv{
		euid:     os.Geteuid(),
		backend:  "runc",
		runc:     runc.Find, // the same lookup the runc backend uses
		command:  runOutput,
		procRoot: "/proc",
		images:   func(ctx context.Context) []checkRow { return checkImages(ctx, stateDir()) },
		writable: func(p string) bool { return unix.Access(p, unix.W_OK) == nil },
		sockets: func(p string) bool {
			fi, err := os.Stat(p)
			return err == nil && fi.Mode()&os.ModeSocket != 0
		},
		open:      openRegistered,
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

// parseNoArgs parses the flags of a command that takes no arguments (fs named "airlock CMD"):
// -h prints usage to stdout (code 0); a bad flag or an argument is a usage error (code 2).
// ok is true when the command should go on.
func parseNoArgs(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0, false
		}
		fmt.Fprintf(stderr, "%s: %v\n%s", fs.Name(), err, usage)
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n%s", fs.Name(), fs.Arg(0), usage)
		return 2, false
	}
	return 0, true
}

func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock doctor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "")
	noSmoke := fs.Bool("no-smoke", false, "")
	configFile := fs.String("config", "", "")
	backendName := fs.String("backend", "", "")
	if code, ok := parseNoArgs(fs, args, doctorUsage, stdout, stderr); !ok {
		return code
	}
	env := hostDoctorEnv()
	if *noSmoke {
		env.open = nil
	}
	if *configFile != "" {
		env.config = loadDoctorConfig(*configFile)
		if env.config.cfg != nil {
			env.backend = env.config.cfg.Backend
		}
	}
	if *backendName != "" {
		env.backend = *backendName
	}
	if reg := backends.Default(); reg[env.backend] == nil {
		fmt.Fprintf(stderr, "airlock doctor: unknown backend %q; choose one of %s\n", env.backend, strings.Join(reg.Names(), ", "))
		return 2
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
	if env.backend == "" {
		env.backend = "runc"
	}
	var rows []checkRow
	if env.backend == "runc" {
		rows = append(rows, checkRoot(env.euid))
		rows = append(rows, checkRunc(ctx, env)...)
		rows = append(rows, checkKernelSeccomp(env.procRoot))
		rows = append(rows, checkProfiles())
		rows = append(rows, checkCgroups(env)...)
		rows = append(rows, checkNamespaces(env.procRoot))
	} else {
		rows = append(rows, checkDaemon(ctx, env)...)
		rows = append(rows, checkProfiles())
	}
	rows = append(rows, env.images(ctx)...)
	var cfgRows []checkRow
	var uses []*profileUse
	if env.config != nil {
		cfgRows, uses = configRows(env.config, env.writable)
		rows = requireImages(rows, uses)
	}
	if env.backend == "runc" {
		rows = append(rows, checkOptionalBackends(env.sockets)...)
	}
	machineOK := doctorExit(rows) == 0
	rows = append(rows, cfgRows...)
	if env.open == nil {
		return append(rows, profileRows(ctx, uses, nil, 0, "--no-smoke")...)
	}
	if !machineOK {
		rows = append(rows, checkRow{"sandbox smoke test", statusWarn, "not run: fix the failures above first"})
		return append(rows, profileRows(ctx, uses, nil, 0, "fix the failures above first")...)
	}
	smoke := smokeTest(ctx, env)
	rows = append(rows, smoke)
	if len(uses) == 0 {
		return rows
	}
	if smoke.Status != statusOK {
		return append(rows, profileRows(ctx, uses, nil, 0, "the smoke test failed")...)
	}
	backend, closeBackend, err := env.open(ctx, env.backend, zerolog.Nop())
	if err != nil {
		return append(rows, profileRows(ctx, uses, nil, 0, err.Error())...)
	}
	defer func() { _ = closeBackend() }()
	// Profiles with network.allow run with their egress proxy, as a call's would.
	proxied, closeEgress, err := runtime.WithEgress(backend, env.config.cfg, stateDir(), zerolog.Nop())
	if err != nil {
		return append(rows, profileRows(ctx, uses, nil, 0, err.Error())...)
	}
	defer closeEgress()
	return append(rows, profileRows(ctx, uses, proxied, env.smokeTime, "")...)
}

func checkRoot(euid int) checkRow {
	if euid == 0 {
		return checkRow{"root", statusOK, "euid 0"}
	}
	return checkRow{"root", statusFail, fmt.Sprintf("euid %d: the runc backend creates namespaces and cgroups and needs root. Choose: run airlock as root (sudo); "+
		"or, as a member of the docker group, use Docker (--backend docker, or backend: docker in the config)", euid)}
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
	backend, closeBackend, err := env.open(ctx, env.backend, zerolog.Nop())
	if err != nil {
		return checkRow{name, statusFail, fmt.Sprintf("opening the %s backend: %v", env.backend, err)}
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
