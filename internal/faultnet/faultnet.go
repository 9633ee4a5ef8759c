// Package faultnet is a TCP proxy that fakes network and server faults
// between authd and PostgreSQL, Redis or anything else it dials: cut every
// connection, stall them (bytes silently dropped, nothing closed), leave
// new ones unanswered, refuse new ones, or stop listening and listen again on the same port. The real server is never touched, so the tests and runs that
// share it are unaffected. It serves authd's tests and the fault run of
// authd-load; the service never imports it.
package faultnet

import (
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards each connection accepted on its address to its target.
type Proxy struct {
	target string

	mu      sync.Mutex
	addr    string
	ln      net.Listener // nil while closed
	down    bool
	silent  bool // new connections are taken and never answered
	hushed  int  // connections taken while silent
	refused int
	cuts    int // cutLocked calls, so that a connection dialling through a cut is cut too
	conns   map[net.Conn]struct{}
	stalls  atomic.Int64 // Stall calls: a connection forwards only while it is the count it began with
	delay   atomic.Int64 // nanoseconds each chunk a client sends waits before it is forwarded (SetDelay)

	wg      sync.WaitGroup
	running atomic.Int64 // goroutines not yet ended, for the package's tests
}

// Listen starts a proxy on addr ("127.0.0.1:0" for any free port) that
// forwards to target (host:port).
func Listen(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy for %s: %w", target, err)
	}
	p := &Proxy{target: target, conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	return p, nil
}

// ListenURL starts a proxy on a free loopback port for the server of a URL
// (postgres://…, redis://…) and returns it with the URL through it.
func ListenURL(server string) (*Proxy, string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return nil, "", err
	}
	p, err := Listen("127.0.0.1:0", u.Host)
	if err != nil {
		return nil, "", err
	}
	u.Host = p.Addr()
	return p, u.String(), nil
}

// Addr is the host:port clients dial; it stays the same across Reopen.
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Cut closes every open connection and goes on accepting new ones, as a
// restarting server looks to the clients it had.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutLocked()
}

// Stall makes every open connection drop what it carries from now on,
// silently: nothing is closed (no FIN, no RST), as a connection through a
// failed-over server, or a NAT or firewall that forgot its state, looks to
// both ends. New connections are forwarded.
func (p *Proxy) Stall() {
	p.stalls.Add(1)
}

// SetSilent(true) makes new connections silent: accepted, and what they
// carry read and dropped, never forwarded, as a server (or a load
// balancer in front of a dead one) that takes a connection and never
// answers looks to its clients. Open connections go on as they were;
// SetSilent(false) forwards new ones again, and the silent ones stay so
// until the client gives up (or Cut, SetDown, Close).
func (p *Proxy) SetSilent(silent bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.silent = silent
}

// Hushed is how many connections were taken while silent (SetSilent).
func (p *Proxy) Hushed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hushed
}

// SetDown(true) closes every open connection and then accepts new ones only
// to close them at once, counting them (Refused), as an unreachable server
// looks to its clients; SetDown(false) forwards again.
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		p.cutLocked()
	}
}

// Refused is how many connections were closed unforwarded while down.
func (p *Proxy) Refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

// Close stops listening, so that the port refuses connections, closes
// every open one, and returns once the proxy's goroutines have ended.
// Closing a closed proxy does nothing more.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	p.cutLocked()
	p.mu.Unlock()
	p.wg.Wait()
}

// Reopen listens again on the address of a closed proxy, retrying for a few
// seconds if the kernel does not yet give the port back.
func (p *Proxy) Reopen() error {
	p.mu.Lock()
	open, addr := p.ln != nil, p.addr
	p.mu.Unlock()
	if open {
		return fmt.Errorf("proxy for %s: already listening on %s", p.target, addr)
	}
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			p.serve(ln)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("proxy for %s: %w", p.target, err)
}

func (p *Proxy) cutLocked() {
	p.cuts++
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// serve makes ln the proxy's listener and accepts on it until it closes.
func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.spawn(func() { p.accept(ln) })
}

func (p *Proxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down, silent, cuts := p.down, p.silent && p.ln == ln, p.cuts
		if down {
			p.refused++
		} else if silent {
			p.conns[c] = struct{}{} // closed by Cut, SetDown and Close
			p.hushed++
		}
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		if silent {
			p.spawn(func() { p.pipe(nil, c, 0, true) })
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.ln != ln || p.down || p.cuts != cuts { // closed, down or cut while dialling
			p.mu.Unlock()
			c.Close()
			up.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		stalls := p.stalls.Load()
		p.spawn(func() { p.pipe(up, c, stalls, true) })
		p.spawn(func() { p.pipe(c, up, stalls, false) })
	}
}

// SetDelay makes what clients send wait d before it is forwarded (0: none),
// so that every round trip takes d more: a server far away.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// pipe copies src to dst until either ends, then closes both, which ends
// the other direction's pipe too. Once the proxy has stalled since the
// connection began (stalls), what src sends is read and dropped; with no
// dst (a silent connection) it always is. What a client sends (fromClient)
// waits the proxy's delay first.
func (p *Proxy) pipe(dst, src net.Conn, stalls int64, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if d := time.Duration(p.delay.Load()); n > 0 && d > 0 && fromClient {
			time.Sleep(d)
		}
		if n > 0 && dst != nil && p.stalls.Load() == stalls {
			if _, err := dst.Write(buf[:n]); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if dst != nil {
		dst.Close()
	}
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *Proxy) spawn(f func()) {
	p.running.Add(1)
	p.wg.Go(func() {
		defer p.running.Add(-1)
		f()
	})
}
