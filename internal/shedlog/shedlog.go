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

// Log counts shed requests between its lines, which say msg to logger.
type Log struct {
	logger *slog.Logger
	msg    string

	mu      sync.Mutex
	last    time.Time
	count   int
	lastErr error       // the latest NoteError's, told with the count
	pending *time.Timer // tells the count held back, once Interval has passed
}

// New returns a Log whose lines say msg to logger.
func New(logger *slog.Logger, msg string) *Log { return &Log{logger: logger, msg: msg} }

// Note counts one shed request and writes the line with the count since
// the last one: at once when Interval has passed since then, else once it
// has (so that a burst's end is told too, not at the next shed request,
// hours later).
func (l *Log) Note(ctx context.Context) { l.NoteError(ctx, nil) }

// NoteError is Note for a request that failed with err (nil: none to
// tell): the line tells the latest such error with the count.
func (l *Log) NoteError(ctx context.Context, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count++
	if err != nil {
		l.lastErr = err
	}
	if wait := Interval - time.Since(l.last); wait > 0 {
		if l.pending == nil {
			l.pending = time.AfterFunc(wait, func() {
				l.mu.Lock()
				defer l.mu.Unlock()
				l.pending = nil
				l.flush(context.Background()) // the count's, not one request's
			})
		}
		return
	}
	l.flush(ctx)
}

// Flush tells the count held back, if any, at once: at shutdown, after the
// last request, so that a burst's tail is not lost with the timer that
// would have told it.
func (l *Log) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		return
	}
	l.pending.Stop()
	l.pending = nil
	l.flush(context.Background())
}

// flush writes the count held back, if any; with mu held.
func (l *Log) flush(ctx context.Context) {
	if l.count == 0 {
		return
	}
	if l.lastErr != nil {
		l.logger.WarnContext(ctx, l.msg, "requests", l.count, "last_err", l.lastErr)
	} else {
		l.logger.WarnContext(ctx, l.msg, "requests", l.count)
	}
	l.count, l.last, l.lastErr = 0, time.Now(), nil
}
