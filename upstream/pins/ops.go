package pins

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Status is one tool's state in the pin file, for `airlock pins list`.
type Status struct {
	Upstream string `json:"upstream"`
	Tool     string `json:"tool"`
	// State is Pinned (matches its pin), Changed (a different definition is pending), New
	// (pending, never pinned) or Removed (pinned, not listed at the last check).
	State      Decision  `json:"state"`
	PinnedHash string    `json:"pinned_hash,omitempty"`
	PinnedAt   time.Time `json:"pinned_at,omitzero"`
	PinnedBy   Decision  `json:"pinned_by,omitempty"`
	SeenHash   string    `json:"seen_hash,omitempty"`
	SeenAt     time.Time `json:"seen_at,omitzero"`
}

// Upstreams lists the upstreams that have pins, sorted.
func (s *Store) Upstreams(ctx context.Context) ([]string, error) {
	names, err := s.docs.ListDocs(ctx, docKind)
	if err != nil {
		return nil, fmt.Errorf("pins: %w", err)
	}
	var out []string
	for _, name := range names {
		if validUpstream(name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// List returns the state of every tool of an upstream, sorted by name.
func (s *Store) List(ctx context.Context, upstream string) ([]Status, error) {
	f, err := s.read(ctx, upstream)
	if err != nil {
		return nil, err
	}
	var out []Status
	for _, name := range slices.Sorted(maps.Keys(f.Tools)) {
		e := f.Tools[name]
		st := Status{Upstream: upstream, Tool: name, State: Pinned}
		if e.Pinned != nil {
			st.PinnedHash, st.PinnedAt, st.PinnedBy = e.Pinned.Hash, e.Pinned.At, e.Pinned.By
		}
		if e.Seen != nil {
			st.SeenHash, st.SeenAt = e.Seen.Hash, e.Seen.At
		}
		switch {
		case e.Absent:
			st.State = Removed
		case e.Pinned == nil:
			st.State = New
		case e.Seen != nil:
			st.State = Changed
		}
		out = append(out, st)
	}
	return out, nil
}

// Diff shows what an operator approves: a unified diff of the pinned definition (empty for a
// new tool) against the one last seen, both in Pretty form, headed by their hashes. Pass the
// seen hash to Approve so that what is pinned is what was reviewed.
func (s *Store) Diff(ctx context.Context, upstream, tool string) (string, error) {
	f, err := s.read(ctx, upstream)
	if err != nil {
		return "", err
	}
	e := f.Tools[tool]
	if e == nil {
		return "", fmt.Errorf("pins of upstream %q: tool %q: %w", upstream, tool, ErrUnknownTool)
	}
	if e.Seen == nil {
		return "", fmt.Errorf("pins of upstream %q: tool %q: %w", upstream, tool, ErrNothingPending)
	}
	oldText, oldLabel := "", "(not pinned)"
	if e.Pinned != nil {
		if oldText, err = Pretty(e.Pinned.Definition); err != nil {
			return "", err
		}
		oldLabel = fmt.Sprintf("%s pinned %s", e.Pinned.Hash, e.Pinned.At.Format(time.RFC3339))
	}
	newText, err := Pretty(e.Seen.Definition)
	if err != nil {
		return "", err
	}
	newLabel := fmt.Sprintf("%s seen %s", e.Seen.Hash, e.Seen.At.Format(time.RFC3339))
	return unifiedDiff(fmt.Sprintf("%s/%s %s", upstream, tool, oldLabel),
		fmt.Sprintf("%s/%s %s", upstream, tool, newLabel), oldText, newText), nil
}

// Approve pins the definition of tool last seen. If hash is not empty it must be that
// definition's hash: the upstream may have changed the tool again since the operator ran
// Diff, and what is approved must be what was reviewed. The verdict is for the audit trail.
func (s *Store) Approve(ctx context.Context, upstream, tool, hash string) (Verdict, error) {
	var out Verdict
	err := s.modify(ctx, upstream, func(f *file) error {
		e := f.Tools[tool]
		switch {
		case e == nil:
			return fmt.Errorf("pins of upstream %q: tool %q: %w", upstream, tool, ErrUnknownTool)
		case e.Seen == nil:
			return fmt.Errorf("pins of upstream %q: tool %q: %w", upstream, tool, ErrNothingPending)
		case hash != "" && hash != e.Seen.Hash:
			return fmt.Errorf("pins of upstream %q: tool %q is now %s, not the %s you approved: it changed again; "+
				"review it with `airlock pins diff %s %s`", upstream, tool, e.Seen.Hash, hash, upstream, tool)
		}
		out = approve(upstream, tool, e, s.now().UTC())
		return nil
	})
	return out, err
}

// ApproveAll pins the last seen definition of every tool of the upstream that has one.
func (s *Store) ApproveAll(ctx context.Context, upstream string) ([]Verdict, error) {
	var out []Verdict
	err := s.modify(ctx, upstream, func(f *file) error {
		now := s.now().UTC()
		for _, name := range slices.Sorted(maps.Keys(f.Tools)) {
			if e := f.Tools[name]; e.Seen != nil {
				out = append(out, approve(upstream, name, e, now))
			}
		}
		return nil
	})
	return out, err
}

func approve(upstream, tool string, e *entry, now time.Time) Verdict {
	v := Verdict{Upstream: upstream, Tool: tool, Decision: Approved, Allowed: true, NewHash: e.Seen.Hash}
	if e.Pinned != nil {
		v.OldHash = e.Pinned.Hash
	}
	e.Pinned, e.Seen = e.Seen, nil
	e.Pinned.At, e.Pinned.By = now, Approved
	return v
}

// Reset forgets every pin of the upstream: at its next check its tools are pinned as if it
// were new (trust on first use). It also clears a corrupt pin file. The verdicts (one per
// tool that was pinned, when the file could be read) are for the audit trail.
func (s *Store) Reset(ctx context.Context, upstream string) ([]Verdict, error) {
	if err := checkUpstream(upstream); err != nil {
		return nil, err
	}
	var out []Verdict
	err := s.update(ctx, upstream, true, func(f *file) (bool, error) {
		for _, name := range slices.Sorted(maps.Keys(f.Tools)) {
			v := Verdict{Upstream: upstream, Tool: name, Decision: Reset}
			if e := f.Tools[name]; e.Pinned != nil {
				v.OldHash = e.Pinned.Hash
			}
			out = append(out, v)
		}
		f.Tools = nil
		return true, nil
	})
	return out, err
}

// modify runs fn on an existing pin file under its lock and writes it back.
func (s *Store) modify(ctx context.Context, upstream string, fn func(f *file) error) error {
	if err := checkUpstream(upstream); err != nil {
		return err
	}
	return s.update(ctx, upstream, false, func(f *file) (bool, error) {
		if f.Tools == nil {
			return false, fmt.Errorf("pins of upstream %q: %w", upstream, ErrUnknownUpstream)
		}
		if err := fn(f); err != nil {
			return false, err
		}
		return true, nil
	})
}

// read loads an existing pin file without the lock (see load).
func (s *Store) read(ctx context.Context, upstream string) (*file, error) {
	if err := checkUpstream(upstream); err != nil {
		return nil, err
	}
	f, err := s.load(ctx, upstream)
	if err != nil {
		return nil, err
	}
	if f.Tools == nil {
		return nil, fmt.Errorf("pins of upstream %q: %w", upstream, ErrUnknownUpstream)
	}
	return f, nil
}

// IsCorrupt reports whether err is (or wraps) a *CorruptError.
func IsCorrupt(err error) bool {
	var c *CorruptError
	return errors.As(err, &c)
}
