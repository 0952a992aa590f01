package images

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/sandbox"
)

const (
	toolboxV1 = "testdata/toolbox-v1"
	toolboxV2 = "testdata/toolbox-v2"
)

func requireBusybox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(DefaultBusybox); err != nil {
		testenv.Unavailable(t, "%s is missing (install busybox-static: make setup)", DefaultBusybox)
	}
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func build(t *testing.T, s *Store, name, toolbox string) sandbox.Image {
	t.Helper()
	img, err := s.Build(context.Background(), name, BuildOptions{Toolbox: toolbox})
	if err != nil {
		t.Fatalf("Build(%s): %v", name, err)
	}
	return img
}

func TestOpenCreatesPrivateStore(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	s, err := Open(state)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir() != filepath.Join(state, "images") || fi.Mode().Perm() != 0o700 {
		t.Fatalf("store %s mode %v, want %s mode 0700", s.Dir(), fi.Mode().Perm(), filepath.Join(state, "images"))
	}
}

func TestOpenRefusesWritableStore(t *testing.T) {
	state := t.TempDir()
	dir := filepath.Join(state, "images")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(state); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("Open of a world-writable store = %v, want a refusal naming chmod 700", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(state); err != nil {
		t.Fatalf("Open of a 0755 store: %v", err)
	}
}

func TestBusyboxImage(t *testing.T) {
	requireBusybox(t)
	s := openStore(t)
	img := build(t, s, "busybox", toolboxV1)
	root := img.Rootfs

	if img.Name != "busybox" || !validID(img.ID) || len(img.Binds) != 0 {
		t.Fatalf("image = %+v, want name busybox, a sha256 ID and no binds", img)
	}
	if want := filepath.Join(s.Dir(), "sha256", strings.TrimPrefix(img.ID, "sha256:"), "rootfs"); root != want {
		t.Fatalf("rootfs = %s, want %s", root, want)
	}

	links := []string{"bin/sh", "bin/ls", "bin/cat", "usr/bin/awk", "bin/grep", "usr/bin/find"}
	for _, l := range links {
		t.Run("applet "+l, func(t *testing.T) {
			target, err := os.Readlink(filepath.Join(root, l))
			if err != nil || target != "/bin/busybox" {
				t.Fatalf("%s -> %q (%v), want /bin/busybox", l, target, err)
			}
		})
	}
	// Every applet busybox knows is linked.
	applets, err := busyboxApplets(context.Background(), DefaultBusybox)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if _, err := os.Lstat(filepath.Join(root, a)); err != nil {
			t.Errorf("applet %s missing: %v", a, err)
		}
	}

	modes := []struct {
		path string
		mode fs.FileMode
	}{
		{"bin/busybox", 0o755},
		{strings.TrimPrefix(ToolboxPath, "/"), 0o755},
		{"tmp", fs.ModeDir | fs.ModeSticky | 0o777},
		{"etc/passwd", 0o644},
		{"workspace", fs.ModeDir | 0o755},
		{"proc", fs.ModeDir | 0o555},
		{"sys", fs.ModeDir | 0o555},
		{"dev", fs.ModeDir | 0o755},
	}
	for _, m := range modes {
		t.Run("mode "+m.path, func(t *testing.T) {
			fi, err := os.Lstat(filepath.Join(root, m.path))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != m.mode {
				t.Fatalf("%s mode %v, want %v", m.path, fi.Mode(), m.mode)
			}
		})
	}

	tb, _ := os.ReadFile(filepath.Join(root, ToolboxPath))
	want, _ := os.ReadFile(toolboxV1)
	if !bytes.Equal(tb, want) {
		t.Fatalf("toolbox in image differs from %s", toolboxV1)
	}

	contents := []struct {
		file, line string
	}{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh"},
		{"etc/passwd", "nobody:x:65534:65534:nobody:/tmp:/bin/sh"},
		{"etc/group", "root:x:0:"},
		{"etc/group", "nogroup:x:65534:"},
		{"etc/hosts", "127.0.0.1\tlocalhost"},
		{"etc/nsswitch.conf", "passwd: files"},
	}
	for _, c := range contents {
		data, err := os.ReadFile(filepath.Join(root, c.file))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains("\n"+string(data), "\n"+c.line+"\n") {
			t.Errorf("%s lacks line %q:\n%s", c.file, c.line, data)
		}
	}

	for _, d := range []string{"proc", "sys", "dev", "workspace"} {
		if entries, _ := os.ReadDir(filepath.Join(root, d)); len(entries) != 0 {
			t.Errorf("/%s is not empty: %v", d, entries)
		}
	}
	assertNoSetID(t, root)
	if os.Geteuid() == 0 {
		assertRootOwned(t, root)
	}

	got, err := s.Resolve(context.Background(), "busybox")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != img.ID || got.Rootfs != img.Rootfs {
		t.Fatalf("Resolve = %+v, want %+v", got, img)
	}
}

// The image really works: busybox's sh runs inside the rootfs through chroot (root only).
func TestBusyboxImageRunsShell(t *testing.T) {
	requireBusybox(t)
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "chroot into the image needs root (euid %d)", os.Geteuid())
	}
	img := build(t, openStore(t), "busybox", toolboxV1)
	out, err := exec.Command("chroot", img.Rootfs, "/bin/sh", "-c", "ls /bin/cat && id -un 65534 2>/dev/null; awk 'BEGIN{print 6*7}'").CombinedOutput()
	if err != nil {
		t.Fatalf("chroot sh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "/bin/cat") || !strings.Contains(string(out), "42") {
		t.Fatalf("unexpected output:\n%s", out)
	}
}

func assertNoSetID(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			t.Errorf("%s has set-id bits: %v", p, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func assertRootOwned(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if uid, gid := statOwner(fi); uid != 0 || gid != 0 {
			t.Errorf("%s owned by %d:%d, want 0:0", p, uid, gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestIDIsDeterministic(t *testing.T) {
	requireBusybox(t)
	s1, s2 := openStore(t), openStore(t)
	a := build(t, s1, "busybox", toolboxV1)
	time.Sleep(10 * time.Millisecond) // different mtimes must not matter
	b := build(t, s2, "busybox", toolboxV1)
	if a.ID != b.ID {
		t.Fatalf("two builds of the same content: %s != %s", a.ID, b.ID)
	}

	// Rebuilding in the same store reuses the stored tree.
	before, err := os.Stat(a.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	again := build(t, s1, "busybox", toolboxV1)
	after, err := os.Stat(again.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != a.ID || !os.SameFile(before, after) {
		t.Fatalf("rebuild of unchanged content replaced the image: %s -> %s", a.ID, again.ID)
	}

	c := build(t, s1, "busybox", toolboxV2)
	if c.ID == a.ID {
		t.Fatalf("changing the toolbox kept ID %s", a.ID)
	}
	got, err := s1.Resolve(context.Background(), "busybox")
	if err != nil || got.ID != c.ID {
		t.Fatalf("Resolve after rebuild = %v, %v; want %s", got.ID, err, c.ID)
	}
	// The previous image is kept for pruneAfter: a sandbox may still run on it.
	if _, err := os.Stat(a.Rootfs); err != nil {
		t.Fatalf("old image removed before its grace period: %v", err)
	}
	s1.pruneAfter = 0
	build(t, s1, "busybox", toolboxV2)
	if _, err := os.Stat(a.Rootfs); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unreferenced image not pruned after its grace period: %v", err)
	}
	if _, err := os.Stat(c.Rootfs); err != nil {
		t.Fatalf("current image pruned: %v", err)
	}
}

func TestDamagedImageIsReplaced(t *testing.T) {
	requireBusybox(t)
	s := openStore(t)
	img := build(t, s, "busybox", toolboxV1)
	intruder := filepath.Join(img.Rootfs, "etc", "intruder")
	if err := os.WriteFile(intruder, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	again := build(t, s, "busybox", toolboxV1)
	if again.ID != img.ID {
		t.Fatalf("ID changed: %s -> %s", img.ID, again.ID)
	}
	if _, err := os.Stat(intruder); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("damaged image kept: %v", err)
	}
}

func TestConcurrentBuilds(t *testing.T) {
	requireBusybox(t)
	s := openStore(t)
	const n = 4
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A second Store on the same directory: the lock must work across handles too.
			st, err := Open(filepath.Dir(s.Dir()))
			if err != nil {
				errs[i] = err
				return
			}
			img, err := st.Build(context.Background(), "busybox", BuildOptions{Toolbox: toolboxV1})
			ids[i], errs[i] = img.ID, err
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("build %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("build %d gave %s, build 0 gave %s", i, ids[i], ids[0])
		}
	}
	entries, _ := os.ReadDir(filepath.Join(s.Dir(), "sha256"))
	if len(entries) != 1 {
		t.Fatalf("sha256/ holds %d images, want 1", len(entries))
	}
	if tmp, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(tmp) != 0 {
		t.Fatalf("tmp/ not cleaned: %v", tmp)
	}
}

func TestBuildWaitsForLockUntilContextDone(t *testing.T) {
	s := openStore(t)
	unlock, err := s.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = s.Build(ctx, "busybox", BuildOptions{Toolbox: toolboxV1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Build under a held lock = %v, want context.DeadlineExceeded", err)
	}
}

func TestResolveErrors(t *testing.T) {
	s := openStore(t)
	cases := []struct {
		name    string
		image   string
		is      error
		message string
	}{
		{"unbuilt busybox", "busybox", ErrNotBuilt, "image \"busybox\" is not built: run `airlock images build busybox` (or make setup)"},
		{"unbuilt host", "host", ErrNotBuilt, "image \"host\" is not built: run `airlock images build host` (or make setup)"},
		{"unknown", "debian", ErrUnknown, "buildable images are busybox, host"},
		{"path traversal", "../../etc/passwd", ErrUnknown, "unknown image"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Resolve(context.Background(), c.image)
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.message) {
				t.Fatalf("Resolve(%q) = %v, want %v containing %q", c.image, err, c.is, c.message)
			}
		})
	}
}

func TestResolveRefusesForeignIndex(t *testing.T) {
	s := openStore(t)
	if err := os.MkdirAll(filepath.Join(s.Dir(), "names"), 0o700); err != nil {
		t.Fatal(err)
	}
	forged := `{"name":"busybox","id":"sha256:` + strings.Repeat("ab", 32) + `","rootfs":"/"}`
	if err := os.WriteFile(s.indexPath("busybox"), []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	if img, err := s.Resolve(context.Background(), "busybox"); err == nil {
		t.Fatalf("Resolve accepted an index pointing at %s", img.Rootfs)
	}
}

func TestBuildRejects(t *testing.T) {
	s := openStore(t)
	cases := []struct {
		name, image, toolbox, message string
	}{
		{"unknown image", "debian", toolboxV1, "buildable images are busybox, host"},
		{"missing toolbox", "busybox", filepath.Join(t.TempDir(), "airlock-toolbox"), "make build"},
		{"no toolbox", "busybox", "", "make build"},
		{"toolbox is a directory", "busybox", t.TempDir(), "not a regular file"},
	}
	if dyn := dynamicELF(); dyn != "" {
		cases = append(cases, struct{ name, image, toolbox, message string }{"dynamic toolbox", "busybox", dyn, "dynamically linked"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Build(context.Background(), c.image, BuildOptions{Toolbox: c.toolbox})
			if err == nil || !strings.Contains(err.Error(), c.message) {
				t.Fatalf("Build = %v, want an error containing %q", err, c.message)
			}
		})
	}
}

// dynamicELF returns a dynamically linked executable of the host, if one is found.
func dynamicELF() string {
	for _, p := range []string{"/usr/bin/ls", "/bin/ls", "/usr/bin/env"} {
		if _, err := os.Stat(p); err == nil && checkToolbox(p) != nil {
			return p
		}
	}
	return ""
}

func TestList(t *testing.T) {
	requireBusybox(t)
	s := openStore(t)
	if imgs, err := s.List(); err != nil || len(imgs) != 0 {
		t.Fatalf("empty store List = %v, %v", imgs, err)
	}
	h := build(t, s, "host", toolboxV1)
	b := build(t, s, "busybox", toolboxV1)
	imgs, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].ID != b.ID || imgs[1].ID != h.ID {
		t.Fatalf("List = %+v, want busybox then host", imgs)
	}
}
