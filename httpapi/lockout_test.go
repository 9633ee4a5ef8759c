package httpapi_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
)

// TestLockout: five wrong passwords lock the account for the lockout
// duration. While it is locked every login answers 423 with Retry-After
// without checking the password, so the lock never confirms a guess, and
// the owner's sessions go on working (SPEC 6.7).
func TestLockout(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("lock@example.org", goodPassword)
		access, refresh := e.login("lock@example.org", goodPassword)
		bad := map[string]string{"email": "lock@example.org", "password": "not the password"}
		good := map[string]string{"email": "lock@example.org", "password": goodPassword}

		for i := range 4 {
			want(t, fmt.Sprintf("failure %d", i+1), e.do("POST", "/v1/auth/login", bad), 401, "invalid_credentials")
		}
		e.login("lock@example.org", goodPassword) // a success resets the counter
		if u := e.user("lock@example.org"); u.FailedLoginAttempts != 0 {
			t.Errorf("counter after success = %d", u.FailedLoginAttempts)
		}
		for i := range 5 {
			want(t, fmt.Sprintf("failure %d", i+1), e.do("POST", "/v1/auth/login", bad), 401, "invalid_credentials")
		}
		u := e.user("lock@example.org")
		if u.AccountStatus != authd.StatusLocked || u.LockReason != authd.LockBruteForce ||
			!u.AccountLockedUntil.Equal(e.clock.Now().Truncate(time.Microsecond).Add(15*time.Minute)) {
			t.Errorf("after 5 failures: status %s (%s) until %v", u.AccountStatus, u.LockReason, u.AccountLockedUntil)
		}
		if e.mail.count(authd.MailAccountLocked, "lock@example.org") != 1 {
			t.Error("no lock notice mail")
		}
		for _, body := range []map[string]string{bad, good} {
			r := e.do("POST", "/v1/auth/login", body)
			want(t, "login while locked", r, 423, "account_locked")
			if r.header.Get("Retry-After") != "900" {
				t.Errorf("Retry-After %q, want 900", r.header.Get("Retry-After"))
			}
		}
		if u := e.user("lock@example.org"); u.FailedLoginAttempts != 5 {
			t.Errorf("guesses during the lock were checked: counter %d", u.FailedLoginAttempts)
		}

		// The victim's session is untouched: its access token, introspection
		// and refresh all keep working.
		want(t, "access token while locked", e.do("GET", "/v1/users/me", nil, bearer(access)...), 200, "")
		if !e.active(access) {
			t.Error("introspection: the locked user's token is inactive")
		}
		r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
		want(t, "refresh while locked", r, 200, "")
		if !e.active(r.str("access_token")) {
			t.Error("introspection: the token refreshed during the lock is inactive")
		}

		e.clock.Advance(15*time.Minute + time.Second)
		e.login("lock@example.org", goodPassword)
		if u := e.user("lock@example.org"); u.AccountStatus != authd.StatusActive || u.FailedLoginAttempts != 0 ||
			!u.AccountLockedUntil.IsZero() || u.LockReason != "" {
			t.Errorf("after the lock ran out: %+v", u)
		}
		evs := e.events("lock@example.org")
		for _, ev := range []string{"account_locked/success", "account_unlocked/success"} {
			if !slices.Contains(evs, ev) {
				t.Errorf("no %s in %v", ev, evs)
			}
		}

		// A password reset lifts a brute-force lock at once.
		for range 5 {
			e.do("POST", "/v1/auth/login", bad)
		}
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "lock@example.org"}), 202, "")
		reset := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, "lock@example.org"))
		want(t, "reset", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": reset, "new_password": "a reopening passphrase"}), 204, "")
		e.login("lock@example.org", "a reopening passphrase")
	})
}

// TestLockoutSaysNothingAboutExistence: an email without an account fails
// and locks exactly like one with an account, so a 423 (and its
// Retry-After) reveals nothing. So does an account an administrator
// locked: it tells its lock only to the right password (it answered 423
// at the first guess, which told anyone the address had a barred account,
// and when the ban ends).
func TestLockoutSaysNothingAboutExistence(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("real@example.org", goodPassword)
		e.registerVerified("barred@example.org", goodPassword)
		barredUntil := e.clock.Now().Add(30 * 24 * time.Hour)
		want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+e.user("barred@example.org").ID.String()+"/lock",
			map[string]any{"until": barredUntil.Format(time.RFC3339)}), 204, "")
		answers := map[string][]string{}
		for _, email := range []string{"real@example.org", "ghost@example.org", "barred@example.org"} {
			for i := range 7 {
				r := e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": "not the password"})
				answers[email] = append(answers[email], fmt.Sprintf("%d %s %s", r.status, r.code(), r.header.Get("Retry-After")))
				if i == 5 {
					e.clock.Advance(time.Minute) // the Retry-After counts down alike
				}
			}
		}
		for _, email := range []string{"ghost@example.org", "barred@example.org"} {
			if !slices.Equal(answers["real@example.org"], answers[email]) {
				t.Errorf("answers differ:\nreal %q\n%s %q", answers["real@example.org"], email, answers[email])
			}
		}
		if got := answers["ghost@example.org"][5]; got != "423 account_locked 900" {
			t.Errorf("6th login of an unknown email: %s, want 423 account_locked 900", got)
		}
		// The lock ends alike too.
		e.clock.Advance(15 * time.Minute)
		want(t, "unknown email after the lock", e.do("POST", "/v1/auth/login",
			map[string]string{"email": "ghost@example.org", "password": "not the password"}), 401, "invalid_credentials")
		want(t, "barred account after the lock, a wrong password", e.do("POST", "/v1/auth/login",
			map[string]string{"email": "barred@example.org", "password": "not the password"}), 401, "invalid_credentials")
		// The right password learns of the administrator's lock, and its end.
		r := e.do("POST", "/v1/auth/login", map[string]string{"email": "barred@example.org", "password": goodPassword})
		want(t, "barred account, the right password", r, 423, "account_locked")
		if got, left := r.header.Get("Retry-After"), barredUntil.Sub(e.clock.Now()); got != strconv.Itoa(int(left.Seconds())) {
			t.Errorf("barred account's Retry-After %s, want the lock's %0.f s", got, left.Seconds())
		}

		// Failures are forgotten alike a day after the last one: four, a
		// day's pause, two more lock neither.
		spaced := map[string][]int{}
		for _, email := range []string{"real2@example.org", "ghost2@example.org"} {
			if email == "real2@example.org" {
				e.registerVerified(email, goodPassword)
			}
			for i := range 6 {
				if i == 4 {
					e.clock.Advance(24 * time.Hour)
				}
				r := e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": "not the password"})
				spaced[email] = append(spaced[email], r.status)
			}
		}
		if !slices.Equal(spaced["real2@example.org"], spaced["ghost2@example.org"]) || slices.Contains(spaced["real2@example.org"], 423) {
			t.Errorf("failures spaced by a day: real %v, unknown %v; want 401s alike", spaced["real2@example.org"], spaced["ghost2@example.org"])
		}
	})
}

// TestBarredAccountsGuessesLockOnTheAccount: the wrong passwords given
// for an account an administrator locked count on the account, as any
// account's do, so another instance (here a second service on the same
// database, with its own memory) refuses the next guess, and then the
// right password, without telling the lock's end: the password stays
// unconfirmed. Counted in each instance's memory, as an unknown email's
// failures are, each instance allowed its own guesses and told the right
// one apart.
func TestBarredAccountsGuessesLockOnTheAccount(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	e := newEnv(t, store)
	other := newEnv(t, store)
	e.registerVerified("guessed@example.org", goodPassword)
	until := e.clock.Now().Add(30 * 24 * time.Hour)
	want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+e.user("guessed@example.org").ID.String()+"/lock",
		map[string]any{"until": until.Format(time.RFC3339)}), 204, "")
	login := func(e *env, pw string) response {
		return e.do("POST", "/v1/auth/login", map[string]string{"email": "guessed@example.org", "password": pw})
	}
	for range 5 {
		want(t, "a wrong guess", login(e, "not the password"), 401, "invalid_credentials")
	}
	for name, pw := range map[string]string{"a wrong guess": "not the password either", "the right password": goodPassword} {
		r := login(other, pw)
		want(t, name+" on another instance", r, 423, "account_locked")
		if r.header.Get("Retry-After") != "900" {
			t.Errorf("%s on another instance: Retry-After %s, want the guesses' lock, 900", name, r.header.Get("Retry-After"))
		}
	}
	// Once the guesses' lock has run out, the right password learns of the
	// administrator's.
	e.clock.Advance(15 * time.Minute)
	other.clock.Advance(15 * time.Minute)
	r := login(other, goodPassword)
	want(t, "the right password after the guesses' lock", r, 423, "account_locked")
	if got, left := r.header.Get("Retry-After"), until.Sub(other.clock.Now()); got != strconv.Itoa(int(left.Seconds())) {
		t.Errorf("Retry-After %s, want the administrator's lock's %0.f s", got, left.Seconds())
	}
	u := e.user("guessed@example.org")
	if !u.LockedByAdmin(e.clock.Now()) || u.LockReason != authd.LockAdmin {
		t.Errorf("the administrator's lock after the guesses: %s %s until %v", u.AccountStatus, u.LockReason, u.AccountLockedUntil)
	}
	// The administrator reads that someone holds the password.
	logs, err := store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: u.ID, Limit: 1})
	if err != nil || len(logs) != 1 || !strings.Contains(logs[0].FailureReason, "password was right") {
		t.Errorf("the last login's row: %+v, %v; want one saying the password was right", logs, err)
	}
}

// TestAdminLockRunningOutKeepsTheGuessesLock: an administrator's timed
// lock runs out while the wrong passwords guessed under it still lock the
// account. Logins are refused, unchecked, for the rest of those guesses'
// lock; the sweep makes it the brute-force lock it is (account_locked with
// no client, no account_unlocked) and the owner is mailed the lock notice.
// The end of the administrator's lock opened the account to a fresh count
// (and the right password signed in) before.
func TestAdminLockRunningOutKeepsTheGuessesLock(t *testing.T) {
	t.Parallel()
	for _, sweep := range []bool{false, true} {
		t.Run(fmt.Sprintf("sweep=%v", sweep), func(t *testing.T) {
			var checks atomic.Int32
			e := newEnv(t, openSQLite(t), withPasswords(func(p authd.Passwords) authd.Passwords {
				return beforeCheck{p, func() { checks.Add(1) }}
			}))
			const email = "outlasted@example.org"
			e.registerVerified(email, goodPassword)
			id := e.user(email).ID
			want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+id.String()+"/lock",
				map[string]any{"until": e.clock.Now().Add(10 * time.Minute).Format(time.RFC3339)}), 204, "")
			login := func(pw string) response {
				return e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": pw})
			}
			for range 5 {
				want(t, "a wrong guess", login("not the password"), 401, "invalid_credentials")
			}
			guessed := e.clock.Now()
			e.clock.Advance(11 * time.Minute) // the administrator's lock is over, the guesses' is not
			if sweep {
				if n, err := e.svc.UnlockExpired(context.Background()); n != 0 || err != nil {
					t.Fatalf("the sweep lifted %d locks (%v), want none: the guesses' lock goes on", n, err)
				}
				u := e.user(email)
				if u.AccountStatus != authd.StatusLocked || u.LockReason != authd.LockBruteForce ||
					!u.AccountLockedUntil.Equal(guessed.Add(15*time.Minute)) {
					t.Errorf("account after the sweep: %s %s until %v, want a brute-force lock until %v",
						u.AccountStatus, u.LockReason, u.AccountLockedUntil, guessed.Add(15*time.Minute))
				}
				logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: id, Limit: 1})
				if err != nil || len(logs) != 1 || logs[0].EventType != authd.EventAccountLocked || logs[0].IPAddress != "" {
					t.Errorf("the sweep's row: %+v, %v; want account_locked with no client", logs, err)
				}
				if n := e.mail.count(authd.MailAccountLocked, email); n != 1 {
					t.Errorf("%d lock notices, want 1", n)
				}
			}
			before := checks.Load()
			r := login(goodPassword)
			want(t, "the right password once the administrator's lock is over", r, 423, "account_locked")
			if got := r.header.Get("Retry-After"); got != "240" {
				t.Errorf("Retry-After %s, want the rest of the guesses' lock, 240", got)
			}
			if n := checks.Load() - before; n != 0 {
				t.Errorf("%d password checks while the guesses' lock lasts, want none", n)
			}
			if slices.Contains(e.events(email), "account_unlocked/success") {
				t.Errorf("events %v: the lock was lifted", e.events(email))
			}
			e.clock.Advance(4 * time.Minute)
			want(t, "the right password once the guesses' lock is over", login(goodPassword), 200, "")
		})
	}
}

// TestUnlockWhileABarredLoginHashes: an administrator unlocks an account
// while a login with its right password is being checked. The login does
// not answer with the lock that is gone (423), but asks for a retry, which
// signs in.
func TestUnlockWhileABarredLoginHashes(t *testing.T) {
	t.Parallel()
	g, gate := withGate()
	e := newEnv(t, openSQLite(t), gate)
	const email = "freed@example.org"
	e.registerVerified(email, goodPassword) // hashes, checks nothing
	id := e.user(email).ID.String()
	want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+id+"/lock", nil), 204, "")
	done := make(chan response, 1)
	go func() {
		done <- e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": goodPassword})
	}()
	<-g.entered
	want(t, "unlock", e.admin("POST", "/v1/admin/users/"+id+"/unlock", nil), 204, "")
	g.release <- struct{}{}
	want(t, "the login that hashed across the unlock", <-done, 401, "invalid_credentials")
	go func() { <-g.entered; g.release <- struct{}{} }()
	want(t, "the retry", e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": goodPassword}), 200, "")
}

// TestAdminLockWhileALoginHashes: an administrator locks an account while
// a login to it is checking its password. A wrong password is answered as
// for any account (401, counted) and only the right one learns of the lock
// (423): the login's transaction, which finds the lock, keeps the rule of
// a barred login. It answered 423 to the wrong password too.
func TestAdminLockWhileALoginHashes(t *testing.T) {
	t.Parallel()
	g, gate := withGate()
	e := newEnv(t, openSQLite(t), gate)
	const email = "caught@example.org"
	e.registerVerified(email, goodPassword) // hashes, checks nothing
	id := e.user(email).ID.String()
	for i, c := range []struct {
		password string
		status   int
		code     string
	}{{"not the password", 401, "invalid_credentials"}, {goodPassword, 423, "account_locked"}} {
		if i > 0 {
			want(t, "unlock", e.admin("POST", "/v1/admin/users/"+id+"/unlock", nil), 204, "")
		}
		done := make(chan response, 1)
		go func() {
			done <- e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": c.password})
		}()
		<-g.entered // the account was not locked when the login read it
		want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+id+"/lock", nil), 204, "")
		g.release <- struct{}{}
		want(t, fmt.Sprintf("password %d, the lock committed while it hashed", i+1), <-done, c.status, c.code)
	}
}

// TestAdminLockOutlivesReset: a password reset lifts only a brute-force
// lock. An administrator's lock gets no reset mail, voids a link mailed
// before it, withdraws one asked for before it and not yet sent (which
// mailed a fresh link after the unlock), and keeps logins at 423 until an
// administrator unlocks.
func TestAdminLockOutlivesReset(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("held@example.org", goodPassword)
		access, _ := e.login("held@example.org", goodPassword)
		id := e.user("held@example.org").ID.String()
		forgot := func() response {
			return e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "held@example.org"})
		}
		want(t, "forgot before the lock", forgot(), 202, "")
		early := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, "held@example.org"))
		// A reset mail waiting for its retry when the lock comes.
		if err := e.store.EnqueueMail(context.Background(), &authd.OutboxMail{ID: authd.NewID(), Kind: authd.MailPasswordReset,
			UserID: e.user("held@example.org").ID, To: "held@example.org", CreatedAt: e.clock.Now(),
			NextAttemptAt: e.clock.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}

		want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+id+"/lock", map[string]any{}), 204, "")
		if u := e.user("held@example.org"); u.LockReason != authd.LockAdmin {
			t.Errorf("lock reason %q, want admin", u.LockReason)
		}
		if e.active(access) {
			t.Error("an administrator's lock left the session's token active")
		}
		want(t, "login while admin-locked", e.do("POST", "/v1/auth/login",
			map[string]string{"email": "held@example.org", "password": goodPassword}), 423, "account_locked")

		mails := e.mail.count(authd.MailPasswordReset, "held@example.org")
		want(t, "forgot while admin-locked", forgot(), 202, "")
		if n := e.mail.count(authd.MailPasswordReset, "held@example.org"); n != mails {
			t.Errorf("an admin-locked account got a reset mail (%d, was %d)", n, mails)
		}
		want(t, "reset with a link from before the lock", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": early, "new_password": "a takeover passphrase"}), 400, "invalid_token")
		u := e.user("held@example.org")
		if u.AccountStatus != authd.StatusLocked || u.LockReason != authd.LockAdmin {
			t.Errorf("after the reset attempts: %s (%s), want still locked by the administrator", u.AccountStatus, u.LockReason)
		}
		want(t, "login still refused", e.do("POST", "/v1/auth/login",
			map[string]string{"email": "held@example.org", "password": goodPassword}), 423, "account_locked")

		want(t, "admin unlock", e.admin("POST", "/v1/admin/users/"+id+"/unlock", nil), 204, "")
		e.clock.Advance(time.Minute) // the waiting mail's retry is due
		if n := e.mail.count(authd.MailPasswordReset, "held@example.org"); n != mails {
			t.Errorf("reset mails after the unlock: %d sent, want none (asked for before the lock)", n-mails)
		}
		e.login("held@example.org", goodPassword)
	})
}

// TestAdminLockVoidsResetLinks: a reset link mailed before an
// administrator's lock is void, not merely refused while the lock lasts:
// never tried during the lock, it still lets no one set the password once
// the administrator lifts the lock (the link may be the intruder's who
// caused it).
func TestAdminLockVoidsResetLinks(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("relinked@example.org", goodPassword)
		id := e.user("relinked@example.org").ID.String()
		want(t, "forgot before the lock", e.do("POST", "/v1/auth/password/forgot",
			map[string]string{"email": "relinked@example.org"}), 202, "")
		early := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, "relinked@example.org"))
		want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+id+"/lock", nil), 204, "")
		want(t, "admin unlock", e.admin("POST", "/v1/admin/users/"+id+"/unlock", nil), 204, "")
		want(t, "reset after the unlock with a link from before the lock", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": early, "new_password": "a takeover passphrase"}), 400, "invalid_token")
		e.login("relinked@example.org", goodPassword) // the password is the owner's still
	})
}

// TestForgotPasswordWhileAdminLocked: forgot-password for an account an
// administrator locked queues no reset mail (the sender's safeguard is not
// the only thing between the lock and a link) and logs the request as a
// failure saying why, not as a reset mailed.
func TestForgotPasswordWhileAdminLocked(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("barred@example.org", goodPassword)
		u := e.user("barred@example.org")
		want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+u.ID.String()+"/lock", nil), 204, "")
		want(t, "forgot while admin-locked", e.do("POST", "/v1/auth/password/forgot",
			map[string]string{"email": "barred@example.org"}), 202, "")
		pending, err := e.store.Mails(context.Background(), authd.MailFilter{Limit: authd.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range pending {
			if m.UserID == u.ID && m.Kind == authd.MailPasswordReset {
				t.Errorf("a reset mail was queued for an account an administrator locked: %+v", m)
			}
		}
		e.wantRefusalLogged("barred@example.org", authd.EventPasswordResetRequested, "account locked by an administrator")
	})
}

// TestResetRefusedUnderALockWithoutAReason: a lock that does not say it
// came from brute force (written by hand, or by an older version) counts
// as an administrator's: a live reset link does not lift it nor set the
// password, and the refusal is logged saying why.
func TestResetRefusedUnderALockWithoutAReason(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("hand.locked@example.org", goodPassword)
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "hand.locked@example.org"}), 202, "")
		tok := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, "hand.locked@example.org"))
		u := e.user("hand.locked@example.org")
		u.AccountStatus, u.LockReason, u.AccountLockedUntil = authd.StatusLocked, "", time.Time{}
		if err := e.store.UpdateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		want(t, "reset under the lock", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": tok, "new_password": "a takeover passphrase"}), 400, "invalid_token")
		if after := e.user("hand.locked@example.org"); after.AccountStatus != authd.StatusLocked || after.PasswordHash != u.PasswordHash {
			t.Errorf("after the reset: %s, password changed %v; want still locked, the password unchanged",
				after.AccountStatus, after.PasswordHash != u.PasswordHash)
		}
		e.wantRefusalLogged("hand.locked@example.org", authd.EventPasswordResetCompleted, "account locked by an administrator")
	})
}

// TestResetAfterAnAdministratorsLockRanOut: a reset once an
// administrator's timed lock has run out lifts what is left of it, as it
// lifts a brute-force lock: the account is active again and the unlock is
// logged, not left marked locked until its next sign-in.
func TestResetAfterAnAdministratorsLockRanOut(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "lapsed@example.org"
		e.registerVerified(email, goodPassword)
		want(t, "admin lock for an hour", e.admin("POST", "/v1/admin/users/"+e.user(email).ID.String()+"/lock",
			map[string]string{"until": e.clock.Now().Add(time.Hour).Format(time.RFC3339Nano)}), 204, "")
		e.clock.Advance(time.Hour)
		want(t, "forgot once the lock ran out", e.do("POST", "/v1/auth/password/forgot",
			map[string]string{"email": email}), 202, "")
		tok := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
		want(t, "reset", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": tok, "new_password": "a reset passphrase"}), 204, "")
		if u := e.user(email); u.AccountStatus != authd.StatusActive || u.LockReason != "" || !u.AccountLockedUntil.IsZero() {
			t.Errorf("after the reset: %s (%q, until %v), want active with no lock left", u.AccountStatus, u.LockReason,
				u.AccountLockedUntil)
		}
		if n := e.eventCount(email, "account_unlocked/success"); n != 1 {
			t.Errorf("%d account_unlocked rows after the reset, want 1", n)
		}
	})
}

// TestReauthenticationIsLimited: checking the current password (change,
// erasure) counts toward the lock and is limited per user, so a stolen
// access token cannot guess the password.
func TestReauthenticationIsLimited(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		e.registerVerified("victim@example.org", goodPassword)
		thief, _ := e.login("victim@example.org", goodPassword)
		owner, _ := e.login("victim@example.org", goodPassword)
		change := func(current string) response {
			return e.do("POST", "/v1/auth/password/change",
				map[string]string{"current_password": current, "new_password": "the thief's passphrase"}, bearer(thief)...)
		}
		for i := range 4 {
			want(t, fmt.Sprintf("wrong current %d", i+1), change("guess number one"), 401, "invalid_credentials")
		}
		want(t, "wrong password at erasure", e.do("DELETE", "/v1/users/me", map[string]string{"password": "guess two"},
			bearer(thief)...), 401, "invalid_credentials")
		u := e.user("victim@example.org")
		if u.AccountStatus != authd.StatusLocked || u.LockReason != authd.LockBruteForce {
			t.Fatalf("after 5 wrong re-authentications: %s (%s), want a brute-force lock", u.AccountStatus, u.LockReason)
		}
		// Locked: not even the right password is checked, and nothing changed.
		want(t, "right current while locked", change(goodPassword), 423, "account_locked")
		if e.user("victim@example.org").PasswordHash != u.PasswordHash {
			t.Fatal("the password changed during the lock")
		}
		if !e.active(owner) {
			t.Error("the owner's other session ended")
		}
		evs := e.events("victim@example.org")
		for _, ev := range []string{"password_changed/failure", "account_deleted/failure", "account_locked/success"} {
			if !slices.Contains(evs, ev) {
				t.Errorf("no %s in %v", ev, evs)
			}
		}

		// Per user: 10 checks a minute, counted before any hashing (a high
		// threshold keeps the lock out of the way).
		f := newEnv(t, open(t), withRateLimit(), withConfig(func(c *authd.Config) { c.LockoutThreshold = 100 }))
		f.registerVerified("slow@example.org", goodPassword)
		tok, _ := f.login("slow@example.org", goodPassword)
		change = func(current string) response {
			return f.do("POST", "/v1/auth/password/change",
				map[string]string{"current_password": current, "new_password": "the thief's passphrase"}, bearer(tok)...)
		}
		for i := range 10 {
			want(t, fmt.Sprintf("check %d", i+1), change("a wrong guess"), 401, "invalid_credentials")
		}
		want(t, "11th check in a minute, right password", change(goodPassword), 429, "rate_limited")
		// Another user's budget is their own: one account's checks do not
		// hold up everyone else's.
		f.registerVerified("other@example.org", goodPassword)
		other, _ := f.login("other@example.org", goodPassword)
		want(t, "another user's check in that minute", f.do("POST", "/v1/auth/password/change",
			map[string]string{"current_password": goodPassword, "new_password": "a fresh passphrase of theirs"},
			bearer(other)...), 204, "")
		f.clock.Advance(time.Minute)
		want(t, "after the window", change(goodPassword), 204, "")
	})
}

// beforeCheck runs before each password check (Verify or VerifyDummy).
type beforeCheck struct {
	authd.Passwords
	before func()
}

func (p beforeCheck) Verify(ctx context.Context, pw, hash string) (bool, bool, error) {
	p.before()
	return p.Passwords.Verify(ctx, pw, hash)
}

func (p beforeCheck) VerifyDummy(ctx context.Context, pw string) error {
	p.before()
	return p.Passwords.VerifyDummy(ctx, pw)
}

// holdOnce holds the next password check once armed, until released, so
// that a test can lock an account while a request hashes.
type holdOnce struct {
	mu               sync.Mutex
	armed            bool
	entered, release chan struct{}
}

// holdingOnce wraps p with a holdOnce, which *hold is set to.
func holdingOnce(hold **holdOnce) option {
	return withPasswords(func(p authd.Passwords) authd.Passwords {
		*hold = &holdOnce{entered: make(chan struct{}), release: make(chan struct{})}
		return beforeCheck{p, (*hold).wait}
	})
}

func (h *holdOnce) arm() { h.mu.Lock(); h.armed = true; h.mu.Unlock() }

func (h *holdOnce) wait() {
	h.mu.Lock()
	held := h.armed
	h.armed = false
	h.mu.Unlock()
	if held {
		h.entered <- struct{}{}
		<-h.release
	}
}

// TestLockDuringHashingAnswersAlike: a login that was hashing when another
// request locked the account answers 423, right or wrong, with an account or
// without one, so parallel guesses learn nothing.
func TestLockDuringHashingAnswersAlike(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		var hold *holdOnce
		e := newEnv(t, open(t), holdingOnce(&hold))
		e.registerVerified("real@example.org", goodPassword)
		for _, tc := range []struct{ email, password string }{
			{"real@example.org", goodPassword}, {"real@example.org", "a wrong guess"}, {"ghost@example.org", "a wrong guess"},
		} {
			login := func(pw string) response {
				return e.do("POST", "/v1/auth/login", map[string]string{"email": tc.email, "password": pw})
			}
			for range 4 {
				want(t, tc.email+": failure", login("not the password"), 401, "invalid_credentials")
			}
			hold.arm()
			done := make(chan response)
			go func() { done <- login(tc.password) }()
			<-hold.entered // past the lock check, hashing
			want(t, tc.email+": the locking failure", login("not the password"), 401, "invalid_credentials")
			close(hold.release)
			r := <-done
			want(t, tc.email+": the login that hashed across the lock", r, 423, "account_locked")
			if r.header.Get("Retry-After") == "" {
				t.Errorf("%s: 423 without Retry-After", tc.email)
			}
			hold.release = make(chan struct{})
			e.clock.Advance(15*time.Minute + time.Second) // the next case starts unlocked
			if tc.email == "real@example.org" {
				e.login("real@example.org", goodPassword) // and with a clean counter
			}
		}
	})
}

// TestExpiredLocksLiftedOnTheirOwn: a timed lock that has run out is lifted
// by the sweep (SPEC 6.7, "unlocks on its own"), not only at the owner's
// next attempt; an administrator's lock and a running one stay.
func TestExpiredLocksLiftedOnTheirOwn(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		for _, email := range []string{"timed@example.org", "admin@example.org"} {
			e.registerVerified(email, goodPassword)
		}
		for range 5 {
			e.do("POST", "/v1/auth/login", map[string]string{"email": "timed@example.org", "password": "not the password"})
		}
		want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+e.user("admin@example.org").ID.String()+"/lock", map[string]any{}), 204, "")
		ctx := context.Background()
		if n, err := e.svc.UnlockExpired(ctx); n != 0 || err != nil {
			t.Errorf("a sweep while the lock runs: lifted %d, %v; want none", n, err)
		}
		e.clock.Advance(15*time.Minute + time.Second)
		if n, err := e.svc.UnlockExpired(ctx); n != 1 || err != nil {
			t.Errorf("a sweep after the lock ran out: lifted %d, %v; want the timed one", n, err)
		}
		if u := e.user("timed@example.org"); u.AccountStatus != authd.StatusActive || u.FailedLoginAttempts != 0 ||
			!slices.Contains(e.events("timed@example.org"), "account_unlocked/success") {
			t.Errorf("after the sweep: status %s, %d failures, events %v; want active, 0, account_unlocked",
				u.AccountStatus, u.FailedLoginAttempts, e.events("timed@example.org"))
		}
		if u := e.user("admin@example.org"); u.AccountStatus != authd.StatusLocked {
			t.Errorf("an administrator's lock after the sweep: %s, want locked", u.AccountStatus)
		}
		if n, _ := e.svc.UnlockExpired(ctx); n != 0 {
			t.Errorf("a second sweep lifted %d, want none", n)
		}
	})
}

// TestHangingUpCountsAlike: a client that hangs up while its password is
// checked still has the failure counted and logged, so that hanging up can
// neither dodge the lockout nor make an account answer unlike an unknown
// email; the same for the current password of a password change.
func TestHangingUpCountsAlike(t *testing.T) {
	t.Parallel()
	var hangUp atomic.Pointer[context.CancelFunc] // the client hangs up (its request's context cancelled) during the check
	e := newEnv(t, openSQLite(t), withPasswords(func(p authd.Passwords) authd.Passwords {
		return beforeCheck{p, func() {
			if cancel := hangUp.Load(); cancel != nil {
				(*cancel)()
			}
		}}
	}))
	e.registerVerified("hang@example.org", goodPassword)
	access, _ := e.login("hang@example.org", goodPassword)
	a, err := e.svc.Authenticate(context.Background(), access)
	if err != nil {
		t.Fatal(err)
	}
	guess := func(email string) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		hangUp.Store(&cancel)
		_, err := e.svc.Login(ctx, authd.Client{IP: "192.0.2.7"}, email, "a wrong guess", "")
		return err
	}
	for i := range 5 {
		for _, email := range []string{"hang@example.org", "nobody@example.org"} {
			if err := guess(email); authd.ErrorCode(err) != authd.EInvalidCredentials {
				t.Fatalf("%s, guess %d with the client gone: %v, want invalid credentials", email, i+1, err)
			}
		}
	}
	for _, email := range []string{"hang@example.org", "nobody@example.org"} {
		if err := guess(email); authd.ErrorCode(err) != authd.EAccountLocked {
			t.Errorf("%s after five guesses whose clients hung up: %v, want locked", email, err)
		}
	}
	e.clock.Advance(15*time.Minute + time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hangUp.Store(&cancel)
	err = e.svc.ChangePassword(ctx, authd.Client{}, a, "a wrong guess", "another good passphrase 1", authd.StepUp{})
	if authd.ErrorCode(err) != authd.EInvalidCredentials || e.user("hang@example.org").FailedLoginAttempts != 1 {
		t.Errorf("a wrong current password with the client gone: %v, %d failures; want invalid credentials, counted",
			err, e.user("hang@example.org").FailedLoginAttempts)
	}
}

// failingOnce is a store whose first transaction fails.
type failingOnce struct {
	authd.Store
	failed atomic.Bool
}

func (s *failingOnce) InTx(ctx context.Context, fn func(tx authd.Queries) error) error {
	if s.failed.CompareAndSwap(false, true) {
		return authd.Errorf(authd.EUnavailable, "the database is unavailable")
	}
	return s.Store.InTx(ctx, fn)
}

// TestUnlockSweepGoesOn: an account the sweep cannot unlock does not hold
// up the others (nor, being the oldest, every later sweep).
func TestUnlockSweepGoesOn(t *testing.T) {
	t.Parallel()
	store := &failingOnce{Store: openSQLite(t)}
	store.failed.Store(true) // set-up first
	e := newEnv(t, store)
	for _, email := range []string{"first@example.org", "second@example.org"} {
		e.registerVerified(email, goodPassword)
		for range 5 {
			e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": "not the password"})
		}
		e.clock.Advance(time.Second)
	}
	e.clock.Advance(15 * time.Minute)
	store.failed.Store(false) // the sweep's first unlock fails
	n, err := e.svc.UnlockExpired(context.Background())
	if n != 1 || authd.ErrorCode(err) != authd.EUnavailable {
		t.Errorf("a sweep whose first unlock fails: lifted %d, %v; want the other lifted and the failure returned", n, err)
	}
}

// lockedBetween is a lockout store in which another guess locks every key
// right after the login has looked: LockedFor says unlocked, Fail finds it
// locked.
type lockedBetween struct{}

func (lockedBetween) LockedFor(context.Context, string) (time.Duration, error) { return 0, nil }
func (lockedBetween) Fail(context.Context, string, int, time.Duration, time.Duration) (time.Duration, bool, error) {
	return 10 * time.Minute, false, nil
}

// TestGhostLockReadWithTheFailure: for an email without an account, the
// failure is counted and the lock read in one step: a lock another guess set
// after this login last looked answers 423, as an account's transaction
// would, never a 401 a real account could not give.
func TestGhostLockReadWithTheFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withLockouts(lockedBetween{}))
	r := e.do("POST", "/v1/auth/login", map[string]string{"email": "ghost@example.org", "password": "a wrong guess"})
	want(t, "a guess counted while another locked the email", r, 423, "account_locked")
	if r.header.Get("Retry-After") != "600" {
		t.Errorf("Retry-After %q, want the lock's 600 s", r.header.Get("Retry-After"))
	}
}

// TestReauthenticationAcrossALock: a right current password whose check
// was under way when the account locked does not change the password.
func TestReauthenticationAcrossALock(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		var hold *holdOnce
		e := newEnv(t, open(t), holdingOnce(&hold))
		e.registerVerified("held@example.org", goodPassword)
		tok, _ := e.login("held@example.org", goodPassword)
		change := func(current string) response {
			return e.do("POST", "/v1/auth/password/change",
				map[string]string{"current_password": current, "new_password": "the thief's passphrase"}, bearer(tok)...)
		}
		before := e.user("held@example.org").PasswordHash
		hold.arm()
		done := make(chan response)
		go func() { done <- change(goodPassword) }()
		<-hold.entered
		for range 5 {
			want(t, "wrong current", change("a wrong guess"), 401, "invalid_credentials")
		}
		close(hold.release)
		want(t, "the right guess that hashed across the lock", <-done, 423, "account_locked")
		if e.user("held@example.org").PasswordHash != before {
			t.Error("the password changed although the account had locked")
		}
	})
}

// TestWrongReauthenticationAcrossALockAnswersAlike: a wrong current
// password whose check was under way when the account locked answers 423
// as the right one does (TestReauthenticationAcrossALock), so that parallel
// guesses at a stolen session's password cannot tell which was right; it
// counts no failure on the lock and does not move its end.
func TestWrongReauthenticationAcrossALockAnswersAlike(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		var hold *holdOnce
		e := newEnv(t, open(t), holdingOnce(&hold))
		e.registerVerified("guessed@example.org", goodPassword)
		tok, _ := e.login("guessed@example.org", goodPassword)
		change := func(current string) response {
			return e.do("POST", "/v1/auth/password/change",
				map[string]string{"current_password": current, "new_password": "the thief's passphrase"}, bearer(tok)...)
		}
		hold.arm()
		done := make(chan response)
		go func() { done <- change("the held wrong guess") }()
		<-hold.entered
		for range 5 {
			want(t, "wrong current", change("a wrong guess"), 401, "invalid_credentials")
		}
		locked := e.user("guessed@example.org")
		if locked.AccountStatus != authd.StatusLocked {
			t.Fatalf("after five wrong passwords: %s; want locked", locked.AccountStatus)
		}
		e.clock.Advance(time.Second)
		close(hold.release)
		want(t, "the wrong guess that hashed across the lock", <-done, 423, "account_locked")
		if u := e.user("guessed@example.org"); u.FailedLoginAttempts != locked.FailedLoginAttempts ||
			!u.AccountLockedUntil.Equal(locked.AccountLockedUntil) {
			t.Errorf("after the held guess: %d failures, locked until %v; want %d, until %v (nothing counted)",
				u.FailedLoginAttempts, u.AccountLockedUntil, locked.FailedLoginAttempts, locked.AccountLockedUntil)
		}
	})
}

// TestReauthenticationOfALockedAccountIsLogged: a sensitive change asked
// in a session of an account a brute-force lock holds is refused (423)
// without checking the password, and the refusal has its row (SPEC 6.10),
// a failure of the change's event saying the account is locked.
func TestReauthenticationOfALockedAccountIsLogged(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("locked.out@example.org", goodPassword)
		tok, _ := e.login("locked.out@example.org", goodPassword)
		for range 5 {
			e.do("POST", "/v1/auth/login", map[string]string{"email": "locked.out@example.org", "password": "not the password"})
		}
		u := e.user("locked.out@example.org")
		if u.AccountStatus != authd.StatusLocked {
			t.Fatalf("after five wrong passwords: %s; want locked", u.AccountStatus)
		}
		e.clock.Advance(time.Second)
		since := e.clock.Now()
		for event, r := range map[authd.EventType]response{
			authd.EventPasswordChanged: e.do("POST", "/v1/auth/password/change",
				map[string]string{"current_password": goodPassword, "new_password": "a changed passphrase"}, bearer(tok)...),
			authd.EventAccountDeleted: e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword}, bearer(tok)...),
		} {
			want(t, string(event)+" while locked", r, 423, "account_locked")
			logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: u.ID, EventType: event, Since: since})
			if err != nil {
				t.Fatal(err)
			}
			if len(logs) != 1 || logs[0].Result != authd.ResultFailure || logs[0].FailureReason != "account locked" {
				t.Errorf("%s rows %+v; want one failure, account locked", event, logs)
			}
		}
	})
}

// TestReauthenticationUnderALockSaysWhenItEnds: a sensitive change refused
// under a brute-force lock answers Retry-After with the time the lock has
// left, as a login does, not the whole lockout duration.
func TestReauthenticationUnderALockSaysWhenItEnds(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "ends.soon@example.org"
		e.registerVerified(email, goodPassword)
		tok, _ := e.login(email, goodPassword)
		e.bruteLock(email) // fifteen minutes
		e.clock.Advance(10 * time.Minute)
		r := e.do("POST", "/v1/auth/password/change",
			map[string]string{"current_password": goodPassword, "new_password": "a changed passphrase"}, bearer(tok)...)
		want(t, "a change under the lock", r, 423, "account_locked")
		if r.header.Get("Retry-After") != "300" {
			t.Errorf("Retry-After %q, want 300: the lock's five minutes left", r.header.Get("Retry-After"))
		}
	})
}

// verifyCounter counts the password checks made.
type verifyCounter struct {
	authd.Passwords
	n atomic.Int32
}

func (v *verifyCounter) Verify(ctx context.Context, password, hash string) (bool, bool, error) {
	v.n.Add(1)
	return v.Passwords.Verify(ctx, password, hash)
}

// TestReauthenticationUnderALockChecksNoPassword: while a brute-force lock
// holds the account, a sensitive change checks no password (no hash is
// spent, and none tells the right password by its timing): the right one
// and a wrong one alike are refused unchecked.
func TestReauthenticationUnderALockChecksNoPassword(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		v := &verifyCounter{}
		e := newEnv(t, open(t), withPasswords(func(p authd.Passwords) authd.Passwords { v.Passwords = p; return v }))
		const email = "unchecked@example.org"
		e.registerVerified(email, goodPassword)
		tok, _ := e.login(email, goodPassword)
		e.bruteLock(email)
		before := v.n.Load()
		for _, current := range []string{goodPassword, "a wrong guess"} {
			want(t, "a change under the lock", e.do("POST", "/v1/auth/password/change",
				map[string]string{"current_password": current, "new_password": "a changed passphrase"}, bearer(tok)...),
				423, "account_locked")
		}
		if n := v.n.Load() - before; n != 0 {
			t.Errorf("%d passwords checked under the lock, want none", n)
		}
	})
}

// TestLockUntilTheYear9999: an administrator's lock "for ever" (until
// 9999-12-31, beyond the longest time.Duration) answers logins 423 with a
// positive Retry-After (authd.RetryAfterSeconds, which the hosted pages
// use too) — the rounding up to whole seconds overflowed into a negative
// one.
func TestLockUntilTheYear9999(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("forever@example.org", goodPassword)
	id := e.user("forever@example.org").ID.String()
	want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+id+"/lock",
		map[string]any{"until": "9999-12-31T23:59:59Z"}), 204, "")
	r := e.do("POST", "/v1/auth/login", map[string]string{"email": "forever@example.org", "password": goodPassword})
	want(t, "login", r, 423, "account_locked")
	if n, err := strconv.ParseInt(r.header.Get("Retry-After"), 10, 64); err != nil || n < 60*365*24*3600 {
		t.Errorf("Retry-After %q, want decades in seconds", r.header.Get("Retry-After"))
	}
}

// TestLockNoticesSpendTheBudgetAlike: every lock a request sets spends one
// of the address's mails for the hour, whether or not the address has an
// account, the notice says the password was right (a sign-in past the
// password whose code is still awaited), or the lock is what an administrator's lock
// leaves once it runs out; so counting forgot-password answers until the
// 429 tells nothing of the account. Before, a notice sent past the budget
// spent none of it, and the end of an administrator's lock spent a second.
func TestLockNoticesSpendTheBudgetAlike(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withRateLimit())
	e.registerVerified("plain@example.org", goodPassword)
	e.mfaUser("abandoned@example.org")
	e.registerVerified("barred@example.org", goodPassword)
	want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+e.user("barred@example.org").ID.String()+"/lock",
		map[string]any{"until": e.clock.Now().Add(65 * time.Minute).Format(time.RFC3339)}), 204, "")
	e.clock.Advance(61 * time.Minute)   // the set-up's mails are out of the hour
	e.mfaLogin("abandoned@example.org") // a sign-in past the password, its code still awaited
	emails := []string{"plain@example.org", "abandoned@example.org", "barred@example.org", "nobody@example.org"}
	for _, email := range emails {
		for range 5 {
			want(t, email+": a wrong password", e.do("POST", "/v1/auth/login",
				map[string]string{"email": email, "password": "not the password"}), 401, "invalid_credentials")
		}
	}
	e.clock.Advance(5 * time.Minute) // the administrator's lock runs out under its guesses'
	if _, err := e.svc.UnlockExpired(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u := e.user("barred@example.org"); u.LockReason != authd.LockBruteForce {
		t.Fatalf("the administrator's lock left %s %s, want a brute-force lock", u.AccountStatus, u.LockReason)
	}
	if m := e.mail.last(t, authd.MailAccountLocked, "abandoned@example.org"); !m.AfterCodes {
		t.Errorf("lock notice %+v, want it to say the password was right", m)
	}
	left := map[string]int{}
	for _, email := range emails {
		for left[email] < 4 && e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}).status == 202 {
			left[email]++
		}
	}
	for _, email := range emails {
		if left[email] != left["nobody@example.org"] {
			t.Errorf("mails left for the hour %v: %s differs from an address without an account", left, email)
		}
	}
}

// TestChallengeBeforeTheLastSignIn: a sign-in past the password whose code
// is still awaited makes a lock that wrong passwords set one told as
// "your password was right" (passwordPassedSince), unless the owner has
// signed in since it was opened: the challenge was then the owner's own,
// abandoned for the sign-in that followed, and the lock is an ordinary one.
func TestChallengeBeforeTheLastSignIn(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "twice@example.org"
		_, secret, _ := e.mfaUser(email)
		wrongPasswords := func() {
			t.Helper()
			for range 5 {
				want(t, "a wrong password", e.do("POST", "/v1/auth/login",
					map[string]string{"email": email, "password": "not the password"}), 401, "invalid_credentials")
			}
			if u := e.user(email); u.AccountStatus != authd.StatusLocked {
				t.Fatalf("after five wrong passwords the account is %s, want locked", u.AccountStatus)
			}
		}

		e.mfaLogin(email) // abandoned: the owner signs in again below
		e.clock.Advance(time.Minute)
		want(t, "the owner's sign-in", e.verify(e.mfaLogin(email), "totp", totpAt(t, secret, e.clock.Now())), 200, "")
		e.clock.Advance(time.Minute) // the abandoned challenge has three minutes left
		wrongPasswords()
		if m := e.mail.last(t, authd.MailAccountLocked, email); m.AfterCodes {
			t.Errorf("the lock's notice %+v; want an ordinary one: the open challenge came before the last sign-in", m)
		}

		want(t, "unlock", e.admin("POST", "/v1/admin/users/"+e.user(email).ID.String()+"/unlock", nil), 204, "")
		e.clock.Advance(time.Minute)
		e.mfaLogin(email) // opened after the last sign-in: someone knows the password
		wrongPasswords()
		if m := e.mail.last(t, authd.MailAccountLocked, email); !m.AfterCodes {
			t.Errorf("the lock's notice %+v; want it to say the password was right", m)
		}
	})
}
