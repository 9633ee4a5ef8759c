package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/syncbuf"
)

// TestLockouts holds the in-memory and the Redis lockouts to one behaviour:
// the threshold-th failure locks for the lock duration and starts the count
// afresh, and separate keys never share a count.
func TestLockouts(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	stores := map[string]authd.Lockouts{"memory": NewMemoryLockouts(c)}
	if url := redisURL(t); url != "" {
		stores["redis"] = redisLimiter(t, url, testPrefix(), nil, nil)
	}
	for name, l := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			for i := range 2 {
				if wait, locked, err := l.Fail(ctx, "a", 3, time.Hour, time.Hour); wait != 0 || locked || err != nil {
					t.Fatalf("failure %d: locked for %s, locked %v, %v; want not yet", i+1, wait, locked, err)
				}
			}
			if wait, err := l.LockedFor(ctx, "a"); wait != 0 || err != nil {
				t.Fatalf("before the threshold: locked for %s, %v", wait, err)
			}
			l.Fail(ctx, "b", 3, time.Hour, time.Hour) // another key's failure does not count for a
			if wait, locked, err := l.Fail(ctx, "a", 3, time.Hour, time.Hour); wait != 0 || !locked || err != nil {
				t.Fatalf("3rd failure: locked for %s, locked %v, %v; want this failure to lock", wait, locked, err)
			}
			if wait, _ := l.LockedFor(ctx, "a"); wait <= 59*time.Minute || wait > time.Hour {
				t.Errorf("locked for %s, want about an hour", wait)
			}
			if wait, _ := l.LockedFor(ctx, "b"); wait != 0 {
				t.Errorf("key b locked for %s after one failure", wait)
			}
			// A failure during the lock is not counted and says how long
			// the lock lasts, in the same step.
			if wait, locked, _ := l.Fail(ctx, "a", 3, time.Hour, time.Hour); locked || wait <= 59*time.Minute || wait > time.Hour {
				t.Errorf("a failure during the lock: locked for %s, locked %v; want about an hour, not locked again", wait, locked)
			}
		})
	}
}

// TestRedisLocksReadOnEachClock: an address's lock in Redis is read as an
// account's lock is, against the clock of the instance that reads it: 3 s
// longer on an instance 3 s behind the one that set it, 3 s shorter on
// one 3 s ahead (were Redis's clock to decide, both would read it alike,
// and an account's lock would be told from an address's by its wait). A
// lock an older release set ("1") ends as Redis expires it.
func TestRedisLocksReadOnEachClock(t *testing.T) {
	t.Parallel()
	url := redisURL(t)
	if url == "" {
		t.Skip("TEST_REDIS_URL is not set")
	}
	prefix := testPrefix()
	setter := redisLimiter(t, url, prefix, nil, nil)
	behind := redisLimiter(t, url, prefix, skewed(-3*time.Second), nil)
	ahead := redisLimiter(t, url, prefix, skewed(3*time.Second), nil)
	ctx := context.Background()
	for range 2 {
		setter.Fail(ctx, "a", 2, 10*time.Second, time.Minute)
	}
	// 10 s less what the test took since: it is given 1 s of it.
	for name, c := range map[string]struct {
		l        *Redis
		min, max time.Duration
	}{"behind": {behind, 12 * time.Second, 13 * time.Second}, "ahead": {ahead, 6 * time.Second, 7 * time.Second}} {
		if wait, err := c.l.LockedFor(ctx, "a"); err != nil || wait < c.min || wait > c.max {
			t.Errorf("the instance %s reads the lock as %s (%v), want %s–%s", name, wait, err, c.min, c.max)
		}
		if wait, locked, err := c.l.Fail(ctx, "a", 2, 10*time.Second, time.Minute); err != nil || locked || wait < c.min || wait > c.max {
			t.Errorf("a failure on the instance %s: locked for %s, locked %v (%v), want %s–%s", name, wait, locked, err, c.min, c.max)
		}
	}
	legacy := setter.lockoutKeys("b")[1]
	if err := setter.client.Set(ctx, legacy, "1", 10*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if wait, err := ahead.LockedFor(ctx, "b"); err != nil || wait < 9*time.Second || wait > 10*time.Second {
		t.Errorf("a lock an older release set, 10 s: read as %s (%v), want Redis's 9–10 s", wait, err)
	}
}

// TestMemoryLockoutsExpire: a lock ends after its duration, and a count is
// forgotten after forget without a failure.
func TestMemoryLockoutsExpire(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewMemoryLockouts(c)
	ctx := context.Background()
	l.Fail(ctx, "k", 2, time.Minute, time.Hour)
	l.Fail(ctx, "k", 2, time.Minute, time.Hour)
	if wait, locked, _ := l.Fail(ctx, "k", 2, time.Minute, time.Hour); locked || wait != time.Minute {
		t.Errorf("a failure during the lock: locked for %s, locked %v; want the minute, not counted", wait, locked)
	}
	c.Advance(time.Minute)
	if wait, _ := l.LockedFor(ctx, "k"); wait != 0 {
		t.Errorf("locked for %s after the lock's minute", wait)
	}
	l.Fail(ctx, "k", 2, time.Minute, time.Hour)
	c.Advance(time.Hour)
	if _, locked, _ := l.Fail(ctx, "k", 2, time.Minute, time.Hour); locked {
		t.Error("a failure an hour after the last one locked: the count was not forgotten")
	}
}

// TestMemoryLockoutsCountAfreshAfterALock: once a lock ends, an email
// without an account starts a fresh count, as an account does: the
// failures before the lock, still within forget, do not count toward the
// next one, so threshold-1 failures after it do not lock again, and the
// threshold-th does.
func TestMemoryLockoutsCountAfreshAfterALock(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewMemoryLockouts(c)
	ctx := context.Background()
	const threshold = 3
	for range threshold {
		l.Fail(ctx, "k", threshold, time.Minute, time.Hour)
	}
	if wait, _ := l.LockedFor(ctx, "k"); wait != time.Minute {
		t.Fatalf("locked for %s after %d failures, want the minute", wait, threshold)
	}
	c.Advance(time.Minute)
	for i := range threshold - 1 {
		if wait, locked, _ := l.Fail(ctx, "k", threshold, time.Minute, time.Hour); locked || wait != 0 {
			t.Fatalf("failure %d after the lock ended: locked for %s, locked %v; want a fresh count of %d", i+1, wait, locked, threshold)
		}
	}
	if _, locked, _ := l.Fail(ctx, "k", threshold, time.Minute, time.Hour); !locked {
		t.Errorf("failure %d after the lock ended did not lock", threshold)
	}
}

// TestRedisLockKeyOutlivesTheLock: the lock a failure sets in Redis expires
// lockSkewMargin after the lock ends, not with it, so that an instance
// whose clock is behind the setter's still finds it. Redis counts the
// key's time down from when it was set: the test allows what it took.
func TestRedisLockKeyOutlivesTheLock(t *testing.T) {
	t.Parallel()
	url := redisURL(t)
	if url == "" {
		t.Skip("TEST_REDIS_URL is not set")
	}
	r := redisLimiter(t, url, testPrefix(), nil, nil)
	ctx := context.Background()
	const lock = 10 * time.Second
	r.Fail(ctx, "k", 2, lock, time.Minute)
	start := time.Now()
	if _, locked, err := r.Fail(ctx, "k", 2, lock, time.Minute); !locked || err != nil {
		t.Fatalf("2nd failure: locked %v, %v; want this failure to lock", locked, err)
	}
	ttl, err := r.client.PTTL(ctx, r.lockoutKeys("k")[1]).Result()
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	// Redis's milliseconds are whole: a millisecond more than took may
	// have passed on its clock.
	if want := lock + lockSkewMargin; ttl > want || ttl < want-took-time.Millisecond {
		t.Errorf("the lock key expires in %s, read %s after the locking failure began; want %s (the lock and lockSkewMargin)", ttl, took, want)
	}
}

// TestRedisLockoutsFallBack: with Redis unreachable the lockouts count in
// memory, never not at all.
func TestRedisLockoutsFallBack(t *testing.T) {
	t.Parallel()
	p, _, proxied := proxiedRedis(t)
	r := redisLimiter(t, proxied, testPrefix(), nil, nil)
	p.SetDown(true)
	ctx := context.Background()
	r.Fail(ctx, "k", 2, time.Hour, time.Hour)
	if _, locked, err := r.Fail(ctx, "k", 2, time.Hour, time.Hour); !locked || err != nil {
		t.Fatalf("with Redis down: locked %v, %v; want locked in memory", locked, err)
	}
	if wait, err := r.LockedFor(ctx, "k"); wait <= 0 || err != nil {
		t.Errorf("with Redis down: locked for %s, %v", wait, err)
	}
}

// TestRedisLockoutsSurviveTheFallback: a lock of an email without an
// account holds across a move between Redis and memory, both ways, as an
// account's lock in the database does (a lock that read as none would
// tell the two apart): one Redis set is answered from memory while Redis
// is down, and one set in memory meanwhile is answered once Redis is back,
// by this instance at once and by every other once it is written back.
func TestRedisLockoutsSurviveTheFallback(t *testing.T) {
	t.Parallel()
	p, direct, proxied := proxiedRedis(t)
	prefix := testPrefix()
	r := redisLimiter(t, proxied, prefix, nil, nil)
	r.retry = 50 * time.Millisecond
	other := redisLimiter(t, direct, prefix, nil, nil) // another instance, on Redis throughout
	ctx := context.Background()
	lock := func(key string) {
		t.Helper()
		r.Fail(ctx, key, 2, time.Hour, time.Hour)
		if _, locked, _ := r.Fail(ctx, key, 2, time.Hour, time.Hour); !locked {
			t.Fatalf("%s: not locked", key)
		}
	}

	lock("in-redis")
	p.SetDown(true)
	if wait, _ := r.LockedFor(ctx, "in-redis"); wait < 59*time.Minute {
		t.Errorf("Redis down: a lock Redis holds reads %s; want its hour, from memory", wait)
	}
	if wait, locked, _ := r.Fail(ctx, "in-redis", 2, time.Hour, time.Hour); wait < 59*time.Minute || locked {
		t.Errorf("Redis down: a failure on a lock Redis holds: %s, %v; want refused for its hour", wait, locked)
	}
	lock("in-memory")
	p.SetDown(false)
	time.Sleep(2 * r.retry)
	if wait, _ := r.LockedFor(ctx, "in-memory"); wait < 59*time.Minute {
		t.Errorf("Redis back: a lock set in memory meanwhile reads %s on its instance; want its hour", wait)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if wait, _ := other.LockedFor(ctx, "in-memory"); wait >= 59*time.Minute {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Redis back: a lock set in memory meanwhile never reached the other instances")
		}
	}
}

// TestRedisLockoutsWaitForABusyPool: a failure counted while this
// instance's Redis pool is busy waits for a connection (within the call's
// time) rather than counting in memory, where a count split from Redis's
// would lock an email without an account later than an account.
func TestRedisLockoutsWaitForABusyPool(t *testing.T) {
	t.Parallel()
	r, held, other := busyPair(t)
	time.AfterFunc(500*time.Millisecond, func() { held.Close() }) // past the pool's own waits
	if _, locked, err := r.Fail(context.Background(), "k", 1, time.Hour, time.Hour); !locked || err != nil {
		t.Fatalf("a failure at a threshold of 1: locked %v, %v", locked, err)
	}
	if wait, _ := other.LockedFor(context.Background(), "k"); wait < 59*time.Minute {
		t.Errorf("another instance reads the lock as %s; want it counted in Redis, not in a busy instance's memory", wait)
	}
	if r.Fallback() {
		t.Error("a busy pool was taken for Redis being down")
	}
}

// TestMemoryLockoutsFull: a full store makes room by forgetting the least
// recently failed key that is not locked, so that a new key still counts
// and locks as an account would (skipping it would tell emails without an
// account apart), and no lock is lifted early.
func TestMemoryLockoutsFull(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewMemoryLockouts(c)
	l.max = 3
	ctx := context.Background()
	l.Fail(ctx, "locked", 1, time.Hour, 24*time.Hour) // the oldest, but locked
	for _, k := range []string{"old", "mid"} {
		c.Advance(time.Second)
		l.Fail(ctx, k, 9, time.Hour, 24*time.Hour)
	}
	c.Advance(time.Second)
	l.Fail(ctx, "old", 9, time.Hour, 24*time.Hour) // old failed again: mid is now the least recent unlocked
	l.Fail(ctx, "target", 2, time.Hour, 24*time.Hour)
	if _, locked, _ := l.Fail(ctx, "target", 2, time.Hour, 24*time.Hour); !locked {
		t.Error("a key first seen while the store is full did not lock at the threshold")
	}
	if len(l.keys) != 3 || l.keys["mid"] != nil || l.keys["old"] == nil {
		t.Errorf("kept %d keys (mid kept %v, old kept %v); want 3, mid (least recently failed, unlocked) gone",
			len(l.keys), l.keys["mid"] != nil, l.keys["old"] != nil)
	}
	if wait, _ := l.LockedFor(ctx, "locked"); wait <= 0 {
		t.Error("making room lifted a lock")
	}
}

// TestMemoryLockoutsPrune: keys whose count and lock are both over are
// dropped, oldest first, and live ones kept.
func TestMemoryLockoutsPrune(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewMemoryLockouts(c)
	ctx := context.Background()
	l.Fail(ctx, "a", 9, time.Hour, time.Hour)
	c.Advance(30 * time.Minute)
	l.Fail(ctx, "b", 9, time.Hour, time.Hour)
	c.Advance(31 * time.Minute) // a's count is over, b's is not
	l.Fail(ctx, "c", 9, time.Hour, time.Hour)
	if l.keys["a"] != nil || l.keys["b"] == nil || l.keys["c"] == nil || l.recent.Len() != len(l.keys) {
		t.Errorf("after a's count ran out: a kept %v, b kept %v, c kept %v, list %d map %d; want only a gone",
			l.keys["a"] != nil, l.keys["b"] != nil, l.keys["c"] != nil, l.recent.Len(), len(l.keys))
	}
}

// TestRedisCloseEndsTheWriteBack: Close ends a write-back of the locks set
// in memory during an outage, and waits for its call in flight (which its
// call's timeout bounds), so that no call runs on a closed client after the
// instance stopped (each then failed, and it told of an outage that was
// none).
func TestRedisCloseEndsTheWriteBack(t *testing.T) {
	t.Parallel()
	p, _, proxied := proxiedRedis(t)
	var logs syncbuf.Buffer
	r := redisLimiter(t, proxied, testPrefix(), nil, slog.New(slog.NewTextHandler(&logs, nil)))
	r.mu.Lock()
	r.retry = 50 * time.Millisecond
	r.mu.Unlock()
	r.timeout = callTimeout // what ends the stalled call in flight
	ctx := context.Background()
	p.SetDown(true)
	for i := range 5_000 { // a write-back of one round trip each, long enough to catch it running
		r.Fail(ctx, fmt.Sprint("k", i), 1, time.Hour, time.Hour)
	}
	p.SetDown(false)
	for deadline := time.Now().Add(5 * time.Second); !r.restoring.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no write-back began 5 s after Redis answered again")
		}
	}
	p.Stall() // the write-back's call in flight, and every next one, hangs
	p.SetSilent(true)
	logged := len(logs.String())
	start := time.Now()
	r.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %v: it waited for the write-back's next calls (each %v), not only the one in flight",
			took, callTimeout)
	}
	if r.restoring.Load() {
		t.Error("Close returned while the write-back ran")
	}
	if log := logs.String()[logged:]; log != "" {
		t.Errorf("the write-back went on after Close, on a closed client:\n%s", log)
	}
}

// TestRedisWriteBackStartsTheCountAfresh: a lock set in memory during an
// outage and written back to Redis starts the failure count afresh, as a
// lock set in Redis does: the failures Redis counted before the outage
// would otherwise lock an address without an account at the first failure
// after the lock, where an account's count starts from nothing (telling
// the two apart).
func TestRedisWriteBackStartsTheCountAfresh(t *testing.T) {
	t.Parallel()
	p, a, b := fallingPair(t, nil)
	a.timeout = callTimeout // a write-back leaves to memory a lock with less than this left
	ctx := context.Background()
	const threshold, lock = 5, 2 * time.Second
	for i := range threshold - 1 {
		if _, locked, err := b.Fail(ctx, "k", threshold, lock, time.Hour); locked || err != nil {
			t.Fatalf("failure %d in Redis: locked %v, %v", i+1, locked, err)
		}
	}
	p.SetDown(true)
	locked := false
	for range threshold {
		_, locked, _ = a.Fail(ctx, "k", threshold, lock, time.Hour)
	}
	if !locked {
		t.Fatal("no lock in memory after the threshold's failures")
	}
	p.SetDown(false)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if wait, _ := b.LockedFor(ctx, "k"); wait > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lock set in memory was not written back 10 s after Redis answered again")
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if wait, _ := b.LockedFor(ctx, "k"); wait == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the written-back lock did not end")
		}
	}
	for i := range threshold - 1 {
		if _, locked, err := b.Fail(ctx, "k", threshold, lock, time.Hour); locked || err != nil {
			t.Fatalf("failure %d after the lock: locked %v, %v; want a fresh count of %d", i+1, locked, err, threshold)
		}
	}
}

// TestRedisWriteBackResumesAfterAFailedCall: a write-back whose call fails
// (Redis gone again mid-way) finds Redis unusable, and the next recovery
// writes every lock back: none stays on this instance alone, answering 423
// where every other instance answers 401.
func TestRedisWriteBackResumesAfterAFailedCall(t *testing.T) {
	t.Parallel()
	var logs syncbuf.Buffer
	p, a, b := fallingPair(t, slog.New(slog.NewTextHandler(&logs, nil)))
	a.timeout = callTimeout // the stalled call's end
	ctx := context.Background()
	p.SetDown(true)
	const keys = 5_000 // a write-back long enough to catch it running
	for i := range keys {
		a.Fail(ctx, fmt.Sprint("k", i), 1, time.Hour, time.Hour)
	}
	p.SetDown(false)
	for deadline := time.Now().Add(10 * time.Second); !a.restoring.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no write-back began 10 s after Redis answered again")
		}
	}
	p.Stall() // the write-back's call in flight hangs; new connections work
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		missing := 0
		for i := range keys {
			if wait, _ := b.LockedFor(ctx, fmt.Sprint("k", i)); wait <= 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d locks set in memory still unknown to Redis 20 s after the write-back's call failed",
				missing, keys)
		}
	}
	if n := strings.Count(logs.String(), "Redis cannot be used"); n != 2 {
		t.Errorf("%d outages logged; want 2, the one made and the write-back's failed call:\n%s", n, logs.String())
	}
}

// TestRedisWriteBackWaitsForABusyPool: a write-back that finds this
// instance's connections all taken waits for one, as a request does: a
// busy instance is no outage, which would send every limit to memory.
func TestRedisWriteBackWaitsForABusyPool(t *testing.T) {
	t.Parallel()
	r, held, other := busyPair(t)
	r.timeout = callTimeout
	ctx := context.Background()
	r.lockouts.Fail(ctx, "k", 1, time.Hour, time.Hour) // a lock set in memory, as during an outage
	r.down.Store(true)
	r.recovered() // Redis answers again: the write-back meets the busy pool
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if r.Fallback() {
			t.Fatal("a write-back that met a busy pool took Redis for down")
		}
	}
	held.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if wait, _ := other.LockedFor(ctx, "k"); wait > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lock was not written back 10 s after the pool came free")
		}
	}
}

// TestRedisLockSetElsewhere: a lock another instance set in Redis is
// honoured as it stands: failures counted on this instance during it
// neither count nor set a lock of their own (which would move its end to
// this instance's lock duration), and once this instance has read it, it
// answers it from memory while Redis cannot be used, as an account's lock
// in the database answers throughout.
func TestRedisLockSetElsewhere(t *testing.T) {
	t.Parallel()
	p, direct, proxied := proxiedRedis(t)
	prefix := testPrefix()
	setter := redisLimiter(t, direct, prefix, nil, nil)
	r := redisLimiter(t, proxied, prefix, nil, nil)
	ctx := context.Background()
	for _, key := range []string{"failed", "read"} {
		for range 2 {
			setter.Fail(ctx, key, 2, time.Minute, time.Hour)
		}
	}

	for i := range 3 {
		if wait, locked, err := r.Fail(ctx, "failed", 2, 24*time.Hour, time.Hour); err != nil || locked || wait <= 0 || wait > time.Minute {
			t.Errorf("failure %d during another instance's lock: locked for %s, locked %v (%v); want its minute, not locked again",
				i+1, wait, locked, err)
		}
	}
	if wait, _ := setter.LockedFor(ctx, "failed"); wait <= 0 || wait > time.Minute {
		t.Errorf("after failures elsewhere the lock reads %s where it was set; want its minute", wait)
	}

	if wait, err := r.LockedFor(ctx, "read"); err != nil || wait <= 50*time.Second || wait > time.Minute {
		t.Fatalf("another instance's lock reads %s (%v); want its minute", wait, err)
	}
	p.SetDown(true)
	if wait, err := r.LockedFor(ctx, "read"); err != nil || wait <= 50*time.Second || wait > time.Minute {
		t.Errorf("Redis down: another instance's lock, read before, reads %s (%v); want its minute, from memory", wait, err)
	}
}
