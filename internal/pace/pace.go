// Package pace keeps a moving estimate of how long an operation takes, so
// that answers which must not be told apart by their timing (a wrong
// password against any hash, a mail request for any address) can all be
// given at one deadline, past nearly every run of the slowest kind.
package pace

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pace is a moving average of an operation's duration and of how far one
// run strays from it (its mean deviation), as TCP estimates a round trip
// (RFC 6298). The zero Pace knows nothing: its Deadline is zero. It is safe
// for concurrent use.
type Pace struct {
	mu      sync.Mutex   // serialises changes; reads need none
	typical atomic.Int64 // ns
	spread  atomic.Int64 // ns
}

// Set starts the estimate over: a first timing, or a test's.
func (p *Pace) Set(typical, spread time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set(typical, spread)
}

func (p *Pace) set(typical, spread time.Duration) {
	p.typical.Store(int64(typical))
	p.spread.Store(int64(spread))
}

// Learn folds in a run that took took. The first run sets the average;
// a later one counts as at most four times the average, so that one
// outlier (a run stuck behind a lock) moves the estimate by at most three
// eighths, while a lasting slow-down still lifts it within a few runs.
func (p *Pace) Learn(took time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	typical, spread := p.Typical(), time.Duration(p.spread.Load())
	if typical == 0 {
		p.set(took, took/8)
		return
	}
	took = min(took, 4*typical)
	p.typical.Store(int64(typical + (took-typical)/8))
	p.spread.Store(int64(spread + (abs(took-typical)-spread)/4))
}

// Typical is the moving average.
func (p *Pace) Typical() time.Duration { return time.Duration(p.typical.Load()) }

// Deadline is the average plus four mean deviations: past nearly every
// run, so that answers padded to it end together rather than some at the
// average and others spread around it.
func (p *Pace) Deadline() time.Duration {
	return p.Typical() + 4*time.Duration(p.spread.Load())
}

func abs(d time.Duration) time.Duration { return max(d, -d) }
