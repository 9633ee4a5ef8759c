package httpapi_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/go-cmp/cmp"
)

func TestWalkThrough(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		r := e.do("POST", "/v1/auth/register", map[string]any{"email": "Alice@Example.org", "password": goodPassword, "consent": true})
		want(t, "register", r, 202, "")
		if r.str("status") != "verification_sent" {
			t.Errorf("register body %s", r.raw)
		}
		u := e.user("alice@example.org")
		if u.AccountStatus != authd.StatusInactive || u.EmailVerified || !u.ConsentStatus || !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
			t.Errorf("new user %+v", u)
		}
		m := e.mail.last(t, authd.MailVerifyEmail, "alice@example.org")
		if !strings.HasPrefix(m.Link, "https://auth.example.org/verify-email?token=") {
			t.Errorf("verification link %q", m.Link)
		}
		want(t, "login before verifying", e.do("POST", "/v1/auth/login",
			map[string]string{"email": "alice@example.org", "password": goodPassword}), 403, "email_not_verified")

		tok := tokenOf(t, m)
		want(t, "verify", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": tok}), 200, "")
		want(t, "verify again", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": tok}), 400, "invalid_token")
		if u := e.user("alice@example.org"); u.AccountStatus != authd.StatusActive || !u.EmailVerified {
			t.Errorf("verified user %+v", u)
		}
		// Only the digest of the verification token is stored.
		if _, err := e.store.VerificationToken(context.Background(), tok); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("the raw verification token is stored")
		}

		r = e.do("POST", "/v1/auth/login", map[string]string{"email": "ALICE@example.org", "password": goodPassword, "device_info": "Firefox"})
		want(t, "login", r, 200, "")
		if r.str("token_type") != "Bearer" || r.body["expires_in"] != float64(900) ||
			r.body["refresh_expires_in"] != float64(168*3600) || r.str("session_id") == "" {
			t.Errorf("login body %s", r.raw)
		}
		access, refresh := r.str("access_token"), r.str("refresh_token")
		if len(refresh) < 43 {
			t.Errorf("refresh token %q is shorter than 256 bits", refresh)
		}
		rt, err := e.store.RefreshToken(context.Background(), authd.Digest(refresh))
		if err != nil || rt.TokenValue == refresh || rt.DeviceInfo != "Firefox" {
			t.Errorf("refresh row %+v, %v: want it found by digest, not holding the raw token", rt, err)
		}

		me := e.do("GET", "/v1/users/me", nil, bearer(access)...)
		want(t, "me", me, 200, "")
		if me.str("email") != "alice@example.org" || strings.Contains(me.raw, "argon2") || strings.Contains(me.raw, "password_hash") {
			t.Errorf("me %s", me.raw)
		}

		r = e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
		want(t, "refresh", r, 200, "")
		access2, refresh2 := r.str("access_token"), r.str("refresh_token")
		if refresh2 == refresh || access2 == access {
			t.Error("refresh returned the same tokens")
		}
		want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(access2)...), 204, "")
		want(t, "me after logout", e.do("GET", "/v1/users/me", nil, bearer(access2)...), 401, "invalid_token")
		want(t, "older access token after logout", e.do("GET", "/v1/users/me", nil, bearer(access)...), 401, "invalid_token")
		want(t, "refresh after logout", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh2}), 401, "invalid_token")

		got := e.events("alice@example.org")
		// The second verification and the refresh after logout are failures
		// of the user's (used or revoked) tokens, logged as such (SPEC 6.10).
		wantEvents := []string{"registration/success", "email_verification_sent/success", "login_failure/failure",
			"email_verified/success", "email_verified/failure", "login_success/success", "token_refreshed/success",
			"logout/success", "token_refreshed/failure"}
		if diff := cmp.Diff(wantEvents, got); diff != "" {
			t.Errorf("security log (-want +got):\n%s", diff)
		}
		// Access tokens are stateless: only the one revoked by logout has a
		// row (the blacklist of SPEC 6.3), without a value.
		row, err := e.store.TokenByJTI(context.Background(), jwtClaims(t, access2)["jti"].(string))
		if err != nil || row.TokenType != authd.TokenAccess || row.TokenValue != "" || !row.Revoked || row.RevokedAt.IsZero() {
			t.Errorf("logged-out access token row %+v, %v: want a revoked access row without a value", row, err)
		}
		if _, err := e.store.TokenByJTI(context.Background(), jwtClaims(t, access)["jti"].(string)); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("access token never revoked by itself has a row (%v); want none", err)
		}
	})
}

func TestRegisterValidation(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		tests := []struct {
			name        string
			body        string
			status      int
			code, field string
		}{
			{"bad email", `{"email":"not-an-email","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"email with name", `{"email":"Al <al@example.org>","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"email too long", `{"email":"` + strings.Repeat("a", 250) + `@x.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"zero-width space", `{"email":"a\u200b@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"right-to-left override", `{"email":"a\u202e@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"soft hyphen", `{"email":"a@exa\u00admple.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"local part of 65", `{"email":"` + strings.Repeat("a", 65) + `@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"label of 64", `{"email":"a@` + strings.Repeat("b", 64) + `.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"address literal", `{"email":"a@[127.0.0.1]","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"numeric top level", `{"email":"a@example.123","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"hyphen first", `{"email":"a@-example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"underscore", `{"email":"a@exa_mple.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"grapheme joiner", `{"email":"a\u034f@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"variation selector on ASCII", `{"email":"a\ufe0f@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"Hangul filler", `{"email":"a\u3164@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"blank braille", `{"email":"a\u2800@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"ideographic space", `{"email":"a\u3000@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"line separator", `{"email":"a\u2028@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"C1 control", `{"email":"a\u0085@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"fullwidth domain", `{"email":"a@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"variation selector on a letter", `{"email":"jos\u00e9\ufe0f@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"ZWJ between ASCII symbols", `{"email":"a^\u200d^@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"ZWJ in Cyrillic", `{"email":"\u0433\u200d\u0440@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			// UTS #46 drops or maps these: 例.example, αι.example, i❤.ws.
			{"variation selector in the domain", `{"email":"a@\u4f8b\ufe00.example","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"iota subscript in the domain", `{"email":"a@\u1fb3.example","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"IDN label over 63 bytes as xn--", `{"email":"a@` + strings.Repeat("\u4f8b", 60) + `.example","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"emoji presentation in the domain", `{"email":"a@i\u2764\ufe0f.ws","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"punycode domain", `{"email":"a@XN--bcher-kva.example","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			// UTS #46 reads these as dots: a@example.org's mailbox.
			{"ideographic full stop", `{"email":"a@example\u3002org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"fullwidth full stop", `{"email":"a@example\uff0eorg","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"halfwidth ideographic full stop", `{"email":"a@example\uff61org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"no consent", `{"email":"a@example.org","password":"` + goodPassword + `"}`, 400, "validation_failed", "consent"},
			{"consent false", `{"email":"a@example.org","password":"` + goodPassword + `","consent":false}`, 400, "validation_failed", "consent"},
			{"short password", `{"email":"a@example.org","password":"short pass","consent":true}`, 400, "weak_password", "password"},
			{"long password", `{"email":"a@example.org","password":"` + strings.Repeat("x", 129) + `","consent":true}`, 400, "weak_password", "password"},
			{"common password", `{"email":"a@example.org","password":"1qaz2wsx3edc","consent":true}`, 400, "weak_password", "password"},
			{"password has local part", `{"email":"zebra42@example.org","password":"my name is Zebra42 ok","consent":true}`, 400, "weak_password", "password"},
			{"missing password", `{"email":"a@example.org","consent":true}`, 400, "validation_failed", "password"},
			{"unknown field", `{"email":"a@example.org","password":"` + goodPassword + `","consent":true,"admin":true}`, 400, "validation_failed", "admin"},
			{"duplicate key", `{"email":"a@example.org","email":"b@example.org","password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"array for string", `{"email":["a@example.org"],"password":"` + goodPassword + `","consent":true}`, 400, "validation_failed", "email"},
			{"string for bool", `{"email":"a@example.org","password":"` + goodPassword + `","consent":"yes"}`, 400, "validation_failed", "consent"},
			{"trailing data", `{"email":"a@example.org","password":"` + goodPassword + `","consent":true} {}`, 400, "validation_failed", ""},
			{"escaped NUL", `{"email":"a@example.org","password":"abc\u0000defghijklmn","consent":true}`, 400, "validation_failed", "password"},
			{"raw NUL", "{\"email\":\"a@example.org\x00\"}", 400, "validation_failed", ""},
			{"not UTF-8", "{\"email\":\"b\xffob@example.org\",\"password\":\"" + goodPassword + "\",\"consent\":true}", 400, "validation_failed", ""},
			{"lone high surrogate", `{"email":"a@example.org","password":"abc\ud800defghijklmn","consent":true}`, 400, "validation_failed", ""},
			{"lone low surrogate", `{"email":"a@example.org","password":"abc\udc00defghijklmn","consent":true}`, 400, "validation_failed", ""},
			{"surrogates the wrong way round", `{"email":"a@example.org","password":"abc\udc00\ud800defghijklmn","consent":true}`, 400, "validation_failed", ""},
			{"high surrogate last", `{"email":"a@example.org","consent":true,"password":"abcdefghijklmn\ud83d"}`, 400, "validation_failed", ""},
			{"array body", `[]`, 400, "validation_failed", ""},
			{"empty body", ``, 400, "validation_failed", ""},
			{"not JSON", `email=a@example.org`, 400, "validation_failed", ""},
			{"too large", `{"email":"` + strings.Repeat("a", 70000) + `"}`, 413, "payload_too_large", ""},
		}
		for _, tt := range tests {
			r := e.do("POST", "/v1/auth/register", tt.body)
			want(t, tt.name, r, tt.status, tt.code)
			if tt.field != "" && !strings.Contains(r.raw, `"field":"`+tt.field+`"`) {
				t.Errorf("%s: %s does not name field %q", tt.name, r.raw, tt.field)
			}
			if _, ok := r.body["errors"].([]any); !ok && tt.code == "validation_failed" {
				t.Errorf("%s: %s; want an errors array with validation_failed (SPEC §5)", tt.name, r.raw)
			}
		}
		// A domain relays map otherwise is refused naming the form they read.
		r := e.do("POST", "/v1/auth/register", map[string]any{"email": "a@\u1fb3.example", "password": goodPassword,
			"consent": true})
		if !strings.Contains(r.raw, "as mail relays read it: \u03b1\u03b9.example") {
			t.Errorf("an iota subscript in the domain: %s; want the mapped domain named", r.raw)
		}
		r = e.do("POST", "/v1/auth/register", `{}`, "Content-Type", "text/plain")
		want(t, "text/plain body", r, 415, "unsupported_media_type")
		if n := len(e.events("")); n != 0 {
			t.Errorf("%d security-log rows after only invalid requests", n)
		}
		// What real addresses hold stays: a Persian local part with its ZWNJ, an IDN, a
		// dotless host of a development setup.
		for _, email := range []string{"\u0645\u06cc\u200c\u0634\u0648\u062f@example.org", "jürgen@bücher.example", "dev@localhost",
			"ada@\u4f8b.example", "ada@\u03b1\u03b9.example", "ada@i\u2764.ws", "ada@\uab73\uab83\uab79.example"} {
			want(t, "register "+email, e.do("POST", "/v1/auth/register", map[string]any{"email": email, "password": goodPassword,
				"consent": true}), 202, "")
		}
		// Unicode that only looks odd is accepted: a surrogate pair escaped,
		// U+FFFD as itself and escaped, and an escaped backslash before "ud800".
		for i, pw := range []string{`an emoji \ud83d\ude00 here`, "a replacement \ufffd here", `a \uFFFD escaped here`,
			`a backslash \\ud800 here`} {
			body := fmt.Sprintf(`{"email":"unicode%d@example.org","password":"%s","consent":true}`, i, pw)
			want(t, "register with "+pw, e.do("POST", "/v1/auth/register", body), 202, "")
		}
	})
}

func TestNoEnumeration(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("known@example.org", goodPassword)
		pairs := []struct {
			name, path     string
			known, unknown any
		}{
			{"register", "/v1/auth/register",
				map[string]any{"email": "known@example.org", "password": "another good passphrase", "consent": true},
				map[string]any{"email": "fresh@example.org", "password": "another good passphrase", "consent": true}},
			{"resend", "/v1/auth/verify-email/resend", map[string]string{"email": "known@example.org"}, map[string]string{"email": "nobody@example.org"}},
			{"forgot", "/v1/auth/password/forgot", map[string]string{"email": "known@example.org"}, map[string]string{"email": "nobody@example.org"}},
			{"login", "/v1/auth/login",
				map[string]string{"email": "known@example.org", "password": "wrong password here"},
				map[string]string{"email": "nobody@example.org", "password": "wrong password here"}},
		}
		for _, p := range pairs {
			a, b := e.do("POST", p.path, p.known), e.do("POST", p.path, p.unknown)
			if a.status != b.status || a.raw != b.raw {
				t.Errorf("%s answers differ: known %d %s, unknown %d %s", p.name, a.status, a.raw, b.status, b.raw)
			}
		}
		if n := e.mail.count(authd.MailRegisterNotice, "known@example.org"); n != 1 {
			t.Errorf("%d register notices to the existing address, want 1", n)
		}
		if n := e.mail.count(authd.MailVerifyEmail, "known@example.org"); n != 1 {
			t.Errorf("resend mailed a verified address (%d verification mails)", n)
		}
		if e.mail.count(authd.MailPasswordReset, "known@example.org") != 1 || e.mail.count(authd.MailPasswordReset, "nobody@example.org") != 0 {
			t.Error("forgot: want one reset mail to the known address and none to the unknown")
		}
		// Resend writes a row whatever the address (SPEC 6.10).
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{EventType: authd.EventEmailVerificationSent,
			Result: authd.ResultFailure, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var reasons []string
		for _, l := range logs {
			reasons = append(reasons, l.FailureReason)
		}
		slices.Sort(reasons)
		if !slices.Equal(reasons, []string{"already verified", "unknown email"}) {
			t.Errorf("resend's failure rows %q, want one for the verified address and one for the unknown", reasons)
		}
	})
}

func TestVerificationTokens(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "v@example.org", "password": goodPassword, "consent": true}), 202, "")
		first := tokenOf(t, e.mail.last(t, authd.MailVerifyEmail, "v@example.org"))
		want(t, "resend", e.do("POST", "/v1/auth/verify-email/resend", map[string]string{"email": "v@example.org"}), 202, "")
		second := tokenOf(t, e.mail.last(t, authd.MailVerifyEmail, "v@example.org"))
		want(t, "older token after resend", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": first}), 400, "invalid_token")
		e.clock.Advance(24*time.Hour + time.Second)
		want(t, "token after 24 h", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": second}), 400, "invalid_token")
		want(t, "junk token", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": "junk"}), 400, "invalid_token")
		want(t, "resend", e.do("POST", "/v1/auth/verify-email/resend", map[string]string{"email": "v@example.org"}), 202, "")
		third := tokenOf(t, e.mail.last(t, authd.MailVerifyEmail, "v@example.org"))
		e.clock.Advance(24*time.Hour - time.Second)
		want(t, "token just before 24 h", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": third}), 200, "")

		// Reset tokens: one hour, one use, and a reset token cannot verify.
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "v@example.org"}), 202, "")
		reset := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, "v@example.org"))
		if !strings.HasPrefix(e.mail.last(t, authd.MailPasswordReset, "v@example.org").Link, "https://auth.example.org/reset-password?token=") {
			t.Error("reset link does not point at the reset page")
		}
		want(t, "reset token at verify", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": reset}), 400, "invalid_token")
		e.clock.Advance(time.Hour + time.Second)
		want(t, "reset after 1 h", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": reset, "new_password": "a brand new passphrase"}), 400, "invalid_token")
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "v@example.org"}), 202, "")
		reset = tokenOf(t, e.mail.last(t, authd.MailPasswordReset, "v@example.org"))
		want(t, "weak new password", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": reset, "new_password": "password"}), 400, "weak_password")
		want(t, "reset", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": reset, "new_password": "a brand new passphrase"}), 204, "")
		want(t, "reset again", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": reset, "new_password": "another new passphrase"}), 400, "invalid_token")
		e.login("v@example.org", "a brand new passphrase")
		want(t, "old password", e.do("POST", "/v1/auth/login", map[string]string{"email": "v@example.org", "password": goodPassword}), 401, "invalid_credentials")
		if e.mail.count(authd.MailPasswordChanged, "v@example.org") != 1 {
			t.Error("no password-changed notice after the reset")
		}
	})
}

func TestAccessTokenExpiry(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("exp@example.org", goodPassword)
		access, _ := e.login("exp@example.org", goodPassword)
		e.clock.Advance(15*time.Minute - time.Second)
		want(t, "me before expiry", e.do("GET", "/v1/users/me", nil, bearer(access)...), 200, "")
		e.clock.Advance(2 * time.Second)
		want(t, "me after expiry", e.do("GET", "/v1/users/me", nil, bearer(access)...), 401, "invalid_token")
		r := e.do("POST", "/v1/auth/introspect", map[string]string{"token": access}, bearer(serviceToken)...)
		if r.status != 200 || r.body["active"] != false {
			t.Errorf("introspect expired token: %d %s", r.status, r.raw)
		}
	})
}

func TestRefreshRotationAndReuse(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("rot@example.org", goodPassword)
		_, r0 := e.login("rot@example.org", goodPassword)
		first := e.refresh(r0)
		want(t, "refresh", first, 200, "")

		// Within the grace window, while the child is unused, a repeat gets
		// that same child (and a new access token of the same session): the
		// session never forks into two chains (SPEC 6.4).
		e.clock.Advance(5 * time.Second)
		retry := e.refresh(r0)
		want(t, "repeat within grace", retry, 200, "")
		if retry.str("session_id") != first.str("session_id") || retry.str("refresh_token") != first.str("refresh_token") ||
			retry.str("access_token") == first.str("access_token") {
			t.Errorf("grace retry %s; want the same session and refresh token with a new access token as %s", retry.raw, first.raw)
		}
		want(t, "earlier pair still valid", e.do("GET", "/v1/users/me", nil, bearer(first.str("access_token"))...), 200, "")

		// After the window it is reuse: the whole session ends.
		e.clock.Advance(6 * time.Second)
		want(t, "reuse after grace", e.refresh(r0), 401, "invalid_token")
		for _, r := range []response{first, retry} {
			want(t, "access token of the reused session", e.do("GET", "/v1/users/me", nil, bearer(r.str("access_token"))...), 401, "invalid_token")
			want(t, "refresh token of the reused session", e.refresh(r.str("refresh_token")), 401, "invalid_token")
		}
		if evs := e.events("rot@example.org"); !slices.Contains(evs, "refresh_token_reuse/failure") {
			t.Errorf("no refresh_token_reuse event in %v", evs)
		}
		want(t, "unknown refresh token", e.refresh(strings.Repeat("A", 43)), 401, "invalid_token")
		want(t, "malformed refresh token", e.refresh("junk"), 401, "invalid_token")
		if evs := e.events(""); !slices.Contains(evs, "token_refreshed/failure") {
			t.Errorf("refreshes with unknown tokens left no failure row: %v", evs)
		}
	})
}

// TestRepeatWithinGraceIsAUseOfItsSession: a repeat within the grace
// window that gets its token's child is a use of the session as a
// rotation is: the session's last use moves to it, the child's remaining
// lifetime is answered (not a fresh one), and it is logged as a successful
// refresh marked as a retry.
func TestRepeatWithinGraceIsAUseOfItsSession(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t)) // grace 10 s, refresh tokens 168 h
		e.registerVerified("retry@example.org", goodPassword)
		_, r0 := e.login("retry@example.org", goodPassword)
		first := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": r0})
		want(t, "refresh", first, 200, "")
		e.clock.Advance(5 * time.Second)
		since := e.clock.Now()
		retry := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": r0})
		want(t, "repeat within grace", retry, 200, "")
		if got, want := retry.body["refresh_expires_in"], (168*time.Hour - 5*time.Second).Seconds(); got != want {
			t.Errorf("the repeat's refresh_expires_in %v; want the child's remaining %v", got, want)
		}
		list := e.do("GET", "/v1/users/me/sessions", nil, bearer(retry.str("access_token"))...)
		want(t, "list", list, 200, "")
		items, _ := list.body["items"].([]any)
		if len(items) != 1 || items[0].(map[string]any)["last_used_at"] != since.Format(time.RFC3339) {
			t.Errorf("sessions %s; want the one, last used at the repeat (%s)", list.raw, since.Format(time.RFC3339))
		}
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: e.user("retry@example.org").ID,
			EventType: authd.EventTokenRefreshed, Since: since})
		var got []string
		for _, l := range logs {
			got = append(got, fmt.Sprint(l.Result, " ", l.AdditionalContext))
		}
		if err != nil || len(logs) != 1 || logs[0].Result != authd.ResultSuccess || logs[0].AdditionalContext["retry"] != true ||
			logs[0].AdditionalContext["session_id"] != retry.str("session_id") {
			t.Errorf("token_refreshed rows of the repeat %q, %v; want one success, retry true, of its session", got, err)
		}
	})
}

// TestGraceWindowIncludesItsEnd: the grace window is RefreshReuseGrace
// long, its last instant included, alike for a live session (a repeat then
// gets the child) and an ended one (a repeat then, its child unused, is
// refused as the session's end, not reported as reuse).
func TestGraceWindowIncludesItsEnd(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t)) // grace 10 s
		e.registerVerified("edge@example.org", goodPassword)
		_, r0 := e.login("edge@example.org", goodPassword)
		first := e.refresh(r0)
		want(t, "refresh", first, 200, "")
		e.clock.Advance(10 * time.Second)
		retry := e.refresh(r0)
		want(t, "a repeat at the window's last instant", retry, 200, "")
		if retry.str("refresh_token") != first.str("refresh_token") {
			t.Errorf("the repeat got another child")
		}

		_, r0 = e.login("edge@example.org", goodPassword)
		first = e.refresh(r0)
		want(t, "refresh", first, 200, "")
		want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(first.str("access_token"))...), 204, "")
		e.clock.Advance(10 * time.Second)
		since := e.clock.Now()
		want(t, "a repeat at the window's last instant, the session ended", e.refresh(r0), 401, "invalid_token")
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: e.user("edge@example.org").ID, Since: since})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range logs {
			got = append(got, string(l.EventType)+"/"+l.FailureReason)
		}
		if len(got) != 1 || got[0] != "token_refreshed/session ended" {
			t.Errorf("logged %v; want one token_refreshed refusal, session ended", got)
		}

		// Just past the window it is reuse, logged with the token and the
		// session's end.
		e.clock.Advance(time.Microsecond)
		since = e.clock.Now()
		want(t, "a repeat past the window, the session ended", e.refresh(r0), 401, "invalid_token")
		rotated, err := e.store.RefreshToken(context.Background(), authd.Digest(r0))
		if err != nil {
			t.Fatal(err)
		}
		logs, err = e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: e.user("edge@example.org").ID, Since: since})
		if err != nil || len(logs) != 1 || logs[0].EventType != authd.EventRefreshTokenReuse ||
			logs[0].AdditionalContext["token_id"] != rotated.ID.String() || logs[0].AdditionalContext["session_ended"] != true {
			var rows []string
			for _, l := range logs {
				rows = append(rows, fmt.Sprint(l.EventType, " ", l.AdditionalContext))
			}
			t.Errorf("logged %q (%v); want one refresh_token_reuse naming the token, its session ended", rows, err)
		}
	})
}

// TestReuseWhateverTheLimitOrExpiry: a thief who rotated a stolen refresh
// token cannot shield their chain from the owner's replay of it, neither
// by spending the session's refresh budget (the replay answered 429 and
// ended nothing) nor by keeping the chain alive past the stolen token's
// own expiry (the replay answered "expired" and ended nothing): the replay
// is reuse, and the session ends.
func TestReuseWhateverTheLimitOrExpiry(t *testing.T) {
	t.Parallel()
	for name, shield := range map[string]func(e *env, refresh func(string) response, chain string) string{
		"the budget spent": func(e *env, refresh func(string) response, chain string) string {
			for range 100 {
				r := e.refresh(chain)
				if r.status == 429 {
					return chain
				}
				want(e.t, "the thief's refresh", r, 200, "")
				chain = r.str("refresh_token")
			}
			e.t.Fatal("the session's refreshes were never limited")
			return ""
		},
		"the stolen token expired": func(e *env, refresh func(string) response, chain string) string {
			for range 3 { // the thief's chain lives on, day after day
				e.clock.Advance(3 * 24 * time.Hour)
				r := e.refresh(chain)
				want(e.t, "the thief's refresh", r, 200, "")
				chain = r.str("refresh_token")
			}
			return chain
		},
	} {
		t.Run(name, func(t *testing.T) {
			onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
				e := newEnv(t, open(t), withRateLimit())
				e.registerVerified("stolen@example.org", goodPassword)
				_, stolen := e.login("stolen@example.org", goodPassword)
				r := e.refresh(stolen) // the thief's, first
				want(t, "the thief's first refresh", r, 200, "")
				e.clock.Advance(time.Minute) // past the grace window
				chain := shield(e, e.refresh, r.str("refresh_token"))
				want(t, "the owner's replay of the stolen token", e.refresh(stolen), 401, "invalid_token")
				if evs := e.events("stolen@example.org"); !slices.Contains(evs, "refresh_token_reuse/failure") {
					t.Errorf("the replay was not taken for reuse: %v", evs)
				}
				e.clock.Advance(time.Minute) // a fresh budget
				want(t, "the thief's chain after the replay", e.refresh(chain), 401, "invalid_token")
			})
		})
	}
}

// TestRefreshGraceNeverForks replays the attack of a thief who wins the race
// for a rotated token: within the grace window both holders get the one
// child, and as soon as either uses it the other's repeat is reuse, which
// ends the session for both. No two chains ever live side by side.
func TestRefreshGraceNeverForks(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("fork@example.org", goodPassword)
		_, r0 := e.login("fork@example.org", goodPassword)
		victim := e.refresh(r0)
		want(t, "victim refreshes", victim, 200, "")
		thief := e.refresh(r0)
		want(t, "thief repeats within grace", thief, 200, "")
		if thief.str("refresh_token") != victim.str("refresh_token") {
			t.Fatal("the repeat minted a second chain")
		}
		// The victim goes on; the child is used now.
		next := e.refresh(victim.str("refresh_token"))
		want(t, "victim's next refresh", next, 200, "")
		// The thief tries r0 again, still within the window: reuse.
		want(t, "repeat after the child was used", e.refresh(r0), 401, "invalid_token")
		want(t, "the session ended for everyone", e.refresh(next.str("refresh_token")), 401, "invalid_token")
		want(t, "access of the ended session", e.do("GET", "/v1/users/me", nil, bearer(next.str("access_token"))...), 401, "invalid_token")
		if evs := e.events("fork@example.org"); !slices.Contains(evs, "refresh_token_reuse/failure") {
			t.Errorf("no refresh_token_reuse event in %v", evs)
		}
	})
}

// TestRefreshGraceAcrossInstances: the child of a rotation is derived with
// the shared refresh key, so a repeat that lands on another instance finds
// the same child.
func TestRefreshGraceAcrossInstances(t *testing.T) {
	t.Parallel()
	pg := instances(t, 2)
	key := []byte("0123456789abcdef0123456789abcdef")
	shared := withConfig(func(c *authd.Config) { c.RefreshKey = key })
	keys := t.TempDir()
	a := newEnv(t, pg[0], withKeysDir(keys), shared)
	b := newEnv(t, pg[1], withKeysDir(keys), shared)
	a.registerVerified("grace@example.org", goodPassword)
	_, r0 := a.login("grace@example.org", goodPassword)
	first := a.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": r0})
	want(t, "refresh at A", first, 200, "")
	retry := b.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": r0})
	want(t, "repeat at B", retry, 200, "")
	if retry.str("refresh_token") != first.str("refresh_token") {
		t.Error("instances sharing the refresh key derived different children")
	}
}

func TestRefreshRaceWithoutGrace(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withConfig(func(c *authd.Config) { c.RefreshReuseGrace = 0 }))
		e.registerVerified("race@example.org", goodPassword)
		_, refresh := e.login("race@example.org", goodPassword)
		const n = 20
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				statuses[i] = e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}).status
			})
		}
		wg.Wait()
		exactlyOneWins(t, "concurrent refreshes", statuses)
		// SPEC 6.4: every other attempt is reuse, logged as such, also
		// those that came after the first reuse had ended the session.
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{
			UserID: e.user("race@example.org").ID, EventType: authd.EventRefreshTokenReuse, Limit: 100})
		if err != nil || len(logs) != n-1 {
			t.Errorf("%d refresh_token_reuse rows (%v); want one for each of the %d losers", len(logs), err, n-1)
		}
	})
}

func TestRevocationPaths(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("rev@example.org", goodPassword)
		introspect := func(tok string) bool {
			r := e.do("POST", "/v1/auth/introspect", "token="+url.QueryEscape(tok),
				"Authorization", "Bearer "+serviceToken, "Content-Type", "application/x-www-form-urlencoded")
			if r.status != 200 {
				t.Fatalf("introspect: %d %s", r.status, r.raw)
			}
			return r.body["active"] == true
		}
		valid := func(what, tok string, wantValid bool) {
			t.Helper()
			status := e.do("GET", "/v1/users/me", nil, bearer(tok)...).status
			if (status == 200) != wantValid || introspect(tok) != wantValid {
				t.Errorf("%s: /me %d, introspection active %v; want valid=%v", what, status, introspect(tok), wantValid)
			}
		}

		a1, _ := e.login("rev@example.org", goodPassword)
		a2, _ := e.login("rev@example.org", goodPassword)
		valid("fresh token", a1, true)
		want(t, "logout-all", e.do("POST", "/v1/auth/logout-all", nil, bearer(a1)...), 204, "")
		valid("after logout-all, same session", a1, false)
		valid("after logout-all, other session", a2, false)

		a1, _ = e.login("rev@example.org", goodPassword)
		a2, _ = e.login("rev@example.org", goodPassword)
		want(t, "change password", e.do("POST", "/v1/auth/password/change",
			map[string]string{"current_password": goodPassword, "new_password": "a changed passphrase"}, bearer(a1)...), 204, "")
		valid("after change, the changing session", a1, true)
		valid("after change, another session", a2, false)

		a2, _ = e.login("rev@example.org", "a changed passphrase")
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "rev@example.org"}), 202, "")
		reset := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, "rev@example.org"))
		want(t, "reset", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": reset, "new_password": "a reset passphrase"}), 204, "")
		valid("after reset, session one", a1, false)
		valid("after reset, session two", a2, false)

		// Sessions: list, delete another one, 404 for strangers.
		a1, _ = e.login("rev@example.org", "a reset passphrase")
		a2, _ = e.login("rev@example.org", "a reset passphrase")
		list := e.do("GET", "/v1/users/me/sessions", nil, bearer(a1)...)
		want(t, "sessions", list, 200, "")
		items, _ := list.body["items"].([]any)
		if len(items) != 2 {
			t.Fatalf("sessions: %s", list.raw)
		}
		var other string
		for _, it := range items {
			m := it.(map[string]any)
			if m["current"] == false {
				other = m["id"].(string)
			}
		}
		want(t, "delete other session", e.do("DELETE", "/v1/users/me/sessions/"+other, nil, bearer(a1)...), 204, "")
		valid("deleted session", a2, false)
		valid("current session", a1, true)
		want(t, "delete it again", e.do("DELETE", "/v1/users/me/sessions/"+other, nil, bearer(a1)...), 404, "not_found")
		want(t, "delete a bad id", e.do("DELETE", "/v1/users/me/sessions/nope", nil, bearer(a1)...), 404, "not_found")

		e.registerVerified("stranger@example.org", goodPassword)
		s1, _ := e.login("stranger@example.org", goodPassword)
		mine := e.do("GET", "/v1/users/me/sessions", nil, bearer(a1)...).body["items"].([]any)[0].(map[string]any)["id"].(string)
		want(t, "delete someone else's session", e.do("DELETE", "/v1/users/me/sessions/"+mine, nil, bearer(s1)...), 404, "not_found")
		valid("session a stranger tried to delete", a1, true)

		evs := e.events("rev@example.org")
		for _, ev := range []string{"logout_all/success", "password_changed/success", "password_reset_requested/success",
			"password_reset_completed/success", "session_revoked/success"} {
			if !slices.Contains(evs, ev) {
				t.Errorf("no %s in %v", ev, evs)
			}
		}
	})
}

// TestSessionEndingsLogWhatTheyEnded: each way of ending sessions logs
// what it ended: a login past the session limit a session_revoked row for
// the session it evicted (with the limit), a sign-out of one session whether
// it was the caller's own, and a logout-all how many sessions it ended.
func TestSessionEndingsLogWhatTheyEnded(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withConfig(func(c *authd.Config) { c.MaxSessions = 2 }))
		const email = "ender@example.org"
		e.registerVerified(email, goodPassword)
		rows := func(event authd.EventType, since time.Time) []*authd.SecurityLog {
			t.Helper()
			logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: e.user(email).ID,
				EventType: event, Since: since})
			if err != nil {
				t.Fatal(err)
			}
			return logs
		}
		sid := func(access string) string { return jwtClaims(t, access)["sid"].(string) }

		evicted, _ := e.login(email, goodPassword)
		e.clock.Advance(time.Second)
		other, _ := e.login(email, goodPassword)
		e.clock.Advance(time.Second)
		since := e.clock.Now()
		own, _ := e.login(email, goodPassword)
		if logs := rows(authd.EventSessionRevoked, since); len(logs) != 1 || logs[0].FailureReason != "session limit reached" ||
			logs[0].AdditionalContext["session_id"] != sid(evicted) || logs[0].AdditionalContext["max_sessions"] != float64(2) {
			t.Errorf("the eviction logged %d session_revoked rows (%v); want one, session limit reached, of the evicted session", len(logs), contexts(logs))
		}

		for _, c := range []struct {
			name, access string
			current      bool
		}{{"another session", other, false}, {"its own session", own, true}} {
			e.clock.Advance(time.Second)
			since := e.clock.Now()
			want(t, "sign out "+c.name, e.do("DELETE", "/v1/users/me/sessions/"+sid(c.access), nil, bearer(own)...), 204, "")
			if logs := rows(authd.EventSessionRevoked, since); len(logs) != 1 || logs[0].AdditionalContext["session_id"] != sid(c.access) ||
				logs[0].AdditionalContext["current"] != c.current {
				t.Errorf("signing out %s logged %d rows (%v); want one session_revoked row, current %v", c.name, len(logs), contexts(logs), c.current)
			}
		}

		a1, _ := e.login(email, goodPassword)
		e.login(email, goodPassword)
		e.clock.Advance(time.Second)
		since = e.clock.Now()
		want(t, "logout-all", e.do("POST", "/v1/auth/logout-all", nil, bearer(a1)...), 204, "")
		if logs := rows(authd.EventLogoutAll, since); len(logs) != 1 || logs[0].AdditionalContext["sessions"] != float64(2) {
			t.Errorf("logout-all logged %d rows (%v); want one, 2 sessions", len(logs), contexts(logs))
		}

		// A password change ends the other sessions, a reset every one:
		// each row counts those it ended.
		keep, _ := e.login(email, goodPassword)
		e.login(email, goodPassword)
		e.clock.Advance(time.Second)
		since = e.clock.Now()
		want(t, "change password", e.do("POST", "/v1/auth/password/change", map[string]string{
			"current_password": goodPassword, "new_password": "a changed passphrase"}, bearer(keep)...), 204, "")
		if logs := rows(authd.EventPasswordChanged, since); len(logs) != 1 || logs[0].AdditionalContext["sessions_revoked"] != float64(1) {
			t.Errorf("the change logged %d rows (%v); want one, 1 session revoked", len(logs), contexts(logs))
		}
		e.login(email, "a changed passphrase")
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		link := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
		e.clock.Advance(time.Second)
		since = e.clock.Now()
		want(t, "reset", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": link,
			"new_password": "a reset passphrase"}), 204, "")
		if logs := rows(authd.EventPasswordResetCompleted, since); len(logs) != 1 || logs[0].AdditionalContext["sessions_revoked"] != float64(2) {
			t.Errorf("the reset logged %d rows (%v); want one, 2 sessions revoked", len(logs), contexts(logs))
		}
	})
}

// contexts returns each row's reason and context, for a failure message.
func contexts(logs []*authd.SecurityLog) []string {
	var out []string
	for _, l := range logs {
		out = append(out, fmt.Sprint(l.FailureReason, " ", l.AdditionalContext))
	}
	return out
}

// TestPasswordChangeVoidsResetLinks: a reset link mailed before the
// owner changed their password no longer resets it, and a reset mail
// asked for before the change and still queued is not sent: whoever holds
// a stray link (a forwarded mail, a shared device) is shut out with the
// rest. The link reset the password after the change, ending the owner's
// sessions.
func TestPasswordChangeVoidsResetLinks(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "stray@example.org"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		change := func(from, to string) {
			t.Helper()
			want(t, "change password", e.do("POST", "/v1/auth/password/change",
				map[string]string{"current_password": from, "new_password": to}, bearer(access)...), 204, "")
		}
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		stray := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
		e.clock.Advance(time.Minute)
		change(goodPassword, "a changed passphrase")
		want(t, "the stray link after the change", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": stray, "new_password": "the intruder's passphrase"}), 400, "invalid_token")

		sent := e.mail.count(authd.MailPasswordReset, email)
		e.clock.Advance(time.Minute)
		want(t, "forgot, not yet sent", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		e.clock.Advance(time.Minute)
		change("a changed passphrase", "another changed passphrase") // the outbox runs when the mailbox is read
		if n := e.mail.count(authd.MailPasswordReset, email); n != sent {
			t.Errorf("reset mails after a change that followed the request: %d sent, want none", n-sent)
		}
		if !e.active(access) {
			t.Error("the owner's session ended")
		}

		// A reset withdraws a reset mail still queued (one waiting for a
		// retry after a failed send), which would otherwise mail a fresh
		// link for the new password.
		e.clock.Advance(time.Hour) // the address's mails for the hour
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		link := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
		sent = e.mail.count(authd.MailPasswordReset, email)
		u := e.user(email)
		// An undeliverable reset mail, dead, which an operator could revive.
		dead := &authd.OutboxMail{ID: authd.NewID(), Kind: authd.MailPasswordReset,
			UserID: u.ID, To: email, CreatedAt: e.clock.Now(), NextAttemptAt: e.clock.Now()}
		if err := e.store.EnqueueMail(context.Background(), dead); err != nil {
			t.Fatal(err)
		}
		claim := authd.NewID()
		if m, err := e.store.ClaimMail(context.Background(), claim, e.clock.Now(), time.Minute); err != nil || m == nil || m.ID != dead.ID {
			t.Fatalf("claim the mail to kill: %+v, %v", m, err)
		}
		if err := e.store.KillMail(context.Background(), dead.ID, claim, e.clock.Now(), "550 mailbox full"); err != nil {
			t.Fatal(err)
		}
		if err := e.store.EnqueueMail(context.Background(), &authd.OutboxMail{ID: authd.NewID(), Kind: authd.MailPasswordReset,
			UserID: u.ID, To: email, CreatedAt: e.clock.Now(), NextAttemptAt: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
		want(t, "reset with the link", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": link, "new_password": "a reset passphrase"}), 204, "")
		if n := e.mail.count(authd.MailPasswordReset, email); n != sent {
			t.Errorf("reset mails after a reset that followed the request: %d sent, want none", n-sent)
		}
		// The reset withdrew the dead one too: no operator can revive it
		// into a fresh link for the new password.
		want(t, "retry the dead mail after the reset", e.admin("POST", "/v1/admin/mail/"+dead.ID.String()+"/retry", nil),
			404, "not_found")
		if n := e.mail.count(authd.MailPasswordReset, email); n != sent {
			t.Errorf("reset mails after the dead one's retry: %d sent, want none", n-sent)
		}
		if st, err := e.store.OutboxStats(context.Background()); err != nil || st.Pending != 0 || st.Dead != 0 {
			t.Errorf("outbox after the reset: %+v, %v; want no reset mail left", st, err)
		}
	})
}

func TestChangePasswordErrors(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("chg@example.org", goodPassword)
		a, _ := e.login("chg@example.org", goodPassword)
		want(t, "wrong current", e.do("POST", "/v1/auth/password/change",
			map[string]string{"current_password": "not my password", "new_password": "a changed passphrase"}, bearer(a)...), 401, "invalid_credentials")
		r := e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword, "new_password": "qwertyuiop123"}, bearer(a)...)
		want(t, "weak new", r, 400, "weak_password")
		if !strings.Contains(r.raw, `"field":"new_password"`) {
			t.Errorf("weak new password names %s", r.raw)
		}
		want(t, "no token", e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword, "new_password": "a changed passphrase"}), 401, "invalid_token")
		// The same password (here in another Unicode form of it) is no
		// change: refused before any check, ending no session.
		other, _ := e.login("chg@example.org", goodPassword)
		r = e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword,
			"new_password": strings.ReplaceAll(goodPassword, "o", "\uff4f")}, bearer(a)...)
		want(t, "the same password", r, 400, "weak_password")
		if !strings.Contains(r.raw, "must differ") || !strings.Contains(r.raw, `"field":"new_password"`) {
			t.Errorf("the same password: %s", r.raw)
		}
		want(t, "the other session", e.do("GET", "/v1/users/me", nil, bearer(other)...), 200, "")
	})
}

func TestRateLimits(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		// A high lockout threshold keeps the lock of emails without an
		// account (lockout_test.go) out of the way of the limits.
		e := newEnv(t, open(t), withRateLimit(), withConfig(func(c *authd.Config) { c.LockoutThreshold = 100 }))
		// Per email: 10 login attempts a minute, known or not.
		for _, email := range []string{"ghost@example.org", "ghost2@example.org"} {
			for i := range 10 {
				want(t, fmt.Sprintf("attempt %d", i+1), e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": "whatever password"}), 401, "")
			}
			r := e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": "whatever password"})
			want(t, "11th attempt", r, 429, "rate_limited")
			if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("429 without Retry-After: %q", ra)
			}
		}
		// Per IP: 30 a minute on login.
		for i := range 8 {
			e.do("POST", "/v1/auth/login", map[string]string{"email": fmt.Sprintf("u%d@example.org", i), "password": "whatever password"})
		}
		want(t, "31st login from one IP", e.do("POST", "/v1/auth/login", map[string]string{"email": "new@example.org", "password": "whatever password"}), 429, "rate_limited")
		e.clock.Advance(time.Minute)
		want(t, "after the window", e.do("POST", "/v1/auth/login", map[string]string{"email": "new@example.org", "password": "whatever password"}), 401, "")

		// Per email: 3 mails an hour across resend and forgot.
		for i := range 3 {
			want(t, fmt.Sprintf("mail %d", i+1), e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "m@example.org"}), 202, "")
		}
		want(t, "4th mail", e.do("POST", "/v1/auth/verify-email/resend", map[string]string{"email": "m@example.org"}), 429, "rate_limited")
	})
}

func TestConsent(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("c@example.org", goodPassword)
		a, _ := e.login("c@example.org", goodPassword)
		e.clock.Advance(10 * time.Minute)
		r := e.do("PUT", "/v1/users/me/consent", map[string]bool{"consent": false}, bearer(a)...)
		want(t, "withdraw consent", r, 200, "")
		u := e.user("c@example.org")
		if u.ConsentStatus || !u.ConsentTimestamp.Equal(e.clock.Now()) {
			t.Errorf("consent %v at %v", u.ConsentStatus, u.ConsentTimestamp)
		}
		want(t, "missing consent", e.do("PUT", "/v1/users/me/consent", map[string]string{}, bearer(a)...), 400, "validation_failed")
		if !slices.Contains(e.events("c@example.org"), "consent_updated/success") {
			t.Error("no consent_updated event")
		}
	})
}

func TestNotVerifiedRequirementOff(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withConfig(func(c *authd.Config) { c.RequireVerifiedEmail = false }))
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "early@example.org", "password": goodPassword, "consent": true}), 202, "")
		access, _ := e.login("early@example.org", goodPassword)
		if u := e.user("early@example.org"); u.AccountStatus != authd.StatusActive || u.EmailVerified {
			t.Errorf("with verification not required: %+v", u)
		}
		// No second factor before the address is verified: whoever
		// registered another's address first would keep it (a passkey signs
		// in alone) once the owner reset the password, which leaves factors.
		for _, path := range []string{"/v1/users/me/mfa/totp", "/v1/users/me/passkeys/begin"} {
			want(t, path+" before verifying", e.do("POST", path, map[string]string{"password": goodPassword},
				bearer(access)...), 403, "email_not_verified")
		}
		tok := tokenOf(t, e.mail.last(t, authd.MailVerifyEmail, "early@example.org"))
		want(t, "verify", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": tok}), 200, "")
		want(t, "TOTP after verifying", e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword},
			bearer(access)...), 200, "")
	})
}

// gated holds every Verify until released, so that a test can change the
// account while a login is hashing.
type gated struct {
	authd.Passwords
	entered, release chan struct{}
}

// withGate returns a gate and the option that puts it in front of the
// service's password checks.
func withGate() (*gated, option) {
	g := &gated{entered: make(chan struct{}), release: make(chan struct{})}
	return g, withPasswords(func(p authd.Passwords) authd.Passwords { g.Passwords = p; return g })
}

func (g *gated) Verify(ctx context.Context, pw, hash string) (bool, bool, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.Passwords.Verify(ctx, pw, hash)
}

// TestLoginRacesAccountChanges: a password reset, or an address change,
// that commits while a login with the old password, or at the old address,
// is hashing wins; the login fails, logged with the reason.
func TestLoginRacesAccountChanges(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, reason string
		change       func(u *authd.User)
	}{
		{"password reset", "password changed during login", func(u *authd.User) {
			u.PasswordHash = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
		}},
		{"email change", "address changed during login", func(u *authd.User) { u.Email = "raced@example.net" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
				g, gate := withGate()
				e := newEnv(t, open(t), gate)
				want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "race@example.org", "password": goodPassword, "consent": true}), 202, "")
				tok := tokenOf(t, e.mail.last(t, authd.MailVerifyEmail, "race@example.org"))
				want(t, "verify", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": tok}), 200, "")

				done := make(chan response)
				go func() {
					done <- e.do("POST", "/v1/auth/login", map[string]string{"email": "race@example.org", "password": goodPassword})
				}()
				<-g.entered // the login is hashing
				u := e.user("race@example.org")
				c.change(u)
				if err := e.store.UpdateUser(context.Background(), u); err != nil {
					t.Fatal(err)
				}
				close(g.release)
				want(t, "login after the change", <-done, 401, "invalid_credentials")
				logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: u.ID, Limit: 1})
				if err != nil || len(logs) != 1 || logs[0].FailureReason != c.reason {
					t.Errorf("the refused login's row: %+v, %v", logs, err)
				}
			})
		})
	}
}

// TestIdleSessionHasEnded: a session left unrefreshed for the refresh
// token's lifetime has ended (its last refresh token expired), though its
// absolute end is weeks away: the list shows it no more and it cannot be
// signed out (404). A hosted pages' browser sign-in lives on its cookie
// and stays listed; a session that refreshed stays too.
func TestIdleSessionHasEnded(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "idler@example.org"
		e.registerVerified(email, goodPassword)
		idleAccess, _ := e.login(email, goodPassword)
		idle, err := e.svc.Authenticate(t.Context(), idleAccess)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SignIn(t.Context(), authd.Client{}, email, goodPassword); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(100 * time.Hour)
		_, refresh := e.login(email, goodPassword)
		e.clock.Advance(68*time.Hour + time.Minute) // the first: 168 h and a minute unrefreshed
		r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
		want(t, "refresh", r, 200, "")
		access := r.str("access_token")
		list := e.do("GET", "/v1/users/me/sessions", nil, bearer(access)...)
		want(t, "list", list, 200, "")
		var devices []string
		for _, item := range list.body["items"].([]any) {
			s := item.(map[string]any)
			if s["id"] == idle.SessionID.String() {
				t.Errorf("the idle session is listed: %s", list.raw)
			}
			devices = append(devices, s["device_info"].(string))
		}
		if len(devices) != 2 || !slices.ContainsFunc(devices, func(d string) bool { return strings.HasPrefix(d, "Browser sign-in") }) {
			t.Errorf("sessions listed %q; want the one that refreshed and the browser sign-in", devices)
		}
		want(t, "signing the idle session out", e.do("DELETE", "/v1/users/me/sessions/"+idle.SessionID.String(), nil,
			bearer(access)...), 404, "not_found")
	})
}

// TestIdleSessionEndsWithItsLastToken: a session has ended idle from the
// very instant its newest refresh token expires, when a refresh with it is
// refused: from then it is listed no more and cannot be signed out.
func TestIdleSessionEndsWithItsLastToken(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t)) // refresh tokens 168 h
		const email = "edge.idler@example.org"
		e.registerVerified(email, goodPassword)
		idleAccess, idleRefresh := e.login(email, goodPassword)
		idle := jwtClaims(t, idleAccess)["sid"].(string)
		e.clock.Advance(168 * time.Hour) // the idle session's token expires now
		access, _ := e.login(email, goodPassword)
		list := e.do("GET", "/v1/users/me/sessions", nil, bearer(access)...)
		want(t, "list", list, 200, "")
		if items, _ := list.body["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] == idle {
			t.Errorf("sessions %s; want the new one alone", list.raw)
		}
		want(t, "signing the idle session out", e.do("DELETE", "/v1/users/me/sessions/"+idle, nil, bearer(access)...), 404, "not_found")
		want(t, "a refresh of the idle session", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": idleRefresh}),
			401, "invalid_token")
	})
}

// TestRefreshLifetimeUnderTheAccessLifetime: SPEC §2 takes every lifetime
// from 1 s, a refresh TTL under the access TTL too (how people test an
// idle session's end); an access token then ends with the idle lifetime
// its login or refresh started, so a session that has ended idle (listed
// no more, beyond a sign-out) leaves no working token.
func TestRefreshLifetimeUnderTheAccessLifetime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withConfig(func(c *authd.Config) { c.RefreshTokenTTL = 5 * time.Second }))
	e.registerVerified("brief@example.org", goodPassword)
	r := e.do("POST", "/v1/auth/login", map[string]string{"email": "brief@example.org", "password": goodPassword})
	if r.status != 200 || r.body["expires_in"] != float64(5) || r.body["refresh_expires_in"] != float64(5) {
		t.Fatalf("login: %d expires_in %v, refresh_expires_in %v; want both 5 s", r.status, r.body["expires_in"], r.body["refresh_expires_in"])
	}
	access, refresh := r.str("access_token"), r.str("refresh_token")
	e.clock.Advance(4 * time.Second)
	r = e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
	if r.status != 200 || r.body["expires_in"] != float64(5) {
		t.Fatalf("refresh within the idle lifetime: %d %s; want 200, the new access token for 5 s", r.status, r.raw)
	}
	want(t, "the first access token, 4 s old", e.do("GET", "/v1/users/me", nil, bearer(access)...), 200, "")
	e.clock.Advance(2 * time.Second)
	want(t, "the first access token, past its login's idle lifetime", e.do("GET", "/v1/users/me", nil, bearer(access)...), 401, "invalid_token")
	access = r.str("access_token")
	want(t, "the refreshed access token", e.do("GET", "/v1/users/me", nil, bearer(access)...), 200, "")
	e.clock.Advance(4 * time.Second)
	want(t, "the refreshed access token, its session idle", e.do("GET", "/v1/users/me", nil, bearer(access)...), 401, "invalid_token")
	want(t, "a refresh of the idle session", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": r.str("refresh_token")}),
		401, "invalid_token")
}

// TestRepeatAfterItsChildExpired: a repeat within the grace window whose
// child has expired already (a refresh lifetime under the window, which
// SPEC §2 allows) gets no pair: the child is handed out while it can be
// used, and a dead one is no answer.
func TestRepeatAfterItsChildExpired(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withConfig(func(c *authd.Config) { c.RefreshTokenTTL = 5 * time.Second })) // grace 10 s
		e.registerVerified("late@example.org", goodPassword)
		_, r0 := e.login("late@example.org", goodPassword)
		want(t, "refresh", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": r0}), 200, "")
		e.clock.Advance(7 * time.Second) // within the window; the child expired 2 s ago
		want(t, "the repeat", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": r0}), 401, "invalid_token")
	})
}

// TestReplayAfterLogout: a rotated-out refresh token presented after its
// session was logged out is reuse, as in a live session: within the grace
// window once its child was rotated in turn, and past the window; a repeat
// within the window whose child was never used (a client's late retry)
// and the session's last token are refusals of an ended session.
func TestReplayAfterLogout(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t)) // grace 10 s
		e.registerVerified("gone@example.org", goodPassword)
		_, a := e.login("gone@example.org", goodPassword)
		r := e.refresh(a)
		b := r.str("refresh_token")
		r = e.refresh(b)
		c, access := r.str("refresh_token"), r.str("access_token")
		want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(access)...), 204, "")
		reasons := func() []string {
			logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{
				UserID: e.user("gone@example.org").ID, Since: e.clock.Now(), Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, l := range logs {
				out = append(out, string(l.EventType)+"/"+l.FailureReason)
			}
			return out
		}
		e.clock.Advance(3 * time.Second)
		for _, c := range []struct {
			name, tok, want string
		}{
			{"the first token (its child used), within the window", a, "refresh_token_reuse/revoked refresh token presented"},
			{"the second token (its child never used), within the window", b, "token_refreshed/session ended"},
			{"the last token", c, "token_refreshed/session ended"},
		} {
			want(t, c.name, e.refresh(c.tok), 401, "invalid_token")
			if got := reasons(); len(got) != 1 || got[0] != c.want {
				t.Errorf("%s: logged %v; want %s", c.name, got, c.want)
			}
			e.clock.Advance(time.Millisecond)
		}
		e.clock.Advance(10 * time.Second)
		want(t, "the second token past the window", e.refresh(b), 401, "invalid_token")
		if got := reasons(); len(got) != 1 || got[0] != "refresh_token_reuse/revoked refresh token presented" {
			t.Errorf("the second token past the window: logged %v; want reuse", got)
		}
	})
}
