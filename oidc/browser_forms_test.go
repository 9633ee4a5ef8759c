package oidc_test

import (
	"context"
	"strings"
	"testing"

	"github.com/authd/authd"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// TestBrowserFormsSentOnceAndUncut, in Chromium with JavaScript on:
//   - the sign-in page's guard (which its CSP lets run) keeps a form from
//     being sent a second time while the first answer is on its way, and
//     lets it be sent again once the page is shown anew from the history;
//   - a password of emoji (two UTF-16 code units each, which an HTML
//     maxlength counts) signs in whole: the field cuts nothing the API
//     takes (SPEC 6.1 counts code points).
func TestBrowserFormsSentOnceAndUncut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	ctx := chromium(t, true)
	rp := newCallback(t)
	c, _, err := e.svc.CreateClient(context.Background(), authd.Client{}, authd.ClientSpec{ID: "third", Name: "Third App",
		Type: authd.ClientPublic, RedirectURIs: []string{rp.URL + "/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	e.user("cats@example.org")
	_, claims := e.login("cats@example.org")
	cats := strings.Repeat("🐱", 70) + " purring" // 78 code points, 148 UTF-16 units
	if err := e.svc.ChangePassword(context.Background(), authd.Client{}, claims, goodPassword, cats, authd.StepUp{}); err != nil {
		t.Fatal(err)
	}
	cfg := oauth2.Config{ClientID: c.ID, RedirectURL: rp.URL + "/cb", Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + "/oauth2/authorize", TokenURL: e.srv.URL + "/oauth2/token"}}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(cfg.AuthCodeURL("cats-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))),
		chromedp.WaitVisible(chromedp.CSS(`#email`)),
	); err != nil {
		t.Fatalf("the sign-in page: %v", err)
	}
	// Submit events dispatched by script send nothing; the guard's answer
	// is whether it cancels them.
	prevented, err := chromedp.Run(ctx, chromedp.Evaluate[[]bool](`(() => {
		const form = document.querySelector("form"), send = () => {
			const e = new SubmitEvent("submit", {bubbles: true, cancelable: true});
			form.dispatchEvent(e);
			return e.defaultPrevented;
		};
		const first = send(), second = send();
		window.dispatchEvent(new PageTransitionEvent("pageshow"));
		const again = send();
		window.dispatchEvent(new PageTransitionEvent("pageshow"));
		return [first, second, again];
	})()`))
	if err != nil || len(prevented) != 3 || prevented[0] || !prevented[1] || prevented[2] {
		t.Errorf("the form sent, sent again at once, sent again after pageshow: cancelled %v, %v; want [false true false]", prevented, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#email`), "cats@example.org"),
		chromedp.SendKeys(chromedp.CSS(`#password`), cats),
	); err != nil {
		t.Fatalf("type: %v", err)
	}
	if typed, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(`#password`))); err != nil || typed != cats {
		t.Errorf("the password field holds %d of the %d code points typed (%v)", len([]rune(typed)), len([]rune(cats)), err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value=allow]`)),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
}
