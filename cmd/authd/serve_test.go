package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd"
)

// hungSweep is a store whose sweep for expired locks hangs until its
// context ends, as behind a row lock or a connection that died unseen.
type hungSweep struct {
	authd.Store
	calls    atomic.Int32
	deadline chan time.Time // the sweep's deadline; zero if it had none
}

func (h *hungSweep) ExpiredLocks(ctx context.Context, now time.Time, limit int) ([]uuid.UUID, error) {
	h.calls.Add(1)
	d, _ := ctx.Deadline()
	h.deadline <- d
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestSweepLocksHungDoesNotHoldMaintain: a sweep of expired locks that
// hangs returns maintain's loop to its catch-ups at once, is not started
// again while it runs, and is given up before the next tick; maintain's
// end waits for it.
func TestSweepLocksHungDoesNotHoldMaintain(t *testing.T) {
	t.Parallel()
	db, _ := migratedWithUser(t, sqliteEnv(t), "sweep@example.org")
	store := &hungSweep{Store: db, deadline: make(chan time.Time, 2)}
	a := &App{logger: slog.New(slog.NewTextHandler(io.Discard, nil)), clock: authd.SystemClock{}}
	a.service = authd.NewService(authd.Config{}, authd.Deps{Store: store})
	ctx, cancel := context.WithCancel(context.Background())
	var sweeps sync.WaitGroup
	returned := make(chan struct{})
	go func() {
		a.sweepLocks(ctx, &sweeps)
		a.sweepLocks(ctx, &sweeps) // the next tick, while the first still hangs
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("sweepLocks waited for the hung sweep")
	}
	// The deadline is the sweep's clock reading plus the timeout: read
	// before now, so at most the timeout past now, and still ahead.
	if d := <-store.deadline; d.IsZero() || time.Until(d) > lockSweepTimeout || time.Until(d) <= 0 {
		t.Errorf("the sweep's deadline: %v from now; want at most %v", time.Until(d), lockSweepTimeout)
	}
	if lockSweepTimeout >= 30*time.Second {
		t.Errorf("lockSweepTimeout %v: not under the interval between sweeps", lockSweepTimeout)
	}
	ended := make(chan struct{})
	go func() { sweeps.Wait(); close(ended) }()
	select {
	case <-ended:
		t.Fatal("the hung sweep ended before its context")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	<-ended
	if n := store.calls.Load(); n != 1 {
		t.Errorf("%d sweeps ran at once; want 1", n)
	}
	a.sweepLocks(context.Background(), &sweeps) // the running mark is gone with the sweep
	if d := <-store.deadline; d.IsZero() {
		t.Error("the next sweep had no deadline")
	}
}

// TestServeBoundsConnectionsPerClient: serve's public listener holds at
// most AUTHD_MAX_CONNECTIONS_PER_IP connections from one address (past
// them a new one is answered 429 and closed), except from a trusted proxy.
func TestServeBoundsConnectionsPerClient(t *testing.T) {
	t.Parallel()
	for _, proxy := range []bool{false, true} {
		env := sqliteEnv(t)
		env["AUTHD_MAX_CONNECTIONS_PER_IP"] = "2"
		if proxy {
			env["AUTHD_TRUSTED_PROXIES"] = "127.0.0.0/8"
		}
		s := startServe(t, env)
		statuses := make([]int, 3)
		for i := range statuses {
			c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close() // held open: each counts
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("connection %d: %v", i+1, err)
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}
		want := []int{200, 200, 429}
		if proxy {
			want = []int{200, 200, 200}
		}
		if !slices.Equal(statuses, want) {
			t.Errorf("three connections held open from one address (trusted proxy %v): %v, want %v", proxy, statuses, want)
		}
		s.stop(t)
	}
}

// TestServeBoundsTheHeaderBlock: a request whose line and headers pass 16
// KiB gets Go's plain 431 (README: "a header block over 16 KiB"); one just
// under it is served.
func TestServeBoundsTheHeaderBlock(t *testing.T) {
	t.Parallel()
	s := startServe(t, sqliteEnv(t))
	status := func(block int) int {
		t.Helper()
		c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		head := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
		fmt.Fprint(c, head+strings.Repeat("a", block-len(head)-len("\r\n\r\n"))+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("a header block of %d bytes: %v", block, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(16<<10 - 64); got != http.StatusOK {
		t.Errorf("a header block just under 16 KiB: %d, want 200", got)
	}
	if got := status(16<<10 + 64); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a header block just over 16 KiB: %d, want 431", got)
	}
}
