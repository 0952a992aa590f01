package docker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/airlock-mcp/airlock/sandbox"
)

// TestOpenRefusesUnusableDaemons: no daemon, or one older than Engine API 1.41, is
// ErrUnavailable with a message that says what to do.
func TestOpenRefusesUnusableDaemons(t *testing.T) {
	dir := t.TempDir()
	fake := func(apiVersion string) string {
		sock := filepath.Join(dir, apiVersion+".sock")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Api-Version", apiVersion)
			w.Header().Set("Ostype", "linux")
			w.WriteHeader(http.StatusOK)
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		return "unix://" + sock
	}
	tests := []struct {
		name, host, want string
	}{
		{"no daemon", "unix://" + filepath.Join(dir, "missing.sock"), "make docker"},
		{"API 1.40 (Docker 19.03)", fake("1.40"), "needs 1.41"},
		{"API 1.38, below what the client negotiates", fake("1.38"), "needs 1.41"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			b, err := Open(ctx, Config{Host: tt.host, StateDir: t.TempDir(), Images: noImages{}})
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, sandbox.ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrUnavailable containing %q", err, tt.want)
			}
		})
	}
}

type noImages struct{}

func (noImages) Resolve(context.Context, string) (sandbox.Image, error) {
	return sandbox.Image{}, errors.New("no images")
}

func TestOpenUnknownRuntime(t *testing.T) {
	b := newTestBackend(t)
	_, err := Open(context.Background(), Config{StateDir: t.TempDir(), Images: b.images, Runtime: "no-such-runtime"})
	if !errors.Is(err, sandbox.ErrUnavailable) || !strings.Contains(err.Error(), "--add-runtime") {
		t.Errorf("err = %v, want ErrUnavailable naming --add-runtime", err)
	}
}

// TestRunRuntime: Config.Runtime reaches the container's HostConfig.Runtime, and the hardening
// holds on it. It uses the current runc that `make docker` registers as airlock-runc, or, on a
// daemon started otherwise, the daemon's default runtime named explicitly.
func TestRunRuntime(t *testing.T) {
	probe := newTestBackend(t)
	in, err := probe.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	runtime := "airlock-runc"
	if !slices.Contains(in.Runtimes, runtime) {
		t.Logf("runtime %s is not registered with this daemon (%v); using its default %s", runtime, in.Runtimes, in.DefaultRuntime)
		runtime = in.DefaultRuntime
	}
	b := newTestBackend(t, func(c *Config) { c.Runtime = runtime })
	done := make(chan sandbox.Result, 1)
	go func() {
		res, err := b.Run(context.Background(), spec(t, sandbox.WithArgv("sh", "-c", "grep -E '^(Seccomp|CapEff|NoNewPrivs):' /proc/self/status; sleep 2")))
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	seen := ""
	for i := 0; i < 200 && seen == ""; i++ {
		time.Sleep(20 * time.Millisecond)
		list, _ := b.list(context.Background(), b.lock.Token())
		for _, c := range list {
			if ins, err := b.cli.ContainerInspect(context.Background(), c.ID, client.ContainerInspectOptions{}); err == nil && ins.Container.HostConfig != nil {
				seen = ins.Container.HostConfig.Runtime
			}
		}
	}
	res := <-done
	if seen != runtime {
		t.Errorf("container runtime %q, want %q", seen, runtime)
	}
	if want := "Seccomp:\t2\nNoNewPrivs:\t1\nCapEff:\t0000000000000000\n"; !sameLines(string(res.Stdout), want) || res.ExitCode != 0 {
		t.Errorf("exit %d stdout %q stderr %q, want %q", res.ExitCode, res.Stdout, res.Stderr, want)
	}
}

func sameLines(a, b string) bool {
	la, lb := strings.Split(strings.TrimSpace(a), "\n"), strings.Split(strings.TrimSpace(b), "\n")
	slices.Sort(la)
	slices.Sort(lb)
	return slices.Equal(la, lb)
}

func TestInfo(t *testing.T) {
	b := newTestBackend(t)
	in, err := b.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", in)
	if in.ServerVersion == "" || in.APIVersion == "" || in.DefaultRuntime == "" || in.CgroupDriver == "" || !in.Seccomp || !in.Local ||
		!slices.Contains(in.Runtimes, in.DefaultRuntime) {
		t.Errorf("incomplete info: %+v", in)
	}
	if in.APIVersion != b.cli.ClientVersion() {
		t.Errorf("APIVersion %s, client negotiated %s", in.APIVersion, b.cli.ClientVersion())
	}
}
