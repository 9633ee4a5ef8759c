package ratelimit

import (
	"context"
	"testing"
)

// redisLimiter connects to url with prefix as its key prefix.
func redisLimiter(t *testing.T, url, prefix string) *Redis {
	t.Helper()
	r, err := NewRedis(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	r.prefix = prefix
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	if _, err := NewRedis(context.Background(), "redis://127.0.0.1:1/0"); err == nil {
		t.Error("NewRedis to a closed port succeeded")
	}
	if _, err := NewRedis(context.Background(), "http://x"); err == nil {
		t.Error("NewRedis accepted a non-redis URL")
	}
}
