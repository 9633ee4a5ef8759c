package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/faultnet"
	"github.com/authd/authd/internal/syncbuf"
)

// testRedisURL is TEST_REDIS_URL, or skips the test (fails it under CI).
func testRedisURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TEST_REDIS_URL is not set: CI must run the Redis-backed tests")
		}
		t.Skip("TEST_REDIS_URL is not set: skipping a Redis-backed test")
	}
	return url
}

// redisProxiedApp runs authd on SQLite with its Redis behind a proxy the
// test can cut (cut first when down, before authd starts), and returns the
// proxy, the public and admin base URLs and the log.
func redisProxiedApp(t *testing.T, down bool) (*faultnet.Proxy, string, string, *syncbuf.Buffer) {
	t.Helper()
	redisURL := testRedisURL(t)
	// A proxy between authd and Redis cuts the network as an outage would,
	// without stopping the Redis other tests use.
	p, proxied, err := faultnet.ListenURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	p.SetDown(down)
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"], env["AUTHD_REDIS_URL"] = "127.0.0.1:0", proxied
	cfg := configOf(t, env)
	logs := &syncbuf.Buffer{}
	app := NewApp(cfg, newLogger(cfg, logs))
	ctx, cancel := context.WithCancel(context.Background())
	if err := app.Open(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; app.Close() })
	return p, "http://" + app.Addr().String(), "http://" + app.AdminAddr().String(), logs
}

// resend asks base for a verification mail to the i-th unknown address,
// from the test's one IP.
func resend(t *testing.T, base string, i int) *http.Response {
	t.Helper()
	resp, err := http.Post(base+"/v1/auth/verify-email/resend", "application/json",
		strings.NewReader(fmt.Sprintf(`{"email":"nobody%d@example.org"}`, i)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestServeRedisDown cuts the network between a running authd and its Redis:
// the rate limits go on in memory (429 after the limit), the gauge says so,
// and the log says it once.
func TestServeRedisDown(t *testing.T) {
	t.Parallel()
	p, base, admin, logs := redisProxiedApp(t, false)
	p.SetDown(true)
	for i := range 30 {
		if resp := resend(t, base, i); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("resend %d with Redis down: %d, want 202", i+1, resp.StatusCode)
		}
	}
	if resp := resend(t, base, 30); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("31st resend from one IP with Redis down: %d, Retry-After %q; want 429 with Retry-After (limits in memory, never none)",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if body := get(t, admin+"/metrics"); !strings.Contains(body, "authd_rate_limit_fallback 1") {
		t.Error("/metrics does not show authd_rate_limit_fallback 1 with Redis down")
	}
	if n := strings.Count(logs.String(), "fall back to memory"); n != 1 {
		t.Errorf("%d log lines about the fallback for one outage and 31 requests, want 1:\n%s", n, logs.String())
	}
}

// TestServeStartsWithRedisDown: an instance (re)started during a Redis
// outage serves, its limits in memory, and says so once at error level;
// once Redis answers, limits are shared again.
func TestServeStartsWithRedisDown(t *testing.T) {
	t.Parallel()
	p, base, admin, logs := redisProxiedApp(t, true)
	started := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "cannot be used at start") && strings.Contains(line, "level=ERROR") {
			started++
		}
	}
	if n := strings.Count(logs.String(), "cannot be used at start"); n != 1 || started != 1 {
		t.Errorf("the start with Redis down logged %d times:\n%s\nwant once, at error level", n, logs.String())
	}
	if resp := resend(t, base, 0); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("a request with Redis down since the start: %d, want 202", resp.StatusCode)
	}
	if body := get(t, admin+"/metrics"); !strings.Contains(body, "authd_rate_limit_fallback 1") {
		t.Error("/metrics does not show authd_rate_limit_fallback 1 with Redis down since the start")
	}
	p.SetDown(false)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resend(t, base, 1)
		if strings.Contains(get(t, admin+"/metrics"), "authd_rate_limit_fallback 0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("limits still in memory 15 s after Redis answered")
		}
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

// TestLockoutsSharedWithRateLimitsOff: with AUTHD_RATE_LIMIT=off and Redis
// set, instances still count an unknown address's failures together, as
// an account's are counted in the database: guesses split over two
// instances lock it at the threshold (counted per instance, the third
// guess would pass where an account's is refused).
func TestLockoutsSharedWithRateLimitsOff(t *testing.T) {
	t.Parallel()
	redisURL := testRedisURL(t)
	env := postgresEnv(t)
	env["AUTHD_HTTP_ADDR"], env["AUTHD_REDIS_URL"] = "127.0.0.1:0", redisURL
	env["AUTHD_RATE_LIMIT"], env["AUTHD_LOCKOUT_THRESHOLD"] = "off", "2"
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: %d %s", code, stderr)
	}
	a, b := startServe(t, env), startServe(t, env)
	login := func(base string) int {
		t.Helper()
		resp, err := http.Post(base+"/v1/auth/login", "application/json",
			strings.NewReader(`{"email":"nobody@example.org","password":"not the password at all"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, base := range []string{a.url, b.url} {
		if code := login(base); code != http.StatusUnauthorized {
			t.Fatalf("guess %d at an unknown address: %d, want 401", i+1, code)
		}
	}
	if code := login(a.url); code != http.StatusLocked {
		t.Errorf("a third guess after two split over two instances, threshold 2: %d, want 423 (the count shared in Redis)", code)
	}
}
