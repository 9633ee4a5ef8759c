package pace

import (
	"testing"
	"time"
)

func TestPace(t *testing.T) {
	var p Pace
	if p.Deadline() != 0 {
		t.Fatalf("a Pace that learned nothing has deadline %s, want 0", p.Deadline())
	}
	p.Learn(8 * time.Millisecond)
	if p.Typical() != 8*time.Millisecond || p.Deadline() != 12*time.Millisecond {
		t.Fatalf("after one run of 8ms: typical %s, deadline %s; want 8ms, 12ms", p.Typical(), p.Deadline())
	}
	for range 100 {
		p.Learn(16 * time.Millisecond)
	}
	if got := p.Typical(); got < 15*time.Millisecond || got > 16*time.Millisecond {
		t.Errorf("after many runs of 16ms the average is %s", got)
	}
	if got := p.Deadline() - p.Typical(); got > time.Millisecond {
		t.Errorf("runs that no longer stray leave a margin of %s", got)
	}
	p.Set(10*time.Millisecond, 0)
	p.Learn(10 * time.Second) // one run stuck behind a lock
	if got := p.Typical(); got > 10*time.Millisecond+30*time.Millisecond/8 {
		t.Errorf("one outlier of 10s moved an average of 10ms to %s; want at most 3/8 of it", got)
	}
	p.Set(time.Hour, 10*time.Minute)
	if p.Deadline() != time.Hour+40*time.Minute {
		t.Errorf("Set(1h, 10m): deadline %s, want 1h40m", p.Deadline())
	}
}
