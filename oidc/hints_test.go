package oidc_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/oidc"
	"github.com/authd/authd/token"
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
// has not registered, and a hint verified for another client, still get
// the error page.
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
		if b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, `name="csrf"`) {
			t.Fatalf("logout with a hint whose key was deleted: %d; want the confirmation page", b.last.StatusCode)
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
		withClient.Set("post_logout_redirect_uri", "https://evil.example.org/")
		if third.get(e.logoutURL(withClient)); third.last.StatusCode != http.StatusBadRequest {
			t.Errorf("stale hint with client_id and an unregistered address: %d; want the error page", third.last.StatusCode)
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
