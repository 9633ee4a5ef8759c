package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
)

// TestServeRedisDown cuts the network between a running authd and its Redis:
// the rate limits go on in memory (429 after the limit), the gauge says so,
// and the log says it once.
func TestServeRedisDown(t *testing.T) {
	t.Parallel()
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TEST_REDIS_URL is not set: CI must run the Redis-backed tests")
		}
		t.Skip("TEST_REDIS_URL is not set: skipping a Redis-backed test")
	}
	p := newRedisProxy(t, redisURL)
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"], env["AUTHD_REDIS_URL"] = "127.0.0.1:0", p.url
	cfg := configOf(t, env)
	var logs syncBuffer
	app := NewApp(cfg, newLogger(cfg, &logs))
	ctx, cancel := context.WithCancel(context.Background())
	if err := app.Open(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- app.Run(ctx) }()
	defer func() { cancel(); <-done; app.Close() }()
	base := "http://" + app.Addr().String()

	p.cut()
	resend := func(i int) *http.Response {
		resp, err := http.Post(base+"/v1/auth/verify-email/resend", "application/json",
			strings.NewReader(fmt.Sprintf(`{"email":"nobody%d@example.org"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := range 30 {
		if resp := resend(i); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("resend %d with Redis down: %d, want 202", i+1, resp.StatusCode)
		}
	}
	if resp := resend(30); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("31st resend from one IP with Redis down: %d, Retry-After %q; want 429 with Retry-After (limits in memory, never none)",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if body := get(t, "http://"+app.AdminAddr().String()+"/metrics"); !strings.Contains(body, "authd_rate_limit_fallback 1") {
		t.Error("/metrics does not show authd_rate_limit_fallback 1 with Redis down")
	}
	if n := strings.Count(logs.String(), "fall back to memory"); n != 1 {
		t.Errorf("%d log lines about the fallback for one outage and 31 requests, want 1:\n%s", n, logs.String())
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return string(body)
}

// redisProxy forwards to Redis until cut, as a network outage would, without
// stopping the Redis other tests use.
type redisProxy struct {
	url    string // the Redis URL through the proxy
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func newRedisProxy(t *testing.T, redisURL string) *redisProxy {
	t.Helper()
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &redisProxy{ln: ln, target: u.Host}
	u.Host = ln.Addr().String()
	p.url = u.String()
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *redisProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { io.Copy(s, c); s.Close() }()
		go func() { io.Copy(c, s); c.Close() }()
	}
}

// cut closes every connection and refuses new ones.
func (p *redisProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
