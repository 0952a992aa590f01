// Package lines splits a byte stream into lines as it passes, for readers that watch a
// stream of newline-delimited messages (MCP's stdio transport, server-sent events) without
// changing or holding it up.
package lines

import "bytes"

// Splitter hands each complete line of what it is fed to Line, without its newline. A line
// longer than Max bytes is not handed over (and not kept): the messages a watcher looks for are
// short, and a long line (an image result, say) must not grow its memory.
type Splitter struct {
	Max  int
	Line func(line []byte)

	cur  []byte
	long bool // the current line is longer than Max
}

// Feed passes the next bytes of the stream through the splitter.
func (s *Splitter) Feed(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if !s.long && len(s.cur)+len(chunk) <= s.Max {
			s.cur = append(s.cur, chunk...)
		} else {
			s.long, s.cur = true, s.cur[:0]
		}
		if i < 0 {
			return
		}
		if !s.long {
			s.Line(s.cur)
		}
		s.cur, s.long = s.cur[:0], false
		b = b[i+1:]
	}
}
