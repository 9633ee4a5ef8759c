package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/authd/authd"
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
	m.prune(now)
	l, ok := m.keys[key]
	if !ok {
		l = &lockout{}
		m.keys[key] = l
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

// prune drops keys neither locked nor remembering failures, at most once a
// minute, so that memory follows the recent failures only.
func (m *MemoryLockouts) prune(now time.Time) {
	if now.Before(m.sweep) {
		return
	}
	m.sweep = now.Add(time.Minute)
	for k, l := range m.keys {
		if !now.Before(l.until) && !now.Before(l.lastFailure.Add(l.forget)) {
			delete(m.keys, k)
		}
	}
}
