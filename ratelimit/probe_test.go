package ratelimit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/syncbuf"
)

// TestRedisFarAwayComesBack: a Redis 130 ms away, whose connections a
// restart closed, is used again. A new connection's set-up takes more
// round trips than a request's 250 ms allow, and the retry went through
// the same bound: the instance stayed in memory for good (a probe).
func TestRedisFarAwayComesBack(t *testing.T) {
	t.Parallel()
	p, _, proxied := proxiedRedis(t)
	r := redisLimiter(t, proxied, testPrefix(), nil, nil)
	r.mu.Lock()
	r.retry = 50 * time.Millisecond
	r.mu.Unlock()
	r.timeout = callTimeout
	ctx := context.Background()
	p.SetDelay(130 * time.Millisecond)
	p.Cut() // a restart: every pooled connection closed
	for deadline := time.Now().Add(5 * time.Second); !r.Fallback(); r.Allow(ctx, "far", 100, time.Hour) {
		if time.Now().After(deadline) {
			t.Skip("the cut did not make the limiter fall back (its connections were set up again in time)")
		}
	}
	for deadline := time.Now().Add(10 * time.Second); r.Fallback(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a Redis 130 ms away still reads as down 10 s after it answered again")
		}
	}
}

// TestRedisThatRefusesWritesIsDown: a Redis that answers PING but refuses
// every write (a replica after a failover, or named by AUTHD_REDIS_URL)
// is an outage from the start, told at start-up with Redis's answer (it
// was found out by the first request), and stays one: limits stay in
// memory, and the log does not say it answers again (a probe: a PING read
// it as back, and the gauge and the log flipped with each request).
func TestRedisThatRefusesWritesIsDown(t *testing.T) {
	t.Parallel()
	var logs syncbuf.Buffer
	r, err := NewRedis(context.Background(), "redis://"+readOnlyRedis(t)+"/0", authd.SystemClock{},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if !r.Fallback() || !strings.Contains(logs.String(), "at start") || !strings.Contains(logs.String(), "READONLY") {
		t.Errorf("fallback %v right after start; log:\n%s\nwant the outage told at start with READONLY", r.Fallback(), logs.String())
	}
	r.mu.Lock()
	r.retry = 20 * time.Millisecond
	r.mu.Unlock()
	ctx := context.Background()
	for i := range 3 {
		if wait, err := r.Allow(ctx, "k", 2, time.Hour); err != nil || (wait == 0) != (i < 2) {
			t.Errorf("event %d on a Redis that refuses writes: wait %s, err %v; want the limit kept in memory", i+1, wait, err)
		}
	}
	time.Sleep(300 * time.Millisecond) // the watch's probes, every 20 ms
	if !r.Fallback() || strings.Contains(logs.String(), "answers again") || !strings.Contains(logs.String(), "READONLY") {
		t.Errorf("fallback %v; log:\n%s\nwant the outage, told once, and no recovery", r.Fallback(), logs.String())
	}
}

// readOnlyRedis is a server that speaks Redis's protocol as a replica
// does: PING answers PONG, every write READONLY.
func readOnlyRedis(t *testing.T) string {
	return fakeRedis(t, func(conn net.Conn) {
		in := bufio.NewReader(conn)
		for {
			name, err := readCommand(in)
			if err != nil {
				return
			}
			answer := "-READONLY You can't write against a read only replica.\r\n"
			switch name {
			case "PING":
				answer = "+PONG\r\n"
			case "HELLO":
				answer = "-ERR unknown command 'HELLO'\r\n" // RESP2, as an older Redis
			case "CLIENT", "SELECT":
				answer = "+OK\r\n"
			}
			if _, err := io.WriteString(conn, answer); err != nil {
				return
			}
		}
	})
}

// readCommand reads one command (an array of bulk strings) and returns its
// name in upper case.
func readCommand(in *bufio.Reader) (string, error) {
	line, err := in.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(line, "*") {
		return "", fmt.Errorf("not an array: %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return "", err
	}
	var name string
	for i := range n {
		head, err := in.ReadString('\n')
		if err != nil {
			return "", err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
		if err != nil {
			return "", err
		}
		arg := make([]byte, size+2)
		if _, err := io.ReadFull(in, arg); err != nil {
			return "", err
		}
		if i == 0 {
			name = strings.ToUpper(string(arg[:size]))
		}
	}
	return name, nil
}

// TestRedisStaleSuccessIsNoRecovery: a call that began before a failure and
// succeeded after it tells nothing of Redis now: the instance stays in
// memory (a probe: under a slow Redis such answers flipped it back and
// forth, each flip writing back every lock held in memory).
func TestRedisStaleSuccessIsNoRecovery(t *testing.T) {
	t.Parallel()
	r := redisLimiter(t, redisURLOrSkip(t), testPrefix(), nil, nil)
	r.try(context.Background(), func(context.Context) error {
		r.failed(errors.New("another call, meanwhile: Redis failed"))
		return nil // this one's answer, from before the failure
	})
	if !r.Fallback() {
		t.Error("a success that began before a failure read as Redis back")
	}
}

// redisURLOrSkip is TEST_REDIS_URL; t is skipped without it.
func redisURLOrSkip(t *testing.T) string {
	t.Helper()
	url := redisURL(t)
	if url == "" {
		t.Skip("TEST_REDIS_URL is not set")
	}
	return url
}
