package oidc_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
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

// proxied is a browser in front of a proxy that serves authd under
// proxyPath: it follows the redirects on the proxy's host, stops at any
// other (the relying party's callback), and reads each page's forms and
// links, which must all lead under proxyPath.
type proxied struct {
	t    *testing.T
	host string
	http *http.Client
	last *http.Response
	body string
	page *htmlform.Page
}

func newProxied(t *testing.T, front *httptest.Server) *proxied {
	jar, _ := cookiejar.New(nil)
	b := &proxied{t: t, host: strings.TrimPrefix(front.URL, "http://")}
	b.http = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != b.host {
			return http.ErrUseLastResponse
		}
		if !strings.HasPrefix(req.URL.Path, proxyPath+"/") {
			t.Errorf("%s %s redirected to %s, outside %s", via[len(via)-1].Method, via[len(via)-1].URL, req.URL, proxyPath)
		}
		return nil
	}}
	return b
}

func (b *proxied) do(req *http.Request) *proxied {
	b.t.Helper()
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.last, b.body, b.page = resp, string(body), nil
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		if b.page, err = htmlform.Parse(resp.Request.URL, b.body); err != nil {
			b.t.Fatalf("%s: %v", resp.Request.URL, err)
		}
		for _, a := range b.page.Addresses() {
			if !strings.HasPrefix(a.Path, proxyPath+"/") {
				b.t.Errorf("the page at %s sends the browser to %s, outside %s", resp.Request.URL, a, proxyPath)
			}
		}
	}
	return b
}

func (b *proxied) get(u string) *proxied {
	b.t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	return b.do(req)
}

// submit sends f with its hidden fields and set (name, value, …).
func (b *proxied) submit(f *htmlform.Form, set ...string) *proxied {
	b.t.Helper()
	v := url.Values{}
	for k, vs := range f.Fields {
		v[k] = vs
	}
	for i := 0; i+1 < len(set); i += 2 {
		v.Set(set[i], set[i+1])
	}
	req, _ := http.NewRequest(f.Method, f.Action.String(), strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// form is the page's first form with an input named name.
func (b *proxied) form(name string) *htmlform.Form {
	b.t.Helper()
	if b.page == nil || b.page.FormWith(name) == nil {
		b.t.Fatalf("no form with %s at %s: %d %s", name, b.last.Request.URL, b.last.StatusCode, b.body)
	}
	return b.page.FormWith(name)
}

// link is the page's link whose path ends in suffix.
func (b *proxied) link(suffix string) string {
	b.t.Helper()
	if b.page != nil {
		for _, l := range b.page.Links {
			if strings.HasSuffix(l.Path, suffix) {
				return l.String()
			}
		}
	}
	b.t.Fatalf("no link to …%s at %s: %s", suffix, b.last.Request.URL, b.body)
	return ""
}

// fetchRE finds the passkey button's request for the options: the script's
// fetch(ADDRESS, …), ADDRESS strings joined by +.
var fetchRE = regexp.MustCompile(`fetch\(([^,]+),`)

// fetched is the address the page's script fetches, as the script
// computes it from its string literals.
func (b *proxied) fetched() *url.URL {
	b.t.Helper()
	for _, s := range b.page.Scripts {
		m := fetchRE.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		var path string
		for part := range strings.SplitSeq(m[1], "+") {
			var lit string
			if err := json.Unmarshal([]byte(strings.TrimSpace(part)), &lit); err != nil {
				b.t.Fatalf("the script fetches %s: %v", m[1], err)
			}
			path += lit
		}
		u, err := b.page.URL.Parse(path)
		if err != nil {
			b.t.Fatal(err)
		}
		return u
	}
	b.t.Fatalf("no fetch in the scripts of %s", b.page.URL)
	return nil
}

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
	b := newProxied(t, front)

	// The authorization request as a client's form POST: a 303 to its GET,
	// then to the sign-in page.
	authorize, _ := url.Parse(r.cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), gooidc.Nonce("n")))
	query := authorize.Query()
	authorize.RawQuery = ""
	req, _ := http.NewRequest("POST", authorize.String(), strings.NewReader(query.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	b.do(req)
	if b.last.StatusCode != http.StatusOK {
		t.Fatalf("the authorization request: %d at %s; want the sign-in page: %s", b.last.StatusCode, b.last.Request.URL, b.body)
	}
	signIn, signInURL := b.page, b.last.Request.URL.String()

	// The passkey button's script asks the API for its options where the
	// page says.
	if begin := b.fetched(); begin.Path != proxyPath+"/v1/auth/passkey/begin" {
		t.Errorf("the passkey script fetches %s; want it under %s", begin, proxyPath)
	} else if resp, err := front.Client().Post(begin.String(), "application/json", strings.NewReader("{}")); err != nil ||
		resp.StatusCode != http.StatusOK {
		t.Errorf("the passkey script's request: %v, %v; want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	if signIn.FormByID("passkey-form") == nil {
		t.Errorf("no passkey form on the sign-in page: %s", b.body)
	}

	// Create an account, from the sign-in page's link; its notice's links.
	b.get(b.link("/signup")).submit(b.form("password"), "email", "new@example.org", "password", goodPassword, "consent", "yes")
	if b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, "Check your email") {
		t.Fatalf("sign-up: %d %s", b.last.StatusCode, b.body)
	}
	b.get(b.link("/signin/verify-email")).submit(b.form("email"), "email", "new@example.org")
	if b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, "Check your email") {
		t.Errorf("a new verification link: %d %s", b.last.StatusCode, b.body)
	}
	b.get(b.link("/signin"))
	if b.last.StatusCode != http.StatusOK || b.page.FormWith("password") == nil {
		t.Errorf("back to sign in: %d %s", b.last.StatusCode, b.body)
	}
	// Forgot the password, from the sign-in page's link.
	b.get(signInURL).get(b.link("/signin/forgot")).submit(b.form("email"), "email", "pia@example.org")
	if b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, "Check your email") {
		t.Errorf("forgot password: %d %s", b.last.StatusCode, b.body)
	}
	if !strings.HasSuffix(b.get(b.link("/signin")).last.Request.URL.Path, "/signin") {
		t.Errorf("back to sign in from the forgot-password page: %s", b.last.Request.URL)
	}

	// The new account's sign-in, refused until its address is verified,
	// offers to send the link again.
	b.submit(b.form("password"), "email", "new@example.org", "password", goodPassword)
	if b.page == nil || b.page.FormWith("email") == nil || b.page.FormWith("email").Has("password") ||
		b.page.FormWith("email").Action.Path != proxyPath+oidc.ResendPath {
		t.Errorf("an unverified sign-in: %d %s; want the form that sends the link again, under %s", b.last.StatusCode, b.body, proxyPath)
	}

	// Password, second factor, consent, and back to the relying party.
	b.submit(b.form("password"), "email", "pia@example.org", "password", goodPassword)
	b.submit(b.form("code"), "code", totpAt(t, secret, e.clock.Now()))
	if b.page == nil || b.page.FormWith("request") == nil || !strings.Contains(b.body, "Allow access?") {
		t.Fatalf("after the second factor: %d %s; want the consent page", b.last.StatusCode, b.body)
	}
	b.submit(b.form("request"), "decision", "allow")
	cb, _ := url.Parse(b.last.Header.Get("Location"))
	if b.last.StatusCode != http.StatusFound || cb == nil || !strings.HasPrefix(cb.String(), rpCallback+"?") ||
		cb.Query().Get("state") != "st" || cb.Query().Get("iss") != public {
		t.Fatalf("after consent: %d to %q; want the callback with the state and iss %s", b.last.StatusCode, b.last.Header.Get("Location"), public)
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
	b.get(claims.EndSession + "?" + q.Encode()).submit(b.form("csrf"))
	if loc := b.last.Header.Get("Location"); b.last.StatusCode != http.StatusSeeOther || loc != "https://rp.example.org/bye" {
		t.Errorf("sign-out: %d to %q; want a 303 to the relying party", b.last.StatusCode, loc)
	}
}
