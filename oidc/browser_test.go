package oidc_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// headless starts Chromium with JavaScript off, or skips the test (fails
// it under CI) when Chromium is not installed.
func headless(t *testing.T) context.Context {
	t.Helper()
	return chromium(t, false)
}

// chromium starts headless Chromium, with JavaScript on when script is
// true; headless says when Chromium is not installed.
func chromium(t *testing.T, script bool) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("Chromium is not installed: CI must run the browser tests (.ci/run installs it)")
		}
		t.Skip("Chromium is not installed: skipping the browser test (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	start := chromedp.Func(func(context.Context, *chromedp.Target) error { return nil })
	if !script {
		start = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
			return err
		})
	}
	if err := chromedp.Do(bctx, start); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return bctx
}

// callback is a relying party's redirect URI on its own origin, for the
// browser tests: it keeps the query of the last redirect to URL+"/cb" and
// shows a page with #done.
type callback struct {
	URL string
	mu  sync.Mutex
	got url.Values
}

func newCallback(t *testing.T) *callback { return newCallbackAt(t, "127.0.0.1:0") }

// newCallbackAt is newCallback listening on addr.
func newCallbackAt(t *testing.T, addr string) *callback {
	c := &callback{}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("no listener on %s here (no IPv6 loopback?): %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cb" {
			http.NotFound(w, r) // the favicon
			return
		}
		c.mu.Lock()
		c.got = r.URL.Query()
		c.mu.Unlock()
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<!DOCTYPE html><p id="done">signed in</p>`))
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

// query returns the last redirect's query, and forgets it.
func (c *callback) query() url.Values {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.got
	c.got = nil
	return got
}

// TestBrowserIPv6LoopbackRedirect: a native app's redirect to the IPv6
// loopback address (RFC 8252 §7.3: http://[::1]:port) reaches it in
// Chromium. CSP cannot name an IPv6 literal in form-action, and a browser
// drops such a source: the pages allow the scheme instead, or the redirect
// after Allow would be blocked with the code spent.
func TestBrowserIPv6LoopbackRedirect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	ctx := headless(t)
	rp := newCallbackAt(t, "[::1]:0")
	c, _, err := e.svc.CreateClient(context.Background(), authd.Client{}, authd.ClientSpec{ID: "native", Name: "Native App",
		Type: authd.ClientPublic, RedirectURIs: []string{rp.URL + "/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	e.user("six@example.org")
	cfg := oauth2.Config{ClientID: c.ID, RedirectURL: rp.URL + "/cb", Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + "/oauth2/authorize", TokenURL: e.srv.URL + "/oauth2/token"}}
	err = chromedp.Do(ctx,
		chromedp.Navigate(cfg.AuthCodeURL("v6-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))),
		chromedp.WaitVisible(chromedp.CSS(`#email`)),
		chromedp.SendKeys(chromedp.CSS(`#email`), "six@example.org"),
		chromedp.SendKeys(chromedp.CSS(`#password`), goodPassword),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value=allow]`)),
		chromedp.Click(chromedp.CSS(`button[value=allow]`)),
		chromedp.WaitVisible(chromedp.CSS(`#done`)),
	)
	if err != nil {
		t.Fatalf("sign in and allow, redirected to %s: %v", rp.URL, err)
	}
	if got := rp.query(); got.Get("code") == "" || got.Get("state") != "v6-state" {
		t.Errorf("the app on [::1] got %v; want a code and the state", got)
	}
}

// TestBrowserSignInJavaScriptOff signs in through the real pages in
// Chromium with JavaScript off: sign-in, the TOTP step, consent, then the
// redirect to a relying party on another origin, which the pages' CSP
// (form-action) must let through.
func TestBrowserSignInJavaScriptOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	ctx := headless(t)

	rp := newCallback(t)
	c, _, err := e.svc.CreateClient(context.Background(), authd.Client{}, authd.ClientSpec{ID: "web", Name: "Web App",
		Type: authd.ClientPublic, RedirectURIs: []string{rp.URL + "/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	secret := e.mfaUser("web@example.org")
	cfg := oauth2.Config{ClientID: c.ID, RedirectURL: rp.URL + "/cb", Scopes: []string{"openid", "email"},
		Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + "/oauth2/authorize", TokenURL: e.srv.URL + "/oauth2/token"}}

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("sign in",
		chromedp.Navigate(cfg.AuthCodeURL("browser-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))),
		chromedp.WaitVisible(chromedp.CSS(`#email`)),
		chromedp.SendKeys(chromedp.CSS(`#email`), "web@example.org"),
		chromedp.SendKeys(chromedp.CSS(`#password`), goodPassword),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#code`)),
	)
	do("the second factor",
		chromedp.SendKeys(chromedp.CSS(`#code`), totpAt(t, secret, e.clock.Now())),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value=allow]`)),
	)
	do("consent", chromedp.Click(chromedp.CSS(`button[value=allow]`)), chromedp.WaitVisible(chromedp.CSS(`#done`)))
	if got := rp.query(); got.Get("code") == "" || got.Get("state") != "browser-state" || got.Get("iss") != e.srv.URL {
		t.Errorf("the relying party got %v; want a code, the state and iss", got)
	}
}

// TestBrowserConsentArmsAllow: with JavaScript on, the consent page's
// script (which its CSP lets run) holds Allow while the window is out of
// focus and gives it back a moment after it returns, so that a click or a
// held key meant for the page that brought it up cannot land on Allow.
func TestBrowserConsentArmsAllow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	ctx := chromium(t, true)
	rp := newCallback(t)
	c, _, err := e.svc.CreateClient(context.Background(), authd.Client{}, authd.ClientSpec{ID: "third", Name: "Third App",
		Type: authd.ClientPublic, RedirectURIs: []string{rp.URL + "/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	e.user("arm@example.org")
	cfg := oauth2.Config{ClientID: c.ID, RedirectURL: rp.URL + "/cb", Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + "/oauth2/authorize", TokenURL: e.srv.URL + "/oauth2/token"}}
	err = chromedp.Do(ctx,
		chromedp.Navigate(cfg.AuthCodeURL("arm-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))),
		chromedp.WaitVisible(chromedp.CSS(`#email`)),
		chromedp.SendKeys(chromedp.CSS(`#email`), "arm@example.org"),
		chromedp.SendKeys(chromedp.CSS(`#password`), goodPassword),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value=allow]`)),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	disarmed, err := chromedp.Run(ctx, chromedp.Evaluate[bool](
		`window.dispatchEvent(new Event("blur")), document.getElementById("allow").disabled`))
	if err != nil || !disarmed {
		t.Errorf("Allow after the window lost focus: disabled %v, %v; want disabled", disarmed, err)
	}
	// Back in focus, it is held a moment more (the delay itself is not
	// timed here: the machines are shared), then given back.
	held, err := chromedp.Run(ctx, chromedp.Evaluate[bool](
		`window.dispatchEvent(new Event("focus")), document.getElementById("allow").disabled`))
	if err != nil || !held {
		t.Errorf("Allow as the window came back into focus: disabled %v, %v; want held a moment", held, err)
	}
	err = chromedp.Do(ctx,
		chromedp.WaitEnabled(chromedp.CSS(`button[value=allow]`)),
		chromedp.Click(chromedp.CSS(`button[value=allow]`)),
		chromedp.WaitVisible(chromedp.CSS(`#done`)),
	)
	if err != nil {
		t.Fatalf("allow, redirected to %s: %v", rp.URL, err)
	}
	if got := rp.query(); got.Get("code") == "" || got.Get("state") != "arm-state" {
		t.Errorf("the relying party got %v; want a code and the state", got)
	}
}
