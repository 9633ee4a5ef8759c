package ratelimit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authd/authd"
	"github.com/redis/go-redis/v9"
)

const (
	// callTimeout bounds each Redis call, so that a Redis that hangs costs a
	// request this much at most, and only the request that finds it out.
	callTimeout = 250 * time.Millisecond
	// retryAfterFailure is how long limits stay in memory after Redis
	// failed before a request tries Redis again.
	retryAfterFailure = 5 * time.Second
	// probeTimeout bounds watch's probe of a Redis that failed. No request
	// waits for it, so it covers what callTimeout does not: a connection's
	// whole set-up (its dial, a TLS handshake, HELLO, AUTH, SELECT) to a
	// Redis far away. A restart closes every pooled connection, and with
	// the requests' 250 ms alone a Redis 100 ms away was never used again.
	probeTimeout = 3 * time.Second
	// minIdleConns keeps connections set up beforehand (go-redis dials them
	// in the background), so that requests seldom pay for a set-up.
	minIdleConns = 4
)

// Redis is an authd.RateLimiter whose counts every instance shares
// (AUTHD_REDIS_URL). A key's window opens with its first event and ends when
// Redis expires the counter, so only Redis's clock decides where a window
// lies: instances whose clocks disagree still count into the same window,
// and none can make a counter expire early.
//
// When Redis cannot be used, the limits fall back to memory on this
// instance (never to none) until Redis answers again: one request tries it
// every few seconds meanwhile, the others do not wait for it, and so does
// a watcher when no request comes (watch).
type Redis struct {
	client   *redis.Client
	addr     string // host:port, never the URL, which may hold a password
	prefix   string
	clock    authd.Clock
	logger   *slog.Logger
	fallback *Memory
	lockouts *MemoryLockouts // the fallback of the lockouts
	timeout  time.Duration
	retry    time.Duration

	down           atomic.Bool
	failures       atomic.Int64 // failed's calls: a call's success tells of Redis only if none came since it began
	restoring      atomic.Bool  // a write-back of memory's locks runs (restoreLocks): one at a time
	restorePending atomic.Bool  // Redis answered again since the write-back took its list
	mu             sync.Mutex   // guards probeAt, retry once made, the changes of down, and stopped
	probeAt        time.Time    // while down, when a request next tries Redis
	watching       atomic.Bool  // a watch runs
	// The goroutines the limiter starts (watch, the write-back of locks)
	// run under life, which Close ends, and are counted in bg, which
	// Close waits for: none outlives the client it uses. stopped, set by
	// Close under mu, starts no more.
	life    context.Context
	endLife context.CancelFunc
	bg      sync.WaitGroup
	stopped bool
}

var _ authd.RateLimiter = (*Redis)(nil)

// CheckURL reports what is wrong with rawURL as AUTHD_REDIS_URL, if
// anything: in go-redis's words (which name the bad part) for a URL
// without credentials only, since a password holding an unescaped / or ?
// is read as the path or query that those words quote.
func CheckURL(rawURL string) error {
	const form = "must be redis://[USER:PASS@]HOST:PORT[/DB] or rediss://…"
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return errors.New(form)
	}
	if _, err := redis.ParseURL(rawURL); err != nil {
		if strings.Contains(rawURL, "@") {
			return errors.New(form + " (percent-encode / ? # @ in the password)")
		}
		return fmt.Errorf("%s: %s", form, strings.TrimPrefix(err.Error(), "redis: "))
	}
	return nil
}

// NewRedis connects to rawURL (redis://… or rediss://…) and checks that the
// server answers. Clock runs the in-memory fallback; logger hears when
// limits fall back and when they return to Redis. A Redis that cannot be
// reached (refused, silent, unresolvable) is an outage, as it would be
// later: the limiter starts in memory, says so at error level, and tries
// Redis as it does during one, so that an instance restarted during an
// outage serves rather than staying down for a dependency it can do
// without. A Redis that answers with a refusal (a wrong password or
// database number) is a configuration error, returned.
func NewRedis(ctx context.Context, rawURL string, clock authd.Clock, logger *slog.Logger) (*Redis, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("AUTHD_REDIS_URL is not a valid redis:// URL")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 2*time.Second, time.Second, time.Second
	// Each call's context bounds it (callTimeout), dial and reads included;
	// one dial attempt, because a refused connection will not be accepted
	// 100 ms later.
	opts.ContextTimeoutEnabled, opts.DialerRetries = true, 1
	// A wait for a free connection gives up well within the call's timeout,
	// once more after a retry, as ErrPoolTimeout: this instance is busy,
	// Redis is not down (try). With go-redis's defaults (ReadTimeout + 1 s,
	// three retries) the call's deadline always came first, and a busy pool
	// read as an outage that sent every count to memory for
	// retryAfterFailure. One retry still covers a pooled connection the
	// server had closed.
	opts.PoolTimeout, opts.MaxRetries = callTimeout/5, 1
	opts.MinIdleConns = min(minIdleConns, opts.PoolSize)
	// go-redis logs dial failures itself, in plain text on stderr, once per
	// request while Redis is down; the limiter reports the outage once. The
	// setting is process-wide: the last limiter made decides.
	redis.SetLogger(debugLog{logger})
	client := redis.NewClient(opts)
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r := &Redis{client: client, addr: opts.Addr, prefix: "authd:rl:", clock: clock, logger: logger,
		fallback: NewMemory(clock), lockouts: NewMemoryLockouts(clock), timeout: callTimeout, retry: retryAfterFailure}
	r.life, r.endLife = context.WithCancel(context.WithoutCancel(ctx))
	err = client.Ping(pingCtx).Err()
	if err == nil {
		// A write, as the counts make: a replica (READONLY) or a Redis
		// full under noeviction (OOM) answers PING, and would otherwise be
		// found out only by the first request.
		err = r.probe()
	}
	switch {
	case err == nil:
	case ctx.Err() != nil:
		client.Close()
		return nil, fmt.Errorf("connecting to Redis at %s: %w", opts.Addr, ctx.Err())
	case setupRefused(err):
		client.Close()
		return nil, &authd.Error{Code: authd.EUnavailable, Err: err,
			Message: fmt.Sprintf("Redis at %s refused the connection's set-up", opts.Addr),
			Hint:    "fix AUTHD_REDIS_URL's password, database number or scheme (redis:// or rediss://; unset it to keep rate limits in memory)"}
	default:
		logger.Error("Redis cannot be used at start: rate limits are counted in memory on this instance "+
			"until it answers and takes writes (check AUTHD_REDIS_URL if it never does: it must name the primary, "+
			"not a replica)", "addr", opts.Addr, "err", err)
		r.down.Store(true) // tried again by the first request, then as in any outage
		r.mu.Lock()
		r.startWatch()
		r.mu.Unlock()
	}
	return r, nil
}

// setupRefused reports whether err, of the first Ping, says that what
// AUTHD_REDIS_URL asks cannot work, which no wait mends: a password or
// database number Redis refuses, or a TLS set-up that fails (a
// certificate not trusted, a server that answers TLS with something else;
// a plain Redis says nothing to a TLS handshake, which reads as an
// outage). Any other failure — a refused or silent connection, a Redis
// still loading its data (LOADING) or without its master — is an outage.
func setupRefused(err error) bool {
	for _, prefix := range []string{"WRONGPASS", "NOAUTH", "NOPERM", "invalid DB index", "DB index is out of range",
		"AUTH <password> called", "Client sent AUTH", "SELECT is not allowed in cluster mode"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	var record tls.RecordHeaderError
	var alert tls.AlertError
	var verification *tls.CertificateVerificationError
	var authority x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var remote *net.OpError // an alert the server sent over TCP (a client certificate required, say)
	return errors.As(err, &record) || errors.As(err, &alert) || errors.As(err, &verification) ||
		errors.As(err, &authority) || errors.As(err, &host) || errors.As(err, &invalid) ||
		errors.As(err, &remote) && remote.Op == "remote error"
}

// allow counts one event and gives the window's remaining lifetime in
// milliseconds, in one round trip. The expiry is relative (PEXPIRE, not
// PEXPIREAT with an instance's idea of the time), and it is set whenever the
// counter has none, so a counter can never outlive its window. With a cap
// (ARGV[2] ≥ 0: AllowUnder), a count at the cap is left as it is and
// answered as one past it, a refusal.
var allow = redis.NewScript(`
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local capped = tonumber(ARGV[2]) >= 0 and n >= tonumber(ARGV[2])
if capped then
  n = n + 1
else
  n = redis.call('INCR', KEYS[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = tonumber(ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {n, ttl}`)

// Allow implements authd.RateLimiter. It never fails: when Redis cannot
// answer, the in-memory limiter does.
func (r *Redis) Allow(ctx context.Context, key string, limit int, length time.Duration) (time.Duration, error) {
	return r.allow(ctx, key, limit, length, false)
}

// AllowUnder implements authd.RateLimiter, as Allow does.
func (r *Redis) AllowUnder(ctx context.Context, key string, limit int, length time.Duration) (time.Duration, error) {
	return r.allow(ctx, key, limit, length, true)
}

// allow is Allow, and AllowUnder when under.
func (r *Redis) allow(ctx context.Context, key string, limit int, length time.Duration, under bool) (time.Duration, error) {
	var n int64
	var ttl time.Duration
	limitCap := -1
	if under {
		limitCap = limit
	}
	if !r.try(ctx, func(ctx context.Context) (err error) {
		n, ttl, err = r.count(ctx, key, length, limitCap)
		return err
	}) {
		if under {
			return r.fallback.AllowUnder(ctx, key, limit, length)
		}
		return r.fallback.Allow(ctx, key, limit, length)
	}
	if n > int64(limit) {
		return max(ttl, time.Millisecond), nil // a refusal, even as the window ends (PTTL 0)
	}
	return 0, nil
}

// refund takes back one event of a counter that is there, keeping its
// expiry (DECR does), and never below zero: a counter gone (its window
// ended) is not made again.
var refund = redis.NewScript(`
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then
  redis.call('DECR', KEYS[1])
end
return 0`)

// Refund implements authd.RateLimiter. It never fails: while Redis cannot
// answer, it takes the event back from the in-memory fallback, where it was
// counted then.
func (r *Redis) Refund(ctx context.Context, key string) error {
	if !r.try(ctx, func(ctx context.Context) error {
		return refund.Run(ctx, r.client, []string{r.prefix + key}).Err()
	}) {
		return r.fallback.Refund(ctx, key)
	}
	return nil
}

// try runs call on Redis within the call timeout and reports whether it
// answered; false sends the request to the in-memory fallback. The call
// runs to its end even when the caller's request ends first: a client that
// hangs up (or half-closes its connection) as it sends a login must not
// be counted in this instance's memory instead of the shared count, where
// each instance would give it a budget of its own.
func (r *Redis) try(ctx context.Context, call func(context.Context) error) bool {
	return r.tryWaiting(ctx, call, false)
}

// tryWaiting is try that, when patient, waits for a busy pool (a pooled
// connection not freed within the pool's timeout) for the rest of the
// call's time instead of sending the request to memory at once: the
// lockouts' counts, which a count split between Redis and memory would
// make lock later than an account's.
func (r *Redis) tryWaiting(ctx context.Context, call func(context.Context) error, patient bool) bool {
	if !r.useRedis() {
		return false
	}
	began := r.failures.Load()
	switch err := r.call(context.WithoutCancel(ctx), call, patient); {
	case errors.Is(err, redis.ErrPoolTimeout):
		return false // this instance is busy, Redis is not down: only this request counts in memory
	case err != nil:
		r.failed(err)
		return false
	}
	r.recoveredSince(began)
	return true
}

// recoveredSince is recovered for a call that succeeded and began when
// failures was began: one that began before a failure since (a slow call
// on a Redis that then failed) tells nothing of Redis now, and under load
// such answers flipped the instance back to Redis again and again, each
// time starting a write-back of every lock held in memory.
func (r *Redis) recoveredSince(began int64) {
	if r.failures.Load() == began {
		r.recovered()
	}
}

// call runs fn on Redis within the call timeout from ctx and returns its
// error, redis.ErrPoolTimeout when this instance is busy rather than Redis
// down: no pooled connection came free in time, or (patient, trying again
// while none does) the call's time ran out waiting for one.
func (r *Redis) call(ctx context.Context, fn func(context.Context) error, patient bool) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	err := fn(ctx)
	busy := errors.Is(err, redis.ErrPoolTimeout)
	for patient && errors.Is(err, redis.ErrPoolTimeout) && ctx.Err() == nil {
		err = fn(ctx)
	}
	if busy && errors.Is(err, context.DeadlineExceeded) {
		return redis.ErrPoolTimeout
	}
	return err
}

// count runs allow on key, a window of length, with limitCap (-1: none),
// and returns the count and the window's time left.
func (r *Redis) count(ctx context.Context, key string, length time.Duration, limitCap int) (int64, time.Duration, error) {
	res, err := allow.Run(ctx, r.client, []string{r.prefix + key}, max(length.Milliseconds(), 1), limitCap).Int64Slice()
	if err != nil {
		return 0, 0, err
	}
	if len(res) != 2 {
		return 0, 0, fmt.Errorf("rate limit script answered %v", res)
	}
	return res[0], time.Duration(res[1]) * time.Millisecond, nil
}

// useRedis reports whether this request should count in Redis: always while
// Redis works; after a failure, one request every r.retry.
func (r *Redis) useRedis() bool {
	if !r.down.Load() {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	if now.Before(r.probeAt) {
		return false
	}
	r.probeAt = now.Add(r.retry)
	return true
}

func (r *Redis) failed(err error) {
	r.failures.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.probeAt = r.clock.Now().Add(r.retry)
	if !r.down.Swap(true) {
		r.logger.Warn("Redis cannot be used: rate limits fall back to memory on this instance until it answers",
			"addr", r.addr, "err", err)
		r.startWatch()
	}
}

// startWatch runs watch unless one runs or the limiter is closed. r.mu is held.
func (r *Redis) startWatch() {
	if !r.stopped && r.watching.CompareAndSwap(false, true) {
		r.bg.Go(r.watch)
	}
}

// watch tries Redis every retry period while it is down (probe), so that
// an idle instance learns it is back: its fallback gauge falls and the
// locks set in its memory meanwhile are written back (recovered) without
// waiting for a request.
func (r *Redis) watch() {
	for {
		r.mu.Lock()
		wait := r.retry
		r.mu.Unlock()
		t := time.NewTimer(max(wait, 10*time.Millisecond))
		select {
		case <-r.life.Done():
			t.Stop()
			r.watching.Store(false)
			return
		case <-t.C:
		}
		if r.down.Load() {
			began := r.failures.Load()
			switch err := r.probe(); {
			case err == nil:
				r.recoveredSince(began)
			case !errors.Is(err, redis.ErrPoolTimeout) && r.life.Err() == nil:
				r.failed(err)
			}
			continue
		}
		// Back. An outage that began as this one ended found it running
		// and started none: it goes on for that one.
		r.watching.Store(false)
		if !r.down.Load() || !r.watching.CompareAndSwap(false, true) {
			return
		}
	}
}

// probe tries Redis as the counts use it, with a write (the allow script,
// on a key of its own), within probeTimeout: a Redis that answers PING but
// refuses writes (a replica after a failover: READONLY; one full under
// noeviction: OOM) is still down, where a PING read it as back, and the
// state flipped with each request.
func (r *Redis) probe() error {
	ctx, cancel := context.WithTimeout(r.life, probeTimeout)
	defer cancel()
	_, _, err := r.count(ctx, probeKey, time.Second, -1)
	return err
}

// probeKey is the counter probe writes (under the prefix).
const probeKey = "probe"

func (r *Redis) recovered() {
	if !r.down.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down.Swap(false) {
		r.logger.Info("Redis answers again: rate limits are shared again", "addr", r.addr)
		r.restorePending.Store(true)
		if !r.stopped && r.restoring.CompareAndSwap(false, true) {
			r.bg.Go(func() {
				// A recovery while a write-back runs asks for another pass:
				// locks set in memory since its list was taken go too.
				for {
					for r.restorePending.Swap(false) {
						r.restoreLocks()
					}
					r.restoring.Store(false)
					if !r.restorePending.Load() || !r.restoring.CompareAndSwap(false, true) {
						return
					}
				}
			})
		}
	}
}

// Fallback reports whether limits are counted in memory because Redis
// cannot be used (for the authd_rate_limit_fallback gauge).
func (r *Redis) Fallback() bool { return r.down.Load() }

// Close ends the watch and a write-back of locks (each cut short), waits
// for them, and closes the connection pool.
func (r *Redis) Close() error {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.endLife()
	r.bg.Wait()
	return r.client.Close()
}

// debugLog passes go-redis's own messages to slog at debug level.
type debugLog struct{ logger *slog.Logger }

func (d debugLog) Printf(ctx context.Context, format string, v ...any) {
	d.logger.DebugContext(ctx, fmt.Sprintf(format, v...))
}
