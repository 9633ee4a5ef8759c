// Package verifytest stands in for authd in a resource server's tests. A
// Server serves what a verify.Verifier reads from authd — the JWKS, the
// revocation feed and introspection — issues access tokens as authd signs
// them, and revokes them, so that a service's handlers, behind
// verify.Middleware, are tested with real tokens and no authd:
//
//	func TestHello(t *testing.T) {
//		authd := verifytest.NewServer(t)
//		v := authd.Verifier(t)
//		srv := httptest.NewServer(v.Middleware(hello))
//		defer srv.Close()
//		token := authd.Token(verify.Claims{Subject: "user-1"})
//		... a request with "Authorization: Bearer " + token gets through ...
//		authd.RevokeSession(verifytest.SessionOf(token))
//		authd.Sync(t, v)
//		... now it is refused ...
//	}
//
// CutFeed and Down take authd away, to test what the service answers
// while it cannot be reached; RotateKey rotates its signing key; SetClock
// gives it a test's fake clock.
//
// For a handler alone, verify.NewContext puts claims where
// verify.ClaimsFrom finds them, without a Server.
//
// It imports only the standard library, golang-jwt and verify.
package verifytest

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd/verify"
	"github.com/golang-jwt/jwt/v5"
)

// Audience is the "aud" of a Server's tokens, authd's default
// AUTHD_AUDIENCE.
const Audience = "authd"

// TokenLifetime is how long a Server's token lives when its claims set no
// ExpiresAt: authd's default AUTHD_ACCESS_TOKEN_TTL.
const TokenLifetime = 15 * time.Minute

// heartbeat is how often the feed says it is alive, as authd does.
const heartbeat = 5 * time.Second

// revocationLifetime is how long a revocation event matters (its "exp"):
// past the longest token a test makes in any likely run.
const revocationLifetime = 24 * time.Hour

// Server is a stand-in for authd: an HTTP test server with authd's JWKS
// (/.well-known/jwks.json), revocation feed (/v1/auth/revocations, as a
// stream) and introspection (/v1/auth/introspect), and an EdDSA signing
// key. Its methods are safe for concurrent use.
type Server struct {
	// URL is the server's base URL: verify.Options.URL, and its issuer.
	URL string
	// ServiceToken is the token the feed and introspection take, as one of
	// authd's AUTHD_SERVICE_TOKENS.
	ServiceToken string

	srv *httptest.Server

	now atomic.Pointer[func() time.Time] // SetClock's, and Verifiers' (Options): read without mu, which takeAway holds over their Stats

	mu       sync.Mutex
	keys     []signingKey               // the JWKS, oldest first; the last signs
	feedCuts int                        // CutFeed's not yet restored
	downs    int                        // Down's not yet restored
	cut      chan struct{}              // closed and replaced when the feed is cut
	made     map[*verify.Verifier]int64 // VerifierWith's Stats.Reconnects at the last cut (-1: none yet), for Sync
	events   []string                   // the feed's events' JSON, id = index+1
	pushed   chan struct{}              // closed and replaced when an event is added
	sessions map[string]bool
	users    map[string]time.Time       // revoked: tokens issued before
	issued   map[string]map[string]bool // sub → the sessions Token made for it
}

// signingKey is one of a Server's keys, named by its kid.
type signingKey struct {
	kid string
	key ed25519.PrivateKey
}

func newSigningKey() signingKey {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(errors.Join(errors.New("verifytest: no randomness"), err))
	}
	return signingKey{kid: "verifytest-" + randomHex(4), key: key}
}

// maxID is the longest sub or sid a revocation event may name: verify
// refuses an event naming a longer one (and then the whole feed).
const maxID = 128

// NewServer starts a Server, closed when the test ends.
func NewServer(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{ServiceToken: "verifytest-" + randomHex(16), keys: []signingKey{newSigningKey()},
		cut: make(chan struct{}), made: map[*verify.Verifier]int64{}, pushed: make(chan struct{}), sessions: map[string]bool{}, users: map[string]time.Time{},
		issued: map[string]map[string]bool{}}
	s.SetClock(nil)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", s.jwks)
	mux.HandleFunc("GET /v1/auth/revocations", s.feed)
	mux.HandleFunc("POST /v1/auth/introspect", s.introspect)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server, ending its feed's streams. NewServer's test
// closes it too.
func (s *Server) Close() {
	s.srv.CloseClientConnections() // the feed's streams, which Close would wait for
	s.srv.Close()
}

// Options are a Verifier's options against s: its URL, issuer, audience,
// service token, algorithm and clock (SetClock's). Change any before
// verify.New.
func (s *Server) Options() verify.Options {
	return verify.Options{URL: s.URL, Issuer: s.URL, Audience: Audience, ServiceToken: s.ServiceToken,
		Algorithms: []string{"EdDSA"}, Now: func() time.Time { return s.clock()() }}
}

// SetClock makes now s's clock, in place of time.Now (nil restores it):
// the times of Token's tokens and of RevokeUser's revocations, the
// expiry introspection checks, and the Now of Options, a Verifier's
// clock. now is called from the Server's and the Verifier's goroutines,
// so it must be safe for concurrent use (a fake clock that advances under
// a mutex). Waits stay on the wall clock: Sync's, and a Verifier's grace
// after losing the feed.
func (s *Server) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	s.now.Store(&now)
}

func (s *Server) clock() func() time.Time { return *s.now.Load() }

// Verifier returns a Verifier of s's tokens (Options), closed when the
// test ends; it logs to the test's output, with the reason for each
// token Middleware refuses (verify logs those at debug level).
func (s *Server) Verifier(tb testing.TB) *verify.Verifier {
	tb.Helper()
	return s.VerifierWith(tb, nil)
}

// VerifierWith is Verifier with s's Options changed by change first
// (RequireMFA, Clients, Policy…).
func (s *Server) VerifierWith(tb testing.TB, change func(*verify.Options)) *verify.Verifier {
	tb.Helper()
	o := s.Options()
	o.Logger = slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	if change != nil {
		change(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := verify.New(ctx, o)
	if err != nil {
		tb.Fatal(err)
	}
	s.mu.Lock()
	s.made[v] = -1
	s.mu.Unlock()
	tb.Cleanup(func() {
		v.Close()
		s.mu.Lock()
		delete(s.made, v)
		s.mu.Unlock()
	})
	return v
}

// Sync waits until v follows s's feed and has taken every revocation s
// has made (its feed's last event), failing the test after 15 s: after
// RevokeSession or RevokeUser, the revoked tokens are then refused. After
// CutFeed's or Down's restore, a Verifier that Verifier or VerifierWith
// made has also reconnected since the cut (it waits up to 10 s between
// attempts) and so taken what it missed. During a cut Sync fails at once.
func (s *Server) Sync(tb testing.TB, v *verify.Verifier) {
	tb.Helper()
	s.mu.Lock()
	last, away := int64(len(s.events)), s.feedCuts > 0 || s.downs > 0
	since, made := s.made[v] // reconnections at the last cut
	if !made {
		since = -1
	}
	s.mu.Unlock()
	if away {
		tb.Fatal("verifytest: Sync during a cut (CutFeed or Down not restored): no Verifier can follow the feed")
	}
	deadline := time.Now().Add(15 * time.Second)
	for st := v.Stats(); !st.FeedConnected || st.LastEventID < last || st.Reconnects <= since; st = v.Stats() {
		if time.Now().After(deadline) {
			tb.Fatalf("verifytest: after 15 s the Verifier has taken revocations up to %d of %d, feed connected %t, reconnected since the cut %t (its log says why)",
				st.LastEventID, last, st.FeedConnected, st.Reconnects > since)
		}
		time.Sleep(time.Millisecond)
	}
}

// Token signs an access token with c's claims, as authd would issue it. A
// claim c leaves empty gets authd's: a fresh Subject (sub), SessionID (sid)
// and ID (jti), the Server's Issuer and Audience, AMR ["pwd"], IssuedAt
// and NotBefore now, ExpiresAt TokenLifetime later. A ClientID, with its
// Scopes, makes it an OpenID Connect client's token (verify takes it only
// for the clients Options.Clients names); Scopes without one panic, as a
// token authd never makes. KeyID is ignored: the newest key signs
// (RotateKey). A Subject or SessionID over 128 bytes panics: authd makes
// none, and its revocation could not be told.
func (s *Server) Token(c verify.Claims) string {
	sub, sid := cmp.Or(c.Subject, "user-"+randomHex(8)), cmp.Or(c.SessionID, "session-"+randomHex(8))
	checkID("Token: the Subject", sub)
	checkID("Token: the SessionID", sid)
	if len(c.Scopes) > 0 && c.ClientID == "" {
		panic("verifytest: Token: Scopes without a ClientID: authd grants scopes to OpenID Connect clients only")
	}
	s.mu.Lock()
	if s.issued[sub] == nil {
		s.issued[sub] = map[string]bool{}
	}
	s.issued[sub][sid] = true
	now, signer := s.clock()(), s.keys[len(s.keys)-1]
	s.mu.Unlock()
	claims := jwt.MapClaims{
		"iss": cmp.Or(c.Issuer, s.URL), "sub": sub, "sid": sid, "jti": cmp.Or(c.ID, randomHex(16)),
		"aud": c.Audience, "amr": c.AMR,
		"iat": cmp.Or(c.IssuedAt, now).Unix(), "nbf": cmp.Or(c.NotBefore, now).Unix(),
		"exp": cmp.Or(c.ExpiresAt, now.Add(TokenLifetime)).Unix(),
	}
	if len(c.Audience) == 0 {
		claims["aud"] = []string{Audience}
	}
	if len(c.AMR) == 0 {
		claims["amr"] = []string{"pwd"}
	}
	if len(c.Scopes) > 0 {
		claims["scope"] = strings.Join(c.Scopes, " ")
	}
	if c.ClientID != "" {
		claims["client_id"] = c.ClientID
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"], t.Header["typ"] = signer.kid, "at+jwt"
	signed, err := t.SignedString(signer.key)
	if err != nil {
		panic("verifytest: signing: " + err.Error()) // an Ed25519 key always signs
	}
	return signed
}

// SessionOf returns the session id (sid) of a token Token made, for
// RevokeSession; "" for a token that is not one.
func SessionOf(token string) string {
	var c struct {
		jwt.RegisteredClaims
		SID string `json:"sid"`
	}
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		return ""
	}
	return c.SID
}

// RevokeSession ends a session, as a logout does: its tokens are revoked,
// on the feed at once (Sync waits for a Verifier to take it) and at
// introspection. An empty sid, or one over 128 bytes, panics: authd
// revokes none, and verify would refuse the event, and the feed with it.
func (s *Server) RevokeSession(sid string) {
	checkID("RevokeSession: the session id", sid)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokeSessionLocked(sid)
}

func (s *Server) revokeSessionLocked(sid string) {
	s.sessions[sid] = true
	s.pushLocked(map[string]any{"sid": sid})
}

// RevokeUser ends every session of a user, as a password change or a
// "log out everywhere" does, and as authd says so on the feed: each
// session Token made for sub, then the user, for tokens issued before
// this second. A token issued later, of a new session, is good. An empty
// sub, or one over 128 bytes, panics, as RevokeSession's sid.
func (s *Server) RevokeUser(sub string) {
	checkID("RevokeUser: the subject", sub)
	s.mu.Lock()
	defer s.mu.Unlock()
	for sid := range s.issued[sub] {
		if !s.sessions[sid] {
			s.revokeSessionLocked(sid)
		}
	}
	before := s.clock()().Truncate(time.Second)
	s.users[sub] = before
	s.pushLocked(map[string]any{"sub": sub, "before": before.Unix()})
}

// checkID panics on an id a revocation event cannot name.
func checkID(what, id string) {
	if id == "" || len(id) > maxID {
		panic(fmt.Sprintf("verifytest: %s must be 1 to %d bytes, not %d", what, maxID, len(id)))
	}
}

// pushLocked adds an event to the feed, with its id and exp, s.mu held.
func (s *Server) pushLocked(e map[string]any) {
	e["id"], e["exp"] = len(s.events)+1, s.clock()().Add(revocationLifetime).Unix()
	b, _ := json.Marshal(e)
	s.events = append(s.events, string(b))
	close(s.pushed)
	s.pushed = make(chan struct{})
}

// RotateKey makes a new signing key: Token signs with it from now on, and
// the JWKS serves it beside the older ones, whose tokens stay good. A
// Verifier meets its kid in the next token and fetches the JWKS again, at
// most once a second: within a second of its last fetch (New's, say) it
// refuses that token (ErrUnknownKey), and takes it a second later. (authd
// publishes a key 6 minutes before it signs, so that its resource servers
// never meet an unknown kid.)
func (s *Server) RotateKey() {
	k := newSigningKey()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, k)
}

// CutFeed ends the revocation feed's streams and answers new ones 503
// until restore is called (more than once does nothing), while the JWKS
// and introspection still answer. A Verifier loses the feed and, from
// about two seconds after (on the wall clock), follows its Policy: it asks
// introspection about each token, or refuses every one with
// ErrUnavailable (FailClosed). After restore it reconnects (with backoff:
// Sync waits for it) and takes the revocations it missed.
func (s *Server) CutFeed() (restore func()) {
	return s.takeAway(&s.feedCuts)
}

// Down is CutFeed for the whole of authd: the feed, the JWKS and
// introspection answer 503 until restore is called. A Verifier then
// refuses every token with ErrUnavailable (Middleware's 503) once its
// grace has passed, whatever its Policy; a token of a key it has not seen
// (RotateKey) gets ErrUnknownKey until its JWKS fetch has failed (at most
// one a second), then ErrUnavailable. After restore it follows the feed
// again (Sync), while a key it has not seen waits for its JWKS backoff,
// which grows to a minute over a long Down.
func (s *Server) Down() (restore func()) {
	return s.takeAway(&s.downs)
}

// takeAway counts one more cut in n, ends the feed's streams, and
// returns the function that takes it back.
func (s *Server) takeAway(n *int) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v := range s.made {
		s.made[v] = v.Stats().Reconnects // what Sync waits to see passed
	}
	*n++
	close(s.cut)
	s.cut = make(chan struct{})
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			*n--
		})
	}
}

// unavailable answers 503 when part of authd (the feed, or all of it) has
// been taken away (CutFeed, Down); else it returns the channel that the
// next cut closes.
func (s *Server) unavailable(w http.ResponseWriter, feed bool) (cut <-chan struct{}, away bool) {
	s.mu.Lock()
	cut, away = s.cut, s.downs > 0 || feed && s.feedCuts > 0
	s.mu.Unlock()
	if away {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "verifytest: authd is down (Server.CutFeed or Server.Down)", http.StatusServiceUnavailable)
	}
	return cut, away
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	if _, away := s.unavailable(w, false); away {
		return
	}
	s.mu.Lock()
	keys := make([]map[string]string, len(s.keys))
	for i, k := range s.keys {
		keys[i] = map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": k.kid, "alg": "EdDSA", "use": "sig",
			"x": base64.RawURLEncoding.EncodeToString(k.key.Public().(ed25519.PublicKey))}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	json.NewEncoder(w).Encode(map[string]any{"keys": keys})
}

// key returns the public key named kid, for introspection.
func (s *Server) key(t *jwt.Token) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if k.kid == t.Header["kid"] {
			return k.key.Public(), nil
		}
	}
	return nil, errors.New("verifytest: unknown kid")
}

// authorized answers 401 unless r carries the service token.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+s.ServiceToken)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="authd"`)
		w.WriteHeader(http.StatusUnauthorized)
		return false
	}
	return true
}

// feed streams the revocation events after Last-Event-ID, a "synced"
// event once caught up, and a heartbeat comment every few seconds.
func (s *Server) feed(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	cut, away := s.unavailable(w, true)
	if away {
		return
	}
	last, err := strconv.Atoi(r.Header.Get("Last-Event-ID"))
	if err != nil || last < 0 {
		last = 0
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	synced := false
	for {
		s.mu.Lock()
		last = min(last, len(s.events))
		events, pushed := s.events[last:], s.pushed
		s.mu.Unlock()
		for _, e := range events {
			last++
			fmt.Fprintf(w, "id: %d\ndata: %s\n\n", last, e)
		}
		if !synced {
			fmt.Fprintf(w, "event: synced\ndata: {\"last_id\":%d,\"heartbeat_ms\":%d}\n\n", last, heartbeat.Milliseconds())
			synced = true
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-cut:
			// Cut off, as a connection lost is: not a stream's clean end,
			// which verify takes as authd's and resumes at once.
			panic(http.ErrAbortHandler)
		case <-pushed:
		case <-beat.C:
			fmt.Fprint(w, ":\n\n")
		}
	}
}

// introspect answers RFC 7662's {"active": …} for a token of this server
// that is signed, current and not revoked.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	if _, away := s.unavailable(w, false); away {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	var c struct {
		jwt.RegisteredClaims
		SID string `json:"sid"`
	}
	// As authd: its own access tokens only (typ at+jwt, its audience),
	// each naming a user and a session.
	t, err := jwt.ParseWithClaims(r.FormValue("token"), &c, s.key,
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer(s.URL), jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.clock()))
	active := err == nil && t.Header["typ"] == "at+jwt" && c.IssuedAt != nil && c.Subject != "" && c.SID != ""
	if active {
		s.mu.Lock()
		before, userRevoked := s.users[c.Subject]
		active = !s.sessions[c.SID] && (!userRevoked || !c.IssuedAt.Before(before))
		s.mu.Unlock()
	}
	if !active {
		fmt.Fprint(w, `{"active":false}`)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"active": true, "sub": c.Subject, "sid": c.SID, "exp": c.ExpiresAt.Unix()})
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(errors.Join(errors.New("verifytest: no randomness"), err))
	}
	return hex.EncodeToString(b)
}
