package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// changeEmail asks to move the token's account to newEmail with pw.
func (e *env) changeEmail(access, newEmail, pw string) response {
	e.t.Helper()
	return e.do("POST", "/v1/users/me/email", map[string]string{"new_email": newEmail, "password": pw}, bearer(access)...)
}

// changeLink is the token of the last link mailed to to that moves an
// account there.
func (e *env) changeLink(to string) string {
	e.t.Helper()
	return tokenOf(e.t, e.mail.last(e.t, authd.MailEmailChange, to))
}

// pendingChange registers email and asks to move it to to, returning
// the access token that asked and the link mailed to to.
func (e *env) pendingChange(email, to string) (access, link string) {
	e.t.Helper()
	e.registerVerified(email, goodPassword)
	access, _ = e.login(email, goodPassword)
	want(e.t, "request", e.changeEmail(access, to, goodPassword), 202, "")
	return access, e.changeLink(to)
}

// follow redeems a link that moves an account, with the account's
// password pw.
func (e *env) follow(token, pw string) response {
	e.t.Helper()
	return e.do("POST", "/v1/auth/verify-email", map[string]string{"token": token, "password": pw})
}

// eventCount counts the event/result rows of the user of email ("" for
// every user).
func (e *env) eventCount(email, event string) int {
	e.t.Helper()
	n := 0
	for _, ev := range e.events(email) {
		if ev == event {
			n++
		}
	}
	return n
}

// hasEvent reports whether the user of email has the event/result row.
func (e *env) hasEvent(email, event string) bool {
	e.t.Helper()
	return slices.Contains(e.events(email), event)
}

// TestEmailChange: a request mails a link to the new address and a notice
// to the old; following the link moves the account there, verified, ends
// every session and voids the reset link mailed to the old address, which
// hears of the change and is free to register again.
func TestEmailChange(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const old, next = "mover@example.org", "Moved@Example.NET"
		e.registerVerified(old, goodPassword)
		access, refresh := e.login(old, goodPassword)
		other, _ := e.login(old, goodPassword)
		id := e.user(old).ID

		r := e.changeEmail(access, next, goodPassword)
		want(t, "request", r, 202, "")
		if r.str("status") != "verification_sent" {
			t.Errorf("request answer: %s", r.raw)
		}
		link := e.mail.last(t, authd.MailEmailChange, "moved@example.net")
		// A release that knows no address change takes tokens of 32 bytes
		// only: it must refuse this one, not verify the old address with it.
		if n := len(tokenOf(t, link)); n == base64.RawURLEncoding.EncodedLen(32) {
			t.Errorf("the change link's token has %d characters, which an older release redeems", n)
		}
		notice := e.mail.last(t, authd.MailEmailChangeNotice, old)
		if notice.NewEmail != "moved@example.net" || notice.Done || notice.Link != "" {
			t.Errorf("notice of the request: %+v", notice)
		}
		if !e.hasEvent(old, "email_change_requested/success") {
			t.Errorf("events: %v", e.events(old))
		}
		// Nothing changes until the link is followed.
		if u := e.user(old); u.ID != id || !e.active(access) {
			t.Fatal("the request changed the account or ended its session")
		}
		want(t, "login at the new address before the link", e.do("POST", "/v1/auth/login",
			map[string]string{"email": next, "password": goodPassword}), 401, "invalid_credentials")
		want(t, "forgot at the old address", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": old}), 202, "")
		reset := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, old))

		// A notice about the account still queued for the old address
		// (a relay down) must not reach whoever registers it next.
		if err := e.store.EnqueueMail(context.Background(), &authd.OutboxMail{ID: authd.NewID(),
			Kind: authd.MailPasswordChanged, UserID: id, To: old, CreatedAt: e.clock.Now(),
			NextAttemptAt: e.clock.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Minute)
		// The link alone moves nothing: whoever has the new mailbox (a
		// mistyped address's owner) needs the account's password too.
		r = e.do("POST", "/v1/auth/verify-email", map[string]string{"token": tokenOf(t, link)})
		want(t, "the link without the password", r, 400, "validation_failed")
		if r.field() != "password" {
			t.Errorf("the link without the password names %q: %s", r.field(), r.raw)
		}
		want(t, "the link with a wrong password", e.follow(tokenOf(t, link), "not the password at all"), 401, "invalid_credentials")
		// Counted on the link, not toward the account's lock
		// (TestEmailChangeLinkPasswords).
		if u := e.user(old); !e.hasEvent(old, "email_changed/failure") || u.ID != id || u.FailedLoginAttempts != 0 {
			t.Errorf("the wrong password: %d failures counted toward the lock, events %v", u.FailedLoginAttempts, e.events(old))
		}
		r = e.follow(tokenOf(t, link), goodPassword)
		want(t, "follow the link", r, 200, "")
		if r.str("status") != "verified" {
			t.Errorf("verify answer: %s", r.raw)
		}
		u := e.user("moved@example.net")
		if u.ID != id || !u.EmailVerified || u.AccountStatus != authd.StatusActive {
			t.Errorf("the moved account: %+v", u)
		}
		if _, err := e.store.UserByEmail(context.Background(), old); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("the old address still names an account: %v", err)
		}
		for _, tok := range []string{access, other} {
			if e.active(tok) {
				t.Error("a session outlived the change")
			}
		}
		want(t, "refresh after the change", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}),
			401, "invalid_token")
		want(t, "the old address's reset link", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": reset, "new_password": "the intruder's passphrase"}), 400, "invalid_token")
		want(t, "the link again", e.follow(tokenOf(t, link), goodPassword),
			400, "invalid_token")
		e.clock.Advance(time.Hour) // the queued notice's time
		if n := e.mail.count(authd.MailPasswordChanged, old); n != 0 {
			t.Errorf("%d notices about the account went to the address it left", n)
		}
		done := e.mail.last(t, authd.MailEmailChangeNotice, old)
		if !done.Done || done.NewEmail != "moved@example.net" {
			t.Errorf("notice of the change: %+v", done)
		}
		if !e.hasEvent("moved@example.net", "email_changed/success") {
			t.Errorf("events: %v", e.events("moved@example.net"))
		}
		want(t, "login at the old address", e.do("POST", "/v1/auth/login",
			map[string]string{"email": old, "password": goodPassword}), 401, "invalid_credentials")
		fresh, _ := e.login(next, goodPassword)
		if me := e.do("GET", "/v1/users/me", nil, bearer(fresh)...); me.str("email") != "moved@example.net" {
			t.Errorf("me after the change: %s", me.raw)
		}

		// The old address is free: a registration there makes a new account.
		e.registerVerified(old, goodPassword)
		if e.user(old).ID == id {
			t.Error("the old address still named the moved account")
		}
	})
}

// TestEmailChangeRefusals: a request without the password, with a wrong
// one, to the same or an unusable address, or without a token is refused
// and mails nothing.
func TestEmailChangeRefusals(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "stay@example.org"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		for _, c := range []struct {
			what   string
			body   map[string]string
			status int
			code   string
			field  string
		}{
			{"no password", map[string]string{"new_email": "a@example.net"}, 400, "validation_failed", "password"},
			{"no address", map[string]string{"password": goodPassword}, 400, "validation_failed", "new_email"},
			{"not an address", map[string]string{"new_email": "nope", "password": goodPassword}, 400, "validation_failed", "new_email"},
			{".invalid", map[string]string{"new_email": "a@b.invalid", "password": goodPassword}, 400, "validation_failed", "new_email"},
			{"invisible", map[string]string{"new_email": "a\u200b@example.net", "password": goodPassword}, 400, "validation_failed", "new_email"},
			{"the same address", map[string]string{"new_email": "STAY@example.org", "password": goodPassword}, 400, "validation_failed", "new_email"},
			{"wrong password", map[string]string{"new_email": "a@example.net", "password": "not the password"}, 401, "invalid_credentials", "password"},
			{"unknown field", map[string]string{"new_email": "a@example.net", "password": goodPassword, "email": "x"}, 400, "validation_failed", ""},
		} {
			r := e.do("POST", "/v1/users/me/email", c.body, bearer(access)...)
			want(t, c.what, r, c.status, c.code)
			if c.field != "" && r.field() != c.field {
				t.Errorf("%s: names field %q, want %q: %s", c.what, r.field(), c.field, r.raw)
			}
		}
		want(t, "no token", e.do("POST", "/v1/users/me/email", map[string]string{"new_email": "a@example.net",
			"password": goodPassword}), 401, "invalid_token")
		want(t, "a query", e.do("POST", "/v1/users/me/email?force=1", map[string]string{"new_email": "a@example.net",
			"password": goodPassword}, bearer(access)...), 400, "validation_failed")
		if n := e.mail.count(authd.MailEmailChangeNotice, email); n != 0 {
			t.Errorf("%d notices after refused requests", n)
		}
		if !e.hasEvent(email, "email_change_requested/failure") {
			t.Errorf("the wrong password left no row: %v", e.events(email))
		}
	})
}

// TestEmailChangeToATakenAddress: a request for an address that has an
// account answers as any other, mails that address a notice and no link,
// and tells the old address as always; an address registered after the
// link was mailed makes the link refuse (409), the account keeping its
// address.
func TestEmailChangeToATakenAddress(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const a, b, c = "alice@example.org", "bob@example.org", "carol@example.org"
		e.registerVerified(a, goodPassword)
		e.registerVerified(b, goodPassword)
		access, _ := e.login(a, goodPassword)

		want(t, "request for a taken address", e.changeEmail(access, b, goodPassword), 202, "")
		taken := e.mail.last(t, authd.MailEmailChangeTaken, b)
		if taken.Link != "" {
			t.Errorf("the taken address got a link: %+v", taken)
		}
		if holder := e.user(b); taken.UserID != holder.ID { // a mailer's copy is filed under it
			t.Errorf("the notice to the taken address is about account %s, want its holder's %s", taken.UserID, holder.ID)
		}
		if n := e.mail.count(authd.MailEmailChange, b); n != 0 {
			t.Errorf("%d change links to a taken address", n)
		}
		if e.mail.last(t, authd.MailEmailChangeNotice, a).NewEmail != b {
			t.Error("the old address was not told of the request")
		}
		if !e.hasEvent(a, "email_change_requested/success") || !e.active(access) {
			t.Errorf("requester's events: %v", e.events(a))
		}
		if !e.hasEvent(b, "email_change_requested/failure") {
			t.Errorf("taken address's events: %v", e.events(b))
		}

		want(t, "request for a free address", e.changeEmail(access, c, goodPassword), 202, "")
		link := e.changeLink(c)
		e.registerVerified(c, goodPassword) // carol comes first
		want(t, "the link to an address taken since", e.follow(link, goodPassword), 409, "conflict")
		if e.user(a).EmailVerified != true || !e.active(access) {
			t.Error("the refused change changed the account")
		}
		if !e.hasEvent(a, "email_changed/failure") {
			t.Errorf("events: %v", e.events(a))
		}
		want(t, "the link again", e.follow(link, goodPassword), 400, "invalid_token")
	})
}

// TestEmailChangeToATakenAddressLoggedOnce: the holder's row telling of a
// request for its address is written once, at the first attempt to mail
// its notice, not again at each retry after the relay failed.
func TestEmailChangeToATakenAddressLoggedOnce(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withMailer(&switchMailer{fail: true}))
		const a, b = "asker@example.org", "holder@example.org"
		for _, email := range []string{a, b} {
			want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": email,
				"password": goodPassword, "consent": true}), 202, "")
			u := e.user(email) // verified here: the relay delivers nothing
			u.EmailVerified, u.AccountStatus = true, authd.StatusActive
			if err := e.store.UpdateUser(context.Background(), u); err != nil {
				t.Fatal(err)
			}
		}
		access, _ := e.login(a, goodPassword)
		want(t, "request for a taken address", e.changeEmail(access, b, goodPassword), 202, "")
		for range 3 { // the first attempt and two retries, each refused by the relay
			if _, err := e.svc.DeliverMail(context.Background()); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(10 * time.Minute)
		}
		if n := e.eventCount(b, "email_change_requested/failure"); n != 1 {
			t.Errorf("%d rows telling the holder of the request after three attempts, want 1", n)
		}
	})
}

// TestEmailChangeToAnAddressTakenSpendsNoFactor: a link whose address got
// an account since is refused (409, the link spent) before the second
// factor is checked, so that a recovery code given with it is not spent
// for a change that cannot be made.
func TestEmailChangeToAnAddressTakenSpendsNoFactor(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email, next = "spared@example.org", "spared@example.net"
		access, secret, codes := e.mfaUser(email)
		want(t, "request", e.do("POST", "/v1/users/me/email", map[string]string{"new_email": next,
			"password": goodPassword, "code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 202, "")
		link := e.changeLink(next)
		e.registerVerified(next, goodPassword) // someone else comes first
		r := e.do("POST", "/v1/auth/verify-email", map[string]string{"token": link, "password": goodPassword,
			"code": codes[0]})
		want(t, "the link with a recovery code", r, 409, "conflict")
		r = e.do("GET", "/v1/users/me/mfa", nil, bearer(access)...)
		if r.body["recovery_codes_left"] != float64(len(codes)) {
			t.Errorf("the refused change spent a recovery code: %s", r.raw)
		}
		if u := e.user(email); u.FailedLoginAttempts != 0 || u.Email != email {
			t.Errorf("after the refused change: %+v", u)
		}
		want(t, "the link again", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": link,
			"password": goodPassword, "code": codes[0]}), 400, "invalid_token")
	})
}

// TestEmailChangeVoided: a newer request voids the older link, and a
// password change, a password reset, an administrator's lock or the user's
// cancel voids the pending one, whether its link was mailed or still
// queued.
func TestEmailChangeVoided(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "fickle@example.org"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		dead := func(what, to string) {
			t.Helper()
			link := e.changeLink(to)
			want(t, what, e.follow(link, goodPassword), 400, "invalid_token")
		}

		want(t, "first request", e.changeEmail(access, "one@example.net", goodPassword), 202, "")
		e.mail.last(t, authd.MailEmailChange, "one@example.net") // sent
		want(t, "second request", e.changeEmail(access, "two@example.net", goodPassword), 202, "")
		dead("the first link after a second request", "one@example.net")

		want(t, "change password", e.do("POST", "/v1/auth/password/change",
			map[string]string{"current_password": goodPassword, "new_password": "a changed passphrase"}, bearer(access)...), 204, "")
		dead("the link after a password change", "two@example.net")

		// Queued, not yet sent, when the password changes: never sent.
		want(t, "third request", e.changeEmail(access, "three@example.net", "a changed passphrase"), 202, "")
		want(t, "change password back", e.do("POST", "/v1/auth/password/change",
			map[string]string{"current_password": "a changed passphrase", "new_password": goodPassword}, bearer(access)...), 204, "")
		if n := e.mail.count(authd.MailEmailChange, "three@example.net"); n != 0 {
			t.Errorf("%d links sent for a request the password change voided", n)
		}

		want(t, "fourth request", e.changeEmail(access, "four@example.net", goodPassword), 202, "")
		e.mail.last(t, authd.MailEmailChange, "four@example.net")
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		reset := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
		want(t, "reset", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": reset, "new_password": "a reset passphrase"}), 204, "")
		dead("the link after a reset", "four@example.net")

		access, _ = e.login(email, "a reset passphrase")
		want(t, "fifth request", e.changeEmail(access, "five@example.net", "a reset passphrase"), 202, "")
		e.mail.last(t, authd.MailEmailChange, "five@example.net")
		id := e.user(email).ID
		want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+id.String()+"/lock", map[string]any{}), 204, "")
		want(t, "admin unlock", e.admin("POST", "/v1/admin/users/"+id.String()+"/unlock", map[string]any{}), 204, "")
		dead("the link after an administrator's lock", "five@example.net")
		if u := e.user(email); u.ID != id {
			t.Error("a voided link moved the account")
		}

		// The user cancels: a link mailed dies, a mail queued is never sent,
		// and nothing pending is answered alike.
		access, _ = e.login(email, "a reset passphrase")
		cancel := func(what string) {
			t.Helper()
			want(t, what, e.do("DELETE", "/v1/users/me/email", nil, bearer(access)...), 204, "")
		}
		want(t, "sixth request", e.changeEmail(access, "six@example.net", "a reset passphrase"), 202, "")
		e.mail.last(t, authd.MailEmailChange, "six@example.net")
		cancel("cancel a mailed change")
		dead("the link after a cancel", "six@example.net")
		want(t, "seventh request", e.changeEmail(access, "seven@example.net", "a reset passphrase"), 202, "")
		cancel("cancel a queued change")
		if n := e.mail.count(authd.MailEmailChange, "seven@example.net"); n != 0 {
			t.Errorf("%d links sent for a cancelled request", n)
		}
		cancel("cancel with nothing pending")
		want(t, "cancel with a body", e.do("DELETE", "/v1/users/me/email", map[string]string{"new_email": "x@example.net"},
			bearer(access)...), 400, "validation_failed")
		want(t, "cancel without a token", e.do("DELETE", "/v1/users/me/email", nil), 401, "invalid_token")
		if !e.hasEvent(email, "email_changed/failure") {
			t.Errorf("no row for the cancels: %v", e.events(email))
		}
	})
}

// TestEmailChangeCancelsLogOnlyWhatTheyVoid: a cancel answers alike
// whether or not a change was pending, but writes its row only when one
// was (an access token alone could otherwise write rows without end), and
// no limit is needed: a taken address's change is pending as a free one's.
func TestEmailChangeCancelsLogOnlyWhatTheyVoid(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		const email = "cancels@example.org"
		e.registerVerified("taken@example.net", goodPassword)
		e.registerVerified("held@example.net", goodPassword)
		access, _ := e.pendingChange(email, "free@example.net")
		cancel := func(what string) {
			t.Helper()
			want(t, what, e.do("DELETE", "/v1/users/me/email", nil, bearer(access)...), 204, "")
		}
		cancel("cancel a mailed change")
		for i := range 30 {
			cancel(fmt.Sprintf("cancel %d with nothing pending", i+1))
		}
		if n := e.eventCount(email, "email_changed/failure"); n != 1 {
			t.Errorf("%d cancel rows, want 1: %v", n, e.events(email))
		}
		want(t, "a request for a taken address", e.changeEmail(access, "taken@example.net", goodPassword), 202, "")
		cancel("cancel a queued change to a taken address")
		// Another: the first's request spent what notices may of its mails.
		want(t, "a request for a taken address", e.changeEmail(access, "held@example.net", goodPassword), 202, "")
		e.mail.last(t, authd.MailEmailChangeTaken, "held@example.net") // delivered: its link minted, sent to no one
		cancel("cancel a delivered change to a taken address")
		if n := e.eventCount(email, "email_changed/failure"); n != 3 {
			t.Errorf("%d cancel rows, want 3: %v", n, e.events(email))
		}
		// A link that expired voids nothing either.
		want(t, "a request", e.changeEmail(access, "later@example.net", goodPassword), 202, "")
		e.changeLink("later@example.net") // delivered: only the link is left
		e.clock.Advance(authd.EmailVerificationTTL + time.Minute)
		access, _ = e.login(email, goodPassword)
		cancel("cancel a change whose link expired")
		if n := e.eventCount(email, "email_changed/failure"); n != 3 {
			t.Errorf("%d cancel rows after cancelling an expired link, want 3: %v", n, e.events(email))
		}
	})
}

// TestEmailChangeNoticeOutlivesTheNextMove: a move withdraws the mail
// queued for the address it leaves, and not the notice an earlier move
// queued for the address before it, which would then never hear that its
// account went away (a second move right after the first: support's, or
// an intruder's while that notice waits on a relay).
func TestEmailChangeNoticeOutlivesTheNextMove(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const first, second, third = "first-home@example.org", "second-home@example.net", "third-home@example.net"
		_, link := e.pendingChange(first, second)
		want(t, "follow", e.follow(link, goodPassword), 200, "") // its notice to first queued, not sent
		id := e.user(second).ID
		want(t, "support's move", e.admin("POST", "/v1/admin/users/"+id.String()+"/email",
			map[string]any{"email": third, "verified": true}), 204, "")
		if n := e.mail.count(authd.MailEmailChangeNotice, first); n != 2 { // asked for, then done
			t.Errorf("%d notices reached %s; want 2, the last telling of the move", n, first)
		}
		if m := e.mail.last(t, authd.MailEmailChangeNotice, first); !m.Done || m.NewEmail != second {
			t.Errorf("the last notice to %s: %+v; want the move to %s", first, m, second)
		}
		if m := e.mail.last(t, authd.MailEmailChangeNotice, second); !m.Done || !m.ByAdministrator {
			t.Errorf("the notice to %s: %+v; want support's move", second, m)
		}
	})
}

// TestEmailChangeRequestOvertakenByTheMove: a request whose password is
// being checked as the account moves to the address it asks for is
// refused: the move ended its session (401), and no link or notice goes
// to what is now the account's own address.
func TestEmailChangeRequestOvertakenByTheMove(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		g := &armedGate{}
		e := newEnv(t, open(t), withPasswords(func(p authd.Passwords) authd.Passwords { g.Passwords = p; return g }))
		const from, to = "overtaken@example.org", "overtaken@example.net"
		access, link := e.pendingChange(from, to)
		g.entered, g.release = make(chan struct{}), make(chan struct{})
		g.armed.Store(true)
		done := make(chan response)
		go func() { done <- e.changeEmail(access, to, goodPassword) }()
		<-g.entered
		want(t, "follow", e.follow(link, goodPassword), 200, "")
		close(g.release)
		r := <-done
		want(t, "the overtaken request", r, 401, "invalid_token")
		if n := e.mail.count(authd.MailEmailChange, to); n != 1 {
			t.Errorf("%d change links mailed to %s; want the first alone", n, to)
		}
		if n := e.mail.count(authd.MailEmailChangeNotice, to); n != 0 {
			t.Errorf("%d change notices mailed to %s, the account's own address now", n, to)
		}
	})
}

// TestEmailChangeUnverifiedAddressIsNotToldWhereTo: where sign-in does not
// need a verified address, one never verified may be the owner's, or a
// stranger's (a mistyped one): it hears of the request and of the move, but
// not where the account is going.
func TestEmailChangeUnverifiedAddressIsNotToldWhereTo(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withConfig(func(c *authd.Config) { c.RequireVerifiedEmail = false }))
		const typo, real = "alcie@example.org", "alice@example.org"
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": typo, "password": goodPassword,
			"consent": true}), 202, "")
		access, _ := e.login(typo, goodPassword)
		want(t, "request", e.changeEmail(access, real, goodPassword), 202, "")
		link := e.changeLink(real)
		for range 5 { // the link's last wrong password voids it, and the address is told
			e.follow(link, "not the password at all")
		}
		want(t, "request again", e.changeEmail(access, real, goodPassword), 202, "")
		want(t, "follow", e.follow(e.changeLink(real), goodPassword), 200, "")
		e.mail.flush()
		e.mail.mu.Lock()
		var notices []authd.Mail
		for _, m := range e.mail.mails {
			if m.Kind == authd.MailEmailChangeNotice && m.To == typo {
				notices = append(notices, m)
			}
		}
		e.mail.mu.Unlock()
		if len(notices) != 4 || notices[0].Done || !notices[1].Voided || notices[2].Done || !notices[3].Done {
			t.Errorf("the notices to the unverified %s: %+v; want a request's, its voided link's, a request's and the move's",
				typo, notices)
		}
		for _, m := range notices {
			if m.NewEmail != "" {
				t.Errorf("a notice to the unverified %s names %s", typo, m.NewEmail)
			}
		}
		if u := e.user(real); !u.EmailVerified {
			t.Errorf("the account after the move: %+v; want it verified", u)
		}
	})
}

// TestEmailChangeNeedsTheSecondFactor: a user with a second factor moves
// their account only with its proof too, a wrong code counting as one.
func TestEmailChangeNeedsTheSecondFactor(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "guarded@example.org"
		access, secret, _ := e.mfaUser(email)
		r := e.changeEmail(access, "elsewhere@example.net", goodPassword)
		want(t, "no code", r, 403, "mfa_required")
		if r.str("mfa_token") != "" {
			t.Errorf("a step-up refusal carries an mfa_token: %s", r.raw)
		}
		body := map[string]string{"new_email": "elsewhere@example.net", "password": goodPassword, "code": e.wrongCode(secret)}
		want(t, "wrong code", e.do("POST", "/v1/users/me/email", body, bearer(access)...), 401, "invalid_credentials")
		if n := e.mail.count(authd.MailEmailChange, "elsewhere@example.net"); n != 0 {
			t.Fatalf("%d links without the second factor", n)
		}
		body["code"] = totpAt(t, secret, e.clock.Now())
		want(t, "right code", e.do("POST", "/v1/users/me/email", body, bearer(access)...), 202, "")
		e.mail.last(t, authd.MailEmailChange, "elsewhere@example.net")
	})
}

// TestEmailChangeLimits: a user asks for at most five changes an hour,
// counted only once the password passed; each new address has its mail
// budget.
func TestEmailChangeLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withRateLimit())
	const email = "busy@example.org"
	e.registerVerified(email, goodPassword)
	access, _ := e.login(email, goodPassword)
	for i := range 3 {
		want(t, "wrong password", e.changeEmail(access, fmt.Sprintf("w%d@example.net", i), "not the password"),
			401, "invalid_credentials")
	}
	for i := range 5 {
		want(t, fmt.Sprintf("request %d", i+1), e.changeEmail(access, fmt.Sprintf("n%d@example.net", i), goodPassword), 202, "")
	}
	want(t, "sixth request", e.changeEmail(access, "n6@example.net", goodPassword), 429, "rate_limited")
	e.clock.Advance(time.Hour)
	access, _ = e.login(email, goodPassword)
	for range 3 {
		want(t, "forgot for an address", e.do("POST", "/v1/auth/password/forgot",
			map[string]string{"email": "spent@example.net"}), 202, "")
	}
	// Past the address's budget the request answers as usual, and no mail
	// goes there (SPEC 6.7); the old address is told all the same.
	notices := e.mail.count(authd.MailEmailChangeNotice, email)
	want(t, "an address whose mails are spent", e.changeEmail(access, "spent@example.net", goodPassword), 202, "")
	if n := e.mail.count(authd.MailEmailChange, "spent@example.net"); n != 0 {
		t.Errorf("%d links past the address's mail budget", n)
	}
	if e.mail.count(authd.MailEmailChangeNotice, email) != notices+1 {
		t.Error("the old address was not told of a request past the new one's budget")
	}
}

// TestEmailChangeTellsNothingOfTheAddress: whatever the requester can see
// is alike whether or not the new address has an account: the answer, the
// rows of their security log, their data export (the queued mail, then the
// minted link's row), and the notice at their own address.
func TestEmailChangeTellsNothingOfTheAddress(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("holder@example.net", goodPassword)
		type seen struct {
			answer, log, exported, notice string
		}
		look := func(email, to string) seen {
			t.Helper()
			e.registerVerified(email, goodPassword)
			access, _ := e.login(email, goodPassword)
			r := e.changeEmail(access, to, goodPassword)
			queued := e.exported(access) // before the sender ran
			notice := e.mail.last(t, authd.MailEmailChangeNotice, email)
			delivered := e.exported(access)
			log := e.do("GET", "/v1/users/me/security-log", nil, bearer(access)...)
			var rows []string
			for _, it := range log.body["items"].([]any) {
				row := it.(map[string]any)
				if c, ok := row["additional_context"].(map[string]any); ok {
					delete(c, "session_id") // each login's own
				}
				rows = append(rows, fmt.Sprint(row["event_type"], row["result"], row["failure_reason"], row["additional_context"]))
			}
			return seen{answer: fmt.Sprint(r.status, r.raw), log: strings.Join(rows, "; "),
				exported: queued + " | " + delivered,
				notice:   fmt.Sprint(notice.Kind, notice.Done, notice.Link, strings.Replace(notice.NewEmail, to, "NEW", 1))}
		}
		taken := look("asker1@example.org", "holder@example.net")
		free := look("asker2@example.org", "nobody@example.net")
		if taken != free {
			t.Errorf("a request for a taken address is told apart:\ntaken %+v\nfree  %+v", taken, free)
		}
		if !strings.Contains(free.exported, `"kind":"email_change"`) || !strings.Contains(free.exported, `"new_email":"ADDRESS"`) {
			t.Errorf("the export holds neither the queued mail nor the link's row: %s", free.exported)
		}
	})
}

// exported returns the mail_outbox and verification_tokens sections of the
// token's user's data export, whole but for ids and addresses (each
// requester's own), for comparing two requesters' data.
func (e *env) exported(access string) string {
	e.t.Helper()
	r := e.do("GET", "/v1/users/me/export", nil, bearer(access)...)
	want(e.t, "export", r, 200, "")
	var parts []string
	for _, section := range []string{"mail_outbox", "verification_tokens"} {
		for _, row := range r.body[section].([]any) {
			m := row.(map[string]any)
			delete(m, "id")
			delete(m, "user_id")
			for _, k := range []string{"recipient", "new_email"} {
				if v, ok := m[k].(string); ok && v != "" {
					m[k] = "ADDRESS"
				}
			}
			if d, ok := m["data"].(map[string]any); ok && d["new_email"] != nil {
				d["new_email"] = "ADDRESS"
			}
			b, err := json.Marshal(m)
			if err != nil {
				e.t.Fatal(err)
			}
			parts = append(parts, section+":"+string(b))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, "\n")
}

// TestEmailChangePages: the verification page tells a change link from a
// sign-up one, names the new address, and its button moves the account.
func TestEmailChangePages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("page@example.org", goodPassword)
	access, _ := e.login("page@example.org", goodPassword)
	want(t, "request", e.changeEmail(access, "paged@example.net", goodPassword), 202, "")
	tok := e.changeLink("paged@example.net")
	r := e.do("GET", "/verify-email?token="+tok, nil)
	if r.status != 200 || !strings.Contains(r.raw, "to move it to paged@example.net") ||
		!strings.Contains(r.raw, `name="password"`) || strings.Contains(r.raw, "you signed up") {
		t.Fatalf("change page: %d %s", r.status, r.raw)
	}
	e.user("page@example.org") // opening the page moved nothing
	for _, c := range []struct{ password, says string }{
		{"", "Enter your account&#39;s password."},
		{"not the password at all", "The password is incorrect."},
	} {
		r = e.post("/verify-email", form("token", tok, "password", c.password))
		if r.status != 400 || !strings.Contains(r.raw, c.says) || !strings.Contains(r.raw, tok) ||
			!strings.Contains(r.raw, `name="password"`) {
			t.Errorf("pressing the button with password %q: %d %s", c.password, r.status, r.raw)
		}
	}
	r = e.post("/verify-email", form("token", tok, "password", goodPassword))
	if r.status != 200 || !strings.Contains(r.raw, "Your account now uses paged@example.net") {
		t.Fatalf("pressing the button: %d %s", r.status, r.raw)
	}
	e.user("paged@example.net")
}

// blindStore answers every EmailTaken with false, as if each address were
// registered just after the check: the write of the new address then meets
// the unique index.
type blindStore struct{ authd.Store }

func (s blindStore) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	return s.Store.InTx(ctx, func(q authd.Queries) error { return fn(blindQueries{q}) })
}

type blindQueries struct{ authd.Queries }

func (blindQueries) EmailTaken(context.Context, string) (bool, error) { return false, nil }

// cancellingStore cancels the user's pending address change the first
// time the user is read outside a transaction once armed: between the
// link's first read and the reservation of its password attempt.
type cancellingStore struct {
	authd.Store
	armed atomic.Bool
}

func (s *cancellingStore) User(ctx context.Context, id uuid.UUID) (*authd.User, error) {
	if s.armed.CompareAndSwap(true, false) {
		if err := s.Store.DeleteEmailChanges(ctx, id); err != nil {
			return nil, err
		}
	}
	return s.Store.User(ctx, id)
}

// TestEmailChangeLinkGoneBeforeItsCheck: a link that dies between its
// first read and its password check (a cancel, a void) refuses the check
// unchecked, and the try is logged on the account.
func TestEmailChangeLinkGoneBeforeItsCheck(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		st := &cancellingStore{Store: open(t)}
		e := newEnv(t, st)
		const email = "gone@example.org"
		_, link := e.pendingChange(email, "gone@example.net")
		before := e.eventCount(email, "email_changed/failure")
		st.armed.Store(true)
		want(t, "the link cancelled under its check", e.follow(link, goodPassword), 400, "invalid_token")
		if st.armed.Load() {
			t.Fatal("the store's hook never ran")
		}
		if n := e.eventCount(email, "email_changed/failure") - before; n != 1 {
			t.Errorf("%d rows for the try, want 1: %v", n, e.events(email))
		}
	})
}

// failingUseStore fails, once armed, the transaction that would use a
// verification token, as an outage (a serialization failure, the
// database going away) would.
type failingUseStore struct {
	authd.Store
	armed *atomic.Bool
}

func (s failingUseStore) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	return s.Store.InTx(ctx, func(q authd.Queries) error { return fn(failingUseQueries{q, s.armed}) })
}

type failingUseQueries struct {
	authd.Queries
	armed *atomic.Bool
}

func (q failingUseQueries) UseVerificationToken(ctx context.Context, v *authd.VerificationToken) error {
	if q.armed.CompareAndSwap(true, false) {
		return &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable"}
	}
	return q.Queries.UseVerificationToken(ctx, v)
}

// TestEmailChangeLinkLastCheckUndecided: a last attempt that an outage
// cut short (503) decides nothing: the link waits (429, checks further
// refused unchecked, the owner's re-authentication budget untouched), and
// once longer than any check can take has passed, the next try ends it
// and the owner is told.
func TestEmailChangeLinkLastCheckUndecided(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		armed := &atomic.Bool{}
		e := newEnv(t, failingUseStore{open(t), armed}, withRateLimit())
		const email = "undecided@example.org"
		access, link := e.pendingChange(email, "undecided@example.net")
		for range 4 {
			want(t, "a wrong password", e.follow(link, "not the password at all"), 401, "invalid_credentials")
		}
		e.clock.Advance(time.Minute) // the re-authentication budget's minute
		armed.Store(true)
		want(t, "the last attempt cut short", e.follow(link, goodPassword), 503, "unavailable")
		for range 12 {
			want(t, "a check while the last may be under way", e.follow(link, goodPassword), 429, "rate_limited")
		}
		want(t, "a re-authentication of the owner", e.do("POST", "/v1/users/me/mfa/totp",
			map[string]string{"password": goodPassword}, bearer(access)...), 200, "")
		if n := e.mail.last(t, authd.MailEmailChangeNotice, email); n.Voided {
			t.Errorf("the link was voided while its last check may be under way: %+v", n)
		}
		e.clock.Advance(2 * time.Minute)
		before := e.eventCount(email, "email_changed/failure")
		r := e.follow(link, goodPassword)
		want(t, "a check long after", r, 400, "invalid_token")
		if !strings.Contains(r.str("detail"), "now void") {
			t.Errorf("a check long after: %s", r.raw)
		}
		if n := e.eventCount(email, "email_changed/failure") - before; n != 1 {
			t.Errorf("%d rows for the void, want 1: %v", n, e.events(email))
		}
		if n := e.mail.last(t, authd.MailEmailChangeNotice, email); !n.Voided {
			t.Errorf("the owner's notice: %+v", n)
		}
		if u := e.user(email); u.Email != email {
			t.Errorf("the account moved: %s", u.Email)
		}
	})
}

// TestEmailChangeRacesRegistration: a registration that commits between
// the change's check of the address and its write makes the change roll
// back: 409, the account keeps its address and sessions, and the refusal
// is logged all the same.
func TestEmailChangeRacesRegistration(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, blindStore{open(t)})
		e.registerVerified("first@example.org", goodPassword)
		access, _ := e.login("first@example.org", goodPassword)
		want(t, "request", e.changeEmail(access, "contested@example.net", goodPassword), 202, "")
		link := e.changeLink("contested@example.net")
		e.registerVerified("contested@example.net", goodPassword)
		want(t, "the link", e.follow(link, goodPassword), 409, "conflict")
		if u := e.user("first@example.org"); !e.active(access) || u.Email != "first@example.org" {
			t.Error("the rolled-back change changed the account or ended its session")
		}
		if !e.hasEvent("first@example.org", "email_changed/failure") {
			t.Errorf("no row for the refusal: %v", e.events("first@example.org"))
		}
	})
}

// armedGate holds, once armed, the next password check until released.
type armedGate struct {
	authd.Passwords
	armed            atomic.Bool
	entered, release chan struct{}
}

func (g *armedGate) Verify(ctx context.Context, pw, hash string) (bool, bool, error) {
	if g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
	return g.Passwords.Verify(ctx, pw, hash)
}

// TestEmailChangeConfirmationAcrossALock: a lock that lands while the
// confirmation's password is checked refuses it (423) without spending the
// link, a wrong password as a right one, so a right password among guesses
// that locked the account is not told apart; once the lock is lifted the
// link moves the account. On the link's last attempt the lock voids it,
// and says so, and the owner is told, as a wrong password would.
func TestEmailChangeConfirmationAcrossALock(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		g := &armedGate{}
		e := newEnv(t, open(t), withPasswords(func(p authd.Passwords) authd.Passwords { g.Passwords = p; return g }))
		const email = "racing@example.org"
		_, link := e.pendingChange(email, "raced@example.net")

		overtaken := func(link, email, password string) response {
			t.Helper()
			g.entered, g.release = make(chan struct{}), make(chan struct{})
			g.armed.Store(true)
			done := make(chan response)
			go func() { done <- e.follow(link, password) }()
			<-g.entered // the password is being checked
			e.bruteLock(email)
			close(g.release)
			return <-done
		}
		want(t, "a wrong password overtaken by a lock", overtaken(link, email, "not the password at all"), 423, "account_locked")
		e.clock.Advance(16 * time.Minute)
		want(t, "the right password overtaken by a lock", overtaken(link, email, goodPassword), 423, "account_locked")

		e.clock.Advance(16 * time.Minute) // the lock runs out
		want(t, "the link after the lock", e.follow(link, goodPassword), 200, "")
		e.user("raced@example.net")

		// The last attempt overtaken by a lock: the link is void now.
		access, _ := e.login("raced@example.net", goodPassword)
		want(t, "request again", e.changeEmail(access, "raced@example.com", goodPassword), 202, "")
		link = e.changeLink("raced@example.com")
		for range 4 {
			want(t, "a wrong password", e.follow(link, "not the password at all"), 401, "invalid_credentials")
		}
		r := overtaken(link, "raced@example.net", goodPassword)
		want(t, "the last attempt overtaken by a lock", r, 423, "account_locked")
		if !strings.Contains(r.str("detail"), "now void") {
			t.Errorf("the last attempt overtaken by a lock does not say the link is void: %s", r.raw)
		}
		if n := e.mail.last(t, authd.MailEmailChangeNotice, "raced@example.net"); !n.Voided {
			t.Errorf("the owner's notice: %+v", n)
		}
		e.clock.Advance(16 * time.Minute)
		want(t, "the link after the lock", e.follow(link, goodPassword), 400, "invalid_token")
	})
}

// TestEmailChangeLinkUntouchedWhileLocked: while the account is locked, a
// password given at a link that moves it is not checked at all (423): it
// spends none of the link's attempts, so guesses made during the lock
// cannot void the owner's link, which moves the account once the lock has
// run out.
func TestEmailChangeLinkUntouchedWhileLocked(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "locked.link@example.org"
		_, link := e.pendingChange(email, "locked.link@example.net")
		e.bruteLock(email)
		for i := range 5 {
			want(t, fmt.Sprintf("wrong password %d while locked", i+1), e.follow(link, "not the password at all"), 423, "account_locked")
		}
		e.clock.Advance(16 * time.Minute) // the lock runs out
		want(t, "the link after the lock", e.follow(link, goodPassword), 200, "")
		e.user("locked.link@example.net")
	})
}

// TestEmailChangeLinkPasswords: the password checks made with a link that
// moves an account count on the link, not toward the account's lock (its
// holder, a mistyped address's owner say, could otherwise lock the account
// for the link's whole life): a fifth wrong password voids the link and
// the owner is told; the account is neither locked nor hindered; each is
// logged on the account.
func TestEmailChangeLinkPasswords(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "typo@example.org"
		access, link := e.pendingChange(email, "typo@example.net")
		for i := 1; i < 5; i++ {
			want(t, fmt.Sprintf("wrong password %d", i), e.follow(link, "not the password at all"), 401,
				"invalid_credentials")
		}
		if u := e.user(email); u.FailedLoginAttempts != 0 || u.AccountStatus != authd.StatusActive {
			t.Fatalf("four wrong passwords at the link: %d failures, status %s", u.FailedLoginAttempts, u.AccountStatus)
		}
		r := e.follow(link, "not the password at all")
		want(t, "the fifth wrong password", r, 400, "invalid_token")
		if !strings.Contains(r.str("detail"), "now void") {
			t.Errorf("the fifth wrong password does not say the link is void: %s", r.raw)
		}
		if n := e.mail.last(t, authd.MailEmailChangeNotice, email); !n.Voided || n.NewEmail != "typo@example.net" {
			t.Errorf("the owner's notice of the void link: %+v", n)
		}
		want(t, "the right password after", e.follow(link, goodPassword), 400, "invalid_token")
		u := e.user(email)
		if u.FailedLoginAttempts != 0 || u.IsLocked(e.clock.Now()) {
			t.Errorf("the link's wrong passwords locked the account: %+v", u)
		}
		e.login(email, goodPassword)
		n := e.eventCount(email, "email_changed/failure")
		if n != 5 { // the void link is deleted: the refusal after names no account
			t.Errorf("%d email_changed failures logged, want 5: %v", n, e.events(email))
		}
		// A new request's link counts from nothing.
		want(t, "request again", e.changeEmail(access, "typo@example.net", goodPassword), 202, "")
		link = e.changeLink("typo@example.net")
		want(t, "a wrong password at the new link", e.follow(link, "not the password at all"), 401, "invalid_credentials")
		want(t, "the new link", e.follow(link, goodPassword), 200, "")
		e.user("typo@example.net")
	})
}

// TestEmailChangeLinkPasswordsAcrossLinks: the password checks at the links
// that would move one account to one address are bounded across those
// links too (two links' worth a day): an owner who asks again for the same
// mistyped address does not give its holder five more guesses each time.
// Past the budget the answer tells nothing of the password; a change to
// another address has its own budget; the day over, links work again.
func TestEmailChangeLinkPasswordsAcrossLinks(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		const email, typo = "again@example.org", "again@example.net"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		start := e.clock.Now()
		for round := 1; round <= 2; round++ {
			want(t, "request", e.changeEmail(access, typo, goodPassword), 202, "")
			link := e.changeLink(typo)
			for i := 1; i <= 5; i++ {
				r := e.follow(link, "not the password at all")
				if i < 5 {
					want(t, fmt.Sprintf("link %d, wrong password %d", round, i), r, 401, "invalid_credentials")
				} else {
					want(t, fmt.Sprintf("link %d, the fifth wrong password", round), r, 400, "invalid_token")
				}
			}
			e.clock.Advance(time.Hour) // past the per-minute and the mail budgets
			access, _ = e.login(email, goodPassword)
		}
		want(t, "a third request", e.changeEmail(access, typo, goodPassword), 202, "")
		link := e.changeLink(typo)
		// Past the day's checks a wrong password and the right one get
		// the same answer: the guesses tell nothing.
		wrong := e.follow(link, "not the password at all")
		r := e.follow(link, goodPassword)
		for _, r := range []response{wrong, r} {
			want(t, "the third link, past the day's checks", r, 429, "rate_limited")
			if !strings.Contains(r.str("detail"), "links to this address") || r.header.Get("Retry-After") == "" {
				t.Errorf("the refusal past the day's checks: %s, Retry-After %q", r.raw, r.header.Get("Retry-After"))
			}
		}
		// The page keeps the form.
		p := e.post("/verify-email", form("token", link, "password", goodPassword))
		if p.status != 429 || p.header.Get("Retry-After") == "" || !strings.Contains(p.raw, `name="password"`) ||
			!strings.Contains(p.raw, "links to this address") {
			t.Errorf("the page past the day's checks: %d %s", p.status, p.raw)
		}
		if n := e.linkAttempts(access); n != 3 { // each was checked, and counts on its link
			t.Errorf("the refusals spent %d of the link's attempts, want 3", n)
		}
		if n := e.eventCount(email, "email_changed/failure"); n != 13 { // 10 wrong passwords, 3 past the budget
			t.Errorf("%d email_changed failures, want 13: %v", n, e.events(email))
		}
		// The link's fifth, past the budget too, voids it, and says so.
		e.clock.Advance(time.Minute)
		want(t, "the fourth past the budget", e.follow(link, goodPassword), 429, "rate_limited")
		r = e.follow(link, goodPassword)
		if r.status != 429 || !strings.Contains(r.str("detail"), "now void") {
			t.Errorf("the link's last attempt past the budget: %d %s", r.status, r.raw)
		}
		if n := e.mail.last(t, authd.MailEmailChangeNotice, email); !n.Voided {
			t.Errorf("the owner's notice: %+v", n)
		}
		want(t, "the link after", e.follow(link, goodPassword), 400, "invalid_token")
		if u := e.user(email); u.FailedLoginAttempts != 0 || u.IsLocked(e.clock.Now()) {
			t.Errorf("the links' checks touched the account's lock: %+v", u)
		}

		// Another address has a budget of its own.
		want(t, "a request for another address", e.changeEmail(access, "right@example.net", goodPassword), 202, "")
		want(t, "the other address's link", e.follow(e.changeLink("right@example.net"), goodPassword), 200, "")

		// The day over, the first address's links are checked again.
		e.clock.Advance(start.Add(24*time.Hour + time.Minute).Sub(e.clock.Now()))
		access, _ = e.login("right@example.net", goodPassword)
		want(t, "a request the next day", e.changeEmail(access, typo, goodPassword), 202, "")
		want(t, "the link the next day", e.follow(e.changeLink(typo), goodPassword), 200, "")
		e.user(typo)
	})
}

// TestEmailChangeConfirmationNeedsTheSecondFactor: following the link of a
// user with a second factor needs its proof too, as the request did: a
// mistyped address's owner who knows the password must not get the
// account. Without one: 403 mfa_required naming the methods, before any
// password is checked; a wrong code counts toward the lock (it is given
// past the password) and keeps the link; a right one moves the account.
func TestEmailChangeConfirmationNeedsTheSecondFactor(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "factor@example.org"
		access, secret, codes := e.mfaUser(email)
		body := map[string]string{"new_email": "factor@example.net", "password": goodPassword,
			"code": totpAt(t, secret, e.clock.Now())}
		want(t, "request", e.do("POST", "/v1/users/me/email", body, bearer(access)...), 202, "")
		link := e.changeLink("factor@example.net")
		e.clock.Advance(time.Minute)
		follow := func(password, code string) response {
			return e.do("POST", "/v1/auth/verify-email", map[string]string{"token": link, "password": password, "code": code})
		}
		r := e.follow(link, "not the password at all")
		want(t, "the link without the factor", r, 403, "mfa_required")
		if got := r.body["methods"]; fmt.Sprint(got) != "[totp recovery_code]" || r.str("mfa_token") != "" ||
			!strings.HasPrefix(r.str("detail"), "Following this link needs your second factor") ||
			strings.Contains(r.str("detail"), "passkey") { // this user has none
			t.Errorf("the link without the factor: %s", r.raw)
		}
		want(t, "a code of no shape", follow(goodPassword, "12345"), 400, "validation_failed")
		want(t, "a passkey ceremony for an account without a passkey", e.do("POST", "/v1/auth/verify-email/challenge",
			map[string]string{"token": link}), 404, "not_found")
		if e.hasEvent(email, "email_changed/failure") || e.linkAttempts(access) != 0 {
			t.Errorf("a password was checked without a proof of a possible shape: %d attempts, %v",
				e.linkAttempts(access), e.events(email))
		}
		want(t, "a wrong code", follow(goodPassword, e.wrongCode(secret)), 401, "invalid_credentials")
		if u := e.user(email); u.FailedLoginAttempts != 1 || u.Email != email {
			t.Errorf("after a wrong code: %d failures, address %s", u.FailedLoginAttempts, u.Email)
		}
		want(t, "a right code, a wrong password", follow("not the password at all", totpAt(t, secret, e.clock.Now())),
			401, "invalid_credentials")
		// The right password that failed on its code counted on the
		// link too: the holder learns nothing for free.
		if n := e.linkAttempts(access); n != 2 {
			t.Errorf("%d password attempts on the link, want 2", n)
		}
		want(t, "a recovery code", follow(goodPassword, codes[0]), 200, "")
		e.user("factor@example.net")
		if !e.hasEvent("factor@example.net", "recovery_code_used/success") {
			t.Errorf("the recovery code's use is not logged: %v", e.events("factor@example.net"))
		}
	})
}

// TestEmailChangeConfirmationWithAPasskey: a passkey proves the second
// factor at the link through a ceremony the link begins
// (POST /v1/auth/verify-email/challenge), which no other token begins.
func TestEmailChangeConfirmationWithAPasskey(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "keyed@example.org"
		access, k, _ := e.passkeyUser(email)
		want(t, "request", e.do("POST", "/v1/users/me/email", map[string]any{"new_email": "keyed@example.net",
			"password": goodPassword, "passkey": e.stepUp(access, k)}, bearer(access)...), 202, "")
		link := e.changeLink("keyed@example.net")
		r := e.follow(link, goodPassword)
		want(t, "the link without the passkey", r, 403, "mfa_required")
		if got := r.body["methods"]; fmt.Sprint(got) != "[passkey recovery_code]" ||
			!strings.Contains(r.str("detail"), "a recovery code as code, or a passkey assertion answering POST /v1/auth/verify-email/challenge") {
			t.Errorf("the link without the passkey: %s", r.raw)
		}
		want(t, "a challenge without a token", e.do("POST", "/v1/auth/verify-email/challenge", map[string]string{}),
			400, "validation_failed")
		want(t, "a challenge for no link", e.do("POST", "/v1/auth/verify-email/challenge",
			map[string]string{"token": strings.Repeat("A", 44)}), 400, "invalid_token")
		r = e.do("POST", "/v1/auth/verify-email/challenge", map[string]string{"token": link})
		want(t, "the link's challenge", r, 200, "")
		assertion := k.Get(publicKey(t, r))
		want(t, "a wrong password with the passkey", e.do("POST", "/v1/auth/verify-email", map[string]any{"token": link,
			"password": "not the password at all", "passkey": assertion}), 401, "invalid_credentials")
		// An assertion of a key the account does not have, and one whose
		// ceremony expired, are refused; the link stays good.
		r = e.do("POST", "/v1/auth/verify-email/challenge", map[string]string{"token": link})
		want(t, "the link's challenge for another key", r, 200, "")
		foreign := newSoftKey(t, rpID, rpOrigin).Get(publicKey(t, r))
		if r := e.do("POST", "/v1/auth/verify-email", map[string]any{"token": link, "password": goodPassword,
			"passkey": foreign}); r.status == 200 || r.code() == "invalid_token" {
			t.Errorf("a foreign key's assertion: %d %s", r.status, r.raw)
		}
		r = e.do("POST", "/v1/auth/verify-email/challenge", map[string]string{"token": link})
		want(t, "a challenge left to expire", r, 200, "")
		stale := k.Get(publicKey(t, r))
		e.clock.Advance(authd.WebAuthnChallengeTTL + time.Second)
		r = e.do("POST", "/v1/auth/verify-email", map[string]any{"token": link, "password": goodPassword, "passkey": stale})
		want(t, "an expired ceremony's assertion", r, 400, "validation_failed")
		if r.field() != "passkey" {
			t.Errorf("an expired ceremony's assertion names %q, want passkey: %s", r.field(), r.raw)
		}
		// Told before the password is checked: it spent no attempt (a
		// wrong password and the foreign key's did).
		if n := e.linkAttempts(access); n != 2 {
			t.Errorf("%d attempts on the link, want 2", n)
		}
		r = e.do("POST", "/v1/auth/verify-email/challenge", map[string]string{"token": link})
		want(t, "the link's challenge again", r, 200, "")
		want(t, "the passkey", e.do("POST", "/v1/auth/verify-email", map[string]any{"token": link,
			"password": goodPassword, "passkey": k.Get(publicKey(t, r))}), 200, "")
		e.user("keyed@example.net")
		want(t, "a challenge for the used link", e.do("POST", "/v1/auth/verify-email/challenge",
			map[string]string{"token": link}), 400, "invalid_token")

		// A link that verifies an address begins no ceremony.
		e.do("POST", "/v1/auth/register", map[string]any{"email": "plain@example.org", "password": goodPassword,
			"consent": true})
		plain := tokenOf(t, e.mail.last(t, authd.MailVerifyEmail, "plain@example.org"))
		want(t, "a challenge for a verification link", e.do("POST", "/v1/auth/verify-email/challenge",
			map[string]string{"token": plain}), 400, "invalid_token")
	})
}

// TestEmailChangePageAcrossALock: a change link's page refused by a lock
// shows its form again (423, Retry-After), the link being good still, and
// works once the lock is over.
func TestEmailChangePageAcrossALock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	const email = "paused@example.org"
	_, tok := e.pendingChange(email, "paused@example.net")
	e.bruteLock(email)
	r := e.post("/verify-email", form("token", tok, "password", goodPassword))
	if r.status != 423 || r.header.Get("Retry-After") == "" || !strings.Contains(r.raw, `name="password"`) ||
		!strings.Contains(r.raw, tok) || !strings.Contains(r.raw, "paused@example.net") {
		t.Errorf("the page across a lock: %d %v %s", r.status, r.header, r.raw)
	}
	e.clock.Advance(16 * time.Minute)
	r = e.post("/verify-email", form("token", tok, "password", goodPassword))
	if r.status != 200 || !strings.Contains(r.raw, "Your account now uses paused@example.net") {
		t.Errorf("the page once the lock is over: %d %s", r.status, r.raw)
	}
}

// TestEmailChangePagesAskTheSecondFactor: a change link's page asks for
// the factor its user has — a code field, and a passkey button (with its
// script) for a passkey — and says so when the form lacks it.
func TestEmailChangePagesAskTheSecondFactor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	access, secret, _ := e.mfaUser("coded@example.org")
	want(t, "request", e.do("POST", "/v1/users/me/email", map[string]string{"new_email": "coded@example.net",
		"password": goodPassword, "code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 202, "")
	tok := e.changeLink("coded@example.net")
	r := e.do("GET", "/verify-email?token="+tok, nil)
	if r.status != 200 || !strings.Contains(r.raw, `name="code"`) || !strings.Contains(r.raw, "authenticator app") ||
		strings.Contains(r.raw, "use-passkey") || strings.Contains(r.raw, "<script") {
		t.Fatalf("page of a TOTP user's link: %d %s", r.status, r.raw)
	}
	e.clock.Advance(time.Minute)
	r = e.post("/verify-email", form("token", tok, "password", goodPassword))
	if r.status != 400 || !strings.Contains(r.raw, "Prove your second factor too.") || !strings.Contains(r.raw, `name="code"`) {
		t.Errorf("the form without a code: %d %s", r.status, r.raw)
	}
	r = e.post("/verify-email", form("token", tok, "password", "not the password at all", "code", "abcde-fghij"))
	if r.status != 400 || !strings.Contains(r.raw, "The password is incorrect.") || !strings.Contains(r.raw, `name="code"`) {
		t.Errorf("the form with a wrong password: %d %s", r.status, r.raw)
	}
	r = e.post("/verify-email", form("token", tok, "password", goodPassword, "code", "12"))
	if r.status != 400 || !strings.Contains(r.raw, "The code must be a 6-digit code") {
		t.Errorf("the form with a code of no shape: %d %s", r.status, r.raw)
	}
	r = e.post("/verify-email", form("token", tok, "password", goodPassword, "code", e.wrongCode(secret)))
	if r.status != 400 || !strings.Contains(r.raw, "The code is incorrect.") || !strings.Contains(r.raw, `name="code"`) ||
		!strings.Contains(r.raw, tok) {
		t.Errorf("the form with a wrong code: %d %s", r.status, r.raw)
	}
	r = e.post("/verify-email", form("token", tok, "password", goodPassword, "code", totpAt(t, secret, e.clock.Now())))
	if r.status != 200 || !strings.Contains(r.raw, "Your account now uses coded@example.net") {
		t.Fatalf("the form with a code: %d %s", r.status, r.raw)
	}

	access, pk, _ := e.passkeyUser("keyed@example.org")
	want(t, "request", e.do("POST", "/v1/users/me/email", map[string]any{"new_email": "keyed@example.net",
		"password": goodPassword, "passkey": e.stepUp(access, pk)}, bearer(access)...), 202, "")
	tok = e.changeLink("keyed@example.net")
	r = e.do("GET", "/verify-email?token="+tok, nil)
	_, nonce, _ := strings.Cut(r.header.Get("Content-Security-Policy"), "script-src 'nonce-")
	nonce, _, _ = strings.Cut(nonce, "'")
	if r.status != 200 || !strings.Contains(r.raw, `id="use-passkey"`) || !strings.Contains(r.raw, "A recovery code") ||
		!strings.Contains(r.raw, "/v1/auth/verify-email/challenge") || nonce == "" ||
		strings.Count(html.UnescapeString(r.raw), `<script nonce="`+nonce+`">`) != strings.Count(r.raw, "<script") {
		t.Errorf("page of a passkey user's link (script nonce %q): %d %s", nonce, r.status, r.raw)
	}
	// An assertion whose ceremony expired asks again, the link being good.
	ceremony := e.do("POST", "/v1/auth/verify-email/challenge", map[string]string{"token": tok})
	want(t, "the link's challenge", ceremony, 200, "")
	stale, err := json.Marshal(pk.Get(publicKey(t, ceremony)))
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(authd.WebAuthnChallengeTTL + time.Second)
	r = e.post("/verify-email", form("token", tok, "password", goodPassword, "passkey", string(stale)))
	if r.status != 400 || !strings.Contains(r.raw, "ceremony expired") || !strings.Contains(r.raw, `id="use-passkey"`) {
		t.Errorf("the form with an expired ceremony's assertion: %d %s", r.status, r.raw)
	}
	// Five wrong passwords (with a code of the right shape): the last
	// voids the link, and the page says so, and why, rather than offer a
	// verification link.
	for range 4 { // the expired ceremony's assertion spent no attempt
		e.post("/verify-email", form("token", tok, "password", "not the password at all", "code", "abcde-fghij"))
	}
	r = e.post("/verify-email", form("token", tok, "password", "not the password at all", "code", "abcde-fghij"))
	if r.status != 400 || !strings.Contains(r.raw, "this link is now void after too many attempts") ||
		strings.Contains(r.raw, "new-link") {
		t.Errorf("the fifth wrong password on the page: %d %s", r.status, r.raw)
	}
	// Opened again, the dead link's page says the same.
	r = e.do("GET", "/verify-email?token="+tok, nil)
	if r.status != 400 || !strings.Contains(r.raw, "Ask for the change again from your account") ||
		strings.Contains(r.raw, "new-link") {
		t.Errorf("the dead change link's page: %d %s", r.status, r.raw)
	}
}

// linkAttempts reads, from the token's user's export, the password
// attempts made with their change link.
func (e *env) linkAttempts(access string) int {
	e.t.Helper()
	for line := range strings.Lines(e.exported(access)) {
		var row struct {
			NewEmail *string `json:"new_email"`
			Used     bool    `json:"used"`
			Attempts int     `json:"attempts"`
		}
		raw, ok := strings.CutPrefix(strings.TrimSpace(line), "verification_tokens:")
		if ok && json.Unmarshal([]byte(raw), &row) == nil && row.NewEmail != nil && !row.Used {
			return row.Attempts
		}
	}
	e.t.Fatalf("no change link in the export")
	return 0
}

// holdingGate holds, once armed, every password check until released,
// telling each on entered.
type holdingGate struct {
	authd.Passwords
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g *holdingGate) Verify(ctx context.Context, pw, hash string) (bool, bool, error) {
	if g.armed.Load() {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.Passwords.Verify(ctx, pw, hash)
}

// TestEmailChangeLinkAttemptsInParallel: the link's password attempts are
// counted before the hash, so guesses sent at once cannot pass the bound:
// of eight, five are checked and three refused unchecked (429: all being
// checked), voiding nothing; the fifth checked voids the link. Each
// checked guess is logged, and the owner told once.
func TestEmailChangeLinkAttemptsInParallel(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		g := &holdingGate{entered: make(chan struct{}, 16), release: make(chan struct{})}
		e := newEnv(t, open(t), withPasswords(func(p authd.Passwords) authd.Passwords { g.Passwords = p; return g }))
		const email = "burst@example.org"
		_, link := e.pendingChange(email, "burst@example.net")

		g.armed.Store(true)
		release := sync.OnceFunc(func() { close(g.release) })
		t.Cleanup(release) // a failure below must not leave checks held
		answers := make(chan response, 8)
		for range 8 {
			go func() { answers <- e.follow(link, "not the password at all") }()
		}
		answer := func() response {
			t.Helper()
			select {
			case r := <-answers:
				return r
			case <-time.After(10 * time.Second):
				t.Fatalf("no answer; %d password checks held", len(g.entered))
				return response{}
			}
		}
		for i := range 5 {
			select {
			case <-g.entered:
			case <-time.After(10 * time.Second):
				t.Fatalf("%d password checks began, want 5", i)
			}
		}
		for range 3 {
			r := answer()
			want(t, "a guess past the bound", r, 429, "rate_limited")
			if r.header.Get("Retry-After") != "1" {
				t.Errorf("a guess past the bound: Retry-After %q, want 1", r.header.Get("Retry-After"))
			}
		}
		if n := len(g.entered); n != 0 {
			t.Errorf("%d more password checks began past the bound", n)
		}
		release()
		// The fifth voids the link; the others are told their password is
		// wrong, or, answered after the void, that the link is gone.
		voided := 0
		for range 5 {
			switch r := answer(); {
			case r.status == 400 && strings.Contains(r.str("detail"), "now void"):
				voided++
			case r.status == 401, r.status == 400 && r.code() == "invalid_token":
			default:
				t.Errorf("a checked guess: %d %s", r.status, r.raw)
			}
		}
		if voided != 1 {
			t.Errorf("%d checked guesses voided the link, want 1", voided)
		}
		g.armed.Store(false)
		want(t, "the right password after", e.follow(link, goodPassword), 400, "invalid_token")
		e.user(email)                                                      // the account kept its address
		if n := e.mail.count(authd.MailEmailChangeNotice, email); n != 2 { // the request's, the void's
			t.Errorf("%d notices to the old address, want 2", n)
		}
		n := e.eventCount(email, "email_changed/failure")
		if n != 5 { // the five checked guesses, the last with its void
			t.Errorf("%d email_changed failures logged, want 5: %v", n, e.events(email))
		}
	})
}

// TestEmailChangeLinkRightPasswordsInParallel: a user who sends the form
// several times at once, with the right password, is not refused by their
// own link: past the five attempts the extra ones wait (429), one check
// moves the account, and the link is not voided nor the owner told of a
// void.
func TestEmailChangeLinkRightPasswordsInParallel(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		g := &holdingGate{entered: make(chan struct{}, 16), release: make(chan struct{})}
		e := newEnv(t, open(t), withPasswords(func(p authd.Passwords) authd.Passwords { g.Passwords = p; return g }))
		const email = "eager@example.org"
		_, link := e.pendingChange(email, "eager@example.net")
		g.armed.Store(true)
		release := sync.OnceFunc(func() { close(g.release) })
		t.Cleanup(release)
		answers := make(chan response, 6)
		for range 6 {
			go func() { answers <- e.follow(link, goodPassword) }()
		}
		for i := range 5 {
			select {
			case <-g.entered:
			case <-time.After(10 * time.Second):
				t.Fatalf("%d password checks began, want 5", i)
			}
		}
		statuses := map[int]int{}
		got := func() {
			t.Helper()
			select {
			case r := <-answers:
				statuses[r.status]++
			case <-time.After(10 * time.Second):
				t.Fatal("no answer")
			}
		}
		got() // the sixth, refused while the five are checked
		release()
		for range 5 {
			got()
		}
		if statuses[200] != 1 || statuses[429] != 1 || statuses[400] != 4 {
			t.Errorf("six right passwords at once: %v; want one 200, one 429, four 400 (the link used)", statuses)
		}
		e.user("eager@example.net")
		// The request's notice and the move's; no void's.
		if n, last := e.mail.count(authd.MailEmailChangeNotice, email), e.mail.last(t, authd.MailEmailChangeNotice, email); n != 2 ||
			!last.Done || last.Voided {
			t.Errorf("%d notices to the old address, the last %+v; want 2, the move's", n, last)
		}
	})
}

// busyPasswords answers every password check, once armed, as the hashing
// workers do when their queue is full.
type busyPasswords struct {
	authd.Passwords
	armed atomic.Bool
}

func (b *busyPasswords) Verify(ctx context.Context, pw, hash string) (bool, bool, error) {
	if b.armed.Load() {
		return false, false, authd.ErrBusy
	}
	return b.Passwords.Verify(ctx, pw, hash)
}

// TestEmailChangeLinkAttemptsRefundedWhenBusy: a password the busy workers
// did not check spends none of the link's attempts, lest a flood of logins
// spend the owner's.
func TestEmailChangeLinkAttemptsRefundedWhenBusy(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		b := &busyPasswords{}
		e := newEnv(t, open(t), withPasswords(func(p authd.Passwords) authd.Passwords { b.Passwords = p; return b }),
			withRateLimit())
		const email = "busy@example.org"
		access, link := e.pendingChange(email, "busy@example.net")
		b.armed.Store(true)
		// More than the address's day of checks, too (linkPasswordsPerDay),
		// a minute's re-authentication budget at a time.
		for i := range 12 {
			want(t, "the link while the workers are busy", e.follow(link, goodPassword), 503, "unavailable")
			if i%5 == 4 {
				e.clock.Advance(time.Minute)
			}
		}
		b.armed.Store(false)
		if n := e.linkAttempts(access); n != 0 {
			t.Errorf("%d attempts spent by unchecked passwords", n)
		}
		want(t, "the link once the workers are free", e.follow(link, goodPassword), 200, "")
	})
}

// TestEmailChangeLinkSpentByRefusedProofs: right passwords whose second
// factor fails spend the link's attempts too; the last one's refusal voids
// the link at once, and the old address is told.
func TestEmailChangeLinkSpentByRefusedProofs(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "spent@example.org"
		access, k, _ := e.passkeyUser(email)
		want(t, "request", e.do("POST", "/v1/users/me/email", map[string]any{"new_email": "spent@example.net",
			"password": goodPassword, "passkey": e.stepUp(access, k)}, bearer(access)...), 202, "")
		link := e.changeLink("spent@example.net")
		stranger := newSoftKey(t, rpID, rpOrigin)
		guess := func() response {
			t.Helper()
			r := e.do("POST", "/v1/auth/verify-email/challenge", map[string]string{"token": link})
			want(t, "the link's challenge", r, 200, "")
			return e.do("POST", "/v1/auth/verify-email", map[string]any{"token": link, "password": goodPassword,
				"passkey": stranger.Get(publicKey(t, r))})
		}
		for i := range 4 {
			if r := guess(); r.status == 200 || r.code() == "invalid_token" {
				t.Fatalf("a stranger's passkey with the right password, attempt %d: %d %s", i+1, r.status, r.raw)
			}
		}
		// The last attempt's refused proof voids the link at once.
		r := guess()
		want(t, "the last attempt's refused proof", r, 400, "invalid_token")
		if !strings.Contains(r.str("detail"), "now void after too many attempts") {
			t.Errorf("the last attempt's refused proof: %s", r.raw)
		}
		want(t, "a check after", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": link,
			"password": goodPassword, "code": "abcde-fghij"}), 400, "invalid_token")
		if n := e.mail.last(t, authd.MailEmailChangeNotice, email); !n.Voided {
			t.Errorf("the owner's notice: %+v", n)
		}
		if !slices.Contains(e.events(email), "email_changed/failure") || e.user(email).Email != email {
			t.Errorf("the void: %v", e.events(email))
		}
	})
}

// TestEmailChangeLinkVoidedUnderALock: the last attempt's code refused by
// a lock voids the link all the same; the lock is the API's answer (423),
// which says the link is void too, and the page shows the dead link, not
// the form.
func TestEmailChangeLinkVoidedUnderALock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	for _, c := range []struct{ email, via string }{{"locked-api@example.org", "api"}, {"locked-page@example.org", "page"}} {
		access, secret, _ := e.mfaUser(c.email)
		to := strings.Replace(c.email, ".org", ".net", 1)
		want(t, "request", e.do("POST", "/v1/users/me/email", map[string]string{"new_email": to,
			"password": goodPassword, "code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 202, "")
		link := e.changeLink(to)
		for range 4 {
			want(t, "a wrong password", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": link,
				"password": "not the password at all", "code": "abcde-fghij"}), 401, "invalid_credentials")
		}
		u := e.user(c.email)
		u.CodesLockedUntil = e.clock.Now().Add(30 * time.Minute)
		if err := e.store.UpdateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		code := totpAt(t, secret, e.clock.Now().Add(time.Minute))
		if c.via == "api" {
			r := e.do("POST", "/v1/auth/verify-email", map[string]string{"token": link, "password": goodPassword, "code": code})
			want(t, "the last attempt under a lock", r, 423, "account_locked")
			if !strings.Contains(r.str("detail"), "this link is now void") || r.header.Get("Retry-After") == "" {
				t.Errorf("the last attempt under a lock: %s %v", r.raw, r.header)
			}
		} else {
			r := e.post("/verify-email", form("token", link, "password", goodPassword, "code", code))
			if r.status != 400 || !strings.Contains(r.raw, "this link is now void") || strings.Contains(r.raw, `name="password"`) {
				t.Errorf("the page's last attempt under a lock: %d %s", r.status, r.raw)
			}
		}
		if n := e.mail.last(t, authd.MailEmailChangeNotice, c.email); !n.Voided {
			t.Errorf("the owner's notice: %+v", n)
		}
	}
}

// TestEmailChangeLinkCeremonyBudget: a link begins at most ten passkey
// ceremonies an hour, a budget apart from its user's own.
func TestEmailChangeLinkCeremonyBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withRateLimit())
	access, k, _ := e.passkeyUser("budget@example.org")
	want(t, "request", e.do("POST", "/v1/users/me/email", map[string]any{"new_email": "budget@example.net",
		"password": goodPassword, "passkey": e.stepUp(access, k)}, bearer(access)...), 202, "")
	link := e.changeLink("budget@example.net")
	for i := range 10 {
		want(t, fmt.Sprintf("ceremony %d", i+1), e.do("POST", "/v1/auth/verify-email/challenge",
			map[string]string{"token": link}), 200, "")
	}
	want(t, "an eleventh ceremony", e.do("POST", "/v1/auth/verify-email/challenge", map[string]string{"token": link}),
		429, "rate_limited")
	want(t, "the user's own ceremony", e.do("POST", "/v1/users/me/mfa/challenge", map[string]any{}, bearer(access)...),
		200, "")
}

// TestAdminSetsEmail: an administrator moves an account to a new address
// (POST /v1/admin/users/{id}/email): with verified, it signs in there at
// once; without, a verification link goes there first. As with the user's
// own change, every session ends, the old address's links die and it is
// told, and it is free to register. The action is logged for the
// administrator and the user.
func TestAdminSetsEmail(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const old = "lost@example.org"
		e.registerVerified(old, goodPassword)
		e.registerVerified("taken@example.org", goodPassword)
		access, refresh := e.login(old, goodPassword)
		id := e.user(old).ID
		path := "/v1/admin/users/" + id.String() + "/email"
		want(t, "reset asked", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": old}), 202, "")
		reset := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, old))
		for _, c := range []struct {
			what   string
			path   string
			body   any
			status int
			code   string
		}{
			{"no body", path, nil, 400, "validation_failed"},
			{"no address", path, map[string]any{"verified": true}, 400, "validation_failed"},
			{"not an address", path, map[string]any{"email": "nope"}, 400, "validation_failed"},
			{".invalid", path, map[string]any{"email": "x@corp.invalid"}, 400, "validation_failed"},
			{"the same address", path, map[string]any{"email": "LOST@example.org"}, 400, "validation_failed"},
			{"an unknown field", path, map[string]any{"email": "a@example.net", "confirm": true}, 400, "validation_failed"},
			{"a taken address", path, map[string]any{"email": "Taken@example.org"}, 409, "conflict"},
			{"no such user", "/v1/admin/users/" + authd.NewID().String() + "/email", map[string]any{"email": "a@example.net"},
				404, "not_found"},
		} {
			want(t, c.what, e.admin("POST", c.path, c.body), c.status, c.code)
		}
		want(t, "without the administrator's token", e.do("POST", path, map[string]any{"email": "a@example.net"}), 404, "")

		want(t, "move, verified", e.admin("POST", path, map[string]any{"email": "found@example.org", "verified": true}),
			204, "")
		if u := e.user("found@example.org"); u.ID != id || !u.EmailVerified {
			t.Errorf("the moved account: %+v", u)
		}
		if e.active(access) {
			t.Error("a session outlived the change")
		}
		want(t, "refresh after the change", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}),
			401, "invalid_token")
		want(t, "the old address's reset link", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": reset, "new_password": "the intruder's passphrase"}), 400, "invalid_token")
		// The old address, which the user lost, hears that support moved
		// the account, not where to.
		if n := e.mail.last(t, authd.MailEmailChangeNotice, old); !n.Done || !n.ByAdministrator || n.NewEmail != "" {
			t.Errorf("the old address's notice: %+v", n)
		}
		access, _ = e.login("found@example.org", goodPassword)
		e.registerVerified(old, goodPassword) // the old address is free
		if e.eventCount("found@example.org", "email_changed/success") != 1 ||
			e.eventCount("found@example.org", "admin_action/success") != 1 {
			t.Errorf("the user's rows: %v", e.events("found@example.org"))
		}
		r := e.admin("GET", "/v1/admin/security-logs?event_type=admin_action&user_id="+id.String(), nil)
		want(t, "the administrator's rows", r, 200, "")
		if items, _ := r.body["items"].([]any); len(items) == 0 ||
			items[0].(map[string]any)["additional_context"].(map[string]any)["action"] != "change_email" {
			t.Errorf("the administrator's row: %s", r.raw)
		}

		// Not verified: the new address must confirm before signing in.
		want(t, "move, unverified", e.admin("POST", path, map[string]any{"email": "again@example.org"}), 204, "")
		if u := e.user("again@example.org"); u.EmailVerified || u.AccountStatus != authd.StatusInactive {
			t.Errorf("an unverified move: %+v, want unverified and inactive until the link", u)
		}
		if e.active(access) {
			t.Error("a session outlived the second change")
		}
		want(t, "login before the link", e.do("POST", "/v1/auth/login",
			map[string]string{"email": "again@example.org", "password": goodPassword}), 403, "")
		link := tokenOf(t, e.mail.last(t, authd.MailVerifyEmail, "again@example.org"))
		want(t, "the verification link", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": link}), 200, "")
		e.login("again@example.org", goodPassword)

		// An address never verified hears nothing of the move; the account
		// moved verified becomes active.
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "typo@example.org",
			"password": goodPassword, "consent": true}), 202, "")
		typo := e.user("typo@example.org")
		want(t, "move the unverified account", e.admin("POST", "/v1/admin/users/"+typo.ID.String()+"/email",
			map[string]any{"email": "right@example.org", "verified": true}), 204, "")
		if u := e.user("right@example.org"); !u.EmailVerified || u.AccountStatus != authd.StatusActive {
			t.Errorf("the unverified account moved verified: %+v", u)
		}
		e.clock.Advance(time.Hour)
		if n := e.mail.count(authd.MailEmailChangeNotice, "typo@example.org"); n != 0 {
			t.Errorf("%d notices to an address never verified", n)
		}
		e.login("right@example.org", goodPassword)
	})
}

// TestAdminSetsEmailRacesRegistration: an address registered after the
// administrator's check meets the unique index: 409, nothing moved.
// TestAdminEmailChangeRowSaysWhoMovedIt: the email_changed row an
// administrator's move writes under the user says that support moved the
// account (by_administrator) and how many sessions ended, with no client
// (the administrator's is on their own admin_action row): the user's log
// tells a move by support from one of their own.
func TestAdminEmailChangeRowSaysWhoMovedIt(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("moved@example.org", goodPassword)
		e.login("moved@example.org", goodPassword)
		id := e.user("moved@example.org").ID
		want(t, "move", e.admin("POST", "/v1/admin/users/"+id.String()+"/email",
			map[string]any{"email": "moved-by-support@example.org", "verified": true}, from("192.0.2.77")...), 204, "")
		rows, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: id,
			EventType: authd.EventEmailChanged, Limit: authd.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].Result != authd.ResultSuccess || rows[0].AdditionalContext["by_administrator"] != true ||
			rows[0].AdditionalContext["sessions_revoked"] != float64(1) || rows[0].IPAddress != "" || rows[0].UserAgent != "" {
			t.Errorf("the user's email_changed rows: %+v; want one success, by_administrator, 1 session revoked, no client",
				rows)
		}
	})
}

func TestAdminSetsEmailRacesRegistration(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, blindStore{open(t)})
		e.registerVerified("first@example.org", goodPassword)
		e.registerVerified("second@example.org", goodPassword)
		access, _ := e.login("first@example.org", goodPassword)
		id := e.user("first@example.org").ID
		want(t, "move to a taken address", e.admin("POST", "/v1/admin/users/"+id.String()+"/email",
			map[string]any{"email": "second@example.org", "verified": true}), 409, "conflict")
		if u := e.user("first@example.org"); u.ID != id || !e.active(access) {
			t.Errorf("the refused move changed the account: %+v", u)
		}
	})
}

// orderedGate holds, once armed, each password check until the test
// releases it by its order of arrival.
type orderedGate struct {
	authd.Passwords
	armed   atomic.Bool
	mu      sync.Mutex
	waiters []chan struct{}
	entered chan struct{}
}

func (g *orderedGate) Verify(ctx context.Context, pw, hash string) (bool, bool, error) {
	if g.armed.Load() {
		ch := make(chan struct{})
		g.mu.Lock()
		g.waiters = append(g.waiters, ch)
		g.mu.Unlock()
		g.entered <- struct{}{}
		<-ch
	}
	return g.Passwords.Verify(ctx, pw, hash)
}

func (g *orderedGate) release(i int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.waiters[i] != nil {
		close(g.waiters[i])
		g.waiters[i] = nil
	}
}

// releaseAll lets every held check go (a failed test must not leave its
// server waiting on one).
func (g *orderedGate) releaseAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, ch := range g.waiters {
		if ch != nil {
			close(ch)
			g.waiters[i] = nil
		}
	}
}

// TestEmailChangeLinkLastAttemptIsItsOwn: whether an attempt is the link's
// last is told by its own number, not by the count that checks in flight
// raise: the fourth attempt's wrong code, answered while the fifth is being
// checked, does not void the link, and the fifth moves the account.
func TestEmailChangeLinkLastAttemptIsItsOwn(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		g := &orderedGate{entered: make(chan struct{}, 4)}
		e := newEnv(t, open(t), withPasswords(func(p authd.Passwords) authd.Passwords { g.Passwords = p; return g }))
		const email = "inflight@example.org"
		access, secret, _ := e.mfaUser(email)
		want(t, "request", e.do("POST", "/v1/users/me/email", map[string]string{"new_email": "inflight@example.net",
			"password": goodPassword, "code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 202, "")
		link := e.changeLink("inflight@example.net")
		e.clock.Advance(time.Minute)
		follow := func(password, code string) response {
			return e.do("POST", "/v1/auth/verify-email", map[string]string{"token": link, "password": password, "code": code})
		}
		for range 3 {
			want(t, "a wrong password", follow("not the password at all", "abcde-fghij"), 401, "invalid_credentials")
		}
		g.armed.Store(true)
		t.Cleanup(g.releaseAll)
		fourth, fifth := make(chan response, 1), make(chan response, 1)
		go func() { fourth <- follow(goodPassword, e.wrongCode(secret)) }()
		<-g.entered
		go func() { fifth <- follow(goodPassword, totpAt(t, secret, e.clock.Now())) }()
		<-g.entered
		g.release(0)
		want(t, "the fourth attempt's wrong code", <-fourth, 401, "invalid_credentials")
		g.release(1)
		want(t, "the fifth attempt", <-fifth, 200, "")
		e.user("inflight@example.net")
	})
}

// TestEmailChangeNewerRequestVoidsAnUnmailedOne: a newer request voids the
// older one's link at once, even when its own link is never mailed (the
// new address past its mail budget): the minting of a newer link must not
// be all that kills the older, or the account could still be moved to an
// address its owner thought better of.
func TestEmailChangeNewerRequestVoidsAnUnmailedOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withRateLimit())
	const email = "second-thoughts@example.org"
	e.registerVerified(email, goodPassword)
	access, _ := e.login(email, goodPassword)
	id := e.user(email).ID
	want(t, "first request", e.changeEmail(access, "first@example.net", goodPassword), 202, "")
	link := e.changeLink("first@example.net")
	for range 3 {
		want(t, "forgot for an address", e.do("POST", "/v1/auth/password/forgot",
			map[string]string{"email": "spent@example.net"}), 202, "")
	}
	want(t, "second request, past its address's budget", e.changeEmail(access, "spent@example.net", goodPassword), 202, "")
	if n := e.mail.count(authd.MailEmailChange, "spent@example.net"); n != 0 {
		t.Fatalf("%d links past the address's mail budget", n)
	}
	want(t, "the first link after a second request", e.follow(link, goodPassword), 400, "invalid_token")
	if u := e.user(email); u.ID != id {
		t.Error("the older link moved the account")
	}
}

// TestAdministratorsLockVoidsWhatWasAskedBefore: an administrator's lock
// ends what was asked for before it, by the intruder it shuts out perhaps:
// an address change's link, followed after the unlock with the password,
// moves nothing, and a reset mail still queued at the lock is never sent.
func TestAdministratorsLockVoidsWhatWasAskedBefore(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email, to = "before.lock@example.org", "intruder@example.net"
		_, link := e.pendingChange(email, to)
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		path := "/v1/admin/users/" + e.user(email).ID.String()
		want(t, "lock", e.admin("POST", path+"/lock", map[string]string{}), 204, "")
		want(t, "unlock", e.admin("POST", path+"/unlock", nil), 204, "")
		want(t, "the change's link after the unlock", e.follow(link, goodPassword), 400, "invalid_token")
		if u := e.user(email); u.Email != email {
			t.Errorf("the account moved to %s; want it kept at %s", u.Email, email)
		}
		if n := e.mail.count(authd.MailPasswordReset, email); n != 0 {
			t.Errorf("%d reset mails sent after the lock; want the queued one withdrawn", n)
		}
	})
}

// TestChangeLinkFollowerUnlogged: whoever follows a change link without
// the account's password may be the new address's owner, not the
// account's: the rows it writes on the account keep no client, so that a
// stranger asking to move to someone's address cannot read in their own
// log (or export) that someone's IP address and browser. A follower who
// proves the password is the account's owner, and is logged as such.
func TestChangeLinkFollowerUnlogged(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, link := e.pendingChange("tracker@example.org", "target@example.net")
		follow := func(pw, ip, agent string) response {
			return e.do("POST", "/v1/auth/verify-email", map[string]string{"token": link, "password": pw},
				"X-Forwarded-For", ip, "User-Agent", agent)
		}
		const guesses = 4 // the fifth voids the link
		for range guesses {
			want(t, "the target's guess", follow("a guess of the target 1", "192.0.2.77", "TargetBrowser/1.0"),
				401, "invalid_credentials")
		}
		for _, path := range []string{"/v1/users/me/security-log", "/v1/users/me/export"} {
			r := e.do("GET", path, nil, bearer(access)...)
			want(t, path, r, 200, "")
			if strings.Contains(r.raw, "192.0.2.77") || strings.Contains(r.raw, "TargetBrowser") {
				t.Errorf("%s shows the link follower's client: %s", path, r.raw)
			}
		}
		if n := e.eventCount("tracker@example.org", "email_changed/failure"); n != guesses {
			t.Errorf("%d refused follows logged, want %d", n, guesses)
		}

		_, link = e.pendingChange("mover@example.org", "moved@example.net")
		want(t, "the owner's follow", follow(goodPassword, "192.0.2.78", "OwnerBrowser/1.0"), 200, "")
		logs, err := e.store.SecurityLogs(t.Context(), authd.SecurityLogFilter{UserID: e.user("moved@example.net").ID,
			EventType: authd.EventEmailChanged, Result: authd.ResultSuccess})
		if err != nil {
			t.Fatal(err)
		}
		if len(logs) != 1 || logs[0].IPAddress != "192.0.2.78" || logs[0].UserAgent != "OwnerBrowser/1.0" {
			t.Errorf("the owner's follow: rows %+v; want one with its client", logs)
		}
	})
}
