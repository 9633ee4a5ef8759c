package ratelimit

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/faultnet"
	"github.com/authd/authd/internal/syncbuf"
	"github.com/redis/go-redis/v9"
)

// redisLimiter connects to url with prefix as its key prefix, on clock (the
// real one unless a test says otherwise). Its calls have seconds, not
// callTimeout's 250 ms: a call a loaded machine held that long would read
// as an outage and send the counts to memory, which the tests' counts do
// not expect (an outage is made with the proxy, which refuses at once).
func redisLimiter(t *testing.T, url, prefix string, clock authd.Clock, logger *slog.Logger) *Redis {
	t.Helper()
	if clock == nil {
		clock = authd.SystemClock{}
	}
	r, err := NewRedis(context.Background(), url, clock, logger)
	if err != nil {
		t.Fatal(err)
	}
	r.prefix, r.timeout = prefix, 5*time.Second
	t.Cleanup(func() { r.Close() })
	return r
}

// skewed is an instance's clock that is off by a fixed amount.
type skewed time.Duration

func (s skewed) Now() time.Time { return time.Now().Add(time.Duration(s)) }

// TestRedisSkewedClocksShareOneCounter: instances whose clocks are hours
// apart, one of them behind Redis's, still count into one window that Redis
// expires: no instance's clock turns the limit off or splits the count.
func TestRedisSkewedClocksShareOneCounter(t *testing.T) {
	t.Parallel()
	url := redisURL(t)
	if url == "" {
		t.Skip("TEST_REDIS_URL is not set")
	}
	prefix := testPrefix()
	behind := redisLimiter(t, url, prefix, skewed(-3*time.Hour), nil)
	ahead := redisLimiter(t, url, prefix, skewed(2*time.Hour), nil)
	ctx := context.Background()
	allowed := 0
	for i := range 20 {
		l := behind
		if i%2 == 1 {
			l = ahead
		}
		wait, err := l.Allow(ctx, "k", 10, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if wait == 0 {
			allowed++
		} else if wait > time.Minute {
			t.Errorf("wait %s, longer than the window", wait)
		}
	}
	if allowed != 10 {
		t.Errorf("%d of 20 events allowed across two skewed instances, want 10", allowed)
	}
}

// TestRedisCountsRequestsThatEnded: a request whose context has ended (its
// client hung up, or half-closed the connection, as it sent a login) is
// counted in Redis all the same, where every instance sees it; it went to
// the instance's memory, a budget apart from the shared one.
func TestRedisCountsRequestsThatEnded(t *testing.T) {
	t.Parallel()
	url := redisURL(t)
	if url == "" {
		t.Skip("TEST_REDIS_URL is not set")
	}
	prefix := testPrefix()
	one := redisLimiter(t, url, prefix, nil, nil)
	other := redisLimiter(t, url, prefix, nil, nil)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 {
		if _, err := one.Allow(ended, "k", 3, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	wait, err := other.Allow(context.Background(), "k", 3, time.Minute)
	if err != nil || wait == 0 {
		t.Errorf("another instance after three ended requests: wait %s, %v; want the limit reached", wait, err)
	}
}

// TestRedisBusyPoolIsNoOutage: when every connection of the pool is in
// use, a count waits briefly, then goes to memory for that request alone:
// Redis is not taken for down (which would send every count to memory for
// seconds). The wait for a connection, retried, outlasted the call's
// timeout, and the deadline read as an outage.
func TestRedisBusyPoolIsNoOutage(t *testing.T) {
	t.Parallel()
	url := redisURL(t)
	if url == "" {
		t.Skip("TEST_REDIS_URL is not set")
	}
	r, held := busyLimiter(t, url, testPrefix())
	defer held.Close()
	if _, err := r.Allow(context.Background(), "k", 10, time.Minute); err != nil {
		t.Fatal(err)
	}
	if r.Fallback() {
		t.Error("a busy pool was taken for Redis being down")
	}
}

// TestRedisDownFallsBackToMemory cuts the network between an instance and
// Redis: limits go on in memory, the outage is logged once, Redis is tried
// again only now and then, and once it answers the counts are shared again.
func TestRedisDownFallsBackToMemory(t *testing.T) {
	t.Parallel()
	p, direct, proxied := proxiedRedis(t)
	var logs syncbuf.Buffer
	prefix := testPrefix()
	a := redisLimiter(t, proxied, prefix, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	b := redisLimiter(t, direct, prefix, nil, nil) // another instance, which still reaches Redis
	a.retry = time.Hour
	ctx := context.Background()

	p.SetDown(true)
	for i := range 3 {
		if wait, err := a.Allow(ctx, "k", 3, time.Hour); err != nil || wait != 0 {
			t.Fatalf("event %d with Redis down: wait %s, err %v; want allowed", i+1, wait, err)
		}
	}
	if wait, err := a.Allow(ctx, "k", 3, time.Hour); err != nil || wait <= 0 {
		t.Errorf("4th event with Redis down: wait %s, err %v; want refused (limits in memory, never none)", wait, err)
	}
	if !a.Fallback() {
		t.Error("Fallback() is false with Redis down")
	}
	tries := p.Refused()
	for range 20 {
		a.Allow(ctx, "other", 100, time.Hour)
	}
	if n := p.Refused() - tries; n != 0 {
		t.Errorf("%d connections to a Redis known to be down within its retry period; want none", n)
	}

	p.SetDown(false)
	a.mu.Lock()
	a.retry, a.probeAt = 0, time.Time{}
	a.mu.Unlock()
	for i := range 2 {
		if wait, err := a.Allow(ctx, "after", 2, time.Hour); err != nil || wait != 0 {
			t.Fatalf("event %d after Redis returned: wait %s, err %v", i+1, wait, err)
		}
	}
	if a.Fallback() {
		t.Error("Fallback() is still true after Redis answered")
	}
	if wait, _ := b.Allow(ctx, "after", 2, time.Hour); wait == 0 {
		t.Error("the other instance does not see the counts made after Redis returned")
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 || !strings.Contains(out, "fall back to memory") {
		t.Errorf("%d warnings for one outage, want 1 saying limits fall back to memory:\n%s", n, out)
	}
	if n := strings.Count(out, "answers again"); n != 1 {
		t.Errorf("%d lines saying Redis is back, want 1:\n%s", n, out)
	}
}

// TestRedisIdleInstanceSeesRedisBack: an instance that gets no request
// learns that Redis answers again by itself, within its retry period: its
// fallback gauge falls, and a lock set in its memory during the outage
// reaches the other instances, without a request to carry either.
func TestRedisIdleInstanceSeesRedisBack(t *testing.T) {
	t.Parallel()
	p, a, other := fallingPair(t, nil)
	ctx := context.Background()
	p.SetDown(true)
	a.Fail(ctx, "idle", 1, time.Hour, time.Hour) // the request that finds Redis down, locking in memory
	if !a.Fallback() {
		t.Fatal("Fallback() is false with Redis down")
	}
	p.SetDown(false)
	for deadline := time.Now().Add(5 * time.Second); a.Fallback(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("an idle instance still reads Redis as down 5 s after it answered again")
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if wait, _ := other.LockedFor(ctx, "idle"); wait >= 59*time.Minute {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a lock set in an idle instance's memory during the outage never reached the others")
		}
	}
}

// TestRedisUnreachableAtStart: a Redis that cannot be reached when the
// limiter is made is an outage, not a failure to start: limits are counted
// in memory (never none), said once at error level, and Redis is used as
// soon as it answers. A Redis that answers with a refusal (a database
// number it does not have) is a configuration error, as is a URL that is
// not Redis's.
func TestRedisUnreachableAtStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var logs syncbuf.Buffer
	r, err := NewRedis(ctx, "redis://127.0.0.1:1/0", authd.SystemClock{}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("NewRedis to a closed port: %v; want a limiter in memory", err)
	}
	defer r.Close()
	if !r.Fallback() || strings.Count(logs.String(), "level=ERROR") != 1 || !strings.Contains(logs.String(), "in memory") {
		t.Errorf("fallback %v, log:\n%s\nwant the fallback, said once at error level", r.Fallback(), logs.String())
	}
	for i := range 3 {
		if wait, err := r.Allow(ctx, "k", 2, time.Hour); err != nil || (wait == 0) != (i < 2) {
			t.Errorf("event %d, Redis never reached: wait %s, err %v; want the limit kept in memory", i+1, wait, err)
		}
	}
	if _, err := NewRedis(ctx, "http://x", authd.SystemClock{}, nil); err == nil {
		t.Error("NewRedis accepted a non-redis URL")
	}
	// A TLS server that refuses the set-up with an alert (it wants a client
	// certificate) refuses what the URL asks: no wait mends it.
	tlsSrv := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsSrv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	if _, err := NewRedis(ctx, "rediss://"+tlsSrv.Listener.Addr().String()+"/0?skip_verify=true", authd.SystemClock{}, nil); err == nil ||
		!strings.Contains(err.Error(), "refused") {
		t.Errorf("NewRedis to a TLS server that wants a client certificate: %v; want the refusal", err)
	}
	// A Redis still loading its data answers every command LOADING: an
	// outage that ends by itself, not a configuration error.
	loading := loadingRedis(t)
	l, err := NewRedis(ctx, "redis://"+loading+"/0", authd.SystemClock{}, nil)
	if err != nil || !l.Fallback() {
		t.Errorf("NewRedis to a Redis loading its data: %v; want a limiter in memory", err)
	}
	if l != nil {
		l.Close()
	}

	direct := redisURL(t)
	if direct == "" {
		return
	}
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewRedis(ctx, "redis://"+u.Host+"/99999", authd.SystemClock{}, nil); err == nil ||
		!strings.Contains(err.Error(), "refused") {
		t.Errorf("NewRedis with a database number Redis does not have: %v; want the refusal", err)
	}

	p, proxied := newProxy(t, direct)
	p.SetDown(true)
	a, err := NewRedis(ctx, proxied, authd.SystemClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.prefix = testPrefix()
	b := redisLimiter(t, direct, a.prefix, nil, nil)
	p.SetDown(false)
	if wait, err := a.Allow(ctx, "shared", 1, time.Hour); err != nil || wait != 0 || a.Fallback() {
		t.Fatalf("the first event once Redis answers: wait %s, err %v, fallback %v; want it counted in Redis", wait, err, a.Fallback())
	}
	if wait, _ := b.Allow(ctx, "shared", 1, time.Hour); wait == 0 {
		t.Error("another instance does not see the count made once Redis answered")
	}
}

// loadingRedis serves, on a port of its own, a Redis that answers every
// command as one still loading its data does, and returns its address.
func loadingRedis(t *testing.T) string {
	return fakeRedis(t, func(conn net.Conn) {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			// One answer per command (arrays: "*" at a line's start);
			// the client pipelines its set-up.
			commands := bytes.Count(append([]byte("\r\n"), buf[:n]...), []byte("\r\n*"))
			if _, err := io.WriteString(conn, strings.Repeat("-LOADING Redis is loading the dataset in memory\r\n", commands)); err != nil {
				return
			}
		}
	})
}

// fakeRedis listens on a loopback port until the test ends and serves each
// connection with serve, which returns when it is done (the connection is
// closed then); it returns the address.
func fakeRedis(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				serve(conn)
			}()
		}
	}()
	return ln.Addr().String()
}

// proxiedRedis is TEST_REDIS_URL (t is skipped without it) and a proxy to it.
func proxiedRedis(t *testing.T) (p *faultnet.Proxy, direct, proxied string) {
	t.Helper()
	if direct = redisURL(t); direct == "" {
		t.Skip("TEST_REDIS_URL is not set")
	}
	p, proxied = newProxy(t, direct)
	return p, direct, proxied
}

// newProxy stands a proxy between a limiter and Redis, so that a test can
// cut the network as an outage would, without stopping the Redis other
// tests use. It returns the proxy and the Redis URL through it.
func newProxy(t *testing.T, redisURL string) (*faultnet.Proxy, string) {
	t.Helper()
	p, proxied, err := faultnet.ListenURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, proxied
}

// fallingPair is two instances sharing one Redis: a reaches it through
// p, which can take it away, and tries it again every 50 ms once it could
// not, logging to logger (nil: nowhere); b reaches it directly.
func fallingPair(t *testing.T, logger *slog.Logger) (p *faultnet.Proxy, a, b *Redis) {
	t.Helper()
	p, direct, proxied := proxiedRedis(t)
	prefix := testPrefix()
	a = redisLimiter(t, proxied, prefix, nil, logger)
	a.mu.Lock()
	a.retry = 50 * time.Millisecond
	a.mu.Unlock()
	return p, a, redisLimiter(t, direct, prefix, nil, nil)
}

// busyPair is a busyLimiter and another instance on its Redis, which has
// connections to spare.
func busyPair(t *testing.T) (r *Redis, held *redis.Conn, other *Redis) {
	t.Helper()
	url := redisURL(t)
	if url == "" {
		t.Skip("TEST_REDIS_URL is not set")
	}
	prefix := testPrefix()
	r, held = busyLimiter(t, url, prefix)
	return r, held, redisLimiter(t, url, prefix, nil, nil)
}

// busyLimiter is a limiter on url whose pool holds one connection, and
// that connection, taken (the pool is busy until it is closed).
func busyLimiter(t *testing.T, url, prefix string) (*Redis, *redis.Conn) {
	t.Helper()
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	r := redisLimiter(t, url+sep+"pool_size=1", prefix, nil, nil)
	held := r.client.Conn()
	if err := held.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	return r, held
}
