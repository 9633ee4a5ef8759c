// Command authd is the authd authentication service: the API server, its
// database migrations and the operator's tools, in one binary.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
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
// who will not wait for the shutdown; further hangups are ignored, since a
// closed terminal sends more than one (the shell's, then the kernel's).
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	signals := []os.Signal{os.Interrupt, syscall.SIGTERM}
	hangup := !signal.Ignored(syscall.SIGHUP)
	if hangup {
		signals = append(signals, syscall.SIGHUP)
	}
	ctx, stop := signal.NotifyContext(ctx, signals...)
	context.AfterFunc(ctx, func() {
		if hangup {
			signal.Ignore(syscall.SIGHUP)
		}
		stop()
	})
	return ctx, stop
}
