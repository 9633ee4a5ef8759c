package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
	"github.com/authd/authd/internal/syncbuf"
	"github.com/authd/authd/internal/teststores"
	"github.com/authd/authd/metrics"
	"github.com/authd/authd/password"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/ratelimit"
	"github.com/authd/authd/token"
)

// noRedirects is a client that reads a redirect rather than follow it.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// clock is a settable authd.Clock.
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

// mailbox records the mails the service sends; reading it first runs the
// outbox sender, as the background job would.
type mailbox struct {
	mu    sync.Mutex
	mails []authd.Mail
	flush func()
}

func (m *mailbox) Send(_ context.Context, mail authd.Mail) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mails = append(m.mails, mail)
	return nil
}

// last returns the newest mail of the kind to the address, or fails.
func (m *mailbox) last(t testing.TB, kind authd.MailKind, to string) authd.Mail {
	t.Helper()
	m.flush()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.mails) - 1; i >= 0; i-- {
		if m.mails[i].Kind == kind && m.mails[i].To == to {
			return m.mails[i]
		}
	}
	t.Fatalf("no %s mail to %s among %d mails", kind, to, len(m.mails))
	return authd.Mail{}
}

func (m *mailbox) count(kind authd.MailKind, to string) int {
	m.flush()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, mail := range m.mails {
		if mail.Kind == kind && mail.To == to {
			n++
		}
	}
	return n
}

// tokenOf returns the token parameter of a mail's link.
func tokenOf(t testing.TB, m authd.Mail) string {
	t.Helper()
	_, tok, ok := strings.Cut(m.Link, "?token=")
	if !ok {
		t.Fatalf("mail link %q has no token", m.Link)
	}
	return tok
}

const serviceToken = "service-token-0123456789abcdef0123456789"

// env is a running API on a real store with a fake clock and a recording
// mailer.
type env struct {
	t       testing.TB
	store   authd.Store
	clock   *clock
	mail    *mailbox
	logs    *syncbuf.Buffer
	keys    *token.Keyring
	svc     *authd.Service
	api     *httpapi.Server
	srv     *httptest.Server
	cfg     authd.Config
	keysDir string

	adminAPI *httpapi.Server
	adminSrv *httptest.Server

	// The second factors the helpers enrolled, by access token, so that
	// adding another factor can step up with one (beginRegistration).
	passkeyOf map[string]*softKey
	totpOf    map[string]string
}

const adminToken = "admin-token-0123456789abcdef0123456789ab"

type option func(*authd.Config, *envOptions)

type envOptions struct {
	rateLimit bool
	keysDir   string
	mailer    authd.Mailer
	params    *password.Params
	wrap      func(authd.Passwords) authd.Passwords
	localhost bool
	path      string        // with localhost: the public URL's path, which the server strips
	after     time.Duration // the clock starts this long after the usual start
	wall      bool          // the clock starts at the wall clock's time
	lockouts  authd.Lockouts
	hooks     authd.Hooks
}

func withConfig(f func(*authd.Config)) option { return func(c *authd.Config, _ *envOptions) { f(c) } }
func withRateLimit() option                   { return func(_ *authd.Config, o *envOptions) { o.rateLimit = true } }
func withKeysDir(dir string) option           { return func(_ *authd.Config, o *envOptions) { o.keysDir = dir } }
func withLockouts(l authd.Lockouts) option {
	return func(_ *authd.Config, o *envOptions) { o.lockouts = l }
}
func startingAfter(d time.Duration) option {
	return func(_ *authd.Config, o *envOptions) { o.after = d }
}

// atWallClock starts the clock at the wall clock's time (it stays there
// unless advanced), for a peer that checks tokens against its own clock,
// as the Node recipe's jose does.
func atWallClock() option { return func(_ *authd.Config, o *envOptions) { o.wall = true } }

func withHooks(h authd.Hooks) option { return func(_ *authd.Config, o *envOptions) { o.hooks = h } }

func withMailer(m authd.Mailer) option { return func(_ *authd.Config, o *envOptions) { o.mailer = m } }
func withArgon2(p password.Params) option {
	return func(_ *authd.Config, o *envOptions) { o.params = &p }
}

// withLocalhost serves the public API at http://localhost:PORT+path,
// which is also AUTHD_PUBLIC_URL, with the WebAuthn origin
// http://localhost:PORT (RP ID localhost): a browser refuses WebAuthn on an
// IP address. With a path, the server is a proxy in front of the API that
// strips it, as a deployment's behind one does.
func withLocalhost(path string) option {
	return func(_ *authd.Config, o *envOptions) { o.localhost, o.path = true, path }
}

func withPasswords(wrap func(authd.Passwords) authd.Passwords) option {
	return func(_ *authd.Config, o *envOptions) { o.wrap = wrap }
}

// cheap keeps hashing fast in tests; the cost does not change the flows.
var cheap = password.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}

func newEnv(t testing.TB, store authd.Store, opts ...option) *env {
	t.Helper()
	cfg := authd.Config{
		PublicURL: "https://auth.example.org", AccessTokenTTL: 15 * time.Minute, RefreshTokenTTL: 168 * time.Hour,
		SessionMaxAge: 720 * time.Hour, RefreshReuseGrace: 10 * time.Second, RequireVerifiedEmail: true,
		LockoutThreshold: 5, LockoutDuration: 15 * time.Minute, MaxSessions: 100,
		WebAuthnRPID: "auth.example.org", WebAuthnOrigins: []string{"https://auth.example.org"},
	}
	var o envOptions
	for _, opt := range opts {
		opt(&cfg, &o)
	}
	var srv *httptest.Server
	if o.localhost {
		srv = httptest.NewUnstartedServer(nil)
		origin := fmt.Sprintf("http://localhost:%d", srv.Listener.Addr().(*net.TCPAddr).Port)
		cfg.PublicURL = origin + o.path
		cfg.WebAuthnRPID, cfg.WebAuthnOrigins = "localhost", []string{origin}
	}
	start := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC).Add(o.after)
	if o.wall {
		start = time.Now().Add(o.after)
	}
	e := &env{t: t, store: store, clock: &clock{now: start},
		mail: &mailbox{}, logs: &syncbuf.Buffer{}, cfg: cfg, keysDir: o.keysDir}
	if e.keysDir == "" {
		e.keysDir = t.TempDir()
	}
	// As authd serve does: instances on one keys directory share the
	// secrets of refresh tokens and second factors.
	for _, k := range []struct {
		key    *[]byte
		secret token.Secret
	}{{&cfg.RefreshKey, token.RefreshSecret}, {&cfg.MFAKey, token.MFASecret}} {
		if *k.key != nil {
			continue
		}
		var err error
		if *k.key, err = k.secret.Load(e.keysDir); err != nil {
			t.Fatal(err)
		}
	}
	e.cfg = cfg
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	keys, err := token.OpenKeyring(e.keysDir, "EdDSA", e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.keys = keys
	var limiter authd.RateLimiter
	if o.rateLimit {
		limiter = ratelimit.NewMemory(e.clock)
	}
	params := cheap
	if o.params != nil {
		params = *o.params
	}
	var hasher authd.Passwords = password.NewHasher(params, password.Policy{MinLength: 12})
	if o.wrap != nil {
		hasher = o.wrap(hasher)
	}
	var mailer authd.Mailer = e.mail
	if o.mailer != nil {
		mailer = o.mailer
	}
	var lockouts authd.Lockouts = ratelimit.NewMemoryLockouts(e.clock)
	if o.lockouts != nil {
		lockouts = o.lockouts
	}
	e.svc = authd.NewService(cfg, authd.Deps{
		Store: store, Clock: e.clock, Passwords: hasher,
		Tokens: token.NewIssuer(keys, "https://auth.example.org", "authd"),
		Mailer: mailer, Limiter: limiter, Lockouts: lockouts, Logger: logger, Hooks: o.hooks,
	})
	if err := e.svc.LoadRevocations(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.mail.flush = func() {
		if _, err := e.svc.DeliverMail(context.Background()); err != nil {
			t.Errorf("deliver mail: %v", err)
		}
	}
	apiOpts := httpapi.Options{
		Service: e.svc, Logger: logger, Ready: store.Ready, ServiceTokens: []string{serviceToken},
		JWKS:        func() ([]byte, error) { return keys.JWKS(e.clock.Now(), cfg.AccessTokenTTL) },
		JWKSMaxAge:  token.JWKSMaxAge,
		CORSOrigins: []string{"https://app.example.org"}, PasswordMinLength: 12, PublicURL: cfg.PublicURL,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Metrics:        metrics.New().Handler(),
	}
	e.api = httpapi.New(apiOpts)
	if srv != nil {
		srv.Config.Handler = e.api
		if o.path != "" {
			srv.Config.Handler = http.StripPrefix(o.path, e.api)
		}
		srv.Start()
		srv.URL = cfg.PublicURL
		e.srv = srv
	} else {
		e.srv = httptest.NewServer(e.api)
	}
	t.Cleanup(e.srv.Close)
	e.adminAPI = httpapi.NewAdmin(apiOpts, adminToken)
	e.adminSrv = httptest.NewServer(e.adminAPI)
	t.Cleanup(e.adminSrv.Close)
	return e
}

// openSQLite and openPostgres open a migrated store of the test's own.
func openSQLite(t testing.TB) authd.Store   { return teststores.SQLite(t) }
func openPostgres(t testing.TB) authd.Store { return teststores.Postgres(t) }

// onBothStores runs test as a subtest on SQLite and on PostgreSQL.
func onBothStores(t *testing.T, test func(t *testing.T, open func(*testing.T) authd.Store)) {
	t.Parallel()
	for name, open := range map[string]func(testing.TB) authd.Store{"sqlite": openSQLite, "postgres": openPostgres} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, func(t *testing.T) authd.Store { return open(t) })
		})
	}
}

// response is an answer with its JSON body decoded.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r response) str(key string) string { s, _ := r.body[key].(string); return s }

// code returns the problem code of an error answer.
func (r response) code() string { return r.str("code") }

// field returns the field an error answer names, when it names one.
func (r response) field() string {
	errs, _ := r.body["errors"].([]any)
	if len(errs) != 1 {
		return ""
	}
	f, _ := errs[0].(map[string]any)["field"].(string)
	return f
}

// do sends a request to the public API; body is JSON-encoded unless it is
// a string.
// refresh posts a refresh token to /v1/auth/refresh.
func (e *env) refresh(tok string) response {
	e.t.Helper()
	return e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": tok})
}

func (e *env) do(method, path string, body any, headers ...string) response {
	e.t.Helper()
	return e.send(e.srv.URL, method, path, body, headers...)
}

// admin sends a request to the admin API with the admin token.
func (e *env) admin(method, path string, body any, headers ...string) response {
	e.t.Helper()
	return e.send(e.adminSrv.URL, method, path, body, append([]string{"Authorization", "Bearer " + adminToken}, headers...)...)
}

func (e *env) send(base, method, path string, body any, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, _ := json.Marshal(b)
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	json.Unmarshal(raw, &out.body)
	return out
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// want fails unless r has the status (and, for errors, the problem code).
func want(t testing.TB, what string, r response, status int, code string) {
	t.Helper()
	if r.status != status || (code != "" && r.code() != code) {
		t.Fatalf("%s: %d %s; want %d %s", what, r.status, r.raw, status, code)
	}
	if status >= 400 && r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("%s: Content-Type %q, want application/problem+json", what, r.header.Get("Content-Type"))
	}
}

const goodPassword = "correct horse battery staple 9"

// registerVerified registers email and verifies it through its mail.
func (e *env) registerVerified(email, pw string) {
	e.t.Helper()
	want(e.t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": email, "password": pw, "consent": true}), 202, "")
	tok := tokenOf(e.t, e.mail.last(e.t, authd.MailVerifyEmail, strings.ToLower(email)))
	want(e.t, "verify", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": tok}), 200, "")
}

// login logs in and returns the token pair.
func (e *env) login(email, pw string) (access, refresh string) {
	e.t.Helper()
	r := e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": pw, "device_info": "test"})
	want(e.t, "login", r, 200, "")
	return r.str("access_token"), r.str("refresh_token")
}

// events returns the event types logged for the user (or all with uuid.Nil), oldest first.
func (e *env) events(email string) []string {
	e.t.Helper()
	f := authd.SecurityLogFilter{Limit: authd.MaxListLimit}
	if email != "" {
		u, err := e.store.UserByEmail(context.Background(), email)
		if err != nil {
			e.t.Fatal(err)
		}
		f.UserID = u.ID
	}
	logs, err := e.store.SecurityLogs(context.Background(), f)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]string, len(logs))
	for i, l := range logs {
		out[len(logs)-1-i] = string(l.EventType) + "/" + string(l.Result)
	}
	return out
}

// bruteLock locks the account of email as fifteen minutes of brute force
// would, written straight to the store.
func (e *env) bruteLock(email string) {
	e.t.Helper()
	u := e.user(email)
	u.AccountStatus, u.LockReason = authd.StatusLocked, authd.LockBruteForce
	u.AccountLockedUntil = e.clock.Now().Add(15 * time.Minute)
	if err := e.store.UpdateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) user(email string) *authd.User {
	e.t.Helper()
	u, err := e.store.UserByEmail(context.Background(), email)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// jwtClaims decodes (without verifying) the claims of a JWT.
func jwtClaims(t testing.TB, tok string) map[string]any { t.Helper(); return jwtPart(t, tok, 1) }

// jwtHeader decodes (without verifying) the header of a JWT.
func jwtHeader(t testing.TB, tok string) map[string]any { t.Helper(); return jwtPart(t, tok, 0) }

// jwtPart decodes part i (0 header, 1 claims) of a JWT.
func jwtPart(t testing.TB, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// instances opens n stores on one fresh, migrated PostgreSQL database, as n
// instances of authd would.
func instances(t testing.TB, n int) []*postgres.Store {
	t.Helper()
	url := teststores.PostgresURL(t)
	stores := make([]*postgres.Store, n)
	for i := range stores {
		stores[i] = teststores.PostgresAt(t, url)
	}
	return stores
}

// active reports whether introspection holds the access token active. It
// reads no database: it answers from the token and the revocation set.
func (e *env) active(tok string) bool {
	e.t.Helper()
	r := e.do("POST", "/v1/auth/introspect", map[string]string{"token": tok}, bearer(serviceToken)...)
	if r.status != 200 {
		e.t.Fatalf("introspect: %d %s", r.status, r.raw)
	}
	return r.body["active"] == true
}

// from returns the header that makes a request come from client address ip
// (the test server trusts X-Forwarded-For from loopback).
func from(ip string) []string { return []string{"X-Forwarded-For", ip} }
