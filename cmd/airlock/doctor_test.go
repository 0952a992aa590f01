package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

func TestParseRuncVersion(t *testing.T) {
	cases := []struct {
		name, out string
		want      semver
		wantErr   bool
	}{
		{"release", "runc version 1.5.2\nspec: 1.3.0\ngo: go1.26.8\nlibseccomp: 2.5.4\n", semver{1, 5, 2, ""}, false},
		{"rc", "runc version 1.4.0-rc.3\n", semver{1, 4, 0, "rc.3"}, false},
		{"dev build", "runc version 1.2.8+dev\ncommit: abc\n", semver{1, 2, 8, ""}, false},
		{"debian", "runc version 1.1.5+ds1\n", semver{1, 1, 5, ""}, false},
		{"garbage", "crun version 1.8\n", semver{}, true},
		{"two parts", "runc version 1.2\n", semver{}, true},
		{"empty", "", semver{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseRuncVersion(c.out)
			if (err != nil) != c.wantErr || got != c.want {
				t.Errorf("parseRuncVersion(%q) = %v, %v; want %v, err=%v", c.out, got, err, c.want, c.wantErr)
			}
		})
	}
}

func TestRuncVersionStatus(t *testing.T) {
	cases := []struct {
		version string
		want    checkStatus
	}{
		{"1.0.0", statusFail},
		{"1.1.5", statusFail},
		{"1.1.11", statusFail},
		{"1.1.12", statusFail},
		{"1.1.15", statusFail},
		{"1.2.0", statusFail},
		{"1.2.7", statusFail},
		{"1.2.8-rc.1", statusFail},
		{"1.2.8", statusOK},
		{"1.2.9", statusOK},
		{"1.3.0-rc.1", statusWarn},
		{"1.3.0", statusWarn},
		{"1.3.2", statusWarn},
		{"1.3.3", statusOK},
		{"1.3.4", statusOK},
		{"1.4.0-rc.1", statusWarn},
		{"1.4.0-rc.2", statusWarn},
		{"1.4.0-rc.3", statusOK},
		{"1.4.0", statusOK},
		{"1.5.2", statusOK},
		{"2.0.0", statusOK},
	}
	for _, c := range cases {
		t.Run(c.version, func(t *testing.T) {
			v, err := parseSemver(c.version)
			if err != nil {
				t.Fatal(err)
			}
			got, detail := runcVersionStatus(v)
			if got != c.want {
				t.Errorf("runc %s: %s (%s), want %s", c.version, got, detail, c.want)
			}
			if got != statusOK && !strings.Contains(detail, "CVE-2025-31133") {
				t.Errorf("detail %q does not name the CVEs", detail)
			}
			if old := v.compare(semver{1, 1, 12, ""}) < 0; old != strings.Contains(detail, "CVE-2024-21626") {
				t.Errorf("runc %s: detail %q; want CVE-2024-21626 named exactly when older than 1.1.12", c.version, detail)
			}
		})
	}
}

func TestRuncSeccompRow(t *testing.T) {
	cases := []struct {
		name, json string
		want       checkStatus
		detail     string
	}{
		{"enabled", `{"linux":{"seccomp":{"enabled":true}},"annotations":{"io.github.seccomp.libseccomp.version":"2.5.4"}}`, statusOK, "libseccomp 2.5.4"},
		{"enabled no annotation", `{"linux":{"seccomp":{"enabled":true}}}`, statusOK, "enabled"},
		{"disabled", `{"linux":{"seccomp":{"enabled":false}}}`, statusFail, "without seccomp"},
		{"no seccomp key", `{"linux":{}}`, statusFail, "without seccomp"},
		{"not json", `runc: unknown command features`, statusFail, "invalid JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runcSeccompRow([]byte(c.json))
			if r.Status != c.want || !strings.Contains(r.Detail, c.detail) {
				t.Errorf("got %+v, want %s containing %q", r, c.want, c.detail)
			}
		})
	}
}

func TestParseSeccompMode(t *testing.T) {
	cases := []struct {
		name, status string
		mode         int
		ok           bool
	}{
		{"none", "Name:\tx\nSeccomp:\t0\nSeccomp_filters:\t0\n", 0, true},
		{"filtered", "Seccomp:\t2\nSeccomp_filters:\t1\n", 2, true},
		{"no field", "Name:\tx\nNoNewPrivs:\t0\n", 0, false},
		{"bad value", "Seccomp:\tx\n", 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mode, ok := parseSeccompMode(c.status)
			if mode != c.mode || ok != c.ok {
				t.Errorf("parseSeccompMode = %d, %v; want %d, %v", mode, ok, c.mode, c.ok)
			}
		})
	}
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "doctor", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseCgroupMounts(t *testing.T) {
	cases := []struct {
		fixture       string
		mode          cgroupMode
		v2Controllers []string
		mounted       map[string]string // controller -> mount point; "" = not found
		readOnly      bool
	}{
		{"mountinfo-hybrid.txt", cgroupHybrid, nil,
			map[string]string{"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids", "cpu": "/sys/fs/cgroup/cpu"}, false},
		{"mountinfo-v1.txt", cgroupV1, nil,
			map[string]string{"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids", "cpu": "/sys/fs/cgroup/cpu,cpuacct"}, false},
		{"mountinfo-v1-ro-nopids.txt", cgroupV1, nil,
			map[string]string{"memory": "/sys/fs/cgroup/memory", "pids": "", "cpu": "/sys/fs/cgroup/cpu,cpuacct"}, true},
		{"mountinfo-v2.txt", cgroupUnified, []string{"cpuset", "cpu", "io", "memory", "pids"},
			map[string]string{"memory": "/sys/fs/cgroup", "pids": "/sys/fs/cgroup", "cpu": "/sys/fs/cgroup"}, false},
		{"mountinfo-v2.txt", cgroupUnified, []string{"cpu", "memory"},
			map[string]string{"memory": "/sys/fs/cgroup", "pids": "", "cpu": "/sys/fs/cgroup"}, false},
		{"mountinfo-none.txt", cgroupNone, nil,
			map[string]string{"memory": "", "pids": "", "cpu": ""}, false},
		{"mountinfo-escaped.txt", cgroupV1, nil,
			map[string]string{"memory": "/sys/fs/my cgroups/memory"}, false},
	}
	for _, c := range cases {
		t.Run(c.fixture+"/"+strings.Join(c.v2Controllers, ","), func(t *testing.T) {
			l := parseCgroupMounts(readFixture(t, c.fixture))
			if l.Mode != c.mode {
				t.Errorf("mode %s, want %s", l.Mode, c.mode)
			}
			for ctrl, want := range c.mounted {
				m, ok := controllerMount(l, ctrl, c.v2Controllers)
				if (want == "") == ok || m.Point != want {
					t.Errorf("%s: mount %q found=%v, want %q", ctrl, m.Point, ok, want)
				}
				if ok && m.ReadOnly != c.readOnly {
					t.Errorf("%s: read-only %v, want %v", ctrl, m.ReadOnly, c.readOnly)
				}
			}
		})
	}
}

// fakeProc builds a /proc look-alike with the given namespaces, mountinfo and status.
func fakeProc(t *testing.T, namespaces []string, mountinfo, status string) string {
	t.Helper()
	root := t.TempDir()
	self := filepath.Join(root, "self")
	if err := os.MkdirAll(filepath.Join(self, "ns"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		if err := os.Symlink(ns+":[4026531840]", filepath.Join(self, "ns", ns)); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{"mountinfo": mountinfo, "status": status} {
		if err := os.WriteFile(filepath.Join(self, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCheckNamespaces(t *testing.T) {
	all := []string{"mnt", "pid", "net", "ipc", "uts", "user", "cgroup"}
	cases := []struct {
		name string
		have []string
		want checkStatus
	}{
		{"all", all, statusOK},
		{"no user ns", []string{"mnt", "pid", "net", "ipc", "uts", "cgroup"}, statusWarn},
		{"no net ns", []string{"mnt", "pid", "ipc", "uts", "user", "cgroup"}, statusFail},
		{"none", nil, statusFail},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := checkNamespaces(fakeProc(t, c.have, "", ""))
			if r.Status != c.want {
				t.Errorf("got %+v, want %s", r, c.want)
			}
		})
	}
}

func TestCheckCgroups(t *testing.T) {
	cases := []struct {
		name      string
		fixture   string
		writable  bool
		wantFails []string // checks that must fail
	}{
		{"v1 writable", "mountinfo-v1.txt", true, nil},
		{"v1 not writable", "mountinfo-v1.txt", false, []string{"cgroup memory", "cgroup pids", "cgroup cpu"}},
		{"read-only mounts, no pids", "mountinfo-v1-ro-nopids.txt", true, []string{"cgroup memory", "cgroup pids", "cgroup cpu"}},
		{"none", "mountinfo-none.txt", true, []string{"cgroups"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := doctorEnv{
				procRoot: fakeProc(t, nil, readFixture(t, c.fixture), ""),
				writable: func(string) bool { return c.writable },
			}
			var fails []string
			for _, r := range checkCgroups(env) {
				if r.Status == statusFail {
					fails = append(fails, r.Check)
				}
			}
			if !slices.Equal(fails, c.wantFails) {
				t.Errorf("failed checks %v, want %v", fails, c.wantFails)
			}
		})
	}
}

func TestCheckImagesWithoutStore(t *testing.T) {
	dir := t.TempDir()
	rows := checkImages(context.Background(), dir)
	want := map[string]checkStatus{"image busybox": statusFail, "image host": statusWarn}
	for _, r := range rows {
		if want[r.Check] != r.Status {
			t.Errorf("%s: %s, want %s (%s)", r.Check, r.Status, want[r.Check], r.Detail)
		}
		if !strings.Contains(r.Detail, "airlock images build") {
			t.Errorf("%s: detail %q gives no fix", r.Check, r.Detail)
		}
	}
	if len(rows) != 2 {
		t.Errorf("got %d image rows, want 2", len(rows))
	}
	if _, err := os.Stat(filepath.Join(dir, "images")); err == nil {
		t.Error("doctor created the image store; it must only look")
	}
}

// fakeRunc answers `runc --version` and `runc features` like a real runc of the given version.
func fakeRunc(version string, seccomp bool) func(context.Context, string, ...string) ([]byte, error) {
	return func(_ context.Context, name string, args ...string) ([]byte, error) {
		switch strings.Join(args, " ") {
		case "--version":
			return []byte("runc version " + version + "\nspec: 1.3.0\n"), nil
		case "features":
			if seccomp {
				return []byte(`{"linux":{"seccomp":{"enabled":true}}}`), nil
			}
			return []byte(`{"linux":{"seccomp":{"enabled":false}}}`), nil
		}
		return nil, errors.New("unexpected command " + name + " " + strings.Join(args, " "))
	}
}

// doctorBackend runs nothing and reports a fixed exit code.
type doctorBackend struct {
	exit int
	ran  []sandbox.Spec
}

func (b *doctorBackend) Name() string                                       { return "fake" }
func (b *doctorBackend) Reap(ctx context.Context) ([]sandbox.Reaped, error) { return nil, nil }
func (b *doctorBackend) Run(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
	b.ran = append(b.ran, s)
	return sandbox.Result{ExitCode: b.exit}, nil
}

func TestRunDoctor(t *testing.T) {
	allNS := []string{"mnt", "pid", "net", "ipc", "uts", "user", "cgroup"}
	cases := []struct {
		name      string
		euid      int
		runc      string
		seccomp   bool
		images    bool
		smokeExit int
		wantExit  int
		wantSmoke checkStatus // "" = no smoke row expected
		wantFail  []string
	}{
		{"all good", 0, "1.5.2", true, true, 0, 0, statusOK, nil},
		{"all good but true fails", 0, "1.5.2", true, true, 1, 1, statusFail, []string{"sandbox smoke test"}},
		{"1.3.1 only warns", 0, "1.3.1", true, true, 0, 0, statusOK, nil},
		{"old runc", 0, "1.1.12", true, true, 0, 1, statusWarn, []string{"runc"}},
		{"runc without seccomp", 0, "1.5.2", false, true, 0, 1, statusWarn, []string{"runc seccomp"}},
		{"not root", 1000, "1.5.2", true, true, 0, 1, statusWarn, []string{"root"}},
		{"no busybox image", 0, "1.5.2", true, false, 0, 1, statusWarn, []string{"image busybox"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			backend := &doctorBackend{exit: c.smokeExit}
			env := doctorEnv{
				euid:     c.euid,
				runc:     func() (string, error) { return "/fake/runc", nil },
				command:  fakeRunc(c.runc, c.seccomp),
				procRoot: fakeProc(t, allNS, readFixture(t, "mountinfo-v1.txt"), "Seccomp:\t0\n"),
				images: func(context.Context) []checkRow {
					if c.images {
						return []checkRow{{"image busybox", statusOK, "sha256:0"}}
					}
					return checkImages(context.Background(), t.TempDir())
				},
				writable: func(string) bool { return true },
				open: func(context.Context, string, zerolog.Logger) (sandbox.Backend, func() error, error) {
					return backend, func() error { return nil }, nil
				},
				smokeTime: 1e9,
			}
			rows := runDoctor(context.Background(), env)
			var fails []string
			for _, r := range rows {
				if r.Status == statusFail {
					fails = append(fails, r.Check)
				}
			}
			if !slices.Equal(fails, c.wantFail) {
				t.Errorf("failed checks %v, want %v", fails, c.wantFail)
			}
			if got := doctorExit(rows); got != c.wantExit {
				t.Errorf("exit %d, want %d", got, c.wantExit)
			}
			last := rows[len(rows)-1]
			if last.Check != "sandbox smoke test" || last.Status != c.wantSmoke {
				t.Errorf("last row %+v, want smoke test %s", last, c.wantSmoke)
			}
			ranSmoke := c.wantSmoke != statusWarn
			if (len(backend.ran) == 1) != ranSmoke {
				t.Errorf("smoke test ran %d times, want ran=%v (it runs only when nothing failed before)", len(backend.ran), ranSmoke)
			}
		})
	}
}

func TestSmokeTest(t *testing.T) {
	cases := []struct {
		name    string
		exit    int
		openErr error
		want    checkStatus
	}{
		{"true exits 0", 0, nil, statusOK},
		{"true exits 1", 1, nil, statusFail},
		{"backend unavailable", 0, sandbox.ErrUnavailable, statusFail},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			backend := &doctorBackend{exit: c.exit}
			env := doctorEnv{
				smokeTime: 1e9,
				open: func(context.Context, string, zerolog.Logger) (sandbox.Backend, func() error, error) {
					if c.openErr != nil {
						return nil, nil, c.openErr
					}
					return backend, func() error { return nil }, nil
				},
			}
			r := smokeTest(context.Background(), env)
			if r.Status != c.want {
				t.Errorf("got %+v, want %s", r, c.want)
			}
			if c.openErr == nil {
				if len(backend.ran) != 1 || !slices.Equal(backend.ran[0].Argv, []string{"true"}) ||
					backend.ran[0].Seccomp != sandbox.SeccompDefault {
					t.Errorf("smoke test ran %+v, want `true` once with the hardened defaults", backend.ran)
				}
			}
		})
	}
}

func TestPrintRows(t *testing.T) {
	rows := []checkRow{{"root", statusOK, "euid 0"}, {"runc", statusFail, "no runc <here>"}}
	var table, js bytes.Buffer
	if err := printRows(&table, rows, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 3 || !slices.Equal(strings.Fields(lines[0]), []string{"CHECK", "STATUS", "DETAIL"}) ||
		!slices.Equal(strings.Fields(lines[2]), []string{"runc", "fail", "no", "runc", "<here>"}) ||
		strings.Index(lines[1], "ok") != strings.Index(lines[2], "fail") {
		t.Errorf("table is not three aligned rows:\n%s", table.String())
	}
	if err := printRows(&js, rows, true); err != nil {
		t.Fatal(err)
	}
	var back []checkRow
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || !slices.Equal(back, rows) {
		t.Errorf("JSON %s decodes to %v, %v", js.String(), back, err)
	}
	if !strings.Contains(js.String(), "<here>") {
		t.Errorf("JSON escapes HTML: %s", js.String())
	}
}

func TestDoctorUsage(t *testing.T) {
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"-h"}, 0},
		{[]string{"--bogus"}, 2},
		{[]string{"extra"}, 2},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if got := cmdDoctor(context.Background(), c.args, &out, &errOut); got != c.want {
				t.Errorf("exit %d, want %d (stderr %s)", got, c.want, errOut.String())
			}
		})
	}
}

func TestCheckOptionalBackends(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///custom/docker.sock")
	present := map[string]bool{"/custom/docker.sock": true}
	rows := checkOptionalBackends(func(p string) bool { return present[p] })
	if len(rows) != 2 {
		t.Fatalf("rows %+v, want docker and containerd", rows)
	}
	for _, r := range rows {
		if r.Status != statusOK {
			t.Errorf("%s: %s; an optional backend never warns or fails", r.Check, r.Status)
		}
	}
	if !strings.HasPrefix(rows[0].Detail, "daemon socket at /custom/docker.sock") {
		t.Errorf("docker row %q does not honour DOCKER_HOST", rows[0].Detail)
	}
	if !strings.HasPrefix(rows[1].Detail, "no daemon socket") {
		t.Errorf("containerd row %q, want not found", rows[1].Detail)
	}
}

// TestDoctorOnThisMachine runs the machine checks for real (not the images or the smoke test,
// which depend on `make images` and the runc backend): where runc is available, runc, its
// seccomp, the kernel's seccomp, the profiles, cgroups and namespaces must all pass.
func TestDoctorOnThisMachine(t *testing.T) {
	t.Setenv("AIRLOCK_RUNC", testenv.Runc(t))
	env := hostDoctorEnv()
	env.open = nil
	env.images = func(context.Context) []checkRow { return nil }
	rows := runDoctor(context.Background(), env)
	for _, r := range rows {
		if r.Status == statusFail {
			t.Errorf("%s failed on a machine that runs sandboxes: %s", r.Check, r.Detail)
		}
	}
	for _, want := range []string{"root", "runc", "runc seccomp", "kernel seccomp", "seccomp profiles", "cgroups", "cgroup memory", "cgroup pids", "cgroup cpu", "namespaces"} {
		if !slices.ContainsFunc(rows, func(r checkRow) bool { return r.Check == want }) {
			t.Errorf("no %q row in %+v", want, rows)
		}
	}
}
