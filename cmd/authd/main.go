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
// who will not wait for the shutdown; later hangups stay caught and are
// dropped, since a closed terminal sends more than one (the shell's, then
// the kernel's). (signal.Ignore would not do: stopping the other
// notifications puts SIGHUP's default back.)
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	interrupted, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(interrupted, cancel)
	context.AfterFunc(ctx, stop) // a second SIGINT or SIGTERM: their default
	hangup := make(chan os.Signal, 1)
	if !signal.Ignored(syscall.SIGHUP) {
		signal.Notify(hangup, syscall.SIGHUP) // for the process's life: a full channel drops the rest
		go func() {
			select {
			case <-hangup:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, func() {
		cancel()
		signal.Stop(hangup)
	}
}
