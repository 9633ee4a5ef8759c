package httpapi_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	cdpwa "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// TestBrowserPasskeys drives the passkey pages in Chromium with the
// DevTools virtual authenticator: add a passkey through the page, sign out,
// sign in with it (passwordless), then use it as the second factor after a
// password. It does so at the root, and under a public URL's path behind a
// proxy that strips it (the pages' scripts call the API under the path).
func TestBrowserPasskeys(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", proxyPath} {
		t.Run("path="+path, func(t *testing.T) {
			t.Parallel()
			testBrowserPasskeys(t, newEnv(t, openSQLite(t), withLocalhost(path)))
		})
	}
}

// testBrowserPasskeys is TestBrowserPasskeys on e, whose server is at
// http://localhost:PORT, with or without a path.
func testBrowserPasskeys(t *testing.T, e *env) {
	ctx := chromium(t)
	e.registerVerified("key@example.org", goodPassword)

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v (page says %q)", what, err, pageText(ctx))
		}
	}
	// The authenticator must exist (and WebAuthn be enabled) before a page
	// calls create or get; it is per tab.
	do("add a virtual authenticator", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, cdpwa.Enable, cdpwa.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, cdpwa.AddVirtualAuthenticator, cdpwa.AddVirtualAuthenticatorParams{
			Options: &cdpwa.VirtualAuthenticatorOptions{Protocol: cdpwa.AuthenticatorProtocolCtap2,
				Ctap2version: cdpwa.Ctap2versionCtap21, Transport: cdpwa.AuthenticatorTransportInternal,
				HasResidentKey: true, HasUserVerification: true, IsUserVerified: true,
				AutomaticPresenceSimulation: true}}) // no omitempty: false would override CDP's default true
		return err
	}))
	status := func(want string) {
		t.Helper()
		// The status line changes as the script goes; wait for the words.
		poll := chromedp.Poll[bool](`(() => { const s = document.getElementById("status"), a = document.getElementById("alert");
			if (a && !a.hidden) throw new Error(a.textContent);
			return !s.hidden && s.textContent.includes(` + jsString(want) + `); })()`)
		if _, err := chromedp.Run(ctx, poll); err != nil {
			t.Fatalf("waiting for %q: %v (page says %q)", want, err, pageText(ctx))
		}
	}
	amr := func() []string {
		t.Helper()
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("authd.tokens")`))
		if err != nil {
			t.Fatal(err)
		}
		var pair struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal([]byte(raw), &pair); err != nil {
			t.Fatalf("tokens in sessionStorage %q: %v", raw, err)
		}
		return amrOf(t, pair.AccessToken)
	}

	// Sign in with the password (no second factor yet), then add a passkey.
	do("password sign-in",
		chromedp.Navigate(e.srv.URL+"/sign-in/passkey"),
		chromedp.WaitVisible(chromedp.CSS(`#email`)),
		chromedp.SendKeys(chromedp.CSS(`#email`), "key@example.org"),
		chromedp.SendKeys(chromedp.CSS(`#password`), goodPassword),
		chromedp.Click(chromedp.CSS(`#password-form button[type=submit]`)))
	status("Signed in.")
	do("add a passkey",
		chromedp.Navigate(e.srv.URL+"/passkeys"),
		chromedp.WaitVisible(chromedp.CSS(`#add`)),
		chromedp.SendKeys(chromedp.CSS(`#name`), "Browser key"),
		chromedp.SendKeys(chromedp.CSS(`#password`), goodPassword),
		chromedp.Click(chromedp.CSS(`#add`)))
	status("Passkey added: Browser key.")
	do("recovery codes shown", chromedp.WaitVisible(chromedp.CSS(`#codes`)))
	if list := pageText(ctx); !strings.Contains(list, "Browser key (added") {
		t.Errorf("the list does not show the passkey: %q", list)
	}
	keys, err := e.store.Passkeys(context.Background(), e.user("key@example.org").ID)
	if err != nil || len(keys) != 1 || keys[0].Name != "Browser key" {
		t.Fatalf("stored passkeys %v, %v", keys, err)
	}

	// Sign out, then sign in with the passkey alone.
	do("sign out", chromedp.Click(chromedp.CSS(`#sign-out`)))
	status("Signed out.")
	do("passwordless sign-in",
		chromedp.Navigate(e.srv.URL+"/sign-in/passkey"),
		chromedp.WaitVisible(chromedp.CSS(`#passkey`)),
		chromedp.Click(chromedp.CSS(`#passkey`)))
	status("Signed in.")
	if got := amr(); !slices.Equal(got, []string{"hwk", "mfa"}) {
		t.Errorf("passwordless amr %v, want [hwk mfa]", got)
	}

	// Sign out, then password and the passkey as second factor.
	do("sign out again", chromedp.Click(chromedp.CSS(`#sign-out`)))
	status("Signed out.")
	do("password, then passkey",
		chromedp.SendKeys(chromedp.CSS(`#email`), "key@example.org"),
		chromedp.SendKeys(chromedp.CSS(`#password`), goodPassword),
		chromedp.Click(chromedp.CSS(`#password-form button[type=submit]`)))
	status("Signed in.")
	if got := amr(); !slices.Equal(got, []string{"pwd", "hwk", "mfa"}) {
		t.Errorf("second-factor amr %v, want [pwd hwk mfa]", got)
	}
	evs := strings.Join(e.events("key@example.org"), " ")
	for _, ev := range []string{"passkey_added/success", "passkey_used/success", "mfa_challenge_passed/success", "logout/success"} {
		if !strings.Contains(evs, ev) {
			t.Errorf("security log %s lacks %s", evs, ev)
		}
	}
	if n := strings.Count(evs, "passkey_used/success"); n != 2 {
		t.Errorf("%d passkey uses logged, want 2", n)
	}

	// An address change asked for with the passkey as step-up (through
	// this page's own functions), then confirmed on the link's page with
	// its passkey button: the link begins the ceremony itself.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => {
		const c = await assertion(await api("POST", "/v1/users/me/mfa/challenge", {}));
		await api("POST", "/v1/users/me/email", {new_email: "key@example.net", password: `+jsString(goodPassword)+`, passkey: c});
		return "asked"; })()`, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("ask for the address change: %v", err)
	}
	link := e.changeLink("key@example.net")
	do("confirm on the link's page with the passkey",
		chromedp.Navigate(e.srv.URL+"/verify-email?token="+link),
		chromedp.WaitVisible(chromedp.CSS(`#use-passkey`)),
		chromedp.SendKeys(chromedp.CSS(`#password`), goodPassword),
		chromedp.Click(chromedp.CSS(`#use-passkey`)))
	// The form is sent, and the answer is a new page: wait for its words.
	do("the change confirmed",
		chromedp.WaitVisible(chromedp.Search(`//p[contains(., "Your account now uses key@example.net")]`)))
	if n := strings.Count(strings.Join(e.events("key@example.net"), " "), "passkey_used/success"); n != 4 {
		t.Errorf("%d passkey uses logged after the change, want 4", n)
	}
}

// pageText is the text of the page's main element, for failure messages.
func pageText(ctx context.Context) string {
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main") ? document.querySelector("main").innerText : ""`))
	return s
}

func jsString(s string) string { b, _ := json.Marshal(s); return string(b) }
