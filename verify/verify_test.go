package verify_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd/verify"
	"github.com/golang-jwt/jwt/v5"
)

const (
	issuer   = "https://auth.example.org"
	audience = "authd"
	service  = "service-token-0123456789abcdef0123456789"
)

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeAuthd serves a JWKS, the revocation feed and introspection, as authd
// does, from what the test sets.
type fakeAuthd struct {
	t     testing.TB
	srv   *httptest.Server
	clock *clock

	mu         sync.Mutex
	keys       map[string]ed25519.PrivateKey // kid → key published
	maxAge     int
	age        int           // the JWKS's Age header when > 0 (a cache on the way held it)
	events     []string      // the feed's event data, id = index+1
	pushed     chan struct{} // closed and replaced when an event is added
	feedStatus int           // answer the feed with this status when set
	jwksCalls  int
	jwksStatus int           // answer the JWKS with this status when set
	jwksBody   string        // answer the JWKS with this body when set
	jwksGate   chan struct{} // while not nil, JWKS requests wait for it to close
	introGate  chan struct{} // while not nil, introspection requests wait for it to close

	introspections atomic.Int64 // of tokens, New's probes apart
	probes         atomic.Int64
	connections    atomic.Int64 // open connections to srv
	introInFlight  atomic.Int64
	introMax       atomic.Int64 // the most introspections in flight at once
	active         atomic.Bool
	introStatus    atomic.Int32 // answer introspection with this status when set
	introDelay     atomic.Int64 // introspection answers after this long (nanoseconds)
	dropReused     atomic.Bool  // introspection on a connection used before: closed without an answer
	dropped        atomic.Int64 // connections dropReused closed
}

// connRequests counts the requests a connection to fakeAuthd has carried.
type connRequests struct{}

func newFakeAuthd(t testing.TB) *fakeAuthd {
	f := &fakeAuthd{t: t, clock: &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
		keys: map[string]ed25519.PrivateKey{}, maxAge: 300, pushed: make(chan struct{})}
	f.addKey("k1")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks", f.jwks)
	mux.HandleFunc("GET /.well-known/jwks.json", f.jwks) // where Options.URL looks
	mux.HandleFunc("GET /v1/auth/revocations", f.feed)
	mux.HandleFunc("POST /v1/auth/introspect", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("token") == "verify-probe" { // New's: not a token
			f.probes.Add(1)
			fmt.Fprint(w, `{"active":false}`)
			return
		}
		if f.dropReused.Load() && r.Context().Value(connRequests{}).(*atomic.Int64).Load() > 1 {
			// A kept-alive connection authd closed meanwhile (its idle
			// timeout, a restart): the request gets no answer.
			f.dropped.Add(1)
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		f.introspections.Add(1)
		n := f.introInFlight.Add(1)
		defer f.introInFlight.Add(-1)
		for m := f.introMax.Load(); n > m && !f.introMax.CompareAndSwap(m, n); m = f.introMax.Load() {
		}
		f.mu.Lock()
		gate := f.introGate
		f.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		select {
		case <-time.After(time.Duration(f.introDelay.Load())):
		case <-r.Context().Done():
			return
		}
		if status := f.introStatus.Load(); status != 0 {
			w.WriteHeader(int(status))
			return
		}
		fmt.Fprintf(w, `{"active":%v}`, f.active.Load())
	})
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Context().Value(connRequests{}).(*atomic.Int64).Add(1)
		mux.ServeHTTP(w, r)
	}))
	f.srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connRequests{}, new(atomic.Int64))
	}
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			f.connections.Add(1)
		case http.StateClosed, http.StateHijacked:
			f.connections.Add(-1)
		}
	}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAuthd) addKey(kid string) ed25519.PrivateKey {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[kid] = priv
	return priv
}

func (f *fakeAuthd) removeKey(kid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.keys, kid)
}

func (f *fakeAuthd) key(kid string) ed25519.PrivateKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keys[kid]
}

func (f *fakeAuthd) jwks(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.jwksCalls++
	gate := f.jwksGate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jwksStatus != 0 {
		w.WriteHeader(f.jwksStatus)
		return
	}
	if f.jwksBody != "" {
		w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(f.maxAge))
		io.WriteString(w, f.jwksBody)
		return
	}
	var keys []map[string]string
	for kid, k := range f.keys {
		keys = append(keys, map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig",
			"x": base64.RawURLEncoding.EncodeToString(k.Public().(ed25519.PublicKey))})
	}
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(f.maxAge))
	if f.age > 0 {
		w.Header().Set("Age", strconv.Itoa(f.age))
	}
	json.NewEncoder(w).Encode(map[string]any{"keys": keys})
}

// push adds an event to the feed and returns its id.
func (f *fakeAuthd) push(data string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, data)
	close(f.pushed)
	f.pushed = make(chan struct{})
	return len(f.events)
}

func (f *fakeAuthd) feed(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	status := f.feedStatus
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+service {
		status = http.StatusUnauthorized
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	last, _ := strconv.Atoi(r.Header.Get("Last-Event-ID"))
	w.Header().Set("Content-Type", "text/event-stream")
	synced := false
	for {
		f.mu.Lock()
		evs, pushed := f.events[last:], f.pushed
		f.mu.Unlock()
		for _, data := range evs {
			last++
			fmt.Fprintf(w, "id: %d\ndata: %s\n\n", last, strings.ReplaceAll(data, "ID", strconv.Itoa(last)))
		}
		if !synced {
			fmt.Fprintf(w, "event: synced\ndata: {\"last_id\":%d}\n\n", last)
			synced = true
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-pushed:
		}
	}
}

// options are a Verifier's options against f.
func (f *fakeAuthd) options() verify.Options {
	return verify.Options{Issuer: issuer, Audience: audience, JWKSURL: f.srv.URL + "/jwks",
		RevocationsURL: f.srv.URL + "/v1/auth/revocations", ServiceToken: service, Now: f.clock.Now}
}

func (f *fakeAuthd) verifier(t testing.TB, change ...func(*verify.Options)) *verify.Verifier {
	t.Helper()
	o := f.options()
	for _, c := range change {
		c(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := verify.New(ctx, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// claims are an access token's claims as authd issues them at now.
func (f *fakeAuthd) claims() jwt.MapClaims {
	now := f.clock.Now()
	return jwt.MapClaims{"iss": issuer, "sub": "user-1", "aud": []string{audience}, "exp": now.Add(15 * time.Minute).Unix(),
		"iat": now.Unix(), "nbf": now.Unix(), "jti": "jti-1", "sid": "session-1", "amr": []string{"pwd"}}
}

// sign signs claims with kid's key (or key, when given), with header
// changes.
func (f *fakeAuthd) sign(t testing.TB, kid string, c jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"], tok.Header["typ"] = kid, "at+jwt"
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	key := f.key(kid)
	if key == nil {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for key, val := range c {
		out[key] = val
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func TestVerifyChecks(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	now := f.clock.Now()
	c := f.claims()
	good := f.sign(t, "k1", c, nil)

	_, forgedKey, _ := ed25519.GenerateKey(rand.Reader)
	forged, _ := func() (string, error) {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tok.Header["kid"], tok.Header["typ"] = "k1", "at+jwt"
		return tok.SignedString(forgedKey)
	}()
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, c) // the public key as an HMAC secret
	hs.Header["kid"], hs.Header["typ"] = "k1", "at+jwt"
	confused, _ := hs.SignedString([]byte(f.key("k1").Public().(ed25519.PublicKey)))
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	es := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	es.Header["kid"], es.Header["typ"] = "k1", "at+jwt"
	es256, _ := es.SignedString(ecKey)
	parts := strings.Split(good, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"k1","typ":"at+jwt"}`)) + "." + parts[1] + "."

	for _, tc := range []struct {
		name, tok string
		want      error
	}{
		{"good", good, nil},
		{"typ application/at+jwt", f.sign(t, "k1", c, map[string]any{"typ": "application/at+jwt"}), nil},
		{"nbf within the leeway", f.sign(t, "k1", with(c, "nbf", now.Add(29*time.Second).Unix()), nil), nil},
		{"forged", forged, verify.ErrSignature},
		{"alg none", none, verify.ErrAlgorithm},
		{"HS256 with the public key", confused, verify.ErrAlgorithm},
		{"ES256, not in the JWKS", es256, verify.ErrAlgorithm},
		{"no typ", f.sign(t, "k1", c, map[string]any{"typ": nil}), verify.ErrType},
		{"typ JWT (an ID token)", f.sign(t, "k1", c, map[string]any{"typ": "JWT"}), verify.ErrType},
		{"no kid", f.sign(t, "k1", c, map[string]any{"kid": nil}), verify.ErrUnknownKey},
		{"wrong issuer", f.sign(t, "k1", with(c, "iss", "https://evil.example.org"), nil), verify.ErrIssuer},
		{"wrong audience", f.sign(t, "k1", with(c, "aud", []string{"billing"}), nil), verify.ErrAudience},
		{"no audience", f.sign(t, "k1", with(c, "aud", nil), nil), verify.ErrAudience},
		{"audience as a string", f.sign(t, "k1", with(c, "aud", audience), nil), nil},
		{"no iat", f.sign(t, "k1", with(c, "iat", nil), nil), verify.ErrClaims},
		{"crit header", f.sign(t, "k1", c, map[string]any{"crit": []string{"exp"}}), verify.ErrMalformed},
		{"bad signature encoding", good + "=", verify.ErrMalformed},
		{"expired", f.sign(t, "k1", with(c, "exp", now.Unix()), nil), verify.ErrExpired},
		{"no exp", f.sign(t, "k1", with(c, "exp", nil), nil), verify.ErrClaims},
		{"nbf past the leeway", f.sign(t, "k1", with(c, "nbf", now.Add(31*time.Second).Unix()), nil), verify.ErrNotYetValid},
		{"iat past the leeway", f.sign(t, "k1", with(c, "iat", now.Add(31*time.Second).Unix()), nil), verify.ErrNotYetValid},
		{"no sid", f.sign(t, "k1", with(c, "sid", nil), nil), verify.ErrClaims},
		{"garbage", "a.b.c", verify.ErrMalformed},
		{"two parts", "a.b", verify.ErrMalformed},
		{"huge", strings.Repeat("a", 9000), verify.ErrMalformed},
		{"empty", "", verify.ErrMalformed},
		// The same signature in another spelling (its unused last bits);
		// another spelling of the claims is another signed text.
		{"signature respelled", respell(good), verify.ErrMalformed},
		{"line break in the signature", good[:len(good)-5] + "\n" + good[len(good)-5:], verify.ErrMalformed},
		{"CRLF in the claims", parts[0] + "." + parts[1][:10] + "\r\n" + parts[1][10:] + "." + parts[2], verify.ErrMalformed},
		{"claims respelled", parts[0] + "." + respell(parts[1]) + "." + parts[2], verify.ErrSignature},
	} {
		got, err := v.Verify(context.Background(), tc.tok)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if tc.want != nil && (!errors.Is(err, verify.ErrInvalidToken) || errors.Is(err, verify.ErrUnavailable)) {
			t.Errorf("%s: %v is not of the class ErrInvalidToken alone", tc.name, err)
		}
		if tc.want == nil && err == nil && (got.Subject != "user-1" || got.SessionID != "session-1" || got.ID != "jti-1" ||
			!got.HasAMR("pwd") || got.KeyID != "k1") {
			t.Errorf("%s: claims %+v", tc.name, got)
		}
	}
	// Exactly at exp, a token seen before (cached) is expired too.
	f.clock.Advance(15 * time.Minute)
	if _, err := v.Verify(context.Background(), good); !errors.Is(err, verify.ErrExpired) {
		t.Errorf("cached token at exp: %v, want ErrExpired", err)
	}
}

// respell changes a segment's last character in the bits its base64 leaves
// unused: the same bytes to a lenient decoder, another string.
func respell(seg string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[last^1])
}

// TestUnknownKidPaced: tokens with unknown kids refetch the JWKS at most
// once a second, so junk cannot make the verifier hammer authd.
func TestUnknownKidPaced(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	if calls, limit := f.unknownKids(t, v, verify.ErrUnknownKey); calls > limit {
		t.Errorf("%d JWKS fetches for 20 unknown kids, want at most %d (one a second)", calls, limit)
	}
}

// unknownKids verifies 20 tokens of unknown kids and returns the JWKS
// fetches they made and the most that one a second allows.
func (f *fakeAuthd) unknownKids(t *testing.T, v *verify.Verifier, want error) (calls, limit int) {
	t.Helper()
	start, before := time.Now(), f.calls()
	for i := range 20 {
		if _, err := v.Verify(context.Background(), f.sign(t, fmt.Sprint("junk", i), f.claims(), nil)); !errors.Is(err, want) {
			t.Fatalf("unknown kid: %v, want %v", err, want)
		}
	}
	return f.calls() - before, 1 + int(time.Since(start)/time.Second)
}

// TestNewKeyOnceStale: a key published after the verifier fetched the JWKS
// is found as soon as the cached set is stale (authd signs with a new key
// only a JWKS lifetime after publishing it), without waiting on the pace.
func TestNewKeyOnceStale(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	f.addKey("k2")
	f.clock.Advance(301 * time.Second)
	if _, err := v.Verify(context.Background(), f.sign(t, "k2", f.claims(), nil)); err != nil {
		t.Errorf("the new key once the set is stale: %v", err)
	}
}

// TestCacheNeverOutlivesKey: a cached token stops verifying once its key
// has left the JWKS.
func TestCacheNeverOutlivesKey(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	tok := f.sign(t, "k1", f.claims(), nil)
	for range 2 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if st := v.Stats(); st.CacheHits != 1 || st.CacheMisses != 1 {
		t.Errorf("stats %+v, want one miss then one hit", st)
	}
	f.addKey("k2")
	f.removeKey("k1")
	f.clock.Advance(301 * time.Second) // the cached JWKS is stale: the next use refreshes it
	v.Verify(context.Background(), tok)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := v.Verify(context.Background(), tok); errors.Is(err, verify.ErrUnknownKey) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("a cached token of a key gone from the JWKS: %v, want ErrUnknownKey", err)
		}
	}
}

// TestJWKSAgeCounts: a JWKS answer a cache on the way has held for 290 of
// its 300 s is stale 10 s later, so a key withdrawn meanwhile stops
// verifying then, not a whole max-age later.
func TestJWKSAgeCounts(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	f.mu.Lock()
	f.age = 290
	f.mu.Unlock()
	v := f.verifier(t)
	tok := f.sign(t, "k1", f.claims(), nil)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	f.addKey("k2")
	f.removeKey("k1")
	f.clock.Advance(11 * time.Second)
	v.Verify(context.Background(), tok) // stale: this use refreshes the set
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := v.Verify(context.Background(), tok); errors.Is(err, verify.ErrUnknownKey) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("a token of a key withdrawn, 11 s after an answer 290 s old of max-age 300: %v, want ErrUnknownKey", err)
		}
	}
}

// TestCacheOutlivesARefetchOfItsKey: a JWKS fetched again with a cached
// token's key unchanged keeps the token cached.
func TestCacheOutlivesARefetchOfItsKey(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	tok := f.sign(t, "k1", f.claims(), nil)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(301 * time.Second) // stale: a use refreshes it in the background, once the pace allows
	waitFor(t, func() bool {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		return v.Stats().JWKSFetchedAt.Equal(f.clock.Now())
	})
	hits := v.Stats().CacheHits
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if st := v.Stats(); st.CacheHits != hits+1 || st.CacheMisses != 1 {
		t.Errorf("after the refetch: %d hits, %d misses; want %d, 1: the unchanged key's token stays cached",
			st.CacheHits, st.CacheMisses, hits+1)
	}
}

// TestEveryKeyWithdrawn: a JWKS answer with no key in it withdraws every
// key, cached tokens' too; an answer that is not a JWKS changes nothing.
func TestEveryKeyWithdrawn(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	tok := f.sign(t, "k1", f.claims(), nil)
	for range 2 { // the second is a cache hit
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	setBody := func(body string) {
		f.mu.Lock()
		f.jwksBody = body
		f.mu.Unlock()
		f.clock.Advance(301 * time.Second) // stale: the next use refreshes the set
	}
	setBody(`{"not":"a JWKS"}`)
	before := v.Stats().JWKSFetches
	// An unknown kid in a stale set fetches before it answers; a fetch
	// that got no JWKS cannot tell a new key from a bad one (503).
	if _, err := v.Verify(context.Background(), f.sign(t, "k9", f.claims(), nil)); !errors.Is(err, verify.ErrUnavailable) {
		t.Fatalf("an unknown kid while the JWKS is broken: %v, want ErrUnavailable", err)
	}
	if v.Stats().JWKSFetches == before {
		t.Fatal("the unknown kid made no JWKS fetch")
	}
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after an answer that is not a JWKS: %v, want the cached key kept", err)
	}
	setBody(`{"keys":[]}`)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := v.Verify(context.Background(), tok); errors.Is(err, verify.ErrUnknownKey) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("a cached token once the JWKS is empty: %v, want ErrUnknownKey", err)
		}
	}
	if _, err := v.Verify(context.Background(), f.sign(t, "k1", with(f.claims(), "jti", "jti-2"), nil)); !errors.Is(err, verify.ErrUnknownKey) {
		t.Errorf("a new token of the withdrawn key: %v, want ErrUnknownKey", err)
	}
	o := f.options()
	o.JWKSURL = strings.Replace(o.JWKSURL, "://", "://ops:hunter2@", 1) // and the error keeps the password to itself
	if _, err := verify.New(context.Background(), o); err == nil || !strings.Contains(err.Error(), "no usable key") ||
		strings.Contains(err.Error(), "hunter2") {
		t.Errorf("New against an empty JWKS: %v, want refused, without the URL's password", err)
	}
}

// TestFeedRevocations: session and user events refuse the tokens they name,
// and only those.
func TestFeedRevocations(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	exp := f.clock.Now().Add(16 * time.Minute).Unix()
	c := f.claims()
	tok := f.sign(t, "k1", c, nil)
	other := f.sign(t, "k1", with(c, "sid", "session-2"), nil)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	f.push(fmt.Sprintf(`{"id":ID,"sid":"session-1","exp":%d}`, exp))
	waitFor(t, func() bool { _, err := v.Verify(context.Background(), tok); return errors.Is(err, verify.ErrRevoked) })
	if _, err := v.Verify(context.Background(), other); err != nil {
		t.Errorf("another session: %v", err)
	}

	// A user event revokes the tokens issued before it, not those after.
	f.clock.Advance(time.Minute)
	before := f.clock.Now().Unix()
	f.push(fmt.Sprintf(`{"id":ID,"sub":"user-1","before":%d,"exp":%d}`, before, exp))
	waitFor(t, func() bool { _, err := v.Verify(context.Background(), other); return errors.Is(err, verify.ErrRevoked) })
	later := f.sign(t, "k1", with(with(f.claims(), "sid", "session-3"), "iat", before), nil)
	if _, err := v.Verify(context.Background(), later); err != nil {
		t.Errorf("a token issued at the user event's time: %v", err)
	}
	if n := f.introspections.Load(); n != 0 {
		t.Errorf("%d introspections, want none", n)
	}
	if st := v.Stats(); st.LastEventID != 2 || !st.FeedConnected || st.Revoked != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestFeedForgetsExpiredRevocations: the verifier remembers a revocation
// only while a token it names can be unexpired; every 256th event it
// forgets the others (its memory follows the live tokens, not every
// revocation ever heard), and keeps those still needed.
func TestFeedForgetsExpiredRevocations(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	past, future := f.clock.Now().Add(-2*time.Minute).Unix(), f.clock.Now().Add(16*time.Minute).Unix()
	for i := 1; i < 256; i++ {
		exp := past
		if i == 7 {
			exp = future
		}
		f.push(fmt.Sprintf(`{"id":ID,"sid":"session-%d","exp":%d}`, i, exp))
	}
	waitFor(t, func() bool { return v.Stats().LastEventID == 255 })
	if st := v.Stats(); st.Revoked != 255 {
		t.Fatalf("before the 256th event: %d remembered, want 255", st.Revoked)
	}
	f.push(fmt.Sprintf(`{"id":ID,"sid":"session-256","exp":%d}`, future))
	waitFor(t, func() bool { return v.Stats().LastEventID == 256 })
	if st := v.Stats(); st.Revoked != 2 {
		t.Errorf("after the 256th event: %d remembered, want 2 (the two unexpired)", st.Revoked)
	}
	tok := f.sign(t, "k1", with(f.claims(), "sid", "session-7"), nil)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("a token of a revoked session still remembered: %v, want ErrRevoked", err)
	}
}

// TestRevocationsPastTheBound: the verifier remembers at most
// MaxRevocations revoked sessions and users. A revocation past the bound
// is not kept, and until every token it can name has expired, a token
// issued before it arrived (a minute of skew included) is decided by the Policy,
// with no grace (introspection by default, ErrUnavailable with FailClosed,
// saying why), while one issued later is checked against the feed; then
// all are. An event naming only expired tokens changes nothing.
func TestRevocationsPastTheBound(t *testing.T) {
	t.Parallel()
	for _, policy := range []verify.Policy{verify.FallBackToIntrospection, verify.FailClosed} {
		f := newFakeAuthd(t)
		v := f.verifier(t, func(o *verify.Options) { o.MaxRevocations, o.Policy = 2, policy })
		now := f.clock.Now()
		soon, later, past := now.Add(2*time.Minute).Unix(), now.Add(16*time.Minute).Unix(), now.Add(-2*time.Minute).Unix()
		f.push(fmt.Sprintf(`{"id":ID,"sid":"session-a","exp":%d}`, later))
		f.push(fmt.Sprintf(`{"id":ID,"sub":"user-b","before":%d,"exp":%d}`, now.Unix()-60, later))
		f.push(fmt.Sprintf(`{"id":ID,"sid":"session-gone","exp":%d}`, past))
		waitFor(t, func() bool { return v.Stats().LastEventID == 3 })
		tok := f.sign(t, "k1", with(f.claims(), "sid", "session-9"), nil)
		if st := v.Stats(); st.Revoked != 2 || st.RevocationsFull || st.RevocationsDropped != 0 {
			t.Fatalf("%v: at the bound, an expired revocation: %+v, want 2 kept, not full", policy, st)
		}
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("%v: at the bound: %v", policy, err)
		}

		f.push(fmt.Sprintf(`{"id":ID,"sid":"session-1","exp":%d}`, soon)) // past the bound
		waitFor(t, func() bool { return v.Stats().LastEventID == 4 })
		if st := v.Stats(); st.Revoked != 2 || !st.RevocationsFull || st.RevocationsDropped != 1 || !st.FeedConnected {
			t.Errorf("%v: past the bound: %+v, want 2 kept, full, one dropped, connected", policy, st)
		}
		f.active.Store(true)
		_, err := v.Verify(context.Background(), tok)
		switch policy {
		case verify.FailClosed:
			if !errors.Is(err, verify.ErrUnavailable) || !strings.Contains(err.Error(), "MaxRevocations") {
				t.Errorf("FailClosed, past the bound: %v, want ErrUnavailable naming MaxRevocations", err)
			}
		default:
			if err != nil || f.introspections.Load() != 1 {
				t.Errorf("past the bound: %v after %d introspections, want the token introspected (active)", err, f.introspections.Load())
			}
			f.active.Store(false)
			if _, err := v.Verify(context.Background(), f.sign(t, "k1", with(f.claims(), "sid", "session-1"), nil)); !errors.Is(err, verify.ErrRevoked) {
				t.Errorf("the revocation not kept, introspected: %v, want ErrRevoked", err)
			}
		}

		f.clock.Advance(time.Minute + time.Second)
		before := f.introspections.Load()
		fresh := f.sign(t, "k1", with(f.claims(), "sid", "session-10"), nil) // issued after the drop (and its minute of skew)
		if _, err := v.Verify(context.Background(), fresh); err != nil || f.introspections.Load() != before || !v.Stats().RevocationsFull {
			t.Errorf("%v: a token issued after the drop: %v (%d introspections, want %d; full %v): want the feed's answer",
				policy, err, f.introspections.Load(), before, v.Stats().RevocationsFull)
		}
		f.clock.Advance(2 * time.Minute) // session-1's tokens have expired
		if st := v.Stats(); st.RevocationsFull {
			t.Errorf("%v: once the dropped revocation's tokens have expired: %+v, want not full", policy, st)
		}
		before = f.introspections.Load()
		f.active.Store(false)
		if _, err := v.Verify(context.Background(), tok); err != nil || f.introspections.Load() != before {
			t.Errorf("%v: current again: %v (%d introspections, want %d): want the feed's answer", policy, err, f.introspections.Load(), before)
		}

		// The bound counts revocations that can matter: expired ones are
		// forgotten as a new one comes to a full memory.
		f.clock.Advance(15 * time.Minute)
		f.push(fmt.Sprintf(`{"id":ID,"sid":"session-c","exp":%d}`, f.clock.Now().Add(15*time.Minute).Unix()))
		waitFor(t, func() bool { return v.Stats().LastEventID == 5 })
		if st := v.Stats(); st.Revoked != 1 || st.RevocationsFull || st.RevocationsDropped != 1 {
			t.Errorf("%v: a revocation once the others expired: %+v, want it kept alone, not full", policy, st)
		}
	}
}

// TestFeedLostFallsBackToIntrospection: by default, once the feed has been
// lost for a grace of about 2 s, tokens are introspected; introspection's
// answer decides, and serves its token until the feed has caught up, for
// IntrospectionTTL (10 s by default) at most: one call per token per
// outage and TTL, not one per request.
func TestFeedLostFallsBackToIntrospection(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	tok := f.sign(t, "k1", f.claims(), nil)
	verifies := func(what string, want error) {
		t.Helper()
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", what, err, want)
		}
	}
	introspected := func(what string, want int64) {
		t.Helper()
		if n := f.introspections.Load(); n != want {
			t.Errorf("%s: %d introspections, want %d", what, n, want)
		}
	}
	f.loseFeed()
	waitFor(t, func() bool { return !v.Stats().FeedConnected })
	verifies("feed just lost", nil)
	introspected("during the grace", 0)
	time.Sleep(feedLossGrace)

	f.active.Store(true)
	verifies("feed lost, introspection active", nil)
	f.active.Store(false) // revoked: the feed would have said so
	f.clock.Advance(5 * time.Second)
	verifies("feed lost, the answer kept", nil)
	introspected("one token, the answer kept", 1)
	f.clock.Advance(6 * time.Second) // past IntrospectionTTL (10 s)
	verifies("feed lost, the answer past IntrospectionTTL", verify.ErrRevoked)
	introspected("the answer past IntrospectionTTL", 2)

	f.active.Store(true)
	f.feedBack(t, v)
	verifies("feed back", nil)
	introspected("feed back", 2)
	if st := v.Stats(); st.Reconnects == 0 {
		t.Errorf("feed back: stats %+v, want reconnections counted", st)
	}

	// Another outage asks again: the answer of the last one (inactive, and
	// not yet past IntrospectionTTL) is of no use in this one.
	f.feedLost(t, v)
	verifies("the next outage", nil)
	introspected("the next outage", 3)
}

// TestIntrospectionErrorUnwraps: the ErrUnavailable of a failed
// introspection wraps its cause, so that a caller can tell its own
// deadline from authd's failure.
func TestIntrospectionErrorUnwraps(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	tok := f.sign(t, "k1", f.claims(), nil)
	f.feedLost(t, v)
	defer f.holdIntrospection()() // introspection hangs
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := v.Verify(ctx, tok); !errors.Is(err, verify.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Verify whose deadline passed during introspection: %v, want ErrUnavailable and DeadlineExceeded", err)
	}
}

// TestRedirectsNotFollowed: no request follows a redirect — not the JWKS
// (it could land on plain HTTP), not introspection (it would carry the
// service token and the token elsewhere), not even with a client of the
// caller's that would.
func TestRedirectsNotFollowed(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		fmt.Fprint(w, `{"active":true}`)
	}))
	t.Cleanup(other.Close)
	var introspectionMoved atomic.Bool // until set, the redirect's introspection is authd's
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := f.srv.URL + r.URL.Path
		if r.URL.Path == "/v1/auth/introspect" {
			if !introspectionMoved.Load() {
				fmt.Fprint(w, `{"active":false}`)
				return
			}
			target = other.URL + r.URL.Path
		}
		http.Redirect(w, r, target, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	following := func(o *verify.Options) { o.HTTPClient = &http.Client{Timeout: 5 * time.Second} }

	o := f.options()
	following(&o)
	o.JWKSURL = redirect.URL + "/jwks"
	if _, err := verify.New(context.Background(), o); err == nil || !strings.Contains(err.Error(), "307") {
		t.Errorf("New with a redirected JWKS: %v, want the 307 refused", err)
	}

	// New's probe of a redirected introspection fails New; one that
	// moves later fails the fallback.
	introspectionMoved.Store(true)
	o = f.options()
	following(&o)
	o.IntrospectionURL = redirect.URL + "/v1/auth/introspect"
	if _, err := verify.New(context.Background(), o); err == nil || !strings.Contains(err.Error(), "307") {
		t.Errorf("New with a redirected introspection: %v, want the 307 refused", err)
	}
	introspectionMoved.Store(false)
	v := f.verifier(t, following, func(o *verify.Options) { o.IntrospectionURL = redirect.URL + "/v1/auth/introspect" })
	introspectionMoved.Store(true)
	f.feedLost(t, v)
	if _, err := v.Verify(context.Background(), f.sign(t, "k1", f.claims(), nil)); !errors.Is(err, verify.ErrUnavailable) {
		t.Errorf("a redirected introspection: %v, want ErrUnavailable", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("%d requests reached the redirect's target, want none", n)
	}
}

// TestNewProbesIntrospection: New asks the introspection URL about a junk
// token, and fails at once when the answer is not authd's {"active":false}
// (a wrong URL or service token would otherwise show only in a feed
// outage); a failure that may pass (503) is only logged; FailClosed, which
// never introspects, does not probe.
func TestNewProbesIntrospection(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	f.verifier(t)
	if n := f.probes.Load(); n != 1 {
		t.Errorf("%d probes of introspection by New, want 1", n)
	}
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		policy verify.Policy
		fails  bool
	}{
		{"not found", func(w http.ResponseWriter) { w.WriteHeader(http.StatusNotFound) }, verify.FallBackToIntrospection, true},
		{"unauthorized", func(w http.ResponseWriter) { w.WriteHeader(http.StatusUnauthorized) }, verify.FallBackToIntrospection, true},
		{"a login page", func(w http.ResponseWriter) { io.WriteString(w, "<html>sign in</html>") }, verify.FallBackToIntrospection, true},
		{"JSON without active", func(w http.ResponseWriter) { io.WriteString(w, `{"status":"ok"}`) }, verify.FallBackToIntrospection, true},
		{"junk called active", func(w http.ResponseWriter) { io.WriteString(w, `{"active":true}`) }, verify.FallBackToIntrospection, true},
		{"unavailable", func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) }, verify.FallBackToIntrospection, false},
		{"not found, FailClosed", func(w http.ResponseWriter) { w.WriteHeader(http.StatusNotFound) }, verify.FailClosed, false},
	} {
		intro := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { tc.answer(w) }))
		o := f.options()
		o.IntrospectionURL, o.Policy = intro.URL+"/introspect", tc.policy
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, err := verify.New(ctx, o)
		cancel()
		switch {
		case tc.fails && (err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "IntrospectionURL")):
			t.Errorf("%s: New: %v, want it refused at once, naming IntrospectionURL", tc.name, err)
		case !tc.fails && err != nil:
			t.Errorf("%s: New: %v, want a Verifier", tc.name, err)
		}
		if err == nil {
			v.Close()
		}
		intro.Close()
	}
}

// TestNewRefused: a wrong service token fails New at once.
func TestNewRefused(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	o := f.options()
	o.ServiceToken = "wrong"
	if _, err := verify.New(context.Background(), o); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("New with a wrong service token: %v, want the 401", err)
	}
	o = f.options()
	o.Audience = ""
	if _, err := verify.New(context.Background(), o); err == nil {
		t.Error("New without an audience succeeded")
	}
	// A JWKS URL that is wrong: not found, or not a JWKS. New fails at
	// once, though its context would let it wait.
	for name, set := range map[string]func(*fakeAuthd){
		"404":       func(f *fakeAuthd) { f.jwksStatus = http.StatusNotFound },
		"not JSON":  func(f *fakeAuthd) { f.jwksBody = "<html>a login page</html>" },
		"no keys":   func(f *fakeAuthd) { f.jwksBody = `{"issuer":"x"}` },
		"forbidden": func(f *fakeAuthd) { f.jwksStatus = http.StatusForbidden },
	} {
		f := newFakeAuthd(t)
		f.mu.Lock()
		set(f)
		f.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := verify.New(ctx, f.options())
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("New with a JWKS that is %s: %v, want its refusal at once, not a wait until the deadline", name, err)
		}
	}
}

// TestNewNamesMissingOptions: New names every required option missing, in
// the order Options lists them, the same on every call.
func TestNewNamesMissingOptions(t *testing.T) {
	t.Parallel()
	want := "verify: required, but empty: Options.Issuer, Options.JWKSURL, Options.ServiceToken (or Options.URL, authd's public URL)"
	for range 20 {
		_, err := verify.New(context.Background(), verify.Options{Audience: audience, RevocationsURL: "https://a.example/r"})
		if err == nil || err.Error() != want {
			t.Fatalf("New without Issuer, JWKSURL and ServiceToken: %v, want %q", err, want)
		}
	}
}

// TestNewRefusesUnclearChoices: a Policy of no name, or an empty entry in
// RequireAMR or Clients (strings.Split of an unset variable), is refused
// by New, naming the option, before it asks authd anything.
func TestNewRefusesUnclearChoices(t *testing.T) {
	t.Parallel()
	base := verify.Options{Issuer: issuer, Audience: audience, JWKSURL: "https://a.example/jwks",
		RevocationsURL: "https://a.example/r", ServiceToken: "token"}
	for _, tc := range []struct {
		name string
		set  func(*verify.Options)
		want string
	}{
		{"a policy of no name", func(o *verify.Options) { o.Policy = verify.Policy(2) }, "Options.Policy: 2 is neither"},
		{"an empty amr", func(o *verify.Options) { o.RequireAMR = strings.Split("", ",") }, "Options.RequireAMR: an empty entry"},
		{"an empty client", func(o *verify.Options) { o.Clients = []string{"app", ""} }, "Options.Clients: an empty entry"},
	} {
		opts := base
		tc.set(&opts)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := verify.New(ctx, opts)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestNewWaitsForAuthd: authd starting or restarting (its JWKS or feed
// answering 503 for a moment) makes New wait and retry while its context
// lasts, not fail at once: a resource server started beside authd must not
// crash-loop. A deadline that ends first names the last failure.
func TestNewWaitsForAuthd(t *testing.T) {
	t.Parallel()
	for _, which := range []string{"JWKS", "feed"} {
		t.Run(which, func(t *testing.T) {
			t.Parallel()
			f := newFakeAuthd(t)
			set := func(status int) {
				f.mu.Lock()
				defer f.mu.Unlock()
				if which == "JWKS" {
					f.jwksStatus = status
				} else {
					f.feedStatus = status
				}
			}
			set(http.StatusServiceUnavailable)
			// Room for a first fetch on a loaded machine: the 503 must be
			// what New met by its deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, err := verify.New(ctx, f.options()); err == nil || !strings.Contains(err.Error(), "503") {
				t.Errorf("New while the %s answers 503, until its deadline: %v, want the 503 named", which, err)
			}
			time.AfterFunc(500*time.Millisecond, func() { set(0) })
			ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			v, err := verify.New(ctx, f.options())
			if err != nil {
				t.Fatalf("New while the %s answered 503 for a moment: %v, want it to wait", which, err)
			}
			v.Close()
		})
	}
}

// TestMiddlewareSaysWhyAtDebug: a verifier whose Audience is not the
// tokens' refuses them all; its Logger says why at debug, the token in no
// line.
func TestMiddlewareSaysWhyAtDebug(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	v := f.verifier(t, func(o *verify.Options) {
		o.Audience = "not-authd"
		o.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	tok := f.sign(t, "k1", f.claims(), nil)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	v.Middleware(http.NotFoundHandler()).ServeHTTP(rec, req)
	mu.Lock()
	defer mu.Unlock()
	if rec.Code != 401 || !strings.Contains(logs.String(), "token refused") || !strings.Contains(logs.String(), "audience") {
		t.Errorf("%d, log:\n%s\nwant 401 and the audience named at debug", rec.Code, logs.String())
	}
	if strings.Contains(logs.String(), tok[len(tok)-20:]) {
		t.Error("the token is in the log")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestMiddleware: the answers a resource server gives.
func TestMiddleware(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t, func(o *verify.Options) { o.RequireMFA = true })
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := verify.ClaimsFrom(r.Context())
		if !ok {
			t.Error("no claims in the context")
		}
		fmt.Fprint(w, c.Subject)
	}))
	mfa := f.sign(t, "k1", with(f.claims(), "amr", []string{"pwd", "otp", "mfa"}), nil)
	pwd := f.sign(t, "k1", f.claims(), nil)
	for _, tc := range []struct {
		name, auth string
		status     int
		challenge  string
	}{
		{"no token", "", 401, "Bearer"},
		{"not bearer", "Basic eDp5", 401, "Bearer"},
		{"lower-case scheme", "bearer " + mfa, 200, ""},
		{"bad token", "Bearer x.y.z", 401, `error="invalid_token"`},
		{"password only", "Bearer " + pwd, 401, `error="insufficient_user_authentication"`},
		{"second factor", "Bearer " + mfa, 200, ""},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status || !strings.Contains(rec.Header().Get("WWW-Authenticate"), tc.challenge) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, rec.Code, rec.Header().Get("WWW-Authenticate"), tc.status, tc.challenge)
		}
		if strings.Contains(rec.Header().Get("WWW-Authenticate"), "acr_values") {
			t.Errorf("%s: %q asks for acr_values, which authd ignores", tc.name, rec.Header().Get("WWW-Authenticate"))
		}
		if tc.status != 200 && rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", tc.name, rec.Header().Get("Content-Type"))
		}
	}
	// Of two Authorization headers neither counts: which would is the reader's choice.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Add("Authorization", "Bearer "+mfa)
	req.Header.Add("Authorization", "Bearer x.y.z")
	if h.ServeHTTP(rec, req); rec.Code != 401 {
		t.Errorf("two Authorization headers, the first valid: %d, want 401", rec.Code)
	}
	// A token in the query or a form body is not read (RFC 6750 2.2, 2.3:
	// URLs end up in logs): the request has none.
	rec = httptest.NewRecorder()
	req = httptest.NewRequest("POST", "/?access_token="+mfa, strings.NewReader("access_token="+mfa))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if h.ServeHTTP(rec, req); rec.Code != 401 || rec.Header().Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("a valid token in the query and the body: %d %q, want 401 with the bare challenge", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	// RequireMFA's refusal is ErrMFARequired itself, as it always was: a
	// caller may compare with ==. So is RequireAMR's, for mfa.
	if _, err := v.Verify(context.Background(), pwd); err != verify.ErrMFARequired {
		t.Errorf("RequireMFA, a password-only login: %v, want ErrMFARequired itself", err)
	}
	amr := f.verifier(t, func(o *verify.Options) { o.RequireAMR = []string{"mfa"} })
	if _, err := amr.Verify(context.Background(), pwd); err != verify.ErrMFARequired {
		t.Errorf("RequireAMR mfa, a password-only login: %v, want ErrMFARequired itself", err)
	}
	// A revoked session's token is refused as revoked, not sent to step up
	// a session that has ended: as a route's RequireAMR (after Verify) does.
	f.push(fmt.Sprintf(`{"id":ID,"sid":"session-1","exp":%d}`, f.clock.Now().Add(time.Hour).Unix()))
	waitFor(t, func() bool { return v.Stats().LastEventID == 1 && amr.Stats().LastEventID == 1 })
	for name, v := range map[string]*verify.Verifier{"RequireMFA": v, "RequireAMR mfa": amr} {
		if _, err := v.Verify(context.Background(), pwd); !errors.Is(err, verify.ErrRevoked) {
			t.Errorf("%s, a revoked password-only login: %v, want ErrRevoked", name, err)
		}
	}
	v.Close()
	if _, err := v.Verify(context.Background(), mfa); !errors.Is(err, verify.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

// TestCloseLeavesNoConnection: Close closes every connection the Verifier
// opened, the JWKS fetch's kept alive included, when the client is its
// own: a program that makes and closes verifiers (tests, reloads) must not
// pile up idle connections in http.DefaultTransport.
func TestCloseLeavesNoConnection(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	f.addKey("k2")
	f.clock.Advance(301 * time.Second) // stale: k2's token fetches the JWKS beside the feed's connection
	if _, err := v.Verify(context.Background(), f.sign(t, "k2", f.claims(), nil)); err != nil {
		t.Fatal(err)
	}
	if n := f.connections.Load(); n < 2 {
		t.Fatalf("%d connections open, want the feed's and the JWKS fetch's", n)
	}
	v.Close()
	for deadline := time.Now().Add(5 * time.Second); f.connections.Load() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open after Close, want none", f.connections.Load())
		}
	}
}

// TestVerifierNotFromNew: a nil or zero Verifier (a struct field never
// set, say) answers as a closed one, ErrClosed and a 503, instead of
// panicking in every request.
func TestVerifierNotFromNew(t *testing.T) {
	t.Parallel()
	for name, v := range map[string]*verify.Verifier{"nil": nil, "zero": {}} {
		if _, err := v.Verify(context.Background(), "a.b.c"); !errors.Is(err, verify.ErrClosed) {
			t.Errorf("%s Verifier: Verify: %v, want ErrClosed", name, err)
		}
		if err := v.Close(); !errors.Is(err, verify.ErrClosed) {
			t.Errorf("%s Verifier: Close: %v, want ErrClosed", name, err)
		}
		if st := v.Stats(); st != (verify.Stats{}) {
			t.Errorf("%s Verifier: Stats %+v, want zero", name, st)
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", "Bearer a.b.c")
		v.Middleware(http.NotFoundHandler()).ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s Verifier: Middleware answered %d, want 503", name, rec.Code)
		}
	}
}

// TestMiddlewareSaysItsVerifierIsNotFromNew: Middleware on a Verifier New
// did not make says so once, in slog.Default's log, rather than answer 503
// in silence as if authd were down. Not parallel: it sets slog's default.
func TestMiddlewareSaysItsVerifierIsNotFromNew(t *testing.T) {
	old := slog.Default()
	t.Cleanup(func() { slog.SetDefault(old) })
	for name, v := range map[string]*verify.Verifier{"nil": nil, "zero": {}} {
		var logs bytes.Buffer
		var mu sync.Mutex
		slog.SetDefault(slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)))
		h := v.Middleware(http.NotFoundHandler())
		for range 3 {
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Authorization", "Bearer a.b.c")
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
		mu.Lock()
		if n := strings.Count(logs.String(), "not made by verify.New"); n != 1 {
			t.Errorf("%s Verifier: %d log lines saying it is not New's, want 1:\n%s", name, n, logs.String())
		}
		mu.Unlock()
	}
}

// TestMiddlewareNamesTheMissingMethod: a token refused for a method of
// RequireAMR other than mfa (a device-bound passkey, hwk) says that method
// is required, not a second factor its login may well have passed; the
// error is still ErrMFARequired. A method that cannot stand in the
// challenge's quoted string is named in the body only.
func TestMiddlewareNamesTheMissingMethod(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	synced := f.sign(t, "k1", with(f.claims(), "amr", []string{"swk", "mfa"}), nil)
	for _, tc := range []struct {
		method, challenge, detail string
	}{
		{"hwk", `error_description="a login with hwk is required"`, `method \"hwk\"`},
		{`a"b`, `error_description="the login lacks a required authentication method"`, `method \"a\\\"b\"`},
	} {
		v := f.verifier(t, func(o *verify.Options) { o.RequireAMR = []string{tc.method} })
		if _, err := v.Verify(context.Background(), synced); !errors.Is(err, verify.ErrMFARequired) ||
			strings.Contains(err.Error(), "second factor") || !strings.Contains(err.Error(), strconv.Quote(tc.method)) {
			t.Errorf("RequireAMR %s, a synced passkey's token: %v, want ErrMFARequired naming %s", tc.method, err, tc.method)
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", "Bearer "+synced)
		v.Middleware(http.NotFoundHandler()).ServeHTTP(rec, req)
		challenge := rec.Header().Get("WWW-Authenticate")
		if rec.Code != 401 || !strings.Contains(challenge, `error="insufficient_user_authentication"`) ||
			!strings.Contains(challenge, tc.challenge) || strings.Contains(challenge, "acr_values") {
			t.Errorf("RequireAMR %s: %d %q, want 401 with %s and no acr_values", tc.method, rec.Code, challenge, tc.challenge)
		}
		if body := rec.Body.String(); !strings.Contains(body, tc.detail) || strings.Contains(body, "second factor") {
			t.Errorf("RequireAMR %s: body %s, want the method named, no second factor", tc.method, body)
		}
	}
}

// waitFor polls cond for at most five seconds (the feed is asynchronous).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
	}
}

// BenchmarkRawSignature is one Ed25519 signature check of a token: the
// floor of what verifying a token seen for the first time can cost.
func BenchmarkRawSignature(b *testing.B) {
	f := newFakeAuthd(b)
	tok := f.sign(b, "k1", f.claims(), nil)
	i := strings.LastIndex(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	pub := f.key("k1").Public().(ed25519.PublicKey)
	msg := []byte(tok[:i])
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("bad signature")
		}
	}
}

// BenchmarkVerifyFirstSeen verifies a token never seen before (no cache):
// parsing, signature, claims and revocations.
func BenchmarkVerifyFirstSeen(b *testing.B) {
	f := newFakeAuthd(b)
	v := f.verifier(b, func(o *verify.Options) { o.CacheSize = -1 })
	tok := f.sign(b, "k1", f.claims(), nil)
	ctx := context.Background()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCached verifies a token seen before: a cache hit, its
// times, its key's presence and the revocations.
func BenchmarkVerifyCached(b *testing.B) {
	f := newFakeAuthd(b)
	v := f.verifier(b)
	tok := f.sign(b, "k1", f.claims(), nil)
	ctx := context.Background()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// calls is how many JWKS requests f has had.
func (f *fakeAuthd) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.jwksCalls
}

// loseFeed makes the feed answer 503 and cuts the current stream.
func (f *fakeAuthd) loseFeed() {
	f.mu.Lock()
	f.feedStatus = http.StatusServiceUnavailable
	f.mu.Unlock()
	f.srv.CloseClientConnections()
}

// feedLost cuts v's feed (loseFeed) and waits until v knows, and past
// the grace of about 2 s (wall clock) in which v still checks tokens
// against the revocations it knows: v then follows its Policy.
func (f *fakeAuthd) feedLost(t *testing.T, v *verify.Verifier) {
	t.Helper()
	f.loseFeed()
	waitFor(t, func() bool { return !v.Stats().FeedConnected })
	time.Sleep(feedLossGrace)
}

// feedBack lets the feed answer again and waits until v has caught up.
func (f *fakeAuthd) feedBack(t *testing.T, v *verify.Verifier) {
	t.Helper()
	f.mu.Lock()
	f.feedStatus = 0
	f.mu.Unlock()
	waitFor(t, func() bool { return v.Stats().FeedConnected })
}

// feedLossGrace is the package's grace, and a little more.
const feedLossGrace = 2*time.Second + 50*time.Millisecond

// holdIntrospection makes introspection requests wait until release is
// called.
func (f *fakeAuthd) holdIntrospection() (release func()) {
	gate := make(chan struct{})
	f.mu.Lock()
	defer f.mu.Unlock()
	f.introGate = gate
	return func() { close(gate) }
}

// introspecting is a fakeAuthd that calls tokens active and a Verifier
// of it whose feed is lost past the grace: a Verifier that introspects.
func introspecting(t *testing.T, change ...func(*verify.Options)) (*fakeAuthd, *verify.Verifier) {
	t.Helper()
	f := newFakeAuthd(t)
	v := f.verifier(t, change...)
	f.active.Store(true)
	f.feedLost(t, v)
	return f, v
}

// numbered is f's token with jti "j<i>": a token of its own for each i.
func (f *fakeAuthd) numbered(t *testing.T, i int) string {
	return f.sign(t, "k1", with(f.claims(), "jti", fmt.Sprint("j", i)), nil)
}

// TestJWKSPacedWhileFailing: a stale set, unknown kids and a failing JWKS
// endpoint make at most one fetch a second (fewer: failures back off), not
// one per request.
func TestJWKSPacedWhileFailing(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	f.mu.Lock()
	f.jwksStatus = http.StatusInternalServerError
	f.mu.Unlock()
	f.clock.Advance(301 * time.Second) // the cached set is stale
	// An unknown kid may be a key authd began signing with meanwhile: the
	// token cannot be checked now (503), which is not to say it is bad.
	if calls, limit := f.unknownKids(t, v, verify.ErrUnavailable); calls > limit {
		t.Errorf("%d JWKS fetches for 20 unknown kids while the JWKS fails, want at most %d (one a second)", calls, limit)
	}
	// Known keys keep working from the cache meanwhile.
	if _, err := v.Verify(context.Background(), f.sign(t, "k1", f.claims(), nil)); err != nil {
		t.Errorf("a token of a cached key while the JWKS fails: %v", err)
	}
}

// TestJWKSMaxStale: while the JWKS cannot be fetched the cached keys serve
// past their lifetime for JWKSMaxStale, then no token verifies
// (ErrUnavailable, cached ones too) until a fetch succeeds again; Stats
// counts the failures and says when the last fetch succeeded.
func TestJWKSMaxStale(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t, func(o *verify.Options) { o.JWKSMaxStale = time.Minute })
	fetchedAt := f.clock.Now()
	tok := f.sign(t, "k1", f.claims(), nil)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.jwksStatus = http.StatusInternalServerError
	f.mu.Unlock()
	f.clock.Advance(300*time.Second + 50*time.Second) // stale for 50 s: the cached keys still serve
	waitFor(t, func() bool {                          // a use refreshes the set in the background, once the pace allows; that fails
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("stale for less than JWKSMaxStale: %v, want the cached key trusted", err)
		}
		return v.Stats().JWKSFailures > 0
	})
	if st := v.Stats(); !st.JWKSFetchedAt.Equal(fetchedAt) {
		t.Errorf("stats %+v, want JWKSFetchedAt %s", st, fetchedAt)
	}
	f.clock.Advance(11 * time.Second) // past JWKSMaxStale
	for name, tok := range map[string]string{"a cached token": tok, "a new token": f.sign(t, "k1", with(f.claims(), "jti", "new"), nil)} {
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, verify.ErrUnavailable) {
			t.Errorf("%s with the JWKS stale past JWKSMaxStale: %v, want ErrUnavailable", name, err)
		}
	}
	f.mu.Lock()
	f.jwksStatus = 0
	f.mu.Unlock()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) { // after the failure's backoff
		if _, err := v.Verify(context.Background(), tok); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the JWKS answering again: %v, want the token accepted", err)
		}
	}
	if st := v.Stats(); !st.JWKSFetchedAt.Equal(f.clock.Now()) {
		t.Errorf("stats %+v after a successful fetch, want JWKSFetchedAt %s", st, f.clock.Now())
	}
}

// TestJWKSWaitHonoursContext: a caller waiting for another's JWKS fetch
// gives up when its context ends, unavailable (503), not an unknown key:
// the fetch did not answer, and the token may be good.
func TestJWKSWaitHonoursContext(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	gate := make(chan struct{})
	f.mu.Lock()
	f.jwksGate = gate
	f.mu.Unlock()
	defer close(gate)
	f.clock.Advance(301 * time.Second) // stale: an unknown kid fetches, waiting for the pace
	before := f.calls()
	go v.Verify(context.Background(), f.sign(t, "new-1", f.claims(), nil))
	waitFor(t, func() bool { return f.calls() > before }) // that fetch hangs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, f.sign(t, "new-2", f.claims(), nil))
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		// Whether authd has the key is not known: the token may be good.
		if !errors.Is(err, verify.ErrUnavailable) || errors.Is(err, verify.ErrUnknownKey) ||
			!errors.Is(err, context.Canceled) {
			t.Errorf("Verify with its context ended: %v, want ErrUnavailable and context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Verify still waits for another's JWKS fetch after its context ended")
	}
}

// TestJWKSFetchOutlivesItsCaller: a JWKS fetch started for one request
// belongs to the Verifier. When that request's client hangs up, the
// requests waiting for the same fetch still get its outcome: a token of a
// newly rotated-in key is accepted, not refused with the first caller's
// "context canceled".
func TestJWKSFetchOutlivesItsCaller(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	f.clock.Advance(301 * time.Second) // an idle resource server: its cached set is stale
	f.addKey("k2")                     // key rotation: authd publishes k2, then signs with it
	gate := make(chan struct{})
	f.mu.Lock()
	f.jwksGate = gate // the JWKS answers when the test says
	f.mu.Unlock()
	before := f.calls()

	// A client sends a token with a kid nobody knows, then hangs up.
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, f.sign(t, "junk", f.claims(), nil))
		first <- err
	}()
	waitFor(t, func() bool { return f.calls() > before }) // its fetch is under way

	// A token of the new key arrives meanwhile and waits for that fetch.
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), f.sign(t, "k2", f.claims(), nil))
		done <- err
	}()
	waitFor(t, func() bool { return blockedIn("verify.(*keySet).refetch(") >= 2 })
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("the caller that hung up: %v, want context.Canceled", err)
	}
	close(gate) // authd answers the fetch, with k2 in it
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("a valid token of the rotated-in key k2: %v, want it accepted (another client's hang-up "+
				"must not decide its fate)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
	}
	if n := f.calls() - before; n != 1 {
		t.Errorf("%d JWKS fetches, want 1 (the waiter shares the fetch)", n)
	}
}

// TestExpiryWhileWaiting: a token that expires while Verify waits — for
// a JWKS fetch (its kid unknown) or for introspection (the feed lost) — is
// refused, ErrExpired: its times are checked on a clock read after the
// wait, not before it.
func TestExpiryWhileWaiting(t *testing.T) {
	t.Parallel()
	t.Run("JWKS", func(t *testing.T) {
		t.Parallel()
		f := newFakeAuthd(t)
		v := f.verifier(t)
		gate := f.newKeyHeld()
		before := f.calls()
		tok := f.sign(t, "k2", with(f.claims(), "exp", f.clock.Now().Add(5*time.Second).Unix()), nil)
		done := make(chan error, 1)
		go func() {
			_, err := v.Verify(context.Background(), tok)
			done <- err
		}()
		waitFor(t, func() bool { return f.calls() > before }) // the fetch hangs
		f.clock.Advance(10 * time.Second)                     // past exp, while Verify waits
		close(gate)
		if err := <-done; !errors.Is(err, verify.ErrExpired) {
			t.Errorf("a token that expired during the JWKS fetch: %v, want ErrExpired", err)
		}
	})
	t.Run("introspection", func(t *testing.T) {
		t.Parallel()
		f := newFakeAuthd(t)
		v := f.verifier(t)
		f.active.Store(true)
		tok := f.sign(t, "k1", with(f.claims(), "exp", f.clock.Now().Add(5*time.Second).Unix()), nil)
		f.feedLost(t, v)
		release := f.holdIntrospection()
		done := make(chan error, 1)
		go func() {
			_, err := v.Verify(context.Background(), tok)
			done <- err
		}()
		waitFor(t, func() bool { return f.introspections.Load() > 0 }) // the call hangs
		f.clock.Advance(10 * time.Second)
		release()
		if err := <-done; !errors.Is(err, verify.ErrExpired) {
			t.Errorf("a token that expired during its introspection: %v, want ErrExpired", err)
		}
	})
}

// blockedIn counts the goroutines blocked (on a channel or select) with
// fn in their stack: a deterministic wait for callers to reach a wait.
func blockedIn(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if (strings.Contains(header, "[select") || strings.Contains(header, "[chan ")) && strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// TestIntrospectionShared: while the feed is lost, concurrent requests
// with one token make one introspection call, whose answer is kept; calls
// in flight at once are bounded by MaxIntrospections.
func TestIntrospectionShared(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t, func(o *verify.Options) { o.MaxIntrospections = 3 })
	f.active.Store(true)
	f.feedLost(t, v)
	release := f.holdIntrospection()
	tok := f.sign(t, "k1", f.claims(), nil)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		})
	}
	waitFor(t, func() bool { return f.introspections.Load() >= 1 })
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Verify during the shared introspection: %v", err)
		}
	}
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Error(err)
	}
	if n := f.introspections.Load(); n != 1 {
		t.Errorf("%d introspections for 21 requests with one token, want 1", n)
	}

	// Many tokens at once: at most MaxIntrospections calls in flight.
	release = f.holdIntrospection()
	for i := range 20 {
		wg.Go(func() {
			v.Verify(context.Background(), f.sign(t, "k1", with(f.claims(), "jti", fmt.Sprint("j", i)), nil))
		})
	}
	waitFor(t, func() bool { return f.introInFlight.Load() >= 3 })
	time.Sleep(50 * time.Millisecond) // for any call past the bound to arrive
	release()
	wg.Wait()
	if m := f.introMax.Load(); m > 3 {
		t.Errorf("%d introspections in flight at once, want at most 3 (MaxIntrospections)", m)
	}
	if n := f.introspections.Load(); n != 21 {
		t.Errorf("%d introspections, want 21 (one per token)", n)
	}
}

// TestIntrospectionBreaker: while introspection cannot answer (it hangs
// past the client's timeout), the failures are remembered: one may be the
// connection's, and the next token is still asked about, but after two in
// a row the other requests get ErrUnavailable at once instead of each
// waiting for a call of its own; after a second one call at a time tries
// again, the others still refused meanwhile, and once one succeeds calls
// go ahead.
func TestIntrospectionBreaker(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	f, v := introspecting(t, func(o *verify.Options) { o.HTTPClient = &http.Client{Timeout: timeout} })
	release := f.holdIntrospection() // authd hangs
	token := func(i int) string { return f.numbered(t, i) }
	for i := range 2 {
		if _, err := v.Verify(context.Background(), token(i)); !errors.Is(err, verify.ErrUnavailable) {
			t.Fatalf("introspection hanging: %v, want ErrUnavailable", err)
		}
		if n := f.introspections.Load(); n != int64(i+1) {
			t.Fatalf("after %d failed introspections: %d made, want %d: one failure does not stop calls", i+1, n, i+1)
		}
	}
	tokens := make([]string, 20)
	for i := range tokens {
		tokens[i] = token(2 + i)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, tok := range tokens {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), tok)
			if !errors.Is(err, verify.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("after two failed introspections: %v, want ErrUnavailable, not the earlier calls' deadline", err)
			}
		})
	}
	wg.Wait()
	if d := time.Since(start); d >= timeout {
		t.Errorf("20 requests after two failed introspections took %s, want them refused at once", d)
	}
	if n := f.introspections.Load(); n != 2 {
		t.Errorf("%d introspections, want 2: the failures are remembered", n)
	}
	if st := v.Stats(); st.IntrospectionsRefused != 20 {
		t.Errorf("Stats: %d introspections refused, want 20", st.IntrospectionsRefused)
	}

	time.Sleep(time.Second) // the pause: one call may try again
	trial := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), token(100))
		trial <- err
	}()
	waitFor(t, func() bool { return f.introspections.Load() == 3 })
	if _, err := v.Verify(context.Background(), token(101)); !errors.Is(err, verify.ErrUnavailable) {
		t.Errorf("while one call tries again: %v, want ErrUnavailable at once", err)
	}
	release() // authd answers again
	if err := <-trial; err != nil {
		t.Errorf("the call that tried again: %v", err)
	}
	if _, err := v.Verify(context.Background(), token(102)); err != nil {
		t.Errorf("introspection answering again: %v", err)
	}
	if n := f.introspections.Load(); n != 4 {
		t.Errorf("%d introspections, want 4", n)
	}
}

// TestCloseWhileIntrospecting: a Verify waiting for introspection when the
// Verifier closes returns ErrClosed, as Close says, not a cancellation a
// handler would take for its client's.
func TestCloseWhileIntrospecting(t *testing.T) {
	t.Parallel()
	f, v := introspecting(t)
	release := f.holdIntrospection()
	defer release()
	errs := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), f.numbered(t, 1))
		errs <- err
	}()
	waitFor(t, func() bool { return f.introspections.Load() == 1 })
	v.Close()
	if err := <-errs; !errors.Is(err, verify.ErrClosed) || errors.Is(err, context.Canceled) {
		t.Errorf("Verify waiting for introspection as the Verifier closed: %v, want ErrClosed alone", err)
	}
}

// newKeyHeld makes f's JWKS stale (so that a new kid fetches it), adds key
// k2, and holds the JWKS's answers until the returned gate closes.
func (f *fakeAuthd) newKeyHeld() chan struct{} {
	f.clock.Advance(301 * time.Second)
	f.addKey("k2")
	gate := make(chan struct{})
	f.mu.Lock()
	f.jwksGate = gate
	f.mu.Unlock()
	return gate
}

// TestCloseWhileFetchingTheJWKS: a Verify waiting for the JWKS (a kid it
// does not know) when the Verifier closes returns ErrClosed, not
// ErrUnknownKey, whose 401 would tell the token's holder to throw away a
// token that may be good.
func TestCloseWhileFetchingTheJWKS(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	defer close(f.newKeyHeld())
	before := f.calls()
	errs := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), f.sign(t, "k2", f.claims(), nil))
		errs <- err
	}()
	waitFor(t, func() bool { return f.calls() > before }) // the fetch hangs
	v.Close()
	if err := <-errs; !errors.Is(err, verify.ErrClosed) || errors.Is(err, verify.ErrUnknownKey) {
		t.Errorf("Verify waiting for the JWKS as the Verifier closed: %v, want ErrClosed", err)
	}
}

// TestCloseWhileFetchingASpentJWKS: so does a Verify waiting for the
// fetch of a set past JWKSMaxStale, whose keys are no longer trusted:
// ErrClosed, not the spent set's ErrUnavailable.
func TestCloseWhileFetchingASpentJWKS(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t, func(o *verify.Options) { o.JWKSMaxStale = time.Minute })
	gate := make(chan struct{})
	defer close(gate)
	f.mu.Lock()
	f.jwksGate = gate
	f.mu.Unlock()
	f.clock.Advance(300*time.Second + 61*time.Second) // past the set's lifetime and JWKSMaxStale
	before := f.calls()
	errs := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), f.sign(t, "k1", f.claims(), nil))
		errs <- err
	}()
	waitFor(t, func() bool { return f.calls() > before }) // the fetch hangs
	v.Close()
	// ErrClosed (of the class ErrUnavailable), not the spent JWKS's error.
	if err := <-errs; !errors.Is(err, verify.ErrClosed) || strings.Contains(err.Error(), "JWKS") {
		t.Errorf("Verify waiting for a spent JWKS as the Verifier closed: %v, want ErrClosed", err)
	}
}

// TestBreakerEndsWithTheOutage: introspection failures of one outage do
// not refuse the next one's tokens. The feed caught up in between (authd
// was reachable), so the next outage starts with calls allowed, not with
// one trial at a time and every other token refused.
func TestBreakerEndsWithTheOutage(t *testing.T) {
	t.Parallel()
	f, v := introspecting(t)
	f.introStatus.Store(http.StatusServiceUnavailable)
	for i := range 3 {
		if _, err := v.Verify(context.Background(), f.numbered(t, i)); !errors.Is(err, verify.ErrUnavailable) {
			t.Fatalf("introspection failing: %v, want ErrUnavailable", err)
		}
	}
	if n := f.introspections.Load(); n != 2 {
		t.Fatalf("%d introspections, want 2, then the breaker open", n)
	}
	f.introStatus.Store(0)
	f.feedBack(t, v)

	f.feedLost(t, v) // the next outage
	release := f.holdIntrospection()
	first := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), f.numbered(t, 10))
		first <- err
	}()
	waitFor(t, func() bool { return f.introspections.Load() == 3 })
	second := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), f.numbered(t, 11))
		second <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); f.introspections.Load() < 4; time.Sleep(2 * time.Millisecond) {
		select {
		case err := <-second:
			t.Fatalf("the next outage, another token's call in flight: %v, want it asked about too", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the next outage: a second token is not asked about")
		}
	}
	release()
	for _, done := range []chan error{first, second} {
		if err := <-done; err != nil {
			t.Errorf("the next outage, introspection answering: %v", err)
		}
	}
}

// TestIntrospectionQueueNotCountedAgainstAuthd: a call that waited for a
// free slot still has the whole timeout for authd's answer: its caller
// gives up when its own 10 s (here 2 s) have passed, but the call goes on,
// succeeds, and its answer serves the token's next request; nothing is
// counted as authd's failure. Not parallel: it shortens the timeout.
func TestIntrospectionQueueNotCountedAgainstAuthd(t *testing.T) {
	verify.SetIntrospectionTimeout(t, 2*time.Second)
	f, v := introspecting(t, func(o *verify.Options) { o.MaxIntrospections = 1 })
	f.introDelay.Store(int64(1200 * time.Millisecond)) // slow, within the timeout
	first, queued := f.numbered(t, 1), f.numbered(t, 2)
	errs := []chan error{make(chan error, 1), make(chan error, 1)}
	for i, tok := range []string{first, queued} {
		go func() {
			_, err := v.Verify(context.Background(), tok)
			errs[i] <- err
		}()
		waitFor(t, func() bool { return f.introspections.Load() == 1 }) // the first has the slot
	}
	if err := <-errs[0]; err != nil {
		t.Errorf("the first token: %v", err)
	}
	if err := <-errs[1]; !errors.Is(err, verify.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the queued token, 1.2 s queued and 1.2 s asked: %v, want its caller's wait over (DeadlineExceeded)", err)
	}
	waitFor(t, func() bool { return f.introspections.Load() == 2 && f.introInFlight.Load() == 0 })
	f.introDelay.Store(0)
	if _, err := v.Verify(context.Background(), queued); err != nil {
		t.Errorf("the queued token, its call answered after its caller left: %v", err)
	}
	if n := f.introspections.Load(); n != 2 {
		t.Errorf("%d introspections, want 2: the queued call's answer kept", n)
	}
}

// TestIntrospectionRetriedOnAStaleConnection: a call sent on a kept-alive
// connection that authd has closed meanwhile (its idle timeout, a
// restart) is retried on a new one, as a GET would be, rather than fail
// and count toward the breaker.
func TestIntrospectionRetriedOnAStaleConnection(t *testing.T) {
	t.Parallel()
	f, v := introspecting(t)
	if _, err := v.Verify(context.Background(), f.numbered(t, 1)); err != nil {
		t.Fatal(err) // its connection stays open, idle
	}
	f.dropReused.Store(true)
	if _, err := v.Verify(context.Background(), f.numbered(t, 2)); err != nil {
		t.Errorf("introspection on a connection authd closed: %v, want it retried on another", err)
	}
	if f.dropped.Load() == 0 {
		t.Error("no connection reused: the test tested nothing")
	}
}

// TestFailClosedRefusesEveryToken: with FailClosed, once the feed has
// been lost for more than the grace, every token is refused, those issued
// after the loss too; none is introspected; the feed back, they pass.
func TestFailClosedRefusesEveryToken(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t, func(o *verify.Options) { o.Policy = verify.FailClosed })
	old := f.sign(t, "k1", f.claims(), nil)
	f.feedLost(t, v)
	f.clock.Advance(verify.Leeway + time.Minute)
	fresh := f.sign(t, "k1", with(f.claims(), "jti", "after-the-loss"), nil)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := v.Verify(context.Background(), fresh)
		if errors.Is(err, verify.ErrUnavailable) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a token issued after the loss, long after it: %v, want ErrUnavailable", err)
		}
	}
	if _, err := v.Verify(context.Background(), old); !errors.Is(err, verify.ErrUnavailable) {
		t.Errorf("a token issued before the loss: %v, want ErrUnavailable", err)
	}
	f.feedBack(t, v)
	for _, tok := range []string{old, fresh} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("feed back: %v", err)
		}
	}
	if n := f.introspections.Load(); n != 0 {
		t.Errorf("FailClosed made %d introspections, want none", n)
	}
}

// TestNewRefusesPlainHTTP: http:// URLs are refused unless they name a
// loopback host or AllowInsecureHTTP is set.
func TestNewRefusesPlainHTTP(t *testing.T) {
	t.Parallel()
	o := verify.Options{Issuer: issuer, Audience: audience, JWKSURL: "http://auth.example.org/.well-known/jwks.json",
		RevocationsURL: "https://auth.example.org/v1/auth/revocations", ServiceToken: service}
	if _, err := verify.New(context.Background(), o); err == nil || !strings.Contains(err.Error(), "AllowInsecureHTTP") {
		t.Errorf("New with a plain-http JWKS URL: %v, want it refused", err)
	}
	o.JWKSURL = "ftp://auth.example.org/jwks"
	if _, err := verify.New(context.Background(), o); err == nil || !strings.Contains(err.Error(), "JWKSURL") {
		t.Errorf("New with an ftp JWKS URL: %v, want it refused", err)
	}
	for _, u := range []string{"http://ops:hunter2@auth.example.org/.well-known/jwks.json", "https://ops:hunter2@auth example.org/"} {
		o.JWKSURL = u
		if _, err := verify.New(context.Background(), o); err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("New with a password in a refused URL: %v, want it refused without the password", err)
		}
	}
	o.JWKSURL, o.AllowInsecureHTTP = "http://auth.example.org/.well-known/jwks.json", true
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no request leaves: only the URL check is under test
	if _, err := verify.New(ctx, o); err == nil || strings.Contains(err.Error(), "AllowInsecureHTTP") {
		t.Errorf("New with AllowInsecureHTTP: %v, want only the cancelled context to fail it", err)
	}
	for _, u := range []string{"http://localhost:1/jwks", "http://127.0.0.2:1/jwks", "http://[::1]:1/jwks"} {
		o.JWKSURL, o.AllowInsecureHTTP = u, false
		if _, err := verify.New(ctx, o); err == nil || strings.Contains(err.Error(), "AllowInsecureHTTP") {
			t.Errorf("New with %s: %v, want loopback accepted", u, err)
		}
	}
}

// TestClientClaims: a token an OpenID Connect client got carries its
// client_id and scope, and is refused unless Options.Clients names the
// client; authd's own tokens carry neither and are accepted.
func TestClientClaims(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	c := with(with(f.claims(), "client_id", "grafana"), "scope", "openid email")
	grafana := f.sign(t, "k1", c, nil)
	other := f.sign(t, "k1", with(c, "client_id", "wiki"), nil)
	own := f.sign(t, "k1", f.claims(), nil)

	v := f.verifier(t)
	got, err := v.Verify(context.Background(), own)
	if err != nil || got.ClientID != "" || len(got.Scopes) != 0 {
		t.Errorf("authd's own token: %+v, %v; want no client_id or scopes", got, err)
	}
	for range 2 { // the second from the cache
		if _, err := v.Verify(context.Background(), grafana); !errors.Is(err, verify.ErrClient) {
			t.Errorf("a client's token without Options.Clients: %v, want ErrClient", err)
		}
	}

	v = f.verifier(t, func(o *verify.Options) { o.Clients = []string{"grafana"} })
	got, err = v.Verify(context.Background(), grafana)
	if err != nil || got.ClientID != "grafana" || !slices.Equal(got.Scopes, []string{"openid", "email"}) {
		t.Errorf("an accepted client's token: %+v, %v; want client_id grafana, scopes openid email", got, err)
	}
	if _, err := v.Verify(context.Background(), other); !errors.Is(err, verify.ErrClient) {
		t.Errorf("another client's token: %v, want ErrClient", err)
	}
	if _, err := v.Verify(context.Background(), own); err != nil {
		t.Errorf("authd's own token with Options.Clients: %v", err)
	}
}

// TestES256TwinsAreOneToken: an ECDSA signature (r, s) has a twin,
// (r, n−s), that verifies alike and that anyone holding an ES256 token can
// write. The twin is the same token: whichever spelling comes first, the
// other hits its cache entry, and while the feed is lost the two share one
// introspection. A signature whose s is past the order is no signature.
func TestES256TwinsAreOneToken(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := ecKey.PublicKey.Bytes() // 0x04 ‖ x ‖ y
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "crv": "P-256", "kid": "ec1",
		"alg": "ES256", "use": "sig", "x": b64(point[1:33]), "y": b64(point[33:])}}})
	f.mu.Lock()
	f.jwksBody = string(jwks)
	f.mu.Unlock()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, f.claims())
	tok.Header["kid"], tok.Header["typ"] = "ec1", "at+jwt"
	signed, err := tok.SignedString(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	withS := func(s *big.Int) string { // signed with its signature's s replaced
		i := strings.LastIndexByte(signed, '.')
		sig, err := base64.RawURLEncoding.DecodeString(signed[i+1:])
		if err != nil || len(sig) != 64 {
			t.Fatalf("ES256 signature: %d bytes, %v", len(sig), err)
		}
		s.FillBytes(sig[32:])
		return signed[:i+1] + b64(sig)
	}
	i := strings.LastIndexByte(signed, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(signed[i+1:])
	n := elliptic.P256().Params().N
	twin := withS(new(big.Int).Sub(n, new(big.Int).SetBytes(sig[32:])))
	ctx := context.Background()

	for _, order := range [][2]string{{signed, twin}, {twin, signed}} {
		v := f.verifier(t)
		for _, tok := range order {
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatalf("an ES256 token or its twin: %v, want it verified", err)
			}
		}
		if st := v.Stats(); st.CacheHits != 1 || st.CacheMisses != 1 {
			t.Errorf("a token, then its twin: %d hits, %d misses; want 1, 1 (one entry)", st.CacheHits, st.CacheMisses)
		}
	}

	v := f.verifier(t, func(o *verify.Options) { o.CacheSize = -1 })
	f.active.Store(true)
	f.feedLost(t, v)
	for _, tok := range []string{signed, twin} {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("feed lost, an ES256 token or its twin: %v, want it verified", err)
		}
	}
	if got := f.introspections.Load(); got != 1 {
		t.Errorf("feed lost, a token and its twin: %d introspections, want 1", got)
	}

	pastOrder := withS(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))) // 2²⁵⁶−1 > n
	if _, err := v.Verify(ctx, pastOrder); !errors.Is(err, verify.ErrSignature) {
		t.Errorf("s past the order: %v, want ErrSignature", err)
	}
	if v.LowS(pastOrder) != pastOrder {
		t.Error("s past the order was respelt: only a signature has a twin")
	}
	low := signed
	if new(big.Int).SetBytes(sig[32:]).Cmp(new(big.Int).Rsh(n, 1)) > 0 {
		low = twin
	}
	if v.LowS(signed) != low || v.LowS(twin) != low {
		t.Error("a token or its twin not spelt with the lower s")
	}
}

// TestAlgorithmsKeepIDTokenKeysOut: authd's one JWKS lists its ID-token
// keys (RS256) beside its access-token keys (EdDSA). By default any of them
// verifies a token here; with Options.Algorithms naming the access-token
// algorithm, a token signed by an ID-token key is refused (ErrAlgorithm,
// without fetching the JWKS again) and the access-token keys still work.
// Algorithms that leave no key, or that this package does not know, fail
// New.
func TestAlgorithmsKeepIDTokenKeysOut(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	idKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	f.mu.Lock()
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "use": "sig",
			"x": b64(f.keys["k1"].Public().(ed25519.PublicKey))},
		{"kty": "RSA", "kid": "id-1", "alg": "RS256", "use": "sig",
			"n": b64(idKey.N.Bytes()), "e": b64(big.NewInt(int64(idKey.E)).Bytes())},
	}})
	f.jwksBody = string(jwks)
	f.mu.Unlock()
	byIDKey := jwt.NewWithClaims(jwt.SigningMethodRS256, f.claims())
	byIDKey.Header["kid"], byIDKey.Header["typ"] = "id-1", "at+jwt"
	signedByIDKey, err := byIDKey.SignedString(idKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if _, err := f.verifier(t).Verify(ctx, signedByIDKey); err != nil {
		t.Fatalf("by default, a token of an RS256 key in the JWKS: %v, want it verified", err)
	}
	v := f.verifier(t, func(o *verify.Options) { o.Algorithms = []string{"EdDSA"} })
	fetched := f.calls()
	if _, err := v.Verify(ctx, signedByIDKey); !errors.Is(err, verify.ErrAlgorithm) {
		t.Errorf("with Algorithms EdDSA, a token of the ID-token key: %v, want ErrAlgorithm", err)
	}
	if f.calls() != fetched {
		t.Errorf("the refused algorithm fetched the JWKS again")
	}
	if _, err := v.Verify(ctx, f.sign(t, "k1", f.claims(), nil)); err != nil {
		t.Errorf("with Algorithms EdDSA, a token of the access-token key: %v", err)
	}

	o := f.options()
	o.Algorithms = []string{"ES256"}
	if _, err := verify.New(ctx, o); err == nil || !strings.Contains(err.Error(), "Options.Algorithms ES256") {
		t.Errorf("New with Algorithms that leave no key: %v, want the error to name them", err)
	}
	for name, algs := range map[string][]string{
		"no key left":       {"ES256"},
		"an unknown name":   {"EdDSA", "HS256"},
		"a name miscapital": {"eddsa"},
	} {
		o := f.options()
		o.Algorithms = algs
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := verify.New(cctx, o)
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("New with Algorithms %v (%s): %v, want its refusal", algs, name, err)
		}
	}
}

// TestErrorClasses: every refusal of a token for good is of the class
// ErrInvalidToken, a closed Verifier's of ErrUnavailable, and a login too
// weak of neither, so that a caller tells a 401 from a 503 without the
// list of sentinels.
func TestErrorClasses(t *testing.T) {
	t.Parallel()
	for _, err := range []error{verify.ErrMalformed, verify.ErrAlgorithm, verify.ErrType, verify.ErrUnknownKey,
		verify.ErrSignature, verify.ErrIssuer, verify.ErrAudience, verify.ErrExpired, verify.ErrNotYetValid,
		verify.ErrRevoked, verify.ErrClaims, verify.ErrClient} {
		if !errors.Is(err, verify.ErrInvalidToken) || errors.Is(err, verify.ErrUnavailable) {
			t.Errorf("%v: not of the class ErrInvalidToken alone", err)
		}
	}
	for _, err := range []error{verify.ErrMFARequired, verify.ErrInsufficientScope, verify.ErrUnavailable, verify.ErrClosed} {
		if errors.Is(err, verify.ErrInvalidToken) {
			t.Errorf("%v: of the class ErrInvalidToken", err)
		}
	}
	if !errors.Is(verify.ErrClosed, verify.ErrUnavailable) || errors.Is(verify.ErrUnavailable, verify.ErrClosed) {
		t.Error("ErrClosed is not of the class ErrUnavailable, or the class is ErrClosed")
	}
	var zero verify.Verifier
	if _, err := zero.Verify(context.Background(), "a.b.c"); !errors.Is(err, verify.ErrUnavailable) {
		t.Errorf("a Verifier New did not make: %v; want of the class ErrUnavailable", err)
	}
}

// TestClaimsHelpers: NewContext carries claims as Middleware does, for
// ClaimsFrom; HasScope and Policy's names.
func TestClaimsHelpers(t *testing.T) {
	t.Parallel()
	c := &verify.Claims{Subject: "user-1", Scopes: []string{"openid", "email"}}
	if got, ok := verify.ClaimsFrom(verify.NewContext(context.Background(), c)); !ok || got != c {
		t.Errorf("ClaimsFrom(NewContext(c)) = %v, %v; want c", got, ok)
	}
	if _, ok := verify.ClaimsFrom(context.Background()); ok {
		t.Error("ClaimsFrom found claims in a context without them")
	}
	if !c.HasScope("email") || c.HasScope("offline_access") {
		t.Errorf("HasScope on %v wrong", c.Scopes)
	}
	for p, want := range map[verify.Policy]string{verify.FallBackToIntrospection: "FallBackToIntrospection",
		verify.FailClosed: "FailClosed", verify.Policy(7): "Policy(7)"} {
		if got := p.String(); got != want {
			t.Errorf("Policy %d: %q, want %q", int(p), got, want)
		}
	}
}

// TestURLNamesTheEndpoints: Options.URL alone (authd's public URL, with or
// without a trailing slash) names the JWKS, the feed and introspection;
// a URL with a query, or none, is refused naming the option.
func TestURLNamesTheEndpoints(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	for _, base := range []string{f.srv.URL, f.srv.URL + "/"} {
		o := f.options()
		o.JWKSURL, o.RevocationsURL, o.URL = "", "", base
		v, err := verify.New(context.Background(), o)
		if err != nil {
			t.Fatalf("New with URL %q alone: %v", base, err)
		}
		if _, err := v.Verify(context.Background(), f.sign(t, "k1", f.claims(), nil)); err != nil {
			t.Errorf("a good token through URL %q: %v", base, err)
		}
		v.Close()
	}
	for _, bad := range []string{f.srv.URL + "/?x=1", "/just/a/path", "http://[::1"} {
		o := f.options()
		o.JWKSURL, o.RevocationsURL, o.URL = "", "", bad
		if _, err := verify.New(context.Background(), o); err == nil || !strings.HasPrefix(err.Error(), "verify: Options.URL: ") {
			t.Errorf("New with URL %q: %v; want it refused, naming Options.URL", bad, err)
		}
	}
}

// TestMiddlewareWith: Optional lets a request without an Authorization
// header through without claims, and still refuses a token sent that is
// not good; an ErrorHandler answers every refusal with its cause (ErrNoToken
// for none), in place of WriteError. BearerToken reads the one header.
func TestMiddlewareWith(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t)
	var refused []error
	h := v.MiddlewareWith(verify.MiddlewareOptions{Optional: true,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			refused = append(refused, err)
			w.WriteHeader(http.StatusTeapot)
		}})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := verify.ClaimsFrom(r.Context()); ok {
			fmt.Fprint(w, c.Subject)
		} else {
			fmt.Fprint(w, "anonymous")
		}
	}))
	expired := f.sign(t, "k1", with(f.claims(), "exp", f.clock.Now().Unix()), nil)
	for _, tc := range []struct {
		name, auth string
		status     int
		body       string
		err        error
	}{
		{"no header", "", 200, "anonymous", nil},
		{"a good token", "Bearer " + f.sign(t, "k1", f.claims(), nil), 200, "user-1", nil},
		{"an expired token", "Bearer " + expired, http.StatusTeapot, "", verify.ErrExpired},
		{"another scheme", "Basic eDp5", http.StatusTeapot, "", verify.ErrNoToken},
		{"an empty bearer", "Bearer  ", http.StatusTeapot, "", verify.ErrNoToken},
	} {
		refused = nil
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status || rec.Body.String() != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.name, rec.Code, rec.Body.String(), tc.status, tc.body)
		}
		if tc.err != nil && (len(refused) != 1 || !errors.Is(refused[0], tc.err)) {
			t.Errorf("%s: the ErrorHandler got %v, want %v", tc.name, refused, tc.err)
		}
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "bearer  abc ")
	if tok, err := verify.BearerToken(req); tok != "abc" || err != nil {
		t.Errorf("BearerToken of %q: %q, %v", req.Header.Get("Authorization"), tok, err)
	}
	req.Header.Add("Authorization", "Bearer def")
	if _, err := verify.BearerToken(req); err != verify.ErrNoToken {
		t.Errorf("BearerToken of two headers: %v, want ErrNoToken", err)
	}
}

// TestChallenge: Challenge gives WriteError's status and WWW-Authenticate
// for every kind of refusal (a route's named method and scopes too), for
// an ErrorHandler that writes a body of its own.
func TestChallenge(t *testing.T) {
	t.Parallel()
	check := func(name string, err error, want *httptest.ResponseRecorder) {
		t.Helper()
		if want == nil {
			want = httptest.NewRecorder()
			verify.WriteError(want, httptest.NewRequest("GET", "/", nil), err)
		}
		status, challenge := verify.Challenge(err)
		if status != want.Code || challenge != want.Header().Get("WWW-Authenticate") {
			t.Errorf("%s: Challenge says %d %q, WriteError answers %d %q", name, status, challenge,
				want.Code, want.Header().Get("WWW-Authenticate"))
		}
	}
	for name, err := range map[string]error{
		"no token": verify.ErrNoToken, "expired": verify.ErrExpired, "revoked": fmt.Errorf("as wrapped: %w", verify.ErrRevoked),
		"unavailable": verify.ErrUnavailable, "closed": verify.ErrClosed, "second factor": verify.ErrMFARequired,
		"scope": verify.ErrInsufficientScope,
	} {
		check(name, err, nil)
	}
	if status, challenge := verify.Challenge(verify.ErrUnavailable); status != 503 || challenge != "" {
		t.Errorf("Challenge(ErrUnavailable): %d %q, want 503 and no challenge", status, challenge)
	}

	f := newFakeAuthd(t)
	v := f.verifier(t, func(o *verify.Options) { o.Clients = []string{"app"} })
	route := verify.MiddlewareOptions{RequireAMR: []string{"hwk"}, Scopes: []string{"email"}}
	plain := v.MiddlewareWith(route)(http.NotFoundHandler())
	var got error
	route.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { got = err }
	own := v.MiddlewareWith(route)(http.NotFoundHandler())
	hwk := with(f.claims(), "amr", []string{"hwk", "mfa"})
	for name, claims := range map[string]jwt.MapClaims{
		"a login without the route's method": f.claims(),
		"a client's token without the scope": with(with(hwk, "client_id", "app"), "scope", "openid"),
	} {
		tok := f.sign(t, "k1", claims, nil)
		rec := httptest.NewRecorder()
		for _, h := range []http.Handler{plain, own} {
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			h.ServeHTTP(rec, req)
		}
		if !strings.Contains(rec.Header().Get("WWW-Authenticate"), `"`) {
			t.Fatalf("%s: WriteError's challenge %q names nothing", name, rec.Header().Get("WWW-Authenticate"))
		}
		check(name, got, rec)
	}
}

// TestMiddlewarePerRoute: MiddlewareOptions ask one route for more than
// its Verifier asks of every token: a login method (401
// insufficient_user_authentication naming it) and, of an OpenID client's
// token, scopes (403 insufficient_scope naming them); authd's own logins
// carry no scope and pass. An empty entry panics when the route is made.
func TestMiddlewarePerRoute(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	v := f.verifier(t, func(o *verify.Options) { o.Clients = []string{"app"} })
	h := v.MiddlewareWith(verify.MiddlewareOptions{RequireAMR: []string{"mfa"}, Scopes: []string{"email"}})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	mfa := with(f.claims(), "amr", []string{"pwd", "otp", "mfa"})
	client := with(with(mfa, "client_id", "app"), "scope", "openid")
	for _, tc := range []struct {
		name      string
		claims    jwt.MapClaims
		status    int
		challenge string
	}{
		{"own login with a second factor", mfa, 200, ""},
		{"own login, password only", f.claims(), 401, `Bearer error="insufficient_user_authentication"`},
		{"a client's token without the scope", client, 403, `Bearer error="insufficient_scope", scope="email"`},
		{"a client's token with it", with(client, "scope", "openid email"), 200, ""},
		// Scopes without a client_id (no token authd makes) are held to the route's.
		{"scopes without a client", with(mfa, "scope", "openid"), 403, `Bearer error="insufficient_scope", scope="email"`},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", "Bearer "+f.sign(t, "k1", tc.claims, nil))
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), tc.challenge) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, rec.Code, rec.Header().Get("WWW-Authenticate"), tc.status, tc.challenge)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("MiddlewareWith with an empty scope did not panic")
		}
	}()
	v.MiddlewareWith(verify.MiddlewareOptions{Scopes: []string{""}})
}

// TestMismatchedSettingIsLogged: tokens authd signed for another issuer or
// audience than the Options say mean a setting that does not match
// authd's, and every token refused; the client is told only invalid_token,
// so the log says why, once a minute for each, with both values and never
// the token. A forged token's claims say nothing of the settings.
func TestMismatchedSettingIsLogged(t *testing.T) {
	t.Parallel()
	f := newFakeAuthd(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	v := f.verifier(t, func(o *verify.Options) { o.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)) })
	c := f.claims()
	_, forgedKey, _ := ed25519.GenerateKey(rand.Reader)
	forged := jwt.NewWithClaims(jwt.SigningMethodEdDSA, with(c, "iss", "https://forged.example.org"))
	forged.Header["kid"], forged.Header["typ"] = "k1", "at+jwt"
	forgedToken, _ := forged.SignedString(forgedKey)
	tokens := []string{forgedToken}
	for range 3 {
		tokens = append(tokens, f.sign(t, "k1", with(c, "iss", "https://auth.example.org/"), nil),
			f.sign(t, "k1", with(c, "aud", []string{"billing"}), nil))
	}
	for _, tok := range tokens {
		if _, err := v.Verify(context.Background(), tok); err == nil {
			t.Fatal("a token of another issuer or audience passed")
		}
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if n := strings.Count(out, "its issuer is not Options.Issuer"); n != 1 || !strings.Contains(out, `token_issuer=https://auth.example.org/`) {
		t.Errorf("issuer warnings: %d in\n%s; want one, with the token's issuer", n, out)
	}
	if n := strings.Count(out, "its audience is not Options.Audience"); n != 1 || !strings.Contains(out, "token_audience=[billing]") {
		t.Errorf("audience warnings: %d in\n%s; want one, with the token's audience", n, out)
	}
	if strings.Contains(out, "forged") || strings.Contains(out, tokens[1]) {
		t.Errorf("the log holds a forged token's claims or a token:\n%s", out)
	}
}

// TestLoggerDefaultsToSlogs: a Verifier made without Options.Logger logs
// to slog.Default(), as the README's examples (which set none) say: its
// warnings were discarded. Not parallel: it sets slog's default.
func TestLoggerDefaultsToSlogs(t *testing.T) {
	old := slog.Default()
	t.Cleanup(func() { slog.SetDefault(old) })
	var logs bytes.Buffer
	var mu sync.Mutex
	slog.SetDefault(slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)))
	f := newFakeAuthd(t)
	v := f.verifier(t)
	if _, err := v.Verify(context.Background(), f.sign(t, "k1", with(f.claims(), "aud", []string{"billing"}), nil)); err == nil {
		t.Fatal("a token of another audience passed")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "its audience is not Options.Audience") {
		t.Errorf("slog.Default() got %q; want the Verifier's warning", logs.String())
	}
}
