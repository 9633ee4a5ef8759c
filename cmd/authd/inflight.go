package main

import (
	"net/http"
	"sync"
	"time"
)

// inflight counts the requests whose handlers run. An http.Server's
// Shutdown that times out returns while they still do; a stop waits for
// them (wait) before the database closes under their flows.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n next drops to 0; nil until wait wants it
}

// track counts h's requests while they run.
func (f *inflight) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.n++
		f.mu.Unlock()
		defer f.done()
		h.ServeHTTP(w, r)
	})
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n--; f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// running is how many handlers run.
func (f *inflight) running() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// wait waits until no handler runs or deadline passes, and returns how
// many still run.
func (f *inflight) wait(deadline time.Time) int {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return 0
	}
	if f.idle == nil {
		f.idle = make(chan struct{})
	}
	idle := f.idle
	f.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-idle:
	case <-timer.C:
	}
	return f.running()
}
