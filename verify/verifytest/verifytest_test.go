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

// refusedSoon waits, within a few seconds, for v to refuse token as
// revoked: the feed brings a revocation within a moment.
func refusedSoon(t *testing.T, v *verify.Verifier, token string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(context.Background(), token)
		if errors.Is(err, verify.ErrRevoked) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a revoked token still: %v; want ErrRevoked", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

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
	refusedSoon(t, v, token)
	if status, _ := get(token); status != http.StatusUnauthorized {
		t.Errorf("a revoked session's token through Middleware: %d; want 401", status)
	}
	other := authd.Token(verify.Claims{Subject: "user-1"})
	authd.RevokeUser("user-1")
	refusedSoon(t, v, other)

	app := authd.Token(verify.Claims{ClientID: "app", Scopes: []string{"openid", "email"}})
	if _, err := v.Verify(context.Background(), app); !errors.Is(err, verify.ErrClient) {
		t.Errorf("a client's token, the client not named: %v; want ErrClient", err)
	}
	o := authd.Options()
	o.Clients = []string{"app"}
	apps, err := verify.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer apps.Close()
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
	for name, tok := range map[string]string{"junk": "x.y.z", "another server's": foreign} {
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
