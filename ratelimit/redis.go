package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/authd/authd"
	"github.com/redis/go-redis/v9"
)

// Redis is an authd.RateLimiter whose counts every instance shares
// (AUTHD_REDIS_URL). Windows are aligned to multiples of their length, as
// in Memory, and each counter expires with its window.
type Redis struct {
	client *redis.Client
	clock  authd.Clock
	prefix string
}

var _ authd.RateLimiter = (*Redis)(nil)

// NewRedis connects to rawURL (redis://… or rediss://…) and checks that the
// server answers.
func NewRedis(ctx context.Context, rawURL string, clock authd.Clock) (*Redis, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("AUTHD_REDIS_URL is not a valid redis:// URL")
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 2*time.Second, time.Second, time.Second
	client := redis.NewClient(opts)
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		client.Close()
		return nil, &authd.Error{Code: authd.EUnavailable, Err: err,
			Message: fmt.Sprintf("could not connect to Redis at %s: %v", opts.Addr, err),
			Hint:    "start Redis or fix AUTHD_REDIS_URL (unset it to keep rate limits in memory)"}
	}
	return &Redis{client: client, clock: clock, prefix: "authd:rl:"}, nil
}

// allow counts one event and gives the window's remaining lifetime, in one
// round trip: INCR, and PEXPIREAT only when the key is new.
var allow = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
return n`)

// Allow implements authd.RateLimiter.
func (r *Redis) Allow(ctx context.Context, key string, limit int, length time.Duration) (time.Duration, error) {
	now := r.clock.Now()
	end := now.Truncate(length).Add(length)
	k := fmt.Sprintf("%s%s:%d", r.prefix, key, end.UnixMilli())
	n, err := allow.Run(ctx, r.client, []string{k}, end.UnixMilli()).Int()
	if err != nil {
		return 0, err
	}
	if n > limit {
		return end.Sub(now), nil
	}
	return 0, nil
}

// Close closes the connection pool.
func (r *Redis) Close() error { return r.client.Close() }
