package oidc_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
	"github.com/authd/authd/oidc"
	"github.com/authd/authd/storetest"
	"github.com/authd/authd/token"
	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/uuid"
	"golang.org/x/oauth2"
)

const rpCallback = "https://rp.example.org/callback"

// nonceRE matches a page's CSP nonce, which differs in every answer.
var nonceRE = regexp.MustCompile(`nonce="[^"]*"`)

// rp is a relying party built from go-oidc and x/oauth2, as an application
// would configure it: discovery, then the code flow with PKCE.
type rp struct {
	cfg      oauth2.Config
	provider *gooidc.Provider
	verifier *gooidc.IDTokenVerifier
	ctx      context.Context
	issuer   string // the answers' iss
}

func (e *env) rp(c *authd.OAuthClient, secret string, scopes ...string) *rp {
	e.t.Helper()
	ctx := gooidc.ClientContext(context.Background(), e.srv.Client())
	p, err := gooidc.NewProvider(ctx, e.srv.URL)
	if err != nil {
		e.t.Fatalf("discovery: %v", err)
	}
	return &rp{ctx: ctx, provider: p, verifier: p.Verifier(&gooidc.Config{ClientID: c.ID, Now: e.clock.Now}), issuer: e.srv.URL,
		cfg: oauth2.Config{ClientID: c.ID, ClientSecret: secret, Endpoint: p.Endpoint(), RedirectURL: rpCallback,
			Scopes: append([]string{gooidc.ScopeOpenID}, scopes...)}}
}

func (e *env) client(name string, typ authd.ClientType, firstParty bool) (*authd.OAuthClient, string) {
	e.t.Helper()
	c, secret, err := e.svc.CreateClient(context.Background(), authd.Client{}, authd.ClientSpec{ID: name, Name: name,
		Type: typ, RedirectURIs: []string{rpCallback}, PostLogoutRedirectURIs: []string{"https://rp.example.org/bye"},
		FirstParty: firstParty})
	if err != nil {
		e.t.Fatal(err)
	}
	return c, secret
}

// exchange redeems code and returns the tokens and the ID token, which
// go-oidc verified.
func (r *rp) exchange(t *testing.T, code, verifier string) (*oauth2.Token, *gooidc.IDToken) {
	t.Helper()
	tok, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.verifier.Verify(r.ctx, raw)
	if err != nil {
		t.Fatalf("go-oidc refused the ID token: %v", err)
	}
	return tok, idt
}

// login runs the browser through the flow up to the callback and returns
// the code; the state must come back as sent.
func (r *rp) login(t *testing.T, b *browser, email, state, nonce, verifier string) string {
	t.Helper()
	b.get(r.cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), gooidc.Nonce(nonce)))
	if cb := b.callback(); cb == nil {
		b.signIn(email, goodPassword)
	}
	cb := b.callback()
	if cb == nil {
		t.Fatalf("no redirect to the relying party: %d %s", b.last.StatusCode, b.body)
	}
	if cb.Get("state") != state || cb.Get("iss") != r.issuer || cb.Get("code") == "" {
		t.Fatalf("callback %v; want the code, state %q and iss %q", cb, state, r.issuer)
	}
	return cb.Get("code")
}

func TestCodeFlowWithGoOIDC(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		u := e.user("olive@example.org")
		c, secret := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, secret, gooidc.ScopeOfflineAccess, "email")

		// Discovery says what the README promises.
		var meta struct {
			Issuer  string   `json:"issuer"`
			Algs    []string `json:"id_token_signing_alg_values_supported"`
			PKCE    []string `json:"code_challenge_methods_supported"`
			EndSess string   `json:"end_session_endpoint"`
			Iss     bool     `json:"authorization_response_iss_parameter_supported"`
			JWKS    string   `json:"jwks_uri"`
		}
		if err := r.provider.Claims(&meta); err != nil || meta.Issuer != e.srv.URL || !slices.Equal(meta.Algs, []string{"RS256"}) ||
			!slices.Equal(meta.PKCE, []string{"S256"}) || !meta.Iss || meta.EndSess != e.srv.URL+oidc.LogoutPath ||
			meta.JWKS != e.srv.URL+"/.well-known/jwks.json" {
			t.Errorf("discovery %+v, %v", meta, err)
		}

		b := e.browser()
		verifier := oauth2.GenerateVerifier()
		code := r.login(t, b, "olive@example.org", "st-123", "n-456", verifier)
		tok, idt := r.exchange(t, code, verifier)
		var claims struct {
			Email    string   `json:"email"`
			Verified bool     `json:"email_verified"`
			AuthTime int64    `json:"auth_time"`
			AMR      []string `json:"amr"`
			SID      string   `json:"sid"`
		}
		if err := idt.Claims(&claims); err != nil {
			t.Fatal(err)
		}
		if idt.Subject != u.ID.String() || idt.Nonce != "n-456" || claims.Email != "olive@example.org" || !claims.Verified ||
			claims.AuthTime != e.clock.Now().Unix() || !slices.Equal(claims.AMR, []string{"pwd"}) || claims.SID == "" {
			t.Errorf("ID token: sub %s nonce %s claims %+v", idt.Subject, idt.Nonce, claims)
		}
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			t.Errorf("at_hash: %v", err)
		}
		// The access token is authd's own kind, live for resource servers,
		// and says whose it is; the account API refuses it (a client the
		// user let "know who you are" must not manage the account).
		if got := e.me(tok.AccessToken); got != http.StatusOK {
			t.Errorf("introspection of the OpenID access token: %d", got)
		}
		if got := e.accountAPI(tok.AccessToken); got != http.StatusUnauthorized {
			t.Errorf("/v1/users/me with a client's access token: %d, want 401", got)
		}
		for _, path := range []string{"/v1/users/me/export", "/v1/users/me/sessions", "/v1/users/me/consents",
			"/v1/users/me?bogus=1"} { // refused as a client's token before any word on the query
			if got, _ := e.call("GET", path, tok.AccessToken); got != http.StatusUnauthorized {
				t.Errorf("GET %s with a client's access token: %d, want 401", path, got)
			}
		}
		if got, _ := e.call("POST", "/v1/auth/logout-all", tok.AccessToken); got != http.StatusUnauthorized {
			t.Errorf("logout-all with a client's access token: %d, want 401", got)
		}
		if at := jwtPayload(t, tok.AccessToken); at["client_id"] != c.ID || at["scope"] != "openid email offline_access" {
			t.Errorf("access token claims client_id %v scope %v; want %s and the granted scopes", at["client_id"], at["scope"], c.ID)
		}
		// Introspection tells a resource server whose token it is and what
		// it may do (RFC 7662 client_id and scope).
		if in := e.introspect(tok.AccessToken); in["client_id"] != c.ID || in["scope"] != "openid email offline_access" {
			t.Errorf("introspection of the client's access token: %v; want client_id %s and the granted scopes", in, c.ID)
		}
		a, err := e.svc.Authenticate(context.Background(), tok.AccessToken)
		if err != nil || a.SessionID.String() != claims.SID {
			t.Errorf("access token claims %+v, %v; want the ID token's sid", a, err)
		}
		info, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok))
		if err != nil || info.Subject != u.ID.String() || info.Email != "olive@example.org" || !info.EmailVerified {
			t.Errorf("userinfo %+v, %v", info, err)
		}

		// Refresh rotates with the JSON API's rules.
		e.clock.Advance(time.Minute)
		tok2, err := r.cfg.TokenSource(r.ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if err != nil || tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
			t.Fatalf("refresh: %+v, %v", tok2, err)
		}
		if got := e.jsonRefresh(tok2.RefreshToken); got != http.StatusUnauthorized {
			t.Errorf("/v1/auth/refresh with a client's refresh token: %d, want 401", got)
		}
		e.clock.Advance(time.Minute) // past the grace window
		if _, err := r.cfg.TokenSource(r.ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
			t.Fatal("the rotated refresh token worked again")
		}
		if got := e.me(tok2.AccessToken); got != http.StatusUnauthorized {
			t.Errorf("after reuse, the session's access token answers %d; want 401", got)
		}
		if _, err := r.cfg.TokenSource(r.ctx, &oauth2.Token{RefreshToken: tok2.RefreshToken}).Token(); err == nil {
			t.Error("after reuse, the session's newest refresh token still works")
		}

		// The browser session lives on: a second sign-in needs no password.
		verifier = oauth2.GenerateVerifier()
		b.get(r.cfg.AuthCodeURL("again", oauth2.S256ChallengeOption(verifier)))
		if b.callback() == nil {
			t.Fatalf("a signed-in browser was asked to sign in again: %d %s", b.last.StatusCode, b.body)
		}
		events := e.events(u)
		for _, want := range []string{"login_success", "oidc_authorized", "oidc_code_redeemed", "token_refreshed", "refresh_token_reuse"} {
			if !slices.Contains(events, want) {
				t.Errorf("security log %v lacks %s", events, want)
			}
		}
		if strings.Contains(e.logText(), secret) || strings.Contains(e.logText(), code) {
			t.Error("a client secret or code reached the log")
		}
	})
}

func TestCodeReuseRevokesItsTokens(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("remy@example.org")
		c, secret := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, secret, gooidc.ScopeOfflineAccess)
		verifier := oauth2.GenerateVerifier()
		code := r.login(t, e.browser(), "remy@example.org", "s", "n", verifier)
		tok, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(verifier)); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("second exchange of a code: %v; want invalid_grant", err)
		}
		if got := e.me(tok.AccessToken); got != http.StatusUnauthorized {
			t.Errorf("the first exchange's access token answers %d after the code's reuse; want 401", got)
		}
		if _, err := r.cfg.TokenSource(r.ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
			t.Error("the first exchange's refresh token still works after the code's reuse")
		}
		if ev := e.events(e.userByEmail("remy@example.org")); !slices.Contains(ev, "oidc_code_reuse") {
			t.Errorf("no oidc_code_reuse event: %v", ev)
		}
	})
}

// TestCodeReplayWithoutProofEndsNothing: a used code of a public client
// leaks (browser history, an access log). Replayed without the PKCE
// verifier or with another redirect URI it is refused as any bad code,
// and the session its redemption started goes on: only whoever could have
// redeemed it learns of the reuse and ends that session. Before, any
// replay ended it, for as long as the used code was kept (a day).
func TestCodeReplayWithoutProofEndsNothing(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		const email = "leaky@example.org"
		e.user(email)
		c, _ := e.client("spa", authd.ClientPublic, true)
		r := e.rp(c, "")
		r.cfg.Endpoint.AuthStyle = oauth2.AuthStyleInParams
		verifier := oauth2.GenerateVerifier()
		code := r.login(t, e.browser(), email, "s", "n", verifier)
		tok, _ := r.exchange(t, code, verifier)
		redeem := func(redirectURI, verifier string) (int, string) {
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI},
				"client_id": {c.ID}}
			if verifier != "" {
				form.Set("code_verifier", verifier)
			}
			resp, errCode, _ := e.tokenRequestWith(strings.NewReader(form.Encode()), nil)
			return resp.StatusCode, errCode
		}
		e.clock.Advance(2 * time.Minute) // the code expired; the access token lives on
		for name, replay := range map[string][2]string{
			"without the verifier": {rpCallback, ""},
			"another verifier":     {rpCallback, oauth2.GenerateVerifier()},
			"another redirect URI": {"https://rp.example.org/other", verifier},
		} {
			if status, errCode := redeem(replay[0], replay[1]); status != http.StatusBadRequest || errCode != "invalid_grant" {
				t.Errorf("a replay %s: %d %s, want 400 invalid_grant", name, status, errCode)
			}
		}
		if got := e.me(tok.AccessToken); got != http.StatusOK {
			t.Fatalf("the session after replays without proof answers %d, want 200: they must end nothing", got)
		}
		if ev := e.events(e.userByEmail(email)); slices.Contains(ev, "oidc_code_reuse") {
			t.Errorf("a replay without proof logged as a reuse: %v", ev)
		}
		if status, errCode := redeem(rpCallback, verifier); status != http.StatusBadRequest || errCode != "invalid_grant" {
			t.Errorf("the replay with the verifier: %d %s, want 400 invalid_grant", status, errCode)
		}
		if got := e.me(tok.AccessToken); got != http.StatusUnauthorized {
			t.Errorf("the session after a replay with the verifier answers %d, want 401 (the reuse ends it)", got)
		}
	})
}

func TestCodeChecks(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("cora@example.org")
		c, secret := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, secret)
		b := e.browser()
		for name, try := range map[string]func(code, verifier string) error{
			"wrong verifier": func(code, _ string) error {
				_, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
				return err
			},
			"no verifier": func(code, _ string) error { _, err := r.cfg.Exchange(r.ctx, code); return err },
			"other redirect_uri": func(code, v string) error {
				other := r.cfg
				other.RedirectURL = "https://rp.example.org/other"
				_, err := other.Exchange(r.ctx, code, oauth2.VerifierOption(v))
				return err
			},
			"wrong secret": func(code, v string) error {
				other := r.cfg
				other.ClientSecret = secret + "x"
				_, err := other.Exchange(r.ctx, code, oauth2.VerifierOption(v))
				return err
			},
			"expired": func(code, v string) error {
				e.clock.Advance(61 * time.Second)
				_, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(v))
				return err
			},
			"junk": func(_, v string) error { _, err := r.cfg.Exchange(r.ctx, "junk", oauth2.VerifierOption(v)); return err },
		} {
			verifier := oauth2.GenerateVerifier()
			code := r.login(t, b, "cora@example.org", "s", "n", verifier)
			if err := try(code, verifier); err == nil {
				t.Errorf("%s: the code was exchanged", name)
			}
		}
	})
}

// TestCodeExpiresAtItsTTL: a code is good for authd.AuthCodeTTL and no
// longer: redeemed a second before its end it works; at its end, to the
// instant, it is refused (RFC 6749 §4.1.2: short-lived).
func TestCodeExpiresAtItsTTL(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("ttl@example.org")
		c, secret := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, secret)
		b := e.browser()
		verifier := oauth2.GenerateVerifier()
		code := r.login(t, b, "ttl@example.org", "s", "n", verifier)
		e.clock.Advance(authd.AuthCodeTTL - time.Second)
		if _, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(verifier)); err != nil {
			t.Errorf("a code redeemed a second before its end: %v", err)
		}
		verifier = oauth2.GenerateVerifier()
		code = r.login(t, b, "ttl@example.org", "s", "n", verifier)
		e.clock.Advance(authd.AuthCodeTTL)
		if _, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(verifier)); err == nil {
			t.Error("a code redeemed at the end of its lifetime was exchanged")
		}
	})
}

// TestIssuerWithAPath: with an issuer that has a path (AUTHD_ISSUER
// https://auth.example.org/tenant1 while authd serves the host's root),
// discovery is also served under the issuer's path, where relying parties
// look for it (OpenID Connect Discovery §4): go-oidc finds the provider
// there and signs a user in with ID tokens of that issuer. A final "/" is
// left out of the path; an issuer whose path a router would read otherwise
// is not routed (serve warns).
func TestIssuerWithAPath(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/tenant1", "/org/tenant-1/"} {
		e := newEnv(t, openSQLite(t), func(o *oidc.Options) { o.Issuer += path })
		issuer := e.srv.URL + path
		e.user("path@example.org")
		c, secret := e.client("app", authd.ClientConfidential, true)
		ctx := gooidc.ClientContext(context.Background(), e.srv.Client())
		p, err := gooidc.NewProvider(ctx, issuer)
		if err != nil {
			t.Fatalf("discovery of %s: %v", issuer, err)
		}
		r := &rp{ctx: ctx, provider: p, verifier: p.Verifier(&gooidc.Config{ClientID: c.ID, Now: e.clock.Now}), issuer: issuer,
			cfg: oauth2.Config{ClientID: c.ID, ClientSecret: secret, Endpoint: p.Endpoint(), RedirectURL: rpCallback,
				Scopes: []string{gooidc.ScopeOpenID}}}
		verifier := oauth2.GenerateVerifier()
		if _, idt := r.exchange(t, r.login(t, e.browser(), "path@example.org", "s", "n", verifier), verifier); idt.Issuer != issuer {
			t.Errorf("the ID token's iss %q, want %q", idt.Issuer, issuer)
		}
		if resp, err := http.Get(e.srv.URL + oidc.DiscoveryPath); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("discovery at the root beside the issuer's: %v, %v", resp, err)
		} else {
			resp.Body.Close()
		}
	}
	for issuer, want := range map[string]string{
		"https://auth.example.org":          oidc.DiscoveryPath,
		"https://auth.example.org/":         oidc.DiscoveryPath,
		"https://auth.example.org/a/b~c_d.": "/a/b~c_d." + oidc.DiscoveryPath,
		"https://auth.example.org/{x}":      "",
		"https://auth.example.org/a//b":     "",
		"https://auth.example.org/a/../b":   "",
		"https://auth.example.org/a%2Fb":    "",
		"https://auth.example.org/a?b":      "",
		"authd":                             "",
		"ftp://auth.example.org/a":          "",
	} {
		if got, ok := oidc.IssuerDiscoveryPath(issuer); got != want || ok != (want != "") {
			t.Errorf("IssuerDiscoveryPath(%q) = %q, %v; want %q", issuer, got, ok, want)
		}
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("rita@example.org")
		pub, _ := e.client("spa", authd.ClientPublic, true)
		b := e.browser()
		authorize := func(q url.Values) *browser {
			return b.get(e.srv.URL + oidc.AuthorizePath + "?" + q.Encode())
		}
		base := url.Values{"client_id": {"spa"}, "redirect_uri": {rpCallback}, "response_type": {"code"},
			"scope": {"openid"}, "state": {"xyz"}, "code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}}
		with := func(k, v string) url.Values {
			q := url.Values{}
			for kk, vv := range base {
				q[kk] = vv
			}
			if v == "" {
				q.Del(k)
			} else {
				q.Set(k, v)
			}
			return q
		}
		// Never a redirect: unknown client, unregistered redirect URI.
		for name, q := range map[string]url.Values{
			"unknown client":       with("client_id", "nobody"),
			"wrong redirect_uri":   with("redirect_uri", "https://evil.example.org/callback"),
			"redirect_uri prefix":  with("redirect_uri", rpCallback+"/more"),
			"missing redirect_uri": with("redirect_uri", ""),
		} {
			authorize(q)
			if b.last.StatusCode != http.StatusBadRequest || b.last.Header.Get("Location") != "" ||
				!strings.Contains(b.last.Header.Get("Content-Type"), "text/html") {
				t.Errorf("%s: %d, Location %q; want an error page", name, b.last.StatusCode, b.last.Header.Get("Location"))
			}
		}
		// Back to the client with an error, the state and iss.
		for name, tt := range map[string]struct {
			q    url.Values
			code string
		}{
			"public client without PKCE": {with("code_challenge", ""), "invalid_request"},
			"plain PKCE":                 {with("code_challenge_method", "plain"), "invalid_request"},
			"no openid scope":            {with("scope", "email"), "invalid_scope"},
			"implicit flow":              {with("response_type", "token"), "unsupported_response_type"},
			"no response_type":           {with("response_type", ""), "invalid_request"},
			"prompt=none, signed out":    {with("prompt", "none"), "login_required"},
		} {
			authorize(tt.q)
			cb := b.callback()
			if cb == nil || cb.Get("error") != tt.code || cb.Get("state") != "xyz" || cb.Get("iss") != e.srv.URL {
				t.Errorf("%s: %d %v; want error %s with state and iss", name, b.last.StatusCode, cb, tt.code)
			}
		}
		_ = pub
		// A state refused for its length is still sent back, as received
		// (TestStateAndNonceMustBeText: one that is not text is not).
		// Up to 2 KiB: a longer one would make a Location proxies refuse,
		// and gets the error page.
		for _, n := range []int{1025, 2048} {
			long := strings.Repeat("s", n)
			authorize(with("state", long))
			if cb := b.callback(); cb == nil || cb.Get("error") != "invalid_request" || cb.Get("state") != long {
				t.Errorf("a state of %d bytes: %d, error %q, state of %d bytes; want invalid_request with the state", n, b.last.StatusCode, cb.Get("error"), len(cb.Get("state")))
			}
		}
		authorize(with("state", strings.Repeat("s", 2049)))
		if b.last.StatusCode != http.StatusBadRequest || b.last.Header.Get("Location") != "" {
			t.Errorf("a state of 2049 bytes: %d, Location %.80q; want the error page", b.last.StatusCode, b.last.Header.Get("Location"))
		}

		// Secrets and tokens never in a query string (SPEC 6.11).
		for _, path := range []string{oidc.TokenPath + "?client_secret=x", oidc.UserInfoPath + "?access_token=x"} {
			method := "POST"
			if strings.HasPrefix(path, oidc.UserInfoPath) {
				method = "GET"
			}
			req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader("grant_type=authorization_code"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s %s: %v %v; want 400", method, path, resp, err)
			}
		}
		// Nor in one of two Authorization headers: which counts would be the reader's choice.
		for _, path := range []string{oidc.TokenPath, oidc.UserInfoPath} {
			req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader("grant_type=authorization_code"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Add("Authorization", "Bearer a")
			req.Header.Add("Authorization", "Basic YTpi")
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusBadRequest {
				t.Errorf("POST %s with two Authorization headers: %v %v; want 400", path, resp, err)
			}
		}

		// Each saved request costs a row: a client IP gets 30 a minute.
		var cb url.Values
		for range 31 {
			cb = authorize(with("prompt", "")).callback()
		}
		if cb == nil || cb.Get("error") != "temporarily_unavailable" || cb.Get("state") != "xyz" {
			t.Errorf("the 31st request in a minute: %d %v; want temporarily_unavailable", b.last.StatusCode, cb)
		}
	})
}

// TestUserInfoFollowsScopes: without the email scope, neither the ID token
// nor UserInfo shows the email.
func TestUserInfoFollowsScopes(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		u := e.user("uma@example.org")
		c, secret := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, secret) // openid only
		verifier := oauth2.GenerateVerifier()
		tok, err := r.cfg.Exchange(r.ctx, r.login(t, e.browser(), "uma@example.org", "s", "n", verifier), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		idt, err := r.verifier.Verify(r.ctx, tok.Extra("id_token").(string))
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		idt.Claims(&claims)
		if _, ok := claims["email"]; ok {
			t.Errorf("ID token without the email scope: %v", claims)
		}
		info, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok))
		if err != nil || info.Subject != u.ID.String() || info.Email != "" {
			t.Errorf("userinfo without the email scope: %+v, %v", info, err)
		}
		if tok.RefreshToken != "" {
			t.Error("a refresh token without offline_access")
		}
		req, _ := http.NewRequest("GET", e.srv.URL+oidc.UserInfoPath, nil)
		req.Header.Set("Authorization", "Bearer junk")
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("userinfo with a junk token: %v %v; want 401", resp, err)
		}
		// The session ended where this instance's revocation set cannot
		// know yet (another instance's commit, its notification on the way):
		// UserInfo reads the session row, so it refuses.
		sid, _ := uuid.Parse(jwtPayload(t, tok.AccessToken)["sid"].(string))
		if err := e.store.RevokeSession(context.Background(), sid, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if info, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok)); err == nil {
			t.Errorf("userinfo of an ended session: %+v, want refused", info)
		}
	})
}

func TestSignInWithSecondFactor(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		secret := e.mfaUser("mia@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		verifier := oauth2.GenerateVerifier()
		b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))).signIn("mia@example.org", goodPassword)
		if !strings.Contains(b.body, `name="mfa_token"`) {
			t.Fatalf("no second-factor step: %d %s", b.last.StatusCode, b.body)
		}
		f := b.form()
		f.Set("code", "000000")
		b.post(oidc.MFAPath, f)
		if b.last.StatusCode != http.StatusUnauthorized || !strings.Contains(b.body, `name="mfa_token"`) {
			t.Fatalf("a wrong code: %d; want the form again: %s", b.last.StatusCode, b.body)
		}
		f = b.form()
		f.Set("code", totpAt(t, secret, e.clock.Now()))
		b.post(oidc.MFAPath, f)
		cb := b.callback()
		if cb == nil || cb.Get("code") == "" {
			t.Fatalf("after the right code: %d %s", b.last.StatusCode, b.body)
		}
		tok, err := r.cfg.Exchange(r.ctx, cb.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		idt, err := r.verifier.Verify(r.ctx, tok.Extra("id_token").(string))
		if err != nil {
			t.Fatal(err)
		}
		var claims struct {
			AMR []string `json:"amr"`
		}
		idt.Claims(&claims)
		if !slices.Equal(claims.AMR, []string{"pwd", "otp", "mfa"}) {
			t.Errorf("amr %v; want pwd otp mfa", claims.AMR)
		}
	})
}

func TestConsentAndCSRF(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("cleo@example.org")
		c, cs := e.client("third", authd.ClientConfidential, false)
		r := e.rp(c, cs, "email")
		b := e.browser()
		b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		// A sign-in form posted without this browser's CSRF token is refused.
		f := b.form()
		f.Set("csrf", "forged")
		f.Set("email", "cleo@example.org")
		f.Set("password", goodPassword)
		if b.post(oidc.SignInPath, f); b.last.StatusCode != http.StatusForbidden {
			t.Errorf("sign-in with a forged CSRF token: %d; want 403", b.last.StatusCode)
		}
		b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))).signIn("cleo@example.org", goodPassword)
		if !strings.Contains(b.body, `name="decision"`) || !strings.Contains(b.body, "see your email address") {
			t.Fatalf("no consent page: %d %s", b.last.StatusCode, b.body)
		}
		// Its one script arms Allow (no fetch); nothing is focused, so
		// that a held Enter from the page before lands nowhere.
		csp := b.last.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "form-action 'self' https://rp.example.org") || !strings.Contains(csp, "script-src 'nonce-") ||
			strings.Contains(csp, "connect-src") || strings.Contains(b.body, "autofocus") {
			t.Errorf("consent page CSP %q, page:\n%s", csp, b.body)
		}
		f = b.form()
		f.Set("decision", "deny")
		if cb := b.post(oidc.ConsentPath, f).callback(); cb == nil || cb.Get("error") != "access_denied" {
			t.Errorf("deny: %v", cb)
		}
		b.get(r.cfg.AuthCodeURL("s2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		f = b.form()
		f.Set("decision", "allow")
		if cb := b.post(oidc.ConsentPath, f).callback(); cb == nil || cb.Get("code") == "" || cb.Get("state") != "s2" {
			t.Fatalf("allow: %d %v", b.last.StatusCode, b.body)
		}
		// Remembered: no consent page the next time.
		verifier := oauth2.GenerateVerifier()
		cb := b.get(r.cfg.AuthCodeURL("s3", oauth2.S256ChallengeOption(verifier))).callback()
		if cb == nil {
			t.Fatalf("consent asked again: %d", b.last.StatusCode)
		}
		tok, err := r.cfg.Exchange(r.ctx, cb.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		// Revocable: the user lists and withdraws it through the JSON API;
		// the client's tokens stop working and the next sign-in asks again.
		pair, err := e.svc.Login(context.Background(), authd.Client{}, "cleo@example.org", goodPassword, "")
		if err != nil {
			t.Fatal(err)
		}
		status, body := e.call("GET", "/v1/users/me/consents", pair.AccessToken)
		if status != http.StatusOK || !strings.Contains(body, `"client_id":"third"`) || !strings.Contains(body, `"scopes":["openid","email"]`) {
			t.Errorf("consents: %d %s", status, body)
		}
		if status, _ := e.call("DELETE", "/v1/users/me/consents/third", pair.AccessToken); status != http.StatusNoContent {
			t.Errorf("withdraw: %d", status)
		}
		if status, _ := e.call("DELETE", "/v1/users/me/consents/third", pair.AccessToken); status != http.StatusNotFound {
			t.Errorf("withdraw again: %d, want 404", status)
		}
		for _, junk := range []string{"%00", "a%ffb", "%1b", strings.Repeat("a", 1000)} { // no client's id: no consent
			if status, body := e.call("DELETE", "/v1/users/me/consents/"+junk, pair.AccessToken); status != http.StatusNotFound {
				t.Errorf("withdraw %q: %d %s, want 404", junk, status, body)
			}
		}
		if got := e.me(tok.AccessToken); got != http.StatusUnauthorized {
			t.Errorf("the client's access token answers %d after the consent was withdrawn; want 401", got)
		}
		if e.me(pair.AccessToken) != http.StatusOK {
			t.Error("withdrawing a consent ended the user's own session")
		}
		b.get(r.cfg.AuthCodeURL("s4", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if !strings.Contains(b.body, `name="decision"`) {
			t.Errorf("no consent page after withdrawing: %d", b.last.StatusCode)
		}
		f = b.form()
		f.Set("decision", "allow")
		if cb := b.post(oidc.ConsentPath, f).callback(); cb == nil || cb.Get("code") == "" {
			t.Fatalf("allow again: %d", b.last.StatusCode)
		}
		// prompt=consent asks although a consent covers the scopes, once.
		b.get(r.cfg.AuthCodeURL("s5", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "consent")))
		if !strings.Contains(b.body, `name="decision"`) {
			t.Fatalf("prompt=consent showed no consent page: %d", b.last.StatusCode)
		}
		f = b.form()
		f.Set("decision", "allow")
		if cb := b.post(oidc.ConsentPath, f).callback(); cb == nil || cb.Get("code") == "" || cb.Get("state") != "s5" {
			t.Errorf("prompt=consent, allowed: %d %v", b.last.StatusCode, cb)
		}
		// Deny answers its request only, as the page says: the consent
		// given again at s5 stays.
		b.get(r.cfg.AuthCodeURL("s6", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "consent")))
		if !strings.Contains(b.body, "Deny answers this request only") {
			t.Errorf("the consent page does not say what Deny does: %s", b.body)
		}
		f = b.form()
		f.Set("decision", "deny")
		if cb := b.post(oidc.ConsentPath, f).callback(); cb == nil || cb.Get("error") != "access_denied" {
			t.Errorf("prompt=consent, denied: %d %v", b.last.StatusCode, cb)
		}
		if cb := b.get(r.cfg.AuthCodeURL("s7", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
			oauth2.SetAuthURLParam("prompt", "none"))).callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("prompt=none after a denied prompt=consent: %v; want a code, the consent kept", cb)
		}
		if ev := e.events(e.userByEmail("cleo@example.org")); !slices.Contains(ev, "oidc_consent_revoked") {
			t.Errorf("no oidc_consent_revoked event: %v", ev)
		}
	})
}

func TestLogoutEndsSessions(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("lou@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		verifier := oauth2.GenerateVerifier()
		tok, err := r.cfg.Exchange(r.ctx, r.login(t, b, "lou@example.org", "s", "n", verifier), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		idToken := tok.Extra("id_token").(string)
		q := url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {"https://evil.example.org/"}}
		if b.get(e.srv.URL + oidc.LogoutPath + "?" + q.Encode()); b.last.StatusCode != http.StatusOK ||
			!strings.Contains(b.body, "cannot confirm that the address") || b.form().Get("post_logout_redirect_uri") != "" {
			t.Errorf("logout to an unregistered address: %d; want the confirmation page without it", b.last.StatusCode)
		}
		q.Set("post_logout_redirect_uri", "https://rp.example.org/bye")
		q.Set("state", "bye-state")
		// The request as a client's form POST (RP-Initiated Logout §2): a
		// 303 to the same request as a GET, which signs no one out either.
		b.post(oidc.LogoutPath, q) // the browser follows the 303
		if req := b.last.Request; req.Method != http.MethodGet || req.URL.RequestURI() != oidc.LogoutPath+"?"+q.Encode() ||
			b.last.StatusCode != http.StatusOK || b.form().Get("post_logout_redirect_uri") != "https://rp.example.org/bye" ||
			e.me(tok.AccessToken) != http.StatusOK {
			t.Fatalf("the logout request POSTed without csrf: %d at %s %s; want the GET's confirmation page, no sign-out",
				b.last.StatusCode, req.Method, req.URL)
		}
		if b.get(e.srv.URL + oidc.LogoutPath + "?" + q.Encode()); b.last.StatusCode != http.StatusOK || e.me(tok.AccessToken) != http.StatusOK {
			t.Fatalf("a GET signed out (or failed): %d", b.last.StatusCode)
		}
		if strings.Contains(b.body, "autofocus") {
			t.Errorf("the sign-out page focuses a button, which a key held on the page before would press:\n%s", b.body)
		}
		b.post(oidc.LogoutPath, b.form())
		if loc := b.last.Header.Get("Location"); b.last.StatusCode != http.StatusSeeOther || loc != "https://rp.example.org/bye?state=bye-state" {
			t.Errorf("after logout: %d to %q", b.last.StatusCode, loc)
		}
		if got := e.me(tok.AccessToken); got != http.StatusUnauthorized {
			t.Errorf("the relying party's access token answers %d after logout; want 401", got)
		}
		b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if b.callback() != nil || !strings.Contains(b.body, `name="password"`) {
			t.Errorf("after logout the browser was not asked to sign in: %d", b.last.StatusCode)
		}
	})
}

// TestBrowserSessionEndsWithTheAccount: logout-all through the JSON API ends
// the browser's session too.
func TestBrowserSessionEndsWithLogoutAll(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("liv@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		r.login(t, b, "liv@example.org", "s", "n", oauth2.GenerateVerifier())
		pair, err := e.svc.Login(context.Background(), authd.Client{}, "liv@example.org", goodPassword, "")
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", e.srv.URL+"/v1/auth/logout-all", nil)
		req.Header.Set("Authorization", "Bearer "+pair.AccessToken)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("logout-all: %v %v", resp, err)
		}
		b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if b.callback() != nil {
			t.Error("the browser session survived logout-all")
		}
	})
}

// me answers as a resource server asking introspection would: 200 while
// the token is live (signature, times, session not revoked), else 401.
// (GET /v1/users/me itself refuses every client's token: accountAPI.)
func (e *env) me(access string) int {
	if e.introspect(access)["active"] == true {
		return http.StatusOK
	}
	return http.StatusUnauthorized
}

// introspect returns the introspection of the access token, asked as a
// resource server asks (an RFC 7662 form, the service token).
func (e *env) introspect(access string) map[string]any {
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/auth/introspect", strings.NewReader(url.Values{"token": {access}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return out
}

// accountAPI calls GET /v1/users/me with the token and returns the status.
func (e *env) accountAPI(access string) int {
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/users/me", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (e *env) call(method, path, access string) (int, string) {
	req, _ := http.NewRequest(method, e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) jsonRefresh(refresh string) int {
	resp, err := http.Post(e.srv.URL+"/v1/auth/refresh", "application/json",
		strings.NewReader(`{"refresh_token":"`+refresh+`"}`))
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (e *env) userByEmail(email string) *authd.User {
	u, err := e.store.UserByEmail(context.Background(), email)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// events are the user's security events, oldest first.
func (e *env) events(u *authd.User) []string {
	return e.eventsAs(u, func(l *authd.SecurityLog) string { return string(l.EventType) })
}

// results are u's security-log rows, oldest first, as event/result.
func (e *env) results(u *authd.User) []string {
	return e.eventsAs(u, func(l *authd.SecurityLog) string { return string(l.EventType) + "/" + string(l.Result) })
}

func (e *env) eventsAs(u *authd.User, name func(*authd.SecurityLog) string) []string {
	logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: u.ID, Limit: 200})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for i := len(logs) - 1; i >= 0; i-- {
		out = append(out, name(logs[i]))
	}
	return out
}

// signInPage registers a first-party client and sends a new browser to
// the sign-in page of its authorization request.
func (e *env) signInPage() (*rp, *browser, string) {
	e.t.Helper()
	c, cs := e.client("app", authd.ClientConfidential, true)
	r, b := e.rp(c, cs), e.browser()
	b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	request := b.form().Get("request")
	if request == "" {
		e.t.Fatalf("no sign-in page: %d %s", b.last.StatusCode, b.body)
	}
	return r, b, request
}

// TestSignUpAndForgotLinks: the sign-in page's links reach Register and
// ForgotPassword and answer alike whether or not the address has an account.
func TestSignUpAndForgotLinks(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("old@example.org")
		_, b, request := e.signInPage()
		if !strings.Contains(b.body, `href="/signup?request=`+request+`"`) || !strings.Contains(b.body, `href="/signin/forgot?request=`+request+`"`) {
			t.Fatalf("the sign-in page lacks its links: %s", b.body)
		}
		if b.signUp(request, "new@example.org", "short"); b.last.StatusCode != http.StatusBadRequest || !strings.Contains(b.body, "The password") {
			t.Errorf("a weak password: %d; want the form with the reason", b.last.StatusCode)
		}
		var answers []string
		for _, email := range []string{"new@example.org", "old@example.org"} {
			b.signUp(request, email, goodPassword)
			answers = append(answers, b.last.Status+nonceRE.ReplaceAllString(b.body, ""))
		}
		if answers[0] != answers[1] || !strings.Contains(answers[0], "Check your email") {
			t.Errorf("sign-up answers differ for a new and a taken address, or say nothing:\n%s\n%s", answers[0], answers[1])
		}
		if u := e.userByEmail("new@example.org"); u.AccountStatus != authd.StatusInactive {
			t.Errorf("the new account is %s; want inactive until verified", u.AccountStatus)
		}
		answers = nil
		for _, email := range []string{"old@example.org", "nobody@example.org"} {
			b.get(e.srv.URL + oidc.ForgotPath + "?request=" + request)
			f := b.form()
			f.Set("email", email)
			b.post(oidc.ForgotPath, f)
			answers = append(answers, b.last.Status+nonceRE.ReplaceAllString(b.body, ""))
		}
		if answers[0] != answers[1] || !strings.Contains(answers[0], "Check your email") {
			t.Errorf("forgot-password answers differ:\n%s\n%s", answers[0], answers[1])
		}
	})
}

// TestResendFromSignIn: a sign-in refused for an unverified address (with
// the right password only) offers to send the link again in one click,
// which mails a new link; the resend page answers alike for every address
// and takes only its own form's token; the sign-up notice links to it
// while logins wait for verification.
func TestResendFromSignIn(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("old@example.org")
		_, b, request := e.signInPage()
		signInPage := e.srv.URL + oidc.SignInPath + "?request=" + request
		if b.signUp(request, "una@example.org", goodPassword); !strings.Contains(b.body, "Open it") ||
			!strings.Contains(b.body, `href="/signin/verify-email?request=`+request+`"`) {
			t.Errorf("the sign-up notice does not offer the resend page: %s", b.body)
		}
		u := e.userByEmail("una@example.org")
		sent := func() int { return strings.Count(strings.Join(e.events(u), " "), "email_verification_sent") }
		before := sent()

		b.get(signInPage).signIn("una@example.org", "not the password at all")
		if b.last.StatusCode != http.StatusUnauthorized || strings.Contains(b.body, oidc.ResendPath) {
			t.Errorf("a wrong password: %d; want 401 without the resend form:\n%s", b.last.StatusCode, b.body)
		}
		b.get(signInPage).signIn("una@example.org", goodPassword)
		if b.last.StatusCode != http.StatusForbidden || !strings.Contains(b.body, "Send the link again") {
			t.Fatalf("the right password, unverified: %d; want 403 with the resend form:\n%s", b.last.StatusCode, b.body)
		}
		resend := b.formTo(oidc.ResendPath)
		signIn := b.formTo(oidc.SignInPath)
		if resend.Get("email") != "una@example.org" || resend.Get("request") != request || signIn.Get("csrf") == "" {
			t.Fatalf("the resend form: %v; want this request and address", resend)
		}
		if b.post(oidc.ResendPath, resend); b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, "we sent it a new link") {
			t.Errorf("resend: %d; want the notice:\n%s", b.last.StatusCode, b.body)
		}
		if got := sent(); got != before+1 {
			t.Errorf("%d verification mails after the resend; want %d", got, before+1)
		}
		// The sign-in form's token is not the resend form's.
		resend.Set("csrf", signIn.Get("csrf"))
		if b.post(oidc.ResendPath, resend); b.last.StatusCode != http.StatusForbidden || sent() != before+1 {
			t.Errorf("resend with the sign-in form's token: %d; want the expired-form page, no mail", b.last.StatusCode)
		}

		var answers []string
		for _, email := range []string{"una@example.org", "old@example.org", "nobody@example.org"} {
			b.get(e.srv.URL + oidc.ResendPath + "?request=" + request)
			f := b.form()
			f.Set("email", email)
			b.post(oidc.ResendPath, f)
			answers = append(answers, b.last.Status+nonceRE.ReplaceAllString(b.body, ""))
		}
		if answers[0] != answers[1] || answers[1] != answers[2] || !strings.Contains(answers[0], "Check your email") {
			t.Errorf("resend answers differ by address:\n%s", strings.Join(answers, "\n"))
		}
		if got := sent(); got != before+2 {
			t.Errorf("%d verification mails after the resend page; want %d", got, before+2)
		}
	})
}

// TestSignUpNoticeWithoutVerification: while logins do not wait for a
// verified address, the sign-up notice says the account can sign in, and
// offers no resend.
func TestSignUpNoticeWithoutVerification(t *testing.T) {
	t.Parallel()
	e := newEnvConfig(t, openSQLite(t), func(c *authd.Config) { c.RequireVerifiedEmail = false })
	_, b, request := e.signInPage()
	if b.signUp(request, "vic@example.org", goodPassword); b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, "You can sign in now") ||
		strings.Contains(b.body, oidc.ResendPath) {
		t.Errorf("sign-up without verification: %d; want the notice to sign in now, no resend:\n%s", b.last.StatusCode, b.body)
	}
	if b.get(e.srv.URL+oidc.SignInPath+"?request="+request).signIn("vic@example.org", goodPassword).callback() == nil {
		t.Errorf("the new account could not sign in: %d", b.last.StatusCode)
	}
}

// TestUserInfoSaysAnAddressIsUnverified: with the email scope, UserInfo
// says email_verified false for an address not verified, as the ID token
// does, rather than leaving the claim out.
func TestUserInfoSaysAnAddressIsUnverified(t *testing.T) {
	t.Parallel()
	e := newEnvConfig(t, openSQLite(t), func(c *authd.Config) { c.RequireVerifiedEmail = false })
	u := storetest.NewUser("unverified@example.org")
	u.EmailVerified = false
	e.userFrom(u)
	c, secret := e.client("app", authd.ClientConfidential, true)
	r := e.rp(c, secret, "email")
	verifier := oauth2.GenerateVerifier()
	tok, err := r.cfg.Exchange(r.ctx, r.login(t, e.browser(), u.Email, "s", "n", verifier), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", e.srv.URL+oidc.UserInfoPath, nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	if verified, ok := info["email_verified"]; resp.StatusCode != http.StatusOK || info["email"] != u.Email || !ok || verified != false {
		t.Errorf("UserInfo of an unverified address: %d %v; want its email and email_verified false", resp.StatusCode, info)
	}
}

// signInAgainPage signs a new browser in to a first-party client as email
// (an account already there), then a second later starts a prompt=login
// request: the browser is on the sign-in page, its old session still live.
func (e *env) signInAgainPage(email string) (*rp, *browser) {
	e.t.Helper()
	c, cs := e.client("app", authd.ClientConfidential, true)
	r := e.rp(c, cs)
	b := e.browser()
	r.login(e.t, b, email, "s", "n", oauth2.GenerateVerifier())
	e.clock.Advance(time.Second)
	b.get(r.cfg.AuthCodeURL("again", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "login")))
	if b.callback() != nil || b.form().Get("csrf") == "" {
		e.t.Fatalf("prompt=login did not ask to sign in: %d", b.last.StatusCode)
	}
	return r, b
}

// TestSignInAgainEndsTheOldBrowserSession: prompt=login signs in anew and
// the session the old cookie named ends.
func TestSignInAgainEndsTheOldBrowserSession(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		u := e.user("sam@example.org")
		_, b := e.signInAgainPage("sam@example.org")
		b.signIn("sam@example.org", goodPassword)
		if b.callback() == nil {
			t.Fatalf("second sign-in: %d", b.last.StatusCode)
		}
		sessions, err := e.store.Sessions(context.Background(), u.ID, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		var browsers int
		for _, s := range sessions {
			if s.BrowserDigest != "" {
				browsers++
			}
		}
		if browsers != 1 {
			t.Errorf("%d live browser sessions after signing in again; want 1", browsers)
		}
	})
}

// TestBranding: the pages carry the operator's name, colour and logo, and
// the CSP lets the logo in and nothing else.
func TestBranding(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), func(o *oidc.Options) {
		o.AppName, o.BrandColor, o.LogoURL = "Acme <Login>", "#12ab34", "https://cdn.example.org/logo.svg"
	})
	c, cs := e.client("app", authd.ClientConfidential, true)
	b := e.browser()
	b.get(e.rp(c, cs).cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	csp := b.last.Header.Get("Content-Security-Policy")
	if !strings.Contains(b.body, "background: #12ab34") || !strings.Contains(b.body, `<img class="logo" src="https://cdn.example.org/logo.svg" alt="Acme &lt;Login&gt;">`) ||
		!strings.Contains(csp, "img-src https://cdn.example.org;") || strings.Contains(csp, "connect-src") {
		t.Errorf("branding: CSP %q, page:\n%s", csp, b.body)
	}
	// A logo on a host CSP cannot name lets no image in, rather than
	// every https one.
	e = newEnv(t, openSQLite(t), func(o *oidc.Options) { o.LogoURL = "https://cdn_x.example.org/logo.svg" })
	c, cs = e.client("app", authd.ClientConfidential, true)
	b = e.browser()
	b.get(e.rp(c, cs).cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if csp := b.last.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src 'none';") {
		t.Errorf("a logo on cdn_x.example.org: CSP %q; want img-src 'none'", csp)
	}
}

// TestPageTemplatesOverride: a file in the templates directory replaces
// its embedded page; a broken one stops start-up naming the file, also
// where it breaks only in a branch that few answers take (the sample data
// takes them all).
func TestPageTemplatesOverride(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	custom := `{{define "signin-content"}}<p id="custom">Welcome to {{.AppName}}</p>
<form method="post" action="/signin"><input type="hidden" name="request" value="{{.Request}}"><input type="hidden" name="csrf" value="{{.CSRF}}"></form>{{end}}`
	if err := os.WriteFile(filepath.Join(dir, "signin.html"), []byte(custom), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, openSQLite(t), func(o *oidc.Options) { o.TemplatesDir = dir })
	c, cs := e.client("app", authd.ClientConfidential, true)
	b := e.browser()
	b.get(e.rp(c, cs).cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if !strings.Contains(b.body, `<p id="custom">Welcome to Example Co</p>`) || !strings.Contains(b.body, "<!DOCTYPE html>") {
		t.Errorf("the overriding sign-in page was not used (in the embedded layout):\n%s", b.body)
	}

	for name, text := range map[string]string{
		"consent.html": `{{define "consent-content"}}{{.NoSuchField}}{{end}}`,
		"layout.html":  `{{define "layout"}}{{template "content" .}}`,
		"mfa.html":     `{{define "something-else"}}{{end}}`,
		"logout.html":  `{{define "logout-content"}}{{if .Logout.Dropped}}{{.Logout.Reason}}{{end}}{{end}}`,
		"signin.html":  `{{define "signin-content"}}{{if .ResendCSRF}}{{.Resend}}{{end}}{{end}}`,
		"notice.html":  `{{define "notice-content"}}{{if .OfferResend}}{{.ResendLink}}{{end}}{{end}}`,
	} {
		bad := t.TempDir()
		if err := os.WriteFile(filepath.Join(bad, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := oidc.New(oidc.Options{TemplatesDir: bad})
		if err == nil || !strings.Contains(err.Error(), ".html") {
			t.Errorf("a broken %s: %v; want an error naming the file", name, err)
		}
	}
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// TestHostileInput sends junk to every route of the provider: never a 5xx.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.client("app", authd.ClientConfidential, true)
	junk := []string{"", "request=not-a-uuid", "request=" + strings.Repeat("0", 36), "client_id=app&client_id=app",
		"client_id=app&redirect_uri=" + url.QueryEscape(rpCallback) + "&response_type=code&scope=openid&state=" + strings.Repeat("s", 5000),
		"client_id=%00&redirect_uri=%ff", "grant_type=authorization_code&client_id=app&client_secret=x&code=y&redirect_uri=z",
		"grant_type=refresh_token&client_id=app&refresh_token=" + strings.Repeat("r", 43), "grant_type=password",
		"id_token_hint=a.b.c", "id_token_hint=" + strings.Repeat("x", 3000), "post_logout_redirect_uri=javascript:alert(1)",
		"max_age=-1&client_id=app&redirect_uri=" + url.QueryEscape(rpCallback) + "&response_type=code&scope=openid&code_challenge=" + strings.Repeat("a", 43) + "&code_challenge_method=S256",
		strings.Repeat("a=b&", 20000)}
	paths := []string{oidc.DiscoveryPath, oidc.AuthorizePath, oidc.ResumePath, oidc.TokenPath, oidc.UserInfoPath,
		oidc.LogoutPath, oidc.SignInPath, oidc.MFAPath, oidc.PasskeyPath, oidc.ConsentPath, oidc.SignUpPath, oidc.ForgotPath, oidc.ResendPath}
	for _, path := range paths {
		for _, q := range junk {
			for _, method := range []string{"GET", "POST"} {
				for _, ctype := range []string{"application/x-www-form-urlencoded", "application/json"} {
					target := e.srv.URL + path
					var body io.Reader
					if method == "GET" {
						target += "?" + q
					} else {
						body = strings.NewReader(q)
					}
					req, _ := http.NewRequest(method, target, body)
					req.Header.Set("Content-Type", ctype)
					req.Header.Set("Authorization", "Basic "+strings.Repeat("%", 10))
					resp, err := noRedirects.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode >= 500 {
						t.Errorf("%s %s (%s, %.40q): %d", method, path, ctype, q, resp.StatusCode)
					}
				}
			}
		}
	}
}

// userInfoStatus calls UserInfo with the access token and returns the
// status.
func (e *env) userInfoStatus(access string) int {
	e.t.Helper()
	resp, _ := e.userInfoResponse("Bearer " + access)
	return resp.StatusCode
}

// userInfoResponse calls UserInfo with the Authorization header (none when
// empty) and returns the response (for its status and headers) and the
// OAuth error code of its body.
func (e *env) userInfoResponse(authorization string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+oidc.UserInfoPath, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return e.oauthCall(req)
}

// TestUserInfoTakesOnlyOpenIDClientTokens: UserInfo answers for the access
// token of an OpenID Connect authentication (OIDC Core §5.3): a client's
// token with the openid scope. The JSON API's own login token (no client,
// no scope) and a client's token without openid are refused with 401.
func TestUserInfoTakesOnlyOpenIDClientTokens(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("uio@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		_, tok := e.signedInWithIDToken(r, "uio@example.org")
		if got := e.userInfoStatus(tok.AccessToken); got != http.StatusOK {
			t.Errorf("UserInfo with the client's token: %d, want 200", got)
		}
		// One token, sent one way (RFC 6750 §2): which of two counts would
		// be the library's choice.
		for name, c := range map[string]struct {
			body   url.Values
			header bool
			want   int
		}{
			"in the body":                   {url.Values{"access_token": {tok.AccessToken}}, false, http.StatusOK},
			"twice in the body":             {url.Values{"access_token": {tok.AccessToken, "another"}}, false, http.StatusBadRequest},
			"in the header and in the body": {url.Values{"access_token": {"another"}}, true, http.StatusBadRequest},
			"in a body over 64 KiB":         {url.Values{"access_token": {tok.AccessToken}, "pad": {strings.Repeat("x", 70<<10)}}, false, http.StatusRequestEntityTooLarge},
		} {
			req, _ := http.NewRequest("POST", e.srv.URL+oidc.UserInfoPath, strings.NewReader(c.body.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if c.header {
				req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("UserInfo with the token %s: %d, want %d", name, resp.StatusCode, c.want)
			}
		}
		pair, claims := e.login("uio@example.org")
		if got := e.userInfoStatus(pair.AccessToken); got != http.StatusUnauthorized {
			t.Errorf("UserInfo with a /v1/auth/login token: %d, want 401", got)
		}
		noOpenID := *claims
		noOpenID.JTI, noOpenID.ClientID, noOpenID.Scope = uuid.NewString(), "app", []string{authd.ScopeEmail}
		access, err := token.NewIssuer(e.keys, e.srv.URL, "authd").Issue(noOpenID)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.userInfoStatus(access); got != http.StatusUnauthorized {
			t.Errorf("UserInfo with a client's token without the openid scope: %d, want 401", got)
		}
	})
}

// TestUserInfoWhileRevocationsStale: while the revocation set cannot be
// caught up (authd.Config.RevocationMaxLag), UserInfo answers 503 with
// Retry-After, not 401: the token is not at fault, and a relying party
// told it is would sign its user out.
func TestUserInfoWhileRevocationsStale(t *testing.T) {
	store := &revocationsDown{Store: openSQLite(t)}
	e := newEnvConfig(t, store, func(c *authd.Config) { c.RevocationMaxLag = time.Nanosecond })
	e.user("stale@example.org")
	c, cs := e.client("app", authd.ClientConfidential, true)
	_, tok := e.signedInWithIDToken(e.rp(c, cs), "stale@example.org")
	store.down.Store(true) // the revocation feed's table cannot be read: no catch-up
	req, _ := http.NewRequest("GET", e.srv.URL+oidc.UserInfoPath, nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("UserInfo while revocations are stale: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// revocationsDown is a store whose revocation reads fail once down, as
// with the database gone for the revocation set alone.
type revocationsDown struct {
	authd.Store
	down atomic.Bool
}

var errRevocationsDown = &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable"}

func (s *revocationsDown) LastRevocationEventID(ctx context.Context) (int64, error) {
	if s.down.Load() {
		return 0, errRevocationsDown
	}
	return s.Store.LastRevocationEventID(ctx)
}

func (s *revocationsDown) RevocationEvents(ctx context.Context, after int64, now time.Time, limit int) ([]authd.RevocationEvent, error) {
	if s.down.Load() {
		return nil, errRevocationsDown
	}
	return s.Store.RevocationEvents(ctx, after, now, limit)
}

// TestOpenAPIDocumentsTheProvider: the OpenAPI document (served by
// httpapi) describes every route of the provider, tagged openid, and no
// other under that tag.
func TestOpenAPIDocumentsTheProvider(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Tags []string `json:"tags"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if slices.Contains(op.Tags, "openid") {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	routed := slices.Clone(newEnv(t, openSQLite(t)).provider.Patterns())
	slices.Sort(documented)
	slices.Sort(routed)
	if !slices.Equal(documented, routed) {
		t.Errorf("openapi.json's openid operations:\n%v\nthe provider's routes:\n%v", documented, routed)
	}
}

// TestCodeOfAnEarlierSignIn: a code a browser signed in an hour before
// gives (prompt=none) carries that sign-in's times: the ID token's
// auth_time is when the user signed in (a relying party's max_age counts
// from it), and the session the code starts ends when the sign-in does,
// not a full session lifetime after the redemption: a browser signed in
// once cannot hand relying parties sessions that outlive the sign-in.
func TestCodeOfAnEarlierSignIn(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		const email = "late-app@example.org"
		u := e.user(email)
		b := e.browser()
		c, secret := e.client("first", authd.ClientConfidential, true)
		r := e.rp(c, secret)
		verifier := oauth2.GenerateVerifier()
		r.exchange(t, r.login(t, b, email, "state", "nonce", verifier), verifier)
		signedIn := e.clock.Now()
		e.clock.Advance(time.Hour)
		late, lateSecret := e.client("late", authd.ClientConfidential, true)
		lr := e.rp(late, lateSecret)
		b.get(lr.cfg.AuthCodeURL("state", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "none")))
		cb := b.callback()
		if cb == nil || cb.Get("code") == "" {
			t.Fatalf("prompt=none an hour after the sign-in: %v", cb)
		}
		_, idt := lr.exchange(t, cb.Get("code"), verifier)
		var claims struct {
			AuthTime int64 `json:"auth_time"`
		}
		if err := idt.Claims(&claims); err != nil || claims.AuthTime != signedIn.Unix() {
			t.Errorf("the late client's auth_time %d, %v; want the sign-in's, %d", claims.AuthTime, err, signedIn.Unix())
		}
		sessions, err := e.store.Sessions(context.Background(), u.ID, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		var signIn, client time.Time
		for _, s := range sessions {
			switch {
			case s.BrowserDigest != "":
				signIn = s.ExpiresAt
			case s.ClientID == late.ID:
				client = s.ExpiresAt
			}
		}
		if signIn.IsZero() || !client.Equal(signIn) {
			t.Errorf("the late client's session ends at %v; want the browser sign-in's end, %v", client, signIn)
		}
	})
}

// TestRedeemingACodeKeepsItsBrowserSignedIn: past AUTHD_MAX_SESSIONS the
// least recently used session ends, and a browser sign-in is used each time
// it gives a code: relying parties signing in through it one after another
// end each other's oldest session, not the sign-in they all came through.
func TestRedeemingACodeKeepsItsBrowserSignedIn(t *testing.T) {
	onBothStoresEnv(t, func(t *testing.T, s authd.Store) *env {
		return newEnvConfig(t, s, func(c *authd.Config) { c.MaxSessions = 3 })
	}, func(t *testing.T, e *env) {
		const email = "many-apps@example.org"
		u := e.user(email)
		b := e.browser()
		for i, name := range []string{"one", "two", "three", "four"} {
			c, secret := e.client(name, authd.ClientConfidential, true)
			r := e.rp(c, secret)
			verifier := oauth2.GenerateVerifier()
			if i == 0 {
				r.exchange(t, r.login(t, b, email, "state", "nonce", verifier), verifier)
				continue
			}
			e.clock.Advance(time.Minute)
			b.get(r.cfg.AuthCodeURL("state", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "none")))
			cb := b.callback()
			if cb == nil || cb.Get("code") == "" {
				t.Fatalf("prompt=none for the relying party %q after %d signed in through the browser (three sessions at most): %v",
					name, i, cb)
			}
			r.exchange(t, cb.Get("code"), verifier)
		}
		sessions, err := e.store.Sessions(context.Background(), u.ID, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		var clients []string
		browsers := 0
		for _, s := range sessions {
			if s.BrowserDigest == "" {
				clients = append(clients, s.ClientID)
			} else {
				browsers++
			}
		}
		if browsers != 1 {
			t.Errorf("%d live browser sessions after the last redemption; want the one they all came through", browsers)
		}
		slices.Sort(clients)
		if want := []string{"four", "three"}; !slices.Equal(clients, want) {
			t.Errorf("the relying parties' live sessions: %v; want %v (the oldest ended)", clients, want)
		}
	})
}
