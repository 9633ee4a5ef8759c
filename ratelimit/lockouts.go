package ratelimit

import (
	"container/list"
	"context"
	"errors"
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

// hold makes key locked for at least left from now: a lock Redis holds,
// mirrored so that this instance still answers it while Redis cannot be
// used. A count it had is dropped, as when a lock is set.
func (m *MemoryLockouts) hold(key string, left time.Duration) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.keys[key]
	if !ok {
		if len(m.keys) >= m.max {
			m.evict(now)
		}
		e = m.recent.PushBack(&lockout{key: key, lastFailure: now})
		m.keys[key] = e
	}
	if l := e.Value.(*lockout); now.Add(left).After(l.until) {
		l.failures, l.until = 0, now.Add(left)
	}
}

// locks returns the locks in force, with how long each has left.
func (m *MemoryLockouts) locks() map[string]time.Duration {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	locks := map[string]time.Duration{}
	for key, e := range m.keys {
		if l := e.Value.(*lockout); now.Before(l.until) {
			locks[key] = l.until.Sub(now)
		}
	}
	return locks
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

// An address's lock in Redis holds the time it ends, in Unix milliseconds
// of the clock of the instance that set it, and every instance reads what
// is left on its own clock, as an account's lock (a stored time, read
// against each instance's clock) is read. Had Redis's clock decided
// (PTTL), instances a few seconds apart would tell the two apart: right
// after the lock an account's read 905 s on an instance 5 s behind where
// an address's never reads over 900, and each counted down unevenly
// across instances where the other did not. The key itself expires
// lockSkewMargin after the lock, so that an instance behind the setter's
// clock still finds it, as it finds an account's lock until a sweep lifts
// it.
const lockSkewMargin = 30 * time.Second

// lockLeft is the Lua function the lockout scripts share: the milliseconds
// left of the lock at key at now (ARGV's milliseconds), ≤ 0 when none. A
// lock a release before the end times set ("1") ends as Redis expires it.
const lockLeft = `
local function lockLeft(key, now)
  local v = redis.call('GET', key)
  if not v then return 0 end
  local untilMs = tonumber(v)
  if v == '1' or not untilMs then return redis.call('PTTL', key) end
  return untilMs - tonumber(now)
end
`

// lockedFor answers the milliseconds left of the lock KEYS[1] at ARGV[1].
var lockedFor = redis.NewScript(lockLeft + `return lockLeft(KEYS[1], ARGV[1])`)

// fail counts a failure (KEYS[1], forgotten after ARGV[3] ms without one)
// unless KEYS[2] is locked at ARGV[4] (its milliseconds left, > 0), and at
// the threshold ARGV[1] sets the lock KEYS[2] to end at ARGV[5] (expiring
// in ARGV[2] ms) and starts the count afresh (-1); otherwise 0.
var fail = redis.NewScript(lockLeft + `
local left = lockLeft(KEYS[2], ARGV[4])
if left > 0 then return left end
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if n >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[2])
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
//
// A lock must not vanish when limits move between Redis and memory: an
// account's lock is in the database and answers 423 throughout, so a lock
// of an email without one that read as none would tell the two apart. Each
// lock Redis answers is mirrored in memory (hold), which answers while
// Redis cannot be used; a lock set in memory meanwhile is written back to
// Redis when it answers again (restoreLocks), and until then this
// instance answers the longer of the two.
func (r *Redis) LockedFor(ctx context.Context, key string) (time.Duration, error) {
	var ttl time.Duration
	if !r.tryWaiting(ctx, func(ctx context.Context) error {
		ms, err := lockedFor.Run(ctx, r.client, r.lockoutKeys(key)[1:], r.clock.Now().UnixMilli()).Int64()
		ttl = time.Duration(ms) * time.Millisecond
		return err
	}, true) {
		return r.lockouts.LockedFor(ctx, key)
	}
	if ttl > 0 {
		r.lockouts.hold(key, ttl)
	}
	mem, _ := r.lockouts.LockedFor(ctx, key)
	return max(ttl, mem, 0), nil
}

// Fail implements authd.Lockouts, in memory while Redis cannot be used (see
// LockedFor for how locks cross between the two).
func (r *Redis) Fail(ctx context.Context, key string, threshold int, lock, forget time.Duration) (time.Duration, bool, error) {
	if mem, _ := r.lockouts.LockedFor(ctx, key); mem > 0 {
		return mem, false, nil // locked in memory, not yet (or no longer) in Redis
	}
	var n int64
	if !r.tryWaiting(ctx, func(ctx context.Context) (err error) {
		now := r.clock.Now().UnixMilli()
		lockMs := max(lock.Milliseconds(), 1)
		n, err = fail.Run(ctx, r.client, r.lockoutKeys(key), threshold,
			lockMs+lockSkewMargin.Milliseconds(), max(forget.Milliseconds(), 1), now, now+lockMs).Int64()
		return err
	}, true) {
		return r.lockouts.Fail(ctx, key, threshold, lock, forget)
	}
	switch {
	case n == -1:
		r.lockouts.hold(key, lock)
	case n > 0:
		r.lockouts.hold(key, time.Duration(n)*time.Millisecond)
	}
	return time.Duration(max(n, 0)) * time.Millisecond, n == -1, nil
}

// holdLock makes KEYS[2] a lock for at least ARGV[2] ms from ARGV[1]
// (ending at ARGV[3], the key expiring in ARGV[4] ms) and, when it sets
// it, starts the failure count KEYS[1] afresh, as a lock fail sets does:
// the failures Redis counted before the lock must not shorten the next
// one's count.
var holdLock = redis.NewScript(lockLeft + `
if lockLeft(KEYS[2], ARGV[1]) < tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
end
return 0`)

// restoreLocks writes the locks this instance holds in memory to Redis,
// once Redis answers again after it could not be used: locks set in memory
// meanwhile become every instance's. Each lock's end is read once, when
// the list is taken; one too close to its end for a call is left to
// memory, lest a late write start the count afresh after the lock ended.
// Each call is bounded as any. One that finds this instance's pool busy
// waits and tries again (Redis is not down, tryWaiting); one that fails
// finds Redis unusable again, and the next recovery writes them all back
// (the memory answers them meanwhile, LockedFor). Close ends it.
func (r *Redis) restoreLocks() {
	listed := r.clock.Now().UnixMilli()
	for key, left := range r.lockouts.locks() {
		until := listed + left.Milliseconds()
		for {
			now := r.clock.Now().UnixMilli()
			if until-now < r.timeout.Milliseconds() {
				break
			}
			left := until - now
			err := r.call(r.life, func(ctx context.Context) error {
				return holdLock.Run(ctx, r.client, r.lockoutKeys(key), now, left, until,
					left+lockSkewMargin.Milliseconds()).Err()
			}, true)
			switch {
			case r.life.Err() != nil: // closed: the instance stops, and its memory with it
				return
			case errors.Is(err, redis.ErrPoolTimeout):
				select {
				case <-r.life.Done():
					return
				case <-time.After(r.timeout):
					continue
				}
			case err != nil:
				r.failed(err)
				return
			}
			break
		}
	}
}
