// Package shedlog tells requests shed for want of capacity (authd.ErrBusy)
// in the log at warn level, at most once an Interval with how many: an
// answer by design under load, which a flood from outside must not turn
// into as many error lines, drowning real ones. So are requests failed
// alike by an outage (at error level where the operator must act): under
// load a line each would flood the log, and a disk that is full already.
package shedlog

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Interval is the least time between two lines (a variable for tests).
var Interval = time.Second

// Log counts shed requests between its lines, which say msg to logger.
type Log struct {
	logger *slog.Logger
	level  slog.Level
	msg    string

	mu      sync.Mutex
	last    time.Time
	count   int
	lastErr error       // the latest NoteError's, told with the count
	attrs   []any       // likewise
	pending *time.Timer // tells the count held back, once Interval has passed
}

// New returns a Log whose lines say msg to logger, at warn level.
func New(logger *slog.Logger, msg string) *Log { return NewAt(logger, slog.LevelWarn, msg) }

// NewAt returns a Log whose lines say msg to logger at level.
func NewAt(logger *slog.Logger, level slog.Level, msg string) *Log {
	return &Log{logger: logger, level: level, msg: msg}
}

// Note counts one shed request and writes the line with the count since
// the last one: at once when Interval has passed since then, else once it
// has (so that a burst's end is told too, not at the next shed request,
// hours later).
func (l *Log) Note(ctx context.Context) { l.NoteError(ctx, nil) }

// NoteError is Note for a request that failed with err (nil: none to
// tell) and slog attributes (a hint for the operator): the line tells the
// latest such error and attributes with the count.
func (l *Log) NoteError(ctx context.Context, err error, attrs ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count++
	if err != nil {
		l.lastErr, l.attrs = err, slices.Clone(attrs) // the caller's array may be reused
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
	args := []any{"requests", l.count}
	if l.lastErr != nil {
		args = append(append(args, "last_err", l.lastErr), l.attrs...)
	}
	l.logger.Log(ctx, l.level, l.msg, args...)
	l.count, l.last, l.lastErr, l.attrs = 0, time.Now(), nil, nil
}

// Outages tells requests that an outage failed (503 with Retry-After),
// sampled as Log does: those without a hint at warn level (the database
// unreachable or slow, which passes by itself), those with one at error
// level with the hint (the operator must act: a disk full, a database file
// replaced, a lock held elsewhere), each hint sampled apart, so that a
// rare one (a file replaced) is told at once beside a stream of another.
type Outages struct {
	logger *slog.Logger
	prefix string
	down   *Log

	mu      sync.Mutex
	refused map[string]*Log // by hint: the store's few fixed texts
}

// maxHints bounds Outages' logs by hint; past it one more takes the rest.
const maxHints = 32

// NewOutages returns Outages whose lines begin with prefix ("" or "openid
// provider: ").
func NewOutages(logger *slog.Logger, prefix string) *Outages {
	return &Outages{logger: logger, prefix: prefix, refused: map[string]*Log{},
		down: New(logger, prefix+"requests failed: unavailable (the database is unreachable or slow; 503 with Retry-After)")}
}

// Note counts one request failed with err, which hint (maybe "") explains
// to the operator; attrs name the request (told for the latest).
func (o *Outages) Note(ctx context.Context, err error, hint string, attrs ...any) {
	if hint == "" {
		o.down.NoteError(ctx, err, attrs...)
		return
	}
	o.mu.Lock()
	l, ok := o.refused[hint]
	if !ok {
		key := hint
		if len(o.refused) >= maxHints {
			key = "" // the rest share one log, each line with its latest hint
		}
		if l, ok = o.refused[key]; !ok {
			l = NewAt(o.logger, slog.LevelError,
				o.prefix+"requests failed: the database refused them (503 with Retry-After; the hint says what to do)")
			o.refused[key] = l
		}
	}
	o.mu.Unlock()
	l.NoteError(ctx, err, append(slices.Clone(attrs), "hint", hint)...)
}

// Flush tells every count held back, as Log.Flush.
func (o *Outages) Flush() {
	o.down.Flush()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range o.refused {
		l.Flush()
	}
}
