package oidc_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/htmlform"
	"github.com/authd/authd/oidc"
	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// proxyPath is the path of the public URL in TestSignInUnderAPublicPath,
// which its proxy strips.
const proxyPath = "/idp"

// TestSignInUnderAPublicPath: with a public URL that has a path, behind a
// proxy that strips it, a browser that goes only where the pages and
// redirects send it signs in (password, second factor, consent) and back
// to the relying party, signs up, asks for a reset link and signs out;
// the passkey button's script reaches the API. Every address a page or a
// redirect gives is under the path: one at the root misses the proxy.
func TestSignInUnderAPublicPath(t *testing.T) {
	t.Parallel()
	front := httptest.NewUnstartedServer(nil)
	public := "http://" + front.Listener.Addr().String() + proxyPath
	e := newEnvConfig(t, openSQLite(t), func(c *authd.Config) {
		c.WebAuthnRPID, c.WebAuthnOrigins = rpID, []string{rpOrigin}
	}, func(o *oidc.Options) { o.PublicURL, o.Issuer = public+"/", public })
	front.Config.Handler = http.StripPrefix(proxyPath, e.srv.Config.Handler)
	front.Start()
	t.Cleanup(front.Close)

	secret := e.mfaUser("pia@example.org")
	c, cs := e.client("third", authd.ClientConfidential, false)
	ctx := gooidc.ClientContext(context.Background(), front.Client())
	p, err := gooidc.NewProvider(ctx, public)
	if err != nil {
		t.Fatalf("discovery of %s: %v", public, err)
	}
	r := &rp{ctx: ctx, provider: p, verifier: p.Verifier(&gooidc.Config{ClientID: c.ID, Now: e.clock.Now}), issuer: public,
		cfg: oauth2.Config{ClientID: c.ID, ClientSecret: cs, Endpoint: p.Endpoint(), RedirectURL: rpCallback,
			Scopes: []string{gooidc.ScopeOpenID, "email"}}}
	verifier := oauth2.GenerateVerifier()
	b := htmlform.NewBrowser(t, strings.TrimPrefix(front.URL, "http://"), proxyPath)

	// The authorization request as a client's form POST: a 303 to its GET,
	// then to the sign-in page.
	authorize, _ := url.Parse(r.cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), gooidc.Nonce("n")))
	query := authorize.Query()
	authorize.RawQuery = ""
	req, _ := http.NewRequest("POST", authorize.String(), strings.NewReader(query.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	b.Do(req)
	if b.Last.StatusCode != http.StatusOK {
		t.Fatalf("the authorization request: %d at %s; want the sign-in page: %s", b.Last.StatusCode, b.Last.Request.URL, b.Body)
	}
	signIn, signInURL := b.Page, b.Last.Request.URL.String()

	// The passkey button's script asks the API for its options where the
	// page says.
	begin, err := b.Page.Fetched(nil)
	if err != nil {
		t.Fatal(err)
	}
	if begin.Path != proxyPath+"/v1/auth/passkey/begin" {
		t.Errorf("the passkey script fetches %s; want it under %s", begin, proxyPath)
	} else if resp, err := front.Client().Post(begin.String(), "application/json", strings.NewReader("{}")); err != nil ||
		resp.StatusCode != http.StatusOK {
		t.Errorf("the passkey script's request: %v, %v; want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	if signIn.FormByID("passkey-form") == nil {
		t.Errorf("no passkey form on the sign-in page: %s", b.Body)
	}

	// Create an account, from the sign-in page's link; its notice's links.
	b.Get(b.Link("/signup")).Submit(b.Form("password"), "email", "new@example.org", "password", goodPassword, "consent", "yes")
	if b.Last.StatusCode != http.StatusOK || !strings.Contains(b.Body, "Check your email") {
		t.Fatalf("sign-up: %d %s", b.Last.StatusCode, b.Body)
	}
	b.Get(b.Link("/signin/verify-email")).Submit(b.Form("email"), "email", "new@example.org")
	if b.Last.StatusCode != http.StatusOK || !strings.Contains(b.Body, "Check your email") {
		t.Errorf("a new verification link: %d %s", b.Last.StatusCode, b.Body)
	}
	b.Get(b.Link("/signin"))
	if b.Last.StatusCode != http.StatusOK || b.Page.FormWith("password") == nil {
		t.Errorf("back to sign in: %d %s", b.Last.StatusCode, b.Body)
	}
	// Forgot the password, from the sign-in page's link.
	b.Get(signInURL).Get(b.Link("/signin/forgot")).Submit(b.Form("email"), "email", "pia@example.org")
	if b.Last.StatusCode != http.StatusOK || !strings.Contains(b.Body, "Check your email") {
		t.Errorf("forgot password: %d %s", b.Last.StatusCode, b.Body)
	}
	if !strings.HasSuffix(b.Get(b.Link("/signin")).Last.Request.URL.Path, "/signin") {
		t.Errorf("back to sign in from the forgot-password page: %s", b.Last.Request.URL)
	}

	// The new account's sign-in, refused until its address is verified,
	// offers to send the link again.
	b.Submit(b.Form("password"), "email", "new@example.org", "password", goodPassword)
	if b.Page == nil || b.Page.FormWith("email") == nil || b.Page.FormWith("email").Has("password") ||
		b.Page.FormWith("email").Action.Path != proxyPath+oidc.ResendPath {
		t.Errorf("an unverified sign-in: %d %s; want the form that sends the link again, under %s", b.Last.StatusCode, b.Body, proxyPath)
	}

	// Password, second factor, consent, and back to the relying party.
	b.Submit(b.Form("password"), "email", "pia@example.org", "password", goodPassword)
	b.Submit(b.Form("code"), "code", totpAt(t, secret, e.clock.Now()))
	if b.Page == nil || b.Page.FormWith("request") == nil || !strings.Contains(b.Body, "Allow access?") {
		t.Fatalf("after the second factor: %d %s; want the consent page", b.Last.StatusCode, b.Body)
	}
	b.Submit(b.Form("request"), "decision", "allow")
	cb, _ := url.Parse(b.Last.Header.Get("Location"))
	if b.Last.StatusCode != http.StatusFound || cb == nil || !strings.HasPrefix(cb.String(), rpCallback+"?") ||
		cb.Query().Get("state") != "st" || cb.Query().Get("iss") != public {
		t.Fatalf("after consent: %d to %q; want the callback with the state and iss %s", b.Last.StatusCode, b.Last.Header.Get("Location"), public)
	}
	tok, idt := r.exchange(t, cb.Query().Get("code"), verifier)
	if idt.Issuer != public {
		t.Errorf("the ID token's iss %q, want %q", idt.Issuer, public)
	}

	// Sign out, from the relying party's request to the page's form.
	var claims struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := p.Claims(&claims); err != nil || claims.EndSession != public+oidc.LogoutPath {
		t.Fatalf("discovery's end_session_endpoint %q (%v); want %s", claims.EndSession, err, public+oidc.LogoutPath)
	}
	q := url.Values{"id_token_hint": {tok.Extra("id_token").(string)}, "post_logout_redirect_uri": {"https://rp.example.org/bye"}}
	b.Get(claims.EndSession + "?" + q.Encode()).Submit(b.Form("csrf"))
	if loc := b.Last.Header.Get("Location"); b.Last.StatusCode != http.StatusSeeOther || loc != "https://rp.example.org/bye" {
		t.Errorf("sign-out: %d to %q; want a 303 to the relying party", b.Last.StatusCode, loc)
	}
}
