package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/authd/authd/internal/faultnet"
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
	// A proxy between authd and Redis cuts the network as an outage would,
	// without stopping the Redis other tests use.
	p, proxied, err := faultnet.ListenURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"], env["AUTHD_REDIS_URL"] = "127.0.0.1:0", proxied
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

	p.SetDown(true)
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
