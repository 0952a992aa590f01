package pipeline

import "strings"

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
