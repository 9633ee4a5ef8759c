package oidc_test

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/softkey"
	"github.com/authd/authd/oidc"
	"golang.org/x/oauth2"
)

// The passkey button of the hosted pages (issues 9 and 10), driven as its
// script drives it: request options from the JSON API, the authenticator's
// answer, the form post.

const (
	rpID     = "auth.example.org"
	rpOrigin = "https://auth.example.org"
)

// newPasskeyEnv is newEnv with passkeys on.
func newPasskeyEnv(t *testing.T, store authd.Store) *env {
	return newEnvConfig(t, store, func(c *authd.Config) {
		c.WebAuthnRPID, c.WebAuthnOrigins = rpID, []string{rpOrigin}
	})
}

// passkeyUser is user with a passkey, returned; backup makes it a synced
// passkey (amr swk rather than hwk).
func (e *env) passkeyUser(email string, backup bool) (*authd.User, *softkey.Key) {
	e.t.Helper()
	u := e.user(email)
	k := softkey.New(e.t, rpID, rpOrigin)
	k.Backup = backup
	pair, _ := e.login(email)
	e.addPasskey(pair, k, authd.StepUp{})
	return u, k
}

// addPasskey registers k as a passkey of the user of pair (proof: the
// step-up when they have a second factor), then ends pair's session: the
// sessions a test counts are the pages'.
func (e *env) addPasskey(pair *authd.TokenPair, k *softkey.Key, proof authd.StepUp) {
	e.t.Helper()
	ctx := context.Background()
	claims, err := e.svc.Authenticate(ctx, pair.AccessToken)
	if err != nil {
		e.t.Fatal(err)
	}
	raw, err := e.svc.BeginPasskeyRegistration(ctx, authd.Client{}, claims, goodPassword, proof)
	if err != nil {
		e.t.Fatal(err)
	}
	var options struct{ PublicKey map[string]any }
	if err := json.Unmarshal(raw, &options); err != nil {
		e.t.Fatal(err)
	}
	cred, _ := json.Marshal(k.Create(options.PublicKey))
	if _, err := e.svc.FinishPasskeyRegistration(ctx, authd.Client{}, claims, "laptop", cred); err != nil {
		e.t.Fatal(err)
	}
	if err := e.svc.EndSession(ctx, authd.Client{}, pair.SessionID); err != nil {
		e.t.Fatal(err)
	}
}

var passkeyFormRE = regexp.MustCompile(`(?s)<form method="post" action="/signin/passkey" id="passkey-form" hidden>(.*?)</form>`)

// passkeyForm returns the hidden fields of the page's passkey form.
func (b *browser) passkeyForm() url.Values {
	b.t.Helper()
	m := passkeyFormRE.FindStringSubmatch(b.body)
	if m == nil {
		b.t.Fatalf("no passkey button: %d %s", b.last.StatusCode, b.body)
	}
	out := url.Values{}
	for _, h := range hiddenRE.FindAllStringSubmatch(m[1], -1) {
		out.Set(h[1], html.UnescapeString(h[2]))
	}
	return out
}

// passkeySignIn presses the passkey button of the page the browser is on:
// request options from POST /v1/auth/passkey/begin (with the page's
// mfa_token when it has one), k's assertion, the form posted after spoil
// changed it (nil: as the script posts it).
func (b *browser) passkeySignIn(k *softkey.Key, spoil func(url.Values)) *browser {
	b.t.Helper()
	f := b.passkeyForm()
	begin := map[string]string{}
	if tok := f.Get("mfa_token"); tok != "" {
		begin["mfa_token"] = tok
	}
	body, _ := json.Marshal(begin)
	req, _ := http.NewRequest("POST", b.e.srv.URL+"/v1/auth/passkey/begin", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var options struct{ PublicKey map[string]any }
	if err := json.NewDecoder(resp.Body).Decode(&options); err != nil || resp.StatusCode != http.StatusOK {
		b.t.Fatalf("passkey begin: %d %v", resp.StatusCode, err)
	}
	cred, _ := json.Marshal(k.Get(options.PublicKey))
	f.Set("credential", string(cred))
	if spoil != nil {
		spoil(f)
	}
	return b.post(oidc.PasskeyPath, f)
}

// amr exchanges the code the browser came back with and returns the amr
// of the ID token, which go-oidc verified.
func (r *rp) amr(t *testing.T, b *browser, verifier string) []string {
	t.Helper()
	cb := b.callback()
	if cb == nil || cb.Get("code") == "" {
		t.Fatalf("no code for the relying party: %d %s", b.last.StatusCode, b.body)
	}
	_, idt := r.exchange(t, cb.Get("code"), verifier)
	var claims struct {
		AMR []string `json:"amr"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	return claims.AMR
}

// sessions counts u's live sessions.
func (e *env) sessions(u *authd.User) int {
	e.t.Helper()
	s, err := e.store.Sessions(context.Background(), u.ID, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return len(s)
}

// hasSessionCookie reports whether the browser holds a session cookie.
func (b *browser) hasSessionCookie() bool {
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.http.Jar.Cookies(u) {
		if strings.HasSuffix(c.Name, "authd_session") && c.Value != "" {
			return true
		}
	}
	return false
}

// passkeyFlow is a relying party's sign-in through the hosted pages by a
// user with a passkey.
type passkeyFlow struct {
	u        *authd.User
	k        *softkey.Key
	r        *rp
	b        *browser
	verifier string
}

// passkeyFlow registers a user with a passkey (passkeyUser) and a
// first-party client of their own, and opens the client's authorization request in a
// new browser.
func (e *env) passkeyFlow(email string, backup bool) *passkeyFlow {
	e.t.Helper()
	f := &passkeyFlow{b: e.browser(), verifier: oauth2.GenerateVerifier()}
	f.u, f.k = e.passkeyUser(email, backup)
	c, secret := e.client("app-"+f.u.ID.String(), authd.ClientConfidential, true) // a client per flow
	f.r = e.rp(c, secret)
	f.authorize()
	return f
}

// authorize (re)starts the authorization request: the sign-in page.
func (f *passkeyFlow) authorize() *browser {
	return f.b.get(f.r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(f.verifier)))
}

var scriptNonceRE = regexp.MustCompile(`<script nonce="([^"]+)">`)

func TestPasskeyButtonOnlyWhenPasskeysAreOn(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) { // passkeys off
		c, secret := e.client("app", authd.ClientConfidential, true)
		b := e.browser()
		b.get(e.rp(c, secret).cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		csp := b.last.Header.Get("Content-Security-Policy")
		if strings.Contains(b.body, "passkey-form") || strings.Contains(b.body, "navigator.credentials") || strings.Contains(csp, "connect-src") {
			t.Errorf("passkeys off, yet a passkey button or its script: CSP %q\n%s", csp, b.body)
		}
	})
}

func TestPasswordlessPasskeySignIn(t *testing.T) {
	onBothStoresEnv(t, newPasskeyEnv, func(t *testing.T, e *env) {
		f := e.passkeyFlow("pia@example.org", false)
		u, k, r, b := f.u, f.k, f.r, f.b

		// The button and its script, under this answer's nonce; the
		// password form is there as ever, for a browser without script.
		csp := b.last.Header.Get("Content-Security-Policy")
		m := scriptNonceRE.FindStringSubmatch(b.body)
		if m == nil || !strings.Contains(csp, "script-src 'nonce-"+html.UnescapeString(m[1])+"'") || !strings.Contains(csp, "connect-src 'self'") ||
			!strings.Contains(b.body, "Sign in with a passkey") || !strings.Contains(b.body, `action="/signin"`) {
			t.Fatalf("sign-in page: CSP %q\n%s", csp, b.body)
		}
		if strings.Contains(b.body, "<script src") {
			t.Errorf("an external script: %s", b.body)
		}

		// A refused assertion (made for another origin): the page again,
		// saying so, and no session.
		k.Origin = "https://evil.example"
		b.passkeySignIn(k, nil)
		if b.last.StatusCode != http.StatusUnauthorized || !strings.Contains(b.body, "The passkey could not be verified") ||
			b.hasSessionCookie() || e.sessions(u) != 0 {
			t.Fatalf("a bad assertion: %d, cookie %v, %d sessions\n%s", b.last.StatusCode, b.hasSessionCookie(), e.sessions(u), b.body)
		}
		if ev := e.events(u); !slices.Contains(ev, string(authd.EventPasskeyLoginFailed)) {
			t.Errorf("events %v; want passkey_login_failed", ev)
		}
		k.Origin = rpOrigin

		// Junk as the credential: the same page, no session.
		b.passkeySignIn(k, func(f url.Values) { f.Set("credential", `{"id":`) })
		if b.last.StatusCode != http.StatusUnauthorized || !strings.Contains(b.body, "The passkey could not be verified") ||
			b.hasSessionCookie() {
			t.Fatalf("a malformed credential: %d\n%s", b.last.StatusCode, b.body)
		}

		// Without the CSRF token, or with another form's: refused before
		// the assertion is looked at.
		b.passkeySignIn(k, func(f url.Values) { f.Del("csrf") })
		if b.last.StatusCode != http.StatusForbidden || !strings.Contains(b.body, "Form expired") || b.hasSessionCookie() ||
			e.sessions(u) != 0 {
			t.Fatalf("no CSRF token: %d, cookie %v\n%s", b.last.StatusCode, b.hasSessionCookie(), b.body)
		}
		f.authorize()
		signInCSRF := b.form().Get("csrf")
		b.passkeySignIn(k, func(f url.Values) { f.Set("csrf", signInCSRF) })
		if b.last.StatusCode != http.StatusForbidden || e.sessions(u) != 0 {
			t.Fatalf("the password form's CSRF token: %d\n%s", b.last.StatusCode, b.body)
		}

		// The ceremony, as the script runs it: the code, and an ID token
		// whose amr says a hardware-bound passkey, which is two factors.
		f.authorize()
		b.passkeySignIn(k, nil)
		if got := r.amr(t, b, f.verifier); !slices.Equal(got, []string{"hwk", "mfa"}) {
			t.Errorf("amr %v; want hwk mfa", got)
		}
		if !b.hasSessionCookie() || e.sessions(u) != 2 { // the browser's, and the client's
			t.Errorf("cookie %v, %d sessions; want the browser's and the client's", b.hasSessionCookie(), e.sessions(u))
		}
		// Both say the passkey signed them in: its removal ends them.
		keys, err := e.store.Passkeys(t.Context(), u.ID)
		sessions, serr := e.store.Sessions(t.Context(), u.ID, e.clock.Now())
		if err != nil || serr != nil || len(keys) != 1 {
			t.Fatal(keys, err, serr)
		}
		for _, s := range sessions {
			if want := (authd.SignInFactor{Method: authd.MethodPasskey, PasskeyID: keys[0].ID}); s.SignedInWith != want {
				t.Errorf("session %q: proof %+v; want %+v", s.DeviceInfo, s.SignedInWith, want)
			}
		}
	})
}

func TestPasskeyAsSecondFactor(t *testing.T) {
	onBothStoresEnv(t, newPasskeyEnv, func(t *testing.T, e *env) {
		f := e.passkeyFlow("quinn@example.org", true)
		u, k, r, b := f.u, f.k, f.r, f.b
		b.signIn("quinn@example.org", goodPassword)

		// A passkey is the only factor: the page offers it, and a
		// recovery code for a browser without script (no TOTP form).
		if !strings.Contains(b.body, "Use a passkey") || !strings.Contains(b.body, `name="method" value="recovery_code"`) ||
			strings.Contains(b.body, "authenticator app") || !strings.Contains(b.last.Header.Get("Content-Security-Policy"), "script-src") {
			t.Fatalf("second-factor page: %d %s", b.last.StatusCode, b.body)
		}
		if f := b.passkeyForm(); f.Get("mfa_token") == "" || f.Get("mfa_token") != b.form().Get("mfa_token") {
			t.Fatalf("the passkey form does not carry the login's mfa_token: %v", f)
		}

		// A refused assertion: the second-factor page again, with the
		// button, and no session.
		k.Origin = "https://evil.example"
		b.passkeySignIn(k, nil)
		if b.last.StatusCode != http.StatusUnauthorized || !strings.Contains(b.body, "The passkey could not be verified") ||
			!strings.Contains(b.body, "Use a passkey") || b.hasSessionCookie() || e.sessions(u) != 0 {
			t.Fatalf("a bad assertion: %d, cookie %v\n%s", b.last.StatusCode, b.hasSessionCookie(), b.body)
		}
		k.Origin = rpOrigin

		// No CSRF token: refused, the mfa_token not spent.
		b.passkeySignIn(k, func(f url.Values) { f.Del("csrf") })
		if b.last.StatusCode != http.StatusForbidden || b.hasSessionCookie() || e.sessions(u) != 0 {
			t.Fatalf("no CSRF token: %d\n%s", b.last.StatusCode, b.body)
		}

		f.authorize().signIn("quinn@example.org", goodPassword)
		b.passkeySignIn(k, nil)
		if got := r.amr(t, b, f.verifier); !slices.Equal(got, []string{"pwd", "swk", "mfa"}) {
			t.Errorf("amr %v; want pwd swk mfa", got)
		}
		if ev := e.events(u); !slices.Contains(ev, string(authd.EventMFAChallengePassed)) {
			t.Errorf("events %v; want mfa_challenge_passed", ev)
		}
	})
}

// TestPasskeyCeremonySpent: a passkey form whose mfa_token is spent, or
// whose ceremony is unknown, starts the sign-in again.
func TestPasskeyCeremonySpent(t *testing.T) {
	onBothStoresEnv(t, newPasskeyEnv, func(t *testing.T, e *env) {
		pf := e.passkeyFlow("ria@example.org", false)
		k, b := pf.k, pf.b
		f := b.passkeyForm()
		cred, _ := json.Marshal(k.Get(map[string]any{"challenge": "bm90IGEgY2VyZW1vbnkgb2YgYXV0aGQ"}))
		f.Set("credential", string(cred))
		b.post(oidc.PasskeyPath, f)
		if b.last.StatusCode != http.StatusUnauthorized || !strings.Contains(b.body, "took too long") || b.hasSessionCookie() {
			t.Fatalf("an unknown ceremony: %d\n%s", b.last.StatusCode, b.body)
		}

		b.signIn("ria@example.org", goodPassword)
		f = b.passkeyForm()
		f.Set("mfa_token", "not-a-token")
		f.Set("credential", string(cred))
		b.post(oidc.PasskeyPath, f)
		if b.last.StatusCode != http.StatusUnauthorized || !strings.Contains(b.body, "sign in again") ||
			!strings.Contains(b.body, `action="/signin"`) || b.hasSessionCookie() {
			t.Fatalf("a spent mfa_token: %d\n%s", b.last.StatusCode, b.body)
		}
	})
}

// TestPasskeySignInRefusedAccounts: a passkey does not get around an
// unverified email or an administrator's lock; the page says so and no
// session starts. The unverified account's page links to the resend page
// (no address was typed for a one-click form to send).
func TestPasskeySignInRefusedAccounts(t *testing.T) {
	onBothStoresEnv(t, newPasskeyEnv, func(t *testing.T, e *env) {
		for _, c := range []struct {
			name   string
			spoil  func(*authd.User)
			status int
			says   string
		}{
			{"unverified", func(u *authd.User) { u.EmailVerified = false }, http.StatusForbidden, "Verify your email address"},
			{"locked", func(u *authd.User) { u.AccountStatus, u.LockReason = authd.StatusLocked, authd.LockAdmin },
				http.StatusLocked, "locked"},
		} {
			f := e.passkeyFlow(c.name+"@example.org", false)
			c.spoil(f.u)
			if err := e.store.UpdateUser(context.Background(), f.u); err != nil {
				t.Fatal(err)
			}
			f.b.passkeySignIn(f.k, nil)
			if f.b.last.StatusCode != c.status || !strings.Contains(f.b.body, c.says) || f.b.hasSessionCookie() ||
				e.sessions(f.u) != 0 {
				t.Errorf("%s: %d, cookie %v, %d sessions; want %d saying %q\n%s", c.name, f.b.last.StatusCode,
					f.b.hasSessionCookie(), e.sessions(f.u), c.status, c.says, f.b.body)
			}
			if c.name == "unverified" && (strings.Contains(f.b.body, `action="`+oidc.ResendPath+`"`) ||
				!strings.Contains(f.b.body, `href="`+oidc.ResendPath+`?request=`)) {
				t.Errorf("a passkey's refusal for an unverified address: want a link to the resend page, no form without an address:\n%s",
					f.b.body)
			}
		}
	})
}

// TestPasskeyBesideTOTP: the second-factor page of a user with TOTP and a
// passkey asks for the code and offers the passkey, still after a wrong
// code; a TOTP-only user's page has no passkey button and no script.
func TestPasskeyBesideTOTP(t *testing.T) {
	onBothStoresEnv(t, newPasskeyEnv, func(t *testing.T, e *env) {
		secret := e.mfaUser("tess@example.org")
		e.mfaUser("otto@example.org")
		// A login with the TOTP, and a step later the passkey with another code.
		_, err := e.svc.Login(context.Background(), authd.Client{}, "tess@example.org", goodPassword, "")
		mfa, ok := authd.IsMFARequired(err)
		if !ok {
			t.Fatalf("login: %v; want mfa_required", err)
		}
		pair, err := e.svc.VerifyMFA(context.Background(), authd.Client{}, mfa.Token, authd.MethodTOTP, totpAt(t, secret, e.clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(30 * time.Second)
		k := softkey.New(t, rpID, rpOrigin)
		e.addPasskey(pair, k, authd.StepUp{Code: totpAt(t, secret, e.clock.Now())})
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		verifier := oauth2.GenerateVerifier()

		b := e.browser()
		b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))).signIn("otto@example.org", goodPassword)
		if !strings.Contains(b.body, `name="mfa_token"`) || strings.Contains(b.body, "passkey-form") ||
			strings.Contains(b.last.Header.Get("Content-Security-Policy"), "connect-src") {
			t.Fatalf("a TOTP-only user's second step: %d CSP %q\n%s", b.last.StatusCode,
				b.last.Header.Get("Content-Security-Policy"), b.body)
		}

		b = e.browser()
		b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))).signIn("tess@example.org", goodPassword)
		if !strings.Contains(b.body, "authenticator app") || !strings.Contains(b.body, "Use a passkey") {
			t.Fatalf("second step with TOTP and a passkey: %d %s", b.last.StatusCode, b.body)
		}
		f := b.form()
		f.Set("code", "000000")
		b.post(oidc.MFAPath, f)
		if b.last.StatusCode != http.StatusUnauthorized || !strings.Contains(b.body, "Use a passkey") {
			t.Fatalf("after a wrong code: %d; want the page with the passkey button: %s", b.last.StatusCode, b.body)
		}
		b.passkeySignIn(k, nil)
		if got := r.amr(t, b, verifier); !slices.Equal(got, []string{"pwd", "hwk", "mfa"}) {
			t.Errorf("amr %v; want pwd hwk mfa", got)
		}
	})
}
