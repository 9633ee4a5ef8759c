package oidc_test

import (
	"context"
	"html"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/oidc"
	"golang.org/x/oauth2"
)

// secondStep signs email (a TOTP user) in to r on a new browser as far as
// the second-factor page.
func (e *env) secondStep(r *rp, email string) *browser {
	e.t.Helper()
	b := e.browser()
	b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))).signIn(email, goodPassword)
	if !strings.Contains(b.body, `name="mfa_token"`) {
		e.t.Fatalf("no second-factor page: %d %s", b.last.StatusCode, b.body)
	}
	return b
}

// TestSecondStepSaysWhyItCannotFinish: a second-factor form that can no
// longer finish its sign-in shows the sign-in page for the same application
// again, saying why: the step already done by an earlier sending of the
// form (a second click on a slow answer, whose first cookie the browser
// never got), the account changed since the password step (every session
// ended), or the challenge spent (expired). The second-factor page names
// the account (the app's entry to read), and the sign-in page again has its
// address filled in.
func TestSecondStepSaysWhyItCannotFinish(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		secret := e.mfaUser("twice@example.org")
		r := e.rp(e.client("app", authd.ClientConfidential, false))
		b := e.secondStep(r, "twice@example.org")
		if !strings.Contains(b.body, "to continue to <strong><bdi>app</bdi></strong>") ||
			!strings.Contains(b.body, "Signing in as <strong><bdi>twice@example.org</bdi></strong>") {
			t.Errorf("the second-factor page does not name the application and the account:\n%s", b.body)
		}
		f := b.form()
		f.Set("code", totpAt(t, secret, e.clock.Now()))
		if b.post(oidc.MFAPath, f); !strings.Contains(b.body, `value="allow"`) {
			t.Fatalf("the code: %d %s", b.last.StatusCode, b.body)
		}
		b.post(oidc.MFAPath, f) // the same form again
		if b.last.StatusCode != http.StatusUnauthorized || !strings.Contains(b.body, "already done by an earlier sending of the form") ||
			!strings.Contains(b.body, "to continue to <strong><bdi>app</bdi></strong>") || !strings.Contains(b.body, `name="password"`) ||
			!strings.Contains(b.body, `name="email" value="twice@example.org"`) {
			t.Errorf("the form sent twice: %d %s", b.last.StatusCode, b.body)
		}

		e.clock.Advance(30 * time.Second) // the next code
		secret = e.mfaUser("ended@example.org")
		u, err := e.store.UserByEmail(context.Background(), "ended@example.org")
		if err != nil {
			t.Fatal(err)
		}
		b = e.secondStep(r, "ended@example.org")
		if err := e.svc.RevokeUserSessions(context.Background(), authd.Client{}, u.ID); err != nil {
			t.Fatal(err)
		}
		f = b.form()
		f.Set("code", totpAt(t, secret, e.clock.Now()))
		b.post(oidc.MFAPath, f)
		if b.last.StatusCode != http.StatusUnauthorized || !strings.Contains(b.body, "The account changed while you were signing in") {
			t.Errorf("every session ended between the password and the code: %d %s", b.last.StatusCode, b.body)
		}

		b = e.secondStep(r, "ended@example.org")
		e.clock.Advance(authd.MFAChallengeTTL) // the authorization request lives on
		f = b.form()
		f.Set("code", totpAt(t, secret, e.clock.Now()))
		b.post(oidc.MFAPath, f)
		if b.last.StatusCode != http.StatusUnauthorized || !strings.Contains(b.body, "took too long or had too many wrong codes") {
			t.Errorf("an expired challenge: %d %s", b.last.StatusCode, b.body)
		}
	})
}

// TestAppFieldTakesARecoveryCode: the authenticator app's field takes a
// recovery code too, told by its shape (as the JSON step-ups do), so a
// pasted recovery code is neither cut nor refused there; the recovery-code
// form offers the way back to the app's.
func TestAppFieldTakesARecoveryCode(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.user("paste@example.org")
		_, claims := e.login("paste@example.org")
		enrol, err := e.svc.EnrollTOTP(ctx, authd.Client{}, claims, goodPassword, authd.StepUp{})
		if err != nil {
			t.Fatal(err)
		}
		codes, err := e.svc.ConfirmTOTP(ctx, authd.Client{}, claims, totpAt(t, enrol.Secret, e.clock.Now()))
		if err != nil || len(codes) == 0 {
			t.Fatalf("confirm: %v, %v", codes, err)
		}
		r := e.rp(e.client("app", authd.ClientConfidential, false))
		b := e.secondStep(r, "paste@example.org")
		if !strings.Contains(b.body, `autocomplete="one-time-code" required maxlength="32"`) {
			t.Errorf("the app's field would cut a pasted recovery code:\n%s", b.body)
		}

		// To the recovery-code form and back.
		f := b.form()
		f.Set("method", authd.MethodRecoveryCode)
		f.Set("switch", "1")
		if b.post(oidc.MFAPath, f); !strings.Contains(b.body, "A recovery code") || !strings.Contains(b.body, "Use the authenticator app instead") ||
			!strings.Contains(b.body, "Signing in as <strong><bdi>paste@example.org</bdi></strong>") {
			t.Fatalf("the recovery-code form (naming the account): %d %s", b.last.StatusCode, b.body)
		}
		f = b.form()
		f.Set("method", authd.MethodTOTP)
		f.Set("switch", "1")
		if b.post(oidc.MFAPath, f); !strings.Contains(b.body, "from your authenticator app") || !strings.Contains(b.body, "Use a recovery code instead") {
			t.Fatalf("back to the app's form: %d %s", b.last.StatusCode, b.body)
		}

		f = b.form()
		f.Set("code", "12345")
		if b.post(oidc.MFAPath, f); b.last.StatusCode != http.StatusBadRequest || !strings.Contains(b.body, "or a recovery code") {
			t.Errorf("a code of neither shape: %d %s", b.last.StatusCode, b.body)
		}
		f = b.form()
		f.Set("code", " "+strings.ToUpper(codes[0])+" ")
		if b.post(oidc.MFAPath, f); !strings.Contains(b.body, `value="allow"`) {
			t.Fatalf("a recovery code in the app's field: %d %s", b.last.StatusCode, b.body)
		}
	})
}

// TestFormOnlyPathsAnswerAPage: opening an address that takes only a
// page's form (Enter in the address bar after a wrong code) shows a page
// saying so, not the API's problem+json.
func TestFormOnlyPathsAnswerAPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	for _, path := range []string{oidc.MFAPath, oidc.PasskeyPath, oidc.ConsentPath} {
		b := e.browser().get(e.srv.URL + path)
		if b.last.StatusCode != http.StatusMethodNotAllowed || b.last.Header.Get("Allow") != "POST" ||
			!strings.HasPrefix(b.last.Header.Get("Content-Type"), "text/html") || !strings.Contains(b.body, "cannot be opened on its own") {
			t.Errorf("GET %s: %d %v\n%s", path, b.last.StatusCode, b.last.Header, b.body)
		}
	}
}

// TestLockedPagesSayHowLong: a page refused for a lock says how long it
// lasts, as Retry-After tells a program.
func TestLockedPagesSayHowLong(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.user("held@example.org")
	c, cs := e.client("app", authd.ClientConfidential, false)
	b := e.browser()
	b.get(e.rp(c, cs).cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	for range 5 {
		b.signIn("held@example.org", "not the password at all")
	}
	b.signIn("held@example.org", goodPassword)
	if b.last.StatusCode != http.StatusLocked || b.last.Header.Get("Retry-After") != "900" ||
		!strings.Contains(b.body, "Try again in 15 minutes.") {
		t.Errorf("a locked account's sign-in: %d Retry-After %q\n%s", b.last.StatusCode, b.last.Header.Get("Retry-After"), b.body)
	}
}

// TestFormPagesSendOnce: every page whose form starts a session, issues a
// code or sends a mail runs the guard that keeps it from being sent twice
// (a double click on sign-up mailed the new user that someone tried to
// register; on forgot it spent another of the address's three mails an
// hour), under the CSP's nonce.
func TestFormPagesSendOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	c, cs := e.client("app", authd.ClientConfidential, false)
	b := e.browser()
	b.get(e.rp(c, cs).cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	request := b.form().Get("request")
	for _, path := range []string{oidc.SignInPath, oidc.SignUpPath, oidc.ForgotPath, oidc.ResendPath} {
		b.get(e.srv.URL + path + "?request=" + request)
		m := scriptNonceRE.FindStringSubmatch(b.body)
		if b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, "Date.now() - sent") || m == nil ||
			!strings.Contains(b.last.Header.Get("Content-Security-Policy"), "script-src 'nonce-"+html.UnescapeString(m[1])+"'") {
			t.Errorf("GET %s: %d CSP %q, without the guard or its nonce:\n%s", path, b.last.StatusCode,
				b.last.Header.Get("Content-Security-Policy"), b.body)
		}
	}
}
