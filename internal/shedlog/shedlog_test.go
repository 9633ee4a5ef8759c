package shedlog

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/syncbuf"
)

// TestNoteSamples: the first shed request is told at once; those within
// Interval of a line are counted and told together once it has passed,
// without waiting for another shed request.
func TestNoteSamples(t *testing.T) {
	defer func(d time.Duration) { Interval = d }(Interval)
	Interval = 50 * time.Millisecond
	var out syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&out, nil))
	l := New(logger, "shed")
	for range 5 {
		l.Note(context.Background())
	}
	if got := out.String(); strings.Count(got, "level=WARN") != 1 || !strings.Contains(got, "requests=1") {
		t.Fatalf("five at once: %q, want one warn line counting the first", got)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out.String(), "requests=4"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the four held back were never told: %q", out.String())
		}
	}
	if got := out.String(); strings.Count(got, "level=WARN") != 2 {
		t.Errorf("after the burst: %q, want two lines", got)
	}
}

// TestFlushTellsTheTail: at shutdown the count held back is told at once,
// and once: not by the timer too, nor lost with it.
func TestFlushTellsTheTail(t *testing.T) {
	defer func(d time.Duration) { Interval = d }(Interval)
	Interval = 50 * time.Millisecond
	var out syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&out, nil))
	l := New(logger, "shed")
	l.Flush() // nothing held back: no line
	if got := out.String(); got != "" {
		t.Fatalf("flush of nothing: %q", got)
	}
	for range 3 {
		l.Note(context.Background())
	}
	l.Flush()
	if got := out.String(); strings.Count(got, "level=WARN") != 2 || !strings.Contains(got, "requests=2") {
		t.Fatalf("after flush: %q, want the first line and one counting the two held back", got)
	}
	l.Flush()
	time.Sleep(3 * Interval) // past the timer the flush stopped
	if got := out.String(); strings.Count(got, "level=WARN") != 2 {
		t.Errorf("told again, by a second flush or the timer: %q", got)
	}
}

// TestNoteErrorTellsTheLatest: a line of failed requests names the latest
// error among those it counts, and the next line only its own.
func TestNoteErrorTellsTheLatest(t *testing.T) {
	var out syncbuf.Buffer
	l := New(slog.New(slog.NewTextHandler(&out, nil)), "failed")
	l.NoteError(context.Background(), errors.New("first"))
	l.NoteError(context.Background(), errors.New("second"))
	l.NoteError(context.Background(), errors.New("third"))
	l.Flush()
	l.Note(context.Background())
	l.Flush()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "last_err=first") ||
		!strings.Contains(lines[1], "requests=2 last_err=third") || strings.Contains(lines[2], "last_err") {
		t.Errorf("lines %q, want the first told with its error, two with the latest, then one without", lines)
	}
}

// TestOutagesTellEachHint: outages with different hints are sampled apart:
// a rare one (a database file replaced) is told at once beside a stream of
// another (a lock held elsewhere), which shares its lines; unhinted ones
// go to a line of their own at warn level.
func TestOutagesTellEachHint(t *testing.T) {
	defer func(d time.Duration) { Interval = d }(Interval)
	Interval = time.Hour // nothing held back is told but by Flush
	var out syncbuf.Buffer
	o := NewOutages(slog.New(slog.NewTextHandler(&out, nil)), "")
	ctx := context.Background()
	for range 50 {
		o.Note(ctx, errors.New("lock timeout"), "another session holds a lock", "request_id", "busy")
	}
	o.Note(ctx, errors.New("file replaced"), "stop authd, put the database back", "request_id", "rare")
	o.Note(ctx, errors.New("connection refused"), "", "request_id", "down")
	got := out.String()
	if !strings.Contains(got, `request_id=rare hint="stop authd, put the database back"`) ||
		!strings.Contains(got, "request_id=down") || strings.Count(got, "level=ERROR") != 2 || strings.Count(got, "level=WARN") != 1 {
		t.Fatalf("before the interval:\n%s\nwant the first of each hint told at once (two error lines), the outage at warn", got)
	}
	o.Flush()
	if got := out.String(); !strings.Contains(got, `requests=49 last_err="lock timeout" request_id=busy`) {
		t.Errorf("after the flush:\n%s\nwant the 49 held back told with their hint's line", got)
	}
}

// TestNoteKeepsItsAttrs: the attributes told later are those noted, not
// what the caller's reused array holds by then.
func TestNoteKeepsItsAttrs(t *testing.T) {
	defer func(d time.Duration) { Interval = d }(Interval)
	Interval = time.Hour
	var out syncbuf.Buffer
	l := New(slog.New(slog.NewTextHandler(&out, nil)), "shed")
	ctx := context.Background()
	l.Note(ctx) // told at once: the next is held back
	buf := make([]any, 2, 8)
	buf[0], buf[1] = "request_id", "first"
	l.NoteError(ctx, errors.New("e"), buf...)
	buf[1] = "reused"
	l.Flush()
	if got := out.String(); !strings.Contains(got, "request_id=first") {
		t.Errorf("held-back line:\n%s\nwant the attributes as noted", got)
	}
}
