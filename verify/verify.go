// Package verify checks authd's access tokens in a resource server and
// learns revocations within a second, without asking authd per request.
//
// A Verifier checks a token's signature against authd's JWKS (cached as its
// Cache-Control allows; an unknown kid refetches it, at most once a second),
// its header (typ at+jwt, only the algorithms the JWKS keys declare, and of
// those only Options.Algorithms when set) and
// claims (iss, aud, exp exactly; nbf and iat with 30 s of leeway; an OpenID
// Connect client's token only for the Options.Clients named), and then
// the revocations it follows on authd's revocation feed
// (GET /v1/auth/revocations, Server-Sent Events). When the feed is lost it
// reconnects with backoff and resumes where it stopped; from about two
// seconds after the loss until it has caught up, Policy decides: ask
// introspection (the default), or refuse every token (FailClosed).
//
//	v, err := verify.New(ctx, verify.Options{
//		Issuer:         "https://auth.example.org",
//		Audience:       "authd",
//		URL:            "https://auth.example.org", // AUTHD_PUBLIC_URL: the JWKS, feed and introspection
//		ServiceToken:   os.Getenv("AUTHD_SERVICE_TOKEN"),
//		Algorithms:     []string{"EdDSA"}, // AUTHD_SIGNING_ALG: no ID-token key verifies here
//	})
//	...
//	defer v.Close()
//	http.Handle("/api/", v.Middleware(api))
//
// One Verifier serves a whole process: each holds one of authd's
// revocation streams (AUTHD_REVOCATION_STREAMS) until Close.
//
// The package is a module of its own (go get github.com/authd/authd/verify)
// that needs only the standard library and golang-jwt.
package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Policy says what Verify does while the revocation feed is lost (and
// until it has caught up after a reconnection).
type Policy int

// String names the policy as its constant is named.
func (p Policy) String() string {
	switch p {
	case FallBackToIntrospection:
		return "FallBackToIntrospection"
	case FailClosed:
		return "FailClosed"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

const (
	// FallBackToIntrospection asks authd's introspection about each token
	// once the feed has been lost for a short grace (about two seconds, for
	// a reconnection to catch up: meanwhile tokens are checked against the
	// revocations known so far), until it has caught up again.
	//
	// A token is asked about once: its answer serves until the feed has
	// caught up (which replays the revocations missed meanwhile), for at
	// most Options.IntrospectionTTL, and never past the token's exp. A
	// token revoked after its answer is so refused at most
	// IntrospectionTTL late; asking on every request instead would send
	// each of them to authd for the whole outage.
	//
	// At most Options.MaxIntrospections calls are in flight. A request
	// waits for its token's answer at most 10 s from when it asks (less
	// when its context ends sooner, or the call fails sooner), waiting for
	// a free call included, then gets ErrUnavailable. The call itself has
	// 10 s (and the HTTP client's timeout, when shorter) from when it gets
	// a free slot: time queued is not counted against authd, and an answer
	// that comes after its first caller gave up is kept for the next. After
	// two calls in a row fail, none is made for a second, and then one at
	// a time until one succeeds: meanwhile a token without an answer gets
	// ErrUnavailable at once, rather than every request waiting for a call
	// of its own while authd cannot answer. The feed catching up ends
	// this: the next outage starts with calls allowed.
	FallBackToIntrospection Policy = iota
	// FailClosed refuses (ErrUnavailable) every token while the feed is
	// lost, once a short grace (about two seconds, for a reconnection to
	// catch up) has passed: any token may have been revoked meanwhile,
	// including one issued after the loss (its session can be ended at
	// once). During the grace, and for the second it takes to resume a
	// stream authd ended on purpose, tokens are checked against the
	// revocations known so far. Nothing is introspected.
	FailClosed
)

// Options configure a Verifier. Issuer, Audience and ServiceToken are
// required, and URL or both JWKSURL and RevocationsURL.
type Options struct {
	Issuer   string // the exact "iss" (authd's AUTHD_ISSUER)
	Audience string // an "aud" the token must carry (AUTHD_AUDIENCE)
	// URL is authd's public URL (AUTHD_PUBLIC_URL), from which JWKSURL,
	// RevocationsURL and so IntrospectionURL default: URL +
	// "/.well-known/jwks.json", URL + "/v1/auth/revocations". Set those
	// instead when they are reached otherwise (another host, a proxy).
	URL     string
	JWKSURL string // authd's /.well-known/jwks.json
	// RevocationsURL is authd's /v1/auth/revocations.
	RevocationsURL string
	// ServiceToken is one of authd's AUTHD_SERVICE_TOKENS, for the feed and
	// introspection.
	ServiceToken string
	// HTTPClient makes every request (default: a client with a 10-second
	// timeout for JWKS and introspection, on a transport of its own that
	// Close closes; the feed uses its transport only). Redirects are never
	// followed, whatever its CheckRedirect. Its idle connections are the
	// caller's to close.
	HTTPClient *http.Client
	// Policy while the feed is lost; FallBackToIntrospection by default.
	Policy Policy
	// MaxIntrospections bounds the introspection calls in flight at once
	// (FallBackToIntrospection; zero or negative: 16). The Verifier's own
	// transport (no HTTPClient) keeps as many idle connections to authd.
	MaxIntrospections int
	// IntrospectionTTL bounds how long an introspection answer serves its
	// token while the feed stays lost (FallBackToIntrospection; default
	// 10 s; negative: not kept, every request asks, sharing the call in
	// flight). An answer never outlives the token, nor the feed's
	// catching up. It is how late a revocation made during an outage is
	// seen for a token introspected before it: within IntrospectionTTL,
	// or when the feed catches up if that is sooner.
	IntrospectionTTL time.Duration
	// IntrospectionURL is authd's /v1/auth/introspect; by default
	// RevocationsURL with its last segment replaced by "introspect". New
	// asks it about a junk token (unless Policy is FailClosed), and fails
	// when it answers anything but authd's {"active":false}.
	IntrospectionURL string
	// RequireMFA refuses tokens whose login did not pass a second factor
	// (no "mfa" in amr) with ErrMFARequired. It is asked after the
	// revocation check, so a revoked token is ErrRevoked, and while the
	// feed is lost a token without one costs an introspection call (or
	// gets FailClosed's ErrUnavailable) before it is refused.
	RequireMFA bool
	// RequireAMR refuses tokens whose amr lacks any of these methods
	// (RFC 8176: authd's logins use pwd, otp, mfa, and hwk or swk for a
	// device-bound or a synced passkey), with an error that is
	// ErrMFARequired and names the method; asked after the revocation
	// check, as RequireMFA.
	RequireAMR []string
	// Clients are the OpenID Connect clients (client_id) whose tokens this
	// service accepts, besides the tokens of authd's own logins (which
	// carry no client_id). A token authd issued to any other client is
	// refused with ErrClient: it is that client's, for the scopes the user
	// granted it, not the user's own. A service that accepts clients'
	// tokens checks Claims.Scopes itself.
	Clients []string
	// CacheSize bounds the verified-token cache (default 10,000 tokens;
	// negative: no cache).
	CacheSize int
	// MaxRevocations bounds the sessions and users the Verifier remembers
	// as revoked (zero or negative: 1,000,000, about 150 MB of sessions or
	// 200 MB of users). It remembers each for as long as authd's feed says
	// a token it names can be unexpired: a day past the revocation (the
	// longest access-token lifetime authd allows, whatever the configured
	// one), so the default holds about 11 revocations a second, sustained.
	// Past the bound a revocation is not kept, and every token issued
	// before it reached the Verifier (a minute of clock skew with authd
	// included: authd's clock must not run further ahead) is decided by
	// the Policy, with no grace, as while the feed is lost (Stats.
	// RevocationsFull), for the rest of that token's life: seen as
	// introspection sees it (within IntrospectionTTL) rather than within a
	// second, or refused with FailClosed. Tokens issued later are checked
	// against the feed as usual.
	MaxRevocations int
	// Now is the clock (default time.Now); tests set it. It dates tokens
	// (exp, nbf, iat), the JWKS's freshness and JWKSMaxStale, how long
	// introspection answers serve, and how long revocations are
	// remembered (and a MaxRevocations overflow lasts). The wall clock (time.Now) times
	// the rest: the 2 s grace after a feed loss, the introspection
	// breaker's pause, the JWKS fetch pace, and the feed's silence limit
	// and backoff.
	Now func() time.Time
	// Logger receives New's retries, feed disconnections and JWKS
	// failures (warn), tokens authd signed for another Issuer or Audience
	// than these Options say (warn, at most once a minute: a setting that
	// does not match authd's), and why Middleware refused a token (debug);
	// default: slog.Default() when New is called (slog.New(slog.DiscardHandler)
	// silences it). Tokens are never logged.
	Logger *slog.Logger
	// Algorithms are the signing algorithms accepted (default: any a JWKS
	// key declares; EdDSA, ES256, RS256, RS384, RS512, PS256, PS384,
	// PS512). authd's one JWKS lists its access-token keys
	// (AUTHD_SIGNING_ALG, EdDSA by default) and its ID-token keys (RS256):
	// naming the access-token algorithm keeps an ID-token key from ever
	// verifying a token here (unless both are RS256). The JWKS keys of
	// other algorithms are skipped; New fails when none is left. A change
	// of authd's AUTHD_SIGNING_ALG must then reach this list first: once
	// authd signs with the new algorithm, every token is refused here.
	Algorithms []string
	// JWKSMaxStale is how long past its lifetime (its Cache-Control
	// max-age) the cached JWKS is still trusted while it cannot be fetched
	// again (zero: the default, 24 h; negative: for ever). Beyond it
	// Verify refuses every token with ErrUnavailable until a fetch
	// succeeds: a key authd has withdrawn meanwhile, a compromised one
	// say, would otherwise verify tokens for as long as the JWKS endpoint
	// fails. Zero is not "no staleness": to trust the JWKS only within
	// its max-age, set a tiny positive value (time.Nanosecond).
	JWKSMaxStale time.Duration
	// AllowInsecureHTTP accepts http:// URLs for hosts other than loopback
	// ones (localhost, 127.0.0.0/8, ::1). Without it New refuses them: the
	// service token and the JWKS would travel in clear.
	AllowInsecureHTTP bool
}

// Errors Verify returns, wrapped with detail; compare with errors.Is. Two
// classes spare a caller the list: every error of a token refused for good
// (Middleware's 401 invalid_token) also matches ErrInvalidToken, and
// ErrClosed also matches ErrUnavailable (both a 503: ask again later).
// ErrMFARequired and ErrInsufficientScope are neither: the token is good,
// its login too weak or its grant too narrow for the resource.
var (
	// ErrInvalidToken is the class of every refusal below but
	// ErrMFARequired, ErrUnavailable and ErrClosed.
	ErrInvalidToken = errors.New("verify: invalid token")

	ErrMalformed   = invalid("verify: malformed token")
	ErrAlgorithm   = invalid("verify: algorithm not allowed")
	ErrType        = invalid("verify: not an access token (typ)")
	ErrUnknownKey  = invalid("verify: unknown signing key")
	ErrSignature   = invalid("verify: bad signature")
	ErrIssuer      = invalid("verify: wrong issuer")
	ErrAudience    = invalid("verify: wrong audience")
	ErrExpired     = invalid("verify: token expired")
	ErrNotYetValid = invalid("verify: token not valid yet")
	ErrRevoked     = invalid("verify: token revoked")
	ErrClaims      = invalid("verify: invalid claims")
	ErrClient      = invalid("verify: a token of an OpenID Connect client this service does not accept")
	ErrMFARequired = errors.New("verify: a second factor is required") // or a method of Options.RequireAMR
	// ErrInsufficientScope refuses an OpenID Connect client's token without
	// a scope MiddlewareOptions.Scopes asks for (403 insufficient_scope).
	ErrInsufficientScope = errors.New("verify: the token lacks a scope this resource needs")
	ErrUnavailable       = errors.New("verify: tokens cannot be checked now (revocation feed or JWKS unavailable)")
	ErrClosed            = error(&classError{"verify: verifier closed", ErrUnavailable})
)

// classError is a sentinel error that errors.Is also finds to be its class.
type classError struct {
	msg   string
	class error
}

func (e *classError) Error() string        { return e.msg }
func (e *classError) Is(target error) bool { return target == e.class }

// invalid makes a sentinel of the ErrInvalidToken class.
func invalid(msg string) error { return &classError{msg, ErrInvalidToken} }

// Leeway is the clock skew tolerated on nbf and iat (SPEC 6.3); exp is
// checked exactly.
const Leeway = 30 * time.Second

// maxTokenLength refuses absurd inputs before any parsing.
const maxTokenLength = 8192

// defaultCacheSize is the verified-token cache's default bound.
const defaultCacheSize = 10000

// Claims are a verified access token's claims. Treat them as read-only.
type Claims struct {
	Subject   string // the user id (sub)
	SessionID string // sid
	ID        string // jti
	Issuer    string
	Audience  []string
	AMR       []string // how the login was authenticated (RFC 8176): pwd, otp, hwk, swk, mfa
	Scopes    []string // from a space-separated "scope" claim, when present
	// ClientID is the OpenID Connect client the token was issued to (RFC
	// 9068 client_id), one of Options.Clients; empty for authd's own
	// logins.
	ClientID  string
	IssuedAt  time.Time
	NotBefore time.Time
	ExpiresAt time.Time
	KeyID     string
}

// HasAMR reports whether the login used method m.
func (c *Claims) HasAMR(m string) bool { return slices.Contains(c.AMR, m) }

// HasScope reports whether the token was granted scope s (an OpenID
// Connect client's token; authd's own logins carry no scope).
func (c *Claims) HasScope(s string) bool { return slices.Contains(c.Scopes, s) }

// Stats are a Verifier's counters, for metrics.
type Stats struct {
	FeedConnected  bool          // following the feed and caught up
	FeedLag        time.Duration // since the feed last said anything (authd sends a heartbeat every 5 s)
	LastEventID    int64
	Reconnects     int64
	CacheHits      int64
	CacheMisses    int64
	Introspections int64 // calls made while the feed was lost
	// IntrospectionsRefused are calls not made because introspection
	// kept failing (the breaker open): their requests got ErrUnavailable
	// at once.
	IntrospectionsRefused int64
	JWKSFetches           int64
	JWKSFailures          int64     // fetches that failed (the cached keys serve meanwhile, up to Options.JWKSMaxStale)
	JWKSFetchedAt         time.Time // the last successful fetch (Options.Now)
	Revoked               int       // sessions and users currently remembered as revoked
	// RevocationsFull is whether revocations past Options.MaxRevocations
	// were not kept within the day that tokens they name may live: tokens
	// issued before the last of them are decided by the Policy.
	// RevocationsDropped counts them.
	RevocationsFull    bool
	RevocationsDropped int64
}

// Verifier checks access tokens. Safe for concurrent use; Close it.
type Verifier struct {
	opts      Options
	client    *http.Client
	transport *http.Transport // the client's when it is the Verifier's own (no Options.HTTPClient), for Close
	now       func() time.Time
	logger    *slog.Logger

	keys    *keySet
	revs    *revocations
	intro   *introspections
	cache   *tokenCache
	headers headers

	hits, misses, introspections, refused atomic.Int64
	issuerWarned, audienceWarned          atomic.Int64 // when mismatch last logged each (Unix seconds)

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	mu     sync.Mutex // orders background starts before Close's wait
	wg     sync.WaitGroup
	closed atomic.Bool
}

// mismatch logs, at most once a minute, a token authd signed (its
// signature checked) that names another issuer or audience than the
// Options say: every token is then refused, and what the client is told
// (invalid_token) does not say why. Values are logged, never the token.
func (v *Verifier) mismatch(warned *atomic.Int64, option, setting string, got any, want string) {
	now := time.Now().Unix()
	last := warned.Load()
	if now-last < 60 || !warned.CompareAndSwap(last, now) {
		return
	}
	v.logger.Warn("verify: a token authd signed was refused: its "+strings.ToLower(option)+" is not Options."+option+
		"; make Options."+option+" authd's "+setting, "token_"+strings.ToLower(option), got, "options_"+strings.ToLower(option), want)
}

// background runs fn in a goroutine that Close waits for; false once
// closed.
func (v *Verifier) background(fn func(ctx context.Context)) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed.Load() {
		return false
	}
	v.wg.Go(func() { fn(v.ctx) })
	return true
}

// checkChoices refuses options that would otherwise be read in a way the
// caller did not mean: a Policy of no name (an integer from a file) would
// be the laxer FallBackToIntrospection, and an empty entry in RequireAMR
// (strings.Split of an unset variable) refuses every token with no word
// of why; one in Clients names no client.
func checkChoices(opts Options) error {
	if opts.Policy != FallBackToIntrospection && opts.Policy != FailClosed {
		return fmt.Errorf("verify: Options.Policy: %d is neither FallBackToIntrospection nor FailClosed", int(opts.Policy))
	}
	for _, l := range []struct {
		name  string
		items []string
	}{{"RequireAMR", opts.RequireAMR}, {"Clients", opts.Clients}} {
		if slices.Contains(l.items, "") {
			return fmt.Errorf("verify: Options.%s: an empty entry (%q): leave the list empty for none", l.name, l.items)
		}
	}
	return nil
}

// New returns a Verifier once it has fetched the JWKS and caught up with
// the revocation feed; it keeps following the feed until Close. While authd
// cannot be reached or answers that it is unwell (5xx, 429: starting,
// restarting, busy), New retries, with backoff, until ctx ends, so that a
// resource server started beside authd waits for it; it fails at once
// when authd refuses (401, 403, 404: a wrong service token or URL) or the
// JWKS URL serves something that is not a JWKS, and, unless Policy is
// FailClosed, when the introspection URL refuses or is not introspection
// (it is asked once, about a junk token). Give ctx a deadline: with
// one that never ends, New waits as long as authd cannot be reached (a
// wrong host or an untrusted certificate included), logging each try.
//
// ctx bounds New alone: once New has returned, its end stops nothing. The
// Verifier follows the feed, on a goroutine and one of authd's revocation
// streams, until Close; a Verifier dropped without Close keeps both for
// the life of the process.
func New(ctx context.Context, opts Options) (*Verifier, error) {
	if opts.URL != "" {
		u, err := parseURL(opts.URL)
		if err == nil && (u.RawQuery != "" || u.Fragment != "" || u.Host == "") {
			err = errors.New("authd's public URL is scheme://host[:port][/path], without a query or fragment")
		}
		if err != nil {
			return nil, fmt.Errorf("verify: Options.URL: %w", err)
		}
		u.Path, u.RawPath = strings.TrimSuffix(u.Path, "/"), ""
		if opts.JWKSURL == "" {
			opts.JWKSURL = u.JoinPath(".well-known", "jwks.json").String()
		}
		if opts.RevocationsURL == "" {
			opts.RevocationsURL = u.JoinPath("v1", "auth", "revocations").String()
		}
	}
	if missing := missingOptions(opts); len(missing) > 0 {
		or := ""
		if slices.ContainsFunc(missing, func(m string) bool { return strings.HasSuffix(m, "URL") }) {
			or = " (or Options.URL, authd's public URL)"
		}
		return nil, fmt.Errorf("verify: required, but empty: Options.%s%s", strings.Join(missing, ", Options."), or)
	}
	if opts.IntrospectionURL == "" {
		u, err := parseURL(opts.RevocationsURL)
		if err != nil {
			return nil, fmt.Errorf("verify: Options.RevocationsURL: %w", err)
		}
		u.Path = u.Path[:strings.LastIndex(u.Path, "/")+1] + "introspect"
		u.RawQuery = ""
		opts.IntrospectionURL = u.String()
	}
	for _, o := range []struct{ name, url string }{{"JWKSURL", opts.JWKSURL}, {"RevocationsURL", opts.RevocationsURL},
		{"IntrospectionURL", opts.IntrospectionURL}} {
		if err := checkURL(o.url, opts.AllowInsecureHTTP); err != nil {
			return nil, fmt.Errorf("verify: Options.%s: %w", o.name, err)
		}
	}
	for _, alg := range opts.Algorithms {
		if !slices.Contains(algorithms, alg) {
			return nil, fmt.Errorf("verify: Options.Algorithms: %q is not one of %s", alg, strings.Join(algorithms, ", "))
		}
	}
	if err := checkChoices(opts); err != nil {
		return nil, err
	}
	intro := newIntrospections(opts.MaxIntrospections, opts.IntrospectionTTL)
	client, transport := defaultClient(cap(intro.slots))
	if opts.HTTPClient != nil {
		client, transport = *opts.HTTPClient, nil
	}
	client.CheckRedirect = refuseRedirect
	v := &Verifier{opts: opts, client: &client, transport: transport, now: opts.Now, logger: opts.Logger, intro: intro}
	if v.now == nil {
		v.now = time.Now
	}
	if v.logger == nil {
		v.logger = slog.Default()
	}
	size := opts.CacheSize
	if size == 0 {
		size = defaultCacheSize
	}
	v.cache = newTokenCache(size)
	v.keys = newKeySet(v, opts.JWKSMaxStale)
	maxRevocations := opts.MaxRevocations
	if maxRevocations <= 0 {
		maxRevocations = defaultMaxRevocations
	}
	v.revs = newRevocations(maxRevocations)
	v.ctx, v.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := v.keys.firstFetch(ctx); err != nil {
		v.Close()
		return nil, err
	}
	if len(v.keys.keys) == 0 {
		v.Close()
		if len(opts.Algorithms) > 0 {
			return nil, fmt.Errorf("verify: the JWKS at %s has no usable key of Options.Algorithms %s",
				shown(opts.JWKSURL), strings.Join(opts.Algorithms, ", "))
		}
		return nil, fmt.Errorf("verify: the JWKS at %s has no usable key", shown(opts.JWKSURL))
	}
	first := make(chan error, 1)
	v.background(func(ctx context.Context) { v.follow(ctx, first) })
	select {
	case err := <-first:
		if err != nil {
			v.Close()
			return nil, err
		}
	case <-ctx.Done():
		v.Close()
		v.revs.mu.RLock()
		last := v.revs.lastErr
		v.revs.mu.RUnlock()
		if last != nil {
			return nil, fmt.Errorf("verify: waiting for the revocation feed: %w (the last attempt: %v)", ctx.Err(), last)
		}
		// No attempt ended: the first connection is still waiting for
		// authd's answer, or for its "synced" (taken for dead only after
		// the silence limit, which may be longer than ctx).
		return nil, fmt.Errorf("verify: waiting for the revocation feed: %w (the connection to %s has not caught up yet: "+
			"authd has not answered, or not finished sending the backlog)", ctx.Err(), shown(v.opts.RevocationsURL))
	}
	if opts.Policy != FailClosed { // FailClosed never introspects
		if err := v.probeIntrospection(ctx); err != nil {
			v.Close()
			return nil, err
		}
	}
	return v, nil
}

// missingOptions names the required options opts lacks, in the order
// Options lists them: every one at once, the same every time.
func missingOptions(opts Options) []string {
	var missing []string
	for _, o := range []struct{ name, value string }{{"Issuer", opts.Issuer}, {"Audience", opts.Audience},
		{"JWKSURL", opts.JWKSURL}, {"RevocationsURL", opts.RevocationsURL}, {"ServiceToken", opts.ServiceToken}} {
		if o.value == "" {
			missing = append(missing, o.name)
		}
	}
	return missing
}

// defaultClient is the client of a Verifier without Options.HTTPClient,
// on a clone of http.DefaultTransport: the connections it keeps alive are
// then the Verifier's, which Close closes, not left idle in the program's
// shared pool. (A program that replaced http.DefaultTransport with
// another kind gets that one, and keeps its connections.) It keeps idle
// up to one connection per introspection allowed at once: with the
// default two, a fallback's calls over HTTP/1.1 would each open one and
// most be closed after their answer.
func defaultClient(introspections int) (http.Client, *http.Transport) {
	client := http.Client{Timeout: 10 * time.Second}
	t, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return client, nil
	}
	t = t.Clone()
	t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, introspections, http.DefaultMaxIdleConnsPerHost)
	client.Transport = t
	return client, t
}

// algorithms are the signing algorithms this package verifies (parseJWK).
var algorithms = []string{"EdDSA", "ES256", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// accepts reports whether Options.Algorithms lets alg through.
func (v *Verifier) accepts(alg string) bool {
	return len(v.opts.Algorithms) == 0 || slices.Contains(v.opts.Algorithms, alg)
}

// refuseRedirect keeps every request where Options sent it: a redirected
// JWKS fetch could land on plain HTTP, and a redirected introspection
// would carry the service token and the token itself (a 307 resends the
// body) wherever it points. The 3xx answer is the request's failure.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// checkURL accepts https URLs, and http ones to a loopback host or with
// insecure set.
// parseURL parses an Options URL; its error does not repeat the URL,
// which may hold a password.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if uerr, ok := errors.AsType[*url.Error](err); ok {
		return nil, fmt.Errorf("not a URL: %w", uerr.Err)
	}
	return u, err
}

// shown is an Options URL as errors and logs show it: without a password.
func shown(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return u.Redacted()
}

func checkURL(raw string, insecure bool) error {
	u, err := parseURL(raw)
	if err != nil {
		return err
	}
	shown := u.Redacted()
	switch {
	case u.Host == "":
		return fmt.Errorf("%q is not an absolute URL", shown)
	case u.Scheme == "https":
		return nil
	case u.Scheme != "http":
		return fmt.Errorf("%q: the scheme must be https (or http)", shown)
	case insecure || u.Hostname() == "localhost":
		return nil
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is plain http to a host that is not loopback: use https, or set AllowInsecureHTTP", shown)
}

// errNotNew is what a Verifier that New did not make (nil, or the zero
// value) answers: it has no keys and follows no feed.
var errNotNew = fmt.Errorf("%w (or never opened: a Verifier comes from New)", ErrClosed)

// made reports whether New made v. A nil or zero Verifier then answers as
// a closed one (ErrClosed, a 503 from Middleware) rather than panic in a
// request.
func (v *Verifier) made() bool { return v != nil && v.cancel != nil }

// Close stops following the feed. Verify then returns ErrClosed. Closing
// a Verifier New did not make returns ErrClosed.
func (v *Verifier) Close() error {
	if !v.made() {
		return errNotNew
	}
	v.mu.Lock()
	already := v.closed.Swap(true)
	v.mu.Unlock()
	if already {
		return nil
	}
	v.cancel()
	v.wg.Wait()
	if v.transport != nil {
		v.transport.CloseIdleConnections()
	}
	return nil
}

// Stats returns the current counters (zero for a Verifier New did not
// make).
func (v *Verifier) Stats() Stats {
	if !v.made() {
		return Stats{}
	}
	st := v.revs.stats(v.now())
	st.CacheHits, st.CacheMisses = v.hits.Load(), v.misses.Load()
	st.Introspections, st.IntrospectionsRefused = v.introspections.Load(), v.refused.Load()
	st.JWKSFetches, st.JWKSFailures = v.keys.fetches.Load(), v.keys.failed.Load()
	v.keys.mu.RLock()
	st.JWKSFetchedAt = v.keys.fetchedAt
	v.keys.mu.RUnlock()
	return st
}

// Verify checks token (the bearer token, without "Bearer ") and returns
// its claims, or an error wrapping one of the Err values.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if !v.made() {
		return nil, errNotNew
	}
	if v.closed.Load() {
		return nil, ErrClosed
	}
	c, ok := v.cache.get(token, v.keys)
	if !ok {
		if low := v.lowS(token); low != token { // an ES256 token's twin: see lowS
			token = low
			c, ok = v.cache.get(token, v.keys)
		}
	}
	if ok {
		v.hits.Add(1)
		if err := checkTimes(c, v.now()); err != nil {
			return nil, err
		}
	} else {
		v.misses.Add(1)
		var key *publicKey
		var err error
		if c, key, err = v.verifySignature(ctx, token); err != nil {
			return nil, err
		}
		v.cache.put(token, c, key)
	}
	if c.ClientID != "" && !slices.Contains(v.opts.Clients, c.ClientID) {
		return nil, fmt.Errorf("%w: %q", ErrClient, c.ClientID)
	}
	// Revocation before the login's methods: a revoked token is
	// invalid_token, not a call to step up a session that has ended, as
	// on a route's RequireAMR (checked after Verify).
	if err := v.checkRevoked(ctx, token, c); err != nil {
		return nil, err
	}
	if err := v.checkAMR(c); err != nil {
		return nil, err
	}
	out := *c
	out.Audience, out.AMR, out.Scopes = slices.Clone(c.Audience), slices.Clone(c.AMR), slices.Clone(c.Scopes)
	return &out, nil
}

// checkAMR refuses a login without a method Options.RequireMFA or
// RequireAMR asks for. Without mfa the error is ErrMFARequired itself, as
// it always was (callers compare with ==); without another method it is a
// missingAMR.
func (v *Verifier) checkAMR(c *Claims) error {
	if v.opts.RequireMFA && !c.HasAMR("mfa") {
		return ErrMFARequired
	}
	return requireAMR(c, v.opts.RequireAMR)
}

// requireAMR refuses a login without one of methods: ErrMFARequired
// itself for mfa, missingAMR naming any other.
func requireAMR(c *Claims, methods []string) error {
	for _, m := range methods {
		switch {
		case c.HasAMR(m):
		case m == "mfa":
			return ErrMFARequired
		default:
			return missingAMR{m}
		}
	}
	return nil
}

// missingAMR is a login without a method other than mfa that
// Options.RequireAMR asks for. It is ErrMFARequired to errors.Is (the
// login is not strong enough here, whichever method it lacks), and names
// the method, so that a refusal for want of a passkey (hwk) does not ask
// for a second factor the login may well have passed.
type missingAMR struct{ method string }

func (e missingAMR) Error() string {
	return fmt.Sprintf("verify: a login with %q is required (amr lacks it)", e.method)
}

func (e missingAMR) Is(target error) bool { return target == ErrMFARequired }

// checkTimes checks exp exactly and nbf/iat with Leeway.
func checkTimes(c *Claims, now time.Time) error {
	if !now.Before(c.ExpiresAt) {
		return ErrExpired
	}
	if now.Add(Leeway).Before(c.NotBefore) || now.Add(Leeway).Before(c.IssuedAt) {
		return ErrNotYetValid
	}
	return nil
}

// checkRevoked consults the revocations followed from the feed, or, while
// the feed has been lost for longer than feedLossGrace, the Policy.
func (v *Verifier) checkRevoked(ctx context.Context, token string, c *Claims) error {
	now := v.now()
	healthy, downSince, epoch, doubtBefore := v.revs.state(now)
	if v.revs.revoked(c) {
		return ErrRevoked
	}
	why := "the revocation feed is lost"
	if inDoubt(c, doubtBefore) {
		// A revocation that was not kept may name it: known to exist, so
		// no grace.
		healthy, downSince = false, time.Time{}
		why = "revocations past Options.MaxRevocations were not kept, and one may name this token"
	}
	if healthy || !downSince.IsZero() && time.Since(downSince) < feedLossGrace {
		return nil // current, or a reconnection may be catching up
	}
	if v.opts.Policy == FailClosed {
		return fmt.Errorf("%w: %s", ErrUnavailable, why)
	}
	active, err := v.introspectShared(ctx, token, c, epoch)
	if err != nil && v.closed.Load() {
		return ErrClosed // closed while it waited: the call's end is Close's
	}
	if err != nil {
		return fmt.Errorf("%w: introspection failed: %w", ErrUnavailable, err)
	}
	if !active {
		return ErrRevoked
	}
	// The answer may have taken seconds (introspectionTimeout): the token
	// must not have expired meanwhile.
	return checkTimes(c, v.now())
}

// verifySignature parses and fully checks a token not in the cache. It
// parses by hand (two small structs, no maps) and lets golang-jwt's signing
// methods check the signature, so that a first-seen token costs little
// more than its signature.
func (v *Verifier) verifySignature(ctx context.Context, token string) (*Claims, *publicKey, error) {
	if len(token) > maxTokenLength || strings.IndexFunc(token, notCompact) >= 0 {
		return nil, nil, ErrMalformed
	}
	h64, rest, ok1 := strings.Cut(token, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s64, '.') >= 0 {
		return nil, nil, ErrMalformed
	}
	h, err := v.headers.parse(h64)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if h.Alg == "" || strings.EqualFold(h.Alg, "none") || !v.accepts(h.Alg) {
		return nil, nil, fmt.Errorf("%w: %q", ErrAlgorithm, h.Alg)
	}
	if !strings.EqualFold(h.Typ, "at+jwt") && !strings.EqualFold(h.Typ, "application/at+jwt") {
		return nil, nil, fmt.Errorf("%w: %q", ErrType, h.Typ)
	}
	if len(h.Crit) > 0 { // RFC 7515 4.1.11: extensions this package does not know
		return nil, nil, fmt.Errorf("%w: critical header parameters %q", ErrMalformed, h.Crit)
	}
	key, err := v.keys.lookup(ctx, h.Kid)
	if err != nil {
		return nil, nil, err
	}
	method := jwt.GetSigningMethod(h.Alg)
	if h.Alg != key.alg || method == nil { // a key verifies only under the algorithm it declares
		return nil, nil, fmt.Errorf("%w: key %q is for %s, not %s", ErrAlgorithm, key.kid, key.alg, h.Alg)
	}
	sig, err := segmentEncoding.DecodeString(s64)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	if err := method.Verify(token[:len(h64)+1+len(p64)], sig, key.key); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	p := payload{Exp: absent, Nbf: absent, Iat: absent}
	if err := decodeSegment(p64, &p); err != nil {
		return nil, nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	c := &Claims{Subject: p.Sub, SessionID: p.Sid, ID: p.Jti, Issuer: p.Iss, Audience: p.Aud, AMR: p.AMR,
		Scopes: strings.Fields(p.Scope), ClientID: p.CID, KeyID: key.kid}
	var ok bool
	if c.ExpiresAt, ok = numericDate(p.Exp); !ok || p.Exp == absent {
		return nil, nil, fmt.Errorf("%w: exp is required", ErrClaims)
	}
	if c.IssuedAt, ok = numericDate(p.Iat); !ok || p.Iat == absent {
		return nil, nil, fmt.Errorf("%w: iat is required", ErrClaims)
	}
	if c.NotBefore, ok = numericDate(p.Nbf); !ok {
		return nil, nil, fmt.Errorf("%w: bad nbf", ErrClaims)
	}
	switch {
	case p.Iss != v.opts.Issuer:
		v.mismatch(&v.issuerWarned, "Issuer", "AUTHD_ISSUER", p.Iss, v.opts.Issuer)
		return nil, nil, fmt.Errorf("%w: %q", ErrIssuer, p.Iss)
	case !slices.Contains(p.Aud, v.opts.Audience):
		v.mismatch(&v.audienceWarned, "Audience", "AUTHD_AUDIENCE", p.Aud, v.opts.Audience)
		return nil, nil, fmt.Errorf("%w: %q", ErrAudience, []string(p.Aud))
	case p.Sub == "" || p.Sid == "" || p.Jti == "":
		return nil, nil, fmt.Errorf("%w: sub, sid and jti are required", ErrClaims)
	}
	// The clock is read now, not before keys.lookup: fetching the JWKS for
	// an unknown kid can take seconds (the pace, then jwksTimeout), and a
	// token that expired meanwhile must not pass.
	if err := checkTimes(c, v.now()); err != nil {
		return nil, nil, err
	}
	return c, key, nil
}

// headers remembers parsed JOSE headers by their encoding: every token a
// key signs has the same header, so a first-seen token usually parses only
// its claims. Bounded; junk headers evict at random.
type headers struct {
	mu sync.RWMutex
	m  map[string]header
}

// maxHeaders bounds the parsed-header cache.
const maxHeaders = 64

func (hs *headers) parse(h64 string) (header, error) {
	hs.mu.RLock()
	h, ok := hs.m[h64]
	hs.mu.RUnlock()
	if ok {
		return h, nil
	}
	if err := decodeSegment(h64, &h); err != nil {
		return h, err
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.m == nil {
		hs.m = map[string]header{}
	}
	if len(hs.m) >= maxHeaders {
		for k := range hs.m {
			delete(hs.m, k)
			break
		}
	}
	hs.m[h64] = h
	return h, nil
}

// header is the JOSE header, as far as Verify reads it.
type header struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Typ  string   `json:"typ"`
	Crit []string `json:"crit"`
}

// payload is the JWT claims as authd writes them.
type payload struct {
	Iss   string   `json:"iss"`
	Sub   string   `json:"sub"`
	Aud   audience `json:"aud"`
	Exp   float64  `json:"exp"` // absent when missing
	Nbf   float64  `json:"nbf"`
	Iat   float64  `json:"iat"`
	Jti   string   `json:"jti"`
	Sid   string   `json:"sid"`
	AMR   []string `json:"amr"`
	Scope string   `json:"scope"`
	CID   string   `json:"client_id"`
}

// audience is "aud": one string or an array of them (RFC 7519 4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(a))
}

// notCompact reports a character that a compact JWS never holds: base64url
// and the dots only. The decoder would skip line breaks, giving a token
// other spellings.
func notCompact(r rune) bool {
	return !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.')
}

// segmentEncoding decodes a token's segments: base64url, unpadded, and
// strict, so that a segment has one spelling — with the lenient decoding a
// token's last character could be changed in its unused bits, giving
// strings authd never issued that verify alike (each its own cache entry,
// its own introspection).
var segmentEncoding = base64.RawURLEncoding.Strict()

// decodeSegment decodes one base64url (unpadded) JSON segment into v.
func decodeSegment(seg string, v any) error {
	b, err := segmentEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// absent marks a NumericDate claim the token does not have (no valid one
// is negative).
const absent = -1

// numericDate converts a NumericDate (seconds, possibly fractional); absent
// is the zero time. False for values no clock will reach or before 1970.
func numericDate(f float64) (time.Time, bool) {
	if f == absent {
		return time.Time{}, true
	}
	if f < 0 || f > 1e13 {
		return time.Time{}, false
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)), true
}
