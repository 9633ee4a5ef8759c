package verify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// defaultJWKSMaxAge applies when the JWKS answer has no max-age.
	defaultJWKSMaxAge = 5 * time.Minute
	// maxJWKSMaxAge caps what a JWKS answer may ask for.
	maxJWKSMaxAge = 24 * time.Hour
	// refetchInterval is the least time between two JWKS fetches.
	refetchInterval = time.Second
	// maxJWKSBackoff caps the wait after failed fetches (doubling from
	// 2 × refetchInterval).
	maxJWKSBackoff = time.Minute
	// jwksTimeout bounds one fetch, whatever the HTTP client's timeout.
	jwksTimeout = 10 * time.Second
	// maxJWKSBytes bounds a JWKS document.
	maxJWKSBytes = 1 << 20
	// defaultJWKSMaxStale is Options.JWKSMaxStale's default: a day of
	// JWKS failures is an outage someone has noticed, and long enough
	// that a resource server rides out any repair of authd's.
	defaultJWKSMaxStale = 24 * time.Hour
)

// publicKey is one key of the JWKS. A key keeps its identity (pointer)
// across refetches while its kid and material are unchanged, which the
// verified-token cache relies on.
type publicKey struct {
	kid, alg string
	key      crypto.PublicKey
	raw      string // the JWK's material, to compare across fetches
}

// keySet is the cached JWKS. Every fetch is paced (refetchInterval apart,
// longer after failures), whatever asks for it, so that neither junk kids
// nor a failing JWKS endpoint make the verifier hammer authd. A fetch
// belongs to the Verifier, not to the caller that started it: a caller
// giving up (its context) leaves it running for the others, so that its
// outcome is always a verdict on authd's JWKS.
type keySet struct {
	v          *Verifier
	maxStale   time.Duration // Options.JWKSMaxStale; negative: no limit
	fetches    atomic.Int64
	failed     atomic.Int64 // fetches that failed, for Stats
	refreshing atomic.Bool  // a background refresh is under way

	mu        sync.RWMutex
	keys      map[string]*publicKey
	fetchedAt time.Time  // the last successful fetch (Options.Now)
	fresh     time.Time  // until when the set may be used without refetching (Options.Now)
	next      time.Time  // no fetch before it (wall clock: it paces requests)
	failures  int        // consecutive failed fetches, for the backoff
	current   *jwksFetch // the fetch under way (waiting for the pace, or fetching), nil when none
}

// jwksFetch is one fetch; done is closed once err is set.
type jwksFetch struct {
	done chan struct{}
	err  error
}

// errPaced is a fetch not made: the last one was too recent.
var errPaced = errors.New("verify: JWKS fetch paced")

func newKeySet(v *Verifier, maxStale time.Duration) *keySet {
	if maxStale == 0 {
		maxStale = defaultJWKSMaxStale
	}
	return &keySet{v: v, maxStale: maxStale, keys: map[string]*publicKey{}}
}

// due reports whether the set is stale at now and the pace allows a
// fetch; with mu held.
func (ks *keySet) due(now time.Time) bool {
	return now.After(ks.fresh) && time.Now().After(ks.next)
}

// spent reports whether the set has been stale for longer than maxStale
// at now: every key is then untrusted until a fetch succeeds, so that a
// key authd withdrew (compromised, say) does not verify tokens for as
// long as the JWKS endpoint fails. With mu held.
func (ks *keySet) spent(now time.Time) bool {
	return ks.maxStale >= 0 && now.After(ks.fresh.Add(ks.maxStale))
}

// has reports whether k is still in the set, and trusted (for cached
// tokens), and refreshes a stale set in the background.
func (ks *keySet) has(k *publicKey) bool {
	now := ks.v.now()
	ks.mu.RLock()
	present, due := ks.keys[k.kid] == k && !ks.spent(now), ks.due(now)
	ks.mu.RUnlock()
	if due {
		ks.refreshInBackground()
	}
	return present
}

// refreshInBackground refetches a stale set without making the caller
// wait; the cached keys serve meanwhile (and if it fails).
func (ks *keySet) refreshInBackground() {
	if !ks.refreshing.CompareAndSwap(false, true) {
		return
	}
	started := ks.v.background(func(ctx context.Context) {
		defer ks.refreshing.Store(false)
		if err := ks.refetch(ctx, false); err != nil && !errors.Is(err, errPaced) {
			ks.v.logger.Warn("verify: refreshing the JWKS failed; keeping the cached keys", "err", err)
		}
	})
	if !started {
		ks.refreshing.Store(false)
	}
}

// lookup returns the key kid. A stale set is refreshed in the background;
// an unknown kid, or a set stale past maxStale, refetches, paced.
func (ks *keySet) lookup(ctx context.Context, kid string) (*publicKey, error) {
	k, stale, spent, due := ks.get(kid)
	if k != nil && !spent {
		if due {
			ks.refreshInBackground()
		}
		return k, nil
	}
	if k == nil && (kid == "" || len(kid) > 200) {
		return nil, fmt.Errorf("%w: missing or bad kid", ErrUnknownKey)
	}
	// authd publishes a new key a JWKS lifetime before it signs with it,
	// so an unknown kid in a stale set is expected (the caller waits for
	// the pace, at most refetchInterval), in a fresh one suspect (no wait).
	// A spent set is stale: its caller waits for the pace too, never for a
	// failure's backoff.
	err := ks.refetch(ctx, stale)
	if err != nil && !errors.Is(err, errPaced) && ctx.Err() == nil {
		ks.v.logger.Warn("verify: fetching the JWKS failed", "kid", kid, "err", err)
	}
	k, _, spent, _ = ks.get(kid)
	if (k == nil || spent) && err != nil && ks.v.closed.Load() {
		return nil, ErrClosed // closed during the fetch: nothing is known of the key
	}
	if spent {
		return nil, ks.spentError()
	}
	if k == nil {
		if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
			// The caller's context ended before the fetch answered: whether
			// authd has the key is not known, and the token may be good
			// (a 401 would tell its holder to throw it away).
			return nil, fmt.Errorf("%w: key %q: the context ended before the JWKS was fetched: %w", ErrUnavailable, kid, cerr)
		}
		if ks.failing() {
			// A key authd began signing with while its JWKS cannot be
			// fetched: the token may be good, and its holder should retry
			// rather than throw it away (a 401 would tell it to).
			return nil, fmt.Errorf("%w: key %q is not in the last JWKS fetched, and the JWKS cannot be fetched now", ErrUnavailable, kid)
		}
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, kid)
	}
	return k, nil
}

// failing reports whether the last fetch of the set failed.
func (ks *keySet) failing() bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.failures > 0
}

// get returns the key kid (nil when unknown) and the set's state at the
// Verifier's now.
func (ks *keySet) get(kid string) (k *publicKey, stale, spent, due bool) {
	now := ks.v.now()
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.keys[kid], now.After(ks.fresh), ks.spent(now), ks.due(now)
}

// spentError is Verify's error while the set is spent.
func (ks *keySet) spentError() error {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return fmt.Errorf("%w: the JWKS cannot be fetched, and its keys are no longer trusted: last fetched %s, "+
		"stale for more than Options.JWKSMaxStale (%s)", ErrUnavailable, ks.fetchedAt.Format(time.RFC3339), ks.maxStale)
}

// refetch fetches the set, one fetch at a time: a caller arriving while a
// fetch is under way takes that one's outcome. When the pace forbids a
// fetch yet, it returns errPaced, or with wait, has the fetch wait for the
// pace if that takes at most refetchInterval (a backoff after failures is
// never waited for). The caller's wait ends with ctx; the fetch does not.
func (ks *keySet) refetch(ctx context.Context, wait bool) error {
	ks.mu.Lock()
	f := ks.current
	if f == nil {
		pace := time.Until(ks.next)
		if pace > 0 && (!wait || pace > refetchInterval) {
			ks.mu.Unlock()
			return errPaced
		}
		f = &jwksFetch{done: make(chan struct{})}
		if !ks.v.background(func(vctx context.Context) { ks.run(vctx, f, pace) }) {
			ks.mu.Unlock()
			return ErrClosed
		}
		ks.current = f
	}
	ks.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// firstFetch fetches the set for New: it retries, as the pace allows, a
// failure that may pass (authd unreachable, 5xx, 429) until ctx ends, and
// returns at once one that will not (jwksRefused).
func (ks *keySet) firstFetch(ctx context.Context) error {
	var last error
	for {
		err := ks.refetch(ctx, true)
		switch {
		case err == nil, errors.As(err, new(jwksRefused)), errors.Is(err, ErrClosed):
			return err
		case ctx.Err() != nil && last != nil:
			return fmt.Errorf("verify: fetching the JWKS: %w (the last attempt: %v)", ctx.Err(), last)
		case ctx.Err() != nil:
			return fmt.Errorf("verify: fetching the JWKS: %w", ctx.Err())
		case !errors.Is(err, errPaced):
			last = err
		}
		ks.mu.Lock()
		wait := time.Until(ks.next)
		ks.mu.Unlock()
		if !errors.Is(err, errPaced) {
			ks.v.logger.Warn("verify: fetching the JWKS failed; retrying", "err", err, "in", wait)
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// run makes the fetch f under the Verifier's context, after waiting pace,
// and records its outcome for the pace and for f's waiters.
func (ks *keySet) run(ctx context.Context, f *jwksFetch, pace time.Duration) {
	defer close(f.done)
	if pace > 0 {
		t := time.NewTimer(pace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	started, err := time.Now(), error(ErrClosed)
	if ctx.Err() == nil {
		err = ks.fetch(ctx)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.current, f.err = nil, err
	switch {
	case err == nil:
		ks.failures = 0
		ks.next = started.Add(refetchInterval)
	case ctx.Err() != nil: // the Verifier closed: no verdict on authd
		ks.next = started.Add(refetchInterval)
	default:
		ks.failed.Add(1)
		ks.failures++
		ks.next = time.Now().Add(min(refetchInterval<<min(ks.failures, 10), maxJWKSBackoff))
	}
}

// jwksRefused marks a JWKS answer that retrying will not change (a wrong
// URL: not found, refused, or something that is not a JWKS), which New
// reports at once.
type jwksRefused struct{ error }

func (e jwksRefused) Unwrap() error { return e.error }

// refusal reports whether an HTTP status says the request is wrong, not
// that the server is unwell: a redirect (never followed: refuseRedirect),
// or 4xx but for a timeout and too many requests.
func refusal(status int) bool {
	return status >= 300 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// fetch fetches the set once; only run calls it.
func (ks *keySet) fetch(ctx context.Context) error {
	ks.fetches.Add(1)
	ctx, cancel := context.WithTimeout(ctx, jwksTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.v.opts.JWKSURL, nil)
	if err != nil {
		return fmt.Errorf("verify: JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.v.client.Do(req)
	if err != nil {
		return fmt.Errorf("verify: fetching the JWKS: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case refusal(resp.StatusCode):
		return jwksRefused{fmt.Errorf("verify: fetching the JWKS: %s", resp.Status)}
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("verify: fetching the JWKS: %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("verify: reading the JWKS: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("verify: the JWKS is over %d bytes", maxJWKSBytes)
	}
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return jwksRefused{fmt.Errorf("verify: the JWKS is not JSON: %w", err)}
	}
	if doc.Keys == nil {
		return jwksRefused{fmt.Errorf("verify: the JWKS has no \"keys\" member")}
	}
	// A well-formed answer is authoritative, even with no usable key in
	// it: a key it leaves out is withdrawn, and tokens it signed (cached
	// ones too) are refused from now on. The keys are parsed before the
	// lock, which every Verify waits for (a cached token's too, to see
	// that its key is still in the set).
	keys := map[string]*publicKey{}
	for _, raw := range *doc.Keys {
		k, err := parseJWK(raw)
		if err != nil {
			ks.v.logger.Warn("verify: skipping a JWKS key", "err", err)
			continue
		}
		if !ks.v.accepts(k.alg) {
			continue // another algorithm's (Options.Algorithms): authd's ID-token keys, say
		}
		keys[k.kid] = k
	}
	if len(keys) == 0 {
		ks.v.logger.Warn("verify: the JWKS has no usable key; every token is refused until it has one")
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for kid, k := range keys {
		if old := ks.keys[kid]; old != nil && old.raw == k.raw && old.alg == k.alg {
			keys[kid] = old // same key: cached tokens it verified stay valid
		}
	}
	ks.keys = keys
	ks.fetchedAt = ks.v.now()
	ks.fresh = ks.fetchedAt.Add(freshFor(resp.Header))
	return nil
}

// freshFor is how long a JWKS answer stays fresh: its max-age less its Age
// (RFC 9111 4.2.3), which a cache on the way (a CDN) sets to how long it
// has held the answer. Without it a copy the cache kept for most of its
// max-age would be kept here for a whole max-age more, and a key authd
// publishes six minutes before it signs (five of max-age, one of reread
// and skew) could sign tokens no cached copy knows, and a removed key be
// trusted twice as long.
func freshFor(h http.Header) time.Duration {
	return max(maxAge(h.Get("Cache-Control"))-age(h.Get("Age")), 0)
}

// age reads an Age header's seconds, capped as max-age is; 0 when there is
// none or it is not a number of seconds (RFC 9111 5.1).
func age(v string) time.Duration {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0
	}
	return time.Duration(min(n, uint64(maxJWKSMaxAge/time.Second))) * time.Second
}

// maxAge reads Cache-Control's max-age (no-store/no-cache: refetch after
// refetchInterval).
func maxAge(cc string) time.Duration {
	for part := range strings.SplitSeq(cc, ",") {
		part = strings.TrimSpace(strings.ToLower(part))
		if part == "no-store" || part == "no-cache" {
			return refetchInterval
		}
		if v, ok := strings.CutPrefix(part, "max-age="); ok {
			// Compared in seconds: a huge max-age would overflow a
			// Duration into a negative one (a set stale at once, refetched
			// every second). One past uint64 asks for as long as it can
			// (RFC 9111 1.2.2) and gets the cap too.
			n, err := strconv.ParseUint(v, 10, 64)
			if err == nil || errors.Is(err, strconv.ErrRange) {
				return time.Duration(min(n, uint64(maxJWKSMaxAge/time.Second))) * time.Second
			}
		}
	}
	return defaultJWKSMaxAge
}

// parseJWK reads one signature key of the kinds authd publishes (Ed25519,
// P-256, RSA). A key without "alg" gets the one its type implies.
func parseJWK(raw json.RawMessage) (*publicKey, error) {
	var j struct {
		Kty, Crv, X, Y, N, E, Kid, Alg, Use string
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, err
	}
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("key %q: use %q", j.Kid, j.Use)
	}
	if j.Kid == "" {
		return nil, fmt.Errorf("a key without kid")
	}
	b64 := base64.RawURLEncoding
	k := &publicKey{kid: j.Kid, raw: strings.Join([]string{j.Kty, j.Crv, j.X, j.Y, j.N, j.E}, ".")}
	switch {
	case j.Kty == "OKP" && j.Crv == "Ed25519":
		x, err := b64.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key %q: bad Ed25519 x", j.Kid)
		}
		k.key, k.alg = ed25519.PublicKey(x), "EdDSA"
	case j.Kty == "EC" && j.Crv == "P-256":
		x, err1 := b64.DecodeString(j.X)
		y, err2 := b64.DecodeString(j.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return nil, fmt.Errorf("key %q: bad P-256 point", j.Kid)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), bytes.Join([][]byte{{4}, x, y}, nil))
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", j.Kid, err)
		}
		k.key, k.alg = pub, "ES256"
	case j.Kty == "RSA":
		n, err1 := b64.DecodeString(j.N)
		e, err2 := b64.DecodeString(j.E)
		if err1 != nil || err2 != nil || len(n) < 256 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("key %q: bad or short RSA key", j.Kid)
		}
		k.key, k.alg = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, "RS256"
	default:
		return nil, fmt.Errorf("key %q: unsupported kty %q crv %q", j.Kid, j.Kty, j.Crv)
	}
	if j.Alg != "" && j.Alg != k.alg {
		// The alg a key declares must be the one its type is used with here:
		// anything else (HS256 on a public key, say) is algorithm confusion.
		if !(k.alg == "RS256" && slices.Contains([]string{"RS384", "RS512", "PS256", "PS384", "PS512"}, j.Alg)) {
			return nil, fmt.Errorf("key %q: alg %q does not fit kty %q", j.Kid, j.Alg, j.Kty)
		}
		k.alg = j.Alg
	}
	return k, nil
}
