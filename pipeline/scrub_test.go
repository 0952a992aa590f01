package pipeline

import "testing"

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
