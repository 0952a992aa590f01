package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/airlock-mcp/airlock/policies"
)

// reserveLua is Reserve, run by Redis as one atomic step: no other client's command runs
// between the read of the bucket and its write, so replicas racing for the last unit cannot
// both get it. It mirrors state.File and policies.MemoryCounters exactly:
//
//   - a bucket whose window is older than the caller's starts over from 0 in the new window;
//   - a caller whose window is older than the bucket's (it computed the window just before a
//     rollover) counts against the newer window: the conservative choice;
//   - all or nothing: n units are granted only if used+n <= max, else nothing changes.
//
// Times are 20-digit zero-padded Unix nanoseconds, so comparing them as strings orders them
// exactly; Lua's numbers are doubles and would round nanoseconds. Counts are bounded by 2^53
// (Reserve checks), where doubles are exact.
//
// KEYS[1] bucket; ARGV window start, window end, caller's now, n, max, margin (ms).
const reserveLua = `
local b = redis.call('HMGET', KEYS[1], 'start', 'end', 'used')
local start, stop, used = b[1], b[2], tonumber(b[3])
if not start or ARGV[1] > start then
  start, stop, used = ARGV[1], ARGV[2], 0
end
-- A bucket without a readable count is damaged: used is nil and the comparison raises an
-- error, so the caller is refused (fail closed) rather than handed a fresh budget.
local n, max = tonumber(ARGV[4]), tonumber(ARGV[5])
if n > max or used > max - n then
  return 0
end
redis.call('HSET', KEYS[1], 'start', start, 'end', stop, 'used', used + n)
-- The bucket expires a margin after its window ends, measured from the caller's clock (which
-- chose the window), not Redis's: a Redis clock running ahead would otherwise delete buckets
-- early and give their units out again. Never less than a second, so a reservation into a
-- window that just ended is still recorded while the caller runs.
local ttl = math.floor((tonumber(stop) - tonumber(ARGV[3])) / 1000000) + tonumber(ARGV[6])
if ttl < 1000 then ttl = 1000 end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`

// releaseLua is Release: it gives units back only to the window they came from (a release
// into a window that has rolled over would otherwise enlarge the new window's budget), and
// never below 0. HSET keeps the bucket's expiry.
//
// KEYS[1] bucket; ARGV window start, n.
const releaseLua = `
local b = redis.call('HMGET', KEYS[1], 'start', 'used')
if b[1] ~= ARGV[1] then
  return 0
end
local used = tonumber(b[2]) - tonumber(ARGV[2])
if used < 0 then used = 0 end
redis.call('HSET', KEYS[1], 'used', used)
return 1
`

// maxExact is the largest count a Lua number (a double) holds exactly.
const maxExact = 1 << 53

// bucketKey names key's bucket. Each part is Go-quoted: a quoted string ends at its first
// unescaped '"' and Quote is one-to-one, so the parts can be read back from the key and no
// two buckets share one, whatever ':' or '"' a subject holds (subject `a":"b` is not subject
// `a` of counter `b`). Without this, one session ID could spend another's budget.
func (s *Store) bucketKey(k policies.CounterKey) string {
	return s.prefix + "c:" + strconv.Quote(k.Counter) + ":" + strconv.Quote(k.Scope) + ":" + strconv.Quote(k.Subject)
}

// stamp is a time as reserveLua compares it. Times before 1970 do not come from a working
// clock; refusing them keeps the string order the time order.
func stamp(t time.Time) (string, error) {
	ns := t.UnixNano()
	if ns < 0 || t.Year() > 2261 {
		return "", fmt.Errorf("counter window %s is out of range; check the clock", t.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%020d", ns), nil
}

// Reserve implements policies.Counters.
func (s *Store) Reserve(k policies.CounterKey, n, max int64) (bool, error) {
	if n < 0 {
		return false, fmt.Errorf("counter %s: negative reservation %d", k.Counter, n)
	}
	if n > maxExact || max > maxExact || max < -maxExact {
		return false, fmt.Errorf("counter %s: %d units of max %d exceed the redis store's range (2^53)", k.Counter, n, max)
	}
	start, err := stamp(k.Window)
	if err != nil {
		return false, fmt.Errorf("counter %s: %w", k.Counter, err)
	}
	end, err := stamp(k.End)
	if err != nil {
		return false, fmt.Errorf("counter %s: %w", k.Counter, err)
	}
	now, err := stamp(time.Now())
	if err != nil {
		return false, fmt.Errorf("counter %s: %w", k.Counter, err)
	}
	// policies.Counters has no context: the store's timeout alone bounds the call.
	ctx, cancel := s.op(context.Background())
	defer cancel()
	got, err := s.reserve.Run(ctx, s.rdb, []string{s.bucketKey(k)},
		start, end, now, n, max, s.margin.Milliseconds()).Int()
	if err != nil {
		return false, s.fail("reserve counter "+k.Counter, err)
	}
	return got == 1, nil
}

// Release implements policies.Counters.
func (s *Store) Release(k policies.CounterKey, n int64) error {
	if n > maxExact || n < -maxExact {
		return fmt.Errorf("counter %s: releasing %d units exceeds the redis store's range (2^53)", k.Counter, n)
	}
	start, err := stamp(k.Window)
	if err != nil {
		return fmt.Errorf("counter %s: %w", k.Counter, err)
	}
	ctx, cancel := s.op(context.Background())
	defer cancel()
	if err := s.release.Run(ctx, s.rdb, []string{s.bucketKey(k)}, start, n).Err(); err != nil {
		return s.fail("release counter "+k.Counter, err)
	}
	return nil
}
