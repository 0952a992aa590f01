package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"

	goredis "github.com/redis/go-redis/v9"

	"github.com/airlock-mcp/airlock/state"
)

// Documents (the gateway's pins) live at <p>doc:<kind>:<name>, a string, listed in the set
// <p>docs:<kind>. CheckDocName admits no ':', so no two documents share a key.

func (s *Store) docKey(kind, name string) string { return s.key("doc:" + kind + ":" + name) }

// DocLocation implements state.Docs: the document's key.
func (s *Store) DocLocation(kind, name string) string {
	return "redis " + s.where + " key " + s.docKey(kind, name)
}

// UpdateDoc implements state.Docs as an optimistic transaction on the document's key: a change
// another replica makes in between aborts this one, which runs fn again on the new bytes.
func (s *Store) UpdateDoc(ctx context.Context, kind, name string, fn func([]byte) ([]byte, bool, error)) error {
	if err := errors.Join(state.CheckDocName(kind), state.CheckDocName(name)); err != nil {
		return err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	key := s.docKey(kind, name)
	var fnErr error
	// Retried until the operation's timeout rather than a fixed number of times: every retry
	// means another writer's change went in, so the document is making progress.
	for ctx.Err() == nil {
		fnErr = nil
		err := s.rdb.Watch(ctx, func(tx *goredis.Tx) error {
			old, err := getDoc(ctx, tx, key)
			if err != nil {
				return err
			}
			next, write, err := fn(old)
			if err != nil {
				fnErr = err
				return nil
			}
			if !write || (next != nil && old != nil && string(next) == string(old)) {
				return nil
			}
			_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
				if next == nil {
					p.Del(ctx, key)
					p.SRem(ctx, s.key("docs:"+kind), name)
				} else {
					p.Set(ctx, key, next, 0)
					p.SAdd(ctx, s.key("docs:"+kind), name)
				}
				return nil
			})
			return err
		}, key)
		if errors.Is(err, goredis.TxFailedErr) {
			continue
		}
		if err != nil {
			return s.fail("update "+kind+" "+name, err)
		}
		return fnErr
	}
	return fmt.Errorf("state store redis %s: %s %s keeps changing; try again", s.where, kind, name)
}

// getDoc reads a document: nil when absent, empty (not nil) when present and empty.
func getDoc(ctx context.Context, c goredis.Cmdable, key string) ([]byte, error) {
	b, err := c.Get(ctx, key).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) > state.MaxDocBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", key, state.MaxDocBytes)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// ReadDoc implements state.Docs.
func (s *Store) ReadDoc(ctx context.Context, kind, name string) ([]byte, error) {
	if err := errors.Join(state.CheckDocName(kind), state.CheckDocName(name)); err != nil {
		return nil, err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	b, err := getDoc(ctx, s.rdb, s.docKey(kind, name))
	if err != nil {
		return nil, s.fail("read "+kind+" "+name, err)
	}
	return b, nil
}

// ListDocs implements state.Docs.
func (s *Store) ListDocs(ctx context.Context, kind string) ([]string, error) {
	if err := state.CheckDocName(kind); err != nil {
		return nil, err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	names, err := s.rdb.SMembers(ctx, s.key("docs:"+kind)).Result()
	if err != nil {
		return nil, s.fail("list "+kind, err)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return nil, nil
	}
	return names, nil
}
