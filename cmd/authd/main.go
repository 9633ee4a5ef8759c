// Command authd is the authd authentication service: the API server, its
// database migrations and the operator's tools, in one binary.
package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// A reader that went away (authd admin logs | head) makes a write to
	// stdout or stderr fail with EPIPE rather than kill the process: a
	// command then says it could not write (exit 1) — a client secret
	// rotated and then lost is told — and serve goes on without its log.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}

// signalContext is ctx ended by SIGINT, SIGTERM or SIGHUP (a closed
// terminal): serve then shuts down gracefully, finishing the requests under
// way, rather than die mid-request as SIGHUP's default would have it. A
// hangup ignored at start (nohup) stays ignored. A second SIGINT or SIGTERM
// takes its default action, ending the process at once, for an operator
// who will not wait for the shutdown; later hangups stay caught and are
// dropped, since a closed terminal sends more than one (the shell's, then
// the kernel's). (signal.Ignore would not do: stopping the other
// notifications puts SIGHUP's default back.) A SIGINT or SIGTERM ignored
// at start (SIGINT, for a job a script ran in the background) would be
// ignored again once the first is handled: its second is caught instead,
// and ends the process as the default would (exit, 128 + the signal).
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	var ignored []os.Signal
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		if signal.Ignored(sig) {
			ignored = append(ignored, sig)
		}
	}
	// The context's cause names the signal, for serve's log.
	ctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil) }
	interrupted, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(interrupted, func() { cancelCause(context.Cause(interrupted)) })
	again, done := make(chan os.Signal, 1), make(chan struct{})
	context.AfterFunc(ctx, func() {
		stop() // a second SIGINT or SIGTERM: their default
		if len(ignored) == 0 {
			return
		}
		signal.Notify(again, ignored...)
		go func() {
			select {
			case sig := <-again:
				exit(128 + int(sig.(syscall.Signal)))
			case <-done:
			}
		}()
	})
	hangup := make(chan os.Signal, 1)
	if !signal.Ignored(syscall.SIGHUP) {
		signal.Notify(hangup, syscall.SIGHUP) // for the process's life: a full channel drops the rest
		go func() {
			select {
			case <-hangup:
				cancelCause(errHangup)
			case <-ctx.Done():
			}
		}()
	}
	return ctx, func() {
		cancel()
		signal.Stop(hangup)
		signal.Stop(again)
		close(done)
	}
}

// errHangup is the cause of a context a hangup ended.
var errHangup = errors.New("hangup signal received")

// exit ends the process; tests record the code instead.
var exit = os.Exit
