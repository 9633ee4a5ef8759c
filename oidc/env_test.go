package oidc_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
	"github.com/authd/authd/internal/teststores"
	"github.com/authd/authd/oidc"
	"github.com/authd/authd/password"
	"github.com/authd/authd/ratelimit"
	"github.com/authd/authd/storetest"
	"github.com/authd/authd/token"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

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

type nopMailer struct{}

func (nopMailer) Send(context.Context, authd.Mail) error { return nil }

const goodPassword = "correct horse battery staple"

// env is authd with the OpenID provider mounted, on one store, behind a
// real HTTP server, with a settable clock.
type env struct {
	t     *testing.T
	store authd.Store
	clock *clock
	svc   *authd.Service
	srv   *httptest.Server
	keys  *token.Keyring
	// idKeys sign the ID tokens; keysDir holds both keyrings' keys.
	idKeys   *token.Keyring
	keysDir  string
	provider *oidc.Provider
	logs     *strings.Builder
	mu       sync.Mutex
}

func newEnv(t *testing.T, store authd.Store, options ...func(*oidc.Options)) *env {
	t.Helper()
	return newEnvConfig(t, store, func(*authd.Config) {}, options...)
}

// newEnvConfig is newEnv with a change to the service's configuration.
func newEnvConfig(t *testing.T, store authd.Store, config func(*authd.Config), options ...func(*oidc.Options)) *env {
	t.Helper()
	e := &env{t: t, store: store, clock: &clock{now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}, logs: &strings.Builder{}}
	keysDir := t.TempDir()
	keys, err := token.OpenKeyring(keysDir, "EdDSA", e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	idKeys, err := token.OpenKeyring(keysDir, token.IDTokenAlg, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.keys, e.idKeys, e.keysDir = keys, idKeys, keysDir
	e.srv = httptest.NewUnstartedServer(nil)
	base := "http://" + e.srv.Listener.Addr().String()
	cfg := authd.Config{PublicURL: base, AccessTokenTTL: 15 * time.Minute, RefreshTokenTTL: 168 * time.Hour,
		SessionMaxAge: 720 * time.Hour, RefreshReuseGrace: 10 * time.Second, RequireVerifiedEmail: true,
		LockoutThreshold: 5, LockoutDuration: 15 * time.Minute, MaxSessions: 100}
	config(&cfg)
	logger := slog.New(slog.NewTextHandler(&lockedWriter{e: e}, nil))
	e.svc = authd.NewService(cfg, authd.Deps{Store: store, Clock: e.clock,
		Passwords: password.NewHasher(password.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}, password.Policy{MinLength: 12}),
		Tokens:    token.NewIssuer(keys, base, "authd"), Mailer: nopMailer{}, Limiter: ratelimit.NewMemory(e.clock),
		Lockouts: ratelimit.NewMemoryLockouts(e.clock), Logger: logger})
	if err := e.svc.LoadRevocations(context.Background()); err != nil {
		t.Fatal(err)
	}
	opts := oidc.Options{Service: e.svc, Issuer: base, PublicURL: base, IDKeys: idKeys,
		IDTokenTTL: cfg.AccessTokenTTL, FormKey: []byte("form key for tests, 32 bytes...."),
		Client: httpapi.RequestClient, Clock: e.clock.Now, Logger: logger, AppName: "Example Co"}
	for _, o := range options {
		o(&opts)
	}
	provider, err := oidc.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.provider = provider
	e.srv.Config.Handler = httpapi.New(httpapi.Options{Service: e.svc, Logger: logger, Ready: store.Ready,
		JWKS:       func() ([]byte, error) { return token.JWKS(e.clock.Now(), cfg.AccessTokenTTL, keys, idKeys) },
		JWKSMaxAge: token.JWKSMaxAge, PasswordMinLength: 12, ServiceTokens: []string{serviceToken},
		Mounts: []httpapi.Mount{{Patterns: provider.Patterns(), Handler: provider}}})
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

type lockedWriter struct{ e *env }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.e.mu.Lock()
	defer w.e.mu.Unlock()
	return w.e.logs.Write(b)
}

func (e *env) logText() string { e.mu.Lock(); defer e.mu.Unlock(); return e.logs.String() }

// openSQLite and openPostgres open a migrated store of the test's own.
func openSQLite(t *testing.T) authd.Store   { return teststores.SQLite(t) }
func openPostgres(t *testing.T) authd.Store { return teststores.Postgres(t) }

// onBothStores runs test as a subtest on SQLite and on PostgreSQL.
func onBothStores(t *testing.T, test func(t *testing.T, e *env)) {
	onBothStoresEnv(t, func(t *testing.T, s authd.Store) *env { return newEnv(t, s) }, test)
}

// onBothStoresEnv is onBothStores with the env that newEnv builds.
func onBothStoresEnv(t *testing.T, newEnv func(*testing.T, authd.Store) *env, test func(t *testing.T, e *env)) {
	t.Parallel()
	for name, open := range map[string]func(*testing.T) authd.Store{"sqlite": openSQLite, "postgres": openPostgres} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, newEnv(t, open(t)))
		})
	}
}

// user inserts an active, verified account with goodPassword.
func (e *env) user(email string) *authd.User {
	e.t.Helper()
	return e.userFrom(storetest.NewUser(email))
}

// userFrom stores u (storetest.NewUser's, changed) with goodPassword.
func (e *env) userFrom(u *authd.User) *authd.User {
	e.t.Helper()
	h, err := password.NewHasher(password.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}, password.Policy{MinLength: 12}).
		Hash(context.Background(), goodPassword)
	if err != nil {
		e.t.Fatal(err)
	}
	now := e.clock.Now()
	u.PasswordHash, u.LastPasswordChange, u.CreatedAt, u.UpdatedAt = h, now, now, now
	if err := e.store.CreateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
	return u
}

// login signs in with goodPassword through the JSON API's Login.
func (e *env) login(email string) (*authd.TokenPair, *authd.AccessClaims) {
	e.t.Helper()
	pair, err := e.svc.Login(context.Background(), authd.Client{}, email, goodPassword, "")
	if err != nil {
		e.t.Fatal(err)
	}
	claims, err := e.svc.Authenticate(context.Background(), pair.AccessToken)
	if err != nil {
		e.t.Fatal(err)
	}
	return pair, claims
}

// mfaUser is user with a confirmed TOTP factor; it returns its secret. The
// clock then moves a step on, so that the confirmation's code is behind.
func (e *env) mfaUser(email string) string {
	e.t.Helper()
	ctx := context.Background()
	e.user(email)
	_, claims := e.login(email)
	enrol, err := e.svc.EnrollTOTP(ctx, authd.Client{}, claims, goodPassword, authd.StepUp{})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.svc.ConfirmTOTP(ctx, authd.Client{}, claims, totpAt(e.t, enrol.Secret, e.clock.Now())); err != nil {
		e.t.Fatal(err)
	}
	e.clock.Advance(30 * time.Second)
	return enrol.Secret
}

func totpAt(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// browser is a user agent with a cookie jar that follows redirects on the
// server and stops at any other host (the relying party's callback).
type browser struct {
	t    *testing.T
	e    *env
	http *http.Client
	last *http.Response
	body string
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{t: e.t, e: e}
	b.http = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != strings.TrimPrefix(e.srv.URL, "http://") {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return b
}

func (b *browser) do(req *http.Request) *browser {
	b.t.Helper()
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.last, b.body = resp, string(body)
	return b
}

func (b *browser) get(u string) *browser {
	b.t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	return b.do(req)
}

// post submits a form to a path of the server.
func (b *browser) post(path string, form url.Values) *browser {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// form returns the hidden fields of the page's first form.
func (b *browser) form() url.Values { return hiddenFields(b.body) }

// hiddenFields are the hidden fields of the first form in page.
func hiddenFields(page string) url.Values {
	out := url.Values{}
	if i := strings.Index(page, "</form>"); i > 0 {
		page = page[:i]
	}
	for _, m := range hiddenRE.FindAllStringSubmatch(page, -1) {
		out.Set(m[1], html.UnescapeString(m[2]))
	}
	return out
}

// formTo returns the hidden fields of the page's form sent to action.
func (b *browser) formTo(action string) url.Values {
	b.t.Helper()
	i := strings.Index(b.body, `<form method="post" action="`+action+`"`)
	if i < 0 {
		b.t.Fatalf("no form to %s on the page: %s", action, b.body)
	}
	return hiddenFields(b.body[i:])
}

// callback is the relying party's side of the last answer: the redirect's
// query, or nil when the answer was no redirect to another host.
func (b *browser) callback() url.Values {
	if b.last.StatusCode != http.StatusFound {
		return nil
	}
	u, err := url.Parse(b.last.Header.Get("Location"))
	if err != nil || u.Host == strings.TrimPrefix(b.e.srv.URL, "http://") {
		return nil
	}
	return u.Query()
}

// signIn fills the sign-in page the browser is on.
func (b *browser) signIn(email, pw string) *browser {
	b.t.Helper()
	f := b.form()
	if f.Get("csrf") == "" || f.Get("request") == "" {
		b.t.Fatalf("not on the sign-in page: %d %s", b.last.StatusCode, b.body)
	}
	f.Set("email", email)
	f.Set("password", pw)
	return b.post(oidc.SignInPath, f)
}

// signUp sends the sign-up page of request with email, pw and consent.
func (b *browser) signUp(request, email, pw string) *browser {
	b.t.Helper()
	f := b.get(b.e.srv.URL + oidc.SignUpPath + "?request=" + request).form()
	f.Set("email", email)
	f.Set("password", pw)
	f.Set("consent", "yes")
	return b.post(oidc.SignUpPath, f)
}

// serviceToken lets the tests introspect tokens as a resource server would.
const serviceToken = "service-token-0123456789abcdef0123456789"

// jwtPayload decodes (without verifying) the claims of a JWT.
func jwtPayload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}
