package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// A graceful stop has one deadline, stopTimeout after the signal: within
// Kubernetes' default grace of 30 s, with room for what follows it.
// /readyz answers 503 from the signal on. The listeners close at once, or
// after AUTHD_SHUTDOWN_DELAY (during which requests are still served);
// requests in flight have until shutdownTimeout after the signal to
// finish, after which their connections are closed and their handlers
// have until the deadline (so that the flows they run, a login's count or
// a rotation, end before the database closes). The mail sender works on
// meanwhile, claims no more mail once the requests are done, and has its
// mail in hand cut at the deadline: a cut mail is queued again, due at
// once. At the deadline the background jobs stop, and the flows still
// running are ended too (Service.EndFlows: their transactions roll back),
// and given unwindTime to give their connections back. Only a database
// that stops answering holds the stop past that: recording a cut mail and
// closing the pool have 2 s each (dbCloseTimeout).
const (
	shutdownTimeout = 20 * time.Second
	stopTimeout     = 25 * time.Second
	unwindTime      = 2 * time.Second
	dbCloseTimeout  = 2 * time.Second
)

// shutdown closes the servers' listeners and waits up to drainTime for
// the requests in flight; then it closes the connections of those still
// running and waits for their handlers until end, when it ends their flows
// and waits unwindTime more, so that the database does not close under
// them. errc has the Serve errors of the serving servers still to return.
func (a *App) shutdown(ctx context.Context, servers []*http.Server, end time.Time, errc <-chan error, serving int) error {
	// The drain ends drainTime after the signal: a shutdown delay is taken
	// out of it, not out of the flows' time after it, nor added to the stop.
	drain, cancel := context.WithDeadline(context.WithoutCancel(ctx), end.Add(a.drainTime-a.stopTime))
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Go(func() {
			if srv.Shutdown(drain) != nil {
				srv.Close() // the drain ran out: its connections close, its handlers run on
			}
		})
	}
	wg.Wait()
	var errs []error
	for range serving {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	// Told by the handlers, not by Shutdown's error: a connection that
	// never sent a request holds a drain up as well.
	cut := a.requests.running()
	if cut == 0 {
		return errors.Join(errs...)
	}
	a.logger.Warn("requests outlasted the stop's drain: their connections are closed, their flows finish until "+
		"the deadline", "requests", cut, "drain", a.drainTime, "deadline", a.stopTime)
	ended := a.requests.wait(end)
	if ended == 0 {
		return stopError(errs, fmt.Sprintf("graceful shutdown: requests still running %v after the signal "+
			"had their connections closed (their flows finished): %d", a.drainTime, cut),
			"the log's request lines name them; what held them (a slow database, a lock held elsewhere) is in the lines before")
	}
	a.service.EndFlows()
	left := a.requests.wait(time.Now().Add(unwindTime))
	a.logger.Error("requests still running at the stop's deadline were ended: their transactions roll back",
		"requests", ended, "still_unwinding", left, "deadline", a.stopTime)
	return stopError(errs, fmt.Sprintf("graceful shutdown: requests still running at the stop's "+
		"deadline (%v after the signal) were ended: %d", a.stopTime, ended),
		"their transactions rolled back; what held them (a slow or unreachable database, a lock held elsewhere) is in the log")
}

// stopError tells a stop's outcome with a hint, or after the listeners'
// failures (errs), which then lead.
func stopError(errs []error, msg, hint string) error {
	if len(errs) > 0 {
		return errors.Join(append(errs, errors.New(msg))...)
	}
	return &cliError{msg: msg, hint: hint}
}

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
