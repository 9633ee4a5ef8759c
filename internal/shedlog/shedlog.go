// Package shedlog tells requests shed for want of capacity (authd.ErrBusy)
// in the log at warn level, at most once a second with how many: an answer
// by design under load, which a flood from outside must not turn into as
// many error lines, drowning real ones.
package shedlog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Interval is the least time between two lines.
const Interval = time.Second

// Log counts shed requests between its lines. The zero Log is ready.
type Log struct {
	mu    sync.Mutex
	last  time.Time
	count int
}

// Note counts one shed request and, when Interval has passed since the
// last line, writes msg to logger with the count since then.
func (l *Log) Note(ctx context.Context, logger *slog.Logger, msg string) {
	l.mu.Lock()
	l.count++
	if time.Since(l.last) < Interval {
		l.mu.Unlock()
		return
	}
	n := l.count
	l.count, l.last = 0, time.Now()
	l.mu.Unlock()
	logger.WarnContext(ctx, msg, "requests", n)
}
