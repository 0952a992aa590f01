// Package testenv finds the real parts Airlock's tests run against (runc, built images, the
// airlock binaries) and skips a test loudly when the machine lacks one. Under `make test`
// AIRLOCK_REQUIRE_SANDBOX=1 is set, which turns every such skip into a failure: there the
// capability was just installed, so its absence is a broken setup, not a missing feature.
//
// Two kinds of absence are told apart. Unavailable: the SANDBOX (runc, root, cgroups, an
// image) lacks something Airlock promises, so the property is untested. NotApplicable: the
// HOST kernel lacks the attack surface a case attacks (no 32-bit syscalls, no /proc file),
// so the property holds trivially there; that stays a skip even under AIRLOCK_REQUIRE_SANDBOX.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Required reports whether missing capabilities must fail rather than skip.
func Required() bool { return os.Getenv("AIRLOCK_REQUIRE_SANDBOX") == "1" }

// Unavailable skips (or, when Required, fails) t with a reason that names the missing part.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("AIRLOCK_REQUIRE_SANDBOX=1 but "+format, args...)
	}
	t.Skipf("SKIPPED, capability missing: "+format, args...)
}

// NotApplicablePrefix starts the skip message of every NotApplicable case, so a run's log can
// be searched for the cases this host could not exercise.
const NotApplicablePrefix = "NOT APPLICABLE: "

// NotApplicable skips t because the host lacks the attack surface the case needs; the reason
// (logged by the skip) names what is missing and why the property then holds trivially. It is
// never turned into a failure: no setup step could give the kernel that surface.
func NotApplicable(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Skip(NotApplicablePrefix + fmt.Sprintf(format, args...))
}

// RepoRoot is the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Runc returns the runc binary to test with: $AIRLOCK_RUNC, the repo's .tools/bin/runc, or
// runc on PATH. It also requires root, which runc needs here.
func Runc(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "runc containers need root (euid %d)", os.Geteuid())
	}
	candidates := []string{os.Getenv("AIRLOCK_RUNC"), filepath.Join(RepoRoot(t), ".tools", "bin", "runc")}
	if p, err := exec.LookPath("runc"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(c); err == nil && fi.Mode()&0o111 != 0 {
			return c
		}
	}
	Unavailable(t, "no runc binary (set AIRLOCK_RUNC or run `make setup`)")
	return ""
}

// StateDir is where `make setup` built the images: $AIRLOCK_STATE_DIR or /var/lib/airlock.
// Tests read images from it and keep their own run state in t.TempDir().
func StateDir() string {
	if d := os.Getenv("AIRLOCK_STATE_DIR"); d != "" {
		return d
	}
	return "/var/lib/airlock"
}

var (
	buildOnce sync.Map // output dir -> *buildResult
)

type buildResult struct {
	once sync.Once
	dir  string
	err  error
}

// Binaries builds bin/airlock and bin/airlock-toolbox (static) once per test process into a
// temporary directory and returns that directory.
func Binaries(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	v, _ := buildOnce.LoadOrStore(root, &buildResult{})
	br := v.(*buildResult)
	br.once.Do(func() {
		dir, err := os.MkdirTemp("", "airlock-bin-")
		if err != nil {
			br.err = err
			return
		}
		build := func(env []string, args ...string) error {
			cmd := exec.Command("go", args...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				return &buildError{args: args, out: string(out), err: err}
			}
			return nil
		}
		if br.err = build(nil, "build", "-o", filepath.Join(dir, "airlock"), "./cmd/airlock"); br.err != nil {
			return
		}
		br.err = build([]string{"CGO_ENABLED=0"}, "build", "-o", filepath.Join(dir, "airlock-toolbox"), "./cmd/airlock-toolbox")
		br.dir = dir
	})
	if br.err != nil {
		t.Fatalf("testenv: building airlock: %v", br.err)
	}
	return br.dir
}

type buildError struct {
	args []string
	out  string
	err  error
}

func (e *buildError) Error() string {
	return "go " + e.args[0] + " " + e.args[len(e.args)-1] + ": " + e.err.Error() + "\n" + e.out
}
