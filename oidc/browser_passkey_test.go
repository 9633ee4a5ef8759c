package oidc_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/softkey"
	"github.com/authd/authd/oidc"
	"github.com/chromedp/cdproto/cdp"
	cdpwa "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// addCredential is WebAuthn.addCredential with only the members this test
// sets: cdproto's Credential always sends generateCmtgKeyOnNextOperation,
// which Chromium refuses for a CTAP2 authenticator ("CMTG is not supported").
var addCredential = cdp.Command[addCredentialParams, cdp.Empty]{Method: cdpwa.CommandAddCredential}

type addCredentialParams struct {
	AuthenticatorID cdpwa.AuthenticatorID `json:"authenticatorId"`
	Credential      virtualCredential     `json:"credential"`
}

type virtualCredential struct {
	CredentialID         []byte  `json:"credentialId"`
	IsResidentCredential bool    `json:"isResidentCredential"`
	RpID                 string  `json:"rpId"`
	PrivateKey           []byte  `json:"privateKey"`
	UserHandle           []byte  `json:"userHandle"`
	SignCount            float64 `json:"signCount"`
}

// TestBrowserPasskeyButton presses the hosted pages' passkey buttons in
// Chromium, JavaScript on, with the DevTools virtual authenticator holding
// the user's passkey: passwordless, then as the second factor after the
// password, each time through to the relying party with a code whose ID
// token carries the amr. WebAuthn refuses IP addresses, so the browser
// uses http://localhost:PORT. It does so at the root, and under a public
// URL's path behind a proxy that strips it (the button's form and the
// script's request for the options are under the path).
func TestBrowserPasskeyButton(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", proxyPath} {
		t.Run("path="+path, func(t *testing.T) {
			t.Parallel()
			testPasskeyButton(t, path)
		})
	}
}

// testPasskeyButton is TestBrowserPasskeyButton with the public URL at
// http://localhost:PORT+path; with a path, the browser goes through a
// proxy that strips it.
func testPasskeyButton(t *testing.T, path string) {
	var front *httptest.Server
	if path != "" {
		front = httptest.NewUnstartedServer(nil)
	}
	var origin, local string
	e := newEnvConfig(t, openSQLite(t), func(c *authd.Config) {
		u, _ := url.Parse(c.PublicURL)
		if front != nil {
			u, _ = url.Parse("http://" + front.Listener.Addr().String())
		}
		origin = "http://localhost:" + u.Port()
		local = origin + path
		c.WebAuthnRPID, c.WebAuthnOrigins = "localhost", []string{origin}
	}, func(o *oidc.Options) { o.PublicURL = local })
	if front != nil {
		front.Config.Handler = http.StripPrefix(path, e.srv.Config.Handler)
		front.Start()
		t.Cleanup(front.Close)
	}
	ctx := chromium(t, true)

	// The passkey is registered with the software key, whose private key
	// then goes into the virtual authenticator.
	e.user("vera@example.org")
	pair, _ := e.login("vera@example.org")
	k := softkey.New(t, "localhost", origin)
	e.addPasskey(pair, k, authd.StepUp{})

	cb := newCallback(t)
	c, secret, err := e.svc.CreateClient(context.Background(), authd.Client{}, authd.ClientSpec{ID: "web", Name: "Web App",
		Type: authd.ClientConfidential, FirstParty: true, RedirectURIs: []string{cb.URL + "/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth2.Config{ClientID: c.ID, ClientSecret: secret, RedirectURL: cb.URL + "/cb", Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: local + "/oauth2/authorize", TokenURL: e.srv.URL + "/oauth2/token"}}
	r := e.rp(c, secret)
	r.cfg = cfg

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		// A step's own deadline leaves time to say what the page shows.
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			t.Fatalf("%s: %v (page says %q)", what, err, text)
		}
	}
	do("add the passkey to a virtual authenticator", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, cdpwa.Enable, cdpwa.EnableParams{}); err != nil {
			return err
		}
		auth, err := cdp.Call(ctx, tg, cdpwa.AddVirtualAuthenticator, cdpwa.AddVirtualAuthenticatorParams{
			Options: &cdpwa.VirtualAuthenticatorOptions{Protocol: cdpwa.AuthenticatorProtocolCtap2,
				Ctap2version: cdpwa.Ctap2versionCtap21, Transport: cdpwa.AuthenticatorTransportInternal,
				HasResidentKey: true, HasUserVerification: true, IsUserVerified: true,
				AutomaticPresenceSimulation: true}})
		if err != nil {
			return err
		}
		_, err = cdp.Call(ctx, tg, addCredential, addCredentialParams{AuthenticatorID: auth.AuthenticatorID,
			Credential: virtualCredential{CredentialID: k.ID, IsResidentCredential: true, RpID: "localhost",
				PrivateKey: k.PKCS8(), UserHandle: k.UserHandle, SignCount: float64(k.Count)}})
		return err
	}))
	// amr redeems the code the relying party got and returns its ID
	// token's amr.
	amr := func(verifier string) []string {
		t.Helper()
		_, idt := r.exchange(t, cb.query().Get("code"), verifier)
		var claims struct {
			AMR []string `json:"amr"`
		}
		idt.Claims(&claims)
		return claims.AMR
	}

	verifier := oauth2.GenerateVerifier()
	do("passwordless",
		chromedp.Navigate(cfg.AuthCodeURL("s1", oauth2.S256ChallengeOption(verifier))),
		chromedp.WaitVisible(chromedp.CSS(`#passkey-button`)),
		chromedp.Click(chromedp.CSS(`#passkey-button`)),
		chromedp.WaitVisible(chromedp.CSS(`#done`)))
	if got := amr(verifier); !slices.Equal(got, []string{"hwk", "mfa"}) {
		t.Errorf("passwordless amr %v; want hwk mfa", got)
	}

	// A new browser context would lose the authenticator; prompt=login
	// (a second on, so that the session is older than the request) asks
	// again instead, and the password then the passkey.
	e.clock.Advance(time.Second)
	verifier = oauth2.GenerateVerifier()
	do("password",
		chromedp.Navigate(cfg.AuthCodeURL("s2", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "login"))),
		chromedp.WaitVisible(chromedp.CSS(`#email`)),
		chromedp.SendKeys(chromedp.CSS(`#email`), "vera@example.org"),
		chromedp.SendKeys(chromedp.CSS(`#password`), goodPassword),
		chromedp.Click(chromedp.CSS(`form[action="`+path+`/signin"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#code`)))
	do("then the passkey",
		chromedp.WaitVisible(chromedp.CSS(`#passkey-button`)),
		chromedp.Click(chromedp.CSS(`#passkey-button`)),
		chromedp.WaitVisible(chromedp.CSS(`#done`)))
	if got := amr(verifier); !slices.Equal(got, []string{"pwd", "hwk", "mfa"}) {
		t.Errorf("second-factor amr %v; want pwd hwk mfa", got)
	}
}
