package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// totpAt is the code an authenticator app shows for secret at t.
func totpAt(t testing.TB, secret string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// mfaUser registers email, logs in, enrols and confirms TOTP; it returns
// the access token, the TOTP secret and the recovery codes. The clock then
// moves a step on, so that the confirmation's code is behind.
func (e *env) mfaUser(email string) (access, secret string, codes []string) {
	e.t.Helper()
	e.registerVerified(email, goodPassword)
	access, _ = e.login(email, goodPassword)
	r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
	want(e.t, "enrol", r, 200, "")
	secret = r.str("secret")
	r = e.do("POST", "/v1/users/me/mfa/totp/confirm", map[string]string{"code": totpAt(e.t, secret, e.clock.Now())}, bearer(access)...)
	want(e.t, "confirm", r, 200, "")
	for _, c := range r.body["recovery_codes"].([]any) {
		codes = append(codes, c.(string))
	}
	e.clock.Advance(30 * time.Second)
	if e.totpOf == nil {
		e.totpOf = map[string]string{}
	}
	e.totpOf[access] = secret
	return access, secret, codes
}

// mfaLogin logs in with the password and returns the mfa_token of the 403.
func (e *env) mfaLogin(email string) string {
	e.t.Helper()
	r := e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": goodPassword, "device_info": "phone"})
	want(e.t, "login with a second factor", r, 403, "mfa_required")
	if r.str("mfa_token") == "" {
		e.t.Fatalf("mfa_required without mfa_token: %s", r.raw)
	}
	return r.str("mfa_token")
}

// wrongCode is the code secret gave an hour ago: wrong now, and
// well-formed, as a guess is.
func (e *env) wrongCode(secret string) string {
	e.t.Helper()
	return totpAt(e.t, secret, e.clock.Now().Add(-time.Hour))
}

func (e *env) verify(token, method, code string) response {
	e.t.Helper()
	return e.do("POST", "/v1/auth/mfa/verify", map[string]string{"mfa_token": token, "method": method, "code": code})
}

func amrOf(t testing.TB, access string) []string {
	t.Helper()
	var out []string
	for _, m := range jwtClaims(t, access)["amr"].([]any) {
		out = append(out, m.(string))
	}
	return out
}

// TestTOTPEnrolment: a password starts the enrolment (secret, URI, QR
// image), a first right code enables it and yields ten recovery codes, and
// the secret is stored only encrypted.
func TestTOTPEnrolment(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("mia@example.org", goodPassword)
		access, _ := e.login("mia@example.org", goodPassword)
		path := "/v1/users/me/mfa/totp"

		want(t, "enrol without a token", e.do("POST", path, map[string]string{"password": goodPassword}), 401, "invalid_token")
		want(t, "enrol with a wrong password", e.do("POST", path, map[string]string{"password": "wrong"}, bearer(access)...), 401, "invalid_credentials")
		want(t, "confirm before enrolling", e.do("POST", path+"/confirm", map[string]string{"code": "123456"}, bearer(access)...), 404, "not_found")
		r := e.do("POST", path, map[string]string{"password": goodPassword}, bearer(access)...)
		want(t, "enrol", r, 200, "")
		secret := r.str("secret")
		u, err := url.Parse(r.str("otpauth_uri"))
		if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Query().Get("secret") != secret ||
			u.Query().Get("issuer") != "auth.example.org" || !strings.Contains(u.Path, "mia@example.org") {
			t.Errorf("otpauth_uri %q (%v)", r.str("otpauth_uri"), err)
		}
		img, err := base64.StdEncoding.DecodeString(r.str("qr_png"))
		if _, perr := png.Decode(bytes.NewReader(img)); err != nil || perr != nil {
			t.Errorf("qr_png is not a base64 PNG: %v %v", err, perr)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("enrolment Cache-Control %q, want no-store", r.header.Get("Cache-Control"))
		}
		factors, err := e.store.Factors(context.Background(), e.user("mia@example.org").ID)
		if err != nil || len(factors) != 1 || factors[0].Confirmed || strings.Contains(factors[0].Secret, secret) {
			t.Fatalf("stored factors %+v (%v): want one unconfirmed, secret encrypted", factors, err)
		}
		r = e.do("GET", "/v1/users/me/mfa", nil, bearer(access)...)
		if items := r.body["items"].([]any); len(items) != 1 || items[0].(map[string]any)["enabled"] != false ||
			strings.Contains(r.raw, "secret") {
			t.Errorf("GET mfa before confirming: %s", r.raw)
		}
		// Not yet enabled: logins need no code.
		e.login("mia@example.org", goodPassword)

		now := e.clock.Now()
		wrong := totpAt(t, secret, now.Add(-5*time.Minute))
		want(t, "confirm with a wrong code", e.do("POST", path+"/confirm", map[string]string{"code": wrong}, bearer(access)...), 401, "invalid_credentials")
		r = e.do("POST", path+"/confirm", map[string]string{"code": totpAt(t, secret, now)}, bearer(access)...)
		want(t, "confirm", r, 200, "")
		codes := r.body["recovery_codes"].([]any)
		if len(codes) != 10 {
			t.Fatalf("%d recovery codes, want 10", len(codes))
		}
		want(t, "confirm again", e.do("POST", path+"/confirm", map[string]string{"code": totpAt(t, secret, now)}, bearer(access)...), 409, "conflict")
		want(t, "enrol again without the second factor", e.do("POST", path, map[string]string{"password": goodPassword}, bearer(access)...), 403, "mfa_required")
		want(t, "enrol again while enabled", e.do("POST", path, map[string]string{"password": goodPassword,
			"code": codes[0].(string)}, bearer(access)...), 409, "conflict")
		r = e.do("GET", "/v1/users/me/mfa", nil, bearer(access)...)
		item := r.body["items"].([]any)[0].(map[string]any)
		if item["kind"] != "totp" || item["enabled"] != true || item["last_used_at"] == nil || r.body["recovery_codes_left"] != float64(10) {
			t.Errorf("GET mfa after confirming: %s", r.raw)
		}
		got := e.events("mia@example.org")
		for _, ev := range []string{"mfa_enrolled/failure", "mfa_enrolled/success", "mfa_enabled/failure", "mfa_enabled/success"} {
			if !slices.Contains(got, ev) {
				t.Errorf("events %v lack %s", got, ev)
			}
		}
		if strings.Contains(e.logs.String(), secret) {
			t.Error("the TOTP secret is in a log line")
		}
	})
}

// TestLoginWithTOTP: a right password answers mfa_required and starts no
// session; a right code then gives the usual pair with amr pwd, otp, mfa,
// which introspection and refresh keep. The mfa_token works once, and a
// code works once.
func TestLoginWithTOTP(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, secret, _ := e.mfaUser("noa@example.org")
		u := e.user("noa@example.org")
		before, _ := e.store.Sessions(context.Background(), u.ID, e.clock.Now())

		r := e.do("POST", "/v1/auth/login", map[string]string{"email": "noa@example.org", "password": goodPassword})
		want(t, "login", r, 403, "mfa_required")
		if r.str("access_token") != "" || r.str("refresh_token") != "" {
			t.Errorf("mfa_required carries tokens: %s", r.raw)
		}
		if diff := cmp.Diff([]any{"totp", "recovery_code"}, r.body["methods"]); diff != "" {
			t.Errorf("methods (-want +got):\n%s", diff)
		}
		if after, _ := e.store.Sessions(context.Background(), u.ID, e.clock.Now()); len(after) != len(before) {
			t.Errorf("sessions after mfa_required: %d, want %d (none new)", len(after), len(before))
		}
		token := r.str("mfa_token")
		code := totpAt(t, secret, e.clock.Now())
		r = e.verify(token, "totp", code)
		want(t, "verify", r, 200, "")
		access, refresh := r.str("access_token"), r.str("refresh_token")
		if diff := cmp.Diff([]string{"pwd", "otp", "mfa"}, amrOf(t, access)); diff != "" {
			t.Errorf("amr (-want +got):\n%s", diff)
		}
		in := e.do("POST", "/v1/auth/introspect", map[string]string{"token": access}, bearer(serviceToken)...)
		if diff := cmp.Diff([]any{"pwd", "otp", "mfa"}, in.body["amr"]); diff != "" {
			t.Errorf("introspection amr (-want +got):\n%s", diff)
		}
		r = e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
		want(t, "refresh", r, 200, "")
		if diff := cmp.Diff([]string{"pwd", "otp", "mfa"}, amrOf(t, r.str("access_token"))); diff != "" {
			t.Errorf("amr after refresh (-want +got):\n%s", diff)
		}
		if sess, _ := e.store.Sessions(context.Background(), u.ID, e.clock.Now()); sess[0].DeviceInfo != "" {
			t.Errorf("session device_info %q, want the login's (none sent)", sess[0].DeviceInfo)
		}

		want(t, "the mfa_token again", e.verify(token, "totp", totpAt(t, secret, e.clock.Now().Add(30*time.Second))), 400, "invalid_token")
		// The same code, within its window, on a new challenge: a replay.
		want(t, "a replayed code", e.verify(e.mfaLogin("noa@example.org"), "totp", code), 401, "invalid_credentials")

		got := e.events("noa@example.org")
		for _, ev := range []string{"mfa_challenge_issued/success", "mfa_challenge_passed/success", "mfa_challenge_failed/failure", "login_success/success"} {
			if !slices.Contains(got, ev) {
				t.Errorf("events %v lack %s", got, ev)
			}
		}
	})
}

// TestPasswordLoginAMR: a login without a second factor carries amr pwd.
func TestPasswordLoginAMR(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("pia@example.org", goodPassword)
	access, _ := e.login("pia@example.org", goodPassword)
	if diff := cmp.Diff([]string{"pwd"}, amrOf(t, access)); diff != "" {
		t.Errorf("amr (-want +got):\n%s", diff)
	}
	in := e.do("POST", "/v1/auth/introspect", map[string]string{"token": access}, bearer(serviceToken)...)
	if diff := cmp.Diff([]any{"pwd"}, in.body["amr"]); diff != "" {
		t.Errorf("introspection amr (-want +got):\n%s", diff)
	}
}

// TestUsedCodeRefusedUncounted: a TOTP code already used (a form sent
// twice, two tabs, a sign-in within its half minute) is refused, saying
// so, at login and at a step-up, and logged, but not counted as a wrong
// code: seven of them lock nothing, and the next code signs in.
func TestUsedCodeRefusedUncounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	access, secret, _ := e.mfaUser("uma@example.org")
	code := totpAt(t, secret, e.clock.Now())
	want(t, "sign in", e.verify(e.mfaLogin("uma@example.org"), "totp", code), 200, "")
	refused := func(what string, r response) {
		t.Helper()
		want(t, what, r, 401, "invalid_credentials")
		if !strings.Contains(r.raw, "already used") {
			t.Errorf("%s: %s; want it to say the code was already used", what, r.raw)
		}
	}
	for range 6 {
		refused("the used code again", e.verify(e.mfaLogin("uma@example.org"), "totp", code))
	}
	refused("a step-up with the used code", e.do("DELETE", "/v1/users/me/mfa/totp", map[string]string{"code": code},
		bearer(access)...))
	if u := e.user("uma@example.org"); u.FailedLoginAttempts != 0 || u.FailedCodeAttempts != 0 || u.IsLocked(e.clock.Now()) {
		t.Errorf("after seven used codes: %d failed attempts, %d failed codes, locked %v; want none counted",
			u.FailedLoginAttempts, u.FailedCodeAttempts, u.IsLocked(e.clock.Now()))
	}
	logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: e.user("uma@example.org").ID, Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	n, byEvent := 0, map[authd.EventType]int{}
	for _, l := range logs {
		if l.Result == authd.ResultFailure && l.FailureReason == "code already used" {
			n++
			byEvent[l.EventType]++
		}
	}
	if n != 7 {
		t.Errorf("%d rows of a used code, want 7", n)
	}
	// Each is a failure of what it was sent for: the step-up's is the
	// change's, not a sign-in's.
	if byEvent[authd.EventMFAChallengeFailed] != 6 || byEvent[authd.EventMFADisabled] != 1 {
		t.Errorf("rows of a used code by event %v, want 6 mfa_challenge_failed and 1 mfa_disabled", byEvent)
	}
	// One mfa_token counts its replays among its wrong codes: it dies
	// after five.
	token := e.mfaLogin("uma@example.org")
	for range 5 {
		refused("the used code again on one token", e.verify(token, "totp", code))
	}
	want(t, "the token after five replays", e.verify(token, "totp", code), 400, "invalid_token")
	next := totpAt(t, secret, e.clock.Now().Add(30*time.Second))
	want(t, "the next code", e.verify(e.mfaLogin("uma@example.org"), "totp", next), 200, "")
}

// TestTOTPSkew: codes one step either side of now pass, two steps do not.
func TestTOTPSkew(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, secret, _ := e.mfaUser("quin@example.org")
		e.clock.Advance(10 * time.Minute)
		now := e.clock.Now()
		for _, tt := range []struct {
			offset time.Duration
			status int
		}{
			{-60 * time.Second, 401}, {60 * time.Second, 401}, // refused first: an accepted step bars earlier ones
			{-30 * time.Second, 200}, {30 * time.Second, 200},
		} {
			token := e.mfaLogin("quin@example.org")
			code := totpAt(t, secret, now.Add(tt.offset))
			if r := e.verify(token, "totp", code); r.status != tt.status {
				t.Errorf("code of now%+v: %d %s; want %d", tt.offset, r.status, r.raw, tt.status)
			}
		}
	})
}

// TestRecoveryCodes: a recovery code finishes a login once; a new set
// replaces the old; each use is logged.
func TestRecoveryCodes(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, secret, codes := e.mfaUser("rex@example.org")
		// Typed in upper case without the hyphen, as people do.
		r := e.verify(e.mfaLogin("rex@example.org"), "recovery_code", strings.ToUpper(strings.ReplaceAll(codes[0], "-", "")))
		want(t, "recovery code", r, 200, "")
		if diff := cmp.Diff([]string{"pwd", "otp", "mfa"}, amrOf(t, r.str("access_token"))); diff != "" {
			t.Errorf("amr (-want +got):\n%s", diff)
		}
		// A spent code is a wrong one, and counted (unlike a used TOTP
		// code): someone with the password and an old copy of the codes
		// must not try the list uncounted, nor learn that it is current.
		r = e.verify(e.mfaLogin("rex@example.org"), "recovery_code", codes[0])
		want(t, "the same recovery code again", r, 401, "invalid_credentials")
		if u := e.user("rex@example.org"); strings.Contains(r.raw, "already used") || u.FailedLoginAttempts != 1 {
			t.Errorf("a spent recovery code: %s, %d failed attempts; want it refused as incorrect, and counted", r.raw, u.FailedLoginAttempts)
		}
		if r := e.do("GET", "/v1/users/me/mfa", nil, bearer(access)...); r.body["recovery_codes_left"] != float64(9) {
			t.Errorf("recovery_codes_left %v, want 9", r.body["recovery_codes_left"])
		}
		// The use's row tells how many are left, as the owner's log shows it.
		used := e.logRows("rex@example.org", authd.EventRecoveryCodeUsed)
		if len(used) != 1 || used[0].AdditionalContext["codes_left"] != float64(9) {
			t.Errorf("recovery_code_used rows %+v, want one with codes_left 9", used)
		}

		path := "/v1/users/me/mfa/recovery-codes"
		want(t, "replace without a code", e.do("POST", path, map[string]string{}, bearer(access)...), 400, "validation_failed")
		want(t, "replace with a wrong code", e.do("POST", path, map[string]string{"code": "aaaaa-aaaaa"}, bearer(access)...), 401, "invalid_credentials")
		r = e.do("POST", path, map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(access)...)
		want(t, "replace", r, 200, "")
		fresh := r.body["recovery_codes"].([]any)
		if len(fresh) != 10 || slices.Contains(fresh, any(codes[1])) {
			t.Fatalf("new recovery codes %v", fresh)
		}
		want(t, "an old recovery code", e.verify(e.mfaLogin("rex@example.org"), "recovery_code", codes[1]), 401, "invalid_credentials")
		want(t, "a new recovery code", e.verify(e.mfaLogin("rex@example.org"), "recovery_code", fresh[0].(string)), 200, "")
		got := e.events("rex@example.org")
		for _, ev := range []string{"recovery_code_used/success", "recovery_codes_replaced/success", "recovery_codes_replaced/failure"} {
			if !slices.Contains(got, ev) {
				t.Errorf("events %v lack %s", got, ev)
			}
		}
	})
}

// TestDisableTOTPNeedsACode: removing the factor takes a current code;
// afterwards a password alone logs in again.
func TestDisableTOTPNeedsACode(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, secret, _ := e.mfaUser("sam@example.org")
		path := "/v1/users/me/mfa/totp"
		want(t, "disable without a body", e.do("DELETE", path, nil, bearer(access)...), 415, "")
		want(t, "disable without a code", e.do("DELETE", path, map[string]string{}, bearer(access)...), 400, "validation_failed")
		want(t, "disable with a wrong code", e.do("DELETE", path, map[string]string{"code": e.wrongCode(secret)}, bearer(access)...), 401, "invalid_credentials")
		e.mfaLogin("sam@example.org") // still enabled
		want(t, "disable", e.do("DELETE", path, map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 204, "")
		if r := e.do("GET", "/v1/users/me/mfa", nil, bearer(access)...); len(r.body["items"].([]any)) != 0 || r.body["recovery_codes_left"] != float64(0) {
			t.Errorf("GET mfa after disabling: %s", r.raw)
		}
		a, _ := e.login("sam@example.org", goodPassword)
		if diff := cmp.Diff([]string{"pwd"}, amrOf(t, a)); diff != "" {
			t.Errorf("amr after disabling (-want +got):\n%s", diff)
		}
		want(t, "disable again", e.do("DELETE", path, map[string]string{"code": "123456"}, bearer(access)...), 404, "not_found")
		if got := e.events("sam@example.org"); !slices.Contains(got, "mfa_disabled/success") || !slices.Contains(got, "mfa_disabled/failure") {
			t.Errorf("events %v lack mfa_disabled success and failure", got)
		}
	})
}

// TestWrongCodesLock: wrong codes count toward the lock of SPEC 6.7 with
// wrong passwords; while locked, even a right code answers 423; the count
// resets only once a whole login succeeds.
func TestWrongCodesLock(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, secret, _ := e.mfaUser("tia@example.org")
		bad := func(at time.Time) string { return totpAt(t, secret, at.Add(-time.Hour)) }

		want(t, "a wrong password", e.do("POST", "/v1/auth/login", map[string]string{"email": "tia@example.org", "password": "wrong"}), 401, "invalid_credentials")
		token := e.mfaLogin("tia@example.org")
		if n := e.user("tia@example.org").FailedLoginAttempts; n != 1 {
			t.Errorf("failures after a right password awaiting its code: %d, want 1 (not reset)", n)
		}
		want(t, "a wrong code", e.verify(token, "totp", bad(e.clock.Now())), 401, "invalid_credentials")
		if n := e.user("tia@example.org").FailedLoginAttempts; n != 2 {
			t.Errorf("failures after a wrong code: %d, want 2", n)
		}
		want(t, "a right code", e.verify(token, "totp", totpAt(t, secret, e.clock.Now())), 200, "")
		if n := e.user("tia@example.org").FailedLoginAttempts; n != 0 {
			t.Errorf("failures after the whole login: %d, want 0", n)
		}

		e.clock.Advance(time.Minute)
		for i := range 5 {
			token := e.mfaLogin("tia@example.org")
			want(t, fmt.Sprintf("wrong code %d", i+1), e.verify(token, "totp", bad(e.clock.Now())), 401, "invalid_credentials")
		}
		if u := e.user("tia@example.org"); u.AccountStatus != authd.StatusLocked || u.LockReason != authd.LockBruteForce {
			t.Fatalf("after 5 wrong codes: %s (%s), want locked by brute force", u.AccountStatus, u.LockReason)
		}
		want(t, "login while locked", e.do("POST", "/v1/auth/login", map[string]string{"email": "tia@example.org", "password": goodPassword}), 423, "account_locked")
		if !slices.Contains(e.events("tia@example.org"), "account_locked/success") {
			t.Error("no account_locked event")
		}
		e.clock.Advance(16 * time.Minute)
		token = e.mfaLogin("tia@example.org")
		want(t, "a right code after the lock", e.verify(token, "totp", totpAt(t, secret, e.clock.Now())), 200, "")
	})
}

// TestLockedWhileChallenged: a lock that starts after the password was
// checked stops the code too (checked in the transaction).
func TestLockedWhileChallenged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	_, secret, _ := e.mfaUser("uma@example.org")
	token := e.mfaLogin("uma@example.org")
	for i := range 5 {
		want(t, fmt.Sprintf("wrong password %d", i+1), e.do("POST", "/v1/auth/login", map[string]string{"email": "uma@example.org", "password": "wrong"}), 401, "invalid_credentials")
	}
	r := e.verify(token, "totp", totpAt(t, secret, e.clock.Now()))
	want(t, "a right code while locked", r, 423, "account_locked")
	if r.header.Get("Retry-After") == "" {
		t.Error("423 without Retry-After")
	}
}

// TestMFATokenDies: the mfa_token dies after five wrong codes, and after
// five minutes.
func TestMFATokenDies(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withConfig(func(c *authd.Config) { c.LockoutThreshold = 20 }))
		_, secret, _ := e.mfaUser("val@example.org")
		token := e.mfaLogin("val@example.org")
		for i := range 5 {
			want(t, fmt.Sprintf("wrong code %d", i+1), e.verify(token, "totp", e.wrongCode(secret)), 401, "invalid_credentials")
		}
		want(t, "a right code after five wrong ones", e.verify(token, "totp", totpAt(t, secret, e.clock.Now())), 400, "invalid_token")

		token = e.mfaLogin("val@example.org")
		e.clock.Advance(5 * time.Minute)
		want(t, "a right code after five minutes", e.verify(token, "totp", totpAt(t, secret, e.clock.Now())), 400, "invalid_token")

		token = e.mfaLogin("val@example.org")
		e.clock.Advance(5*time.Minute - time.Second)
		want(t, "a right code just in time", e.verify(token, "totp", totpAt(t, secret, e.clock.Now())), 200, "")
	})
}

// TestMFATokenEndsWithTheSessions: a sign-in awaiting its second factor
// ends when all the account's sessions do (a logout-all, an
// administrator's revocation or lock, an address move): else its
// mfa_token, a right code away from a session, let in whoever gave the
// password minutes after the account was signed out everywhere, or once
// the lock was lifted. Its refusal says so (not "password changed").
func TestMFATokenEndsWithTheSessions(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		email := "ends@example.org"
		access, secret, _ := e.mfaUser(email)
		path := "/v1/admin/users/" + e.user(email).ID.String()
		for _, c := range []struct {
			name string
			end  func()
		}{
			{"logout-all", func() {
				want(t, "logout-all", e.do("POST", "/v1/auth/logout-all", nil, bearer(access)...), 204, "")
			}},
			{"an administrator's revocation", func() {
				want(t, "revoke", e.admin("POST", path+"/revoke-sessions", nil), 204, "")
			}},
			{"an administrator's lock, lifted", func() {
				want(t, "lock", e.admin("POST", path+"/lock", map[string]string{}), 204, "")
				want(t, "unlock", e.admin("POST", path+"/unlock", nil), 204, "")
			}},
			{"an administrator's address move", func() {
				email = "moved-ends@example.net"
				want(t, "move", e.admin("POST", path+"/email", map[string]any{"email": email, "verified": true}), 204, "")
			}},
		} {
			token := e.mfaLogin(email)
			c.end()
			e.clock.Advance(30 * time.Second) // a code not used yet
			want(t, "a right code after "+c.name, e.verify(token, "totp", totpAt(t, secret, e.clock.Now())), 400, "invalid_token")
			logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{EventType: authd.EventMFAChallengeFailed, Limit: 1})
			if err != nil || len(logs) != 1 || logs[0].FailureReason != "sessions ended since the challenge" {
				t.Errorf("after %s: the refusal logged %v (%v); want it ended with the sessions", c.name, logs, err)
			}
			// A sign-in begun afterwards goes through.
			e.clock.Advance(30 * time.Second)
			r := e.verify(e.mfaLogin(email), "totp", totpAt(t, secret, e.clock.Now()))
			want(t, "a sign-in after "+c.name, r, 200, "")
			access = r.str("access_token")
		}
	})
}

// TestMFAMalformedInput: bad bodies answer 400 problem+json, never 500.
func TestMFAMalformedInput(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, _, _ := e.mfaUser("wes@example.org")
		token := e.mfaLogin("wes@example.org")
		for _, tt := range []struct {
			name string
			body any
			code string
		}{
			{"not JSON", "{", "validation_failed"},
			{"an array", "[]", "validation_failed"},
			{"no fields", map[string]string{}, "validation_failed"},
			{"unknown method", map[string]string{"mfa_token": token, "method": "sms", "code": "123456"}, "validation_failed"},
			{"letters as a TOTP code", map[string]string{"mfa_token": token, "method": "totp", "code": "12345a"}, "validation_failed"},
			{"seven digits", map[string]string{"mfa_token": token, "method": "totp", "code": "1234567"}, "validation_failed"},
			{"a huge code", map[string]string{"mfa_token": token, "method": "recovery_code", "code": strings.Repeat("a", 5000)}, "validation_failed"},
			{"a TOTP code padded past 64 bytes", map[string]string{"mfa_token": token, "method": "totp",
				"code": strings.Repeat(" ", 60) + "123456"}, "validation_failed"},
			{"a recovery code padded past 64 bytes", map[string]string{"mfa_token": token, "method": "recovery_code",
				"code": strings.Repeat(" ", 60) + "abcde-fghij"}, "validation_failed"},
			{"a recovery code with 1s", map[string]string{"mfa_token": token, "method": "recovery_code", "code": "11111-11111"}, "validation_failed"},
			{"a number as code", `{"mfa_token": "x", "method": "totp", "code": 123456}`, "validation_failed"},
			{"a malformed mfa_token", map[string]string{"mfa_token": "x", "method": "totp", "code": "123456"}, "invalid_token"},
			{"an unknown mfa_token", map[string]string{"mfa_token": strings.Repeat("A", 43), "method": "totp", "code": "123456"}, "invalid_token"},
		} {
			want(t, "verify with "+tt.name, e.do("POST", "/v1/auth/mfa/verify", tt.body), 400, tt.code)
		}
		// A token that cannot be one is logged too, with no user (SPEC 6.10).
		logs, err := e.store.SecurityLogs(t.Context(), authd.SecurityLogFilter{EventType: authd.EventMFAChallengeFailed,
			Result: authd.ResultFailure, Limit: authd.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(logs, func(l *authd.SecurityLog) bool {
			return l.FailureReason == "malformed mfa token" && l.UserID == uuid.Nil
		}) {
			t.Errorf("mfa_challenge_failed rows %+v lack the malformed mfa_token's, with no user", logs)
		}
		for _, path := range []string{"/v1/users/me/mfa/totp/confirm", "/v1/users/me/mfa/recovery-codes"} {
			for _, body := range []any{"{", map[string]any{"code": 5}, map[string]string{"code": "12 34"}, map[string]string{"code": strings.Repeat("9", 100)}} {
				if r := e.do("POST", path, body, bearer(access)...); r.status != 400 {
					t.Errorf("POST %s %v: %d %s; want 400", path, body, r.status, r.raw)
				}
			}
		}
		if strings.Contains(e.logs.String(), "request failed") {
			t.Errorf("an internal error was logged:\n%s", e.logs.String())
		}
	})
}

// TestMFAChallengeDiesWithItsPassword: a challenge proves a password; once
// that password is reset, the challenge no longer lets anyone in.
func TestMFAChallengeDiesWithItsPassword(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, secret, _ := e.mfaUser("reset@example.org")
		token := e.mfaLogin("reset@example.org")
		e.clock.Advance(time.Second)
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "reset@example.org"}), 202, "")
		reset := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, "reset@example.org"))
		want(t, "reset", e.do("POST", "/v1/auth/password/reset",
			map[string]string{"token": reset, "new_password": "the owner's new passphrase"}), 204, "")
		want(t, "the old password's challenge", e.verify(token, "totp", totpAt(t, secret, e.clock.Now())), 400, "invalid_token")
	})
}

// TestRetentionPurgesMFAChallenges: login challenges go a day after they
// expired, like verification tokens.
func TestRetentionPurgesMFAChallenges(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.mfaUser("old@example.org")
		e.mfaLogin("old@example.org")
		e.mfaLogin("old@example.org")
		if res, err := e.svc.Purge(t.Context(), 90*24*time.Hour, false); err != nil || res.MFAChallenges != 0 {
			t.Fatalf("purge of live challenges: %+v, %v", res, err)
		}
		e.clock.Advance(24*time.Hour + 6*time.Minute)
		if res, err := e.svc.Purge(t.Context(), 90*24*time.Hour, false); err != nil || res.MFAChallenges != 2 {
			t.Errorf("purge a day after the challenges expired: %+v, %v; want both challenges", res, err)
		}
	})
}

// TestEnrolmentAcrossALock: a right password whose check was under way when
// the account locked gets no TOTP secret, and confirming is refused while
// the account is locked.
func TestEnrolmentAcrossALock(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		var hold *holdOnce
		e := newEnv(t, open(t), holdingOnce(&hold))
		e.registerVerified("held@example.org", goodPassword)
		tok, _ := e.login("held@example.org", goodPassword)
		enrol := func(pw string) response {
			return e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": pw}, bearer(tok)...)
		}
		hold.arm()
		done := make(chan response)
		go func() { done <- enrol(goodPassword) }()
		<-hold.entered
		for range 5 {
			want(t, "wrong password", enrol("a wrong guess"), 401, "invalid_credentials")
		}
		close(hold.release)
		want(t, "the right password that hashed across the lock", <-done, 423, "account_locked")
		want(t, "confirm while locked", e.do("POST", "/v1/users/me/mfa/totp/confirm", map[string]string{"code": "123456"},
			bearer(tok)...), 423, "account_locked")
	})
}

// TestEnablingTOTPEndsOtherSessions: sessions that passed the password
// alone end when a second factor is enabled; the enrolling one stays, and
// the enabling's row and the revocation say how many ended, and why.
func TestEnablingTOTPEndsOtherSessions(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("two@example.org", goodPassword)
		other, otherRefresh := e.login("two@example.org", goodPassword)
		access, _ := e.login("two@example.org", goodPassword)
		r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
		want(t, "enrol", r, 200, "")
		want(t, "confirm", e.do("POST", "/v1/users/me/mfa/totp/confirm",
			map[string]string{"code": totpAt(t, r.str("secret"), e.clock.Now())}, bearer(access)...), 200, "")
		if e.active(other) || !e.active(access) {
			t.Errorf("after enabling TOTP: other session active %v, enrolling session active %v; want false, true",
				e.active(other), e.active(access))
		}
		want(t, "refresh of the password-only session", e.do("POST", "/v1/auth/refresh",
			map[string]string{"refresh_token": otherRefresh}), 401, "invalid_token")
		logs := e.logRows("two@example.org", authd.EventMFAEnabled)
		if len(logs) != 1 || logs[0].AdditionalContext["sessions_revoked"] != float64(1) {
			t.Errorf("mfa_enabled rows %+v, want one telling of the 1 session ended", logs)
		}
		// The revocation names the flow, as the owner's export shows it.
		revs, err := e.store.RevocationEvents(context.Background(), 0, e.clock.Now(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(revs) != 1 || revs[0].Reason != "mfa_enabled" || revs[0].Subject.String() != jwtClaims(t, other)["sid"] {
			t.Errorf("revocation events %+v, want the other session's, for mfa_enabled", revs)
		}
	})
}

// TestHangingUpCountsCodes: a wrong second-factor code whose client has
// hung up (its request's context cancelled) is still counted against the
// account (and the mfa_token), at login and at a step-up, so that hanging
// up cannot buy unlimited guesses.
func TestHangingUpCountsCodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	access, _, _ := e.mfaUser("gone@example.org")
	a, err := e.svc.Authenticate(context.Background(), access)
	if err != nil {
		t.Fatal(err)
	}
	gone, hangUp := context.WithCancel(context.Background())
	hangUp()
	failures := func() int { return e.user("gone@example.org").FailedLoginAttempts }
	err = e.svc.DisableTOTP(gone, authd.Client{IP: "192.0.2.8"}, a, "", authd.StepUp{Code: "000000"})
	if authd.ErrorCode(err) != authd.EInvalidCredentials || failures() != 1 {
		t.Errorf("a step-up's wrong code with the client gone: %v, %d failures; want counted", err, failures())
	}
	token := e.mfaLogin("gone@example.org")
	for i := range 3 {
		_, err := e.svc.VerifyMFA(gone, authd.Client{IP: "192.0.2.8"}, token, authd.MethodTOTP, "000000")
		if authd.ErrorCode(err) != authd.EInvalidCredentials || failures() != 2+i {
			t.Fatalf("wrong login code %d with the client gone: %v, %d failures; want counted", i+1, err, failures())
		}
	}
}

// TestHangingUpCountsStepUpRecheck: the second factor of a sensitive
// change (here a password change), checked again in the change's own
// transaction, is counted when wrong even after its client has hung up.
func TestHangingUpCountsStepUpRecheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	access, _, _ := e.mfaUser("recheck@example.org")
	a, err := e.svc.Authenticate(context.Background(), access)
	if err != nil {
		t.Fatal(err)
	}
	gone, hangUp := context.WithCancel(context.Background())
	hangUp()
	err = e.svc.ChangePassword(gone, authd.Client{IP: "192.0.2.9"}, a, goodPassword, "another good passphrase 2",
		authd.StepUp{Code: "000000"})
	if n := e.user("recheck@example.org").FailedLoginAttempts; authd.ErrorCode(err) != authd.EInvalidCredentials || n != 1 {
		t.Errorf("a password change's wrong code with the client gone: %v, %d failures; want counted", err, n)
	}
}

// TestHangingUpAddsThePasskey: a passkey registration finished by a client
// that has hung up is kept (its ceremony spent, its recovery codes made),
// not rolled back half-way: its user, told it failed, would add it again
// and find it excluded as already registered.
func TestHangingUpAddsThePasskey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("gone@example.org", goodPassword)
	access, _ := e.login("gone@example.org", goodPassword)
	a, err := e.svc.Authenticate(context.Background(), access)
	if err != nil {
		t.Fatal(err)
	}
	gone, hangUp := context.WithCancel(context.Background())
	hangUp()
	k := newSoftKey(t, rpID, rpOrigin)
	cred, _ := json.Marshal(k.Create(e.beginRegistration(access)))
	before := len(e.events("gone@example.org"))
	added, err := e.svc.FinishPasskeyRegistration(gone, authd.Client{}, a, "Laptop", cred)
	if err != nil || len(added.RecoveryCodes) == 0 {
		t.Fatalf("a registration whose client hung up: %v; want the passkey added, with recovery codes", err)
	}
	if keys, err := e.svc.Passkeys(context.Background(), a); err != nil || len(keys) != 1 {
		t.Errorf("the user's passkeys after it: %d, %v; want the one", len(keys), err)
	}
	if got := e.events("gone@example.org")[before:]; !slices.Contains(got, "passkey_added/success") {
		t.Errorf("security log after it: %v; want passkey_added/success", got)
	}
}

// wrongCodes returns n six-digit codes that are none of secret's codes
// within two steps of at.
func wrongCodes(t testing.TB, secret string, at time.Time, n int) []string {
	t.Helper()
	right := map[string]bool{}
	for d := -2; d <= 2; d++ {
		right[totpAt(t, secret, at.Add(time.Duration(d)*30*time.Second))] = true
	}
	var out []string
	for i := 0; len(out) < n; i++ {
		if c := fmt.Sprintf("%06d", (i*7919+13)%1000000); !right[c] {
			out = append(out, c)
		}
	}
	return out
}

// TestStaleEnrolmentDies: an enrolment not confirmed within
// TOTPEnrolmentTTL, or begun before the password changed or a passkey was
// added, cannot be confirmed by anyone later (an intruder who began one
// knows its secret), and is gone; a fresh one confirms.
func TestStaleEnrolmentDies(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "stale@example.org"
		e.registerVerified(email, goodPassword)
		enrol := func(tok, password string) string {
			t.Helper()
			r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": password}, bearer(tok)...)
			want(t, "enrol", r, 200, "")
			return r.str("secret")
		}
		confirm := func(tok, secret string) response {
			return e.do("POST", "/v1/users/me/mfa/totp/confirm", map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(tok)...)
		}
		pending := func() int {
			t.Helper()
			factors, err := e.store.Factors(context.Background(), e.user(email).ID)
			if err != nil {
				t.Fatal(err)
			}
			return len(factors)
		}

		intruder, _ := e.login(email, goodPassword)
		secret := enrol(intruder, goodPassword)
		e.clock.Advance(authd.TOTPEnrolmentTTL)
		want(t, "confirm once the enrolment has expired", confirm(intruder, secret), 404, "not_found")
		if n := pending(); n != 0 {
			t.Errorf("an expired enrolment was kept: %d factors", n)
		}

		secret = enrol(intruder, goodPassword)
		e.clock.Advance(time.Second)
		owner, _ := e.login(email, goodPassword)
		const newPassword = "a brand new passphrase 42"
		want(t, "change password", e.do("POST", "/v1/auth/password/change", map[string]string{
			"current_password": goodPassword, "new_password": newPassword}, bearer(owner)...), 204, "")
		want(t, "confirm an enrolment begun before the password changed", confirm(owner, secret), 404, "not_found")

		secret = enrol(owner, newPassword)
		e.clock.Advance(time.Second)
		k := newSoftKey(t, rpID, rpOrigin)
		r := e.do("POST", "/v1/users/me/passkeys/begin", map[string]any{"password": newPassword}, bearer(owner)...)
		want(t, "begin passkey", r, 200, "")
		want(t, "add passkey", e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{"name": "Laptop",
			"credential": k.Create(publicKey(t, r))}, bearer(owner)...), 201, "")
		want(t, "confirm an enrolment begun before a passkey was added", confirm(owner, secret), 404, "not_found")
		if got := e.events(email); !slices.Contains(got, "mfa_enabled/failure") {
			t.Errorf("events %v lack the refused confirmation", got)
		}

		r = e.do("POST", "/v1/users/me/mfa/totp", map[string]any{"password": newPassword, "passkey": e.stepUp(owner, k)}, bearer(owner)...)
		want(t, "enrol beside the passkey", r, 200, "")
		e.clock.Advance(authd.TOTPEnrolmentTTL - time.Second)
		want(t, "confirm a live enrolment", confirm(owner, r.str("secret")), 200, "")
	})
}

// TestWrongConfirmCodesLock: wrong codes at confirm count toward the lock
// (SPEC 6.7) as at login, so a stolen session cannot guess a pending
// enrolment's code; a client that hangs up is counted too.
func TestWrongConfirmCodesLock(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "guess@example.org"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
		want(t, "enrol", r, 200, "")
		secret := r.str("secret")
		codes := wrongCodes(t, secret, e.clock.Now(), e.cfg.LockoutThreshold)
		a, err := e.svc.Authenticate(context.Background(), access)
		if err != nil {
			t.Fatal(err)
		}
		gone, hangUp := context.WithCancel(context.Background())
		hangUp()
		if _, err := e.svc.ConfirmTOTP(gone, authd.Client{IP: "192.0.2.9"}, a, codes[0]); authd.ErrorCode(err) != authd.EInvalidCredentials {
			t.Fatalf("a wrong code with the client gone: %v", err)
		}
		for i, c := range codes[1:] {
			want(t, fmt.Sprintf("wrong code %d", i+2), e.do("POST", "/v1/users/me/mfa/totp/confirm", map[string]string{"code": c},
				bearer(access)...), 401, "invalid_credentials")
		}
		if u := e.user(email); u.AccountStatus != authd.StatusLocked || u.FailedLoginAttempts != e.cfg.LockoutThreshold {
			t.Errorf("after %d wrong confirm codes: status %s, %d failures; want locked", len(codes), u.AccountStatus, u.FailedLoginAttempts)
		}
		want(t, "the right code while locked", e.do("POST", "/v1/users/me/mfa/totp/confirm",
			map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 423, "account_locked")
	})
}

// TestFactorChangesAreMailed: every change to a user's second factors made
// from a signed-in session mails the owner a notice, whatever the address's
// mail budget (which anyone can spend with forgot-password): a factor an
// intruder adds outlives a password reset, so the owner must hear of it.
// And a lock set by wrong codes tells the owner that the password was right.
// Before, none of these changes mailed anything, and the lock notice said
// someone "may be guessing your password".
func TestFactorChangesAreMailed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withRateLimit())
	const email = "noticed@example.org"
	e.registerVerified(email, goodPassword)
	access, _ := e.login(email, goodPassword)
	spend := func(email string) { // the address's mails for the hour, spent by anyone
		t.Helper()
		for range 4 {
			if e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}).status == 429 {
				return
			}
		}
		t.Fatalf("forgot-password for %s answered no 429", email)
	}
	spend(email)

	r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
	want(t, "enrol", r, 200, "")
	secret := r.str("secret")
	totp := func() string { e.clock.Advance(30 * time.Second); return totpAt(t, secret, e.clock.Now()) }
	want(t, "confirm", e.do("POST", "/v1/users/me/mfa/totp/confirm", map[string]string{"code": totpAt(t, secret, e.clock.Now())},
		bearer(access)...), 200, "")
	want(t, "replace the recovery codes", e.do("POST", "/v1/users/me/mfa/recovery-codes", map[string]string{"code": totp()},
		bearer(access)...), 200, "")
	k := newSoftKey(t, rpID, rpOrigin)
	e.clock.Advance(30 * time.Second)
	r = e.do("POST", "/v1/users/me/passkeys/begin", map[string]any{"password": goodPassword, "code": totpAt(t, secret, e.clock.Now())},
		bearer(access)...)
	want(t, "begin a passkey", r, 200, "")
	r = e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{"name": "Key", "credential": k.Create(publicKey(t, r))},
		bearer(access)...)
	want(t, "add a passkey", r, 201, "")
	want(t, "remove it", e.do("DELETE", "/v1/users/me/passkeys/"+r.str("id"), map[string]string{"code": totp()},
		bearer(access)...), 204, "")
	want(t, "turn TOTP off", e.do("DELETE", "/v1/users/me/mfa/totp", map[string]string{"code": totp()},
		bearer(access)...), 204, "")

	e.mail.flush()
	e.mail.mu.Lock()
	var changes []authd.FactorChange
	for _, m := range e.mail.mails {
		if m.Kind == authd.MailFactorChanged && m.To == email {
			changes = append(changes, m.Change)
		}
	}
	e.mail.mu.Unlock()
	if wantChanges := []authd.FactorChange{authd.ChangeTOTPEnabled, authd.ChangeCodesReplaced, authd.ChangePasskeyAdded,
		authd.ChangePasskeyRemoved, authd.ChangeTOTPDisabled}; !slices.Equal(changes, wantChanges) {
		t.Errorf("factor notices %v, want %v", changes, wantChanges)
	}

	// Wrong codes past the right password lock the account, and its notice
	// says the password was right, budget or not.
	e.mfaUser("guessed.codes@example.org")
	spend("guessed.codes@example.org")
	token := e.mfaLogin("guessed.codes@example.org")
	for i := range 5 {
		r := e.verify(token, "totp", "000000")
		if i == 4 {
			want(t, "the fifth wrong code", r, 401, "invalid_credentials")
		}
	}
	if m := e.mail.last(t, authd.MailAccountLocked, "guessed.codes@example.org"); !m.AfterCodes {
		t.Errorf("lock notice %+v, want it to say codes set the lock", m)
	}
}

// TestFactorNoticesAreBounded: the notices that skip the address's mail
// budget cannot be made without end: replacing the recovery codes in a
// loop (each new set proving the next) mails factorNoticesPerHour notices,
// not one per replacement, while an addition is still told; and starting
// factor additions is limited, counted once the password checked. Before,
// twelve replacements mailed twelve notices.
func TestFactorNoticesAreBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withRateLimit())
	const email = "flood@example.org"
	access, secret, codes := e.mfaUser(email)
	before := e.mail.count(authd.MailFactorChanged, email)
	for i := range 12 {
		r := e.do("POST", "/v1/users/me/mfa/recovery-codes", map[string]string{"code": codes[0]}, bearer(access)...)
		want(t, fmt.Sprintf("replacement %d", i+1), r, 200, "")
		codes = codes[:0]
		for _, c := range r.body["recovery_codes"].([]any) {
			codes = append(codes, c.(string))
		}
		e.clock.Advance(10 * time.Second)
	}
	if n := e.mail.count(authd.MailFactorChanged, email) - before; n != 5 {
		t.Errorf("%d notices for 12 replacements in two minutes, want 5", n)
	}
	// An addition is told past that budget.
	r := e.do("POST", "/v1/users/me/passkeys/begin", map[string]any{"password": goodPassword, "code": codes[0]},
		bearer(access)...)
	want(t, "begin a passkey", r, 200, "")
	r = e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{"name": "Key",
		"credential": newSoftKey(t, rpID, rpOrigin).Create(publicKey(t, r))}, bearer(access)...)
	want(t, "add a passkey", r, 201, "")
	if n := e.mail.count(authd.MailFactorChanged, email) - before; n != 6 {
		t.Errorf("%d notices once a passkey was added past the budget, want 6", n)
	}
	// So is a removal: five replacements cannot silence it.
	e.clock.Advance(30 * time.Second)
	want(t, "remove the passkey", e.do("DELETE", "/v1/users/me/passkeys/"+r.str("id"),
		map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 204, "")
	if n := e.mail.count(authd.MailFactorChanged, email) - before; n != 7 {
		t.Errorf("%d notices once the passkey was removed past the budget, want 7", n)
	}
	// Wrong passwords spend none of the additions.
	for range 2 {
		want(t, "a begin with a wrong password", e.do("POST", "/v1/users/me/passkeys/begin",
			map[string]any{"password": "not the password", "code": codes[1]}, bearer(access)...), 401, "invalid_credentials")
	}
	var last response
	for i := range 9 { // the TOTP enrolment and the passkey were the first two begun this hour
		e.clock.Advance(time.Minute) // past the per-minute limit on password checks
		last = e.do("POST", "/v1/users/me/passkeys/begin", map[string]any{"password": goodPassword,
			"code": codes[i+1]}, bearer(access)...)
		if i < 8 {
			want(t, fmt.Sprintf("passkey registration %d begun", i+3), last, 200, "")
		}
	}
	want(t, "the eleventh addition begun in an hour", last, 429, "rate_limited")
}

// TestFactorBudgetsArePerAccount: the budgets of factor additions begun
// and of recovery-code notices are each account's own: one account that
// spent both neither silences another's notice nor stops its additions.
func TestFactorBudgetsArePerAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withRateLimit())
	replace := func(access string, codes []string) []string {
		t.Helper()
		r := e.do("POST", "/v1/users/me/mfa/recovery-codes", map[string]string{"code": codes[0]}, bearer(access)...)
		want(t, "replace the recovery codes", r, 200, "")
		codes = codes[:0]
		for _, c := range r.body["recovery_codes"].([]any) {
			codes = append(codes, c.(string))
		}
		e.clock.Advance(10 * time.Second)
		return codes
	}
	const spender, other = "spender@example.org", "other.account@example.org"
	access, _, codes := e.mfaUser(spender)
	otherAccess, _, otherCodes := e.mfaUser(other)
	before := e.mail.count(authd.MailFactorChanged, spender)
	for range 6 {
		codes = replace(access, codes)
	}
	if n := e.mail.count(authd.MailFactorChanged, spender) - before; n != 5 {
		t.Fatalf("%d notices for 6 replacements, want 5", n)
	}
	before = e.mail.count(authd.MailFactorChanged, other)
	otherCodes = replace(otherAccess, otherCodes)
	if n := e.mail.count(authd.MailFactorChanged, other) - before; n != 1 {
		t.Errorf("another account's replacement: %d notices, want 1", n)
	}

	begin := func(access, code string) response {
		t.Helper()
		e.clock.Advance(time.Minute) // past the per-minute limit on password checks
		return e.do("POST", "/v1/users/me/passkeys/begin", map[string]any{"password": goodPassword, "code": code},
			bearer(access)...)
	}
	for i := 0; ; i++ {
		if i == len(codes) {
			t.Fatal("no addition refused")
		}
		if r := begin(access, codes[i]); r.status == 429 {
			break
		}
	}
	want(t, "another account's addition", begin(otherAccess, otherCodes[0]), 200, "")
}

// TestLockPastThePasswordIsTold: a lock whose count someone who passed the
// password took part in tells the owner so, past the address's mail budget:
// four wrong codes after the right password, then a wrong password (which
// mailed nothing once the budget was spent). The owner's own sign-in with
// the second factor, then wrong passwords, is an ordinary lock.
func TestLockPastThePasswordIsTold(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		wrongPassword := func(email string) {
			t.Helper()
			want(t, "a wrong password", e.do("POST", "/v1/auth/login", map[string]string{"email": email,
				"password": "not the password"}), 401, "invalid_credentials")
		}

		const owner = "own.login@example.org"
		_, secret, _ := e.mfaUser(owner)
		want(t, "the owner's sign-in", e.verify(e.mfaLogin(owner), "totp", totpAt(t, secret, e.clock.Now())), 200, "")
		e.clock.Advance(time.Minute)
		for range 5 {
			wrongPassword(owner)
		}
		if m := e.mail.last(t, authd.MailAccountLocked, owner); m.AfterCodes {
			t.Errorf("lock notice after the owner's own sign-in %+v, want an ordinary one", m)
		}

		const other = "mixed@example.org"
		e.mfaUser(other)
		for i := 0; e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": other}).status != 429; i++ {
			if i == 3 {
				t.Fatal("forgot-password answered no 429")
			}
		}
		e.clock.Advance(time.Minute)
		token := e.mfaLogin(other)
		for range 4 {
			want(t, "a wrong code", e.verify(token, "totp", "000000"), 401, "invalid_credentials")
		}
		wrongPassword(other)
		if m := e.mail.last(t, authd.MailAccountLocked, other); !m.AfterCodes {
			t.Errorf("lock notice %+v, want it to say the password was right", m)
		}
	})
}

// TestLocksPastThePasswordGrow: a lock set by someone who passed the
// password (wrong codes; or a wrong password ending a count that wrong
// codes took part in, however long after) lasts twice as long as the one
// before it within the week, up to a day: at a fixed duration they
// could guess a code 480 times a day. An outsider's wrong passwords lock
// for the fixed duration and do not count, also while the owner's code is
// awaited, or after the owner mistyped a code and then gave the right one;
// a week without such a lock starts over, a new password does not
// (TestResetKeepsWhatCodesCounted).
func TestLocksPastThePasswordGrow(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "grow@example.org"
		_, secret, _ := e.mfaUser(email)
		wrongCode := func(token string) {
			t.Helper()
			want(t, "a wrong code", e.verify(token, "totp", e.wrongCode(secret)), 401, "invalid_credentials")
		}
		wrongPassword := func() {
			t.Helper()
			want(t, "a wrong password", e.do("POST", "/v1/auth/login", map[string]string{"email": email,
				"password": "not the password"}), 401, "invalid_credentials")
		}
		// lockedFor checks the account's lock (always the fixed 15
		// minutes, which anyone's login reads) and how long codes are
		// refused (0: not), then moves past both.
		lockedFor := func(name string, want time.Duration) {
			t.Helper()
			u, now := e.user(email), e.clock.Now()
			if got := u.AccountLockedUntil.Sub(now); u.AccountStatus != authd.StatusLocked || got != 15*time.Minute {
				t.Errorf("%s: %s for %v; want the account locked for the fixed 15m", name, u.AccountStatus, got)
			}
			if got := max(u.CodesLockedUntil.Sub(now), 0); got != want {
				t.Errorf("%s: codes refused for %v; want %v", name, got, want)
			}
			e.clock.Advance(max(want, 15*time.Minute) + time.Second)
		}
		codes := func() {
			t.Helper()
			token := e.mfaLogin(email)
			for range 5 {
				wrongCode(token)
			}
		}

		codes()
		lockedFor("five wrong codes", 15*time.Minute)
		codes()
		// Past the account's lock, the codes' lock goes on: an outsider's
		// login is answered as for any account (a longer lock would tell
		// that the address has one), the password's holder gets no code
		// checked.
		e.clock.Advance(15*time.Minute + time.Second)
		if r := e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": "not the password"}); r.status != 401 {
			t.Errorf("an outsider's login once the account's lock ended: %d; want 401, as for any address", r.status)
		}
		r := e.verify(e.mfaLogin(email), "totp", totpAt(t, secret, e.clock.Now()))
		want(t, "a right code while codes are refused", r, 423, "account_locked")
		if ra := r.header.Get("Retry-After"); ra != "899" {
			t.Errorf("Retry-After %q while codes are refused; want the codes' 899 s left", ra)
		}
		e.clock.Advance(15 * time.Minute)
		want(t, "the owner's sign-in once the codes' 30 minutes are over", // which clears the outsider's failure
			e.verify(e.mfaLogin(email), "totp", totpAt(t, secret, e.clock.Now())), 200, "")
		e.clock.Advance(time.Minute)
		token := e.mfaLogin(email)
		for range 4 {
			wrongCode(token)
		}
		wrongPassword()
		lockedFor("four wrong codes and a wrong password", time.Hour)
		token = e.mfaLogin(email)
		for range 4 {
			wrongCode(token)
		}
		e.clock.Advance(10 * time.Minute) // the challenge has expired
		wrongPassword()
		lockedFor("four wrong codes, and a wrong password once their challenge expired", 2*time.Hour)
		for range 5 {
			wrongPassword()
		}
		lockedFor("an outsider's five wrong passwords", 0)
		e.mfaLogin(email) // the owner's sign-in, awaiting its code
		for range 5 {
			wrongPassword()
		}
		lockedFor("an outsider's five wrong passwords while the owner's code is awaited", 0)
		if m := e.mail.last(t, authd.MailAccountLocked, email); !m.AfterCodes {
			t.Errorf("that lock's notice %+v; want it to say the password was right", m)
		}
		for _, d := range []time.Duration{4 * time.Hour, 8 * time.Hour, 16 * time.Hour, 24 * time.Hour, 24 * time.Hour} {
			codes()
			lockedFor("wrong codes once more", d)
		}
		e.clock.Advance(8 * 24 * time.Hour)
		codes()
		lockedFor("wrong codes after a week without", 15*time.Minute)

		// The owner's own mistyped code in a session, then the right one:
		// an outsider's wrong passwords after it lock for the fixed time.
		r = e.verify(e.mfaLogin(email), "totp", totpAt(t, secret, e.clock.Now()))
		want(t, "the owner's sign-in", r, 200, "")
		access := r.str("access_token")
		e.clock.Advance(time.Minute)
		replace := func(code string) response {
			return e.do("POST", "/v1/users/me/mfa/recovery-codes", map[string]string{"code": code}, bearer(access)...)
		}
		want(t, "the owner's mistyped code", replace(e.wrongCode(secret)), 401, "invalid_credentials")
		want(t, "the owner's right code", replace(totpAt(t, secret, e.clock.Now())), 200, "")
		for range 4 {
			wrongPassword()
		}
		lockedFor("an outsider's wrong passwords after the owner's mistyped, then right, code", 0)
		if m := e.mail.last(t, authd.MailAccountLocked, email); m.AfterCodes {
			t.Errorf("that lock's notice %+v; want an ordinary one", m)
		}

		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		reset := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
		want(t, "reset", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": reset, "new_password": goodPassword}), 204, "")
		e.clock.Advance(time.Second)
		codes()
		lockedFor("wrong codes under a new password, the week's second such lock", 30*time.Minute)
	})
}

// TestCodeCountFollowsTheOwner: the wrong codes of a failure count are
// forgotten (an outsider's wrong passwords then lock for the fixed time)
// when the owner proves the second factor in a session, with a code or a
// passkey, or an administrator resets the failures; not while a sign-in
// that passed the password awaits its code, whose guesses they may be.
func TestCodeCountFollowsTheOwner(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		codesOf := func(email string) int { return e.user(email).FailedCodeAttempts }

		const byAdmin = "admin.reset@example.org"
		access, secret, _ := e.mfaUser(byAdmin)
		e.clock.Advance(time.Minute)
		want(t, "the owner's mistyped code", e.do("POST", "/v1/users/me/mfa/recovery-codes",
			map[string]string{"code": e.wrongCode(secret)}, bearer(access)...), 401, "invalid_credentials")
		want(t, "an administrator resets the failures", e.admin("POST", "/v1/admin/users/"+e.user(byAdmin).ID.String()+"/unlock", nil), 204, "")
		if n := codesOf(byAdmin); n != 0 {
			t.Errorf("after an administrator's reset of the failures: %d wrong codes still counted", n)
		}

		const byPasskey = "passkey.stepup@example.org"
		_, k, _ := e.passkeyUser(byPasskey)
		r := e.signIn(k)
		want(t, "the owner's passkey sign-in", r, 200, "")
		access = r.str("access_token")
		e.rememberPasskey(access, k)
		replace := func(body map[string]any) response {
			return e.do("POST", "/v1/users/me/mfa/recovery-codes", body, bearer(access)...)
		}
		want(t, "the owner's mistyped code", replace(map[string]any{"password": goodPassword, "code": "bbbbb-bbbbb"}),
			401, "invalid_credentials")
		want(t, "the owner's passkey step-up", replace(map[string]any{"password": goodPassword, "passkey": e.stepUp(access, k)}),
			200, "")
		if n := codesOf(byPasskey); n != 0 {
			t.Errorf("after the owner's passkey step-up: %d wrong codes still counted", n)
		}

		const guessed = "guessed@example.org"
		access, secret, _ = e.mfaUser(guessed)
		token := e.mfaLogin(guessed) // someone holding the password
		for range 4 {
			want(t, "a wrong code", e.verify(token, "totp", e.wrongCode(secret)), 401, "invalid_credentials")
		}
		want(t, "the owner's step-up meanwhile", e.do("POST", "/v1/users/me/mfa/recovery-codes",
			map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 200, "")
		if n := codesOf(guessed); n != 4 {
			t.Errorf("after the owner's step-up while another sign-in awaits its code: %d wrong codes counted, want 4", n)
		}
	})
}

// TestSpacedCodeGuessesLock: wrong codes past the password are not
// forgotten with time, as an outsider's wrong passwords are a day after
// the last: whoever holds the password, guessing one short of the
// threshold each day, reaches the lock and its notice the next day.
// Forgotten, they would guess a few codes a day for ever, unseen.
func TestSpacedCodeGuessesLock(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "spaced@example.org"
		_, secret, _ := e.mfaUser(email)
		token := e.mfaLogin(email)
		for range 4 {
			want(t, "a wrong code", e.verify(token, "totp", e.wrongCode(secret)), 401, "invalid_credentials")
		}
		e.clock.Advance(24*time.Hour + time.Minute)
		want(t, "a wrong code a day later", e.verify(e.mfaLogin(email), "totp", e.wrongCode(secret)), 401, "invalid_credentials")
		if u := e.user(email); u.AccountStatus != authd.StatusLocked {
			t.Errorf("after five wrong codes a day apart: status %s, want locked", u.AccountStatus)
		}
		if m := e.mail.last(t, authd.MailAccountLocked, email); !m.AfterCodes {
			t.Errorf("the lock's notice %+v; want it to say the password was right", m)
		}

		// An outsider's wrong passwords are forgotten a day after the last.
		const outsider = "outsider@example.org"
		e.registerVerified(outsider, goodPassword)
		wrong := func() response {
			return e.do("POST", "/v1/auth/login", map[string]string{"email": outsider, "password": "not the password 1"})
		}
		for range 4 {
			want(t, "a wrong password", wrong(), 401, "invalid_credentials")
		}
		e.clock.Advance(24*time.Hour + time.Minute)
		want(t, "a wrong password a day later", wrong(), 401, "invalid_credentials")
		if u := e.user(outsider); u.AccountStatus != authd.StatusActive || u.FailedLoginAttempts != 1 {
			t.Errorf("an outsider's fifth wrong password a day later: status %s, %d failures; want active, 1",
				u.AccountStatus, u.FailedLoginAttempts)
		}
	})
}

// TestResetKeepsWhatCodesCounted: a password reset proves the mailbox, not
// the second factor, so it does not give whoever holds both fresh guesses
// at a code: wrong codes counted before it still count (only a lock it
// lifts starts the count over), codes stay refused while a lock set past
// the password lasts, and such locks go on growing. Before, each reset
// wiped the count: four guesses per reset, three resets an hour.
func TestResetKeepsWhatCodesCounted(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "mailbox@example.org"
		_, secret, _ := e.mfaUser(email)
		passwords := []string{"the first new passphrase", "the second new passphrase"}
		reset := func(pw string) {
			t.Helper()
			want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
			link := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
			want(t, "reset", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": link, "new_password": pw}), 204, "")
			e.clock.Advance(time.Second)
		}
		challenge := func(pw string) string {
			t.Helper()
			r := e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": pw})
			want(t, "the new password", r, 403, "mfa_required")
			return r.str("mfa_token")
		}
		wrongCode := func(token string) response {
			return e.verify(token, "totp", e.wrongCode(secret))
		}

		token := e.mfaLogin(email)
		for range 4 {
			want(t, "a wrong code", wrongCode(token), 401, "invalid_credentials")
		}
		reset(passwords[0])
		want(t, "a fifth wrong code, after a reset", wrongCode(challenge(passwords[0])), 401, "invalid_credentials")
		u := e.user(email)
		if u.AccountStatus != authd.StatusLocked || !u.CodesLockedUntil.After(e.clock.Now()) {
			t.Fatalf("after four wrong codes, a reset and a fifth: %s, codes refused until %v; want locked, codes refused",
				u.AccountStatus, u.CodesLockedUntil)
		}
		codesUntil := u.CodesLockedUntil
		reset(passwords[1]) // lifts the account's lock (SPEC 6.7)
		if u := e.user(email); u.AccountStatus != authd.StatusActive || !u.CodesLockedUntil.Equal(codesUntil) {
			t.Errorf("after a reset: %s, codes refused until %v; want active, codes refused until %v",
				u.AccountStatus, u.CodesLockedUntil, codesUntil)
		}
		want(t, "a right code while codes are refused", e.verify(challenge(passwords[1]), "totp", totpAt(t, secret, e.clock.Now())),
			423, "account_locked")
		e.clock.Advance(codesUntil.Sub(e.clock.Now()) + time.Second)
		token = challenge(passwords[1])
		for range 5 {
			want(t, "a wrong code once codes are checked again", wrongCode(token), 401, "invalid_credentials")
		}
		if got := e.user(email).CodesLockedUntil.Sub(e.clock.Now()); got != 30*time.Minute {
			t.Errorf("the second lock past the password, across two resets, refuses codes for %v; want 30m", got)
		}

		// Wrong codes carried over resets still count as codes, however
		// many resets follow: the next failure, a wrong password too, sets
		// a lock past the password (codes refused, for longer each time).
		// Counted as plain failures, two resets in a row would forget them,
		// and one wrong password would set an ordinary lock that forgets
		// them when it ends: four fresh guesses at a code per reset.
		e.clock.Advance(31 * time.Minute)
		token = challenge(passwords[1])
		for range 4 {
			want(t, "a wrong code", wrongCode(token), 401, "invalid_credentials")
		}
		reset(passwords[0])
		reset(goodPassword)
		if u := e.user(email); u.FailedLoginAttempts != 4 || u.FailedCodeAttempts != 4 {
			t.Errorf("four wrong codes, then two resets: %d failures, %d of them codes; want 4 and 4",
				u.FailedLoginAttempts, u.FailedCodeAttempts)
		}
		want(t, "a wrong password", e.do("POST", "/v1/auth/login",
			map[string]string{"email": email, "password": "not the password"}), 401, "invalid_credentials")
		u = e.user(email)
		if u.AccountStatus != authd.StatusLocked || u.CodesLockedUntil.Sub(e.clock.Now()) != time.Hour {
			t.Errorf("after four wrong codes, two resets and a wrong password: %s, codes refused for %v; "+
				"want locked past the password, codes refused for 1h (the third such lock)",
				u.AccountStatus, u.CodesLockedUntil.Sub(e.clock.Now()))
		}
		if m := e.mail.last(t, authd.MailAccountLocked, email); !m.AfterCodes {
			t.Errorf("its notice %+v; want one that says codes were guessed", m)
		}
	})
}

// TestChangeForgetsGuessedCodes: a password changed in a session, with the
// current password and a right code, leaves the codes an intruder guessed
// as plain failures: the intruder does not know the new password, so an
// outsider's wrong password then sets an ordinary lock, not one past the
// password (no codes refused, no notice saying the password was passed).
func TestChangeForgetsGuessedCodes(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "changed.codes@example.org"
		access, secret, _ := e.mfaUser(email)
		token := e.mfaLogin(email) // the intruder, past the old password
		for range 4 {
			want(t, "a wrong code", e.verify(token, "totp", e.wrongCode(secret)), 401, "invalid_credentials")
		}
		want(t, "the owner's change, with a right code", e.do("POST", "/v1/auth/password/change", map[string]string{
			"current_password": goodPassword, "new_password": "a brand new passphrase",
			"code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 204, "")
		if u := e.user(email); u.FailedLoginAttempts != 4 || u.FailedCodeAttempts != 0 {
			t.Errorf("after the change: %d failures, %d of them codes; want 4 plain ones", u.FailedLoginAttempts, u.FailedCodeAttempts)
		}
		want(t, "an outsider's wrong password", e.do("POST", "/v1/auth/login",
			map[string]string{"email": email, "password": "not the password"}), 401, "invalid_credentials")
		u := e.user(email)
		if u.AccountStatus != authd.StatusLocked || u.CodesLockedUntil.After(e.clock.Now()) {
			t.Errorf("after an outsider's wrong password: %s, codes refused until %v; want an ordinary lock",
				u.AccountStatus, u.CodesLockedUntil)
		}
		if m := e.mail.last(t, authd.MailAccountLocked, email); m.AfterCodes {
			t.Errorf("its notice %+v; want an ordinary one", m)
		}
	})
}

// TestAdminActionsEndTheCodesLock: an administrator's unlock lifts the
// refusal of codes and starts the growth of such locks over; a reset of the
// second factors lifts it too (with no factor left it protects nothing, and
// would refuse the first code of the factor enrolled next).
func TestAdminActionsEndTheCodesLock(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "admin.ends@example.org"
		_, secret, _ := e.mfaUser(email)
		id := e.user(email).ID.String()
		codes := func() {
			t.Helper()
			token := e.mfaLogin(email)
			for range 5 {
				want(t, "a wrong code", e.verify(token, "totp", e.wrongCode(secret)), 401, "invalid_credentials")
			}
		}
		codesFor := func(name string, want time.Duration) {
			t.Helper()
			if got := max(e.user(email).CodesLockedUntil.Sub(e.clock.Now()), 0); got != want {
				t.Errorf("%s: codes refused for %v; want %v", name, got, want)
			}
		}
		codes()
		codesFor("five wrong codes", 15*time.Minute)
		e.clock.Advance(16 * time.Minute)
		codes()
		codesFor("five more", 30*time.Minute)
		e.clock.Advance(time.Second)
		want(t, "an administrator's unlock", e.admin("POST", "/v1/admin/users/"+id+"/unlock", nil), 204, "")
		codesFor("after the unlock", 0)
		// An administrator's reads of the account since are actions too:
		// they do not hide the unlock.
		for range authd.MaxListLimit + 1 {
			e.clock.Advance(time.Millisecond)
			want(t, "an administrator's read of the factors", e.admin("GET", "/v1/admin/users/"+id+"/mfa", nil), 200, "")
		}
		e.clock.Advance(time.Minute)
		codes()
		codesFor("five wrong codes after the unlock", 15*time.Minute)

		want(t, "reset the factors", e.admin("POST", "/v1/admin/users/"+id+"/reset-mfa", nil), 204, "")
		codesFor("after the reset of the factors", 0)
		e.clock.Advance(16 * time.Minute) // past the account's own lock
		access, _ := e.login(email, goodPassword)
		r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
		want(t, "enrol again", r, 200, "")
		want(t, "confirm the new factor", e.do("POST", "/v1/users/me/mfa/totp/confirm",
			map[string]string{"code": totpAt(t, r.str("secret"), e.clock.Now())}, bearer(access)...), 200, "")
	})
}

// TestPasskeySignInKeepsTheCodesLock: the owner's passkey sign-in proves a
// factor, not that the one guessing codes with the password has gone: codes
// stay refused until the lock set past the password ends.
func TestPasskeySignInKeepsTheCodesLock(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "both@example.org"
		access, secret, _ := e.mfaUser(email)
		k := newSoftKey(t, rpID, rpOrigin)
		want(t, "add a passkey", e.addPasskey(access, k, "Laptop"), 201, "")
		token := e.mfaLogin(email)
		for range 5 {
			want(t, "a wrong code", e.verify(token, "totp", e.wrongCode(secret)), 401, "invalid_credentials")
		}
		until := e.user(email).CodesLockedUntil
		if !until.After(e.clock.Now()) {
			t.Fatalf("after five wrong codes, codes refused until %v; want a lock", until)
		}
		r := e.signIn(k)
		want(t, "the owner's passkey sign-in", r, 200, "")
		if got := e.user(email).CodesLockedUntil; !got.Equal(until) {
			t.Errorf("after the owner's passkey sign-in, codes refused until %v; want %v", got, until)
		}
		e.clock.Advance(time.Minute)
		want(t, "a right code in that session while codes are refused", e.do("POST", "/v1/users/me/mfa/recovery-codes",
			map[string]string{"password": goodPassword, "code": totpAt(t, secret, e.clock.Now())}, bearer(r.str("access_token"))...),
			423, "account_locked")
	})
}

// TestEnrolmentReplacesAPendingOne: a second enrolment before the first is
// confirmed replaces it (an app scanned twice, a page reloaded): one
// factor is stored, the replaced secret's code no longer confirms, and the
// new secret's does.
func TestEnrolmentReplacesAPendingOne(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "again@example.org"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		enrol := func(what string) string {
			t.Helper()
			r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
			want(t, what, r, 200, "")
			return r.str("secret")
		}
		replaced := enrol("enrol")
		secret := enrol("enrol again before confirming")
		if factors, err := e.store.Factors(context.Background(), e.user(email).ID); err != nil || len(factors) != 1 {
			t.Fatalf("stored factors after enrolling twice: %+v (%v); want one", factors, err)
		}
		confirm := func(secret string) response {
			return e.do("POST", "/v1/users/me/mfa/totp/confirm", map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(access)...)
		}
		want(t, "confirm with the replaced secret's code", confirm(replaced), 401, "invalid_credentials")
		want(t, "confirm with the new secret's code", confirm(secret), 200, "")
	})
}

// logRows returns the security-log rows of email's account of event,
// newest first (at most authd.MaxListLimit).
func (e *env) logRows(email string, event authd.EventType) []*authd.SecurityLog {
	e.t.Helper()
	logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: e.user(email).ID,
		EventType: event, Limit: authd.MaxListLimit})
	if err != nil {
		e.t.Fatal(err)
	}
	return logs
}

// failureReasons returns the reasons of the failures logged for email's
// account as event, oldest first.
func (e *env) failureReasons(email string, event authd.EventType) []string {
	e.t.Helper()
	var out []string
	for _, l := range slices.Backward(e.logRows(email, event)) {
		if l.Result == authd.ResultFailure {
			out = append(out, l.FailureReason)
		}
	}
	return out
}

// TestPendingEnrolmentIsNoStepUp: the code of a TOTP enrolment not yet
// confirmed proves no second factor: a passkey user's step-up with it is
// a wrong code, counted, and the change is refused; the enrolment itself
// still confirms with it.
func TestPendingEnrolmentIsNoStepUp(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "pending@example.org"
		access, k, _ := e.passkeyUser(email)
		r := e.do("POST", "/v1/users/me/mfa/totp", map[string]any{"password": goodPassword, "passkey": e.stepUp(access, k)},
			bearer(access)...)
		want(t, "enrol TOTP", r, 200, "")
		code := totpAt(t, r.str("secret"), e.clock.Now())
		want(t, "a step-up with the pending enrolment's code", e.do("POST", "/v1/users/me/mfa/recovery-codes",
			map[string]string{"code": code}, bearer(access)...), 401, "invalid_credentials")
		if n := e.user(email).FailedLoginAttempts; n != 1 {
			t.Errorf("failed attempts after the pending enrolment's code as a step-up: %d, want 1", n)
		}
		want(t, "confirm with the code", e.do("POST", "/v1/users/me/mfa/totp/confirm", map[string]string{"code": code},
			bearer(access)...), 200, "")
	})
}

// TestDeadMFATokenIsLogged: an mfa_token presented once it has died, of
// too many wrong codes or of age, is refused and logged with the reason.
func TestDeadMFATokenIsLogged(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withConfig(func(c *authd.Config) { c.LockoutThreshold = 20 }))
		const email = "dead@example.org"
		_, secret, _ := e.mfaUser(email)
		token := e.mfaLogin(email)
		for i := range authd.MaxMFAFailures {
			want(t, fmt.Sprintf("wrong code %d", i+1), e.verify(token, "totp", e.wrongCode(secret)), 401, "invalid_credentials")
		}
		want(t, "the token after its wrong codes", e.verify(token, "totp", totpAt(t, secret, e.clock.Now())), 400, "invalid_token")
		token = e.mfaLogin(email)
		e.clock.Advance(authd.MFAChallengeTTL)
		want(t, "the token once expired", e.verify(token, "totp", totpAt(t, secret, e.clock.Now())), 400, "invalid_token")
		got := e.failureReasons(email, authd.EventMFAChallengeFailed)
		for _, reason := range []string{"too many wrong codes", "mfa token expired"} {
			if !slices.Contains(got, reason) {
				t.Errorf("mfa_challenge_failed reasons %q lack %q", got, reason)
			}
		}
	})
}

// TestTOTPIssuerConfigured: a configured TOTP issuer names authd in the
// otpauth URI (as the label's prefix and as issuer), in place of the host
// of the public URL.
func TestTOTPIssuerConfigured(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withConfig(func(c *authd.Config) { c.TOTPIssuer = "Example Login" }))
	e.registerVerified("iss@example.org", goodPassword)
	access, _ := e.login("iss@example.org", goodPassword)
	r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
	want(t, "enrol", r, 200, "")
	u, err := url.Parse(r.str("otpauth_uri"))
	if err != nil || u.Query().Get("issuer") != "Example Login" || !strings.HasPrefix(u.Path, "/Example Login:") {
		t.Errorf("otpauth_uri %q (%v); want the configured issuer", r.str("otpauth_uri"), err)
	}
}

// TestMFAStatusHoldsNoSecret: the second factors the service lists, to the
// user and to an administrator, carry no secret, not even the encrypted
// one: MFAStatus is what may be shown.
func TestMFAStatusHoldsNoSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	access, _, _ := e.mfaUser("bare@example.org")
	a, err := e.svc.Authenticate(context.Background(), access)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := e.svc.MFA(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := e.svc.UserMFA(context.Background(), authd.Client{}, e.user("bare@example.org").ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []*authd.MFAStatus{mine, theirs} {
		if len(st.Factors) != 1 {
			t.Fatalf("%d factors listed, want 1", len(st.Factors))
		}
		if f := st.Factors[0]; f.Secret != "" {
			t.Errorf("the listed %s factor carries a secret (%d characters); want none", f.Kind, len(f.Secret))
		}
	}
}

// TestConfirmingTOTPForgetsTheOwnersWrongCodes: a right code confirming a
// TOTP enrolment proves the factor in a session, as a step-up does
// (TestCodeCountFollowsTheOwner): the wrong confirmation codes before it
// were the owner's, and are no longer counted as codes guessed past the
// password; the failure count itself stands.
func TestConfirmingTOTPForgetsTheOwnersWrongCodes(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "typo@example.org"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
		want(t, "enrol", r, 200, "")
		secret := r.str("secret")
		confirm := func(code string) response {
			return e.do("POST", "/v1/users/me/mfa/totp/confirm", map[string]string{"code": code}, bearer(access)...)
		}
		want(t, "a mistyped code", confirm(e.wrongCode(secret)), 401, "invalid_credentials")
		if u := e.user(email); u.FailedCodeAttempts != 1 {
			t.Fatalf("after a mistyped confirmation code: %d wrong codes counted, want 1", u.FailedCodeAttempts)
		}
		want(t, "the right code", confirm(totpAt(t, secret, e.clock.Now())), 200, "")
		if u := e.user(email); u.FailedCodeAttempts != 0 || u.FailedLoginAttempts != 1 {
			t.Errorf("after the right confirmation code: %d wrong codes, %d failures counted; want 0 and 1",
				u.FailedCodeAttempts, u.FailedLoginAttempts)
		}
	})
}

// TestNoRecoveryCodesWithoutASecondFactor: recovery codes back up a second
// factor: an account without one gets none (404), whatever code it sends,
// and is left with none.
func TestNoRecoveryCodesWithoutASecondFactor(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("none@example.org", goodPassword)
		access, _ := e.login("none@example.org", goodPassword)
		for _, code := range []string{"123456", "aaaaa-aaaaa"} {
			want(t, "recovery codes with "+code, e.do("POST", "/v1/users/me/mfa/recovery-codes",
				map[string]string{"code": code}, bearer(access)...), 404, "not_found")
		}
		if r := e.do("GET", "/v1/users/me/mfa", nil, bearer(access)...); r.body["recovery_codes_left"] != float64(0) {
			t.Errorf("GET mfa of an account without a second factor: %s", r.raw)
		}
	})
}

// TestLoginWaitingAsTheLastFactorGoes: a sign-in that passed the password
// while the account had a second factor, and that the owner's removal of
// the last one overtook, starts over: its recovery code (gone with the
// factor) is refused as a dead mfa_token, logged with the reason, and not
// counted toward the lock as a wrong code would be.
func TestLoginWaitingAsTheLastFactorGoes(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "last.factor@example.org"
		access, secret, codes := e.mfaUser(email)
		token := e.mfaLogin(email)
		want(t, "turn TOTP off", e.do("DELETE", "/v1/users/me/mfa/totp",
			map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(access)...), 204, "")
		want(t, "the waiting sign-in's recovery code", e.verify(token, "recovery_code", codes[0]), 400, "invalid_token")
		if u := e.user(email); u.FailedLoginAttempts != 0 || u.FailedCodeAttempts != 0 {
			t.Errorf("after it: %d failures, %d of them codes; want none counted", u.FailedLoginAttempts, u.FailedCodeAttempts)
		}
		if got := e.failureReasons(email, authd.EventMFAChallengeFailed); !slices.Equal(got, []string{"no second factor enabled"}) {
			t.Errorf("mfa_challenge_failed reasons %q, want the factor's removal", got)
		}
	})
}

// TestConfirmingTOTPRefusedWhileCodesLocked: while codes are locked past
// the password (CodesLockedUntil, which outlives the account's lock), a
// TOTP enrolment's confirmation is refused unchecked, right code or not,
// as a login's or a step-up's code is: a session's holder must not get
// fresh guesses at a pending enrolment's code.
func TestConfirmingTOTPRefusedWhileCodesLocked(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "confirm.locked@example.org"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
		want(t, "enrol", r, 200, "")
		u := e.user(email)
		u.CodesLockedUntil = e.clock.Now().Add(30 * time.Minute)
		if err := e.store.UpdateUser(t.Context(), u); err != nil {
			t.Fatal(err)
		}
		r = e.do("POST", "/v1/users/me/mfa/totp/confirm", map[string]string{"code": totpAt(t, r.str("secret"), e.clock.Now())},
			bearer(access)...)
		want(t, "a right code while codes are locked", r, 423, "account_locked")
		if r.header.Get("Retry-After") == "" {
			t.Errorf("423 without Retry-After: %v", r.header)
		}
		factors, err := e.store.Factors(t.Context(), u.ID)
		if err != nil || len(factors) != 1 || factors[0].Confirmed {
			t.Errorf("factors %+v (%v); want the enrolment still unconfirmed", factors, err)
		}
		if got := e.failureReasons(email, authd.EventMFAEnabled); !slices.Equal(got, []string{"second-factor codes locked"}) {
			t.Errorf("mfa_enabled failure reasons %q, want the codes' lock", got)
		}
	})
}
