package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
)

// TestRefreshPastItsLifetime: a refresh token past its own lifetime, or in
// a session past its longest, is refused (401 invalid_token), logged as
// expired, and ends nothing else; the session's access token still ends
// with its own expiry.
func TestRefreshPastItsLifetime(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("expired@example.org", goodPassword)
		_, refresh := e.login("expired@example.org", goodPassword)
		e.clock.Advance(168*time.Hour + time.Second) // the env's RefreshTokenTTL
		want(t, "a refresh token past its lifetime", e.do("POST", "/v1/auth/refresh",
			map[string]string{"refresh_token": refresh}), 401, "invalid_token")

		// A session past SessionMaxAge, its chain refreshed all along.
		_, refresh = e.login("expired@example.org", goodPassword)
		for range 5 { // 5 × 144 h = 720 h, the env's SessionMaxAge
			e.clock.Advance(144 * time.Hour)
			r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
			if r.status != 200 {
				want(t, "the last refresh, past the session's longest life", r, 401, "invalid_token")
				break
			}
			refresh = r.str("refresh_token")
		}
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: e.user("expired@example.org").ID,
			EventType: authd.EventTokenRefreshed, Result: authd.ResultFailure})
		if err != nil {
			t.Fatal(err)
		}
		if len(logs) != 2 || logs[0].FailureReason != "refresh token expired" || logs[1].FailureReason != "refresh token expired" {
			t.Errorf("refused refreshes logged %+v; want two, expired", logs)
		}
	})
}

// TestNoTokenOutlivesItsSession: the tokens a login or a refresh hands out
// end with their session's longest life when it comes first: the refresh
// token's lifetime and the access token's are cut to it, and the access
// token stops working there.
func TestNoTokenOutlivesItsSession(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withConfig(func(c *authd.Config) { c.SessionMaxAge = time.Hour })) // access 15 min, refresh 168 h
		e.registerVerified("bounded@example.org", goodPassword)
		r := e.do("POST", "/v1/auth/login", map[string]string{"email": "bounded@example.org", "password": goodPassword})
		want(t, "login", r, 200, "")
		if r.body["expires_in"] != float64(900) || r.body["refresh_expires_in"] != float64(3600) {
			t.Errorf("login: expires_in %v, refresh_expires_in %v; want 900 and the session's 3600", r.body["expires_in"], r.body["refresh_expires_in"])
		}
		e.clock.Advance(50 * time.Minute)
		r = e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": r.str("refresh_token")})
		want(t, "refresh", r, 200, "")
		if r.body["expires_in"] != float64(600) || r.body["refresh_expires_in"] != float64(600) {
			t.Errorf("refresh 10 min before the session's end: expires_in %v, refresh_expires_in %v; want both 600",
				r.body["expires_in"], r.body["refresh_expires_in"])
		}
		e.clock.Advance(10 * time.Minute)
		want(t, "the access token at the session's end", e.do("GET", "/v1/users/me", nil, bearer(r.str("access_token"))...), 401, "invalid_token")
	})
}

// TestRotatedTokenOfAnExpiredSession: a rotated-out refresh token presented
// once its session is past its longest life is refused as expired, as the
// session's live token is, not taken for reuse: the session ended on its
// own, and no theft is reported.
func TestRotatedTokenOfAnExpiredSession(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withConfig(func(c *authd.Config) { c.SessionMaxAge = time.Hour }))
		e.registerVerified("aged@example.org", goodPassword)
		_, rotated := e.login("aged@example.org", goodPassword)
		want(t, "refresh", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": rotated}), 200, "")
		e.clock.Advance(time.Hour + time.Second)
		since := e.clock.Now()
		want(t, "the rotated token past the session's end", e.do("POST", "/v1/auth/refresh",
			map[string]string{"refresh_token": rotated}), 401, "invalid_token")
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: e.user("aged@example.org").ID, Since: since})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range logs {
			got = append(got, string(l.EventType)+"/"+l.FailureReason)
		}
		if len(got) != 1 || got[0] != "token_refreshed/refresh token expired" {
			t.Errorf("logged %v; want one token_refreshed refusal, refresh token expired", got)
		}
	})
}

// TestUnlockedUnverifiedStaysInactive: a brute-force lock on an account
// whose address is not verified (verification required) ends with the
// account inactive, not active: the lock's end verifies nothing.
func TestUnlockedUnverifiedStaysInactive(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "unverified@example.org"
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": email, "password": goodPassword,
			"consent": true}), 202, "")
		for range 5 {
			e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": "not the password"})
		}
		if u := e.user(email); u.AccountStatus != authd.StatusLocked {
			t.Fatalf("after five wrong passwords: %s; want locked", u.AccountStatus)
		}
		e.clock.Advance(15*time.Minute + time.Second)
		want(t, "the right password once the lock ran out", e.do("POST", "/v1/auth/login",
			map[string]string{"email": email, "password": goodPassword}), 403, "email_not_verified")
		if u := e.user(email); u.AccountStatus != authd.StatusInactive || u.EmailVerified {
			t.Errorf("after the lock: %s, verified %v; want inactive, unverified", u.AccountStatus, u.EmailVerified)
		}
	})
}

// TestResetVerifiesTheAddress: a password reset of an account whose
// address was never verified (verification required) verifies it, since
// the link proved the mailbox: the account is active and verified, and the
// new password signs in.
func TestResetVerifiesTheAddress(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "never.verified@example.org"
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": email, "password": goodPassword,
			"consent": true}), 202, "")
		if u := e.user(email); u.AccountStatus != authd.StatusInactive || u.EmailVerified {
			t.Fatalf("after registering: %s, verified %v; the test proves nothing", u.AccountStatus, u.EmailVerified)
		}
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		tok := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
		want(t, "reset", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": tok, "new_password": "a reset passphrase"}), 204, "")
		if u := e.user(email); u.AccountStatus != authd.StatusActive || !u.EmailVerified {
			t.Errorf("after the reset: %s, verified %v; want active, verified", u.AccountStatus, u.EmailVerified)
		}
		e.login(email, "a reset passphrase")
	})
}

// TestPasskeyProofsAreTheirOwners: a step-up ceremony one user began is no
// proof for another (even answered by a passkey the other holds), and a
// passkey id that is not the caller's is 404, the passkey untouched.
func TestPasskeyProofsAreTheirOwners(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		alice, _, _ := e.passkeyUser("alice.pk@example.org")
		bob, bobKey, _ := e.passkeyUser("bob.pk@example.org")
		bobsID := e.do("GET", "/v1/users/me/passkeys", nil, bearer(bob)...).body["items"].([]any)[0].(map[string]any)["id"].(string)
		alicesID := e.do("GET", "/v1/users/me/passkeys", nil, bearer(alice)...).body["items"].([]any)[0].(map[string]any)["id"].(string)

		// Alice's ceremony, answered with Bob's key, offered by Bob.
		r := e.do("POST", "/v1/users/me/mfa/challenge", map[string]any{}, bearer(alice)...)
		want(t, "alice's step-up challenge", r, 200, "")
		options := publicKey(t, r)
		delete(options, "allowCredentials")
		want(t, "bob's delete with alice's ceremony", e.do("DELETE", "/v1/users/me/passkeys/"+bobsID,
			map[string]any{"passkey": bobKey.Get(options)}, bearer(bob)...), 400, "invalid_token")

		// Alice's passkey, by Bob with a proof of his own.
		want(t, "bob deletes alice's passkey", e.do("DELETE", "/v1/users/me/passkeys/"+alicesID,
			map[string]any{"passkey": e.stepUp(bob, bobKey)}, bearer(bob)...), 404, "not_found")
		for _, who := range []string{"alice.pk@example.org", "bob.pk@example.org"} {
			if keys, _ := e.store.Passkeys(context.Background(), e.user(who).ID); len(keys) != 1 {
				t.Errorf("%s has %d passkeys; want the one", who, len(keys))
			}
		}
	})
}

// TestChunkedBodyOverLimit: a body sent without a declared length (chunked)
// past 64 KiB is refused with 413 as it is read, on the connection kept
// honest (nothing of it taken).
func TestChunkedBodyOverLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	big := `{"email":"` + strings.Repeat("a", 70000) + `"}`
	fmt.Fprintf(conn, "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(big), big)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a chunked body over the limit: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "payload_too_large") {
		t.Errorf("a chunked body over the limit: %d %s; want 413 payload_too_large", resp.StatusCode, body)
	}
}

// TestBodyLimitIsInclusive: a body of 64 KiB exactly is read (SPEC §5:
// 413 is a body over 64 KiB), one byte more is a 413, declared or chunked;
// a length declared over the limit is a 413 before the media type is
// looked at.
func TestBodyLimitIsInclusive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	sized := func(n int) string {
		const head, tail = `{"email":"`, `@example.org","password":"x"}`
		return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
	}
	for _, c := range []struct {
		name    string
		size    int
		chunked bool
		ctype   string
		want413 bool
	}{
		{"64 KiB declared", httpapi.MaxBodyBytes, false, "application/json", false},
		{"64 KiB and a byte declared", httpapi.MaxBodyBytes + 1, false, "application/json", true},
		{"64 KiB chunked", httpapi.MaxBodyBytes, true, "application/json", false},
		{"64 KiB and a byte chunked", httpapi.MaxBodyBytes + 1, true, "application/json", true},
		{"64 KiB and a byte declared, of another type", httpapi.MaxBodyBytes + 1, false, "text/plain", true},
	} {
		var body io.Reader = strings.NewReader(sized(c.size))
		if c.chunked {
			body = io.MultiReader(body) // no length: sent chunked
		}
		req, _ := http.NewRequest("POST", e.srv.URL+"/v1/auth/login", body)
		req.Header.Set("Content-Type", c.ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.StatusCode == http.StatusRequestEntityTooLarge; got != c.want413 || resp.StatusCode/100 != 4 {
			t.Errorf("%s: %d %s; want 413: %v", c.name, resp.StatusCode, raw, c.want413)
		}
	}
}

// downStore fails every transaction at its end while down is set, with
// the outage error the stores give (the work done, then rolled back); while
// lateCommit is set, it commits and then answers that the flow's time ran
// out, as when a context ends while COMMIT is on its way.
type downStore struct {
	authd.Store
	down, lateCommit atomic.Bool
}

func (s *downStore) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	err := s.Store.InTx(ctx, func(q authd.Queries) error {
		if err := fn(q); err != nil || !s.down.Load() {
			return err
		}
		return &authd.Error{Code: authd.EUnavailable, Message: "the database is down", RetryAfter: time.Second}
	})
	if err == nil && s.lateCommit.Load() {
		return &authd.Error{Code: authd.EUnavailable, Message: "the database did not answer in time",
			RetryAfter: time.Second, Err: context.DeadlineExceeded}
	}
	return err
}

// TestOutageSpendsNoMail: a request that would mail an address and meets
// an outage (503) does not spend the address's mails for the hour (three):
// a user whose client retries a reset through a short outage gets the link
// once it is over. Forgot, registration, an address change and the
// erasure of an address never verified (whose notice spends it) alike,
// and a new account's allowance past a spent budget.
func TestOutageSpendsNoMail(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		store := &downStore{Store: open(t)}
		e := newEnv(t, store, withRateLimit())
		forgot := func(email string) response {
			return e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email})
		}
		budgetLeft := func(email string, n int) {
			t.Helper()
			for i := range n {
				want(t, fmt.Sprintf("mail %d of those left to %s", i+1, email), forgot(email), 202, "")
			}
			want(t, "a mail past the budget", forgot(email), 429, "rate_limited")
		}
		e.registerVerified("moving@example.org", goodPassword)
		access, _ := e.login("moving@example.org", goodPassword)
		budgetLeft("spent@example.org", 3) // its new account's link goes past the budget, once an hour
		want(t, "register an address never verified", e.do("POST", "/v1/auth/register", map[string]any{
			"email": "unverified@example.org", "password": goodPassword, "consent": true}), 202, "")
		unverified := "/v1/admin/users/" + e.user("unverified@example.org").ID.String()

		store.down.Store(true)
		for range 4 {
			want(t, "forgot in an outage", forgot("nobody@example.org"), 503, "")
			for _, email := range []string{"new@example.org", "spent@example.org"} {
				want(t, "register in an outage", e.do("POST", "/v1/auth/register", map[string]any{"email": email,
					"password": goodPassword, "consent": true}), 503, "")
			}
		}
		for range 2 { // of the 5 moves an hour, one left for after it
			want(t, "an address change in an outage", e.changeEmail(access, "moved@example.org", goodPassword), 503, "")
			want(t, "a move to an address whose mails are spent, in an outage",
				e.changeEmail(access, "spent@example.org", goodPassword), 503, "")
			want(t, "an erasure in an outage", e.admin("DELETE", unverified, nil), 503, "")
		}
		store.down.Store(false)
		budgetLeft("unverified@example.org", 2) // its link spent one

		budgetLeft("nobody@example.org", 3)
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "new@example.org",
			"password": goodPassword, "consent": true}), 202, "")
		budgetLeft("new@example.org", 2)
		want(t, "register past the budget", e.do("POST", "/v1/auth/register", map[string]any{"email": "spent@example.org",
			"password": goodPassword, "consent": true}), 202, "")
		if n := e.mail.count(authd.MailVerifyEmail, "spent@example.org"); n != 1 {
			t.Errorf("a new account past its address's budget after an outage: %d links, want 1 (the allowance kept)", n)
		}
		want(t, "spent still (an outage gives back only what it counted)", forgot("spent@example.org"), 429, "rate_limited")
		want(t, "an address change", e.changeEmail(access, "moved@example.org", goodPassword), 202, "")
		budgetLeft("moved@example.org", 2)

		// A flow whose time ran out as it committed may have queued its
		// mail: it keeps the count, or each such answer would be a mail
		// past the budget.
		store.lateCommit.Store(true)
		for range 3 {
			want(t, "forgot, committed as its time ran out", forgot("late@example.org"), 503, "")
		}
		store.lateCommit.Store(false)
		want(t, "the budget those spent", forgot("late@example.org"), 429, "rate_limited")
	})
}

// TestPasswordChangesAreDated: a change and a reset each date the password
// (last_password_change, which the user's view and the export show) at the
// moment they set it.
func TestPasswordChangesAreDated(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "dated@example.org"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		dated := func(what string, want time.Time) {
			t.Helper()
			r := e.do("GET", "/v1/users/me", nil, bearer(access)...)
			if r.status != 200 {
				t.Fatalf("%s: me: %d %s", what, r.status, r.raw)
			}
			if got, err := time.Parse(time.RFC3339Nano, r.str("last_password_change")); err != nil || !got.Equal(want) {
				t.Errorf("%s: last_password_change %q, want %v", what, r.str("last_password_change"), want)
			}
		}
		dated("after registering", e.clock.Now())

		e.clock.Advance(10 * time.Minute)
		want(t, "change", e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword,
			"new_password": "a changed passphrase"}, bearer(access)...), 204, "")
		dated("after a change", e.clock.Now())

		e.clock.Advance(10 * time.Minute)
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		tok := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
		e.clock.Advance(time.Minute)
		want(t, "reset", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": tok,
			"new_password": "a reset passphrase"}), 204, "")
		access, _ = e.login(email, "a reset passphrase") // the reset ended the session
		dated("after a reset", e.clock.Now())
	})
}

// TestNoticeTellsWhenItHappened: a notice says when what it tells of
// happened (the mail's At, which its text shows), not when the outbox got
// to send it: a mail sent minutes later, after a retry or a busy relay,
// still names the moment of the change.
func TestNoticeTellsWhenItHappened(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "when@example.org"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		e.clock.Advance(10 * time.Minute)
		changed := e.clock.Now()
		want(t, "change", e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword,
			"new_password": "a changed passphrase"}, bearer(access)...), 204, "")
		e.clock.Advance(5 * time.Minute) // the outbox sends it now (reading the mailbox runs it)
		if m := e.mail.last(t, authd.MailPasswordChanged, email); !m.At.Equal(changed) {
			t.Errorf("the notice says the change was at %v, want %v", m.At, changed)
		}
	})
}

// staleLinkStore answers, while stale is set, that no link exists to the
// reads made outside a transaction, as a read that lags a link just
// committed would; transactions see the links as they are.
type staleLinkStore struct {
	authd.Store
	stale atomic.Bool
}

func (s *staleLinkStore) VerificationToken(ctx context.Context, digest string) (*authd.VerificationToken, error) {
	if s.stale.Load() {
		return nil, &authd.Error{Code: authd.ENotFound, Message: "no such token"}
	}
	return s.Store.VerificationToken(ctx, digest)
}

// TestResetWhoseLinkTurnsOutLiveSetsNothing: a reset whose first read of
// the link found none (before its hash, which it then skipped) but whose
// transaction finds it live sets no password, and so must not answer
// success: it answers invalid_token and leaves the link unspent, for the
// client's retry.
func TestResetWhoseLinkTurnsOutLiveSetsNothing(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		store := &staleLinkStore{Store: open(t)}
		e := newEnv(t, store)
		const email = "lagging@example.org"
		e.registerVerified(email, goodPassword)
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		tok := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
		reset := func() response {
			return e.do("POST", "/v1/auth/password/reset", map[string]string{"token": tok, "new_password": "a reset passphrase"})
		}
		store.stale.Store(true)
		want(t, "a reset whose first read missed the link", reset(), 400, "invalid_token")
		store.stale.Store(false)
		e.login(email, goodPassword)
		want(t, "the retry", reset(), 204, "")
		e.login(email, "a reset passphrase")
	})
}

// TestConsentRowSaysWhatChanged: each consent change's row tells the
// consent given and the one it replaced.
func TestConsentRowSaysWhatChanged(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "consenting@example.org"
		e.registerVerified(email, goodPassword) // consent given
		access, _ := e.login(email, goodPassword)
		for _, consent := range []bool{false, true} {
			e.clock.Advance(time.Minute)
			want(t, "consent", e.do("PUT", "/v1/users/me/consent", map[string]bool{"consent": consent}, bearer(access)...), 200, "")
		}
		logs := e.logRows(email, authd.EventConsentUpdated)
		if len(logs) != 2 {
			t.Fatalf("%d consent rows, want 2", len(logs))
		}
		for i, w := range []map[string]any{{"consent": true, "previous": false}, {"consent": false, "previous": true}} { // newest first
			if got := logs[i].AdditionalContext; got["consent"] != w["consent"] || got["previous"] != w["previous"] {
				t.Errorf("row %d: %v, want %v", i, got, w)
			}
		}
	})
}

// TestNewPasswordsKeepOutTheAddress: a password set by a change or by a
// reset is held to the whole policy, the rule against the name part of
// the account's address included, as at registration.
func TestNewPasswordsKeepOutTheAddress(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "rosalind@example.org"
		const named = "Rosalind's own passphrase"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		r := e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword,
			"new_password": named}, bearer(access)...)
		want(t, "a change to a password naming the address", r, 400, "weak_password")
		if r.field() != "new_password" {
			t.Errorf("the change's refusal names %q, want new_password: %s", r.field(), r.raw)
		}
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		tok := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
		want(t, "a reset to a password naming the address", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": tok, "new_password": named}), 400, "weak_password")
		e.login(email, goodPassword)
	})
}

// TestRevocationFeedNamesTheFlow: the feed's events of the sessions a
// password change or a reset ended name the flow that ended them, for the
// resource servers' operators.
func TestRevocationFeedNamesTheFlow(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "named.flows@example.org"
		e.registerVerified(email, goodPassword)
		ctx := context.Background()
		reasons := func(what string, want string) {
			t.Helper()
			evs, err := e.svc.RevocationEvents(ctx, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 || evs[len(evs)-1].Reason != want {
				t.Fatalf("%s: events %+v; want the last to name %s", what, evs, want)
			}
		}
		access, _ := e.login(email, goodPassword)
		e.login(email, goodPassword) // another session, which the change ends
		want(t, "change", e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword,
			"new_password": "a changed passphrase"}, bearer(access)...), 204, "")
		reasons("after a change", string(authd.EventPasswordChanged))

		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		tok := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
		want(t, "reset", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": tok,
			"new_password": "a reset passphrase"}), 204, "")
		reasons("after a reset", string(authd.EventPasswordResetCompleted))
	})
}
