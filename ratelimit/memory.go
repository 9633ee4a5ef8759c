// Package ratelimit counts requests per key in fixed windows, in memory for
// one instance, or in Redis so that every instance shares the counts (and in
// memory again while Redis cannot be reached).
package ratelimit

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/authd/authd"
)

// Memory is an in-memory authd.RateLimiter. A key's window opens with its
// first event and lasts its length, as Redis counters do: the two behave
// alike, so that falling back from one to the other changes no limit. It
// holds at most maxWindows keys.
type Memory struct {
	clock authd.Clock
	max   int // windows kept at most

	mu      sync.Mutex
	windows map[string]*list.Element // of *window
	opened  list.List                // *window, the earliest opened first
	sweep   time.Time                // the next sweep of ended windows
	forced  time.Time                // the last sweep a full limiter forced
}

type window struct {
	key   string
	end   time.Time
	count int
}

var _ authd.RateLimiter = (*Memory)(nil)

// Monotonic is the clock limits run on outside tests: time.Now with its
// monotonic reading, which authd.SystemClock's UTC drops. Limits measure
// durations (only a Redis lock's end is a wall time, as an account's
// lock's is), so a step of the wall clock (NTP, a virtual machine
// resumed) must not move them:
// stepped back an hour, it held a one-minute window, an address's lock and
// the next try of an unreachable Redis an hour longer; stepped on, it
// ended them early. (An account's lock is a stored time, on the wall
// clock: in memory mode the two part only while such a step lasts.)
type Monotonic struct{}

// Now returns time.Now(), its monotonic reading kept.
func (Monotonic) Now() time.Time { return time.Now() }

// maxWindows bounds the keys Memory counts (about 200 bytes each): keys
// come from client addresses and emails, which whoever sends requests
// chooses (an IPv6 block holds many /64 networks).
const maxWindows = 200_000

// NewMemory returns an empty limiter on clock.
func NewMemory(clock authd.Clock) *Memory {
	return &Memory{clock: clock, max: maxWindows, windows: map[string]*list.Element{}}
}

// Allow implements authd.RateLimiter.
func (m *Memory) Allow(_ context.Context, key string, limit int, length time.Duration) (time.Duration, error) {
	return m.count(key, limit, length, false), nil
}

// AllowUnder implements authd.RateLimiter.
func (m *Memory) AllowUnder(_ context.Context, key string, limit int, length time.Duration) (time.Duration, error) {
	return m.count(key, limit, length, true), nil
}

// count is Allow, and AllowUnder when under: it returns the wait.
func (m *Memory) count(key string, limit int, length time.Duration, under bool) time.Duration {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prune(now)
	e, ok := m.windows[key]
	if ok && !now.Before(e.Value.(*window).end) {
		m.opened.Remove(e)
		delete(m.windows, key)
		ok = false
	}
	if !ok {
		if len(m.windows) >= m.max {
			m.makeRoom(now)
		}
		e = m.opened.PushBack(&window{key: key, end: now.Add(length)})
		m.windows[key] = e
	}
	w := e.Value.(*window)
	if under && w.count >= limit {
		return w.end.Sub(now)
	}
	w.count++
	if w.count > limit {
		return w.end.Sub(now)
	}
	return 0
}

// Refund implements authd.RateLimiter.
func (m *Memory) Refund(_ context.Context, key string) error {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.windows[key]; ok {
		if w := e.Value.(*window); now.Before(w.end) && w.count > 0 {
			w.count--
		}
	}
	return nil
}

// prune drops ended windows at most once a minute, so memory follows the
// number of recent keys rather than every key ever seen.
func (m *Memory) prune(now time.Time) {
	if now.Before(m.sweep) {
		return
	}
	m.sweep = now.Add(time.Minute)
	for k, e := range m.windows {
		if !now.Before(e.Value.(*window).end) {
			m.opened.Remove(e)
			delete(m.windows, k)
		}
	}
}

// makeRoom makes room for a new key in a full limiter: the ended windows
// go first (a sweep at most once a second), and failing that the window
// opened earliest, whose count starts over. Refusing new keys instead
// would refuse every client not yet seen, and counting them nowhere would
// limit none of them; to reset a live count this way takes as many fresh
// keys as the limiter holds.
func (m *Memory) makeRoom(now time.Time) {
	if !now.Before(m.forced.Add(time.Second)) {
		m.forced, m.sweep = now, time.Time{}
		m.prune(now)
	}
	if len(m.windows) >= m.max {
		e := m.opened.Front()
		m.opened.Remove(e)
		delete(m.windows, e.Value.(*window).key)
	}
}
