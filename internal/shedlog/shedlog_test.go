package shedlog

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestNoteSamples: the first shed request is told at once, those within
// Interval of a line are only counted, and the next line says how many
// there were since the last.
func TestNoteSamples(t *testing.T) {
	var out bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&out, nil))
	var l Log
	for range 5 {
		l.Note(context.Background(), logger, "shed")
	}
	if got := out.String(); strings.Count(got, "level=WARN") != 1 || !strings.Contains(got, "requests=1") {
		t.Fatalf("five at once: %q, want one warn line counting the first", got)
	}
	l.mu.Lock()
	l.last = time.Now().Add(-Interval) // as if a second had passed
	l.mu.Unlock()
	l.Note(context.Background(), logger, "shed")
	if got := out.String(); strings.Count(got, "level=WARN") != 2 || !strings.Contains(got, "requests=5") {
		t.Errorf("a second later: %q, want a second line counting the four held back and this one", got)
	}
}
