package httpapi_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// TestStepUp: for a user with a second factor, a password change and an
// erasure need a current code on top of the password (SPEC issue 9): none
// answers 403 mfa_required with the methods and before any password is
// checked; a wrong one counts toward the lock; a right TOTP or recovery code
// lets the change through. A user without a factor needs none.
func TestStepUp(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, secret, codes := e.mfaUser("up@example.org")
		change := func(code string) response {
			body := map[string]string{"current_password": goodPassword, "new_password": "another long passphrase 7"}
			if code != "" {
				body["code"] = code
			}
			return e.do("POST", "/v1/auth/password/change", body, bearer(access)...)
		}

		r := e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": "not the password",
			"new_password": "another long passphrase 7"}, bearer(access)...)
		want(t, "change without a code, with a wrong password", r, 403, "mfa_required")
		if n := e.user("up@example.org").FailedLoginAttempts; n != 0 {
			t.Errorf("failures after a refusal for the missing code: %d, want 0 (no password checked)", n)
		}
		r = change("")
		want(t, "change without a code", r, 403, "mfa_required")
		if got := r.body["methods"]; fmt.Sprint(got) != "[totp recovery_code]" {
			t.Errorf("methods %v, want [totp recovery_code]", got)
		}
		if got, wantDetail := r.str("detail"), "This change needs your second factor: send a current TOTP or recovery code as code."; got != wantDetail {
			t.Errorf("detail %q, want %q", got, wantDetail)
		}
		if r.str("mfa_token") != "" {
			t.Errorf("a step-up refusal carries an mfa_token: %s", r.raw)
		}
		want(t, "change with a code of no shape", change("12345"), 400, "validation_failed")
		want(t, "change with a wrong code", change(e.wrongCode(secret)), 401, "invalid_credentials")
		if n := e.user("up@example.org").FailedLoginAttempts; n != 1 {
			t.Errorf("failures after a wrong step-up code: %d, want 1", n)
		}
		wrongPassword := e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": "not it at all",
			"new_password": "another long passphrase 7", "code": totpAt(t, secret, e.clock.Now())}, bearer(access)...)
		want(t, "change with a right code and a wrong password", wrongPassword, 401, "invalid_credentials")
		want(t, "change with a recovery code", change(codes[0]), 204, "")
		want(t, "the recovery code again", e.do("POST", "/v1/auth/password/change", map[string]string{
			"current_password": "another long passphrase 7", "new_password": goodPassword, "code": codes[0]}, bearer(access)...),
			401, "invalid_credentials")

		e.clock.Advance(time.Minute)
		erase := func(body map[string]string) response { return e.do("DELETE", "/v1/users/me", body, bearer(access)...) }
		want(t, "erasure without a code", erase(map[string]string{"password": "another long passphrase 7"}), 403, "mfa_required")
		want(t, "erasure with a wrong code", erase(map[string]string{"password": "another long passphrase 7", "code": "abcde-fghij"}),
			401, "invalid_credentials")
		events := e.events("up@example.org") // the account is still there
		for _, ev := range []string{"password_changed/failure", "password_changed/success", "account_deleted/failure",
			"recovery_code_used/success"} {
			if !slices.Contains(events, ev) {
				t.Errorf("events %v lack %s", events, ev)
			}
		}
		want(t, "erasure with a TOTP code", erase(map[string]string{"password": "another long passphrase 7",
			"code": totpAt(t, secret, e.clock.Now())}), 204, "")
		if _, err := e.store.UserByEmail(t.Context(), "up@example.org"); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("after erasure, the address still finds an account: %v", err)
		}

		// Without a factor, nothing more than the password is asked.
		e.registerVerified("plain@example.org", goodPassword)
		plain, _ := e.login("plain@example.org", goodPassword)
		want(t, "change without a factor", e.do("POST", "/v1/auth/password/change", map[string]string{
			"current_password": goodPassword, "new_password": "another long passphrase 7"}, bearer(plain)...), 204, "")
	})
}

// TestStepUpCodesLock: wrong step-up codes lock the account like wrong
// passwords, and a locked account changes nothing even with a right code.
func TestStepUpCodesLock(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, secret, _ := e.mfaUser("lk@example.org")
		for i := range 5 {
			r := e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword,
				"new_password": "another long passphrase 7", "code": e.wrongCode(secret)}, bearer(access)...)
			want(t, fmt.Sprintf("wrong code %d", i+1), r, 401, "invalid_credentials")
		}
		if u := e.user("lk@example.org"); u.AccountStatus != authd.StatusLocked {
			t.Fatalf("after 5 wrong step-up codes: %s, want locked", u.AccountStatus)
		}
		r := e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword,
			"new_password": "another long passphrase 7", "code": totpAt(t, secret, e.clock.Now())}, bearer(access)...)
		want(t, "a right code while locked", r, 423, "account_locked")
	})
}

// TestStepUpCodesLockAsCodes: wrong step-up codes sent in a signed-in
// session (no password asked) lock as wrong codes, not as wrong passwords:
// whoever sends them holds a session, so the lock is logged as the second
// factor's, it refuses codes for its length (CodesLockedUntil), and its
// notice tells the owner that someone got past the password.
func TestStepUpCodesLockAsCodes(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "session.guesses@example.org"
		access, secret, _ := e.mfaUser(email)
		e.clock.Advance(time.Minute) // past the confirmation's check
		for i := range 5 {
			r := e.do("POST", "/v1/users/me/mfa/recovery-codes", map[string]string{"code": e.wrongCode(secret)}, bearer(access)...)
			want(t, fmt.Sprintf("wrong code %d", i+1), r, 401, "invalid_credentials")
		}
		now := e.clock.Now()
		u := e.user(email)
		if u.AccountStatus != authd.StatusLocked || u.FailedCodeAttempts != 5 || !u.CodesLockedUntil.Equal(now.Add(15*time.Minute)) {
			t.Errorf("after 5 wrong step-up codes: %s, %d wrong codes, codes locked until %v; want locked, 5, %v",
				u.AccountStatus, u.FailedCodeAttempts, u.CodesLockedUntil, now.Add(15*time.Minute))
		}
		locks := e.logRows(email, authd.EventAccountLocked)
		if len(locks) != 1 || locks[0].FailureReason != "too many failed second-factor checks" {
			t.Errorf("account_locked rows %+v, want one for the second factor's checks", locks)
		}
		if m := e.mail.last(t, authd.MailAccountLocked, email); !m.AfterCodes {
			t.Errorf("lock notice %+v, want it to say the codes set the lock", m)
		}
	})
}

// TestAdminResetMFA: an administrator sees a user's factors (no secrets)
// and resets them; the password alone then signs in, a login that was
// waiting for a code cannot finish, and both the read and the reset are
// admin_action rows.
func TestAdminResetMFA(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, secret, _ := e.mfaUser("lost@example.org")
		id := e.user("lost@example.org").ID.String()
		waiting := e.mfaLogin("lost@example.org")

		r := e.admin("GET", "/v1/admin/users/"+id+"/mfa", nil)
		want(t, "admin lists factors", r, 200, "")
		items := r.body["items"].([]any)
		if len(items) != 1 || items[0].(map[string]any)["kind"] != "totp" || r.body["recovery_codes_left"] != float64(10) {
			t.Errorf("admin factors: %s", r.raw)
		}
		if strings.Contains(string(r.raw), secret) || strings.Contains(string(r.raw), "secret") {
			t.Errorf("admin factors show the secret: %s", r.raw)
		}
		want(t, "unknown user", e.admin("GET", "/v1/admin/users/"+uuid.NewString()+"/mfa", nil), 404, "not_found")
		want(t, "reset unknown user", e.admin("POST", "/v1/admin/users/"+uuid.NewString()+"/reset-mfa", nil), 404, "not_found")
		want(t, "reset", e.admin("POST", "/v1/admin/users/"+id+"/reset-mfa", nil), 204, "")

		if r := e.admin("GET", "/v1/admin/users/"+id+"/mfa", nil); len(r.body["items"].([]any)) != 0 || r.body["recovery_codes_left"] != float64(0) {
			t.Errorf("factors after reset: %s", r.raw)
		}
		want(t, "the waiting login", e.verify(waiting, "totp", totpAt(t, secret, e.clock.Now())), 400, "invalid_token")
		e.login("lost@example.org", goodPassword) // 200: the password alone
		var actions []string
		logs, err := e.store.SecurityLogs(t.Context(), authd.SecurityLogFilter{EventType: authd.EventAdminAction, Limit: authd.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logs {
			if l.UserID == uuid.Nil { // the administrator's own rows
				actions = append(actions, fmt.Sprint(l.AdditionalContext["action"]))
			}
		}
		for _, a := range []string{"show_mfa", "reset_mfa"} {
			if !slices.Contains(actions, a) {
				t.Errorf("admin actions %v lack %s", actions, a)
			}
		}
	})
}

// TestStepUpAfterALockExpires: once a lock has run out, the next wrong
// step-up code starts a new count (the lock is lifted and logged first)
// instead of locking the account again at once.
func TestStepUpAfterALockExpires(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		// A short lock, so that the access token outlives it.
		e := newEnv(t, open(t), withConfig(func(c *authd.Config) { c.LockoutDuration = 5 * time.Minute }))
		access, secret, _ := e.mfaUser("exp@example.org")
		wrong := func() response {
			return e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword,
				"new_password": "another long passphrase 7", "code": e.wrongCode(secret)}, bearer(access)...)
		}
		for range 5 {
			wrong()
		}
		if u := e.user("exp@example.org"); u.AccountStatus != authd.StatusLocked {
			t.Fatalf("after 5 wrong codes: %s, want locked", u.AccountStatus)
		}
		e.clock.Advance(6 * time.Minute)
		want(t, "a wrong code after the lock", wrong(), 401, "invalid_credentials")
		u := e.user("exp@example.org")
		if u.AccountStatus == authd.StatusLocked || u.FailedLoginAttempts != 1 {
			t.Errorf("after the lock and one wrong code: %s with %d failures, want unlocked with 1", u.AccountStatus, u.FailedLoginAttempts)
		}
		if events := e.events("exp@example.org"); !slices.Contains(events, "account_unlocked/success") {
			t.Errorf("events %v lack account_unlocked", events)
		}
		want(t, "a right code", e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword,
			"new_password": "another long passphrase 7", "code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 204, "")
	})
}

// TestChallengeDiesWithItsFactors: a login that waited for its code while an
// administrator reset the factors cannot finish with a factor enrolled
// after the reset.
func TestChallengeDiesWithItsFactors(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, _, _ := e.mfaUser("re@example.org")
		waiting := e.mfaLogin("re@example.org")
		want(t, "reset", e.admin("POST", "/v1/admin/users/"+e.user("re@example.org").ID.String()+"/reset-mfa", nil), 204, "")
		e.clock.Advance(time.Second)
		r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
		want(t, "re-enrol", r, 200, "")
		secret := r.str("secret")
		r = e.do("POST", "/v1/users/me/mfa/totp/confirm", map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(access)...)
		want(t, "confirm", r, 200, "")
		e.clock.Advance(30 * time.Second)
		want(t, "the waiting login with the new factor", e.verify(waiting, "totp", totpAt(t, secret, e.clock.Now())), 400, "invalid_token")
		recovery := r.body["recovery_codes"].([]any)[0].(string)
		want(t, "the waiting login with a new recovery code", e.verify(waiting, "recovery_code", recovery), 400, "invalid_token")
		token := e.mfaLogin("re@example.org")
		want(t, "a new login", e.verify(token, "totp", totpAt(t, secret, e.clock.Now())), 200, "")
	})
}

// TestAddingAFactorNeedsPasswordAndStepUp: a stolen access token alone
// cannot plant a second factor: adding a passkey needs the password, and
// adding a passkey or TOTP to an account that has a second factor needs
// that factor too (a passkey signs in without the password and passes
// every later step-up).
func TestAddingAFactorNeedsPasswordAndStepUp(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("plain@example.org", goodPassword)
		plain, _ := e.login("plain@example.org", goodPassword)
		begin := func(access string, body map[string]any) response {
			return e.do("POST", "/v1/users/me/passkeys/begin", body, bearer(access)...)
		}
		want(t, "begin without the password", begin(plain, map[string]any{}), 400, "validation_failed")
		want(t, "begin with a wrong password", begin(plain, map[string]any{"password": "not the password"}), 401, "invalid_credentials")
		if n := e.user("plain@example.org").FailedLoginAttempts; n != 1 {
			t.Errorf("failures after a wrong password at passkey registration: %d, want 1", n)
		}
		want(t, "begin with the password", begin(plain, map[string]any{"password": goodPassword}), 200, "")

		access, secret, _ := e.mfaUser("totp@example.org")
		r := begin(access, map[string]any{"password": goodPassword})
		want(t, "a TOTP user adds a passkey without a code", r, 403, "mfa_required")
		if r.str("mfa_token") != "" {
			t.Errorf("a step-up refusal carries an mfa_token: %s", r.raw)
		}
		want(t, "with a wrong code", begin(access, map[string]any{"password": goodPassword,
			"code": e.wrongCode(secret)}), 401, "invalid_credentials")
		want(t, "with a right code", begin(access, map[string]any{"password": goodPassword,
			"code": totpAt(t, secret, e.clock.Now())}), 200, "")

		keyed, k, _ := e.passkeyUser("key@example.org")
		r = e.do("POST", "/v1/users/me/mfa/totp", map[string]any{"password": goodPassword}, bearer(keyed)...)
		want(t, "a passkey user enrols TOTP without the passkey", r, 403, "mfa_required")
		if got, wantDetail := r.str("detail"), "This change needs your second factor: send a recovery code as code, "+
			"or a passkey assertion answering POST /v1/users/me/mfa/challenge as passkey."; got != wantDetail {
			t.Errorf("detail %q, want %q", got, wantDetail)
		}
		want(t, "with the passkey", e.do("POST", "/v1/users/me/mfa/totp",
			map[string]any{"password": goodPassword, "passkey": e.stepUp(keyed, k)}, bearer(keyed)...), 200, "")
	})
}

// TestLogoutRepeatedBeforeItsRevocationArrives: a logout repeated on an
// instance whose revocation set has not heard of the first yet (its answer
// was lost) is 401 invalid_token, not a 409 from the token row.
func TestLogoutRepeatedBeforeItsRevocationArrives(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("twice@example.org", goodPassword)
		access, _ := e.login("twice@example.org", goodPassword)
		claims, err := e.svc.Authenticate(t.Context(), access) // checked before the first logout
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Logout(t.Context(), authd.Client{}, claims); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Logout(t.Context(), authd.Client{}, claims); authd.ErrorCode(err) != authd.EInvalidToken {
			t.Errorf("a repeated logout = %v, want %s", err, authd.EInvalidToken)
		}
	})
}

// TestChangeRefusedOnceItsSessionEnded: a sensitive change whose access
// token was checked, and whose session then ended (while its password was
// hashed, say: the owner signed it out), is refused as an ended session's
// token and changes nothing. The token below is checked before the
// logout, as a request's would be; each change went through.
func TestChangeRefusedOnceItsSessionEnded(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		none := authd.StepUp{}
		for i, c := range []struct {
			name   string
			change func(a *authd.AccessClaims) error
		}{
			{"password_changed", func(a *authd.AccessClaims) error {
				return e.svc.ChangePassword(t.Context(), authd.Client{}, a, goodPassword, "a whole new passphrase", none)
			}},
			{"email_change_requested", func(a *authd.AccessClaims) error {
				return e.svc.RequestEmailChange(t.Context(), authd.Client{}, a, "elsewhere@example.org", goodPassword, none)
			}},
			{"mfa_enrolled", func(a *authd.AccessClaims) error {
				_, err := e.svc.EnrollTOTP(t.Context(), authd.Client{}, a, goodPassword, none)
				return err
			}},
			{"passkey_added", func(a *authd.AccessClaims) error {
				_, err := e.svc.BeginPasskeyRegistration(t.Context(), authd.Client{}, a, goodPassword, none)
				return err
			}},
			{"account_deleted", func(a *authd.AccessClaims) error {
				return e.svc.DeleteMe(t.Context(), authd.Client{}, a, goodPassword, none)
			}},
		} {
			email := fmt.Sprintf("ended%d@example.org", i)
			e.registerVerified(email, goodPassword)
			access, _ := e.login(email, goodPassword)
			claims, err := e.svc.Authenticate(t.Context(), access)
			if err != nil {
				t.Fatal(err)
			}
			want(t, c.name+": logout", e.do("POST", "/v1/auth/logout", nil, bearer(access)...), 204, "")
			if err := c.change(claims); authd.ErrorCode(err) != authd.EInvalidToken {
				t.Errorf("%s after its session ended = %v, want %s", c.name, err, authd.EInvalidToken)
			}
			e.login(email, goodPassword) // the account and its password stand
			if events := e.events(email); slices.ContainsFunc(events, func(ev string) bool {
				return strings.HasPrefix(ev, c.name+"/") || strings.HasPrefix(ev, "passkey_")
			}) {
				t.Errorf("%s: events %v", c.name, events)
			}
			if factors, err := e.store.Factors(t.Context(), e.user(email).ID); err != nil || len(factors) > 0 {
				t.Errorf("%s: factors = %v, %v; want none", c.name, factors, err)
			}
		}
	})
}

// TestFactorChangesRefusedOnceTheirSessionEnded: adding a factor (a
// TOTP confirmation, a passkey's registration) or removing one, with a
// token checked before its session ended, is refused as the ended
// session's token and changes nothing: the owner who signed a session out
// must not find a passkey (a password-free way in) added by it afterwards.
func TestFactorChangesRefusedOnceTheirSessionEnded(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		ended := func(access string) *authd.AccessClaims {
			t.Helper()
			claims, err := e.svc.Authenticate(t.Context(), access)
			if err != nil {
				t.Fatal(err)
			}
			want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(access)...), 204, "")
			return claims
		}
		wantEnded := func(what string, err error) {
			t.Helper()
			if authd.ErrorCode(err) != authd.EInvalidToken {
				t.Errorf("%s after its session ended = %v, want %s", what, err, authd.EInvalidToken)
			}
		}
		factors := func(email string) []*authd.Factor {
			t.Helper()
			f, err := e.store.Factors(t.Context(), e.user(email).ID)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}

		e.registerVerified("enrolling@example.org", goodPassword)
		access, _ := e.login("enrolling@example.org", goodPassword)
		r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
		want(t, "enrol", r, 200, "")
		a := ended(access)
		_, err := e.svc.ConfirmTOTP(t.Context(), authd.Client{}, a, totpAt(t, r.str("secret"), e.clock.Now()))
		wantEnded("a TOTP confirmation", err)
		if f := factors("enrolling@example.org"); len(f) != 1 || f[0].Confirmed {
			t.Errorf("factors %+v; want the enrolment unconfirmed", f)
		}

		e.registerVerified("adding@example.org", goodPassword)
		access, _ = e.login("adding@example.org", goodPassword)
		credential, err := json.Marshal(newSoftKey(t, rpID, rpOrigin).Create(e.beginRegistration(access)))
		if err != nil {
			t.Fatal(err)
		}
		a = ended(access)
		_, err = e.svc.FinishPasskeyRegistration(t.Context(), authd.Client{}, a, "Laptop", credential)
		wantEnded("a passkey's registration", err)
		if keys, err := e.store.Passkeys(t.Context(), a.UserID); err != nil || len(keys) > 0 {
			t.Errorf("passkeys %v, %v; want none", keys, err)
		}

		access, secret, _ := e.mfaUser("removing@example.org")
		a = ended(access)
		wantEnded("TOTP's removal", e.svc.DisableTOTP(t.Context(), authd.Client{}, a, "",
			authd.StepUp{Code: totpAt(t, secret, e.clock.Now())}))
		if f := factors("removing@example.org"); len(f) != 1 || !f[0].Confirmed {
			t.Errorf("factors %+v; want TOTP kept", f)
		}
	})
}

// TestStepUpProofsOfNoShape: a second factor's proof of no possible shape
// is 400 naming its field, whether or not the user has a factor (bad input
// is told, not ignored), and a passkey where passkeys are off is 400 too.
func TestStepUpProofsOfNoShape(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("plain@example.org", goodPassword)
	access, _ := e.login("plain@example.org", goodPassword)
	request := func(proof map[string]any) response {
		body := map[string]any{"new_email": "plain@example.net", "password": goodPassword}
		maps.Copy(body, proof)
		return e.do("POST", "/v1/users/me/email", body, bearer(access)...)
	}
	for _, c := range []struct {
		what  string
		proof map[string]any
		field string
	}{
		{"a passkey that is a string", map[string]any{"passkey": "junk"}, "passkey"},
		{"a passkey of no shape", map[string]any{"passkey": map[string]any{"id": 1}}, "passkey"},
		{"a code of no shape", map[string]any{"code": "12"}, "code"},
		{"a code that is a number", map[string]any{"code": 123456}, "code"},
	} {
		r := request(c.proof)
		want(t, c.what, r, 400, "validation_failed")
		if r.field() != c.field {
			t.Errorf("%s names %q, want %q: %s", c.what, r.field(), c.field, r.raw)
		}
	}
	want(t, "the request, its passkey member null", request(map[string]any{"passkey": nil}), 202, "")
	link := e.changeLink("plain@example.net")
	r := e.do("POST", "/v1/auth/verify-email", map[string]any{"token": link, "password": goodPassword, "passkey": "junk"})
	want(t, "the link with a passkey of no shape", r, 400, "validation_failed")
	if r.field() != "passkey" {
		t.Errorf("the link with a passkey of no shape names %q: %s", r.field(), r.raw)
	}

	off := newEnv(t, openSQLite(t), withConfig(func(c *authd.Config) { c.WebAuthnRPID, c.WebAuthnOrigins = "", nil }))
	off.registerVerified("off@example.org", goodPassword)
	offAccess, _ := off.login("off@example.org", goodPassword)
	r = off.do("POST", "/v1/users/me/email", map[string]any{"new_email": "off@example.net", "password": goodPassword,
		"passkey": map[string]any{"id": "x"}}, bearer(offAccess)...)
	want(t, "a passkey where passkeys are off", r, 400, "validation_failed")
	if r.field() != "passkey" || !strings.Contains(r.raw, "passkeys are not enabled") {
		t.Errorf("a passkey where passkeys are off: %s", r.raw)
	}
}

// TestStepUpCodesRefusedWhileCodesLocked: while codes are locked past the
// password (CodesLockedUntil, which outlives the account's lock), a
// step-up code is refused unchecked, right or not, like a login's: a
// session's holder must not get fresh guesses at codes through step-ups.
func TestStepUpCodesRefusedWhileCodesLocked(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, secret, _ := e.mfaUser("cl@example.org")
		u := e.user("cl@example.org")
		u.CodesLockedUntil = e.clock.Now().Add(30 * time.Minute)
		if err := e.store.UpdateUser(t.Context(), u); err != nil {
			t.Fatal(err)
		}
		change := func() response {
			return e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword,
				"new_password": "another long passphrase 7", "code": totpAt(t, secret, e.clock.Now())}, bearer(access)...)
		}
		r := change()
		want(t, "a right code while codes are locked", r, 423, "account_locked")
		if r.header.Get("Retry-After") == "" {
			t.Errorf("423 without Retry-After: %v", r.header)
		}
		if evs := e.events("cl@example.org"); evs[len(evs)-1] != "password_changed/failure" {
			t.Errorf("events %v, want password_changed/failure last", evs)
		}
		e.clock.Advance(10 * time.Minute) // the access token still lives; the code is a new one
		want(t, "a right code, codes still locked", change(), 423, "account_locked")
	})
}

// TestFactorChangesRefusedWhileLocked: while the account is locked (a lock
// set by wrong passwords, which leaves codes unlocked and sessions alive),
// the changes a code alone authorises — disabling TOTP, replacing the
// recovery codes — are refused unchecked, a right code or not, and the
// refusal is logged; the factor and the codes stay.
func TestFactorChangesRefusedWhileLocked(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "locked.session@example.org"
		access, secret, codes := e.mfaUser(email)
		e.bruteLock(email)
		for _, c := range []struct{ method, path string }{
			{"POST", "/v1/users/me/mfa/recovery-codes"},
			{"DELETE", "/v1/users/me/mfa/totp"},
		} {
			r := e.do(c.method, c.path, map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(access)...)
			want(t, c.method+" "+c.path+" with a right code while locked", r, 423, "account_locked")
			e.clock.Advance(30 * time.Second) // a fresh step: the refusal used no code
		}
		r := e.do("GET", "/v1/users/me/mfa", nil, bearer(access)...)
		if items, _ := r.body["items"].([]any); len(items) != 1 || r.body["recovery_codes_left"] != float64(len(codes)) {
			t.Errorf("factors after the refused changes: %s; want TOTP and %d codes", r.raw, len(codes))
		}
		for _, ev := range []string{"recovery_codes_replaced/failure", "mfa_disabled/failure"} {
			if !e.hasEvent(email, ev) {
				t.Errorf("events %v lack %s", e.events(email), ev)
			}
		}
	})
}

// TestTOTPCodeOnceTOTPIsDisabled: a sign-in that awaits its second factor
// and then sends a TOTP code after its user disabled TOTP (keeping a
// passkey, so the challenge lives on) is told to start over: the code is
// checked against nothing, and counts toward no lock, as no code of a
// factor the user no longer has is a guess.
func TestTOTPCodeOnceTOTPIsDisabled(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "totp.goes@example.org"
		access, secret, _ := e.mfaUser(email)
		want(t, "add a passkey", e.addPasskey(access, newSoftKey(t, rpID, rpOrigin), "Laptop"), 201, "")
		e.clock.Advance(30 * time.Second) // past the step-up's code
		waiting := e.mfaLogin(email)
		want(t, "disable TOTP", e.do("DELETE", "/v1/users/me/mfa/totp", map[string]string{"code": totpAt(t, secret, e.clock.Now())},
			bearer(access)...), 204, "")
		e.clock.Advance(30 * time.Second)
		want(t, "a TOTP code once TOTP is disabled", e.verify(waiting, "totp", totpAt(t, secret, e.clock.Now())), 400, "invalid_token")
		if u := e.user(email); u.FailedLoginAttempts != 0 || u.FailedCodeAttempts != 0 {
			t.Errorf("a TOTP code for a disabled TOTP counted: %d failures, %d of codes", u.FailedLoginAttempts, u.FailedCodeAttempts)
		}
		e.wantRefusalLogged(email, authd.EventMFAChallengeFailed, "no second factor enabled")
	})
}
