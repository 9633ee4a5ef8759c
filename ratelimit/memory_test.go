package ratelimit

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMonotonicKeepsItsReading: Monotonic's times carry the monotonic
// reading, so that a window's or a lock's remaining time, their difference,
// is measured on it and no step of the wall clock moves it.
func TestMonotonicKeepsItsReading(t *testing.T) {
	t.Parallel()
	if now := (Monotonic{}).Now(); !strings.Contains(now.String(), " m=") {
		t.Errorf("Monotonic's time %s has no monotonic reading", now)
	}
}

// TestMemoryRetryAfter: the wait is exact, to the end of the window that the
// key's first event opened.
func TestMemoryRetryAfter(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Date(2026, 11, 27, 9, 0, 20, 0, time.UTC)}
	m := NewMemory(c)
	ctx := context.Background()
	m.Allow(ctx, "k", 2, time.Minute)
	c.Advance(20 * time.Second)
	m.Allow(ctx, "k", 2, time.Minute)
	if wait, _ := m.Allow(ctx, "k", 2, time.Minute); wait != 40*time.Second {
		t.Errorf("3rd event 20s into the window: wait %s, want 40s", wait)
	}
	c.Advance(40 * time.Second)
	if wait, _ := m.Allow(ctx, "k", 2, time.Minute); wait != 0 {
		t.Error("a new window still refuses")
	}
}

// TestMemoryWindowEndsAtItsEnd: a window is over at its end, not a moment
// after: the events at that instant open the next window and count in it.
func TestMemoryWindowEndsAtItsEnd(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	m := NewMemory(c)
	ctx := context.Background()
	m.Allow(ctx, "other", 2, time.Minute) // the sweep of ended windows falls between k's
	c.Advance(30 * time.Second)
	for range 2 {
		m.Allow(ctx, "k", 2, time.Minute)
	}
	c.Advance(30 * time.Second)
	m.Allow(ctx, "other", 2, time.Minute) // sweeps
	c.Advance(30 * time.Second)
	for i := range 2 {
		if wait, _ := m.Allow(ctx, "k", 2, time.Minute); wait != 0 {
			t.Fatalf("event %d at the first window's end: wait %s, want allowed in a new window", i+1, wait)
		}
	}
	c.Advance(time.Second)
	if wait, _ := m.Allow(ctx, "k", 2, time.Minute); wait != 59*time.Second {
		t.Errorf("3rd event of the window opened at the first one's end: wait %s, want 59s", wait)
	}
}

func TestPruneForgetsOldKeys(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	m := NewMemory(c)
	for i := range 1000 {
		m.Allow(context.Background(), fmt.Sprint(i), 1, time.Minute)
	}
	c.Advance(2 * time.Minute)
	m.Allow(context.Background(), "fresh", 1, time.Minute)
	if n := len(m.windows); n != 1 {
		t.Errorf("%d windows kept after they all ended, want 1", n)
	}
}

// TestMemoryIsBounded: keys past the limiter's size make it forget the
// window opened earliest, never grow it; a new key is still counted and
// limited, and the latest windows keep their counts.
func TestMemoryIsBounded(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	m := NewMemory(c)
	m.max = 100
	ctx := context.Background()
	for i := range 1000 {
		m.Allow(ctx, fmt.Sprint(i), 1, time.Hour)
	}
	if n, l := len(m.windows), m.opened.Len(); n != 100 || l != 100 {
		t.Errorf("%d windows (%d in order) after 1,000 keys; want at most 100", n, l)
	}
	if wait, _ := m.Allow(ctx, "999", 1, time.Hour); wait == 0 {
		t.Error("the latest key's count was forgotten")
	}
	if wait, _ := m.Allow(ctx, "0", 1, time.Hour); wait != 0 {
		t.Error("the earliest key's window is kept past the bound")
	}
	m.Allow(ctx, "new", 1, time.Hour)
	if wait, _ := m.Allow(ctx, "new", 1, time.Hour); wait == 0 {
		t.Error("a new key in a full limiter is not limited")
	}
}

// TestMemoryFullDropsEndedWindowsFirst: a full limiter forgets windows
// that have ended before it forgets a live one.
func TestMemoryFullDropsEndedWindowsFirst(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	m := NewMemory(c)
	m.max = 100
	ctx := context.Background()
	m.Allow(ctx, "victim", 1, time.Hour) // the earliest opened, and live
	for i := range 99 {
		m.Allow(ctx, fmt.Sprint(i), 1, 10*time.Second)
	}
	c.Advance(20 * time.Second) // those windows have ended; the minute's sweep is not due
	m.Allow(ctx, "new", 1, time.Minute)
	if wait, _ := m.Allow(ctx, "victim", 1, time.Hour); wait == 0 {
		t.Error("a full limiter forgot a live window while ended ones were kept")
	}
}
