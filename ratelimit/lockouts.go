package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/authd/authd"
	"github.com/redis/go-redis/v9"
)

// MemoryLockouts is an in-memory authd.Lockouts, for one instance.
type MemoryLockouts struct {
	clock authd.Clock

	mu    sync.Mutex
	keys  map[string]*lockout
	sweep time.Time
}

// lockout is the failure count and lock of one key.
type lockout struct {
	failures    int
	lastFailure time.Time
	forget      time.Duration
	until       time.Time
}

var _ authd.Lockouts = (*MemoryLockouts)(nil)

// NewMemoryLockouts returns empty lockouts on clock.
func NewMemoryLockouts(clock authd.Clock) *MemoryLockouts {
	return &MemoryLockouts{clock: clock, keys: map[string]*lockout{}}
}

// LockedFor implements authd.Lockouts.
func (m *MemoryLockouts) LockedFor(_ context.Context, key string) (time.Duration, error) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.keys[key]; ok && now.Before(l.until) {
		return l.until.Sub(now), nil
	}
	return 0, nil
}

// Fail implements authd.Lockouts.
func (m *MemoryLockouts) Fail(_ context.Context, key string, threshold int, lock, forget time.Duration) (bool, error) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prune(now, false)
	l, ok := m.keys[key]
	if !ok {
		if len(m.keys) >= maxLockoutKeys {
			m.prune(now, true)
		}
		if len(m.keys) >= maxLockoutKeys {
			// Full of recent failures: memory stays bounded, at the cost of
			// not counting this email until room frees up.
			return false, nil
		}
		l = &lockout{}
		m.keys[key] = l
	}
	if now.Before(l.until) {
		return false, nil // locked: failures count again once the lock ends
	}
	if !now.Before(l.lastFailure.Add(l.forget)) {
		l.failures = 0
	}
	l.failures++
	l.lastFailure, l.forget = now, forget
	if l.failures < threshold {
		return false, nil
	}
	l.failures = 0
	l.until = now.Add(lock)
	return true, nil
}

// maxLockoutKeys bounds the emails MemoryLockouts remembers (about 200
// bytes each).
const maxLockoutKeys = 200_000

// prune drops keys neither locked nor remembering failures, at most once a
// minute unless forced, so that memory follows the recent failures only.
func (m *MemoryLockouts) prune(now time.Time, force bool) {
	if !force && now.Before(m.sweep) {
		return
	}
	m.sweep = now.Add(time.Minute)
	for k, l := range m.keys {
		if !now.Before(l.until) && !now.Before(l.lastFailure.Add(l.forget)) {
			delete(m.keys, k)
		}
	}
}

var _ authd.Lockouts = (*Redis)(nil)

// fail counts a failure (KEYS[1], forgotten after ARGV[3] ms without one)
// unless KEYS[2] is locked (2), and at the threshold ARGV[1] sets the lock
// KEYS[2] for ARGV[2] ms and starts the count afresh (1). Expiries are relative: Redis's clock decides.
var fail = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if n >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  return 1
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
func (r *Redis) Fail(ctx context.Context, key string, threshold int, lock, forget time.Duration) (bool, error) {
	var locked bool
	if !r.try(ctx, func(ctx context.Context) error {
		n, err := fail.Run(ctx, r.client, r.lockoutKeys(key), threshold,
			max(lock.Milliseconds(), 1), max(forget.Milliseconds(), 1)).Int()
		locked = n == 1
		return err
	}) {
		return r.lockouts.Fail(ctx, key, threshold, lock, forget)
	}
	return locked, nil
}
