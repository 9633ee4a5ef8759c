// Package connlimit bounds the connections a listener holds open: in all,
// so that no crowd of clients can use up the process's file descriptors
// (the database's, the key files', the other listener's) or its memory,
// and per client address, so that no one client can take them all.
//
// A connection past a bound is answered at once with a bare HTTP error
// and closed: 429 past the client's share, 503 when the listener is full.
// Before refusing, a full listener closes a connection that has said
// nothing for a second at least: first one that has sent no request yet
// (a crowd's silent connections must not outlast the clients' kept-alive
// ones), then the keep-alive connection idle longest, as told by the
// server's ConnState hook and by its reads: one whose next request has
// begun to arrive is not idle, and one chosen reads nothing more, so no
// request is handled on a connection that cannot carry its answer. One
// client is an IPv4 address or an IPv6 /64.
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
	// HeaderTimeout bounds, from its first byte, the arrival of the
	// header of a request on a kept-alive connection (serve's
	// ReadHeaderTimeout; New sets DefaultHeaderTimeout). net/http waits
	// for the next request's first bytes under its idle timeout (120 s)
	// and only then starts its header timeout: a client sending one byte
	// would hold a place, unevictable, that long.
	HeaderTimeout  time.Duration
	max, perClient int
	exempt         func(netip.Addr) bool

	mu       sync.Mutex
	open     int
	byClient map[netip.Prefix]int
	idle     map[*conn]time.Time // since when

	refusedFull, refusedClient, evicted atomic.Int64
}

// New bounds l at most max open connections in all and perClient from one
// client (an IPv4 address, an IPv6 /64; 0: no bound of that kind). exempt,
// when not nil, names the addresses held to no per-client bound, nor
// counted in their client's: trusted proxies, whose connections carry
// many clients.
func New(l net.Listener, max, perClient int, exempt func(netip.Addr) bool) *Listener {
	return &Listener{Listener: l, HeaderTimeout: DefaultHeaderTimeout, max: max, perClient: perClient, exempt: exempt,
		byClient: map[netip.Prefix]int{}, idle: map[*conn]time.Time{}}
}

// Refused reports how many connections were refused because the listener
// was full and because their client had its share.
func (l *Listener) Refused() (full, client int64) {
	return l.refusedFull.Load(), l.refusedClient.Load()
}

// Evicted reports how many idle connections were closed to make room.
func (l *Listener) Evicted() int64 { return l.evicted.Load() }

// Open reports how many connections the listener holds open.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
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
	peer := peerOf(c)
	client := clientOf(peer)
	counted := l.exempt == nil || !l.exempt(peer)
	l.mu.Lock()
	if l.perClient > 0 && counted && l.byClient[client] >= l.perClient {
		l.mu.Unlock()
		l.refusedClient.Add(1)
		go refuse(c, tooManyFromClient)
		return nil
	}
	var evicted *conn
	if l.max > 0 && l.open >= l.max {
		if evicted = l.longestIdle(time.Now()); evicted == nil {
			l.mu.Unlock()
			l.refusedFull.Add(1)
			go refuse(c, full)
			return nil
		}
		// Marked before the lock is let go: a request arriving on it from
		// now on is never read (Read), so never handled unanswered.
		evicted.evicted = true
		delete(l.idle, evicted) // its idle flag stays: Read takes the lock, and drops what comes
	}
	l.open++
	if counted {
		l.byClient[client]++
	}
	l.mu.Unlock()
	if evicted != nil {
		l.evicted.Add(1)
		evicted.Close() // its count goes as it closes
	}
	return &conn{Conn: c, l: l, client: client, counted: counted}
}

// DefaultHeaderTimeout is Listener.HeaderTimeout's default, serve's
// ReadHeaderTimeout.
const DefaultHeaderTimeout = 5 * time.Second

// minIdle is how long a connection must have been idle to be closed to
// make room: one just answered is likely to carry its client's next
// request at once.
const minIdle = time.Second

// longestIdle is the connection to close to make room: silent for
// minIdle at least, one that has sent no request yet before one between
// requests, and of those the one silent longest; nil when there is none.
// Under l.mu.
func (l *Listener) longestIdle(now time.Time) *conn {
	var oldest *conn
	for c, since := range l.idle {
		if now.Sub(since) < minIdle {
			continue
		}
		if oldest == nil || c.fresh && !oldest.fresh || c.fresh == oldest.fresh && since.Before(l.idle[oldest]) {
			oldest = c
		}
	}
	return oldest
}

// ConnState is the server's hook: it tells which connections are idle
// (between requests, and so closable to make room). A connection the
// server calls idle may have its next request's bytes arriving: Read
// takes it out of the idle set as they come, before the server has them.
func (l *Listener) ConnState(c net.Conn, state http.ConnState) {
	cc, ok := c.(*conn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if (state == http.StateNew || state == http.StateIdle) && !cc.closed && !cc.evicted {
		// Waiting for a request: the first, or the next.
		l.idle[cc] = time.Now()
		cc.fresh = state == http.StateNew
		cc.idle.Store(true)
	} else {
		l.busy(cc)
	}
}

// busy takes c out of the idle set. Under l.mu.
func (l *Listener) busy(c *conn) {
	delete(l.idle, c)
	c.idle.Store(false)
}

// release counts c out, closed.
func (l *Listener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c.closed = true
	l.busy(c)
	l.open--
	if !c.counted {
		return
	}
	if l.byClient[c.client]--; l.byClient[c.client] <= 0 {
		delete(l.byClient, c.client)
	}
}

// conn is an admitted connection, counted until its first Close.
type conn struct {
	net.Conn
	l       *Listener
	client  netip.Prefix
	counted bool // in its client's count (not an exempt address)
	once    sync.Once
	// Under l.mu: closed, evicted (chosen to be closed to make room, so
	// that no more of its bytes reach the server), and fresh (idle having
	// sent no request yet).
	closed, evicted, fresh bool
	// idle mirrors c's place in l.idle (set under l.mu), so that Read
	// takes the listener's lock only on a connection that may be chosen:
	// not on every read of every request.
	idle atomic.Bool
}

// Read hands the server what arrives, unless the connection was chosen
// for eviction first: then those bytes are dropped, the request they
// start never handled, and the client (told by the close) may send it
// again. Bytes handed over take the connection out of the idle set, so
// that it is not chosen while its request is handled.
func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n == 0 || !c.idle.Load() {
		// Not idle: not chosen since, as only idle ones are (and the
		// server marks a connection idle before it reads on).
		return n, err
	}
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.evicted {
		return 0, net.ErrClosed
	}
	c.l.busy(c)
	// net/http clears this deadline once it has the request's first bytes,
	// and sets its own header timeout.
	c.Conn.SetReadDeadline(time.Now().Add(c.l.HeaderTimeout)) //nolint:errcheck // a closed connection reads nothing anyway
	return n, err
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}

// peerOf is c's peer address, unmapped, the zero Addr when it has none.
func peerOf(c net.Conn) netip.Addr {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// clientOf is the client a peer's connections count against: its address,
// and for IPv6 its /64, which one host is commonly given whole (as the
// service's rate limits count it); the zero Prefix for no address. (The
// exemption is the peer's own address's: a proxy is named by it.)
func clientOf(peer netip.Addr) netip.Prefix {
	if !peer.IsValid() {
		return netip.Prefix{}
	}
	a := peer.WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
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
