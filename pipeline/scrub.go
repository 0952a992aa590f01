package pipeline

import (
	"fmt"
	"strconv"
	"strings"
)

// pathScrubber replaces host paths in text, but only whole paths: a match must not continue a
// longer name on either side. A plain substring replace turned /proc/self/root into
// /proc/self[host-path] (home /root) and /srv/repo2 into /workspace2 (workspace /srv/repo),
// which both misleads the agent and hides nothing.
type pathScrubber struct {
	olds []string // longest first, so a workspace under a scrubbed home wins
	news []string
}

func newPathScrubber(olds, news []string) *pathScrubber {
	return &pathScrubber{olds: olds, news: news}
}

// Replace returns text with every whole occurrence of a scrubbed path replaced.
func (p *pathScrubber) Replace(text string) string {
	if len(p.olds) == 0 {
		return text
	}
	next := make([]int, len(p.olds)) // next whole match of each path at or after i; -1: none left
	for k, old := range p.olds {
		next[k] = indexWholePath(text, 0, old)
	}
	var b strings.Builder
	i := 0
	for {
		best := -1
		for k := range p.olds {
			if next[k] >= 0 && next[k] < i {
				next[k] = indexWholePath(text, i, p.olds[k])
			}
			if next[k] >= 0 && (best < 0 || next[k] < next[best]) {
				best = k
			}
		}
		if best < 0 {
			break
		}
		b.WriteString(text[i:next[best]])
		b.WriteString(p.news[best])
		i = next[best] + len(p.olds[best])
	}
	if i == 0 {
		return text
	}
	b.WriteString(text[i:])
	return b.String()
}

// indexWholePath finds old in text at or after from where it stands as a whole path: not
// preceded by a name character (a preceding '/' is allowed: file:///home/u) and not followed
// by one (a following '/' is allowed: /home/u/x).
func indexWholePath(text string, from int, old string) int {
	for from <= len(text)-len(old) {
		j := strings.Index(text[from:], old)
		if j < 0 {
			return -1
		}
		j += from
		end := j + len(old)
		if (j == 0 || !isNameByte(text[j-1])) && (end == len(text) || text[end] == '/' || !isNameByte(text[end])) {
			return j
		}
		from = j + 1
	}
	return -1
}

// isNameByte reports whether c can continue a file name (any byte of a UTF-8 sequence counts).
func isNameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c >= 0x80:
		return true
	}
	return strings.IndexByte("._-+~@", c) >= 0
}

// mountinfoForms returns the other forms the host path p takes in a mount table, which a
// sandbox can read (/proc/self/mountinfo shows each mount's source directory as the root of
// its file system names it): octal-escaped as the kernel writes paths there ("\040" for a
// space, "\011" tab, "\012" newline, "\134" backslash), and, when p lies on a file system
// mounted other than at its own root directory (a disk mounted at /srv, a bind mount),
// relative to that file system's root: the workspace /srv/ws on a disk mounted at /srv
// appears as "/ws". mountinfo is the host's own table (of Airlock's process); "/" is never
// returned.
func mountinfoForms(p, mountinfo string) []string {
	forms := []string{p}
	best := -1
	var root string
	for line := range strings.Lines(mountinfo) {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mnt := unescapeMountinfo(f[4])
		if !withinPath(p, mnt) || len(mnt) < best {
			continue
		}
		best, root = len(mnt), unescapeMountinfo(f[3])
		rel := strings.TrimPrefix(p, mnt)
		if mnt == "/" {
			rel = p
		}
		root = strings.TrimSuffix(root, "/") + "/" + strings.TrimPrefix(rel, "/")
	}
	if best >= 0 && root != p && root != "/" && len(root) > 1 {
		forms = append(forms, strings.TrimSuffix(root, "/"))
	}
	var out []string
	for _, f := range forms {
		if f != p {
			out = append(out, f)
		}
		if e := escapeMountinfo(f); e != f {
			out = append(out, e)
		}
	}
	return out
}

// withinPath reports whether p is dir or below it.
func withinPath(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// escapeMountinfo escapes a path as the kernel does in /proc/*/mountinfo and /proc/mounts.
func escapeMountinfo(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, "\\%03o", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeMountinfo undoes escapeMountinfo (any \ooo octal escape).
func unescapeMountinfo(p string) string {
	if !strings.Contains(p, `\`) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' && i+4 <= len(p) {
			if n, err := strconv.ParseUint(p[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}
