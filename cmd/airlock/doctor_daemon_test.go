package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/sandbox"
)

// reportingBackend is a daemon backend that describes its daemon.
type reportingBackend struct {
	doctorBackend
	report sandbox.Report
}

func (b *reportingBackend) Report(context.Context) (sandbox.Report, error) { return b.report, nil }

func TestReportRows(t *testing.T) {
	good := sandbox.Report{Endpoint: "unix:///var/run/docker.sock", ServerVersion: "20.10.24", APIVersion: "1.41",
		Runtime: "runc", RuncVersion: "1.3.3", Runtimes: []string{"runc", "airlock-runc"}, Seccomp: true,
		CgroupDriver: "cgroupfs", CgroupVersion: "1"}
	cases := []struct {
		name     string
		mutate   func(*sandbox.Report)
		wantFail []string
		wantWarn []string
		wantText string
	}{
		{"current runc", func(*sandbox.Report) {}, nil, nil, "API 1.41"},
		{"Debian's 1.1.5", func(r *sandbox.Report) { r.RuncVersion = "1.1.5" }, []string{"docker runc"}, nil, "CVE-2024-21626"},
		{"1.2.7 with a v", func(r *sandbox.Report) { r.RuncVersion = "v1.2.7" }, []string{"docker runc"}, nil, "runtime:"},
		{"no runc version", func(r *sandbox.Report) { r.RuncVersion = "" }, nil, []string{"docker runc"}, "did not report"},
		{"no seccomp", func(r *sandbox.Report) { r.Seccomp = false }, []string{"docker seccomp"}, nil, "refuses"},
		{"no cgroup version", func(r *sandbox.Report) { r.CgroupVersion = "" }, nil, []string{"docker cgroups"}, ""},
		{"remote daemon", func(r *sandbox.Report) { r.Remote = true }, nil, []string{"docker host mounts"}, "cannot be mounted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := good
			c.mutate(&r)
			rows := reportRows("docker", r)
			var fail, warn []string
			var all strings.Builder
			for _, row := range rows {
				all.WriteString(row.Detail + "\n")
				switch row.Status {
				case statusFail:
					fail = append(fail, row.Check)
				case statusWarn:
					warn = append(warn, row.Check)
				}
			}
			if strings.Join(fail, ",") != strings.Join(c.wantFail, ",") || strings.Join(warn, ",") != strings.Join(c.wantWarn, ",") {
				t.Errorf("fail %v warn %v, want fail %v warn %v\n%s", fail, warn, c.wantFail, c.wantWarn, all.String())
			}
			if !strings.Contains(all.String(), c.wantText) {
				t.Errorf("rows do not mention %q:\n%s", c.wantText, all.String())
			}
		})
	}
}

// TestRunDoctorDaemonBackend: --backend docker checks the daemon instead of root and runc, and
// runs the smoke test through the named backend.
func TestRunDoctorDaemonBackend(t *testing.T) {
	b := &reportingBackend{report: sandbox.Report{Endpoint: "unix:///x.sock", ServerVersion: "20.10", RuncVersion: "1.1.5",
		Seccomp: true, CgroupVersion: "2"}}
	var opened []string
	env := doctorEnv{
		euid:    1000, // not root: fine for docker
		backend: "docker",
		images:  func(context.Context) []checkRow { return []checkRow{{"image busybox", statusOK, "sha256:0"}} },
		open: func(_ context.Context, name string, _ zerolog.Logger) (sandbox.Backend, func() error, error) {
			opened = append(opened, name)
			return b, func() error { return nil }, nil
		},
		smokeTime: 1e9,
	}
	rows := runDoctor(context.Background(), env)
	var checks []string
	for _, r := range rows {
		checks = append(checks, r.Check+"="+string(r.Status))
	}
	got := strings.Join(checks, " ")
	for _, want := range []string{"docker daemon=ok", "docker runc=fail", "docker seccomp=ok", "sandbox smoke test=warn"} {
		if !strings.Contains(got, want) {
			t.Errorf("rows %s, want %s", got, want)
		}
	}
	for _, not := range []string{"root=", "runc seccomp=", "docker (optional)"} {
		if strings.Contains(got, not) {
			t.Errorf("rows %s: %q is a runc check, not for the docker backend", got, not)
		}
	}
	if doctorExit(rows) != 1 {
		t.Errorf("exit %d, want 1 for a daemon with a vulnerable runc", doctorExit(rows))
	}

	b.report.RuncVersion = "1.3.3"
	opened = nil
	rows = runDoctor(context.Background(), env)
	if doctorExit(rows) != 0 || rows[len(rows)-1].Check != "sandbox smoke test" || rows[len(rows)-1].Status != statusOK {
		t.Errorf("with runc 1.3.3: exit %d, last row %+v; want 0 and a smoke test that ran", doctorExit(rows), rows[len(rows)-1])
	}
	for _, n := range opened {
		if n != "docker" {
			t.Errorf("opened backend %q, want docker", n)
		}
	}

	env.open = func(context.Context, string, zerolog.Logger) (sandbox.Backend, func() error, error) {
		return nil, nil, errors.New("Cannot connect to the Docker daemon")
	}
	rows = runDoctor(context.Background(), env)
	if rows[0].Check != "docker daemon" || rows[0].Status != statusFail || !strings.Contains(rows[0].Detail, "Cannot connect") {
		t.Errorf("unreachable daemon: first row %+v", rows[0])
	}
}

func TestDoctorUnknownBackend(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := cmdDoctor(context.Background(), []string{"--backend", "podman"}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `unknown backend "podman"`) {
		t.Errorf("exit %d stderr %q, want 2 and the unknown backend named", code, stderr.String())
	}
}
