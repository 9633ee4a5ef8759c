// Package connlimit bounds the connections a listener holds open: in all,
// so that no crowd of clients can use up the process's file descriptors
// (the database's, the key files', the other listener's) or its memory,
// and per client address, so that no one client can take them all.
//
// A connection past a bound is answered at once with a bare HTTP error
// and closed: 429 past the client's share, 503 when the listener is full.
// Before refusing, a full listener closes one of its idle keep-alive
// connections, as told by the server's ConnState hook (idle: between
// requests, the next one's header not yet whole), since a client that
// keeps a connection open between requests holds no request.
package connlimit

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Listener wraps a net.Listener with the bounds. Set the server's
// ConnState to its ConnState.
type Listener struct {
	net.Listener
	max, perClient int
	exempt         func(netip.Addr) bool

	mu       sync.Mutex
	open     int
	byClient map[netip.Addr]int
	idle     map[*conn]struct{}

	refusedFull, refusedClient atomic.Int64
}

// New bounds l at most max open connections in all and perClient from one
// address (0: no bound of that kind). exempt, when not nil, names the
// addresses held to no per-client bound: trusted proxies, whose
// connections carry many clients.
func New(l net.Listener, max, perClient int, exempt func(netip.Addr) bool) *Listener {
	return &Listener{Listener: l, max: max, perClient: perClient, exempt: exempt,
		byClient: map[netip.Addr]int{}, idle: map[*conn]struct{}{}}
}

// Refused reports how many connections were refused because the listener
// was full and because their client had its share.
func (l *Listener) Refused() (full, client int64) {
	return l.refusedFull.Load(), l.refusedClient.Load()
}

// Accept returns the next connection within the bounds; those past them
// are answered and closed here.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if admitted := l.admit(c); admitted != nil {
			return admitted, nil
		}
	}
}

// admit counts c in, or answers and closes it and returns nil.
func (l *Listener) admit(c net.Conn) net.Conn {
	client := addrOf(c)
	l.mu.Lock()
	if l.perClient > 0 && (l.exempt == nil || !l.exempt(client)) && l.byClient[client] >= l.perClient {
		l.mu.Unlock()
		l.refusedClient.Add(1)
		go refuse(c, tooManyFromClient)
		return nil
	}
	var evicted *conn
	if l.max > 0 && l.open >= l.max {
		for idle := range l.idle {
			evicted = idle
			break
		}
		if evicted == nil {
			l.mu.Unlock()
			l.refusedFull.Add(1)
			go refuse(c, full)
			return nil
		}
		delete(l.idle, evicted)
	}
	l.open++
	l.byClient[client]++
	l.mu.Unlock()
	if evicted != nil {
		evicted.Close() // its count goes as it closes
	}
	return &conn{Conn: c, l: l, client: client}
}

// ConnState is the server's hook: it tells which connections are idle
// (between requests, and so closable to make room).
func (l *Listener) ConnState(c net.Conn, state http.ConnState) {
	cc, ok := c.(*conn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if state == http.StateIdle && !cc.closed {
		l.idle[cc] = struct{}{}
	} else {
		delete(l.idle, cc)
	}
}

// release counts c out.
func (l *Listener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.idle, c)
	l.open--
	if l.byClient[c.client]--; l.byClient[c.client] <= 0 {
		delete(l.byClient, c.client)
	}
}

// conn is an admitted connection, counted until its first Close.
type conn struct {
	net.Conn
	l      *Listener
	client netip.Addr
	once   sync.Once
	closed bool // under l.mu
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.closed = true
		c.l.mu.Unlock()
		c.l.release(c)
	})
	return err
}

// addrOf is c's peer address, the zero Addr when it has none (a Unix
// socket's peers all share it).
func addrOf(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// The answers to a connection past a bound: a bare HTTP/1.1 response,
// which a client sending HTTP/1.1 reads as such.
var (
	tooManyFromClient = answer("429 Too Many Requests", "Too many connections from this address.\n")
	full              = answer("503 Service Unavailable", "The server has too many connections now.\n")
)

func answer(status, body string) string {
	return fmt.Sprintf("HTTP/1.1 %s\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Content-Length: %d\r\nConnection: close\r\n\r\n%s", status, len(body), body)
}

// refuse writes answer to c, within a second, and closes it.
func refuse(c net.Conn, answer string) {
	c.SetWriteDeadline(time.Now().Add(time.Second)) //nolint:errcheck // closed either way
	c.Write([]byte(answer))                         //nolint:errcheck // a courtesy: the close is the refusal
	c.Close()
}
