package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
)

// clock is a settable clock for the in-memory limiter. It never meets Redis:
// the Redis tests run on the real clock, because Redis expires counters on
// its own.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

// subject is one kind of limiter under the shared behaviour test.
type subject struct {
	name string
	// instance returns a limiter; all those it returns share their counts,
	// as instances behind one Redis do.
	instance func(t *testing.T) authd.RateLimiter
	// pass lets d go by for the limiters.
	pass func(d time.Duration)
}

func subjects(t *testing.T) []subject {
	c := &clock{now: time.Date(2026, 11, 27, 9, 0, 20, 0, time.UTC)}
	m := NewMemory(c)
	out := []subject{{"memory", func(*testing.T) authd.RateLimiter { return m }, c.Advance}}
	if url := redisURL(t); url != "" {
		prefix := testPrefix()
		out = append(out, subject{"redis",
			func(t *testing.T) authd.RateLimiter { return redisLimiter(t, url, prefix, nil, nil) },
			// Redis drops a counter only once its expiry is strictly past.
			func(d time.Duration) { time.Sleep(d + 5*time.Millisecond) }})
	}
	return out
}

// TestLimiters holds the in-memory and the Redis limiter to the same
// behaviour, so that falling back from one to the other changes no limit.
func TestLimiters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, s := range subjects(t) {
		t.Run(s.name, func(t *testing.T) {
			t.Run("counts per key", func(t *testing.T) {
				l := s.instance(t)
				for i := range 3 {
					if wait, err := l.Allow(ctx, "k", 3, time.Hour); err != nil || wait != 0 {
						t.Fatalf("event %d: wait %s, err %v; want allowed", i+1, wait, err)
					}
				}
				wait, err := l.Allow(ctx, "k", 3, time.Hour)
				if err != nil || wait <= 0 || wait > time.Hour {
					t.Errorf("4th event: wait %s, err %v; want refused with a wait of at most the window", wait, err)
				}
				if wait, err := l.Allow(ctx, "other", 3, time.Hour); err != nil || wait != 0 {
					t.Errorf("another key: wait %s, err %v; keys share a counter", wait, err)
				}
			})
			t.Run("allow under", func(t *testing.T) {
				l := s.instance(t)
				under := func(what string, want bool) {
					t.Helper()
					wait, err := l.AllowUnder(ctx, "under", 2, time.Hour)
					if err != nil || (wait == 0) != want || wait < 0 || wait > time.Hour {
						t.Fatalf("%s: wait %s, err %v; want allowed %v", what, wait, err, want)
					}
				}
				under("first", true)
				under("second", true)
				under("third", false)
				under("fourth", false)
				// The refusals left the count at 2: Allow's third of three passes.
				if wait, err := l.Allow(ctx, "under", 3, time.Hour); err != nil || wait != 0 {
					t.Errorf("Allow after AllowUnder's refusals: wait %s, err %v; want the third of three allowed", wait, err)
				}
				under("past Allow's count", false)
			})
			t.Run("refund", func(t *testing.T) {
				l := s.instance(t)
				allowed := func(what string, want bool) {
					t.Helper()
					wait, err := l.Allow(ctx, "refunded", 2, time.Hour)
					if err != nil || (wait == 0) != want {
						t.Fatalf("%s: wait %s, err %v; want allowed %v", what, wait, err, want)
					}
				}
				if err := l.Refund(ctx, "refunded"); err != nil { // nothing counted: no window made
					t.Fatal(err)
				}
				allowed("first", true)
				allowed("second", true)
				allowed("third", false)
				for range 2 { // the refused one, then one allowed
					if err := l.Refund(ctx, "refunded"); err != nil {
						t.Fatal(err)
					}
				}
				allowed("after two refunds", true)
				allowed("and no more", false)
				for range 5 {
					l.Refund(ctx, "refunded")
				}
				allowed("refunds down to nothing", true)
				allowed("then the window's second", true)
				allowed("and its third", false)
			})
			t.Run("window ends", func(t *testing.T) {
				l := s.instance(t)
				// One try in a thousand may see a loaded machine take the
				// whole second between two calls; try again then.
				var key string
				var wait time.Duration
				for try := 0; wait == 0; try++ {
					if try == 3 {
						t.Fatal("the second event of a one-a-second limit is never refused")
					}
					key = fmt.Sprint("end", try)
					if w, err := l.Allow(ctx, key, 1, time.Second); err != nil || w != 0 {
						t.Fatalf("first event: wait %s, err %v", w, err)
					}
					wait, _ = l.Allow(ctx, key, 1, time.Second)
				}
				if wait > time.Second {
					t.Errorf("wait %s, longer than the window", wait)
				}
				s.pass(wait)
				if w, err := l.Allow(ctx, key, 1, time.Second); err != nil || w != 0 {
					t.Errorf("after the wait: wait %s, err %v; want a new window", w, err)
				}
			})
			t.Run("shared across instances", func(t *testing.T) {
				a, b := s.instance(t), s.instance(t)
				var wg sync.WaitGroup
				var mu sync.Mutex
				allowed := 0
				// At most 8 at once per instance, within a Redis client's
				// pool on any machine (10 per CPU): a wait for a free
				// connection counts the event in the busy instance's memory
				// instead (by design), which on a loaded machine let 37
				// through.
				inFlight := [2]chan struct{}{make(chan struct{}, 8), make(chan struct{}, 8)}
				for i := range 60 {
					l := a
					if i%2 == 1 {
						l = b
					}
					wg.Go(func() {
						inFlight[i%2] <- struct{}{}
						defer func() { <-inFlight[i%2] }()
						if wait, err := l.Allow(ctx, "shared", 30, time.Hour); err == nil && wait == 0 {
							mu.Lock()
							allowed++
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				if allowed != 30 {
					t.Errorf("%d of 60 concurrent events allowed across two instances, want 30", allowed)
				}
			})
		})
	}
}

// redisURL is TEST_REDIS_URL; without it Redis tests are skipped, except in
// CI, which must run them.
func redisURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" && os.Getenv("CI") != "" {
		t.Fatal("TEST_REDIS_URL is not set: CI must run the Redis-backed tests")
	}
	if url == "" {
		t.Log("TEST_REDIS_URL is not set: skipping the Redis-backed tests")
	}
	return url
}

// testPrefix is a key prefix of a test's own, so that tests never see each
// other's counts, however often they run.
func testPrefix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "authd-test:" + hex.EncodeToString(b) + ":"
}
