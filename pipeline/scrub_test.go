package pipeline

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPathScrubberWholePathsOnly(t *testing.T) {
	s := newPathScrubber([]string{"/srv/repo", "/root"}, []string{"/workspace", HostPathMarker})
	cases := []struct{ name, in, want string }{
		{"workspace file", "open /srv/repo/a.go: denied", "open /workspace/a.go: denied"},
		{"workspace itself", "cd /srv/repo", "cd /workspace"},
		{"quoted", `"/srv/repo"`, `"/workspace"`},
		{"after colon", "GOPATH=/root:/srv/repo", "GOPATH=[host-path]:/workspace"},
		{"url", "file:///root/.ssh", "file://[host-path]/.ssh"},
		{"longer sibling name", "/srv/repo2/x and /srv/repo-old", "/srv/repo2/x and /srv/repo-old"},
		{"inside another path", "/proc/self/root and /a/root/b", "/proc/self/root and /a/root/b"},
		{"home at line start", "/root/.cache\n/root", "[host-path]/.cache\n[host-path]"},
		{"many", "/root /root /srv/repo /root", "[host-path] [host-path] /workspace [host-path]"},
		{"none", "nothing here", "nothing here"},
		{"unicode neighbour", "é/root", "é/root"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := s.Replace(c.in); got != c.want {
				t.Errorf("Replace(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestMountinfoForms(t *testing.T) {
	const table = `21 26 0:20 / /proc rw,relatime - proc proc rw
26 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 26 8:17 / /srv rw,relatime - ext4 /dev/sdb1 rw
41 26 8:17 /exports /data rw,relatime - ext4 /dev/sdb1 rw
42 26 0:44 / /home/alice/My\040Disk rw - tmpfs tmpfs rw
`
	cases := []struct {
		name, path string
		want       []string
	}{
		{"on the root file system: no other form", "/home/bob/proj", nil},
		{"escaped", "/home/bob/My Project\tx\\y", []string{`/home/bob/My\040Project\011x\134y`}},
		{"own file system at /srv: relative to its root", "/srv/ws", []string{"/ws"}},
		{"bind mount of a subdirectory", "/data/team/ws", []string{"/exports/team/ws"}},
		{"mount point with an escaped name, and both forms escaped", "/home/alice/My Disk/a b",
			[]string{`/home/alice/My\040Disk/a\040b`, "/a b", `/a\040b`}},
		{"the mount point itself is never /", "/srv", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := mountinfoForms(c.path, table)
			if !slices.Equal(got, c.want) {
				t.Errorf("mountinfoForms(%q) = %q, want %q", c.path, got, c.want)
			}
		})
	}
}

// The sanitizer scrubs the workspace in every form a sandbox's mount table shows it.
func TestSanitizerScrubsMountinfoForms(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "My Project")
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	s := NewSanitizer(nil, ws, nil, 0)
	line := "1234 1200 0:55 " + escapeMountinfo(ws) + " /workspace ro,nosuid - ext4 /dev/sda1 rw\n"
	got, _, _ := s.Clean([]byte(line))
	if strings.Contains(got, escapeMountinfo(ws)) || !strings.Contains(got, "0:55 /workspace /workspace") {
		t.Errorf("Clean(%q) = %q", line, got)
	}
}
