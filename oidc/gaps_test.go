package oidc_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/oidc"
	"github.com/authd/authd/token"
	"golang.org/x/oauth2"
)

// gapState is the state every request of these tests sends.
const gapState = "gap-state"

// gapRequest is an authorization request of the client "app" (registered
// with rpCallback) with an S256 challenge, changed by kv: name, value
// pairs, an empty value deleting the parameter.
func gapRequest(kv ...string) url.Values {
	q := url.Values{"client_id": {"app"}, "redirect_uri": {rpCallback}, "response_type": {"code"}, "scope": {"openid"},
		"state": {gapState}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"}}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			q.Del(kv[i])
		} else {
			q.Set(kv[i], kv[i+1])
		}
	}
	return q
}

// gapAuthorize sends the browser to the authorization endpoint with q.
func (b *browser) gapAuthorize(q url.Values) *browser {
	b.t.Helper()
	return b.get(b.e.srv.URL + oidc.AuthorizePath + "?" + q.Encode())
}

// gapRefused reports what is wrong with the last answer when it is not a
// redirect to the client carrying error code and description, the state and
// iss, and no code; "" when it is.
func (b *browser) gapRefused(code, description string) string {
	cb := b.callback()
	switch {
	case cb == nil:
		return "no redirect to the client: " + b.last.Status
	case cb.Get("code") != "":
		return "a code was issued: " + b.last.Header.Get("Location")
	case cb.Get("error") != code || cb.Get("error_description") != description:
		return "error " + cb.Get("error") + " (" + cb.Get("error_description") + ")"
	case cb.Get("state") != gapState || cb.Get("iss") != b.e.srv.URL:
		return "state " + cb.Get("state") + ", iss " + cb.Get("iss")
	}
	return ""
}

// gapSetSessionCookie puts value in the browser's jar as the hosted pages'
// session cookie (authd_session: the server is plain http, so no __Host-).
func (b *browser) gapSetSessionCookie(value string) {
	u, _ := url.Parse(b.e.srv.URL)
	b.http.Jar.SetCookies(u, []*http.Cookie{{Name: "authd_session", Value: value, Path: "/"}})
}

// gapCount is how many of list are s.
func gapCount(list []string, s string) int {
	return len(slices.DeleteFunc(slices.Clone(list), func(v string) bool { return v != s }))
}

// TestGapCodeOfAnotherClient: an authorization code sent to the token
// endpoint by another confidential client, authenticated with its own
// secret and with everything else right (redirect URI, PKCE verifier), is
// refused with 400 invalid_grant, issues no token and starts no session,
// and is logged on the code's user as oidc_code_redeemed/failure "code of
// another client" naming the client that sent it. The refusal changes
// nothing about the code (RedeemCode refuses before it marks it used, and
// a reuse is told only to whoever could have redeemed it): its rightful
// client still redeems it afterwards, once; only its own second try is
// logged as a reuse.
func TestGapCodeOfAnotherClient(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		u := e.user("owen@example.org")
		app, appSecret := e.client("app", authd.ClientConfidential, true)
		other, otherSecret := e.client("other", authd.ClientConfidential, true)
		r := e.rp(app, appSecret)
		verifier := oauth2.GenerateVerifier()
		code := r.login(t, e.browser(), "owen@example.org", "s", "n", verifier)
		sessions := e.sessions(u)

		status, body := e.tokenPost(url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {rpCallback}, "code_verifier": {verifier}, "client_id": {other.ID},
			"client_secret": {otherSecret}})
		if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("another client's code: %d %v; want 400 invalid_grant", status, body["error"])
		}
		for _, k := range []string{"access_token", "id_token", "refresh_token"} {
			if _, ok := body[k]; ok {
				t.Errorf("another client's code answered with %s", k)
			}
		}
		if n := e.sessions(u); n != sessions {
			t.Errorf("%d sessions after another client's try, %d before: it started one", n, sessions)
		}
		l := e.lastLog(u, authd.EventOIDCCodeRedeemed, authd.ResultFailure)
		if l.FailureReason != "code of another client" || l.AdditionalContext["client_id"] != other.ID {
			t.Errorf("the refusal is logged as %q %v; want \"code of another client\" naming %s",
				l.FailureReason, l.AdditionalContext, other.ID)
		}

		tok, idt := r.exchange(t, code, verifier) // the rightful client, afterwards
		if idt.Subject != u.ID.String() || e.me(tok.AccessToken) != http.StatusOK {
			t.Errorf("the rightful client's redemption after the refusal: sub %s", idt.Subject)
		}
		if _, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(verifier)); err == nil {
			t.Error("the code was redeemed twice")
		}
		if ev := e.results(u); gapCount(ev, "oidc_code_redeemed/success") != 1 || gapCount(ev, "oidc_code_reuse/failure") != 1 {
			t.Errorf("security log %v; want one redemption and one reuse (the rightful client's second try)", ev)
		}
	})
}

// TestGapExpiredAuthRequest: a sign-in form posted for an authorization
// request older than authd.AuthRequestTTL gets the request-expired page
// (400), before the password is even checked: no session, no cookie, no
// login_success, nothing sent to the client. A second before it expires,
// the same form goes through to a code.
func TestGapExpiredAuthRequest(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		early, late := e.user("early@example.org"), e.user("late@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		inTime, tooLate := e.browser(), e.browser()
		for _, b := range []*browser{inTime, tooLate} {
			if !b.get(r.cfg.AuthCodeURL(gapState, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))).onSignInPage() {
				t.Fatalf("no sign-in page: %d %s", b.last.StatusCode, b.body)
			}
		}

		e.clock.Advance(authd.AuthRequestTTL - time.Second)
		if cb := inTime.signIn("early@example.org", goodPassword).callback(); cb == nil || cb.Get("code") == "" {
			t.Fatalf("a second before the request expires: %d %v; want a code", inTime.last.StatusCode, cb)
		}
		if e.sessions(early) == 0 {
			t.Fatal("the sign-in in time left no session")
		}

		e.clock.Advance(time.Second)
		tooLate.signIn("late@example.org", goodPassword)
		if cb := tooLate.callback(); cb != nil || tooLate.last.StatusCode != http.StatusBadRequest ||
			!strings.Contains(tooLate.body, "Request expired") || !strings.Contains(tooLate.body, "expired or was already used") {
			t.Errorf("the sign-in form of an expired request: %d %v; want the request-expired page\n%s",
				tooLate.last.StatusCode, cb, tooLate.body)
		}
		if n := e.sessions(late); n != 0 || tooLate.hasSessionCookie() || slices.Contains(e.events(late), "login_success") {
			t.Errorf("the expired request's form signed in: %d sessions, cookie %v, events %v; want nothing",
				n, tooLate.hasSessionCookie(), e.events(late))
		}
	})
}

// TestGapBadSessionCookie: a browser whose authd_session cookie is
// malformed (not an opaque token's shape) or well-formed but no session's
// is a browser that is not signed in: the sign-in page, prompt=none's
// login_required, never a code and never a 5xx; signing in there replaces
// the cookie and finishes the request.
func TestGapBadSessionCookie(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("cookie@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		random := func(n int) string {
			b := make([]byte, n)
			rand.Read(b)
			return base64.RawURLEncoding.EncodeToString(b)
		}
		for name, value := range map[string]string{
			"junk":                         "junk",
			"43 characters, not base64url": strings.Repeat("!", 42) + ".",
			"a 33-byte token":              random(33),
			"well-formed, unknown":         random(32),
		} {
			b := e.browser()
			b.gapSetSessionCookie(value)
			if b.sessionCookie() != value {
				t.Fatalf("%s: the jar does not hold the cookie", name)
			}
			if !b.get(r.cfg.AuthCodeURL(gapState, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))).onSignInPage() ||
				b.last.StatusCode != http.StatusOK {
				t.Errorf("%s: authorize answered %d %v; want the sign-in page", name, b.last.StatusCode, b.callback())
				continue
			}
			if msg := b.gapAuthorize(gapRequest("prompt", "none")).gapRefused("login_required", "no signed-in session"); msg != "" {
				t.Errorf("%s: prompt=none: %d, %s; want login_required", name, b.last.StatusCode, msg)
			}
			b.get(r.cfg.AuthCodeURL(gapState, oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if cb := b.signIn("cookie@example.org", goodPassword).callback(); cb == nil || cb.Get("code") == "" {
				t.Errorf("%s: signing in: %d %v; want a code", name, b.last.StatusCode, cb)
			}
			if got := b.sessionCookie(); got == "" || got == value {
				t.Errorf("%s: the cookie after signing in is %q; want a new one", name, got)
			}
		}
	})
}

// TestGapMalformedPKCE: an authorization request whose PKCE parameters are
// malformed goes back to the client with invalid_request (its state and
// iss, and no code), even from a signed-in browser that would get a code
// at once: code_challenge_method without code_challenge (a confidential
// client, which may go without PKCE, sending half of it), a challenge of
// 42 or 44 characters (padded, or all base64url: RFC 7636 §4.2's S256
// challenge is exactly 43, and a verifier's 128 is no challenge's length),
// and one of 43 with a character outside base64url ('+', '=', '/':
// standard base64).
func TestGapMalformedPKCE(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("pkce@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		r.login(t, b, "pkce@example.org", "s", "n", oauth2.GenerateVerifier())

		valid := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
		sum := sha256.Sum256([]byte(oauth2.GenerateVerifier()))
		const noChallenge, badChallenge = "code_challenge_method without code_challenge",
			"code_challenge must be 43 base64url characters"
		for name, tc := range map[string]struct {
			q           url.Values
			description string
		}{
			"S256 without code_challenge":  {gapRequest("code_challenge", ""), noChallenge},
			"plain without code_challenge": {gapRequest("code_challenge", "", "code_challenge_method", "plain"), noChallenge},
			"42 characters":                {gapRequest("code_challenge", valid[:42]), badChallenge},
			"44 characters, padded":        {gapRequest("code_challenge", base64.StdEncoding.EncodeToString(sum[:])), badChallenge},
			"43 with '+'":                  {gapRequest("code_challenge", valid[:20]+"+"+valid[21:]), badChallenge},
			"43 with '='":                  {gapRequest("code_challenge", valid[:42]+"="), badChallenge},
			"43 with '/'":                  {gapRequest("code_challenge", "/"+valid[1:]), badChallenge},
			"44 base64url characters":      {gapRequest("code_challenge", valid+"A"), badChallenge},
			"128 base64url characters":     {gapRequest("code_challenge", strings.Repeat(valid[:32], 4)), badChallenge},
		} {
			if len(tc.q.Get("code_challenge")) != 43 && strings.HasPrefix(name, "43") {
				t.Fatalf("%s: the challenge has %d characters", name, len(tc.q.Get("code_challenge")))
			}
			if msg := b.gapAuthorize(tc.q).gapRefused("invalid_request", tc.description); msg != "" {
				t.Errorf("%s: %d, %s; want invalid_request %q", name, b.last.StatusCode, msg, tc.description)
			}
		}
		if cb := b.gapAuthorize(gapRequest("code_challenge", valid)).callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("a valid challenge from the same browser: %d %v; want a code", b.last.StatusCode, cb)
		}
	})
}

// TestGapUnsupportedRequestParameters: what authd does not support is
// refused back to the client, even from a signed-in browser that would get
// a code at once: a request object (request, request_uri) with
// request_not_supported, a response_mode other than query (fragment,
// form_post) and prompt=none with another value with invalid_request.
// response_mode=query is taken.
func TestGapUnsupportedRequestParameters(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("params@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		r.login(t, b, "params@example.org", "s", "n", oauth2.GenerateVerifier())
		e.clock.Advance(time.Second)

		const noObjects, queryOnly, noneAlone = "request objects are not supported", "only response_mode=query is supported",
			"prompt=none cannot be combined"
		for name, tc := range map[string]struct {
			q                 url.Values
			code, description string
		}{
			"request":                {gapRequest("request", "eyJhbGciOiJub25lIn0.eyJzdGF0ZSI6IngifQ."), "request_not_supported", noObjects},
			"request_uri":            {gapRequest("request_uri", "https://rp.example.org/request.jwt"), "request_not_supported", noObjects},
			"response_mode=fragment": {gapRequest("response_mode", "fragment"), "invalid_request", queryOnly},
			"response_mode=form_post": {gapRequest("response_mode", "form_post"), "invalid_request",
				queryOnly},
			"prompt=none login":   {gapRequest("prompt", "none login"), "invalid_request", noneAlone},
			"prompt=consent none": {gapRequest("prompt", "consent none"), "invalid_request", noneAlone},
		} {
			if msg := b.gapAuthorize(tc.q).gapRefused(tc.code, tc.description); msg != "" {
				t.Errorf("%s: %d, %s; want %s %q", name, b.last.StatusCode, msg, tc.code, tc.description)
			}
			if strings.Contains(b.last.Header.Get("Location"), "#") {
				t.Errorf("%s: the answer went in a fragment: %s", name, b.last.Header.Get("Location"))
			}
		}
		if cb := b.gapAuthorize(gapRequest("response_mode", "query")).callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("response_mode=query: %d %v; want a code", b.last.StatusCode, cb)
		}
	})
}

// TestGapHintWithoutAUserID: an id_token_hint whose sub is no authd user
// id (another issuer's subject, an email address, the nil UUID), signed by
// authd's own ID-token key or not verifiable at all, names no one who can
// finish the request: a signed-in browser is not admitted (the sign-in
// page; prompt=none answers login_required), and a real user who signs in
// there gets login_required and no code, logged as oidc_authorized/failure,
// and the request ends.
func TestGapHintWithoutAUserID(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		u := e.user("hinted@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		r.login(t, b, "hinted@example.org", "s", "n", oauth2.GenerateVerifier())
		hint := func(sub string) string {
			now := e.clock.Now()
			raw, err := e.idKeys.SignID(token.IDClaims{Issuer: e.srv.URL, Subject: sub, Audience: c.ID, IssuedAt: now,
				ExpiresAt: now.Add(15 * time.Minute), AuthTime: now}, now)
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}
		signed := hint("248289761001")
		if h, err := e.idKeys.ParseIDHint(signed, e.srv.URL); err != nil || h.Subject != "248289761001" {
			t.Fatalf("the signed hint does not verify: %+v, %v", h, err)
		}
		for name, raw := range map[string]string{
			"signed, another issuer's subject": signed,
			"signed, an email address":         hint(u.Email),
			"signed, the nil UUID":             hint("00000000-0000-0000-0000-000000000000"),
			"not verifiable":                   signed[:len(signed)-4] + "AAAA",
		} {
			e.clock.Advance(time.Second)
			if msg := b.gapAuthorize(gapRequest("prompt", "none", "id_token_hint", raw)).gapRefused("login_required",
				"the signed-in user is not one id_token_hint names (or the hint cannot be verified)"); msg != "" {
				t.Errorf("%s: prompt=none: %d, %s; want login_required", name, b.last.StatusCode, msg)
			}
			if !b.gapAuthorize(gapRequest("id_token_hint", raw)).onSignInPage() {
				t.Errorf("%s: %d %v; want the sign-in page", name, b.last.StatusCode, b.callback())
				continue
			}
			request := b.form().Get("request")
			before := gapCount(e.results(u), "oidc_authorized/failure")
			if msg := b.signIn("hinted@example.org", goodPassword).gapRefused("login_required",
				"the user who signed in is not the one id_token_hint names"); msg != "" {
				t.Errorf("%s: signing in: %d, %s; want login_required", name, b.last.StatusCode, msg)
			}
			if n := gapCount(e.results(u), "oidc_authorized/failure"); n != before+1 {
				t.Errorf("%s: %d oidc_authorized/failure rows added, want 1", name, n-before)
			}
			if b.get(e.srv.URL + oidc.ResumePath + "?request=" + request); b.last.StatusCode != http.StatusBadRequest ||
				!strings.Contains(b.body, "Request expired") {
				t.Errorf("%s: the refused request resumed: %d %v", name, b.last.StatusCode, b.callback())
			}
		}
		if l := e.lastLog(u, authd.EventOIDCAuthorized, authd.ResultFailure); l.FailureReason != "signed in as another user than id_token_hint names" {
			t.Errorf("the refusal is logged as %q", l.FailureReason)
		}
	})
}

// The env's lockout (newEnvConfig): LockoutThreshold and LockoutDuration.
const (
	gapLockoutThreshold = 5
	gapLockoutDuration  = 15 * time.Minute
)

// TestGapWrongPasswordOnTheSignInPage: a wrong password on the hosted
// sign-in page answers 401 with the form again, saying so; at the env's
// LockoutThreshold the account locks (account_locked), and the next try,
// with the right password too, answers 423 with Retry-After, the lock's
// length in seconds, and no session; once the lock has run out the right
// password finishes a new request.
func TestGapWrongPasswordOnTheSignInPage(t *testing.T) {
	const threshold = gapLockoutThreshold
	onBothStores(t, func(t *testing.T, e *env) {
		u := e.user("guess@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		b.get(r.cfg.AuthCodeURL(gapState, oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		for i := range threshold {
			b.signIn("guess@example.org", "wrong horse battery staple")
			if b.last.StatusCode != http.StatusUnauthorized || !strings.Contains(b.body, "The email or password is incorrect.") ||
				!b.onSignInPage() || !strings.Contains(b.body, `value="guess@example.org"`) {
				t.Fatalf("wrong password %d: %d; want 401 with the form again, saying so\n%s", i+1, b.last.StatusCode, b.body)
			}
		}
		if ev := e.results(u); gapCount(ev, "login_failure/failure") != threshold || gapCount(ev, "account_locked/success") != 1 {
			t.Errorf("security log %v; want %d login failures and the lock", ev, threshold)
		}
		for _, pw := range []string{"wrong horse battery staple", goodPassword} {
			b.signIn("guess@example.org", pw)
			if b.last.StatusCode != http.StatusLocked || !strings.Contains(b.body, "The account is locked; try again later.") ||
				b.last.Header.Get("Retry-After") != strconv.Itoa(int(gapLockoutDuration/time.Second)) || !b.onSignInPage() {
				t.Errorf("a locked account (password %q): %d, Retry-After %q; want 423, the lock's %v\n%s", pw, b.last.StatusCode,
					b.last.Header.Get("Retry-After"), gapLockoutDuration, b.body)
			}
		}
		if e.sessions(u) != 0 || b.hasSessionCookie() {
			t.Errorf("a locked account signed in: %d sessions, cookie %v", e.sessions(u), b.hasSessionCookie())
		}
		e.clock.Advance(gapLockoutDuration) // past the request's lifetime too: a new one
		b.get(r.cfg.AuthCodeURL(gapState, oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if cb := b.signIn("guess@example.org", goodPassword).callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("the right password once the lock ran out: %d %v; want a code", b.last.StatusCode, cb)
		}
	})
}

// TestGapUnverifiedSignIn: an account whose email is not verified signs in
// with the right password to 403 and the form again, saying to verify the
// address; no session, no cookie, logged as login_failure "email not
// verified".
func TestGapUnverifiedSignIn(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		u := e.user("unverified@example.org")
		u.EmailVerified = false
		if err := e.store.UpdateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		b.get(r.cfg.AuthCodeURL(gapState, oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		b.signIn("unverified@example.org", goodPassword)
		if b.last.StatusCode != http.StatusForbidden || !strings.Contains(b.body, "Verify your email address first") ||
			!b.onSignInPage() {
			t.Errorf("an unverified account: %d; want 403 with the form, saying to verify\n%s", b.last.StatusCode, b.body)
		}
		if e.sessions(u) != 0 || b.hasSessionCookie() {
			t.Errorf("an unverified account signed in: %d sessions, cookie %v", e.sessions(u), b.hasSessionCookie())
		}
		if l := e.lastLog(u, authd.EventLoginFailure, authd.ResultFailure); l.FailureReason != "email not verified" {
			t.Errorf("logged as %q, want \"email not verified\"", l.FailureReason)
		}
	})
}

// TestGapExpiredMFAForm: the second-factor form posted with a right code
// once its mfa_token has lived authd.MFAChallengeTTL sends the browser
// back to sign in (401, the sign-in form, saying it took too long): no
// session starts, no code is issued, the refusal is logged as
// mfa_challenge_failed "mfa token expired". The request itself lives on:
// signing in again from that page leads to a new second-factor form, and
// a code.
func TestGapExpiredMFAForm(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		secret := e.mfaUser("slow@example.org")
		u := e.userByEmail("slow@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		b.get(r.cfg.AuthCodeURL(gapState, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))).signIn("slow@example.org", goodPassword)
		if !strings.Contains(b.body, `name="mfa_token"`) {
			t.Fatalf("no second-factor form: %d %s", b.last.StatusCode, b.body)
		}
		sessions := e.sessions(u)
		f := b.form()
		e.clock.Advance(authd.MFAChallengeTTL)
		f.Set("code", totpAt(t, secret, e.clock.Now()))
		b.post(oidc.MFAPath, f)
		if b.last.StatusCode != http.StatusUnauthorized || b.callback() != nil || !b.onSignInPage() ||
			!strings.Contains(b.body, `action="/signin"`) || !strings.Contains(b.body, "took too long") {
			t.Fatalf("an expired second-factor form: %d %v; want 401 and the sign-in form\n%s", b.last.StatusCode, b.callback(), b.body)
		}
		if e.sessions(u) != sessions || b.hasSessionCookie() {
			t.Errorf("an expired second-factor form signed in: %d sessions (%d before), cookie %v", e.sessions(u), sessions,
				b.hasSessionCookie())
		}
		if l := e.lastLog(u, authd.EventMFAChallengeFailed, authd.ResultFailure); l.FailureReason != "mfa token expired" {
			t.Errorf("logged as %q, want \"mfa token expired\"", l.FailureReason)
		}

		b.signIn("slow@example.org", goodPassword)
		if !strings.Contains(b.body, `name="mfa_token"`) {
			t.Fatalf("signing in again: %d; want the second-factor form\n%s", b.last.StatusCode, b.body)
		}
		f = b.form()
		f.Set("code", totpAt(t, secret, e.clock.Now()))
		if cb := b.post(oidc.MFAPath, f).callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("the right code in time: %d %v; want a code", b.last.StatusCode, cb)
		}
	})
}

// TestGapUnregisteredRedirectIsNeverFollowed: a redirect URI the client has
// not registered gets the invalid-redirect error page (400, HTML) straight
// from the authorization endpoint, whatever else is wrong or right with
// the request: never a redirect to that address carrying an error (an open
// redirector), and never a detour through the sign-in page, even from a
// browser already signed in to a first-party client that would get a code
// at once.
func TestGapUnregisteredRedirectIsNeverFollowed(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("redirect@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		const evil = "https://evil.example.org/callback"
		for _, signedIn := range []bool{false, true} {
			b := e.browser()
			if signedIn {
				r.login(t, b, "redirect@example.org", "s", "n", oauth2.GenerateVerifier())
			}
			for name, q := range map[string]url.Values{
				"otherwise right":      gapRequest("redirect_uri", evil),
				"no openid scope":      gapRequest("redirect_uri", evil, "scope", "email"),
				"implicit flow":        gapRequest("redirect_uri", evil, "response_type", "token"),
				"response_mode":        gapRequest("redirect_uri", evil, "response_mode", "fragment"),
				"prompt=none":          gapRequest("redirect_uri", evil, "prompt", "none"),
				"state not text":       gapRequest("redirect_uri", evil, "state", "a\x00b"),
				"request object":       gapRequest("redirect_uri", evil, "request_uri", "https://evil.example.org/r"),
				"registered as prefix": gapRequest("redirect_uri", rpCallback+"/more", "scope", "email"),
			} {
				b.gapAuthorize(q)
				if loc := b.last.Header.Get("Location"); loc != "" || b.callback() != nil {
					t.Errorf("signed in %v, %s: redirected to %q; want the error page", signedIn, name, loc)
				}
				if b.last.StatusCode != http.StatusBadRequest || !strings.Contains(b.last.Header.Get("Content-Type"), "text/html") ||
					!strings.Contains(b.body, "Invalid redirect") || len(b.last.Request.URL.Query()) == 0 ||
					b.last.Request.URL.Path != oidc.AuthorizePath {
					t.Errorf("signed in %v, %s: %d at %s; want the invalid-redirect page from the authorization endpoint",
						signedIn, name, b.last.StatusCode, b.last.Request.URL.Path)
				}
			}
		}
	})
}

// TestGapNonceNotTextIsTheRequestsFault: a nonce that is not text (a NUL,
// bytes that are not UTF-8, a control character) is refused by the
// authorization endpoint's own check, with invalid_request saying what is
// wrong with the nonce, before the browser's session is looked at:
// prompt=none from a signed-out browser is told of the malformed request,
// not login_required, and a signed-in browser gets no code.
func TestGapNonceNotTextIsTheRequestsFault(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("nonce@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		signedOut, signedIn := e.browser(), e.browser()
		r.login(t, signedIn, "nonce@example.org", "s", "n", oauth2.GenerateVerifier())
		const notText = "nonce must be text, at most 255 bytes"
		for _, nonce := range []string{"n\x00", "\xc3", "\x1b[31m", strings.Repeat("n", 256)} {
			for name, b := range map[string]*browser{"signed out": signedOut, "signed in": signedIn} {
				for _, prompt := range []string{"", "none"} {
					if msg := b.gapAuthorize(gapRequest("nonce", nonce, "prompt", prompt)).gapRefused("invalid_request", notText); msg != "" {
						t.Errorf("%s, prompt %q, nonce %q: %d, %s; want invalid_request %q",
							name, prompt, nonce, b.last.StatusCode, msg, notText)
					}
				}
			}
		}
	})
}

// TestGapLogoutFormNeedsItsToken: a sign-out POST whose csrf field is not
// this browser's logout token (forged, empty, another form's token, the
// logout token of another browser) gets the expired-form page (403) and
// signs no one out: the browser session and the relying party's tokens
// live on, and the browser is not sent to the post-logout address. Its own
// confirmation page's form then signs out, and takes the session cookie
// out of the browser.
func TestGapLogoutFormNeedsItsToken(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("leo@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		verifier := oauth2.GenerateVerifier()
		tok, _ := r.exchange(t, r.login(t, b, "leo@example.org", "s", "n", verifier), verifier)
		q := url.Values{"id_token_hint": {tok.Extra("id_token").(string)}, "post_logout_redirect_uri": {"https://rp.example.org/bye"},
			"state": {"bye"}}
		own := b.get(e.srv.URL + oidc.LogoutPath + "?" + q.Encode()).form()
		if own.Get("csrf") == "" {
			t.Fatalf("no sign-out form: %d %s", b.last.StatusCode, b.body)
		}
		otherBrowser := e.browser().get(e.srv.URL + oidc.LogoutPath + "?" + q.Encode()).form().Get("csrf")
		signInToken := e.browser().get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))).form().Get("csrf")
		for name, csrf := range map[string]string{"a forged": "forged", "an empty": "", "another browser's": otherBrowser,
			"a sign-in form's": signInToken} {
			f := url.Values{}
			for k, v := range own {
				f[k] = v
			}
			f.Set("csrf", csrf)
			b.post(oidc.LogoutPath, f)
			if b.last.StatusCode != http.StatusForbidden || b.last.Header.Get("Location") != "" || !strings.Contains(b.body, "Form expired") {
				t.Errorf("a sign-out with %s token: %d, Location %q; want the 403 expired-form page",
					name, b.last.StatusCode, b.last.Header.Get("Location"))
			}
			if got := e.me(tok.AccessToken); got != http.StatusOK {
				t.Fatalf("a sign-out with %s token ended the session: the access token answers %d", name, got)
			}
		}
		if cb := b.get(r.cfg.AuthCodeURL("again", oauth2.S256ChallengeOption(verifier))).callback(); cb == nil || cb.Get("code") == "" {
			t.Errorf("after the refused sign-outs the browser is not signed in: %d %v", b.last.StatusCode, cb)
		}
		b.get(e.srv.URL + oidc.LogoutPath + "?" + q.Encode())
		if b.post(oidc.LogoutPath, b.form()); b.last.Header.Get("Location") != "https://rp.example.org/bye?state=bye" ||
			e.me(tok.AccessToken) != http.StatusUnauthorized {
			t.Errorf("the browser's own sign-out form: %d to %q; want the post-logout address and the session ended",
				b.last.StatusCode, b.last.Header.Get("Location"))
		}
		if b.hasSessionCookie() {
			t.Error("the sign-out left the session cookie in the browser")
		}
	})
}

// TestGapRefreshTokenOnlyWithOfflineAccess: a code granted without the
// offline_access scope is redeemed for an access token and an ID token
// only — no refresh_token in the answer, so the client cannot keep access
// past the session's access token without the user's leave — and the
// answer's scope says what was granted; with offline_access the same
// exchange carries a refresh token.
func TestGapRefreshTokenOnlyWithOfflineAccess(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("offline@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		for _, tc := range []struct {
			scopes  []string
			scope   string
			refresh bool
		}{
			{[]string{"email"}, "openid email", false},
			{nil, "openid", false},
			{[]string{"offline_access"}, "openid offline_access", true},
		} {
			r := e.rp(c, cs, tc.scopes...)
			verifier := oauth2.GenerateVerifier()
			code := r.login(t, e.browser(), "offline@example.org", "s", "n", verifier)
			status, body := e.tokenPost(url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {rpCallback}, "code_verifier": {verifier}, "client_id": {c.ID}, "client_secret": {cs}})
			if status != http.StatusOK || body["access_token"] == nil || body["id_token"] == nil || body["scope"] != tc.scope {
				t.Errorf("scopes %v: %d, scope %v; want 200 with an access and an ID token, scope %q",
					tc.scopes, status, body["scope"], tc.scope)
			}
			if rt, ok := body["refresh_token"].(string); (ok && rt != "") != tc.refresh {
				t.Errorf("scopes %v: refresh_token %q; want one: %v", tc.scopes, rt, tc.refresh)
			}
		}
	})
}

// TestGapRepeatedAuthorizeParameter: an authorization request that gives a
// parameter twice (RFC 6749 §3.1) gets the error page (400, HTML), never a
// redirect and never the sign-in page, even when the first value is right
// and the browser is signed in: which value counts must not be left to
// whoever reads it (a registered redirect_uri beside an attacker's, two
// states, two clients).
func TestGapRepeatedAuthorizeParameter(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("twice@example.org")
		c, cs := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, cs)
		b := e.browser()
		r.login(t, b, "twice@example.org", "s", "n", oauth2.GenerateVerifier())
		for name, second := range map[string]string{
			"redirect_uri": "https://evil.example.org/callback", "client_id": "app", "state": "other",
			"scope": "openid", "response_type": "code", "nonce": "n",
		} {
			q := gapRequest()
			q.Add(name, second)
			if name == "nonce" {
				q.Add(name, "m")
			}
			b.gapAuthorize(q)
			if b.last.StatusCode != http.StatusBadRequest || b.last.Header.Get("Location") != "" ||
				!strings.Contains(b.body, "repeated") || b.last.Request.URL.Path != oidc.AuthorizePath {
				t.Errorf("%s twice: %d at %s, Location %q; want the 400 error page saying a parameter is repeated",
					name, b.last.StatusCode, b.last.Request.URL.Path, b.last.Header.Get("Location"))
			}
		}
	})
}
