package httpapi_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium with JavaScript off for the pages, or
// skips the test (fails it under CI) when Chromium is not installed.
func browser(t *testing.T) context.Context {
	t.Helper()
	bctx := chromium(t)
	disableScripts := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	})
	if err := chromedp.Do(bctx, disableScripts); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return bctx
}

// chromium starts headless Chromium (JavaScript on), or skips the test
// (fails it under CI) when Chromium is not installed.
func chromium(t *testing.T) context.Context {
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
		t.Skip("Chromium is not installed: skipping the browser tests (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	return bctx
}

// localLink points a mail's link at the test server.
func (e *env) localLink(link string) string {
	return strings.Replace(link, e.cfg.PublicURL, e.srv.URL, 1)
}

func TestBrowserVerifyAndReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	ctx := browser(t)

	// Verify: open the link from the mail, press the button.
	want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "web@example.org", "password": goodPassword, "consent": true}), 202, "")
	link := e.localLink(e.mail.last(t, authd.MailVerifyEmail, "web@example.org").Link)
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("open the verification link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`button[type=submit]`)))
	if h := text("h1"); h != "Confirm your email address" || e.user("web@example.org").EmailVerified {
		t.Fatalf("verification page: heading %q, verified before the button %v", h, e.user("web@example.org").EmailVerified)
	}
	do("press the button", chromedp.Click(chromedp.CSS(`button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`.ok`)))
	if body := text("main"); !strings.Contains(body, "Your email address is confirmed") || !e.user("web@example.org").EmailVerified {
		t.Errorf("after the button: %q, verified %v", body, e.user("web@example.org").EmailVerified)
	}

	// Reset: a weak password is refused inline, then a good one is set.
	want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "web@example.org"}), 202, "")
	link = e.localLink(e.mail.last(t, authd.MailPasswordReset, "web@example.org").Link)
	do("submit a weak password",
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS(`#new_password`)),
		chromedp.SendKeys(chromedp.CSS(`#new_password`), "qwertyuiop123"),
		chromedp.SendKeys(chromedp.CSS(`#confirm_password`), "qwertyuiop123"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#form-error`)),
	)
	if alert := text("#form-error"); !strings.Contains(alert, "most commonly used passwords") {
		t.Errorf("inline error %q", alert)
	}
	before := e.user("web@example.org").PasswordHash
	do("submit a good password",
		chromedp.SendKeys(chromedp.CSS(`#new_password`), "a browser-made passphrase"),
		chromedp.SendKeys(chromedp.CSS(`#confirm_password`), "a browser-made passphrase"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`.ok`)),
	)
	if body := text("main"); !strings.Contains(body, "Your password was changed") || e.user("web@example.org").PasswordHash == before {
		t.Errorf("after the reset: %q, hash changed %v", body, e.user("web@example.org").PasswordHash != before)
	}
	e.login("web@example.org", "a browser-made passphrase")

	// The used link now offers a new one.
	do("open the used link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`#email`)))
	if body := text("main"); !strings.Contains(body, "expired or was already used") {
		t.Errorf("used link page: %q", body)
	}
	do("ask for a new link",
		chromedp.SendKeys(chromedp.CSS(`#email`), "web@example.org"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`.ok`)),
	)
	if n := e.mail.count(authd.MailPasswordReset, "web@example.org"); n != 2 {
		t.Errorf("%d reset mails after asking for a new link, want 2", n)
	}
}
