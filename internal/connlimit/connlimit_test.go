package connlimit_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/authd/authd/internal/connlimit"
)

// serve runs an HTTP server on a loopback listener bounded as told and
// returns its address and the listener.
func serve(t *testing.T, max, perClient int, exempt func(netip.Addr) bool) (string, *connlimit.Listener) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := connlimit.New(raw, max, perClient, exempt)
	l.HeaderTimeout = 300 * time.Millisecond
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ConnState: l.ConnState,
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return raw.Addr().String(), l
}

// dial opens a connection, bounded in time, that a test reads answers on.
func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second)) // a hang fails the test rather than stall it
	return c, bufio.NewReader(c)
}

// get sends a request on c and returns the answer's status.
func get(t *testing.T, c net.Conn, r *bufio.Reader) int {
	t.Helper()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return status(t, r)
}

func status(t *testing.T, r *bufio.Reader) int {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestClientsShare: past its share a client's connection is answered 429
// and closed, unless its address is exempt (a trusted proxy); one closed
// frees its place.
func TestClientsShare(t *testing.T) {
	addr, l := serve(t, 0, 2, nil)
	a, ra := dial(t, addr)
	b, rb := dial(t, addr)
	if get(t, a, ra) != 200 || get(t, b, rb) != 200 {
		t.Fatal("the first two connections were not served")
	}
	_, rc := dial(t, addr)
	if got := status(t, rc); got != http.StatusTooManyRequests {
		t.Errorf("a third connection from the address: %d, want 429", got)
	}
	if _, client := l.Refused(); client != 1 {
		t.Errorf("refused for the client's share: %d, want 1", client)
	}
	a.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		d, rd := dial(t, addr)
		if get(t, d, rd) == 200 {
			break // the closed one's place
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection never freed its place")
		}
	}

	exempt, _ := serve(t, 0, 1, func(a netip.Addr) bool { return a.IsLoopback() })
	for range 3 {
		c, r := dial(t, exempt)
		if got := get(t, c, r); got != 200 {
			t.Errorf("a connection of an exempt address: %d, want 200", got)
		}
	}
	// An IPv6 proxy is exempt by its own address, not its /64's.
	raw, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Log("no IPv6 loopback here:", err)
		return
	}
	l6 := connlimit.New(raw, 0, 1, func(a netip.Addr) bool { return a == netip.IPv6Loopback() })
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), ConnState: l6.ConnState}
	go srv.Serve(l6)
	t.Cleanup(func() { srv.Close() })
	for range 3 {
		c, r := dial(t, raw.Addr().String())
		if got := get(t, c, r); got != 200 {
			t.Errorf("a connection of an exempt IPv6 address: %d, want 200", got)
		}
	}
}

// TestFullListenerClosesAnIdleConnection: a full listener makes room by
// closing the connection idle longest (a second at least); with none
// idle, the new one is answered 503.
func TestFullListenerClosesAnIdleConnection(t *testing.T) {
	addr, l := serve(t, 2, 0, nil)
	a, ra := dial(t, addr)
	if get(t, a, ra) != 200 {
		t.Fatal("the first connection was not served")
	}
	time.Sleep(100 * time.Millisecond)
	b, rb := dial(t, addr)
	if get(t, b, rb) != 200 { // a and b idle now, kept alive; a the longer
		t.Fatal("the second connection was not served")
	}
	_, rc := dial(t, addr)
	if got := status(t, rc); got != http.StatusServiceUnavailable {
		t.Errorf("a connection to the full listener whose idle ones have just answered: %d, want 503", got)
	}
	time.Sleep(1200 * time.Millisecond) // past minIdle, for both
	c, rc := dial(t, addr)
	if got := get(t, c, rc); got != 200 {
		t.Errorf("a connection to the full listener with two idle: %d, want 200", got)
	}
	if _, err := ra.ReadByte(); err == nil {
		t.Error("the connection idle longest was not closed to make room")
	}
	if got := get(t, b, rb); got != 200 {
		t.Errorf("the other idle connection: %d, want it kept and served", got)
	}
	if full, _ := l.Refused(); full != 1 || l.Evicted() != 1 || l.Open() != 2 {
		t.Errorf("refused as full %d, evicted %d, open %d; want 1, 1, 2", full, l.Evicted(), l.Open())
	}
}

// TestFullListenerClosesASilentConnectionFirst: a connection that has
// sent nothing for a second is closed to make room before any kept-alive
// one, even one idle longer: else a crowd of silent connections, each
// living its header timeout, would take every place from the clients.
func TestFullListenerClosesASilentConnectionFirst(t *testing.T) {
	addr, l := serve(t, 2, 0, nil)
	a, ra := dial(t, addr)
	if get(t, a, ra) != 200 {
		t.Fatal("the first connection was not served")
	}
	time.Sleep(100 * time.Millisecond)
	_, silent := dial(t, addr)          // sends nothing
	time.Sleep(1200 * time.Millisecond) // past minIdle, for both
	c, rc := dial(t, addr)
	if got := get(t, c, rc); got != 200 {
		t.Errorf("a connection to the full listener with a silent one: %d, want 200", got)
	}
	if _, err := silent.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the silent connection: %v; want it closed to make room", err)
	}
	if got := get(t, a, ra); got != 200 {
		t.Errorf("the kept-alive connection, idle longer: %d, want it kept and served", got)
	}
	if l.Evicted() != 1 {
		t.Errorf("evicted %d, want 1", l.Evicted())
	}
}

// TestRequestBegunIsNotCut: a connection idle long enough to be closed
// whose next request has begun to arrive (its header not yet whole, so
// the server still calls it idle) is not closed to make room: the new
// connection is refused, and the request is answered. Closed, a request
// could be handled with no way left to answer it.
func TestRequestBegunIsNotCut(t *testing.T) {
	addr, _ := serve(t, 1, 0, nil)
	a, ra := dial(t, addr)
	if get(t, a, ra) != 200 {
		t.Fatal("the first connection was not served")
	}
	time.Sleep(1200 * time.Millisecond) // past minIdle
	io.WriteString(a, "GET / HTTP/1.1\r\n")
	time.Sleep(100 * time.Millisecond) // read by the server
	_, rb := dial(t, addr)
	if got := status(t, rb); got != http.StatusServiceUnavailable {
		t.Errorf("a connection to the full listener whose one connection has a request coming: %d, want 503", got)
	}
	io.WriteString(a, "Host: x\r\n\r\n")
	if got := status(t, ra); got != 200 {
		t.Errorf("the request begun: %d, want it answered", got)
	}
}

// TestByteAfterIdleHoldsNoPlaceLong: a kept-alive connection that sends
// one byte of a next request and no more is closed within the header
// timeout, not held (unevictable: its request has begun) for the server's
// idle timeout.
func TestByteAfterIdleHoldsNoPlaceLong(t *testing.T) {
	addr, _ := serve(t, 1, 0, nil)
	a, ra := dial(t, addr)
	if get(t, a, ra) != 200 {
		t.Fatal("the first connection was not served")
	}
	// The server goes idle just after the response is out: a byte sent
	// before then is taken by net/http's background read, never by the
	// idle connection's Read, and the connection stays idle (evictable,
	// closed at the idle timeout) rather than timed as a begun request.
	time.Sleep(100 * time.Millisecond)
	io.WriteString(a, "G")
	if _, err := ra.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection after one byte: %v; want it closed by the server within its header timeout", err)
	}
	time.Sleep(50 * time.Millisecond) // its place given back
	c, rc := dial(t, addr)
	if got := get(t, c, rc); got != 200 {
		t.Errorf("a new connection after it: %d, want 200", got)
	}
}
