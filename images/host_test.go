package images

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/sandbox"
)

// ownEtc are the /etc files the image writes itself instead of taking them from the host.
var ownEtc = []string{"/etc/passwd", "/etc/group", "/etc/hosts", "/etc/nsswitch.conf"}

func TestHostImageOnThisMachine(t *testing.T) {
	s := openStore(t)
	img := build(t, s, "host", toolboxV1)
	allow := etcAllowlist()

	var targets []string
	for _, b := range img.Binds {
		targets = append(targets, b.Target)
		if b.Access != sandbox.ReadOnly {
			t.Errorf("bind %s is %q, want ro", b.Target, b.Access)
		}
		if b.Target == "/etc" || b.Source == "/etc" || b.Target == "/" {
			t.Errorf("bind of the whole %s → %s", b.Source, b.Target)
		}
		if rest, ok := strings.CutPrefix(b.Target, "/etc/"); ok && !slices.Contains(allow, rest) {
			t.Errorf("bind %s is not on the /etc allowlist", b.Target)
		}
		if strings.HasPrefix(b.Source, "/etc/") && b.Source != b.Target {
			t.Errorf("bind %s → %s: /etc entries are bound only to themselves", b.Source, b.Target)
		}
		// The mount point exists with the right type (the root is read-only at run time).
		mp, err := os.Lstat(filepath.Join(img.Rootfs, b.Target))
		src, err2 := os.Stat(b.Source)
		if err != nil || err2 != nil {
			t.Errorf("bind %s: mount point %v, source %v", b.Target, err, err2)
			continue
		}
		if mp.IsDir() != src.IsDir() || mp.Mode()&os.ModeSymlink != 0 {
			t.Errorf("bind %s: mount point %v does not match source %v", b.Target, mp.Mode(), src.Mode())
		}
	}
	if !slices.Contains(targets, "/usr") {
		t.Fatalf("binds %v lack /usr", targets)
	}
	for _, forbidden := range []string{"/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh", "/etc/ssl/private", "/etc/passwd"} {
		if slices.Contains(targets, forbidden) {
			t.Errorf("%s is bound", forbidden)
		}
	}

	// Merged /usr: /bin is a link in the skeleton, not a second bind.
	if fi, err := os.Lstat("/bin"); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if slices.Contains(targets, "/bin") {
			t.Errorf("/bin is a symlink on the host but bound in the image")
		}
		want, _ := os.Readlink("/bin")
		if got, err := os.Readlink(filepath.Join(img.Rootfs, "bin")); err != nil || got != want {
			t.Errorf("skeleton /bin -> %q (%v), want %q", got, err, want)
		}
	}

	// Everything in the skeleton's /etc is the image's own or allowlisted.
	err := filepath.WalkDir(filepath.Join(img.Rootfs, "etc"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + filepath.ToSlash(must(filepath.Rel(img.Rootfs, p)))
		if d.IsDir() && rel == "/etc" {
			return nil
		}
		name := strings.TrimPrefix(rel, "/etc/")
		ok := slices.Contains(ownEtc, rel) || slices.Contains(allow, name)
		for _, a := range allow { // parents of nested entries, e.g. /etc/ssl
			ok = ok || strings.HasPrefix(a, name+"/")
		}
		if !ok {
			t.Errorf("unexpected %s in the host image's /etc", rel)
		}
		if d.IsDir() && slices.Contains(allow, name) {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(img.Rootfs, ToolboxPath)); err != nil {
		t.Fatalf("toolbox missing: %v", err)
	}
	assertNoSetID(t, img.Rootfs)

	again := build(t, s, "host", toolboxV1)
	if again.ID != img.ID {
		t.Fatalf("host image ID not deterministic: %s != %s", img.ID, again.ID)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A fake host exercises the layouts this machine does not have: a split /usr, a /lib link
// out of /usr, and /etc links that point at files not on the allowlist.
func TestHostImageFromFakeHost(t *testing.T) {
	host := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(host, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, data string) {
		mk(filepath.Dir(p))
		if err := os.WriteFile(filepath.Join(host, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(p, target string) {
		mk(filepath.Dir(p))
		if err := os.Symlink(target, filepath.Join(host, p)); err != nil {
			t.Fatal(err)
		}
	}
	mk("usr/bin")
	mk("usr/lib64")
	mk("sbin")                    // a real directory: bound
	link("bin", "usr/bin")        // merged /usr: replicated
	link("lib64", "/usr/lib64")   // absolute link into /usr: replicated
	mk("opt/lib")                 //
	link("lib", "opt/lib")        // a link out of /usr: its target is bound at /lib
	link("libx32", "nonexistent") // dangling: skipped
	write("etc/shadow", "root:$6$secret")
	write("etc/passwd", "host-user:x:1000:1000::/home/u:/bin/bash\n")
	write("etc/ld.so.cache", "cache")
	mk("etc/ld.so.conf.d")
	mk("etc/ssl/certs")
	mk("etc/ssl/private")
	write("etc/ssl/private/key.pem", "KEY")
	write("usr/share/zoneinfo/UTC", "TZif")
	link("etc/localtime", "/usr/share/zoneinfo/UTC") // into a bound dir: a link in the image
	link("etc/gitconfig", "shadow")                  // to a secret: refused
	link("etc/timezone", "../etc/shadow")            // to a secret: refused
	write("etc/sudoers", "ALL ALL=(ALL) NOPASSWD: ALL")

	s := openStore(t)
	s.hostRoot = host
	img := build(t, s, "host", toolboxV1)

	ro := func(src, target string) sandbox.Mount {
		return sandbox.Mount{Source: filepath.Join(host, src), Target: target, Access: sandbox.ReadOnly}
	}
	want := []sandbox.Mount{
		ro("etc/ld.so.cache", "/etc/ld.so.cache"),
		ro("etc/ld.so.conf.d", "/etc/ld.so.conf.d"),
		ro("etc/ssl/certs", "/etc/ssl/certs"),
		ro("opt/lib", "/lib"),
		ro("sbin", "/sbin"),
		ro("usr", "/usr"),
	}
	if !slices.Equal(img.Binds, want) {
		t.Fatalf("binds:\n got %v\nwant %v", img.Binds, want)
	}

	links := []struct{ path, target string }{
		{"bin", "usr/bin"},
		{"lib64", "/usr/lib64"},
		{"etc/localtime", "/usr/share/zoneinfo/UTC"},
	}
	for _, l := range links {
		if got, err := os.Readlink(filepath.Join(img.Rootfs, l.path)); err != nil || got != l.target {
			t.Errorf("/%s -> %q (%v), want %q", l.path, got, err, l.target)
		}
	}
	for _, absent := range []string{"etc/shadow", "etc/gitconfig", "etc/timezone", "etc/sudoers", "etc/ssl/private", "libx32", "opt/lib"} {
		if _, err := os.Lstat(filepath.Join(img.Rootfs, absent)); err == nil {
			t.Errorf("/%s is in the image", absent)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(img.Rootfs, "etc/passwd"))
	if strings.Contains(string(passwd), "host-user") || !strings.Contains(string(passwd), "65534") {
		t.Errorf("image /etc/passwd is not the image's own:\n%s", passwd)
	}

	// The bind list is part of the ID: a new host directory gives a new ID.
	mk("lib32")
	changed := build(t, s, "host", toolboxV1)
	if changed.ID == img.ID {
		t.Fatalf("adding /lib32 on the host kept ID %s", img.ID)
	}
	// Content under a bind is not (documented): the ID stays.
	write("usr/bin/newtool", "x")
	same := build(t, s, "host", toolboxV1)
	if same.ID != changed.ID {
		t.Fatalf("content under /usr changed the ID: %s -> %s", changed.ID, same.ID)
	}
}
