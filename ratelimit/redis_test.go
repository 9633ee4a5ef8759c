package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"
)

// redisLimiter connects to TEST_REDIS_URL with a key prefix of its own, so
// that tests never see each other's counts.
func redisLimiter(t *testing.T, c *clock) *Redis {
	t.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TEST_REDIS_URL is not set: CI must run the Redis-backed tests")
		}
		t.Skip("TEST_REDIS_URL is not set: skipping a Redis-backed test")
	}
	r, err := NewRedis(context.Background(), url, c)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	r.prefix = "authd-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRedisFixedWindow(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 27, 9, 0, 20, 0, time.UTC)}
	r := redisLimiter(t, c)
	ctx := context.Background()
	for i := range 3 {
		if wait, err := r.Allow(ctx, "k", 3, time.Minute); err != nil || wait != 0 {
			t.Fatalf("event %d: %v, %v", i+1, wait, err)
		}
	}
	if wait, _ := r.Allow(ctx, "k", 3, time.Minute); wait != 40*time.Second {
		t.Errorf("4th event: wait %s, want 40s", wait)
	}
	c.now = c.now.Add(40 * time.Second)
	if wait, _ := r.Allow(ctx, "k", 3, time.Minute); wait != 0 {
		t.Error("a new window still refuses")
	}
}

// TestRedisSharedAcrossInstances: two limiters (two instances) share one
// count.
func TestRedisSharedAcrossInstances(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	a := redisLimiter(t, c)
	b := &Redis{client: a.client, clock: c, prefix: a.prefix}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for i := range 60 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			if wait, err := l.Allow(context.Background(), "shared", 30, time.Minute); err == nil && wait == 0 {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 30 {
		t.Errorf("%d of 60 events allowed across two instances, want 30", allowed)
	}
}

func TestRedisUnreachable(t *testing.T) {
	if _, err := NewRedis(context.Background(), "redis://127.0.0.1:1/0", &clock{}); err == nil {
		t.Error("NewRedis to a closed port succeeded")
	}
	if _, err := NewRedis(context.Background(), "http://x", &clock{}); err == nil {
		t.Error("NewRedis accepted a non-redis URL")
	}
}
