package main

import (
	"runtime"
	"testing"

	"github.com/authd/authd/password"
)

// TestRoomBesideHashing: serve gives the scheduler as many Ps again as it
// has hashing workers (so that a hash on every core never holds up a
// flow's next step), unless the operator set GOMAXPROCS; and the workers
// stay one per core however often that runs (tests start serve again and
// again in one process).
func TestRoomBesideHashing(t *testing.T) {
	was := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(was) })
	t.Setenv("GOMAXPROCS", "")
	for range 2 {
		h := password.NewHasher(password.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}, password.Policy{MinLength: 12})
		if h.Workers != password.Cores {
			t.Fatalf("%d hashing workers, want one per core (%d)", h.Workers, password.Cores)
		}
		roomBesideHashing(h.Workers)
		if got := runtime.GOMAXPROCS(0); got != 2*password.Cores {
			t.Errorf("GOMAXPROCS %d, want %d", got, 2*password.Cores)
		}
	}
	runtime.GOMAXPROCS(3)
	t.Setenv("GOMAXPROCS", "3")
	roomBesideHashing(password.Cores)
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS %d after the operator set 3, want 3", got)
	}
}
