package main

import (
	"fmt"
	"io"
	"os"
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
func terminalSafe(p []byte) []byte {
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
		default:
			out = append(out, p[i:i+size]...)
			i += size
		}
	}
	return out
}
