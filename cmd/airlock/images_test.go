package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

// fakeToolbox is a stand-in for the real airlock-toolbox; the images package only copies it.
const fakeToolbox = "../../images/testdata/toolbox-v1"

func runImages(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cmdImages(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestImagesUsage(t *testing.T) {
	t.Setenv("AIRLOCK_STATE_DIR", t.TempDir())
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no subcommand", nil, 2, "usage: airlock images build"},
		{"unknown subcommand", []string{"remove"}, 2, `unknown subcommand "remove"`},
		{"build without name", []string{"build"}, 2, "name an image to build: busybox, host"},
		{"build unknown image", []string{"build", "debian"}, 2, `unknown image "debian"`},
		{"build bad flag", []string{"build", "--bogus", "busybox"}, 2, "flag provided but not defined"},
		{"list extra argument", []string{"list", "busybox"}, 2, `unexpected argument "busybox"`},
		{"build missing toolbox", []string{"build", "busybox", "--toolbox", "/nonexistent/airlock-toolbox"}, 1, "build it with make build"},
		{"help", []string{"--help"}, 0, "usage: airlock images"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runImages(t, c.args...)
			if code != c.code || !strings.Contains(stderr, c.stderr) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, c.code, c.stderr)
			}
		})
	}
}

func TestImagesBuildAndList(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		testenv.Unavailable(t, "/bin/busybox is missing (install busybox-static: make setup)")
	}
	state := t.TempDir()
	t.Setenv("AIRLOCK_STATE_DIR", state)

	code, _, stderr := runImages(t, "list", "--json")
	if code != 0 {
		t.Fatalf("list on an empty store: exit %d: %s", code, stderr)
	}

	// Flags may follow the name.
	code, stdout, stderr := runImages(t, "build", "busybox", "--toolbox", fakeToolbox)
	if code != 0 {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	fields := strings.Split(strings.TrimSpace(stdout), "\t")
	if len(fields) != 3 || fields[0] != "busybox" || !strings.HasPrefix(fields[1], "sha256:") ||
		!strings.HasPrefix(fields[2], filepath.Join(state, "images", "sha256")) {
		t.Fatalf("build printed %q, want NAME ID ROOTFS", stdout)
	}

	code, stdout, _ = runImages(t, "list")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") ||
		!strings.Contains(lines[1], shortID(fields[1])) || strings.Contains(lines[1], fields[1]) {
		t.Fatalf("list: exit %d\n%s", code, stdout)
	}

	code, stdout, _ = runImages(t, "list", "--json")
	var imgs []sandbox.Image
	if err := json.Unmarshal([]byte(stdout), &imgs); err != nil || code != 0 {
		t.Fatalf("list --json: exit %d, %v\n%s", code, err, stdout)
	}
	if len(imgs) != 1 || imgs[0].ID != fields[1] || imgs[0].Rootfs != fields[2] {
		t.Fatalf("list --json = %+v, want the busybox image just built", imgs)
	}
}
