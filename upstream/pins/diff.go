package pins

import (
	"fmt"
	"strings"
)

// diffContext is how many unchanged lines surround each change in a hunk.
const diffContext = 3

// maxDiffCells bounds the line-matching table; past it the differing middle is shown as
// removed and added whole (still correct, only less precise).
const maxDiffCells = 4 << 20

// unifiedDiff returns a unified diff (as diff -u prints it) of two texts that end in a
// newline, or "" if they are equal.
func unifiedDiff(oldName, newName, oldText, newText string) string {
	a, b := splitLines(oldText), splitLines(newText)
	ops := editScript(a, b)
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", oldName, newName)
	changed := false
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		changed = true
		// A hunk starts diffContext lines before its first change and ends after the last
		// change that is within 2*diffContext lines of the previous one.
		start := max(i-diffContext, 0)
		end := i
		for j := i; j < len(ops); j++ {
			if ops[j].kind != ' ' {
				end = j + 1
			} else if j-end >= 2*diffContext {
				break
			}
		}
		end = min(end+diffContext, len(ops))
		h := ops[start:end]
		oldStart, newStart := ops[start].oldLine, ops[start].newLine
		var oldN, newN int
		for _, o := range h {
			if o.kind != '+' {
				oldN++
			}
			if o.kind != '-' {
				newN++
			}
		}
		fmt.Fprintf(&out, "@@ -%s +%s @@\n", hunkRange(oldStart, oldN), hunkRange(newStart, newN))
		for _, o := range h {
			out.WriteByte(o.kind)
			out.WriteString(o.text)
			out.WriteByte('\n')
		}
		i = end
	}
	if !changed {
		return ""
	}
	return out.String()
}

// hunkRange prints a hunk's start (1-based; for an empty range, the line before it) and
// length.
func hunkRange(start0, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start0)
	}
	return fmt.Sprintf("%d,%d", start0+1, n)
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// op is one line of an edit script: ' ' kept, '-' removed, '+' added; oldLine and newLine
// are the 0-based positions in each text where the line stands (or would stand).
type op struct {
	kind             byte
	text             string
	oldLine, newLine int
}

// editScript turns a into b with a longest common subsequence of lines.
func editScript(a, b []string) []op {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	ma, mb := a[pre:len(a)-suf], b[pre:len(b)-suf]
	var ops []op
	i, j := 0, 0
	add := func(kind byte, text string) {
		ops = append(ops, op{kind: kind, text: text, oldLine: i, newLine: j})
		if kind != '+' {
			i++
		}
		if kind != '-' {
			j++
		}
	}
	for _, l := range a[:pre] {
		add(' ', l)
	}
	if len(ma)*len(mb) > maxDiffCells {
		for _, l := range ma {
			add('-', l)
		}
		for _, l := range mb {
			add('+', l)
		}
	} else {
		// lcs[x][y] is the LCS length of ma[x:] and mb[y:].
		w := len(mb) + 1
		lcs := make([]int, (len(ma)+1)*w)
		for x := len(ma) - 1; x >= 0; x-- {
			for y := len(mb) - 1; y >= 0; y-- {
				if ma[x] == mb[y] {
					lcs[x*w+y] = lcs[(x+1)*w+y+1] + 1
				} else {
					lcs[x*w+y] = max(lcs[(x+1)*w+y], lcs[x*w+y+1])
				}
			}
		}
		x, y := 0, 0
		for x < len(ma) || y < len(mb) {
			switch {
			case x < len(ma) && y < len(mb) && ma[x] == mb[y]:
				add(' ', ma[x])
				x, y = x+1, y+1
			case y == len(mb) || (x < len(ma) && lcs[(x+1)*w+y] >= lcs[x*w+y+1]):
				add('-', ma[x])
				x++
			default:
				add('+', mb[y])
				y++
			}
		}
	}
	for _, l := range a[len(a)-suf:] {
		add(' ', l)
	}
	return ops
}
