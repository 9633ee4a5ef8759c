package faultnet

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echoServer answers every line with the same line, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func listen(t *testing.T) *Proxy {
	t.Helper()
	p, err := Listen("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// dial connects to the proxy, with a deadline so that a broken proxy fails
// the test instead of hanging it.
func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// echo sends a line through c and returns what came back.
func echo(c net.Conn, line string) (string, error) {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if len(got) > 0 {
		got = got[:len(got)-1]
	}
	return got, err
}

func wantEcho(t *testing.T, c net.Conn, line string) {
	t.Helper()
	if got, err := echo(c, line); got != line || err != nil {
		t.Fatalf("echo of %q through the proxy = %q, %v", line, got, err)
	}
}

// wantClosed: a read on c ends with an error other than its deadline.
func wantClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %s: %v, want the connection closed", what, err)
	}
}

func TestForwardsBothWays(t *testing.T) {
	p := listen(t)
	c := dial(t, p)
	wantEcho(t, c, "ping")
	wantEcho(t, c, "pong")
}

func TestCut(t *testing.T) {
	p := listen(t)
	a, b := dial(t, p), dial(t, p)
	wantEcho(t, a, "a")
	wantEcho(t, b, "b")
	p.Cut()
	wantClosed(t, a, "after Cut")
	wantClosed(t, b, "after Cut")
	wantEcho(t, dial(t, p), "still listening")
	if n := p.Refused(); n != 0 {
		t.Errorf("Refused() = %d after a cut, want 0", n)
	}
}

// TestStall: a stalled connection stays open and answers nothing (its
// reads time out, they do not end); a new one is forwarded.
func TestStall(t *testing.T) {
	p := listen(t)
	old := dial(t, p)
	wantEcho(t, old, "before")
	p.Stall()
	old.SetDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := echo(old, "into the void")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("a stalled connection: %v, want its read to time out, the connection open", err)
	}
	wantEcho(t, dial(t, p), "a new connection")
}

// TestSetSilent: a connection made while silent is taken and answers
// nothing (its read times out, it is not closed), one made before goes on,
// and once no longer silent a new one is forwarded; Close ends the silent
// one.
func TestSetSilent(t *testing.T) {
	p := listen(t)
	before := dial(t, p)
	wantEcho(t, before, "before")
	p.SetSilent(true)
	quiet := dial(t, p)
	quiet.SetDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := echo(quiet, "unheard")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("a connection made while silent: %v, want its read to time out, the connection open", err)
	}
	wantEcho(t, before, "a connection made before")
	if n := p.Hushed(); n != 1 {
		t.Errorf("Hushed() = %d after one connection while silent", n)
	}
	p.SetSilent(false)
	wantEcho(t, dial(t, p), "a new connection once no longer silent")
	quiet.SetDeadline(time.Now().Add(10 * time.Second))
	p.Close()
	wantClosed(t, quiet, "of the silent connection after Close")
}

func TestSetDown(t *testing.T) {
	p := listen(t)
	open := dial(t, p)
	wantEcho(t, open, "before")
	p.SetDown(true)
	wantClosed(t, open, "of a connection open when the proxy went down")
	for i := range 3 {
		wantClosed(t, dial(t, p), "of a connection made while down")
		if n := p.Refused(); n != i+1 {
			t.Errorf("Refused() = %d after %d connections while down", n, i+1)
		}
	}
	p.SetDown(false)
	wantEcho(t, dial(t, p), "up again")
	if n := p.Refused(); n != 3 {
		t.Errorf("Refused() = %d once up again, want 3", n)
	}
}

func TestCloseWaitsAndReopens(t *testing.T) {
	p := listen(t)
	addr := p.Addr()
	a, b := dial(t, p), dial(t, p)
	wantEcho(t, a, "a")
	wantEcho(t, b, "b")
	if n := p.running.Load(); n != 5 {
		t.Fatalf("%d goroutines with two connections, want 5 (accept and two pipes each)", n)
	}
	p.Close()
	if n := p.running.Load(); n != 0 {
		t.Fatalf("%d goroutines still running when Close returned", n)
	}
	wantClosed(t, a, "after Close")
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("a closed proxy accepted a connection")
	}
	p.Close() // again: nothing to do

	if err := p.Reopen(); err != nil {
		t.Fatal(err)
	}
	if p.Addr() != addr {
		t.Errorf("reopened on %s, want %s", p.Addr(), addr)
	}
	wantEcho(t, dial(t, p), "reopened")
	if err := p.Reopen(); err == nil {
		t.Error("Reopen of a listening proxy succeeded")
	}
}

func TestListenURL(t *testing.T) {
	p, got, err := ListenURL("postgres://user:secret@db.example.org:5432/authd?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if want := "postgres://user:secret@" + p.Addr() + "/authd?sslmode=disable"; got != want {
		t.Errorf("ListenURL = %q, want %q", got, want)
	}
	if p.target != "db.example.org:5432" {
		t.Errorf("target %q, want db.example.org:5432", p.target)
	}
}
