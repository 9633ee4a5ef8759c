package httpapi_test

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/postgres"
	"github.com/authd/authd/storetest"
)

// proxy forwards TCP to a target until cut, which closes the listener and
// every connection, as a stopped database server would.
type proxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
}

func (p *proxy) start(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestDatabaseOutage stops "PostgreSQL" under a running instance: requests
// answer 503 with Retry-After within two seconds, and the instance recovers
// by itself when the database is back.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	dbURL, err := url.Parse(storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: "127.0.0.1:0", target: dbURL.Host}
	p.start(t)
	defer p.cut()
	dbURL.Host = p.addr
	s, err := postgres.Open(context.Background(), dbURL.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrator().Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, s)
	e.registerVerified("up@example.org", goodPassword)
	e.login("up@example.org", goodPassword)

	p.cut()
	for _, req := range []struct{ method, path string }{{"GET", "/readyz"}, {"POST", "/v1/auth/login"}} {
		start := time.Now()
		r := e.do(req.method, req.path, map[string]string{"email": "up@example.org", "password": goodPassword})
		if elapsed := time.Since(start); r.status != 503 || r.code() != "unavailable" || r.header.Get("Retry-After") == "" || elapsed > 2*time.Second {
			t.Errorf("%s %s with the database down: %d %s after %s; want 503 with Retry-After within 2s",
				req.method, req.path, r.status, r.raw, elapsed)
		}
	}

	// The revocation feed too, as JSON and as a stream (whose first read
	// comes before its answer starts).
	for _, accept := range []string{"application/json", "text/event-stream"} {
		r := e.do("GET", "/v1/auth/revocations?since=1", nil, append(bearer(serviceToken), "Accept", accept)...)
		if r.status != 503 || r.code() != "unavailable" || r.header.Get("Retry-After") == "" {
			t.Errorf("revocation feed (%s) with the database down: %d %s; want 503 with Retry-After", accept, r.status, r.raw)
		}
	}

	p.start(t) // the same address again
	waitUntil(t, 10*time.Second, "recovery without a restart", func() bool {
		return e.do("GET", "/readyz", nil).status == 200
	})
	e.login("up@example.org", goodPassword)
}
