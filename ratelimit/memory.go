// Package ratelimit counts requests per key in fixed windows, in memory for
// one instance, or in Redis so that every instance shares the counts (and in
// memory again while Redis cannot be reached).
package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/authd/authd"
)

// Memory is an in-memory authd.RateLimiter. A key's window opens with its
// first event and lasts its length, as Redis counters do: the two behave
// alike, so that falling back from one to the other changes no limit.
type Memory struct {
	clock authd.Clock

	mu      sync.Mutex
	windows map[string]*window
	sweep   time.Time
}

type window struct {
	end   time.Time
	count int
}

var _ authd.RateLimiter = (*Memory)(nil)

// NewMemory returns an empty limiter on clock.
func NewMemory(clock authd.Clock) *Memory {
	return &Memory{clock: clock, windows: map[string]*window{}}
}

// Allow implements authd.RateLimiter.
func (m *Memory) Allow(_ context.Context, key string, limit int, length time.Duration) (time.Duration, error) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prune(now)
	w, ok := m.windows[key]
	if !ok || !now.Before(w.end) {
		w = &window{end: now.Add(length)}
		m.windows[key] = w
	}
	w.count++
	if w.count > limit {
		return w.end.Sub(now), nil
	}
	return 0, nil
}

// prune drops ended windows at most once a minute, so memory follows the
// number of recent keys rather than every key ever seen.
func (m *Memory) prune(now time.Time) {
	if now.Before(m.sweep) {
		return
	}
	m.sweep = now.Add(time.Minute)
	for k, w := range m.windows {
		if !now.Before(w.end) {
			delete(m.windows, k)
		}
	}
}
