package verifytest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/verify"
	"github.com/authd/authd/verify/verifytest"
)

// TestServer: a Verifier made from a Server's options takes its tokens
// (through Middleware too), with the claims asked for or authd's defaults,
// and refuses them once their session or user is revoked; another
// client's token is refused unless Options.Clients names the client.
func TestServer(t *testing.T) {
	t.Parallel()
	authd := verifytest.NewServer(t)
	v := authd.Verifier(t)
	hello := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.ClaimsFrom(r.Context())
		io.WriteString(w, c.Subject+" "+strings.Join(c.AMR, ","))
	}))
	srv := httptest.NewServer(hello)
	defer srv.Close()
	get := func(token string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	token := authd.Token(verify.Claims{Subject: "user-1", AMR: []string{"pwd", "otp", "mfa"}})
	if status, body := get(token); status != 200 || body != "user-1 pwd,otp,mfa" {
		t.Fatalf("a Server's token through Middleware: %d %q", status, body)
	}
	c, err := v.Verify(context.Background(), authd.Token(verify.Claims{}))
	if err != nil || c.Subject == "" || c.SessionID == "" || c.ID == "" || !c.HasAMR("pwd") ||
		c.Issuer != authd.URL || time.Until(c.ExpiresAt) <= 0 || time.Until(c.ExpiresAt) > verifytest.TokenLifetime {
		t.Errorf("a token of authd's defaults: %+v, %v", c, err)
	}
	expired := authd.Token(verify.Claims{ExpiresAt: time.Now().Add(-time.Minute)})
	if _, err := v.Verify(context.Background(), expired); !errors.Is(err, verify.ErrExpired) {
		t.Errorf("an expired token: %v; want ErrExpired", err)
	}

	authd.RevokeSession(verifytest.SessionOf(token))
	authd.Sync(t, v)
	if status, _ := get(token); status != http.StatusUnauthorized {
		t.Errorf("a revoked session's token through Middleware: %d; want 401", status)
	}
	// A user's revocation ends the sessions Token made for them, however
	// recent; a session begun after it is good, as with authd.
	other := authd.Token(verify.Claims{Subject: "user-1"})
	authd.RevokeUser("user-1")
	authd.Sync(t, v)
	if _, err := v.Verify(context.Background(), other); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("a token of a user revoked since: %v; want ErrRevoked", err)
	}
	if _, err := v.Verify(context.Background(), authd.Token(verify.Claims{Subject: "user-1"})); err != nil {
		t.Errorf("a new session's token after the user's revocation: %v; want it good", err)
	}

	app := authd.Token(verify.Claims{ClientID: "app", Scopes: []string{"openid", "email"}})
	if _, err := v.Verify(context.Background(), app); !errors.Is(err, verify.ErrClient) {
		t.Errorf("a client's token, the client not named: %v; want ErrClient", err)
	}
	apps := authd.VerifierWith(t, func(o *verify.Options) { o.Clients = []string{"app"} })
	if c, err := apps.Verify(context.Background(), app); err != nil || c.ClientID != "app" || !c.HasScope("email") {
		t.Errorf("a client's token, the client named: %+v, %v", c, err)
	}
}

// TestIntrospection: the Server's introspection, which a Verifier asks
// while the feed is lost, calls a good token active and a revoked, forged
// or foreign one not, and wants the service token.
func TestIntrospection(t *testing.T) {
	t.Parallel()
	authd := verifytest.NewServer(t)
	introspect := func(serviceToken, token string) (int, string) {
		req, _ := http.NewRequest("POST", authd.URL+"/v1/auth/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+serviceToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	token := authd.Token(verify.Claims{Subject: "user-2"})
	if status, body := introspect(authd.ServiceToken, token); status != 200 || !strings.HasPrefix(body, `{"active":true`) {
		t.Errorf("a good token: %d %s", status, body)
	}
	foreign := verifytest.NewServer(t).Token(verify.Claims{})
	otherAudience := authd.Token(verify.Claims{Audience: []string{"billing"}})
	for name, tok := range map[string]string{"junk": "x.y.z", "another server's": foreign, "another audience's": otherAudience} {
		if status, body := introspect(authd.ServiceToken, tok); status != 200 || body != `{"active":false}` {
			t.Errorf("%s token: %d %s; want inactive", name, status, body)
		}
	}
	if status, _ := introspect("wrong", token); status != http.StatusUnauthorized {
		t.Errorf("without the service token: %d; want 401", status)
	}
	authd.RevokeSession(verifytest.SessionOf(token))
	if _, body := introspect(authd.ServiceToken, token); body != `{"active":false}` {
		t.Errorf("a revoked session's token: %s; want inactive", body)
	}
	if verifytest.SessionOf("not a token") != "" {
		t.Error("SessionOf found a session in junk")
	}
}

// TestRevocationsAuthdCannotMake: an empty or overlong session id or
// subject, which authd never revokes and whose event verify would refuse
// (and the feed with it), panics at once rather than break the feed.
func TestRevocationsAuthdCannotMake(t *testing.T) {
	t.Parallel()
	authd := verifytest.NewServer(t)
	v := authd.Verifier(t)
	long := strings.Repeat("s", 129)
	for name, call := range map[string]func(){
		"RevokeSession(\"\")":      func() { authd.RevokeSession("") },
		"RevokeSession(129 bytes)": func() { authd.RevokeSession(long) },
		"RevokeUser(\"\")":         func() { authd.RevokeUser("") },
		"Token(a 129-byte sid)":    func() { authd.Token(verify.Claims{SessionID: long}) },
		"Token(scopes, no client)": func() { authd.Token(verify.Claims{Scopes: []string{"email"}}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			call()
		}()
	}
	token := authd.Token(verify.Claims{})
	authd.RevokeSession(verifytest.SessionOf(token))
	authd.Sync(t, v) // the feed still works
	if _, err := v.Verify(context.Background(), token); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("a revoked token after the refused calls: %v; want ErrRevoked", err)
	}
}
