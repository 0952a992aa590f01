package pipeline

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// Stage 6 (Sanitizer.Clean: escapes, host paths, secrets, cap) on each input, side by side with
// a plain copy of the same bytes, in the same benchmark so that the machine's load affects
// both alike. Metrics: ms/MiB of output, x-copy (how many times the copy's time), withheld
// (1 when the output was withheld over the redaction budget).

// BenchmarkRedactWorstCase: the inputs that cost the most per byte. The required bound is
// 100 ms per MiB, whether the output is redacted or withheld.
func BenchmarkRedactWorstCase(b *testing.B) {
	r := redactorT(b)
	inputs := []struct {
		name string
		in   []byte
	}{
		// A 1 MiB line made of the rule keywords, each followed by "=" (so every guard
		// passes), " " or nothing: before the keyword anchoring, 30-39 s.
		{"keywords=1MiB", []byte(keywordSoup(r, 1<<20))},
		{"keywords-space-1MiB", []byte(soupWith(r, 1<<20, " "))},
		{"keywords-1MiB", []byte(soupWith(r, 1<<20, ""))},
		// A 155 KB file on one line (minified JSON): before, 19 s.
		{"one-line-155KB", minifiedJSON(155 << 10)},
		// 1 MiB where every line assigns to a key-like name, so the generic rule fires on each.
		{"dense-1MiB", []byte(strings.Repeat(string(denseKeywords()), 100))},
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) { benchClean(b, r, in.in) })
	}
}

// BenchmarkRedactTypical: 10 KB of ordinary tool output. The required bound is 1 ms.
func BenchmarkRedactTypical(b *testing.B) {
	r := redactorT(b)
	b.Run("mixed-log-10KB", func(b *testing.B) { benchClean(b, r, mixedLog()) })
	b.Run("go-source-10KB", func(b *testing.B) { benchClean(b, r, goSource(10<<10)) })
}

// benchClean times s.Clean(in) and, alternately, a copy of in.
func benchClean(b *testing.B, r *Redactor, in []byte) {
	s := NewSanitizer(r, "/home/alice/shop", []string{"/home/alice"}, 2<<20)
	var clean, plain time.Duration
	withheld := 0.0
	dst := make([]byte, len(in))
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		out, _, _ := s.Clean(in)
		t1 := time.Now()
		copy(dst, in)
		_ = string(dst)
		t2 := time.Now()
		clean += t1.Sub(t0)
		plain += t2.Sub(t1)
		if strings.HasPrefix(out, "[airlock: output withheld") {
			withheld = 1
		}
	}
	mib := float64(len(in)) / (1 << 20)
	n := float64(b.N)
	b.ReportMetric(clean.Seconds()*1000/n/mib, "ms/MiB")
	b.ReportMetric(float64(clean)/float64(max(plain, 1)), "x-copy")
	b.ReportMetric(plain.Seconds()*1000/n/mib, "copy-ms/MiB")
	b.ReportMetric(withheld, "withheld")
}

func soupWith(r *Redactor, n int, sep string) string {
	var b strings.Builder
	for b.Len() < n {
		for _, k := range r.keywords {
			b.WriteString(k)
			b.WriteString(sep)
		}
	}
	return b.String()[:n]
}

// minifiedJSON is n bytes of JSON on one line, as a bundler or an API dump writes it: objects
// with key-like names (apiVersion, publicKey, token_type, authorId) and values of every kind.
func minifiedJSON(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(k int) string {
		const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
		b := make([]byte, k)
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		return string(b)
	}
	var b strings.Builder
	b.WriteString("[")
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":%d,"apiVersion":"v%d","name":"%s","publicKey":"%s","token_type":"bearer","authorId":"%s",`+
			`"accessLevel":%d,"url":"https://cdn.example.com/%s/%s.js","tags":["%s","%s"],"secretName":"%s"},`,
			i, i%3, word(8), word(16), word(12), i%5, word(6), word(10), word(4), word(5), word(9))
	}
	b.WriteString("{}]")
	return []byte(b.String())
}

// goSource is n bytes of ordinary Go code.
func goSource(n int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "// handle%d looks the key up in the cache and refreshes the token when it expired.\n", i)
		fmt.Fprintf(&b, "func (s *Server) handle%d(ctx context.Context, key string) (*Item, error) {\n", i)
		fmt.Fprintf(&b, "\titem, ok := s.cache.Get(key)\n\tif !ok || item.Expired(time.Now()) {\n")
		fmt.Fprintf(&b, "\t\treturn nil, fmt.Errorf(\"api: item %%q: %%w\", key, ErrNotFound)\n\t}\n\treturn item, nil\n}\n\n")
	}
	return []byte(b.String())
}

// keywordSoup is the redactor's worst case: n bytes of nothing but rule keywords, each
// followed by "=" so that even the generic rule's guard lets it through.
func keywordSoup(r *Redactor, n int) string {
	var b strings.Builder
	for b.Len() < n {
		for _, k := range r.keywords {
			b.WriteString(k)
			b.WriteString("=")
		}
	}
	return b.String()[:n]
}
