package ratelimit

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/authd/authd"
	"github.com/redis/go-redis/v9"
)

// MemoryLockouts is an in-memory authd.Lockouts, for one instance.
type MemoryLockouts struct {
	clock authd.Clock
	max   int // keys remembered at most

	mu     sync.Mutex
	keys   map[string]*list.Element // of *lockout
	recent list.List                // *lockout, least recently failed first
}

// lockout is the failure count and lock of one key.
type lockout struct {
	key         string
	failures    int
	lastFailure time.Time
	forget      time.Duration
	until       time.Time
}

// live reports whether l still holds a lock or a count at now.
func (l *lockout) live(now time.Time) bool {
	return now.Before(l.until) || now.Before(l.lastFailure.Add(l.forget))
}

var _ authd.Lockouts = (*MemoryLockouts)(nil)

// NewMemoryLockouts returns empty lockouts on clock.
func NewMemoryLockouts(clock authd.Clock) *MemoryLockouts {
	return &MemoryLockouts{clock: clock, max: maxLockoutKeys, keys: map[string]*list.Element{}}
}

// LockedFor implements authd.Lockouts.
func (m *MemoryLockouts) LockedFor(_ context.Context, key string) (time.Duration, error) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.keys[key]; ok && now.Before(e.Value.(*lockout).until) {
		return e.Value.(*lockout).until.Sub(now), nil
	}
	return 0, nil
}

// Fail implements authd.Lockouts.
func (m *MemoryLockouts) Fail(_ context.Context, key string, threshold int, lock, forget time.Duration) (time.Duration, bool, error) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prune(now)
	e, ok := m.keys[key]
	if !ok {
		if len(m.keys) >= m.max {
			m.evict(now)
		}
		e = m.recent.PushBack(&lockout{key: key})
		m.keys[key] = e
	}
	l := e.Value.(*lockout)
	if now.Before(l.until) {
		return l.until.Sub(now), false, nil // locked: failures count again once the lock ends
	}
	m.recent.MoveToBack(e)
	if !now.Before(l.lastFailure.Add(l.forget)) {
		l.failures = 0
	}
	l.failures++
	l.lastFailure, l.forget = now, forget
	if l.failures < threshold {
		return 0, false, nil
	}
	l.failures = 0
	l.until = now.Add(lock)
	return 0, true, nil
}

// maxLockoutKeys bounds the emails MemoryLockouts remembers (about 250
// bytes each).
const maxLockoutKeys = 200_000

// prune drops, from the least recently failed on, the keys that hold
// neither a lock nor a count any more. The list is in order of last
// failure and every count is forgotten after the same time (the lock being
// shorter), so the first live key ends the walk: each key is dropped once,
// and a call costs nothing more.
func (m *MemoryLockouts) prune(now time.Time) {
	for e := m.recent.Front(); e != nil && !e.Value.(*lockout).live(now); e = m.recent.Front() {
		m.remove(e)
	}
}

// evict makes room in a store full of live keys by forgetting the least
// recently failed key that is not locked (a lock is never lifted early).
// Skipping the new key instead would leave every email not yet seen
// uncounted, never locking, unlike an account: filling the store would tell
// them apart. Forgetting a count can still do that for whoever makes
// maxLockoutKeys failures between two guesses (README: memory mode's
// limit); Redis keeps every count. A store of locked keys only grows past
// max, by what the guessing rate can lock within a lock's duration.
func (m *MemoryLockouts) evict(now time.Time) {
	for e := m.recent.Front(); e != nil; e = e.Next() {
		if !now.Before(e.Value.(*lockout).until) {
			m.remove(e)
			return
		}
	}
}

func (m *MemoryLockouts) remove(e *list.Element) {
	delete(m.keys, m.recent.Remove(e).(*lockout).key)
}

var _ authd.Lockouts = (*Redis)(nil)

// fail counts a failure (KEYS[1], forgotten after ARGV[3] ms without one)
// unless KEYS[2] is locked (its milliseconds left, > 0), and at the
// threshold ARGV[1] sets the lock KEYS[2] for ARGV[2] ms and starts the
// count afresh (-1); otherwise 0. Expiries are relative: Redis's clock
// decides.
var fail = redis.NewScript(`
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return left end
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if n >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  return -1
end
return 0`)

// lockoutKeys names a key's failure count and lock; the hash tag keeps both
// in one slot of a Redis Cluster.
func (r *Redis) lockoutKeys(key string) []string {
	base := r.prefix + "lockout:{" + key + "}"
	return []string{base + ":failures", base + ":lock"}
}

// LockedFor implements authd.Lockouts, in memory while Redis cannot be used.
func (r *Redis) LockedFor(ctx context.Context, key string) (time.Duration, error) {
	var ttl time.Duration
	if !r.try(ctx, func(ctx context.Context) (err error) {
		ttl, err = r.client.PTTL(ctx, r.lockoutKeys(key)[1]).Result()
		return err
	}) {
		return r.lockouts.LockedFor(ctx, key)
	}
	return max(ttl, 0), nil // -2: no lock, -1 cannot happen (always set with PX)
}

// Fail implements authd.Lockouts, in memory while Redis cannot be used.
func (r *Redis) Fail(ctx context.Context, key string, threshold int, lock, forget time.Duration) (time.Duration, bool, error) {
	var n int64
	if !r.try(ctx, func(ctx context.Context) (err error) {
		n, err = fail.Run(ctx, r.client, r.lockoutKeys(key), threshold,
			max(lock.Milliseconds(), 1), max(forget.Milliseconds(), 1)).Int64()
		return err
	}) {
		return r.lockouts.Fail(ctx, key, threshold, lock, forget)
	}
	return time.Duration(max(n, 0)) * time.Millisecond, n == -1, nil
}
