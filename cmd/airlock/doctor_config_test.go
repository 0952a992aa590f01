package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// doctorConfigFixture writes a config (workspace, policy, audit dir under one temp dir) whose
// go_vet tool runs on profile lint (host image, one mount) and returns its path.
func doctorConfigFixture(t *testing.T, mountTarget, policy string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"ws", "modcache", "audit"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.json"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := `workspace: ws
policy: policy.json
audit: {path: audit/audit.jsonl}
profiles:
  lint:
    image: host
    mounts:
      - {source: ` + filepath.Join(dir, "modcache") + `, target: ` + mountTarget + `}
builtins: [read_file]
tools:
  - name: go_vet
    description: vet
    profile: lint
    argv: [go, vet, ./...]
`
	file := filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestDoctorConfig(t *testing.T) {
	t.Setenv("AIRLOCK_STATE_DIR", t.TempDir())
	okPolicy := `{"version":"1","default":"deny","tools":{"read_file":{},"go_vet":{}}}`
	typoPolicy := `{"version":"1","default":"deny","tools":{"read_file":{},"go_vett":{}}}`
	allNS := []string{"mnt", "pid", "net", "ipc", "uts", "user", "cgroup"}
	cases := []struct {
		name       string
		config     func(t *testing.T) string
		hostImage  bool
		smoke      bool
		unwritable bool
		wantExit   int
		want       map[string]checkStatus // check -> status
		wantDetail map[string]string      // check -> substring of its detail
		wantRuns   []string               // images of the specs the backend ran, in order
	}{
		{name: "all good", config: func(t *testing.T) string { return doctorConfigFixture(t, "/tmp/mod", okPolicy) }, hostImage: true, smoke: true,
			want:       map[string]checkStatus{"config": statusOK, "config backend": statusOK, "config policy": statusOK, "config audit": statusOK, "profile files": statusOK, "profile lint": statusOK},
			wantDetail: map[string]string{"config": "tools read_file, go_vet", "profile lint": "(tools: go_vet)"},
			wantRuns:   []string{"busybox", "busybox", "host"}},
		{name: "policy names a tool that does not exist", config: func(t *testing.T) string { return doctorConfigFixture(t, "/tmp/mod", typoPolicy) }, hostImage: true, smoke: true,
			want:       map[string]checkStatus{"config policy": statusWarn},
			wantDetail: map[string]string{"config policy": "no tool go_vett in this config (did you mean go_vet?"},
			wantRuns:   []string{"busybox", "busybox", "host"}},
		{name: "host image missing fails for the tools that need it", config: func(t *testing.T) string { return doctorConfigFixture(t, "/tmp/mod", okPolicy) }, smoke: true, wantExit: 1,
			want:       map[string]checkStatus{"image host": statusFail, "sandbox smoke test": statusWarn, "profile lint": statusWarn},
			wantDetail: map[string]string{"image host": "(needed by go_vet)", "profile lint": "not run: fix the failures above first"}},
		{name: "no smoke", config: func(t *testing.T) string { return doctorConfigFixture(t, "/tmp/mod", okPolicy) }, hostImage: true,
			want:       map[string]checkStatus{"profile lint": statusWarn},
			wantDetail: map[string]string{"profile lint": "not run: --no-smoke"}},
		{name: "audit directory not writable", config: func(t *testing.T) string { return doctorConfigFixture(t, "/tmp/mod", okPolicy) }, hostImage: true, unwritable: true, wantExit: 1,
			want:       map[string]checkStatus{"config audit": statusFail},
			wantDetail: map[string]string{"config audit": "is not writable: serve could not record calls"}},
		{name: "config does not load", config: func(t *testing.T) string {
			f := filepath.Join(t.TempDir(), "airlock.yaml")
			if err := os.WriteFile(f, []byte("profiles:\n  lint:\n    image: host\n    pids: many\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return f
		}, hostImage: true, wantExit: 1,
			want:       map[string]checkStatus{"config": statusFail},
			wantDetail: map[string]string{"config": `profiles.lint.pids: want an integer, got "many"`}},
		{name: "broken policy", config: func(t *testing.T) string {
			return doctorConfigFixture(t, "/tmp/mod", `{"version":"1","tools":{"x":{"deny-if":[]}}}`)
		}, hostImage: true, wantExit: 1,
			want:       map[string]checkStatus{"config policy": statusFail},
			wantDetail: map[string]string{"config policy": "serve would refuse to start"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			backend := &doctorBackend{}
			env := doctorEnv{
				euid:     0,
				runc:     func() (string, error) { return "/fake/runc", nil },
				command:  fakeRunc("1.5.2", true),
				procRoot: fakeProc(t, allNS, readFixture(t, "mountinfo-v1.txt"), "Seccomp:\t0\n"),
				images: func(context.Context) []checkRow {
					rows := []checkRow{{"image busybox", statusOK, "sha256:0"}}
					if c.hostImage {
						return append(rows, checkRow{"image host", statusOK, "sha256:1"})
					}
					return append(rows, checkRow{"image host", statusWarn, "not built: run `airlock images build host`"})
				},
				writable:  func(string) bool { return !c.unwritable },
				smokeTime: 1e9,
				config:    loadDoctorConfig(c.config(t)),
			}
			if c.smoke {
				env.open = func(context.Context, string, zerolog.Logger) (sandbox.Backend, func() error, error) {
					return backend, func() error { return nil }, nil
				}
			}
			rows := runDoctor(context.Background(), env)
			got := map[string]checkRow{}
			for _, r := range rows {
				got[r.Check] = r
			}
			for check, st := range c.want {
				if got[check].Status != st {
					t.Errorf("%s: %+v, want %s", check, got[check], st)
				}
			}
			for check, sub := range c.wantDetail {
				if !strings.Contains(got[check].Detail, sub) {
					t.Errorf("%s: detail %q lacks %q", check, got[check].Detail, sub)
				}
			}
			if code := doctorExit(rows); code != c.wantExit {
				t.Errorf("exit %d, want %d: %+v", code, c.wantExit, rows)
			}
			var ran []string
			for _, s := range backend.ran {
				ran = append(ran, s.Image)
			}
			if !slices.Equal(ran, c.wantRuns) {
				t.Errorf("backend ran images %v, want %v", ran, c.wantRuns)
			}
			if len(c.wantRuns) == 3 && len(backend.ran) == 3 {
				lint := backend.ran[2]
				if !slices.ContainsFunc(lint.Mounts, func(m sandbox.Mount) bool { return m.Target == "/tmp/mod" }) || !slices.Equal(lint.Argv, []string{"true"}) {
					t.Errorf("profile lint ran %+v, want `true` with its /tmp/mod mount", lint)
				}
			}
		})
	}
	var out, errb bytes.Buffer
	if code := cmdDoctor(context.Background(), []string{"-h"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "--config F") {
		t.Errorf("doctor -h (exit %d) does not document --config:\n%s", code, out.String())
	}
}

// TestDoctorConfigOnThisMachine runs the profile check in real runc: a mount target that the
// host image lacks (what docs/config.md's example once had) fails with runc's reason, one
// under /tmp passes.
func TestDoctorConfigOnThisMachine(t *testing.T) {
	t.Setenv("AIRLOCK_RUNC", testenv.Runc(t))
	t.Setenv("AIRLOCK_STATE_DIR", testenv.StateDir())
	policy := `{"version":"1","default":"deny","tools":{"read_file":{},"go_vet":{}}}`
	for _, c := range []struct {
		target string
		want   checkStatus
		detail string
	}{
		{"/go/pkg/mod", statusFail, "mount target /go/pkg/mod does not exist in the image root"},
		{"/tmp/go/pkg/mod", statusOK, "`true` ran on image host"},
	} {
		env := hostDoctorEnv()
		env.config = loadDoctorConfig(doctorConfigFixture(t, c.target, policy))
		rows := runDoctor(context.Background(), env)
		i := slices.IndexFunc(rows, func(r checkRow) bool { return r.Check == "profile lint" })
		if i < 0 {
			t.Fatalf("no profile lint row: %+v", rows)
		}
		if smoke := rows[slices.IndexFunc(rows, func(r checkRow) bool { return r.Check == "sandbox smoke test" })]; smoke.Status != statusOK {
			testenv.Unavailable(t, "the runc backend does not run here: %+v", rows)
		}
		if r := rows[i]; r.Status != c.want || !strings.Contains(r.Detail, c.detail) {
			t.Errorf("target %s: %+v, want %s with %q", c.target, r, c.want, c.detail)
		}
	}
}
