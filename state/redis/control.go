package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/airlock-mcp/airlock/state"
)

// watchTries bounds AddGrant's and RevokeGrant's optimistic transactions: each retry means
// another client changed a grant in between, which an operator's commands rarely race.
const watchTries = 16

// bumpVersion queues the version's increment into a change's MULTI/EXEC. A database that has
// no version yet (new, or one that lost its data to a restart without persistence or a
// FLUSHDB) starts it at a random point: a replica that cached version N of the lost data must
// not take the new data's version N for the same state and keep serving revoked grants.
func (s *Store) bumpVersion(ctx context.Context, p goredis.Pipeliner) {
	p.SetNX(ctx, s.key("version"), rand.Int64N(1<<62), 0)
	p.Incr(ctx, s.key("version"))
}

// killField is a kill switch's field in the kills hash. Target.Check admits only the four
// scopes, none with ':', so the first ':' ends the scope and no two targets share a field.
func killField(t state.Target) string { return string(t.Scope) + ":" + t.Name }

// watch runs fn in an optimistic transaction on the grants hash, retrying while other clients
// change it in between.
func (s *Store) watch(ctx context.Context, what string, fn func(*goredis.Tx) error) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	for range watchTries {
		err := s.rdb.Watch(ctx, fn, s.key("grants"))
		if errors.Is(err, goredis.TxFailedErr) {
			continue
		}
		if err == nil || errors.Is(err, state.ErrGrantExists) || errors.Is(err, state.ErrNoGrant) || errors.Is(err, errDamaged) {
			return err
		}
		return s.fail(what, err)
	}
	return fmt.Errorf("state store redis %s: %s: grants keep changing; try again", s.where, what)
}

var errDamaged = errors.New("damaged")

// grant reads one grant inside a transaction; ok is false if there is none.
func (s *Store) grant(ctx context.Context, tx *goredis.Tx, name string) (g state.Grant, ok bool, err error) {
	raw, err := tx.HGet(ctx, s.key("grants"), name).Result()
	if errors.Is(err, goredis.Nil) {
		return g, false, nil
	}
	if err != nil {
		return g, false, err
	}
	if err := json.Unmarshal([]byte(raw), &g); err != nil {
		return g, false, s.damaged("grants", name, err)
	}
	return g, true, nil
}

// damaged is the error for an entry that does not decode. It is never read as "no grant" or
// "no kill switch": that would revive a revoked grant or lift a kill switch.
func (s *Store) damaged(hash, field string, err error) error {
	return fmt.Errorf("state store redis %s: %s entry %q is %w (%v); repair it or remove it with HDEL %s %q",
		s.where, hash, field, errDamaged, err, s.key(hash), field)
}

// AddGrant implements state.Store. The "active grant of that name" check and the write are one
// optimistic transaction: two replicas adding the same name at once cannot both succeed.
func (s *Store) AddGrant(ctx context.Context, g state.Grant) error {
	if err := state.CheckGrantName(g.Name); err != nil {
		return err
	}
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return s.watch(ctx, "add grant "+g.Name, func(tx *goredis.Tx) error {
		old, ok, err := s.grant(ctx, tx, g.Name)
		if err != nil {
			return err
		}
		if ok && old.Active(time.Now()) {
			return fmt.Errorf("%w: %s is active; revoke it first or choose another name", state.ErrGrantExists, g.Name)
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.HSet(ctx, s.key("grants"), g.Name, b)
			s.bumpVersion(ctx, p)
			return nil
		})
		return err
	})
}

// RevokeGrant implements state.Store. A grant revoked already keeps its first revocation time.
func (s *Store) RevokeGrant(ctx context.Context, name string, at time.Time) (state.Grant, error) {
	var out state.Grant
	err := s.watch(ctx, "revoke grant "+name, func(tx *goredis.Tx) error {
		g, ok, err := s.grant(ctx, tx, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %s (airlock grant list shows the grants)", state.ErrNoGrant, name)
		}
		out = g
		if !g.Revoked.IsZero() {
			return nil
		}
		g.Revoked = at.UTC()
		b, err := json.Marshal(g)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.HSet(ctx, s.key("grants"), name, b)
			s.bumpVersion(ctx, p)
			return nil
		})
		if err == nil {
			out = g
		}
		return err
	})
	return out, err
}

// SetKill implements state.Store.
func (s *Store) SetKill(ctx context.Context, k state.Kill) error {
	if err := k.Check(); err != nil {
		return err
	}
	b, err := json.Marshal(k)
	if err != nil {
		return err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, err = s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.HSet(ctx, s.key("kills"), killField(k.Target), b)
		s.bumpVersion(ctx, p)
		return nil
	})
	if err != nil {
		return s.fail("set kill switch "+k.Target.String(), err)
	}
	return nil
}

// ClearKill implements state.Store.
func (s *Store) ClearKill(ctx context.Context, t state.Target) (bool, error) {
	if err := t.Check(); err != nil {
		return false, err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	var del *goredis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		del = p.HDel(ctx, s.key("kills"), killField(t))
		s.bumpVersion(ctx, p)
		return nil
	})
	if err != nil {
		return false, s.fail("clear kill switch "+t.String(), err)
	}
	return del.Val() == 1, nil
}

// Control implements state.Store: grants (by name), kill switches (by scope, then name) and the
// version, read in one MULTI/EXEC so the version is exactly that of the contents.
func (s *Store) Control(ctx context.Context) (state.Control, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	var grants, kills *goredis.MapStringStringCmd
	var version *goredis.StringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		grants = p.HGetAll(ctx, s.key("grants"))
		kills = p.HGetAll(ctx, s.key("kills"))
		version = p.Get(ctx, s.key("version"))
		return nil
	})
	if err == nil || errors.Is(err, goredis.Nil) { // Nil: no version yet
		err = cmp.Or(grants.Err(), kills.Err())
	}
	if err != nil {
		return state.Control{}, s.fail("read grants and kill switches", err)
	}
	c := state.Control{Version: "0"}
	if v, err := version.Result(); err == nil {
		c.Version = v
	}
	for name, raw := range grants.Val() {
		var g state.Grant
		if err := json.Unmarshal([]byte(raw), &g); err != nil {
			return state.Control{}, s.damaged("grants", name, err)
		}
		c.Grants = append(c.Grants, g)
	}
	for field, raw := range kills.Val() {
		var k state.Kill
		if err := json.Unmarshal([]byte(raw), &k); err != nil {
			return state.Control{}, s.damaged("kills", field, err)
		}
		c.Kills = append(c.Kills, k)
	}
	slices.SortFunc(c.Grants, func(a, b state.Grant) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Kills, func(a, b state.Kill) int {
		return cmp.Or(cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.Name, b.Name))
	})
	return c, nil
}

// Version implements state.Store: one GET, "0" before the first change.
func (s *Store) Version(ctx context.Context) (string, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	v, err := s.rdb.Get(ctx, s.key("version")).Result()
	if errors.Is(err, goredis.Nil) {
		return "0", nil
	}
	if err != nil {
		return "", s.fail("read version", err)
	}
	return v, nil
}
