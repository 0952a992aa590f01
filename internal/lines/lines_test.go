package lines

import (
	"slices"
	"strings"
	"testing"
)

// Every complete line arrives once, whatever the chunking; a line over Max and an unfinished
// last line do not.
func TestSplitter(t *testing.T) {
	stream := "one\ntwo\n" + strings.Repeat("x", 20) + "\n\nthree\nunfinished"
	for _, size := range []int{1, 3, 7, len(stream)} {
		var got []string
		s := &Splitter{Max: 10, Line: func(l []byte) { got = append(got, string(l)) }}
		for rest := stream; rest != ""; {
			n := min(size, len(rest))
			s.Feed([]byte(rest[:n]))
			rest = rest[n:]
		}
		if want := []string{"one", "two", "", "three"}; !slices.Equal(got, want) {
			t.Errorf("chunks of %d: %q, want %q", size, got, want)
		}
	}
}
