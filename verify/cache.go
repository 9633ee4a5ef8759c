package verify

import "sync"

// tokenCache remembers the claims of tokens whose signature verified, so
// that a repeated token costs a map lookup. Bounded; an entry is used only
// while the key that verified it is still in the JWKS, and its times (exp
// exactly) are checked again on every hit, as are revocations.
type tokenCache struct {
	max int
	mu  sync.RWMutex
	m   map[string]cached
}

type cached struct {
	claims *Claims
	key    *publicKey
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, m: make(map[string]cached, min(max, 1024))}
}

func (c *tokenCache) get(token string, keys *keySet) (*Claims, bool) {
	if c.max <= 0 {
		return nil, false
	}
	c.mu.RLock()
	e, ok := c.m[token]
	c.mu.RUnlock()
	if !ok {
		return nil, false
	}
	if !keys.has(e.key) { // the key left the JWKS (or was replaced)
		c.mu.Lock()
		delete(c.m, token)
		c.mu.Unlock()
		return nil, false
	}
	return e.claims, true
}

func (c *tokenCache) put(token string, claims *Claims, key *publicKey) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k := range c.m { // evict one at random: map order is random
			delete(c.m, k)
			break
		}
	}
	c.m[token] = cached{claims: claims, key: key}
}
