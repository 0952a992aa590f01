// Package pins defends Airlock's gateway against "rug pulls": an upstream MCP server whose
// tools are reviewed once and then quietly change what they claim to do, accept or return.
// Each tool's definition is canonicalised and hashed; the first time an upstream is seen its
// tools are pinned (trust on first use); afterwards a tool whose definition differs, or a
// tool that was not there, is withheld from the model until an operator reviews it
// (`airlock pins diff`) and approves it (`airlock pins approve`). The package also cleans the
// descriptions the model is shown (CleanDescription).
package pins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/state"
)

// MaxDefinitionBytes bounds one tool's canonical definition; a larger one is Invalid. It
// bounds the pin file, which keeps every definition, and the model's context.
const MaxDefinitionBytes = 1 << 20

// maxFileBytes bounds a pin file read back.
const maxFileBytes = 256 << 20

// docKind is the kind of the pin files among the state store's documents.
const docKind = "pins"

// fileVersion is the pin file format written by this package.
const fileVersion = 1

// validUpstream reports whether an upstream may be called name: its name names its pin file
// in the state store (a file name in the file store), so it must not hold a path separator or
// start with a dot.
func validUpstream(name string) bool {
	return len(name) <= 64 && name != "" && name[0] != '.' && name[0] != '_' && name[0] != '-' &&
		onlyChars(name, "_.-")
}

// validTool reports whether a pinned tool may be called name: MCP's recommended characters
// plus '/' and ':', which some servers use. A name is shown to operators and the model and
// pasted into `airlock pins approve UPSTREAM TOOL`; it must not hide characters, escape
// sequences or shell syntax, or shadow another tool by looking like it.
func validTool(name string) bool {
	return len(name) <= 128 && name != "" && onlyChars(name, "_.:/-")
}

// onlyChars reports whether s holds only ASCII letters, digits and the extra characters.
func onlyChars(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// Store keeps the pins of every upstream in the state store, one document (a pin file) per
// upstream: <stateDir>/pins/<upstream>.json in the default file store, a key in Redis.
// Several goroutines and several Airlock processes may use one store at once: every change is
// made under the document's lock (state.Docs.UpdateDoc) and replaces the document whole, so a
// reader or a crash never sees half of it.
type Store struct {
	docs state.Docs
	now  func() time.Time
}

// NewStore returns the pins kept in docs.
func NewStore(docs state.Docs) *Store {
	return &Store{docs: docs, now: time.Now}
}

// Location names where the pin file of an upstream lives (a file path, a Redis key), for
// messages.
func (s *Store) Location(upstream string) string { return s.docs.DocLocation(docKind, upstream) }

// Stamp changes whenever the pin file of an upstream does (an operator approved or reset
// a tool): a digest of its bytes, "" when there is none.
func (s *Store) Stamp(ctx context.Context, upstream string) (string, error) {
	if err := checkUpstream(upstream); err != nil {
		return "", err
	}
	raw, err := s.docs.ReadDoc(ctx, docKind, upstream)
	if err != nil {
		return "", fmt.Errorf("pins of upstream %q: %w", upstream, err)
	}
	if raw == nil {
		return "", nil
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

// CorruptError is a pin file that cannot be used: not JSON, an unknown format, a record
// whose hash does not match its definition. Check fails closed on it.
type CorruptError struct {
	Upstream string
	Path     string // where the file lives (Store.Location)
	Err      error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("pins of upstream %q: %s is unreadable: %v; no tool of this upstream is listed until it is "+
		"fixed: restore the file from a backup, or run `airlock pins reset %s` to pin the upstream's tools afresh "+
		"when it next connects", e.Upstream, e.Path, e.Err, e.Upstream)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// ErrNothingPending is returned by Diff and Approve for a tool that matches its pin.
var ErrNothingPending = errors.New("the tool matches its pin: nothing to review or approve")

// ErrUnknownTool is returned for a tool the upstream's pins do not mention.
var ErrUnknownTool = errors.New("no such tool in the upstream's pins")

// ErrUnknownUpstream is returned for an upstream that has no pin file.
var ErrUnknownUpstream = errors.New("no pins for this upstream (it has not connected yet, or was reset)")

// file is the pin file of one upstream.
type file struct {
	Version  int               `json:"version"`
	Upstream string            `json:"upstream"`
	Tools    map[string]*entry `json:"tools"`
}

// entry is one tool: the definition pinned, and the one seen last if it differs (or there is
// no pin yet), so that diff and approve work from the file alone, without the upstream.
type entry struct {
	Pinned *record `json:"pinned,omitempty"`
	Seen   *record `json:"seen,omitempty"`
	// Absent: the tool was not listed at the last check.
	Absent bool `json:"absent,omitempty"`
}

type record struct {
	Hash       string     `json:"hash"`
	At         time.Time  `json:"at"`
	By         Decision   `json:"by,omitempty"` // pinned by first_use or approved
	Definition Definition `json:"definition"`
}

// checked is one definition prepared for Check.
type checked struct {
	def     Definition
	hash    string
	invalid string // why it cannot be pinned
}

// Check decides, for each tool an upstream lists now, whether it may be listed and called,
// and records what it saw (see the Decision constants). In Enforce mode changed and new tools
// are withheld; in Warn mode they are allowed and flagged; in Off mode everything is allowed
// and nothing is read or written.
//
// If the pin file cannot be read or written, Check returns the error (a *CorruptError for a
// damaged file) and verdicts that withhold every tool: an upstream whose pins cannot be
// checked must not be trusted by default.
func (s *Store) Check(ctx context.Context, upstream string, mode Mode, defs []Definition) (Verdicts, error) {
	return s.check(ctx, upstream, mode, defs, false)
}

// CheckListed is Check for a listing that may leave tools out (an upstream session whose
// client cannot answer questions is not shown the tools that ask): it decides and records
// what is listed, and marks nothing removed.
func (s *Store) CheckListed(ctx context.Context, upstream string, mode Mode, defs []Definition) (Verdicts, error) {
	return s.check(ctx, upstream, mode, defs, true)
}

func (s *Store) check(ctx context.Context, upstream string, mode Mode, defs []Definition, partial bool) (Verdicts, error) {
	vs := Verdicts{Upstream: upstream, Mode: mode}
	prep := prepare(defs)
	if mode == Off {
		for _, c := range prep {
			vs.Tools = append(vs.Tools, Verdict{Upstream: upstream, Tool: c.def.Name, Decision: Unchecked, Mode: mode,
				Allowed: true, NewHash: c.hash})
		}
		return vs, nil
	}
	if mode != Enforce && mode != Warn {
		err := fmt.Errorf("pins of upstream %q: unknown mode %q", upstream, mode)
		return withholdAll(vs, prep, err), err
	}
	if err := checkUpstream(upstream); err != nil {
		return withholdAll(vs, prep, err), err
	}
	var out Verdicts
	err := s.update(ctx, upstream, false, func(f *file) (bool, error) {
		out = decide(f, vs, prep, s.now().UTC(), partial)
		return true, nil
	})
	if err != nil {
		return withholdAll(vs, prep, err), err
	}
	return out, nil
}

// prepare hashes each definition and marks those that cannot be pinned.
func prepare(defs []Definition) []checked {
	count := map[string]int{}
	for _, d := range defs {
		count[d.Name]++
	}
	out := make([]checked, len(defs))
	for i, d := range defs {
		c := checked{def: d}
		canon, err := Canonical(d)
		switch {
		case !validTool(d.Name):
			c.invalid = "its name is not 1-128 of the characters A-Z a-z 0-9 _ . : / -"
		case count[d.Name] > 1:
			c.invalid = "the upstream lists its name more than once"
		case err != nil:
			c.invalid = err.Error()
		case len(canon) > MaxDefinitionBytes:
			c.invalid = fmt.Sprintf("its definition is %d bytes, more than %d", len(canon), MaxDefinitionBytes)
		}
		if err == nil {
			c.hash = hashBytes(canon)
		}
		out[i] = c
	}
	return out
}

// decide compares what the upstream lists with the pin file f (nil: never seen) and updates
// f. It returns the verdicts; f is written back whatever they are. partial: prep may leave
// tools out, so none is marked removed.
func decide(f *file, vs Verdicts, prep []checked, now time.Time, partial bool) Verdicts {
	first := f.Tools == nil
	if first {
		f.Version, f.Upstream, f.Tools = fileVersion, vs.Upstream, map[string]*entry{}
	}
	listed := map[string]bool{}
	for _, c := range prep {
		v := Verdict{Upstream: vs.Upstream, Tool: c.def.Name, Mode: vs.Mode, NewHash: c.hash}
		// An invalid definition is still listed: its pin is neither replaced nor removed.
		listed[c.def.Name] = true
		if c.invalid != "" {
			v.Decision = Invalid
			if e := f.Tools[c.def.Name]; e != nil && e.Pinned != nil {
				v.OldHash = e.Pinned.Hash
			}
			v.Message = message(v, c.invalid)
			vs.Tools = append(vs.Tools, v)
			continue
		}
		e := f.Tools[c.def.Name]
		if e == nil {
			e = &entry{}
			f.Tools[c.def.Name] = e
		}
		e.Absent = false
		rec := &record{Hash: c.hash, At: now, Definition: compact(c.def)}
		switch {
		case first:
			rec.By = FirstUse
			e.Pinned, v.Decision, v.Allowed = rec, FirstUse, true
		case e.Pinned != nil && e.Pinned.Hash == c.hash:
			e.Seen, v.Decision, v.Allowed = nil, Pinned, true // a change undone needs no approval
		default:
			if e.Seen == nil || e.Seen.Hash != c.hash {
				e.Seen = rec
			}
			v.Decision, v.Allowed = New, vs.Mode == Warn
			if e.Pinned != nil {
				v.Decision = Changed
			}
		}
		if e.Pinned != nil {
			v.OldHash = e.Pinned.Hash
		}
		if v.Decision == Changed || v.Decision == New {
			v.Message = message(v, "")
		}
		vs.Tools = append(vs.Tools, v)
	}
	for _, name := range slices.Sorted(maps.Keys(f.Tools)) {
		e := f.Tools[name]
		if partial || listed[name] || e.Absent {
			continue
		}
		v := Verdict{Upstream: vs.Upstream, Tool: name, Decision: Removed, Mode: vs.Mode}
		if e.Pinned != nil {
			v.OldHash = e.Pinned.Hash
		}
		vs.Removed = append(vs.Removed, v)
		// A pending definition that is no longer listed has nothing left to approve; a pin
		// is kept, so the tool can come back only as it was approved.
		if e.Pinned == nil {
			delete(f.Tools, name)
			continue
		}
		e.Seen, e.Absent = nil, true
	}
	return vs
}

// compact stores a definition's JSON without insignificant whitespace (it is valid JSON:
// Canonical parsed it).
func compact(d Definition) Definition {
	for _, raw := range []*json.RawMessage{&d.InputSchema, &d.OutputSchema, &d.Annotations} {
		v, err := parseJSON(*raw)
		if err != nil || v == nil {
			*raw = nil
			continue
		}
		var b bytes.Buffer
		writeValue(&b, v, "", false)
		*raw = b.Bytes()
	}
	return d
}

// withholdAll is the fail-closed outcome of a Check that could not consult the pins. The
// verdicts' messages (which a denied call shows the model) name the fix but not the error,
// which holds host paths: the error is for the operator's log.
func withholdAll(vs Verdicts, prep []checked, err error) Verdicts {
	detail := "Airlock's pin store failed (the reason is in Airlock's log)"
	if IsCorrupt(err) {
		detail = fmt.Sprintf("its pin file is damaged; an operator can restore it or run `airlock pins reset %s` "+
			"(the reason is in Airlock's log)", vs.Upstream)
	}
	vs.Tools = nil
	for _, c := range prep {
		v := Verdict{Upstream: vs.Upstream, Tool: c.def.Name, Decision: Unreadable, Mode: vs.Mode, NewHash: c.hash}
		v.Message = message(v, detail)
		vs.Tools = append(vs.Tools, v)
	}
	return vs
}

func checkUpstream(upstream string) error {
	if !validUpstream(upstream) {
		return fmt.Errorf("upstream name %q: want 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit", upstream)
	}
	return nil
}

// update runs fn on the upstream's pin file under its exclusive lock. f.Tools is nil if the
// file does not exist (or, with overwriteCorrupt, cannot be used). If fn returns true the
// file is written back when it changed (fn may delete it by setting f.Tools to nil).
func (s *Store) update(ctx context.Context, upstream string, overwriteCorrupt bool, fn func(f *file) (bool, error)) error {
	var fnErr error
	err := s.docs.UpdateDoc(ctx, docKind, upstream, func(raw []byte) ([]byte, bool, error) {
		b, write, err := s.change(upstream, raw, overwriteCorrupt, fn)
		fnErr = err
		return b, write, err
	})
	if fnErr != nil {
		return fnErr // already names the upstream (or is fn's own)
	}
	if err != nil {
		return fmt.Errorf("pins of upstream %q: %w", upstream, err)
	}
	return nil
}

// change is update's work on the bytes of the pin file (nil: there is none): the bytes to
// write (nil deletes the file) and whether to write them.
func (s *Store) change(upstream string, raw []byte, overwriteCorrupt bool, fn func(f *file) (bool, error)) ([]byte, bool, error) {
	f, err := s.parse(upstream, raw)
	if overwriteCorrupt && IsCorrupt(err) {
		f, raw, err = &file{}, nil, nil
	}
	if err != nil {
		return nil, false, err
	}
	write, err := fn(f)
	if err != nil || !write {
		return nil, false, err
	}
	if f.Tools == nil {
		return nil, true, nil
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, false, fmt.Errorf("pins of upstream %q: %w", upstream, err)
	}
	b = append(b, '\n')
	if string(b) == string(raw) {
		return nil, false, nil
	}
	return b, true, nil
}

// load reads and verifies the pin file without the lock: the store replaces a document
// whole, so a reader sees one version. A missing file is an empty *file (Tools nil).
func (s *Store) load(ctx context.Context, upstream string) (*file, error) {
	raw, err := s.docs.ReadDoc(ctx, docKind, upstream)
	if err != nil {
		return nil, fmt.Errorf("pins of upstream %q: %w", upstream, err)
	}
	return s.parse(upstream, raw)
}

// parse verifies the bytes of a pin file; nil (no file) is an empty *file (Tools nil). Present
// but empty is a damaged file, not a missing one: it must not let the upstream be pinned
// afresh.
func (s *Store) parse(upstream string, raw []byte) (*file, error) {
	if raw == nil {
		return &file{}, nil
	}
	corrupt := func(format string, a ...any) (*file, error) {
		return nil, &CorruptError{Upstream: upstream, Path: s.Location(upstream), Err: fmt.Errorf(format, a...)}
	}
	if len(raw) > maxFileBytes {
		return corrupt("larger than %d bytes", maxFileBytes)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return corrupt("%v", err)
	}
	if dec.More() {
		return corrupt("data after the JSON object")
	}
	switch {
	case f.Version != fileVersion:
		return corrupt("format version %d, want %d (written by another Airlock version?)", f.Version, fileVersion)
	case f.Upstream != upstream:
		return corrupt("it holds the pins of upstream %q", f.Upstream)
	case f.Tools == nil:
		return corrupt("no \"tools\" object")
	}
	for name, e := range f.Tools {
		if e == nil || (e.Pinned == nil && e.Seen == nil) {
			return corrupt("tool %q: neither pinned nor seen", name)
		}
		for _, r := range []*record{e.Pinned, e.Seen} {
			if r == nil {
				continue
			}
			// A hand-edited or damaged definition must not become trusted: its hash has to
			// be the one it was pinned with.
			h, err := Hash(r.Definition)
			switch {
			case r.Definition.Name != name:
				return corrupt("tool %q: the definition is named %q", name, r.Definition.Name)
			case err != nil:
				return corrupt("tool %q: %v", name, err)
			case h != r.Hash:
				return corrupt("tool %q: the definition's hash is %s, the file says %s (edited by hand?)", name, h, r.Hash)
			}
		}
	}
	return &f, nil
}
