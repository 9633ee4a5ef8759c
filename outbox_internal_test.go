package authd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// TestPassLogTellsAnOutageOnce: an outage that fails every outbox pass (each
// poll, 2 s) is told when it begins, then once a minute with how many
// passes failed, and once when it ends; not a line a pass.
func TestPassLogTellsAnOutageOnce(t *testing.T) {
	var buf bytes.Buffer
	l := passLog{logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	down := errors.New("the database is down")

	l.note(t0, nil) // working: nothing to tell
	at := t0
	for range 90 { // three minutes of failed passes, one each 2 s
		at = at.Add(2 * time.Second)
		l.note(at, down)
	}
	l.note(at.Add(2*time.Second), nil)
	l.note(at.Add(4*time.Second), nil)

	var lines []map[string]any
	for line := range bytes.Lines(buf.Bytes()) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		lines = append(lines, rec)
	}
	type told struct {
		level, msg string
		failed     float64
	}
	want := []told{
		{"ERROR", "mail outbox", 0},                        // at 2 s
		{"ERROR", "mail outbox: passes still failing", 30}, // at 62 s: 31 s … 62 s
		{"ERROR", "mail outbox: passes still failing", 30}, // at 122 s
		{"INFO", "mail outbox: passes work again", 29},     // at 182 s: 124 … 180 s untold
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d: %s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		got := told{level: lines[i]["level"].(string), msg: lines[i]["msg"].(string)}
		got.failed, _ = lines[i]["failed_passes"].(float64)
		if got != w {
			t.Errorf("line %d: %+v, want %+v", i, got, w)
		}
	}
	if lines[0]["err"] != down.Error() || lines[1]["err"] != down.Error() {
		t.Errorf("the error is not told: %s", buf.String())
	}
	if d := lines[3]["failing_for"]; d != float64(3*time.Minute) { // slog's JSON: nanoseconds
		t.Errorf("failing_for %v, want 3m", d)
	}

	// Another error within the minute is told at once: the relay's, say,
	// after the database's.
	buf.Reset()
	l.note(t0, down)
	relay := errors.New("535 authentication failed")
	l.note(t0.Add(2*time.Second), down)
	l.note(t0.Add(4*time.Second), relay)
	l.note(t0.Add(6*time.Second), relay)
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 2 || !bytes.Contains(buf.Bytes(), []byte("535 authentication failed")) {
		t.Errorf("a new error within the minute: %s; want the first line, then one telling the new error", buf.String())
	}
	l = passLog{logger: l.logger}

	// Failures not yet told when the sender stops are told then.
	buf.Reset()
	l.note(t0, down)
	l.note(t0.Add(2*time.Second), down)
	l.stop(t0.Add(3 * time.Second))
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 2 || !bytes.Contains(buf.Bytes(), []byte(`"failed_passes":1`)) {
		t.Errorf("at the sender's stop: %s; want the run's first line, then one with the pass not told", buf.String())
	}
	buf.Reset()
	l = passLog{logger: l.logger}
	l.note(t0, nil)
	l.stop(t0)
	if buf.Len() != 0 {
		t.Errorf("a stop with nothing failing told %s", buf.String())
	}
}

// lateContext is a context whose deadline has passed while its timer has
// not yet ended it: the moment a connection given that deadline fails.
type lateContext struct{ context.Context }

func (lateContext) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// TestRanOut: a send that failed on its pass's deadline is the pass's time
// running out (a stop), even before the context's timer has ended it, so
// that the mail is queued again at once rather than counted as the
// relay's failure; a pass with time left, or none set, has not run out.
func TestRanOut(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	later, cancelLater := context.WithTimeout(context.Background(), time.Hour)
	defer cancelLater()
	for name, c := range map[string]struct {
		ctx  context.Context
		want bool
	}{
		"ended":                          {ended, true},
		"deadline passed, not yet ended": {lateContext{context.Background()}, true},
		"deadline ahead":                 {later, false},
		"no deadline":                    {context.Background(), false},
	} {
		if got := ranOut(c.ctx); got != c.want {
			t.Errorf("%s: ranOut = %v, want %v", name, got, c.want)
		}
	}
}
