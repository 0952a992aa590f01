package policies

import (
	"fmt"
	"strings"
)

// The |words path transform judges a shell command line by the words the shell will pass to
// the program, not by its text. A regex on the text sees `git diff "--output=/tmp/x" HEAD`,
// `go build '-o' x` and `git diff --ou""tput=x` as harmless, yet sh hands git and go the very
// options the regex was written to refuse: quotes and backslashes are removed before a program
// sees its arguments.
//
// shellWords splits a string the way POSIX sh splits a simple command, removing quotes and
// backslashes, and refuses everything whose words the string alone does not determine or that
// is more than one simple command: parameter, command and arithmetic expansion ($, backticks,
// also inside double quotes), globs (* ? [), tilde and brace expansion, comments, operators
// and redirections (; & | < > ( )), `!`, control characters (a newline separates commands),
// unbalanced quotes, a leading assignment (FOO=x cmd sets the program's environment) and a
// reserved word as the command name. Refused strings are a type mismatch for the policy, so a
// require denies and a deny_if fires (fail closed).

// shellError says why a string is not one simple command with literal words.
type shellError struct {
	offset int // byte offset into the command
	reason string
}

func (e *shellError) Error() string {
	return fmt.Sprintf("byte %d: %s", e.offset, e.reason)
}

// shellReserved are words that start or end compound commands, pipelines or keywords in sh,
// bash and dash when they are the command name and unquoted.
var shellReserved = map[string]bool{
	"!": true, "{": true, "}": true, "case": true, "do": true, "done": true, "elif": true, "else": true,
	"esac": true, "fi": true, "for": true, "if": true, "in": true, "then": true, "until": true,
	"while": true, "[[": true, "]]": true, "function": true, "select": true, "time": true, "coproc": true,
}

// maxShellWords bounds the words of one command (a policy argument is already size-bounded by
// the tool's schema; this keeps the allocation proportional anyway).
const maxShellWords = 4096

// shellWords returns the words of s, or a *shellError.
func shellWords(s string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool // cur holds a word, possibly empty ("" is a word)
		quoted bool // some part of the current word was quoted or escaped
	)
	fail := func(i int, format string, args ...any) ([]string, error) {
		return nil, &shellError{offset: i, reason: fmt.Sprintf(format, args...)}
	}
	end := func(i int) error {
		if !inWord {
			return nil
		}
		w := cur.String()
		if len(words) == 0 && !quoted && shellReserved[w] {
			return &shellError{offset: i, reason: fmt.Sprintf("%q as the command name is a shell keyword", w)}
		}
		if len(words) == maxShellWords {
			return &shellError{offset: i, reason: fmt.Sprintf("more than %d words", maxShellWords)}
		}
		words = append(words, w)
		cur.Reset()
		inWord, quoted = false, false
		return nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != ' ' && c != '\t' || c == 0x7f {
			if c == '\n' || c == '\r' {
				return fail(i, "a newline or carriage return (a newline starts another command)")
			}
			return fail(i, "control character 0x%02x", c)
		}
		switch c {
		case ' ', '\t':
			if err := end(i); err != nil {
				return nil, err
			}
			continue
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return fail(i, "unterminated single quote")
			}
			lit := s[i+1 : i+1+j]
			if k := strings.IndexFunc(lit, isControl); k >= 0 {
				return fail(i+1+k, "control character 0x%02x inside quotes", lit[k])
			}
			cur.WriteString(lit)
			inWord, quoted = true, true
			i += j + 1
			continue
		case '"':
			j, err := doubleQuoted(s, i, &cur)
			if err != nil {
				return nil, err
			}
			inWord, quoted = true, true
			i = j
			continue
		case '\\':
			if i+1 == len(s) {
				return fail(i, "a backslash at the end of the command")
			}
			n := s[i+1]
			if n < 0x20 || n == 0x7f {
				return fail(i+1, "an escaped control character")
			}
			cur.WriteByte(n)
			inWord, quoted = true, true
			i++
			continue
		case '$':
			return fail(i, "$ starts an expansion (a variable such as $IFS, ${x}, $(command) or $((arithmetic))); quote it in single quotes for a literal $")
		case '`':
			return fail(i, "a backtick starts command substitution")
		case ';', '&', '|', '<', '>', '(', ')':
			return fail(i, "%q is a shell operator (another command, a pipe, a redirection or a subshell); quote it for a literal %c", string(rune(c)), c)
		case '*', '?', '[':
			return fail(i, "%q is a glob: the shell would replace the word with matching file names; quote it for a literal %c", string(rune(c)), c)
		case '~':
			return fail(i, "~ is expanded to a home directory; quote it for a literal ~")
		case '{', '}':
			return fail(i, "%q takes part in brace expansion or a command group; quote it for a literal %c", string(rune(c)), c)
		case '#':
			return fail(i, "# may start a comment; quote it for a literal #")
		case '!':
			return fail(i, "! negates a pipeline or expands history; quote it for a literal !")
		case '=':
			if len(words) == 0 && !quoted {
				return fail(i, "an assignment before the command name sets the program's environment")
			}
		}
		cur.WriteByte(c)
		inWord = true
	}
	if err := end(len(s)); err != nil {
		return nil, err
	}
	return words, nil
}

// doubleQuoted reads the double-quoted string starting at s[start] == '"' into cur and returns
// the index of its closing quote. Inside double quotes sh still expands $ and backticks, so
// they are refused unless escaped; a backslash escapes only $ ` " \ (and newline), and stays
// before any other character.
func doubleQuoted(s string, start int, cur *strings.Builder) (int, error) {
	for i := start + 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return i, nil
		case isControl(rune(c)):
			return 0, &shellError{offset: i, reason: fmt.Sprintf("control character 0x%02x inside quotes", c)}
		case c == '$':
			return 0, &shellError{offset: i, reason: "$ inside double quotes still expands (a variable, ${x} or $(command)); use single quotes for a literal $"}
		case c == '`':
			return 0, &shellError{offset: i, reason: "a backtick inside double quotes still runs a command"}
		case c == '\\':
			if i+1 == len(s) {
				return 0, &shellError{offset: start, reason: "unterminated double quote"}
			}
			switch n := s[i+1]; n {
			case '$', '`', '"', '\\':
				cur.WriteByte(n)
				i++
			default:
				cur.WriteByte('\\')
			}
		default:
			cur.WriteByte(c)
		}
	}
	return 0, &shellError{offset: start, reason: "unterminated double quote"}
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }
