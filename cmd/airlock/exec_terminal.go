package main

import (
	"fmt"
	"io"
	"os"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// terminalWriter passes a sandboxed command's output to an operator's terminal with every
// byte the terminal would act on made visible. A hostile command's output is data: raw, it
// could move the cursor and overwrite what the operator reads (a lone "\r", "\x1b[2K"), set the
// window title, write the clipboard (OSC 52) or, on some terminals, answer queries into the
// shell's input. --json, or a pipe, keeps the bytes exact.
type terminalWriter struct{ w io.Writer }

func (t terminalWriter) Write(p []byte) (int, error) {
	if _, err := t.w.Write(terminalSafe(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writerIsTerminal reports whether w is a terminal device.
func writerIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}

// terminalSafe keeps printable text, tabs, newlines and "\r\n"; it renders other C0 controls
// and DEL in caret notation (ESC -> "^["), C1 controls (U+0080-U+009F, which some terminals
// treat like ESC sequences) as "\u009b", and bytes that are not UTF-8 as "\xff".
func terminalSafe(p []byte) []byte { return escapeControls(p, false) }

// clientTextSafe is terminalSafe for text a client chose (tool names, argument keys, session
// ids, messages in audit records): it also renders Unicode format characters (category Cf) as
// "\u202e". Bidi overrides and isolates (U+202A-U+202E, U+2066-U+2069) make "gnp.exe" read as
// "exe.png", and zero-width and tag characters (U+200B, U+E0041) hide text from the reader. A
// command's own output keeps them (emoji sequences join with U+200D). The escapes are JSON's,
// a surrogate pair above U+FFFF, so a JSON line stays valid JSON with the same meaning.
func clientTextSafe(p []byte) []byte { return escapeControls(p, true) }

func escapeControls(p []byte, format bool) []byte {
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); {
		c := p[i]
		switch {
		case c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f):
			out = append(out, c)
			i++
			continue
		case c == '\r' && i+1 < len(p) && p[i+1] == '\n':
			out = append(out, c)
			i++
			continue
		case c < 0x20:
			out = append(out, '^', c+'@')
			i++
			continue
		case c == 0x7f:
			out = append(out, '^', '?')
			i++
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			out = fmt.Appendf(out, `\x%02x`, c)
			i++
		case r >= 0x80 && r <= 0x9f:
			out = fmt.Appendf(out, `\u%04x`, r)
			i += size
		case format && unicode.Is(unicode.Cf, r):
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
			} else {
				out = fmt.Appendf(out, `\u%04x`, r)
			}
			i += size
		default:
			out = append(out, p[i:i+size]...)
			i += size
		}
	}
	return out
}
