package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func TestFixedWindow(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 27, 9, 0, 20, 0, time.UTC)}
	m := NewMemory(c)
	ctx := context.Background()
	for i := range 3 {
		if wait, _ := m.Allow(ctx, "k", 3, time.Minute); wait != 0 {
			t.Fatalf("event %d refused", i+1)
		}
	}
	wait, _ := m.Allow(ctx, "k", 3, time.Minute)
	if wait != 40*time.Second {
		t.Errorf("4th event: wait %s, want 40s (to the end of the aligned window)", wait)
	}
	if wait, _ := m.Allow(ctx, "other", 3, time.Minute); wait != 0 {
		t.Error("keys share a counter")
	}
	c.now = c.now.Add(40 * time.Second)
	if wait, _ := m.Allow(ctx, "k", 3, time.Minute); wait != 0 {
		t.Error("a new window still refuses")
	}
}

func TestPruneForgetsOldKeys(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	m := NewMemory(c)
	for i := range 1000 {
		m.Allow(context.Background(), fmt.Sprint(i), 1, time.Minute)
	}
	c.now = c.now.Add(2 * time.Minute)
	m.Allow(context.Background(), "fresh", 1, time.Minute)
	if n := len(m.windows); n != 1 {
		t.Errorf("%d windows kept after they all ended, want 1", n)
	}
}

func TestConcurrentCounting(t *testing.T) {
	m := NewMemory(&clock{now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 100 {
		wg.Go(func() {
			if wait, _ := m.Allow(context.Background(), "k", 30, time.Minute); wait == 0 {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 30 {
		t.Errorf("%d of 100 concurrent events allowed, want 30", allowed)
	}
}
