package oidc_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/oidc"
	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/uuid"
	"golang.org/x/oauth2"
)

// TestNativeClientsConfirmByHand: a public client whose redirect URI is not
// https (a private-use scheme, loopback) gets no code without a click, even
// first-party: another app on the device could claim its scheme or port
// (RFC 8252 §8.6). So does a confidential client with a private-use scheme:
// its secret ships in the app, where anyone can read it (RFC 8252 §8.5).
// prompt=none answers consent_required. A confidential client's loopback
// http (a web server in development) goes on without a click.
func TestNativeClientsConfirmByHand(t *testing.T) {
	for _, tc := range []struct {
		typ      authd.ClientType
		callback string
		confirm  bool
	}{
		{authd.ClientPublic, "com.example.app:/cb", true},
		{authd.ClientPublic, "http://127.0.0.1:8123/cb", true},
		{authd.ClientConfidential, "com.example.app:/cb", true},
		{authd.ClientConfidential, "http://127.0.0.1:8123/cb", false},
	} {
		t.Run(string(tc.typ)+" "+tc.callback, func(t *testing.T) {
			onBothStores(t, func(t *testing.T, e *env) { nativeClientConfirms(t, e, tc.typ, tc.callback, tc.confirm) })
		})
	}
}

// TestNativeAppsUsePKCE: an authorization request for a private-use
// scheme's redirect URI needs PKCE from a confidential client too: an app
// that claims the scheme gets the code, and only the verifier, which it
// does not have, keeps the code useless to it (the secret ships in the
// app). A confidential client's https redirect may go without.
func TestNativeAppsUsePKCE(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		for id, callback := range map[string]string{"native": "com.example.app:/cb", "web": rpCallback} {
			c, _, err := e.svc.CreateClient(context.Background(), authd.Client{}, authd.ClientSpec{ID: id, Name: id,
				Type: authd.ClientConfidential, RedirectURIs: []string{callback}, FirstParty: true})
			if err != nil {
				t.Fatal(err)
			}
			q := url.Values{"client_id": {c.ID}, "redirect_uri": {callback}, "response_type": {"code"}, "scope": {"openid"},
				"state": {"s"}}
			cb := e.browser().get(e.srv.URL + oidc.AuthorizePath + "?" + q.Encode()).callback()
			switch {
			case id == "native" && (cb == nil || cb.Get("error") != "invalid_request"):
				t.Errorf("a confidential client's private-use redirect without PKCE: %v, want invalid_request", cb)
			case id == "web" && cb != nil:
				t.Errorf("a confidential client's https redirect without PKCE: %v, want the sign-in page", cb)
			}
		}
	})
}

func nativeClientConfirms(t *testing.T, e *env, typ authd.ClientType, callback string, confirm bool) {
	e.user("nat@example.org")
	c, _, err := e.svc.CreateClient(context.Background(), authd.Client{}, authd.ClientSpec{ID: "native", Name: "Native",
		Type: typ, RedirectURIs: []string{callback}, FirstParty: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth2.Config{ClientID: c.ID, RedirectURL: callback, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + "/oauth2/authorize", TokenURL: e.srv.URL + "/oauth2/token"}}
	b := e.browser()
	b.get(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))).signIn("nat@example.org", goodPassword)
	if !confirm {
		if cb := b.callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("a confidential client on loopback: %d %q; want a code at once", b.last.StatusCode, b.last.Header.Get("Location"))
		}
		return
	}
	if !strings.Contains(b.body, `name="decision"`) {
		t.Fatalf("a native client got no confirmation page after sign-in: %d %s", b.last.StatusCode, b.last.Header.Get("Location"))
	}
	f := b.form()
	f.Set("decision", "allow")
	if cb := b.post(oidc.ConsentPath, f).callback(); cb == nil || cb.Get("code") == "" {
		t.Fatalf("allow: %d %q", b.last.StatusCode, b.last.Header.Get("Location"))
	}
	// Signed in and allowed before: still a page, never a silent code.
	b.get(cfg.AuthCodeURL("s2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if !strings.Contains(b.body, `name="decision"`) {
		t.Errorf("a native client got a code without a click: %d %q", b.last.StatusCode, b.last.Header.Get("Location"))
	}
	b.get(cfg.AuthCodeURL("s3", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none")))
	if loc := b.last.Header.Get("Location"); !strings.Contains(loc, "error=consent_required") {
		t.Errorf("prompt=none for a native client: %d %q; want consent_required", b.last.StatusCode, loc)
	}
}

// TestHugeMaxAge: a max_age too large for a duration means "any sign-in",
// not a sign-in from the future that no session meets.
func TestHugeMaxAge(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("max@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
			oauth2.SetAuthURLParam("max_age", "9300000000"))).signIn("max@example.org", goodPassword)
		if cb := b.callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("max_age=9300000000: %d %q; want a code", b.last.StatusCode, b.last.Header.Get("Location"))
		}
		// Past an int64 too: still a number of seconds, and any sign-in.
		for _, age := range []string{"9223372036854775808", "99999999999999999999999"} {
			if cb := b.authorizeWith(r, "max_age", age, "prompt", "none").callback(); cb == nil || cb.Get("code") == "" {
				t.Errorf("max_age=%s: %d %q; want a code", age, b.last.StatusCode, b.last.Header.Get("Location"))
			}
		}
		if cb := b.authorizeWith(r, "max_age", "+5", "prompt", "none").callback(); cb == nil || cb.Get("error") != "invalid_request" {
			t.Errorf("max_age=+5: %d %q; want invalid_request", b.last.StatusCode, b.last.Header.Get("Location"))
		}
	})
}

// TestConsentWithdrawnTakesTheCodeBack: a code issued before the user
// withdrew their consent is refused.
func TestConsentWithdrawnTakesTheCodeBack(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("wd@example.org")
		c, cs := e.client("third", authd.ClientConfidential, false)
		r := e.rp(c, cs)
		b := e.browser()
		verifier := oauth2.GenerateVerifier()
		b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))).signIn("wd@example.org", goodPassword)
		f := b.form()
		f.Set("decision", "allow")
		cb := b.post(oidc.ConsentPath, f).callback()
		if cb == nil || cb.Get("code") == "" {
			t.Fatalf("allow: %d %s", b.last.StatusCode, b.body)
		}
		_, claims := e.login("wd@example.org")
		if err := e.svc.RevokeConsent(context.Background(), authd.Client{}, claims, c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := r.cfg.Exchange(r.ctx, cb.Get("code"), oauth2.VerifierOption(verifier)); err == nil {
			t.Error("a code issued before the consent was withdrawn was redeemed")
		}
	})
}

// TestNarrowerConsentTakesTheCodeBack: a code is redeemed only while the
// user's consent covers every scope it carries: a consent withdrawn and
// given again for fewer scopes (before the code's end) does not let the
// code issued under the first one through.
func TestNarrowerConsentTakesTheCodeBack(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("narrow@example.org")
		c, cs := e.client("third", authd.ClientConfidential, false)
		wide, narrow := e.rp(c, cs, "email"), e.rp(c, cs)
		b := e.browser()
		verifier := oauth2.GenerateVerifier()
		code, status := signInCode(b, wide, "narrow@example.org", verifier)
		if code == "" {
			t.Fatalf("the first code: %d", status)
		}
		_, claims := e.login("narrow@example.org")
		if err := e.svc.RevokeConsent(context.Background(), authd.Client{}, claims, c.ID); err != nil {
			t.Fatal(err)
		}
		if again, status := signInCode(b, narrow, "narrow@example.org", oauth2.GenerateVerifier()); again == "" {
			t.Fatalf("the consent given again for openid alone: %d", status)
		}
		if _, err := wide.cfg.Exchange(wide.ctx, code, oauth2.VerifierOption(verifier)); err == nil {
			t.Error("a code for openid email was redeemed under a consent to openid alone")
		}
	})
}

// TestLogoutHintNeedsTheSameUser: an ID token alone (leaked from a URL)
// does not end its session from another browser.
func TestLogoutHintNeedsTheSameUser(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("hint@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		verifier := oauth2.GenerateVerifier()
		tok, err := r.cfg.Exchange(r.ctx, r.login(t, e.browser(), "hint@example.org", "s", "n", verifier), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		stranger := e.browser()
		stranger.get(e.srv.URL + oidc.LogoutPath + "?" + url.Values{"id_token_hint": {tok.Extra("id_token").(string)}}.Encode())
		stranger.post(oidc.LogoutPath, stranger.form())
		if got := e.me(tok.AccessToken); got != http.StatusOK {
			t.Errorf("another browser's logout with the ID token ended the session: %d", got)
		}
	})
}

// TestLogoutHintOfAnotherUser: a user signed in on a browser who signs
// out with another user's ID token as the hint (leaked, or a shared
// computer's) ends their own sessions only: the hinted session, not
// theirs, stays live. Their sign-out is logged as a logout naming the
// browser session.
func TestLogoutHintOfAnotherUser(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		victim, other := e.user("victim@example.org"), e.user("other@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		verifier := oauth2.GenerateVerifier()
		tok, err := r.cfg.Exchange(r.ctx, r.login(t, e.browser(), "victim@example.org", "s", "n", verifier), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		b := e.browser()
		verifier = oauth2.GenerateVerifier()
		mine, err := r.cfg.Exchange(r.ctx, r.login(t, b, "other@example.org", "s", "n", verifier), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		browserSession := b.sessionCookie()
		b.get(e.srv.URL + oidc.LogoutPath + "?" + url.Values{"id_token_hint": {tok.Extra("id_token").(string)}}.Encode())
		b.post(oidc.LogoutPath, b.form())
		if got := e.me(tok.AccessToken); got != http.StatusOK {
			t.Errorf("the hinted session of another user after the sign-out: %d, want it live", got)
		}
		if got := e.me(mine.AccessToken); got != http.StatusOK {
			t.Errorf("the signed-in user's client session after the sign-out: %d, want it live (only the browser's ends)", got)
		}
		if _, _, err := e.svc.BrowserSession(context.Background(), browserSession); authd.ErrorCode(err) != authd.EInvalidToken {
			t.Errorf("the browser session after its sign-out: %v, want it ended", err)
		}
		if n := count(e.events(victim), string(authd.EventLogout)); n != 0 {
			t.Errorf("%d logout rows for the hinted user, want none: %v", n, e.events(victim))
		}
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: other.ID,
			EventType: authd.EventLogout, Limit: 10})
		if err != nil || len(logs) != 1 || logs[0].Result != authd.ResultSuccess || logs[0].AdditionalContext["session_id"] == nil {
			t.Errorf("the sign-out's rows: %+v, %v; want one successful logout naming the browser session", logs, err)
		}
	})
}

// TestPKCEVerifierCharset: a verifier outside RFC 7636's characters is
// refused even when its digest matches.
func TestPKCEVerifierCharset(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("pk@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		verifier := strings.Repeat("a", 42) + "!"
		code := r.login(t, e.browser(), "pk@example.org", "s", "n", verifier)
		if _, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(verifier)); err == nil {
			t.Error("a verifier with '!' was accepted")
		}
	})
}

// TestPKCEVerifierLength: a verifier must be 43 to 128 characters (RFC
// 7636 §4.1), even when its digest matches the challenge: a shorter one
// is too weak to guess against, a longer one no client makes.
func TestPKCEVerifierLength(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("len@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		for n, ok := range map[int]bool{42: false, 43: true, 128: true, 129: false} {
			verifier := strings.Repeat("a", n)
			code := r.login(t, b, "len@example.org", "s", "n", verifier)
			if _, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(verifier)); (err == nil) != ok {
				t.Errorf("a verifier of %d characters: %v; want accepted %v", n, err, ok)
			}
		}
	})
}

// TestVerifierWithoutAChallenge: a code issued without a PKCE challenge
// takes no verifier (RFC 9700 §2.1.1: a verifier for a code without a
// challenge is refused, against PKCE downgrade); without one it is
// redeemed.
func TestVerifierWithoutAChallenge(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("nochal@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		b.get(r.cfg.AuthCodeURL("s")).signIn("nochal@example.org", goodPassword)
		cb := b.callback()
		if cb == nil || cb.Get("code") == "" {
			t.Fatalf("a code without PKCE: %d %v", b.last.StatusCode, cb)
		}
		if _, err := r.cfg.Exchange(r.ctx, cb.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
			t.Error("a code issued without a challenge was redeemed with a verifier")
		}
		if _, err := r.cfg.Exchange(r.ctx, cb.Get("code")); err != nil {
			t.Errorf("the code without a verifier after the refusal: %v; want it redeemed", err)
		}
	})
}

// TestClientEndsItsOwnSession: the account API refuses a client's access
// token, but the client may end its own session with it.
func TestClientEndsItsOwnSession(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("own@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		verifier := oauth2.GenerateVerifier()
		tok, err := r.cfg.Exchange(r.ctx, r.login(t, e.browser(), "own@example.org", "s", "n", verifier), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if got, body := e.call("POST", "/v1/auth/logout", tok.AccessToken); got != http.StatusNoContent {
			t.Fatalf("logout with the client's token: %d %s", got, body)
		}
		if got := e.me(tok.AccessToken); got != http.StatusUnauthorized {
			t.Errorf("the token after its logout: %d, want 401", got)
		}
	})
}

// TestRequestBoundToItsBrowser: a request's id (which leaks through
// history, logs, Referer) does not let another browser finish it. Else a
// browser signed in as someone else gets a code for its own account that
// carries the first browser's state and PKCE challenge, and plants it at
// the client's callback in the first browser: a login CSRF that state and
// PKCE do not stop. The refusal is the page of an unknown id.
func TestRequestBoundToItsBrowser(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("victim@example.org")
		e.user("attacker@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		attacker := e.browser()
		r.login(t, attacker, "attacker@example.org", "a", "n", oauth2.GenerateVerifier())

		victim := e.browser()
		verifier := oauth2.GenerateVerifier()
		victim.get(r.cfg.AuthCodeURL("victim-state", oauth2.S256ChallengeOption(verifier)))
		id := victim.form().Get("request")
		if id == "" {
			t.Fatalf("no sign-in page for the victim: %d %s", victim.last.StatusCode, victim.body)
		}
		unknown := nonceRE.ReplaceAllString(attacker.get(e.srv.URL+oidc.ResumePath+"?request="+authd.NewID().String()).body, "")
		for _, b := range map[string]*browser{"signed in as another user": attacker, "without cookies": e.browser()} {
			for _, path := range []string{oidc.ResumePath, oidc.SignInPath, oidc.SignUpPath, oidc.ForgotPath, oidc.ResendPath} {
				b.get(e.srv.URL + path + "?request=" + id)
				if cb := b.callback(); cb != nil {
					t.Fatalf("another browser finished the request at %s: %v", path, cb)
				}
				if b.last.StatusCode != http.StatusBadRequest || nonceRE.ReplaceAllString(b.body, "") != unknown {
					t.Errorf("another browser at %s: %d; want the page of an unknown request\n%s", path, b.last.StatusCode, b.body)
				}
			}
		}

		victim.signIn("victim@example.org", goodPassword)
		cb := victim.callback()
		if cb == nil || cb.Get("code") == "" || cb.Get("state") != "victim-state" {
			t.Fatalf("the browser that started the request: %d %v", victim.last.StatusCode, cb)
		}
		if _, idt := r.exchange(t, cb.Get("code"), verifier); idt.Subject != e.userByEmail("victim@example.org").ID.String() {
			t.Errorf("the code is %s's; want the victim's", idt.Subject)
		}

		// A request saved without a binding (before the column existed) is
		// no browser's.
		old := &authd.AuthRequest{ClientID: c.ID, RedirectURI: rpCallback, Scopes: []string{"openid"}, State: "old"}
		if err := e.svc.SaveAuthRequest(context.Background(), authd.Client{}, old); err != nil {
			t.Fatal(err)
		}
		if victim.get(e.srv.URL + oidc.ResumePath + "?request=" + old.ID.String()); victim.last.StatusCode != http.StatusBadRequest {
			t.Errorf("a request without a binding: %d %q; want 400", victim.last.StatusCode, victim.last.Header.Get("Location"))
		}
	})
}

// outageStore is a store whose browser-session reads fail as in a database
// outage while down is set.
type outageStore struct {
	authd.Store
	down atomic.Bool
}

func (s *outageStore) BrowserSession(ctx context.Context, digest string) (*authd.Session, error) {
	if s.down.Load() {
		return nil, authd.Errorf(authd.EUnavailable, "the database is down")
	}
	return s.Store.BrowserSession(ctx, digest)
}

// TestOutageIsNotSignedOut: a browser session that cannot be read because
// the database is down is an outage (503, Retry-After), not "not signed
// in": prompt=none must not answer login_required, the sign-in page must
// not be shown, and a sign-in must not set its cookie while the old session
// it replaces cannot be ended.
func TestOutageIsNotSignedOut(t *testing.T) {
	t.Parallel()
	s := &outageStore{Store: openSQLite(t)}
	e := newEnv(t, s)
	e.user("out@example.org")
	r, b := e.signInAgainPage("out@example.org")
	signIn := b.form()
	signIn.Set("email", "out@example.org")
	signIn.Set("password", goodPassword)

	s.down.Store(true)
	unavailable := func(what string) {
		t.Helper()
		if b.last.StatusCode != http.StatusServiceUnavailable || b.last.Header.Get("Retry-After") == "" {
			t.Errorf("%s during an outage: %d %q; want 503 with Retry-After", what, b.last.StatusCode, b.last.Header.Get("Location"))
		}
	}
	b.get(r.cfg.AuthCodeURL("silent", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none")))
	unavailable("prompt=none")
	b.get(r.cfg.AuthCodeURL("page", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	unavailable("authorize")
	before := b.sessionCookie()
	b.post(oidc.SignInPath, signIn)
	unavailable("sign-in")
	if b.sessionCookie() != before {
		t.Errorf("a sign-in during an outage replaced the session cookie")
	}
	// The operator can tell which request failed, by the id its client was
	// told, from the outage's line (sampled: a line a second with the
	// count, naming the latest request).
	id := b.last.Header.Get("X-Request-Id")
	e.provider.FlushLog()
	var line string
	for l := range strings.Lines(e.logText()) {
		if strings.Contains(l, "request_id="+id) && strings.Contains(l, "requests failed: unavailable") {
			line = l
		}
	}
	if id == "" || !strings.Contains(line, "path="+oidc.SignInPath) ||
		!strings.Contains(line, "method=POST") || !strings.Contains(line, "the database is down") {
		t.Errorf("the sign-in's outage (X-Request-Id %q) logged as %q; want the outage's line with its id, method, path and cause", id, line)
	}
	if n := strings.Count(e.logText(), "requests failed: unavailable"); n > 2 {
		t.Errorf("three requests during the outage told in %d lines; want them sampled (at most two within a second)", n)
	}
}

// sessionCookie is the browser's session cookie for the server.
func (b *browser) sessionCookie() string {
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.http.Jar.Cookies(u) {
		if c.Name == "authd_session" {
			return c.Value
		}
	}
	return ""
}

// TestAuthorizePostBecomesGet: a POST to the authorization endpoint (a
// relying party's cross-site form, which carries none of authd's Lax
// cookies) is answered with a 303 to the same request as a GET, setting no
// cookie; the GET, with the browser's cookies, goes on as usual.
func TestAuthorizePostBecomesGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.user("pia@example.org")
	c, secret := e.client("app", authd.ClientConfidential, true)
	r := e.rp(c, secret)
	verifier := oauth2.GenerateVerifier()
	authURL, _ := url.Parse(r.cfg.AuthCodeURL("post-state", oauth2.S256ChallengeOption(verifier)))
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.PostForm(e.srv.URL+oidc.AuthorizePath, authURL.Query())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Path != oidc.AuthorizePath ||
		loc.Query().Encode() != authURL.Query().Encode() || len(resp.Cookies()) != 0 {
		t.Fatalf("POST authorize: %d Location %q cookies %v; want a 303 to the same GET and no cookie",
			resp.StatusCode, resp.Header.Get("Location"), resp.Cookies())
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("POST authorize's 303: Cache-Control %q, want no-store", resp.Header.Get("Cache-Control"))
	}
	b := e.browser()
	b.get(e.srv.URL+loc.String()).signIn("pia@example.org", goodPassword)
	if cb := b.callback(); cb == nil || cb.Get("state") != "post-state" || cb.Get("code") == "" {
		t.Fatalf("the GET twin: %d %v; want the code with the state", b.last.StatusCode, cb)
	}
	// A request too large for a URL is an error page, not a 303 the
	// server would then refuse (431).
	big := authURL.Query()
	big.Set("padding", strings.Repeat("x", 9<<10))
	resp, err = noFollow.PostForm(e.srv.URL+oidc.AuthorizePath, big)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a POST authorize too large for a URL: %d, want the 400 error page", resp.StatusCode)
	}
}

// TestJunkSeedCookie: a CSRF cookie too long to be a seed (planted, or
// corrupted) is passed over, and every token and binding of one answer use
// the one seed set in its place: the consent page that authorize renders
// at once still works.
func TestJunkSeedCookie(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.user("jun@example.org")
	c, secret := e.client("third", authd.ClientConfidential, false)
	r := e.rp(c, secret)
	b := e.browser()
	b.get(r.cfg.AuthCodeURL("first", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))).signIn("jun@example.org", goodPassword)
	if !strings.Contains(b.body, `name="decision"`) {
		t.Fatalf("no consent page: %d", b.last.StatusCode)
	}
	u, _ := url.Parse(e.srv.URL)
	b.http.Jar.SetCookies(u, []*http.Cookie{{Name: "authd_csrf", Value: strings.Repeat("j", 200), Path: "/"}})
	b.get(r.cfg.AuthCodeURL("second", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if !strings.Contains(b.body, `name="decision"`) {
		t.Fatalf("no consent page with a junk seed cookie: %d", b.last.StatusCode)
	}
	f := b.form()
	f.Set("decision", "allow")
	if cb := b.post(oidc.ConsentPath, f).callback(); cb == nil || cb.Get("state") != "second" || cb.Get("code") == "" {
		t.Errorf("consent after a junk seed cookie: %d %s; want the code", b.last.StatusCode, b.body)
	}
}

// TestSelectAccountShowsTheSignInPage: prompt=select_account (OIDC Core
// §3.1.2.1) gets the sign-in page, where the user picks the account, as
// prompt=login does; never a silent code for the account signed in.
func TestSelectAccountShowsTheSignInPage(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("sel@example.org")
		e.user("other@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b, _ := e.signedInWithIDToken(r, "sel@example.org")
		e.clock.Advance(time.Second)
		if !b.authorizeWith(r, "prompt", "select_account").onSignInPage() {
			t.Fatalf("prompt=select_account: %d %v; want the sign-in page", b.last.StatusCode, b.callback())
		}
		if cb := b.signIn("other@example.org", goodPassword).callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("the account picked on the page: %d %v; want a code", b.last.StatusCode, cb)
		}
	})
}

// TestMaxAgeIsNotRoundedToTheSecond: max_age counts from the sign-in's
// exact time (OIDC Core §3.1.2.1: older than max_age seconds, sign in
// again): 0.9 s after it, max_age=1 is met and max_age=0 is not.
func TestMaxAgeIsNotRoundedToTheSecond(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("ma@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b, _ := e.signedInWithIDToken(r, "ma@example.org")
		e.clock.Advance(900 * time.Millisecond)
		if cb := b.authorizeWith(r, "max_age", "1").callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("max_age=1, 0.9 s after the sign-in: %d %v; want a code", b.last.StatusCode, cb)
		}
		if cb := b.authorizeWith(r, "max_age", "0", "prompt", "none").callback(); cb == nil || cb.Get("error") != "login_required" ||
			!strings.Contains(cb.Get("error_description"), "older than max_age") {
			t.Errorf("max_age=0 with prompt=none, 0.9 s after the sign-in: %v; want error=login_required, the sign-in too old", cb)
		}
		if !b.authorizeWith(r, "max_age", "0").onSignInPage() {
			t.Fatalf("max_age=0, 0.9 s after the sign-in: %d %v; want the sign-in page", b.last.StatusCode, b.callback())
		}
		if cb := b.signIn("ma@example.org", goodPassword).callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("max_age=0 after signing in again: %d %v; want a code", b.last.StatusCode, cb)
		}
	})
}

// TestSecureCookiesOnHTTPS: an https public URL, its scheme spelled in any
// case, gives __Host- cookies marked Secure; an http one plain cookies,
// which browsers would refuse otherwise.
func TestSecureCookiesOnHTTPS(t *testing.T) {
	for publicURL, secure := range map[string]bool{
		"https://auth.example.org": true, "HTTPS://auth.example.org": true, "Https://auth.example.org/": true,
		"http://127.0.0.1:8080": false, "HTTP://127.0.0.1:8080": false,
	} {
		t.Run(publicURL, func(t *testing.T) {
			e := newEnv(t, openSQLite(t), func(o *oidc.Options) { o.PublicURL = publicURL })
			c, _ := e.client("web", authd.ClientConfidential, true)
			cfg := oauth2.Config{ClientID: c.ID, RedirectURL: rpCallback, Scopes: []string{"openid"},
				Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + oidc.AuthorizePath}}
			noRedirects := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := noRedirects.Get(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			cookies := resp.Cookies()
			if len(cookies) == 0 {
				t.Fatalf("authorize set no cookie: %d", resp.StatusCode)
			}
			for _, ck := range cookies {
				if ck.Secure != secure || strings.HasPrefix(ck.Name, "__Host-") != secure {
					t.Errorf("cookie %s, Secure %v; want __Host- and Secure: %v", ck.Name, ck.Secure, secure)
				}
			}
		})
	}
}

// TestStateAndNonceMustBeText: a state or nonce that PostgreSQL cannot keep
// (a NUL, bytes that are not UTF-8) goes back to the client as
// invalid_request (RFC 6749 §4.1.2.1) — a state that is not text is not
// echoed — on both stores, never as an outage (a 503 and an ERROR line
// anyone could cause); the end-session endpoint's state likewise gets its
// error page.
func TestStateAndNonceMustBeText(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.client("app", authd.ClientConfidential, true)
		for name, c := range map[string]struct{ param, value, wantState string }{
			"state with NUL":      {"state", "a\x00b", ""},
			"state not UTF-8":     {"state", "\xff", ""},
			"state with a tab":    {"state", "a\tb", ""},
			"nonce with NUL":      {"nonce", "n\x00", "s"},
			"nonce not UTF-8":     {"nonce", "\xc3", "s"},
			"nonce with a escape": {"nonce", "\x1b[31m", "s"},
		} {
			q := url.Values{"client_id": {"app"}, "redirect_uri": {rpCallback}, "response_type": {"code"},
				"scope": {"openid"}, "code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"},
				"state": {"s"}}
			q.Set(c.param, c.value)
			resp, err := noRedirects.Get(e.srv.URL + oidc.AuthorizePath + "?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), rpCallback) ||
				loc.Query().Get("error") != "invalid_request" || loc.Query().Get("state") != c.wantState {
				t.Errorf("%s: %d to %q; want a redirect to the client with invalid_request and state %q",
					name, resp.StatusCode, resp.Header.Get("Location"), c.wantState)
			}
		}
		resp, err := http.Get(e.srv.URL + oidc.LogoutPath + "?" + url.Values{"client_id": {"app"}, "state": {"\x00"}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("end-session with a state that is not text: %d, want 400", resp.StatusCode)
		}
		if logs := e.logText(); strings.Contains(logs, "level=ERROR") {
			t.Errorf("a state or nonce that is not text was logged as an outage:\n%s", logs)
		}
		// The service keeps none either, whoever calls it.
		for _, r := range []*authd.AuthRequest{{State: "\x00"}, {Nonce: "\xff"}} {
			r.ClientID, r.RedirectURI, r.Scopes = "app", rpCallback, []string{"openid"}
			if err := e.svc.SaveAuthRequest(context.Background(), authd.Client{}, r); authd.ErrorCode(err) != authd.EInvalid {
				t.Errorf("SaveAuthRequest(state %q, nonce %q) = %v, want EInvalid", r.State, r.Nonce, err)
			}
		}
	})
}

// TestRequiredPKCE: a confidential client the administrator requires PKCE
// of gets no code without a challenge, and a code it was issued without
// one before is refused at the token endpoint; with PKCE the flow goes on.
// A public client cannot be let off.
func TestRequiredPKCE(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.user("pia@example.org")
		c, secret := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, secret, "offline_access")
		b := e.browser()
		b.get(r.cfg.AuthCodeURL("s")) // no challenge: allowed so far
		b.signIn("pia@example.org", goodPassword)
		before := b.callback()
		if before == nil || before.Get("code") == "" {
			t.Fatalf("a code without PKCE before it was required: %v", before)
		}

		// And one redeemed before the switch, whose reuse after it is still a reuse.
		b.get(r.cfg.AuthCodeURL("s2"))
		redeemed := b.callback()
		if redeemed == nil || redeemed.Get("code") == "" {
			t.Fatalf("a second code without PKCE: %v", redeemed)
		}
		first, err := r.cfg.Exchange(r.ctx, redeemed.Get("code"))
		if err != nil || first.RefreshToken == "" {
			t.Fatalf("the second code: %+v, %v; want a refresh token", first, err)
		}

		if _, err := e.svc.UpdateClient(ctx, authd.Client{}, c.ID, authd.ClientChange{RequirePKCE: new(true)}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.cfg.Exchange(r.ctx, before.Get("code")); err == nil {
			t.Error("a code issued without PKCE was redeemed after PKCE was required")
		}
		if _, err := r.cfg.Exchange(r.ctx, redeemed.Get("code")); err == nil {
			t.Error("a code redeemed before PKCE was required was redeemed again")
		}
		if _, err := r.cfg.TokenSource(r.ctx, &oauth2.Token{RefreshToken: first.RefreshToken}).Token(); err == nil {
			t.Error("the session of a code presented again still refreshes: the reuse went unseen")
		}
		if cb := b.get(r.cfg.AuthCodeURL("s")).callback(); cb == nil || cb.Get("error") != "invalid_request" {
			t.Errorf("an authorization request without PKCE: %v, want invalid_request", cb)
		}
		verifier := oauth2.GenerateVerifier()
		r.exchange(t, r.login(t, b, "pia@example.org", "s", "n", verifier), verifier)

		pub, _ := e.client("spa", authd.ClientPublic, true)
		if _, err := e.svc.UpdateClient(ctx, authd.Client{}, pub.ID, authd.ClientChange{RequirePKCE: new(false)}); authd.ErrorCode(err) != authd.EInvalid {
			t.Errorf("a public client let off PKCE: %v, want EInvalid", err)
		}
		if _, err := e.svc.UpdateClient(ctx, authd.Client{}, "nobody", authd.ClientChange{RequirePKCE: new(true)}); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("an unknown client: %v, want ENotFound", err)
		}
	})
}

// TestLegacyPublicClientNeedsPKCE: a public client whose row predates
// require_pkce (migration 00017 added the column false for every client)
// still gets no code without a PKCE challenge: anyone may present a public
// client's id, so a code without one is a code whoever intercepts it can
// redeem.
func TestLegacyPublicClientNeedsPKCE(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.user("lea@example.org")
		now := e.clock.Now()
		legacy := &authd.OAuthClient{ID: "legacy-spa", Name: "Legacy SPA", Type: authd.ClientPublic,
			RedirectURIs: []string{rpCallback}, PostLogoutRedirectURIs: []string{}, FirstParty: true,
			CreatedAt: now, UpdatedAt: now}
		if err := e.store.CreateClient(ctx, legacy); err != nil {
			t.Fatal(err)
		}
		r := e.rp(legacy, "")
		b := e.browser()
		b.get(r.cfg.AuthCodeURL("s")) // no challenge
		if cb := b.callback(); cb == nil || cb.Get("error") != "invalid_request" {
			b.signIn("lea@example.org", goodPassword)
			t.Errorf("a legacy public client's request without PKCE: %v (then %v), want invalid_request", cb, b.callback())
		}
		verifier := oauth2.GenerateVerifier()
		r.exchange(t, r.login(t, b, "lea@example.org", "s", "n", verifier), verifier)
	})
}

// TestRedirectURIsChangedInPlace: an administrator's change of a client's
// redirect URIs keeps its sessions (a refresh token it holds goes on
// working, as deleting and creating the client again would not), while a
// sign-in under way to a URI removed gets no code (the request-expired
// page), and a code issued to it before is refused at the token endpoint.
// The new URI works at once.
func TestRedirectURIsChangedInPlace(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.user("moved@example.org")
		c, secret := e.client("moving", authd.ClientConfidential, true)
		r := e.rp(c, secret, gooidc.ScopeOfflineAccess)
		b := e.browser()
		verifier := oauth2.GenerateVerifier()
		tok, _ := r.exchange(t, r.login(t, b, "moved@example.org", "s1", "n1", verifier), verifier)
		pending := oauth2.GenerateVerifier()
		code := r.login(t, b, "moved@example.org", "s2", "n2", pending) // issued, not redeemed
		underWay := e.browser()
		underWay.get(r.cfg.AuthCodeURL("s3", oauth2.S256ChallengeOption(verifier)))

		moved := "https://rp.example.org/moved"
		if _, err := e.svc.UpdateClient(ctx, authd.Client{}, c.ID, authd.ClientChange{RedirectURIs: []string{moved}}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.cfg.TokenSource(r.ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
			t.Errorf("a refresh after the change: %v; want the session kept", err)
		}
		if _, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(pending)); err == nil {
			t.Error("a code issued to the removed URI was redeemed")
		}
		underWay.signIn("moved@example.org", goodPassword)
		if cb := underWay.callback(); cb != nil || underWay.last.StatusCode != http.StatusBadRequest ||
			!strings.Contains(underWay.body, "expired or was already used") {
			t.Errorf("a sign-in under way to the removed URI: %d %v; want the request-expired page, nothing sent there",
				underWay.last.StatusCode, cb)
		}
		r.cfg.RedirectURL = moved
		now := oauth2.GenerateVerifier()
		r.exchange(t, r.login(t, e.browser(), "moved@example.org", "s4", "n4", now), now)
	})
}

// TestRedemptionFinishesAfterAHangUp: a code redeemed by a client that has
// hung up (its request's context cancelled, as an HTTP server cancels it
// on a half-close while the answer can still be read) is redeemed, not
// rolled back half-way, and a refused redemption is logged: a client told
// it failed would retry with a code already used, a reuse that ends the
// session it started.
func TestRedemptionFinishesAfterAHangUp(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		alice := e.user("alice@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		b, _ := e.signedInWithIDToken(e.rp(c, cs), "alice@example.org")
		ctx := context.Background()
		sess, _, err := e.svc.BrowserSession(ctx, b.sessionCookie())
		if err != nil {
			t.Fatal(err)
		}
		now := e.clock.Now()
		req := &authd.AuthRequest{ID: authd.NewID(), ClientID: c.ID, RedirectURI: c.RedirectURIs[0],
			Scopes: []string{authd.ScopeOpenID}, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
		if err := e.svc.SaveAuthRequest(ctx, authd.Client{}, req); err != nil {
			t.Fatal(err)
		}
		code, _, err := e.svc.IssueCode(ctx, authd.Client{}, req.ID, sess)
		if err != nil {
			t.Fatal(err)
		}
		gone, hangUp := context.WithCancel(ctx)
		hangUp()
		before := len(e.results(alice))
		if _, err := e.svc.RedeemCode(gone, authd.Client{}, c, code, "https://rp.example.org/elsewhere", ""); authd.ErrorCode(err) != authd.EInvalidToken {
			t.Errorf("a redemption to another redirect_uri, the client gone: %v; want EInvalidToken", err)
		}
		if got := e.results(alice)[before:]; !slices.Equal(got, []string{"oidc_code_redeemed/failure"}) {
			t.Errorf("security log after the refusal, the client gone: %v; want the refusal logged", got)
		}
		grant, err := e.svc.RedeemCode(gone, authd.Client{}, c, code, c.RedirectURIs[0], "")
		if err != nil || grant.Pair.AccessToken == "" {
			t.Fatalf("a redemption whose client hung up: %v; want it redeemed", err)
		}
		if _, err := e.svc.Authenticate(ctx, grant.Pair.AccessToken); err != nil {
			t.Errorf("the redeemed session's access token: %v; want it live", err)
		}
	})
}

// TestLoopbackRedirectOnAnyPort: a native app registered with a loopback IP
// redirect signs in on whatever port it listens on at the time (RFC 8252
// §7.3), and redeems the code with that same URI only; another path, or a
// host written otherwise, is still an unregistered redirect.
func TestLoopbackRedirectOnAnyPort(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("cli@example.org")
		c, _, err := e.svc.CreateClient(context.Background(), authd.Client{}, authd.ClientSpec{ID: "cli", Name: "CLI",
			Type: authd.ClientPublic, RedirectURIs: []string{"http://127.0.0.1/callback"}})
		if err != nil {
			t.Fatal(err)
		}
		at := func(redirect string) *oauth2.Config {
			return &oauth2.Config{ClientID: c.ID, RedirectURL: redirect, Scopes: []string{"openid"},
				Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + oidc.AuthorizePath, TokenURL: e.srv.URL + oidc.TokenPath}}
		}
		for _, bad := range []string{"http://127.0.0.1:54321/callback/", "http://localhost:54321/callback"} {
			if b := e.browser().get(at(bad).AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))); b.last.StatusCode != http.StatusBadRequest ||
				!strings.Contains(b.body, "has not registered") {
				t.Errorf("redirect %s: %d; want the unregistered-redirect page", bad, b.last.StatusCode)
			}
		}
		cfg, verifier := at("http://127.0.0.1:54321/callback"), oauth2.GenerateVerifier()
		b := e.browser()
		b.get(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))).signIn("cli@example.org", goodPassword)
		f := b.form()
		f.Set("decision", "allow")
		b.post(oidc.ConsentPath, f)
		loc, _ := url.Parse(b.last.Header.Get("Location"))
		if loc == nil || loc.Host != "127.0.0.1:54321" || loc.Path != "/callback" || loc.Query().Get("code") == "" {
			t.Fatalf("the code went to %q; want the app's port", b.last.Header.Get("Location"))
		}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, e.srv.Client())
		if _, err := at("http://127.0.0.1:54322/callback").Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier)); err == nil {
			t.Error("the code redeemed with another port than its request's")
		}
		// The refused attempt above did not spend the code: a wrong
		// redirect_uri is checked before the code is used.
		if tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier)); err != nil || tok.AccessToken == "" {
			t.Errorf("the code redeemed with its request's URI: %v", err)
		}
	})
}

// TestCookiesAndPageHeaders: every cookie the hosted pages set (the CSRF
// seed on the authorization request, the session on sign-in) is HttpOnly,
// SameSite=Lax and Path=/ — no page script reads the session, and a
// cross-site POST carries neither — and every page (the sign-in page, an
// error page) may not be framed (frame-ancestors 'none', against
// clickjacking the sign-in and consent forms) nor cached (no-store).
func TestCookiesAndPageHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.user("hal@example.org")
	c, cs := e.client("app", authd.ClientConfidential, true)
	r := e.rp(c, cs)
	b := e.browser()
	b.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	checkCookies := func(step string, want string) {
		t.Helper()
		var names []string
		for _, ck := range b.last.Cookies() {
			names = append(names, ck.Name)
			if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" {
				t.Errorf("%s: cookie %s HttpOnly %v SameSite %v Path %q; want HttpOnly, SameSite=Lax, Path=/",
					step, ck.Name, ck.HttpOnly, ck.SameSite, ck.Path)
			}
		}
		if !slices.Contains(names, want) {
			t.Errorf("%s: cookies %v; want %s among them", step, names, want)
		}
	}
	checkPage := func(step string) {
		t.Helper()
		csp := b.last.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") ||
			b.last.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d, CSP %q, Cache-Control %q; want frame-ancestors 'none', default-src 'none' and no-store",
				step, b.last.StatusCode, csp, b.last.Header.Get("Cache-Control"))
		}
	}

	b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if b.last.StatusCode != http.StatusSeeOther {
		t.Fatalf("authorize: %d, want a 303 to the sign-in page", b.last.StatusCode)
	}
	checkCookies("authorize", "authd_csrf")
	b.get(e.srv.URL + b.last.Header.Get("Location"))
	if !b.onSignInPage() {
		t.Fatalf("no sign-in page: %d %s", b.last.StatusCode, b.body)
	}
	checkPage("sign-in page")
	b.signIn("hal@example.org", goodPassword)
	if b.last.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d, want a 303", b.last.StatusCode)
	}
	checkCookies("sign-in", "authd_session")
	b.get(e.srv.URL + oidc.SignInPath + "?request=" + uuid.NewString())
	checkPage("error page")
}
