package runtime

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-mcp/airlock/sandbox"
)

// fakeBackend records every Spec and answers with respond (or a zero-exit empty result). It
// stands in for runc in unit tests; real containers are exercised in integration/.
type fakeBackend struct {
	mu      sync.Mutex
	specs   []sandbox.Spec
	respond func(ctx context.Context, s sandbox.Spec) (sandbox.Result, error)
}

func (f *fakeBackend) Name() string { return "fake" }

func (f *fakeBackend) Run(ctx context.Context, s sandbox.Spec) (sandbox.Result, error) {
	f.mu.Lock()
	f.specs = append(f.specs, s)
	respond := f.respond
	f.mu.Unlock()
	if respond != nil {
		return respond(ctx, s)
	}
	return sandbox.Result{Stdout: []byte("ok\n"), Duration: time.Millisecond}, nil
}

func (f *fakeBackend) Reap(context.Context) ([]sandbox.Reaped, error) { return nil, nil }

func (f *fakeBackend) runs() []sandbox.Spec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sandbox.Spec(nil), f.specs...)
}

// newTestRuntime opens a runtime over a temp workspace with the given config YAML (which may
// name a policy file written into the workspace's parent as policy.json).
func newTestRuntime(t *testing.T, yaml, policy string, fb *fakeBackend) *Runtime {
	t.Helper()
	return newTestRuntimeTB(t, yaml, policy, fb)
}

func newTestRuntimeTB(t testing.TB, yaml, policy string, fb *fakeBackend, opts ...func(*Options)) *Runtime {
	t.Helper()
	dir := t.TempDir()
	ws := filepath.Join(dir, "ws")
	if err := os.MkdirAll(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "airlock.yaml")
	if policy != "" {
		if err := os.WriteFile(filepath.Join(dir, "policy.json"), []byte(policy), 0o644); err != nil {
			t.Fatal(err)
		}
		yaml = "policy: policy.json\n" + yaml
	}
	yaml = "backend: fake\n" + yaml
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Resolve(Overrides{Workspace: ws, StateDir: filepath.Join(dir, "state")}); err != nil {
		t.Fatal(err)
	}
	o := Options{
		StateDir: filepath.Join(dir, "state"),
		Backends: sandbox.Registry{"fake": func(context.Context, sandbox.OpenOptions) (sandbox.Backend, func() error, error) {
			return fb, nil, nil
		}},
		Logger: zerolog.Nop(),
	}
	for _, f := range opts {
		f(&o)
	}
	rt, err := Open(context.Background(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}
