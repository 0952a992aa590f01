package pipeline

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// DefaultMaxBinaryBytes caps the binary data (images, audio, embedded blobs) of one upstream
// result, all blocks together.
const DefaultMaxBinaryBytes = 4 << 20

// MaxContentBlocks caps the content blocks of one upstream result; the rest are dropped.
const MaxContentBlocks = 1000

// content is stage 6 for an upstream's result: every text in it (text blocks, embedded text
// resources and text-typed blobs, resource links' names, titles, descriptions and URIs, every
// string of structuredContent) is prepared, scanned and redacted by one callCleaner, as a
// sandboxed tool's streams are: one budget, and a secret recognised in one place is removed
// everywhere. secrets (the credentials Airlock sends the upstream) are replaced first, by
// value: an upstream that echoes its Authorization header must not hand it to the agent.
// Text is cut to the output cap (all blocks together); binary blocks beyond
// DefaultMaxBinaryBytes are replaced by a note. Upstream _meta is dropped: it is data no
// policy looked at, and clients may show it. It returns ok false when the redaction budget
// ran out: nothing of the result may then be returned.
func (s sanitizeStage) content(t *trace, res *mcp.CallToolResult, secrets []string) (UpstreamOutput, bool) {
	defer t.stage(StageSanitize)
	c := s.newCall()
	t.clean = c
	credentials := 0
	withheldStructured := false
	prep := func(v string) string {
		p := s.prepare([]byte(v))
		for _, sec := range secrets {
			if len(sec) >= 4 && strings.Contains(p, sec) {
				credentials += strings.Count(p, sec)
				p = strings.ReplaceAll(p, sec, "[REDACTED:upstream-credential]")
			}
		}
		c.charge(len(p))
		return p
	}

	// Copy every block, with its strings prepared; texts collects pointers to them.
	type text struct {
		p     *string
		block bool // a text block's text, counted as the text the model reads
	}
	var texts []text
	binary := 0
	var out []mcp.Content
	note := func(format string, a ...any) {
		tc := &mcp.TextContent{Text: fmt.Sprintf("[airlock: "+format+"]", a...)}
		out = append(out, tc)
	}
	blocks := res.Content
	if len(blocks) > MaxContentBlocks {
		blocks = blocks[:MaxContentBlocks]
		t.rec.Truncated = true
	}
	for _, b := range blocks {
		switch b := b.(type) {
		case *mcp.TextContent:
			nb := &mcp.TextContent{Text: prep(b.Text), Annotations: b.Annotations}
			texts = append(texts, text{&nb.Text, true})
			out = append(out, nb)
		case *mcp.ImageContent:
			if binary+len(b.Data) > DefaultMaxBinaryBytes {
				note("an image of %d bytes was withheld: over the %d-byte cap on binary data per result", len(b.Data), DefaultMaxBinaryBytes)
				t.rec.Truncated = true
				continue
			}
			binary += len(b.Data)
			out = append(out, &mcp.ImageContent{Data: b.Data, MIMEType: s.prepare([]byte(b.MIMEType)), Annotations: b.Annotations})
		case *mcp.AudioContent:
			if binary+len(b.Data) > DefaultMaxBinaryBytes {
				note("audio of %d bytes was withheld: over the %d-byte cap on binary data per result", len(b.Data), DefaultMaxBinaryBytes)
				t.rec.Truncated = true
				continue
			}
			binary += len(b.Data)
			out = append(out, &mcp.AudioContent{Data: b.Data, MIMEType: s.prepare([]byte(b.MIMEType)), Annotations: b.Annotations})
		case *mcp.ResourceLink:
			nb := &mcp.ResourceLink{URI: prep(b.URI), Name: prep(b.Name), Title: prep(b.Title), Description: prep(b.Description),
				MIMEType: s.prepare([]byte(b.MIMEType)), Size: b.Size, Annotations: b.Annotations}
			texts = append(texts, text{&nb.URI, false}, text{&nb.Name, false}, text{&nb.Title, false}, text{&nb.Description, false})
			out = append(out, nb)
		case *mcp.EmbeddedResource:
			if b.Resource == nil {
				continue
			}
			r := &mcp.ResourceContents{URI: prep(b.Resource.URI), MIMEType: s.prepare([]byte(b.Resource.MIMEType)), Text: prep(b.Resource.Text)}
			texts = append(texts, text{&r.URI, false}, text{&r.Text, true})
			if len(b.Resource.Blob) > 0 {
				if textual(b.Resource.MIMEType) && utf8.Valid(b.Resource.Blob) {
					// Text sent as a blob is text: base64 must not carry a secret past stage 6.
					r.Text += prep(string(b.Resource.Blob))
				} else if binary+len(b.Resource.Blob) > DefaultMaxBinaryBytes {
					note("an embedded resource of %d bytes was withheld: over the %d-byte cap on binary data per result", len(b.Resource.Blob), DefaultMaxBinaryBytes)
					t.rec.Truncated = true
					continue
				} else {
					binary += len(b.Resource.Blob)
					r.Blob = b.Resource.Blob
				}
			}
			out = append(out, &mcp.EmbeddedResource{Resource: r, Annotations: b.Annotations})
		default:
			note("a content block of an unsupported type was dropped")
		}
	}
	if len(res.Content) > MaxContentBlocks {
		note("%d more content blocks were dropped: over the cap of %d per result", len(res.Content)-MaxContentBlocks, MaxContentBlocks)
	}
	var structured any
	if res.StructuredContent != nil {
		// Structured content is not cut (a cut object would not validate): over the output
		// cap it is withheld, which makes the result an error (see UpstreamOutput).
		if b, err := json.Marshal(res.StructuredContent); err != nil || len(b) > s.maxBytes {
			note("structuredContent of %d bytes was withheld: over the %d-byte output cap", len(b), s.maxBytes)
			t.rec.Truncated = true
			withheldStructured = true
		} else {
			structured = mapStrings(res.StructuredContent, prep)
		}
	}

	for _, x := range texts {
		c.scan(*x.p)
	}
	mapStrings(structured, func(v string) string { c.scan(v); return v })
	for _, x := range texts {
		into := c.data
		if x.block {
			into = c.text
		}
		*x.p = c.apply(*x.p, into)
	}
	structured = mapStrings(structured, func(v string) string { return c.apply(v, c.data) })
	if c.err != nil {
		return UpstreamOutput{}, false
	}
	// The text cap applies to all text blocks together, as to a tool's stdout.
	room := s.maxBytes
	for _, x := range texts {
		if !x.block {
			continue
		}
		if len(*x.p) > room {
			cut := room
			for cut > 0 && !utf8.RuneStart((*x.p)[cut]) {
				cut--
			}
			*x.p = (*x.p)[:cut]
			t.rec.Truncated = true
		}
		room -= len(*x.p)
	}
	for k, v := range c.counts() {
		t.rec.Redactions[k] += v
	}
	if credentials > 0 {
		t.rec.Redactions["upstream-credential"] += credentials
	}
	if out == nil {
		out = []mcp.Content{}
	}
	return UpstreamOutput{Content: out, Structured: structured, StructuredWithheld: withheldStructured}, true
}

// textual reports a MIME type whose content is text.
func textual(mime string) bool {
	m := strings.ToLower(strings.TrimSpace(mime))
	if i := strings.IndexByte(m, ';'); i >= 0 {
		m = strings.TrimSpace(m[:i])
	}
	return strings.HasPrefix(m, "text/") || m == "application/json" || strings.HasSuffix(m, "+json") ||
		m == "application/xml" || strings.HasSuffix(m, "+xml") || m == "application/yaml" || m == "application/javascript"
}

// contentText is the text of a result's text blocks, for callers that show one string (the
// CLI, logs).
func contentText(blocks []mcp.Content) string {
	var parts []string
	for _, b := range blocks {
		switch b := b.(type) {
		case *mcp.TextContent:
			parts = append(parts, b.Text)
		case *mcp.ImageContent:
			parts = append(parts, fmt.Sprintf("[image %s, %d bytes]", b.MIMEType, len(b.Data)))
		case *mcp.AudioContent:
			parts = append(parts, fmt.Sprintf("[audio %s, %d bytes]", b.MIMEType, len(b.Data)))
		case *mcp.ResourceLink:
			parts = append(parts, fmt.Sprintf("[resource link %s]", b.URI))
		case *mcp.EmbeddedResource:
			if b.Resource.Text != "" {
				parts = append(parts, b.Resource.Text)
			} else {
				parts = append(parts, fmt.Sprintf("[resource %s, %d bytes]", b.Resource.URI, len(b.Resource.Blob)))
			}
		}
	}
	return strings.Join(parts, "\n")
}

// contentBytes is the size of a result's content, for the withheld message.
func contentBytes(res *mcp.CallToolResult) int {
	n := 0
	for _, b := range res.Content {
		switch b := b.(type) {
		case *mcp.TextContent:
			n += len(b.Text)
		case *mcp.EmbeddedResource:
			if b.Resource != nil {
				n += len(b.Resource.Text) + len(b.Resource.Blob)
			}
		}
	}
	return n
}
