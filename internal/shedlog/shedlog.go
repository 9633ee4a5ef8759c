// Package shedlog tells requests shed for want of capacity (authd.ErrBusy)
// in the log at warn level, at most once an Interval with how many: an
// answer by design under load, which a flood from outside must not turn
// into as many error lines, drowning real ones.
package shedlog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Interval is the least time between two lines (a variable for tests).
var Interval = time.Second

// Log counts shed requests between its lines. The zero Log is ready.
type Log struct {
	mu      sync.Mutex
	last    time.Time
	count   int
	pending *time.Timer // tells the count held back, once Interval has passed
}

// Note counts one shed request and writes msg to logger with the count
// since the last line: at once when Interval has passed since then, else
// once it has (so that a burst's end is told too, not at the next shed
// request, hours later).
func (l *Log) Note(ctx context.Context, logger *slog.Logger, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count++
	if wait := Interval - time.Since(l.last); wait > 0 {
		if l.pending == nil {
			l.pending = time.AfterFunc(wait, func() {
				l.mu.Lock()
				defer l.mu.Unlock()
				l.pending = nil
				l.flush(context.Background(), logger, msg) // the count's, not one request's
			})
		}
		return
	}
	l.flush(ctx, logger, msg)
}

// flush writes the count held back, if any; with mu held.
func (l *Log) flush(ctx context.Context, logger *slog.Logger, msg string) {
	if l.count == 0 {
		return
	}
	logger.WarnContext(ctx, msg, "requests", l.count)
	l.count, l.last = 0, time.Now()
}
