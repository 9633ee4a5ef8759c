package oidc_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/oidc"
	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// revoke posts form to the revocation endpoint with the Authorization
// header given ("" for none), and returns the status, the body and its
// OAuth error code.
func (e *env) revoke(form url.Values, authorization string) (int, string, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+oidc.RevokePath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Error string `json:"error"`
	}
	json.Unmarshal(body, &out)
	if resp.Header.Get("Cache-Control") != "no-store" {
		e.t.Errorf("revocation's %d without Cache-Control: no-store: %v", resp.StatusCode, resp.Header)
	}
	return resp.StatusCode, string(body), out.Error
}

// offlineTokens signs email in through r's flow and returns its tokens.
func (e *env) offlineTokens(r *rp, email string) *oauth2.Token {
	e.t.Helper()
	verifier := oauth2.GenerateVerifier()
	tok, err := r.cfg.Exchange(r.ctx, r.login(e.t, e.browser(), email, "s", "n", verifier), oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// refreshes reports whether a refresh token still works for r.
func (r *rp) refreshes(refresh string) bool {
	_, err := r.cfg.TokenSource(r.ctx, &oauth2.Token{RefreshToken: refresh}).Token()
	return err == nil
}

// TestRevocationEndsTheClientsSession: a client revokes (RFC 7009) its
// refresh token, or its access token: the session ends with all its
// tokens, logged as a logout; a token that is not the client's (another
// client's, authd's own login's, junk) is answered alike, 200, and
// changes nothing. Discovery names the endpoint.
func TestRevocationEndsTheClientsSession(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		u := e.user("rita@example.org")
		c, secret := e.client("app", authd.ClientConfidential, true)
		other, otherSecret := e.client("other", authd.ClientConfidential, true)
		r, ro := e.rp(c, secret, gooidc.ScopeOfflineAccess), e.rp(other, otherSecret, gooidc.ScopeOfflineAccess)
		auth := basic(url.QueryEscape(c.ID) + ":" + url.QueryEscape(secret))

		var disc struct {
			Endpoint string   `json:"revocation_endpoint"`
			Methods  []string `json:"revocation_endpoint_auth_methods_supported"`
		}
		if err := r.provider.Claims(&disc); err != nil || disc.Endpoint != e.srv.URL+oidc.RevokePath ||
			!slices.Contains(disc.Methods, "client_secret_basic") {
			t.Errorf("discovery's revocation endpoint: %+v, %v", disc, err)
		}

		// Another client's tokens, authd's own login's, and junk change
		// nothing.
		theirs := e.offlineTokens(ro, "rita@example.org")
		own, err := e.svc.Login(context.Background(), authd.Client{}, "rita@example.org", goodPassword, "")
		if err != nil {
			t.Fatal(err)
		}
		mine := e.offlineTokens(r, "rita@example.org")
		for _, tok := range []string{theirs.RefreshToken, theirs.AccessToken, own.RefreshToken, own.AccessToken, "junk",
			strings.Repeat("A", 43)} {
			if status, body, _ := e.revoke(url.Values{"token": {tok}}, auth); status != 200 || body != "" {
				t.Errorf("revoking a token not the client's: %d %q; want 200, no body", status, body)
			}
		}
		if !ro.refreshes(theirs.RefreshToken) || e.me(theirs.AccessToken) != http.StatusOK ||
			e.me(own.AccessToken) != http.StatusOK {
			t.Error("a client's revocation ended a session not its own")
		}

		// Its own refresh token, with a wrong hint: the session ends.
		if status, _, _ := e.revoke(url.Values{"token": {mine.RefreshToken}, "token_type_hint": {"access_token"}}, auth); status != 200 {
			t.Fatalf("revoking its refresh token: %d", status)
		}
		if r.refreshes(mine.RefreshToken) || e.me(mine.AccessToken) != http.StatusUnauthorized {
			t.Error("the revoked refresh token's session goes on")
		}
		// Its own access token, in the body's credentials: that session ends.
		mine = e.offlineTokens(r, "rita@example.org")
		form := url.Values{"token": {mine.AccessToken}, "client_id": {c.ID}, "client_secret": {secret}}
		if status, _, _ := e.revoke(form, ""); status != 200 {
			t.Fatalf("revoking its access token: %d", status)
		}
		if r.refreshes(mine.RefreshToken) || e.me(mine.AccessToken) != http.StatusUnauthorized {
			t.Error("the revoked access token's session goes on")
		}
		if status, _, _ := e.revoke(form, ""); status != 200 {
			t.Errorf("revoking it again: %d, want 200", status)
		}
		// A refresh token rotated out ends its session too, and says so.
		mine = e.offlineTokens(r, "rita@example.org")
		if !r.refreshes(mine.RefreshToken) {
			t.Fatal("no rotation")
		}
		if status, _, _ := e.revoke(url.Values{"token": {mine.RefreshToken}}, auth); status != 200 {
			t.Fatalf("revoking a rotated-out refresh token: %d", status)
		}
		if e.me(mine.AccessToken) != http.StatusUnauthorized {
			t.Error("the rotated-out refresh token's session goes on")
		}
		results := e.results(u)
		if n := count(results, "logout/success"); n != 3 {
			t.Errorf("%d logouts, want 3 (one per session ended): %v", n, results)
		}
		if n := count(results, "logout/failure"); n != 4 { // the other client's and authd's own tokens
			t.Errorf("%d refused revocations logged, want 4: %v", n, results)
		}
		if last := e.lastLog(u, authd.EventLogout, authd.ResultSuccess); last.AdditionalContext["rotated"] != true ||
			last.AdditionalContext["token_revoked"] != true {
			t.Errorf("the rotated-out token's logout row: %v", last.AdditionalContext)
		}
		if !ro.refreshes(theirs.RefreshToken) {
			t.Error("the other client's session ended with this client's")
		}
	})
}

// TestForeignRevocationsLoggedBounded: a client's revocations of a token
// not its own are logged on the token's user at most 10 a minute per
// client and user, and answered 200 alike past that: a client holding
// another's token cannot write its user a row per request, nor spend the
// bound of another user's rows.
func TestForeignRevocationsLoggedBounded(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		u, v := e.user("rosa@example.org"), e.user("rhea@example.org")
		c, secret := e.client("app", authd.ClientConfidential, true)
		other, otherSecret := e.client("other", authd.ClientConfidential, true)
		ro := e.rp(other, otherSecret, gooidc.ScopeOfflineAccess)
		theirs, hers := e.offlineTokens(ro, "rosa@example.org"), e.offlineTokens(ro, "rhea@example.org")
		auth := basic(url.QueryEscape(c.ID) + ":" + url.QueryEscape(secret))
		for i := range 12 {
			tok := theirs.AccessToken
			if i%2 == 1 {
				tok = theirs.RefreshToken
			}
			if status, body, _ := e.revoke(url.Values{"token": {tok}}, auth); status != 200 || body != "" {
				t.Fatalf("revocation %d of another client's token: %d %q; want 200, no body", i+1, status, body)
			}
		}
		if n := count(e.results(u), "logout/failure"); n != 10 {
			t.Errorf("%d refused revocations logged, want 10 (the bound)", n)
		}
		if status, _, _ := e.revoke(url.Values{"token": {hers.RefreshToken}}, auth); status != 200 {
			t.Fatalf("revoking another user's token: %d", status)
		}
		if n := count(e.results(v), "logout/failure"); n != 1 {
			t.Errorf("another user's first refused revocation: %d rows, want 1", n)
		}
		if e.me(theirs.AccessToken) != http.StatusOK {
			t.Error("another client's revocations ended the session")
		}
		e.clock.Advance(time.Minute)
		if status, _, _ := e.revoke(url.Values{"token": {theirs.AccessToken}}, auth); status != 200 {
			t.Fatalf("a minute later: %d", status)
		}
		if n := count(e.results(u), "logout/failure"); n != 11 {
			t.Errorf("a minute later: %d refused revocations logged, want 11", n)
		}
	})
}

func count(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}

// lastLog is u's newest security-log row of event and result.
func (e *env) lastLog(u *authd.User, event authd.EventType, result authd.Result) *authd.SecurityLog {
	e.t.Helper()
	logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: u.ID, Limit: 200})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, l := range logs {
		if l.EventType == event && l.Result == result {
			return l
		}
	}
	e.t.Fatalf("no %s/%s row", event, result)
	return nil
}

// TestRevocationByAPublicClient: a public client authenticates with its
// id alone, which is no secret, and an access token reaches every
// resource server: it may revoke its refresh token (the session ends),
// never an access token, nor anything shaped as one (400
// unsupported_token_type, nothing ends).
func TestRevocationByAPublicClient(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("pia@example.org")
		c, _ := e.client("spa", authd.ClientPublic, true)
		r := e.rp(c, "", gooidc.ScopeOfflineAccess)
		tok := e.offlineTokens(r, "pia@example.org")
		form := url.Values{"token": {tok.AccessToken}, "client_id": {c.ID}}
		if status, body, code := e.revoke(form, ""); status != 400 || code != "unsupported_token_type" {
			t.Errorf("a public client revoking an access token: %d %s; want 400 unsupported_token_type", status, body)
		}
		if e.me(tok.AccessToken) != http.StatusOK || !r.refreshes(tok.RefreshToken) {
			t.Fatal("a public client's access-token revocation ended the session")
		}
		// Anything shaped as a JWT gets the one answer, whoever's it is: the
		// client learns nothing of the token from it.
		for _, junk := range []string{"a.b.c", tok.Extra("id_token").(string)} {
			form.Set("token", junk)
			if status, body, code := e.revoke(form, ""); status != 400 || code != "unsupported_token_type" {
				t.Errorf("a public client revoking %.20s…: %d %s; want 400 unsupported_token_type, as an access token", junk, status, body)
			}
		}
		tok = e.offlineTokens(r, "pia@example.org")
		form.Set("token", tok.RefreshToken)
		if status, body, _ := e.revoke(form, ""); status != 200 {
			t.Errorf("a public client revoking its refresh token: %d %s", status, body)
		}
		if e.me(tok.AccessToken) != http.StatusUnauthorized || r.refreshes(tok.RefreshToken) {
			t.Error("the public client's revoked refresh token's session goes on")
		}
	})
}

// TestRevocationRefusals: the revocation endpoint authenticates its client
// as the token endpoint does (401 invalid_client, logged), wants a token,
// takes no grant_type, nothing in the query, and only POST.
func TestRevocationRefusals(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		c, secret := e.client("app", authd.ClientConfidential, true)
		auth := basic(url.QueryEscape(c.ID) + ":" + url.QueryEscape(secret))
		before := len(e.clientAuthFailures())
		for _, tc := range []struct {
			name   string
			form   url.Values
			auth   string
			status int
			code   string
		}{
			{"no client authentication", url.Values{"token": {"x"}}, "", 401, "invalid_client"},
			{"a wrong secret", url.Values{"token": {"x"}}, basic(c.ID + ":wrong"), 401, "invalid_client"},
			{"an unknown client", url.Values{"token": {"x"}, "client_id": {"nobody"}, "client_secret": {"s"}}, "", 401,
				"invalid_client"},
			{"no token", url.Values{}, auth, 400, "invalid_request"},
			{"a grant_type", url.Values{"token": {"x"}, "grant_type": {"refresh_token"}}, auth, 400, "invalid_request"},
			{"an empty grant_type", url.Values{"token": {"x"}, "grant_type": {""}}, auth, 400, "invalid_request"},
			{"a repeated token", url.Values{"token": {"x", "y"}}, auth, 400, "invalid_request"},
		} {
			if status, body, code := e.revoke(tc.form, tc.auth); status != tc.status || code != tc.code {
				t.Errorf("%s: %d %s; want %d %s", tc.name, status, body, tc.status, tc.code)
			}
		}
		if n := len(e.clientAuthFailures()) - before; n != 3 {
			t.Errorf("%d oidc_client_auth_failed rows, want 3", n)
		}
		// A body of another type is not taken for one without a token.
		req, _ := http.NewRequest("POST", e.srv.URL+oidc.RevokePath, strings.NewReader(`{"token":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "x-www-form-urlencoded") {
			t.Errorf("a JSON body: %d %s; want 400 naming the form type", resp.StatusCode, body)
		}
		resp, err = http.Post(e.srv.URL+oidc.RevokePath+"?token=x", "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("a query string: %d, want 400", resp.StatusCode)
		}
		resp, err = http.Get(e.srv.URL + oidc.RevokePath)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET: %d, want 405", resp.StatusCode)
		}
	})
}
