package httpapi_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
)

// TestMailFlood: every mail a request can make authd send to an address
// counts toward that address's limit (3 an hour), whoever asks and from
// wherever; past it the answer is unchanged and no mail goes out. A
// notice its owner did not ask for (a registration at the address, a lock)
// never takes the last: that one is the owner's reset link, which
// strangers' registrations every hour would otherwise keep from them.
func TestMailFlood(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		e.registerVerified("taken@example.org", goodPassword)
		for i := range 60 {
			r := e.do("POST", "/v1/auth/register", map[string]any{"email": "taken@example.org", "password": goodPassword,
				"consent": true}, from(fmt.Sprintf("198.51.100.%d", i+1))...)
			want(t, fmt.Sprintf("registration %d of a taken address", i+1), r, 202, "")
		}
		// registerVerified's own verification mail was the first of three.
		if n := e.mail.count(authd.MailRegisterNotice, "taken@example.org"); n != 1 {
			t.Errorf("60 registrations of a taken address sent %d notices, want 1", n)
		}
		forgot := func(email string) response {
			return e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}, from("192.0.2.99")...)
		}
		want(t, "the owner's forgot after them", forgot("taken@example.org"), 202, "")
		if n := e.mail.count(authd.MailPasswordReset, "taken@example.org"); n != 1 {
			t.Errorf("the owner's forgot after strangers' registrations sent %d reset links, want 1", n)
		}
		want(t, "a forgot past the limit", forgot("taken@example.org"), 429, "rate_limited")

		// The lock notice counts too, and a new address's verification.
		for i := range 3 {
			want(t, "register a new address", e.do("POST", "/v1/auth/register", map[string]any{"email": "fresh@example.org",
				"password": goodPassword, "consent": true}, from(fmt.Sprintf("203.0.113.%d", i+1))...), 202, "")
		}
		if n := e.mail.count(authd.MailVerifyEmail, "fresh@example.org") + e.mail.count(authd.MailRegisterNotice, "fresh@example.org"); n != 2 {
			t.Errorf("3 registrations of a new address sent %d mails, want 2", n)
		}
		for range 5 {
			e.do("POST", "/v1/auth/login", map[string]string{"email": "fresh@example.org", "password": "not the password"},
				from("192.0.2.7")...)
		}
		if e.user("fresh@example.org").AccountStatus != authd.StatusLocked {
			t.Fatal("five failures did not lock")
		}
		if n := e.mail.count(authd.MailAccountLocked, "fresh@example.org"); n != 0 {
			t.Errorf("a lock notice took the address's last mail")
		}
		want(t, "a forgot after them", forgot("fresh@example.org"), 202, "")
		want(t, "a forgot past the limit", forgot("fresh@example.org"), 429, "rate_limited")
	})
}

// TestNewAccountsLinkPastTheMailBudget: a registration that creates the
// account mails its verification link even when the address's budget is
// spent — here by forgotten-password requests, as by the notices of
// registrations of the address racing it, which spend the budget in the
// order they come though they exist only because the creation won. The
// owner gets the link, not only notices and a resend refused for the hour.
// Once an hour: an account erased and made again (verification off, so
// its maker can sign in to erase it) mails no second link past the budget,
// and the erasure of an address never verified no notice past it.
func TestNewAccountsLinkPastTheMailBudget(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit(), withConfig(func(c *authd.Config) { c.RequireVerifiedEmail = false }))
		const email = "late@example.org"
		for i := range 3 {
			want(t, "a forgotten password of an address without an account", e.do("POST", "/v1/auth/password/forgot",
				map[string]any{"email": email}, from(fmt.Sprintf("198.51.100.%d", i+1))...), 202, "")
		}
		register := func(what string) {
			t.Helper()
			want(t, what, e.do("POST", "/v1/auth/register", map[string]any{"email": email, "password": goodPassword,
				"consent": true}, from("203.0.113.9")...), 202, "")
		}
		register("the address's registration")
		if n := e.mail.count(authd.MailVerifyEmail, email); n != 1 {
			t.Fatalf("a new account's verification mails past the budget: %d, want 1", n)
		}
		if rows := e.logRows(email, authd.EventRegistration); len(rows) != 1 || rows[0].AdditionalContext["verification_mailed"] != true {
			t.Errorf("registration rows %v, want one saying the link was mailed", rows)
		}
		register("a registration past the budget of the address now taken")
		if n := e.mail.count(authd.MailRegisterNotice, email); n != 0 {
			t.Errorf("%d notices past the budget, want none: only the account's creation goes past it", n)
		}

		access, _ := e.login(email, goodPassword)
		want(t, "erasure", e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword}, bearer(access)...), 204, "")
		register("the address's registration after its account's erasure")
		if n := e.mail.count(authd.MailVerifyEmail, email); n != 1 {
			t.Errorf("a second new account of the address within the hour: %d verification mails, want still 1", n)
		}
		// Nor did the erasure of an address never verified mail it past
		// the budget; a verified address's notice goes regardless.
		if n := e.mail.count(authd.MailAccountDeleted, email); n != 0 {
			t.Errorf("the erasure of an unverified address past its budget mailed %d notices, want none", n)
		}
		const verified = "verified@example.org"
		e.registerVerified(verified, goodPassword)
		for i := range 3 {
			e.do("POST", "/v1/auth/password/forgot", map[string]any{"email": verified}, from(fmt.Sprintf("198.51.100.%d", i+1))...)
		}
		access, _ = e.login(verified, goodPassword)
		want(t, "erasure of a verified address", e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword},
			bearer(access)...), 204, "")
		if n := e.mail.count(authd.MailAccountDeleted, verified); n != 1 {
			t.Errorf("the erasure of a verified address past its budget mailed %d notices, want 1", n)
		}
	})
}

// TestIPv6LimitedPerNetwork: per-IP limits count an IPv6 client by its /64,
// since one host holds the whole network.
func TestIPv6LimitedPerNetwork(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit(), withConfig(func(c *authd.Config) { c.LockoutThreshold = 100 }))
		statuses := map[int]int{}
		for i := range 31 {
			r := e.do("POST", "/v1/auth/login", map[string]string{"email": fmt.Sprintf("u%d@example.org", i), "password": "whatever password"},
				from(fmt.Sprintf("2001:db8:1:2:%x::%x", i, i+1))...)
			statuses[r.status]++
		}
		if statuses[429] != 1 {
			t.Errorf("31 logins from one /64: %v, want the 31st limited", statuses)
		}
		want(t, "another /64", e.do("POST", "/v1/auth/login", map[string]string{"email": "x@example.org", "password": "whatever password"},
			from("2001:db8:1:3::1")...), 401, "invalid_credentials")
		want(t, "IPv4-mapped address counts as IPv4", e.do("POST", "/v1/auth/login", map[string]string{"email": "y@example.org", "password": "whatever password"},
			from("::ffff:192.0.2.1")...), 401, "invalid_credentials")
	})
}

// TestLinkPagesAreLimitedPerIP: the verify and reset pages' GET, which
// tells a live token from a dead one, counts its refusals, 30 a minute per
// client as the API's refused redemptions but in a budget of its own: past
// it a dead link answers 429 with Retry-After (no security-log row either
// way), and the API's refusals are not spent.
func TestLinkPagesAreLimitedPerIP(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		statuses := map[int]int{}
		for i := range 40 {
			path := "/reset-password?token="
			if i%2 == 1 {
				path = "/verify-email?token="
			}
			r := e.do("GET", path+strings.Repeat(string(rune('A'+i%26)), 43), nil)
			statuses[r.status]++
			if r.status == 429 && r.header.Get("Retry-After") == "" {
				t.Errorf("a limited page without Retry-After")
			}
		}
		if statuses[429] != 10 || statuses[400] != 30 {
			t.Errorf("40 dead links from one client: %v, want 30 refused and 10 limited", statuses)
		}
		if ev := e.events(""); len(ev) != 0 {
			t.Errorf("page views of dead links logged: %v", ev)
		}
		// The pages' budget is their own: the API's refusals are not spent by old links.
		want(t, "a bad reset token after the pages' budget", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": strings.Repeat("Z", 43), "new_password": "a brand new passphrase"}), 400, "invalid_token")
	})
}

// TestVerifyButtonPastTheLimit: the verify page's button pressed with dead
// links past the client's budget answers 429 with Retry-After and a page
// that says so, not the form of a link that moves an account again (which
// would ask for a password no verification link needs).
func TestVerifyButtonPastTheLimit(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		var r response
		for i := 0; i < 40 && r.status != 429; i++ {
			r = e.post("/verify-email", form("token", strings.Repeat(string(rune('A'+i%26)), 43)))
		}
		if r.status != 429 || r.header.Get("Retry-After") == "" || strings.Contains(r.raw, "Enter your account") ||
			strings.Contains(r.raw, `name="password"`) {
			t.Errorf("a dead link past the budget: %d, Retry-After %q, %s; want 429 and no form",
				r.status, r.header.Get("Retry-After"), r.raw)
		}
	})
}

// TestResetIsLimitedPerIP: bad reset tokens are limited per client like
// every other unauthenticated endpoint, and each refused one is logged.
func TestResetIsLimitedPerIP(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		statuses := map[int]int{}
		for i := range 40 {
			tok := strings.Repeat(string(rune('A'+i%26)), 43)
			if i%2 == 1 {
				tok = "junk"
			}
			r := e.do("POST", "/v1/auth/password/reset", map[string]string{"token": tok, "new_password": "a brand new passphrase"})
			statuses[r.status]++
		}
		if statuses[429] != 10 || statuses[400] != 30 {
			t.Errorf("40 bad resets from one client: %v, want 30 refused and 10 limited", statuses)
		}
		if n := e.eventCount("", "password_reset_completed/failure"); n != 30 {
			t.Errorf("%d refused resets logged, want 30", n)
		}
	})
}

// TestResetWithALiveLinkIsLimitedPerIP: the per-client limit of resets
// holds for a live link too, not only for the bad tokens' budget: a link
// that a too-weak password leaves usable cannot be tried more than 30
// times a minute from one client (each a policy check, and a hash when the
// password passes), and works again once the window has passed.
func TestResetWithALiveLinkIsLimitedPerIP(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		e.registerVerified("live.link@example.org", goodPassword)
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "live.link@example.org"}), 202, "")
		tok := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, "live.link@example.org"))
		reset := func(pw string) response {
			return e.do("POST", "/v1/auth/password/reset", map[string]string{"token": tok, "new_password": pw}, from("192.0.2.44")...)
		}
		for i := range 30 {
			want(t, fmt.Sprintf("weak password %d", i+1), reset("short"), 400, "weak_password")
		}
		want(t, "the 31st reset from the client", reset("a brand new passphrase"), 429, "rate_limited")
		e.clock.Advance(time.Minute)
		want(t, "the reset after the window", reset("a brand new passphrase"), 204, "")
	})
}

// TestMailRequestsAreLimitedPerIP: forgot-password and resend-verification
// are limited per client, 30 a minute each in a budget of its own, whatever
// the addresses asked for (the per-address mail limit alone would let one
// client mail every address it knows); another client is not held back.
func TestMailRequestsAreLimitedPerIP(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		for _, path := range []string{"/v1/auth/password/forgot", "/v1/auth/verify-email/resend"} {
			statuses := map[int]int{}
			for i := range 31 {
				r := e.do("POST", path, map[string]string{"email": fmt.Sprintf("p%d@example.org", i)}, from("192.0.2.31")...)
				statuses[r.status]++
			}
			if statuses[202] != 30 || statuses[429] != 1 {
				t.Errorf("POST %s for 31 addresses from one client: %v, want 30 answered and the 31st limited", path, statuses)
			}
			want(t, "POST "+path+" from another client", e.do("POST", path, map[string]string{"email": "elsewhere@example.org"},
				from("192.0.2.32")...), 202, "")
		}
	})
}

// TestUnmatchedTokensAreLogged: verify, reset and refresh with a token that
// matches nothing leave a failure row without a user (SPEC 6.10).
func TestUnmatchedTokensAreLogged(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		unknown := strings.Repeat("Q", 43)
		want(t, "verify", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": unknown}), 400, "invalid_token")
		want(t, "reset", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": unknown, "new_password": "a brand new passphrase"}), 400, "invalid_token")
		want(t, "refresh", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": unknown}), 401, "invalid_token")
		got := e.events("")
		for _, ev := range []string{"email_verified/failure", "password_reset_completed/failure", "token_refreshed/failure"} {
			if !slices.Contains(got, ev) {
				t.Errorf("no %s row in %v", ev, got)
			}
		}
	})
}

// TestSessionsAreBounded: a login beyond AUTHD_MAX_SESSIONS ends the least
// recently used session, and refresh is limited per session.
func TestSessionsAreBounded(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit(), withConfig(func(c *authd.Config) { c.MaxSessions = 3 }))
		e.registerVerified("many@example.org", goodPassword)
		var access, refresh []string
		for range 3 {
			a, r := e.login("many@example.org", goodPassword)
			access, refresh = append(access, a), append(refresh, r)
		}
		e.clock.Advance(time.Second)
		// Use the first session, so that the second is the least recently used.
		r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh[0]})
		want(t, "refresh the first session", r, 200, "")
		e.clock.Advance(time.Second)
		e.login("many@example.org", goodPassword)
		if e.active(access[1]) {
			t.Error("the least recently used session outlived a login past the limit")
		}
		if !e.active(r.str("access_token")) || !e.active(access[2]) {
			t.Error("a login past the limit ended a recently used session")
		}
		sessions := e.do("GET", "/v1/users/me/sessions", nil, bearer(access[2])...)
		if items, _ := sessions.body["items"].([]any); len(items) != 3 {
			t.Errorf("%d active sessions, want 3: %s", len(items), sessions.raw)
		}

		// 60 refreshes a minute per session.
		tok, limited := r.str("refresh_token"), false
		for i := range 61 {
			r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": tok})
			if r.status == 429 {
				limited = i == 59 // the first refresh above was the 1st of the minute
				break
			}
			want(t, fmt.Sprintf("refresh %d", i+2), r, 200, "")
			tok = r.str("refresh_token")
		}
		if !limited {
			t.Error("61 refreshes of a session in a minute: the 61st was not limited")
		}
	})
}

// TestExportIsLimitedPerUser: an export reads every row of the user, so a
// user gets 10 an hour.
func TestExportIsLimitedPerUser(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		e.registerVerified("export@example.org", goodPassword)
		access, _ := e.login("export@example.org", goodPassword)
		for i := range 10 {
			want(t, fmt.Sprintf("export %d", i+1), e.do("GET", "/v1/users/me/export", nil, bearer(access)...), 200, "")
		}
		want(t, "11th export in an hour", e.do("GET", "/v1/users/me/export", nil, bearer(access)...), 429, "rate_limited")
	})
}

// TestMFAVerifyIsLimitedPerIP: second-factor codes sent with live
// mfa_tokens are limited per client (30 a minute), as logins are, however
// many tokens they are spread over; the limit's window over, a right code
// signs in.
func TestMFAVerifyIsLimitedPerIP(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit(), withConfig(func(c *authd.Config) { c.LockoutThreshold = 100 }))
		const email = "spread@example.org"
		_, secret, _ := e.mfaUser(email)
		var token string
		for i := range 30 {
			if i%authd.MaxMFAFailures == 0 {
				token = e.mfaLogin(email)
			}
			want(t, fmt.Sprintf("wrong code %d", i+1), e.verify(token, "totp", e.wrongCode(secret)), 401, "invalid_credentials")
		}
		token = e.mfaLogin(email)
		want(t, "a 31st code in the minute, right", e.verify(token, "totp", totpAt(t, secret, e.clock.Now())), 429, "rate_limited")
		e.clock.Advance(time.Minute)
		want(t, "a right code after the window", e.verify(token, "totp", totpAt(t, secret, e.clock.Now())), 200, "")
	})
}

// TestStepUpCodesAreLimitedPerUser: second-factor codes checked for a
// signed-in user (a step-up, a TOTP confirmation) are limited per user (10
// a minute), counted before any check, so a stolen access token cannot
// guess codes fast, in a budget apart from the password's checks; the
// window over (not before), a right code passes.
func TestStepUpCodesAreLimitedPerUser(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit(), withConfig(func(c *authd.Config) { c.LockoutThreshold = 100 }))
		access, secret, _ := e.mfaUser("guessed.fast@example.org")
		e.clock.Advance(time.Minute) // past the confirmation's check
		replace := func(code string) response {
			return e.do("POST", "/v1/users/me/mfa/recovery-codes", map[string]string{"code": code}, bearer(access)...)
		}
		for i := range 10 {
			want(t, fmt.Sprintf("wrong code %d", i+1), replace(e.wrongCode(secret)), 401, "invalid_credentials")
		}
		want(t, "an 11th code in the minute, right", replace(totpAt(t, secret, e.clock.Now())), 429, "rate_limited")
		// The codes' budget is their own: the password's checks are not spent.
		want(t, "a password change with its step-up in the minute", e.do("POST", "/v1/auth/password/change",
			map[string]string{"current_password": goodPassword, "new_password": "another long passphrase 7",
				"code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 204, "")
		e.clock.Advance(time.Minute - time.Second)
		want(t, "a code at the window's last second", replace(totpAt(t, secret, e.clock.Now())), 429, "rate_limited")
		e.clock.Advance(time.Second)
		want(t, "a right code after the window", replace(totpAt(t, secret, e.clock.Now())), 200, "")
	})
}

// TestBadTokensAreLimitedPerNetworkForAMinute: the budget of refused token
// redemptions (30 a minute) counts an IPv6 client by its /64, as every per-client
// limit does, so that a host cannot flood the security log by taking a
// fresh address per request; and it lasts the whole minute, not less.
func TestBadTokensAreLimitedPerNetworkForAMinute(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		bad := func(i int, ip string) response {
			return e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": strings.Repeat(string(rune('a'+i%26)), 43)}, from(ip)...)
		}
		for i := range 30 {
			want(t, fmt.Sprintf("bad token %d", i+1), bad(i, fmt.Sprintf("2001:db8:5:6:%x::1", i+1)), 401, "invalid_token")
		}
		want(t, "a 31st bad token from the same /64", bad(30, "2001:db8:5:6:ffff::2"), 429, "rate_limited")
		want(t, "a bad token from another /64", bad(31, "2001:db8:5:7::1"), 401, "invalid_token")
		e.clock.Advance(time.Minute - time.Second)
		want(t, "a bad token from the /64 within the minute", bad(32, "2001:db8:5:6::3"), 429, "rate_limited")
		e.clock.Advance(time.Second)
		want(t, "a bad token from the /64 once the minute is over", bad(33, "2001:db8:5:6::3"), 401, "invalid_token")
		if n := e.eventCount("", "token_refreshed/failure"); n != 32 {
			t.Errorf("%d refused refreshes logged, want 32 (the limited ones unlogged)", n)
		}
	})
}

// TestBadRefreshTokensAreLimitedPerIP: refused refresh tokens, which no
// other per-client limit bounds, are limited per client (30 a minute): each
// is logged, so junk must not flood the security log.
func TestBadRefreshTokensAreLimitedPerIP(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		statuses := map[int]int{}
		for i := range 40 {
			r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": strings.Repeat(string(rune('A'+i%26)), 43)})
			statuses[r.status]++
		}
		if statuses[429] != 10 || statuses[401] != 30 {
			t.Errorf("40 bad refresh tokens from one client: %v, want 30 refused and 10 limited", statuses)
		}
		if n := e.eventCount("", "token_refreshed/failure"); n != 30 {
			t.Errorf("%d refused refreshes logged, want 30", n)
		}
	})
}

// TestLocksLeaveTheLastMailAlike: a lock's notice, sent or not, never takes
// an address's last mail of the hour, with an account or without one: the
// owner's forgot after strangers' failed logins gets its link, and the
// answer after them tells nothing of whether the address has an account.
func TestLocksLeaveTheLastMailAlike(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		e.registerVerified("known@example.org", goodPassword) // its link spent one
		forgot := func(email string) response {
			return e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}, from("192.0.2.99")...)
		}
		want(t, "a forgot", forgot("unknown@example.org"), 202, "")
		want(t, "a forgot", forgot("known@example.org"), 202, "")
		want(t, "a forgot", forgot("unknown@example.org"), 202, "")
		for _, email := range []string{"known@example.org", "unknown@example.org"} {
			for i := range 5 {
				want(t, "a wrong password", e.do("POST", "/v1/auth/login", map[string]string{"email": email,
					"password": "not the password 1"}, from(fmt.Sprintf("198.51.100.%d", i+1))...), 401, "invalid_credentials")
			}
			want(t, "the owner's forgot after the lock", forgot(email), 202, "")
			want(t, "a forgot past the limit", forgot(email), 429, "rate_limited")
		}
		if n := e.mail.count(authd.MailAccountLocked, "known@example.org"); n != 0 {
			t.Errorf("%d lock notices took the address's last mail, want 0", n)
		}
	})
}

// TestSubaddressesShareAMailbox: the links mailed to accounts not
// verified at sub-addresses of one mailbox (name+1@, name+2@, …) share the
// mailbox's 3 an hour, whatever asks for them (registrations, resends,
// forgots): one inbox does not get a budget per sub-address. The mailbox's
// own address and a verified sub-address's account keep their mails.
func TestSubaddressesShareAMailbox(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		e.registerVerified("name+shop@example.org", goodPassword) // the owner's own: its link was one of the 3
		inbox := func() int {
			n := e.mail.count(authd.MailVerifyEmail, "name+shop@example.org")
			for i := range 6 {
				email := fmt.Sprintf("name+%d@example.org", i+1)
				n += e.mail.count(authd.MailVerifyEmail, email) + e.mail.count(authd.MailPasswordReset, email)
			}
			return n
		}
		for i := range 6 {
			email := fmt.Sprintf("name+%d@example.org", i+1)
			from := from(fmt.Sprintf("198.51.100.%d", i+1))
			want(t, "register a sub-address", e.do("POST", "/v1/auth/register", map[string]any{"email": email,
				"password": goodPassword, "consent": true}, from...), 202, "")
			inbox() // delivered before the next asks (a resend would withdraw it)
			want(t, "resend", e.do("POST", "/v1/auth/verify-email/resend", map[string]string{"email": email}, from...), 202, "")
			inbox()
			want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}, from...), 202, "")
		}
		if n := inbox(); n != 3 {
			t.Errorf("a mailbox's unverified sub-addresses got %d links in an hour, want 3", n)
		}
		if n := e.eventCount("name+6@example.org", "password_reset_requested/failure"); n != 1 {
			t.Errorf("a reset not mailed past the mailbox's budget: %d failure rows, want 1", n)
		}
		for _, email := range []string{"name@example.org", "name+shop@example.org"} {
			want(t, "forgot "+email, e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		}
		if n := e.mail.count(authd.MailPasswordReset, "name+shop@example.org"); n != 1 {
			t.Errorf("the owner's verified sub-address got %d reset links after the flood, want 1", n)
		}
	})
}

// TestMovesToSubaddressesShareAMailbox: the links of address changes to
// sub-addresses of one mailbox share its 3 an hour, as links to accounts
// not verified there do: accounts moving to name+1@, name+2@, … do not
// mail one inbox a budget each.
func TestMovesToSubaddressesShareAMailbox(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		e.registerVerified("mover@example.org", goodPassword)
		access, _ := e.login("mover@example.org", goodPassword)
		links := 0
		for i := range 5 {
			email := fmt.Sprintf("name+%d@example.org", i+1)
			want(t, "a move to a sub-address", e.changeEmail(access, email, goodPassword), 202, "")
			links += e.mail.count(authd.MailEmailChange, email) // delivered before the next voids it
		}
		if links != 3 {
			t.Errorf("moves to five sub-addresses of one mailbox mailed %d links, want 3", links)
		}

		// A verified owner's move within their own mailbox is not held back:
		// strangers spend that budget as they like.
		e.registerVerified("own@example.org", goodPassword)
		own, _ := e.login("own@example.org", goodPassword)
		for i := range 3 {
			want(t, "a stranger's forgot at a sub-address", e.do("POST", "/v1/auth/password/forgot",
				map[string]string{"email": fmt.Sprintf("own+x%d@example.org", i)}), 202, "")
		}
		want(t, "the owner's move to a sub-address", e.changeEmail(own, "own+work@example.org", goodPassword), 202, "")
		if n := e.mail.count(authd.MailEmailChange, "own+work@example.org"); n != 1 {
			t.Errorf("a verified owner's move within their mailbox mailed %d links, want 1", n)
		}
	})
}

// TestSubaddressBudgetCountedAlike: the mailbox's budget is counted
// before any address is looked up, whether or not it has an account (as
// the address's own is), so that nothing tells whether one exists: forgots
// at sub-addresses without accounts spend it, and a new account's link at
// another sub-address is then held back; the mailbox's own address keeps
// its mails.
func TestSubaddressBudgetCountedAlike(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		for i := range 3 {
			want(t, "a forgot at a sub-address without an account", e.do("POST", "/v1/auth/password/forgot",
				map[string]string{"email": fmt.Sprintf("box+x%d@example.org", i)}), 202, "")
		}
		want(t, "register at another sub-address", e.do("POST", "/v1/auth/register", map[string]any{
			"email": "box+new@example.org", "password": goodPassword, "consent": true}), 202, "")
		if n := e.mail.count(authd.MailVerifyEmail, "box+new@example.org"); n != 0 {
			t.Errorf("a new sub-address account past its mailbox's budget got %d links, want 0", n)
		}
		want(t, "register it again", e.do("POST", "/v1/auth/register", map[string]any{
			"email": "box+new@example.org", "password": goodPassword, "consent": true}), 202, "")
		if n := e.mail.count(authd.MailRegisterNotice, "box+new@example.org"); n != 0 {
			t.Errorf("an unverified sub-address account past its mailbox's budget got %d notices, want 0", n)
		}
		want(t, "register another sub-address", e.do("POST", "/v1/auth/register", map[string]any{
			"email": "box+lock@example.org", "password": goodPassword, "consent": true}), 202, "")
		for i := range 5 { // its own budget has room for the lock's notice
			want(t, "a wrong password", e.do("POST", "/v1/auth/login", map[string]string{"email": "box+lock@example.org",
				"password": "not the password 1"}, from(fmt.Sprintf("198.51.100.%d", i+1))...), 401, "invalid_credentials")
		}
		if u := e.user("box+lock@example.org"); u.AccountStatus != authd.StatusLocked {
			t.Fatalf("five wrong passwords: status %s, want locked", u.AccountStatus)
		}
		if n := e.mail.count(authd.MailAccountLocked, "box+lock@example.org"); n != 0 {
			t.Errorf("an unverified sub-address account past its mailbox's budget got %d lock notices, want 0", n)
		}
		want(t, "register the mailbox's own address", e.do("POST", "/v1/auth/register", map[string]any{
			"email": "box@example.org", "password": goodPassword, "consent": true}), 202, "")
		if n := e.mail.count(authd.MailVerifyEmail, "box@example.org"); n != 1 {
			t.Errorf("the mailbox's own address got %d links, want 1", n)
		}
	})
}
