package policies

import (
	"fmt"
	"regexp"
	"strings"
)

// compileGlob turns a glob into an anchored RE2 expression, compiled once at load:
//
//   - any run of characters except '/'
//     ?      one character except '/'
//     **     any run of characters including '/'; "**/" also matches zero directories, so
//     "**/*.go" matches "main.go" and "a/b/main.go"
//     [abc]  [a-z]  [!abc]  a character class (a negated class never matches '/')
//     \x     the character x literally
//
// The whole argument must match.
func compileGlob(g string) (*regexp.Regexp, error) {
	if g == "" {
		return nil, fmt.Errorf("empty glob")
	}
	var b strings.Builder
	b.WriteString(`\A`)
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch c {
		case '*':
			if i+1 < len(g) && g[i+1] == '*' {
				i++
				if i+1 < len(g) && g[i+1] == '/' {
					i++
					b.WriteString(`(?:.*/)?`)
				} else {
					b.WriteString(`.*`)
				}
			} else {
				b.WriteString(`[^/]*`)
			}
		case '?':
			b.WriteString(`[^/]`)
		case '[':
			end := strings.IndexByte(g[i+1:], ']')
			if end < 0 {
				return nil, fmt.Errorf("glob %q: unterminated character class", g)
			}
			class := g[i+1 : i+1+end]
			if end == 0 && i+2 < len(g) {
				// "[]abc]": a leading ']' is literal.
				e2 := strings.IndexByte(g[i+2:], ']')
				if e2 < 0 {
					return nil, fmt.Errorf("glob %q: unterminated character class", g)
				}
				class = g[i+1 : i+2+e2]
				end = e2 + 1
			}
			if class == "" {
				return nil, fmt.Errorf("glob %q: empty character class", g)
			}
			neg := class[0] == '!' || class[0] == '^'
			if neg {
				class = class[1:]
			}
			b.WriteString("[")
			if neg {
				b.WriteString("^/")
			}
			for j := 0; j < len(class); j++ {
				switch ch := class[j]; ch {
				case '\\', '[', ']', '^':
					b.WriteByte('\\')
					b.WriteByte(ch)
				default:
					b.WriteByte(ch)
				}
			}
			b.WriteString("]")
			i += end + 1
		case '\\':
			if i+1 >= len(g) {
				return nil, fmt.Errorf("glob %q: trailing backslash", g)
			}
			i++
			b.WriteString(regexp.QuoteMeta(g[i : i+1]))
		default:
			b.WriteString(regexp.QuoteMeta(g[i : i+1]))
		}
	}
	b.WriteString(`\z`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("glob %q: %w", g, err)
	}
	return re, nil
}
