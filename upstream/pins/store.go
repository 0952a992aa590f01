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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/internal/flock"
	"golang.org/x/sys/unix"
)

// MaxDefinitionBytes bounds one tool's canonical definition; a larger one is Invalid. It
// bounds the pin file, which keeps every definition, and the model's context.
const MaxDefinitionBytes = 1 << 20

// maxFileBytes bounds a pin file read back.
const maxFileBytes = 256 << 20

// fileVersion is the pin file format written by this package.
const fileVersion = 1

// validUpstream reports whether an upstream may be called name: its name is a file name in
// the pins directory, so it must not hold a path separator or start with a dot.
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

// Store keeps the pins of every upstream in a directory, one file per upstream
// (<dir>/<upstream>.json). Several goroutines and several Airlock processes may use one
// directory at once: every change happens under an exclusive flock on <upstream>.lock and
// replaces the file atomically (write to a temporary file, fsync, rename, fsync the
// directory), so a reader or a crash never sees half a file.
type Store struct {
	dir string
	now func() time.Time
}

// Open returns the store in <stateDir>/pins, creating the directory (mode 0700).
func Open(stateDir string) (*Store, error) {
	if stateDir == "" {
		return nil, errors.New("pins: empty state directory (set AIRLOCK_STATE_DIR)")
	}
	dir := filepath.Join(stateDir, "pins")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pins: %w", err)
	}
	return &Store{dir: dir, now: time.Now}, nil
}

// Dir is the directory holding the pin files.
func (s *Store) Dir() string { return s.dir }

// Path is the pin file of an upstream.
func (s *Store) Path(upstream string) string {
	return filepath.Join(s.dir, upstream+".json")
}

// CorruptError is a pin file that cannot be used: not JSON, an unknown format, a record
// whose hash does not match its definition. Check fails closed on it.
type CorruptError struct {
	Upstream string
	Path     string
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
func (s *Store) Check(upstream string, mode Mode, defs []Definition) (Verdicts, error) {
	return s.check(upstream, mode, defs, false)
}

// CheckListed is Check for a listing that may leave tools out (an upstream session whose
// client cannot answer questions is not shown the tools that ask): it decides and records
// what is listed, and marks nothing removed.
func (s *Store) CheckListed(upstream string, mode Mode, defs []Definition) (Verdicts, error) {
	return s.check(upstream, mode, defs, true)
}

func (s *Store) check(upstream string, mode Mode, defs []Definition, partial bool) (Verdicts, error) {
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
	err := s.update(upstream, false, func(f *file) (bool, error) {
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
func (s *Store) update(upstream string, overwriteCorrupt bool, fn func(f *file) (bool, error)) error {
	unlock, err := s.lock(upstream)
	if err != nil {
		return err
	}
	defer unlock()
	f, raw, err := s.load(upstream)
	if overwriteCorrupt && IsCorrupt(err) {
		f, raw, err = &file{}, nil, nil
	}
	if err != nil {
		return err
	}
	write, err := fn(f)
	if err != nil || !write {
		return err
	}
	if f.Tools == nil {
		return s.remove(upstream)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("pins of upstream %q: %w", upstream, err)
	}
	b = append(b, '\n')
	if string(b) == string(raw) {
		return nil
	}
	return s.write(upstream, b)
}

// lock takes the exclusive flock on <upstream>.lock. The lock is a separate file because the
// pin file is replaced by rename: a lock on it would lock a file that is no longer the one at
// the path. flock locks belong to an open file, so goroutines of one process exclude each
// other as processes do.
func (s *Store) lock(upstream string) (func(), error) {
	p := filepath.Join(s.dir, upstream+".lock")
	lf, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pins of upstream %q: %w", upstream, err)
	}
	if err := flock.Apply(lf, unix.LOCK_EX); err != nil {
		lf.Close()
		return nil, fmt.Errorf("pins of upstream %q: locking %s: %w", upstream, p, err)
	}
	return func() {
		flock.Apply(lf, unix.LOCK_UN)
		lf.Close()
	}, nil
}

// load reads and verifies the pin file; a missing file is an empty *file (Tools nil).
func (s *Store) load(upstream string) (*file, []byte, error) {
	p := s.Path(upstream)
	fh, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return &file{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("pins of upstream %q: %w", upstream, err)
	}
	defer fh.Close()
	raw, err := io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("pins of upstream %q: reading %s: %w", upstream, p, err)
	}
	corrupt := func(format string, a ...any) (*file, []byte, error) {
		return nil, nil, &CorruptError{Upstream: upstream, Path: p, Err: fmt.Errorf(format, a...)}
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
	return &f, raw, nil
}

// write replaces the pin file atomically and durably.
func (s *Store) write(upstream string, b []byte) error {
	p := s.Path(upstream)
	tmp, err := os.CreateTemp(s.dir, "."+upstream+".json.tmp-*")
	if err != nil {
		return fmt.Errorf("pins of upstream %q: %w", upstream, err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("pins of upstream %q: writing %s: %w", upstream, p, err)
	}
	if _, err := tmp.Write(b); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("pins of upstream %q: writing %s: %w", upstream, p, err)
	}
	return s.syncDir(upstream)
}

func (s *Store) remove(upstream string) error {
	if err := os.Remove(s.Path(upstream)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pins of upstream %q: %w", upstream, err)
	}
	return s.syncDir(upstream)
}

func (s *Store) syncDir(upstream string) error {
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("pins of upstream %q: %w", upstream, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("pins of upstream %q: fsync %s: %w", upstream, s.dir, err)
	}
	return nil
}
