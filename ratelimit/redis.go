package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/authd/authd"
	"github.com/redis/go-redis/v9"
)

// Redis is an authd.RateLimiter whose counts every instance shares
// (AUTHD_REDIS_URL). A key's window opens with its first event and ends when
// Redis expires the counter, so only Redis's clock decides where a window
// lies: instances whose clocks disagree still count into the same window,
// and none can make a counter expire early.
type Redis struct {
	client *redis.Client
	prefix string
}

var _ authd.RateLimiter = (*Redis)(nil)

// NewRedis connects to rawURL (redis://… or rediss://…) and checks that the
// server answers.
func NewRedis(ctx context.Context, rawURL string) (*Redis, error) {
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
	return &Redis{client: client, prefix: "authd:rl:"}, nil
}

// allow counts one event and gives the window's remaining lifetime in
// milliseconds, in one round trip. The expiry is relative (PEXPIRE, not
// PEXPIREAT with an instance's idea of the time), and it is set whenever the
// counter has none, so a counter can never outlive its window.
var allow = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = tonumber(ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {n, ttl}`)

// Allow implements authd.RateLimiter.
func (r *Redis) Allow(ctx context.Context, key string, limit int, length time.Duration) (time.Duration, error) {
	res, err := allow.Run(ctx, r.client, []string{r.prefix + key}, max(length.Milliseconds(), 1)).Int64Slice()
	if err != nil {
		return 0, err
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("rate limit script answered %v", res)
	}
	if n, ttl := res[0], res[1]; n > int64(limit) {
		return time.Duration(ttl) * time.Millisecond, nil
	}
	return 0, nil
}

// Close closes the connection pool.
func (r *Redis) Close() error { return r.client.Close() }
