package oidc_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/oidc"
	"github.com/authd/authd/token"
	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// signedInWithIDToken signs email in on a new browser through the client's
// flow and returns the browser and the ID token the relying party keeps.
func (e *env) signedInWithIDToken(r *rp, email string) (*browser, *oauth2.Token) {
	e.t.Helper()
	b := e.browser()
	verifier := oauth2.GenerateVerifier()
	tok, err := r.cfg.Exchange(r.ctx, r.login(e.t, b, email, "s", "n", verifier), oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatal(err)
	}
	return b, tok
}

// rotateIDKeysTwice runs `authd keys rotate` on the ID-token keys twice, a
// day apart and then as late as the second run deletes the first key: the
// key that signed every ID token issued so far is gone, as after an
// operator's routine rotations while a relying party keeps its ID token.
func (e *env) rotateIDKeysTwice(idToken string) {
	e.t.Helper()
	for _, d := range []time.Duration{24 * time.Hour, token.SigningDelay + token.Leeway + token.MaxAccessTokenTTL + time.Minute} {
		e.clock.Advance(d)
		if _, _, err := token.Rotate(e.keysDir, token.IDTokenAlg, e.clock.Now()); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.idKeys.Reload(); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.idKeys.ParseIDHint(idToken, e.srv.URL); err == nil {
		e.t.Fatal("the ID token still verifies after two rotations; the test needs its key deleted")
	}
}

// logoutURL is the end-session endpoint with params.
func (e *env) logoutURL(params url.Values) string {
	return e.srv.URL + oidc.LogoutPath + "?" + params.Encode()
}

// signedIn reports whether the browser is still signed in: an interactive
// authorization request answers with a code, not the sign-in page.
func (b *browser) signedIn(r *rp) bool {
	b.t.Helper()
	b.get(r.cfg.AuthCodeURL("again", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	cb := b.callback()
	return cb != nil && cb.Get("code") != ""
}

// TestLogoutWithAHintWhoseKeyWasRotatedAway: an ID token whose signing key
// rotation has deleted is ignored as id_token_hint, as if absent. The
// browser can still sign out (confirmation page, then the POST); with no
// client_id the post_logout_redirect_uri cannot be checked, so it and its
// state are dropped and the sign-out ends on the "Signed out" page; with a
// client_id the registered address is used. An address the named client
// has not registered, or that an unknown client names, is dropped with its
// state and said on the confirmation page: the browser still signs out,
// onto authd's page. A hint verified for another client gets the error
// page.
func TestLogoutWithAHintWhoseKeyWasRotatedAway(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("rot@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b, tok := e.signedInWithIDToken(r, "rot@example.org")
		other, _ := e.signedInWithIDToken(r, "rot@example.org")
		e.rotateIDKeysTwice(tok.Extra("id_token").(string))

		stale := url.Values{"id_token_hint": {tok.Extra("id_token").(string)},
			"post_logout_redirect_uri": {"https://rp.example.org/bye"}, "state": {"bye-state"}}
		b.get(e.logoutURL(stale))
		if b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, `name="csrf"`) ||
			!strings.Contains(b.body, "cannot confirm that the address") {
			t.Fatalf("logout with a hint whose key was deleted: %d; want the confirmation page saying the address is dropped",
				b.last.StatusCode)
		}
		if f := b.form(); f.Get("post_logout_redirect_uri") != "" || f.Get("state") != "" || f.Get("id_token_hint") != "" {
			t.Errorf("the confirmation page carries what could not be checked: %v", f)
		}
		b.post(oidc.LogoutPath, b.form())
		if b.last.StatusCode != http.StatusOK || b.last.Header.Get("Location") != "" || !strings.Contains(b.body, "Signed out") {
			t.Errorf("after the POST: %d to %q; want the Signed out page", b.last.StatusCode, b.last.Header.Get("Location"))
		}
		if b.signedIn(r) {
			t.Error("the browser session survived its sign-out")
		}

		// The POST alone (a form kept from before the rotation) drops the address too.
		f := url.Values{"csrf": {other.get(e.logoutURL(url.Values{})).form().Get("csrf")}}
		for k, v := range stale {
			f[k] = v
		}
		if other.post(oidc.LogoutPath, f); other.last.StatusCode != http.StatusOK || other.last.Header.Get("Location") != "" {
			t.Errorf("POST with the stale hint and an address: %d to %q; want the Signed out page",
				other.last.StatusCode, other.last.Header.Get("Location"))
		}
		if other.signedIn(r) {
			t.Error("the second browser's session survived its sign-out")
		}

		// With client_id the address can be checked: the registered one is used.
		withClient := url.Values{"client_id": {"app"}}
		for k, v := range stale {
			withClient[k] = v
		}
		third, _ := e.signedInWithIDToken(r, "rot@example.org")
		third.get(e.logoutURL(withClient))
		third.post(oidc.LogoutPath, third.form())
		if loc := third.last.Header.Get("Location"); third.last.StatusCode != http.StatusSeeOther || loc != "https://rp.example.org/bye?state=bye-state" {
			t.Errorf("stale hint with client_id: %d to %q; want the registered address", third.last.StatusCode, loc)
		}
		// An address the client has not registered, or an unknown client's:
		// no redirect, but the sign-out goes on.
		unregistered := url.Values{"client_id": {"app"}, "post_logout_redirect_uri": {"https://evil.example.org/"}, "state": {"s"}}
		unknown := url.Values{"client_id": {"nope"}, "post_logout_redirect_uri": {"https://rp.example.org/bye"}}
		for name, q := range map[string]url.Values{"an unregistered address": unregistered, "an unknown client_id": unknown} {
			b, _ := e.signedInWithIDToken(r, "rot@example.org")
			b.get(e.logoutURL(q))
			if b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, "cannot confirm that the address") {
				t.Fatalf("%s: %d; want the confirmation page saying the address is dropped", name, b.last.StatusCode)
			}
			if f := b.form(); f.Get("post_logout_redirect_uri") != "" || f.Get("state") != "" {
				t.Errorf("%s: the confirmation page carries the dropped address: %v", name, f)
			}
			if b.post(oidc.LogoutPath, b.form()); b.last.StatusCode != http.StatusOK || b.last.Header.Get("Location") != "" ||
				!strings.Contains(b.body, "Signed out") {
				t.Errorf("%s: after the POST %d to %q; want the Signed out page", name, b.last.StatusCode, b.last.Header.Get("Location"))
			}
			if b.signedIn(r) {
				t.Errorf("%s: the browser session survived its sign-out", name)
			}
			// The POST alone, with the address, does not redirect either.
			b, _ = e.signedInWithIDToken(r, "rot@example.org")
			f := url.Values{"csrf": {b.get(e.logoutURL(url.Values{})).form().Get("csrf")}}
			for k, v := range q {
				f[k] = v
			}
			if b.post(oidc.LogoutPath, f); b.last.StatusCode != http.StatusOK || b.last.Header.Get("Location") != "" || b.signedIn(r) {
				t.Errorf("%s: POST alone %d to %q; want signed out on authd's page", name, b.last.StatusCode, b.last.Header.Get("Location"))
			}
		}

		// A parameter given twice: which one is meant cannot be told.
		if third.get(e.logoutURL(url.Values{"client_id": {"nope", "app"}})); third.last.StatusCode != http.StatusBadRequest ||
			!strings.Contains(third.body, "repeated") {
			t.Errorf("client_id given twice: %d; want the error page", third.last.StatusCode)
		}

		// A hint that verifies but names another client than client_id.
		e.client("other", authd.ClientConfidential, true)
		_, fresh := e.signedInWithIDToken(r, "rot@example.org")
		mismatch := url.Values{"id_token_hint": {fresh.Extra("id_token").(string)}, "client_id": {"other"}}
		if third.get(e.logoutURL(mismatch)); third.last.StatusCode != http.StatusBadRequest {
			t.Errorf("a verified hint for another client than client_id: %d; want the error page", third.last.StatusCode)
		}
	})
}

// authorizeWith sends the browser to the client's authorization endpoint
// with extra parameters.
func (b *browser) authorizeWith(r *rp, params ...string) *browser {
	b.t.Helper()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(oauth2.GenerateVerifier())}
	for i := 0; i+1 < len(params); i += 2 {
		opts = append(opts, oauth2.SetAuthURLParam(params[i], params[i+1]))
	}
	return b.get(r.cfg.AuthCodeURL("s2", opts...))
}

// onSignInPage reports whether the last answer is the sign-in page.
func (b *browser) onSignInPage() bool {
	return b.callback() == nil && strings.Contains(b.body, `name="password"`)
}

// TestAuthorizeHonoursIDTokenHint: an id_token_hint names the user the
// relying party expects (OIDC Core §3.1.2.1). A browser signed in as Bob
// answers Alice's hint with login_required for prompt=none and with the
// sign-in page otherwise, never with a code for Bob, nor after Bob signs in
// there (login_required, the request ended); a hint that does not verify
// admits no browser, but the sub it claims still decides who finishes;
// junk is invalid_request; Alice's own hint, expired too, gets her code as
// before; a hint issued to another client is invalid_request.
func TestAuthorizeHonoursIDTokenHint(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("alice@example.org")
		e.user("bob@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		alice, tok := e.signedInWithIDToken(r, "alice@example.org")
		hint := tok.Extra("id_token").(string)
		bob, _ := e.signedInWithIDToken(r, "bob@example.org")
		e.clock.Advance(time.Second)

		if cb := bob.authorizeWith(r, "prompt", "none", "id_token_hint", hint).callback(); cb == nil || cb.Get("error") != "login_required" ||
			!strings.Contains(cb.Get("error_description"), "not one id_token_hint names") {
			t.Errorf("prompt=none with Alice's hint in Bob's browser: %d %v; want error=login_required, saying why",
				bob.last.StatusCode, cb)
		}
		if !bob.authorizeWith(r, "id_token_hint", hint).onSignInPage() {
			t.Errorf("Alice's hint in Bob's browser: %d %v; want the sign-in page", bob.last.StatusCode, bob.callback())
		}
		// Bob signs in again there, as himself: the application asked for
		// Alice, and gets no code (nor a fresh auth_time) for Bob; the
		// request ends with its answer, and is logged.
		request := bob.form().Get("request")
		if cb := bob.signIn("bob@example.org", goodPassword).callback(); cb == nil || cb.Get("error") != "login_required" ||
			cb.Get("code") != "" {
			t.Errorf("Bob signing in for Alice's hint: %d %v; want error=login_required", bob.last.StatusCode, cb)
		}
		if bob.get(e.srv.URL + oidc.ResumePath + "?request=" + request); bob.last.StatusCode != http.StatusBadRequest ||
			!strings.Contains(bob.body, "Request expired") {
			t.Errorf("the refused request resumed: %d %v", bob.last.StatusCode, bob.callback())
		}
		if !slices.Contains(e.results(e.userByEmail("bob@example.org")), "oidc_authorized/failure") {
			t.Errorf("the refusal is not logged: %v", e.results(e.userByEmail("bob@example.org")))
		}
		// Alice signs in there: her code.
		e.clock.Advance(time.Second)
		if cb := bob.authorizeWith(r, "id_token_hint", hint).signIn("alice@example.org", goodPassword).callback(); cb == nil ||
			cb.Get("code") == "" {
			t.Errorf("Alice signing in for her hint in Bob's browser: %d %v; want a code", bob.last.StatusCode, cb)
		}

		forged := hint[:len(hint)-4] + "AAAA"
		if cb := alice.authorizeWith(r, "prompt", "none", "id_token_hint", forged).callback(); cb == nil || cb.Get("error") != "login_required" {
			t.Errorf("prompt=none with a hint that does not verify: %v; want error=login_required", cb)
		}
		if !alice.authorizeWith(r, "id_token_hint", forged).onSignInPage() {
			t.Errorf("a hint that does not verify: %d %v; want the sign-in page", alice.last.StatusCode, alice.callback())
		}
		// Unverified, the sub it claims still decides who may finish: not
		// Bob, signing in on Alice's browser.
		e.clock.Advance(time.Second)
		if cb := alice.signIn("bob@example.org", goodPassword).callback(); cb == nil || cb.Get("error") != "login_required" {
			t.Errorf("Bob signing in for a hint that claims Alice but does not verify: %d %v; want login_required",
				alice.last.StatusCode, cb)
		}
		e.clock.Advance(time.Second)
		if cb := alice.authorizeWith(r, "id_token_hint", forged).signIn("alice@example.org", goodPassword).callback(); cb == nil ||
			cb.Get("code") == "" {
			t.Errorf("Alice signing in for a hint that claims her but does not verify: %d %v; want a code",
				alice.last.StatusCode, cb)
		}
		if cb := alice.authorizeWith(r, "id_token_hint", "junk").callback(); cb == nil || cb.Get("error") != "invalid_request" {
			t.Errorf("a hint that is no ID token: %v; want error=invalid_request", cb)
		}

		e.clock.Advance(time.Hour) // the hint has expired: it still names Alice
		if cb := alice.authorizeWith(r, "prompt", "none", "id_token_hint", hint).callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("prompt=none with Alice's own (expired) hint: %v; want a code", cb)
		}
		if cb := alice.authorizeWith(r, "id_token_hint", hint).callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("Alice's own hint: %d %v; want a code", alice.last.StatusCode, cb)
		}

		oc, ocs := e.client("other", authd.ClientConfidential, true)
		if cb := alice.authorizeWith(e.rp(oc, ocs), "id_token_hint", hint).callback(); cb == nil || cb.Get("error") != "invalid_request" {
			t.Errorf("a hint issued to another client: %v; want error=invalid_request", cb)
		}
	})
}

// TestIssueCodeKeepsToTheHint: the service itself refuses a code for a
// request whose id_token_hint names another user than the browser
// session's (the provider asks first; a page that skipped the question
// must not get a code either), and gives it to the hint's user.
func TestIssueCodeKeepsToTheHint(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		alice := e.user("alice@example.org")
		e.user("bob@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		bob, _ := e.signedInWithIDToken(r, "bob@example.org")
		ctx := context.Background()
		sess, _, err := e.svc.BrowserSession(ctx, bob.sessionCookie())
		if err != nil {
			t.Fatal(err)
		}
		now := e.clock.Now()
		req := &authd.AuthRequest{ID: authd.NewID(), ClientID: c.ID, RedirectURI: c.RedirectURIs[0],
			Scopes: []string{authd.ScopeOpenID}, HintSubject: alice.ID, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
		if err := e.svc.SaveAuthRequest(ctx, authd.Client{}, req); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.svc.IssueCode(ctx, authd.Client{}, req.ID, sess); !errors.Is(err, authd.ErrNotHinted) {
			t.Errorf("a code for Bob's session on a request for Alice: %v, want ErrNotHinted", err)
		}
		req.HintSubject = sess.UserID
		req.ID = authd.NewID()
		if err := e.svc.SaveAuthRequest(ctx, authd.Client{}, req); err != nil {
			t.Fatal(err)
		}
		if code, _, err := e.svc.IssueCode(ctx, authd.Client{}, req.ID, sess); err != nil || code == "" {
			t.Errorf("a code for Bob's session on a request for Bob: %q, %v", code, err)
		}
	})
}

// TestHintMismatchAsksNoConsent: a client that needs the user's consent
// does not get the consent page shown to another user than its hint's:
// the request ends with login_required at once.
func TestHintMismatchAsksNoConsent(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("alice@example.org")
		e.user("bob@example.org")
		c, cs := e.client("third", authd.ClientConfidential, false)
		r := e.rp(c, cs)
		b := e.browser()
		verifier := oauth2.GenerateVerifier()
		b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), gooidc.Nonce("n"))).signIn("alice@example.org", goodPassword)
		consent := b.form()
		consent.Set("decision", "allow")
		b.post(oidc.ConsentPath, consent)
		tok, err := r.cfg.Exchange(r.ctx, b.callback().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		hint := tok.Extra("id_token").(string)
		bob := e.browser()
		e.clock.Advance(time.Second)
		bob.authorizeWith(r, "id_token_hint", hint).signIn("bob@example.org", goodPassword)
		if cb := bob.callback(); cb == nil || cb.Get("error") != "login_required" || strings.Contains(bob.body, `name="decision"`) {
			t.Errorf("Bob signing in for Alice's hint at a client that asks consent: %d %v %s; want login_required, "+
				"no consent page", bob.last.StatusCode, cb, bob.body)
		}
	})
}

// TestIDTokenEndsWithItsSession: an ID token expires no later than the
// access token it comes with, which ends with its session (here the idle
// lifetime, under the access tokens' own): a relying party that takes its
// exp for its own session's end keeps no one signed in past authd's.
func TestIDTokenEndsWithItsSession(t *testing.T) {
	t.Parallel()
	e := newEnvConfig(t, openSQLite(t), func(c *authd.Config) { c.RefreshTokenTTL = 20 * time.Second })
	e.user("brief@example.org")
	c, cs := e.client("app", authd.ClientConfidential, true)
	_, tok := e.signedInWithIDToken(e.rp(c, cs), "brief@example.org")
	id := jwtPayload(t, tok.Extra("id_token").(string))
	access := jwtPayload(t, tok.AccessToken)
	if life := id["exp"].(float64) - id["iat"].(float64); life != 20 || access["exp"] != id["exp"] {
		t.Errorf("the ID token lives %v s, to %v (the access token to %v); want 20 s, as the session's idle lifetime",
			life, id["exp"], access["exp"])
	}
}
