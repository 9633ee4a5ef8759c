package httpapi_test

import (
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
)

// signedIn is a session: its tokens, and what the test calls it.
type signedIn struct{ name, access, refresh string }

func pairOf(t *testing.T, name string, r response) *signedIn {
	t.Helper()
	want(t, name, r, 200, "")
	return &signedIn{name, r.str("access_token"), r.str("refresh_token")}
}

// wantLive fails t unless each session is live as want says: its access
// token (through the revocation set) and its refresh token (through the
// database) alike. A refresh that works rotates the session's token.
func (e *env) wantLive(want bool, sessions ...*signedIn) {
	e.t.Helper()
	for _, s := range sessions {
		if got := e.active(s.access); got != want {
			e.t.Errorf("%s: access token active %v, want %v", s.name, got, want)
		}
		r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": s.refresh})
		if got := r.status == 200; got != want {
			e.t.Errorf("%s: refresh %d %s, want live %v", s.name, r.status, r.raw, want)
		}
		if r.status == 200 {
			s.refresh = r.str("refresh_token")
		}
	}
}

// TestRemovingAPasskeyEndsItsSessions: the sessions a removed passkey
// signed in end, alone (passwordless) or as the second factor: someone
// else holding it (a passkey synced to their device) signs in without
// the password, and its owner, removing it, has no password to change.
// The session that removes it stays, as after a new password; so do the
// sessions of the password alone and of another passkey.
func TestRemovingAPasskeyEndsItsSessions(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "synced@example.org"
		password, k, codes := e.passkeyUser(email)
		k2 := newSoftKey(t, rpID, rpOrigin)
		want(t, "add another passkey", e.addPasskey(password, k2, "Phone"), 201, "")
		alone := pairOf(t, "signed in with the passkey alone", e.signIn(k))
		access, refresh := e.login2(email, goodPassword, k)
		second := &signedIn{"signed in with the passkey as second factor", access, refresh}
		other := pairOf(t, "signed in with the other passkey", e.signIn(k2))
		remover := pairOf(t, "the session that removes it, signed in with it", e.signIn(k))

		key, err := e.store.PasskeyByCredentialID(t.Context(), k.ID)
		if err != nil {
			t.Fatal(err)
		}
		want(t, "remove the passkey", e.do("DELETE", "/v1/users/me/passkeys/"+key.ID.String(),
			map[string]string{"password": goodPassword, "code": codes[0]}, bearer(remover.access)...), 204, "")
		e.wantLive(false, alone, second)
		e.wantLive(true, remover, other)
		if !e.active(password) {
			t.Error("the password's session ended with the passkey")
		}
		e.wantSessionsEnded(email, 2, authd.MethodPasskey)
		// Each row names the session it ended and the passkey removed.
		logs, err := e.store.SecurityLogs(t.Context(), authd.SecurityLogFilter{UserID: e.user(email).ID,
			EventType: authd.EventSessionRevoked})
		if err != nil {
			t.Fatal(err)
		}
		ended := map[any]bool{}
		for _, l := range logs {
			if l.AdditionalContext["passkey_id"] != key.ID.String() {
				t.Errorf("session_revoked row %+v does not name the passkey %s", l.AdditionalContext, key.ID)
			}
			ended[l.AdditionalContext["session_id"]] = true
		}
		for _, s := range []*signedIn{alone, second} {
			if sid := jwtClaims(t, s.access)["sid"]; !ended[sid] {
				t.Errorf("%s (%v): no session_revoked row names it, among %v", s.name, sid, ended)
			}
		}
	})
}

// TestRemovingTOTPOrCodesEndsTheirSessions: replacing the recovery codes
// ends the sessions an old code signed in; turning TOTP off ends those it
// signed in and, with the last factor gone, those of the codes since. The
// session that asks stays, and so does the password's.
func TestRemovingTOTPOrCodesEndsTheirSessions(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "factors@example.org"
		password, secret, codes := e.mfaUser(email)
		viaTOTP := func(name string) *signedIn {
			t.Helper()
			token := e.mfaLogin(email)
			s := pairOf(t, name, e.verify(token, authd.MethodTOTP, totpAt(t, secret, e.clock.Now())))
			e.clock.Advance(30 * time.Second) // a code is taken once
			return s
		}
		viaCode := func(name, code string) *signedIn {
			t.Helper()
			return pairOf(t, name, e.verify(e.mfaLogin(email), authd.MethodRecoveryCode, code))
		}
		byTOTP, byTOTPToo := viaTOTP("signed in with TOTP"), viaTOTP("signed in with TOTP, then turns it off")
		byCode := viaCode("signed in with a recovery code", codes[0])

		r := e.do("POST", "/v1/users/me/mfa/recovery-codes", map[string]string{"code": totpAt(t, secret, e.clock.Now())},
			bearer(byTOTP.access)...)
		want(t, "replace the recovery codes", r, 200, "")
		e.clock.Advance(30 * time.Second)
		e.wantLive(false, byCode)
		e.wantLive(true, byTOTP, byTOTPToo)
		e.wantSessionsEnded(email, 1, authd.MethodRecoveryCode)

		newCode := r.body["recovery_codes"].([]any)[0].(string)
		byNewCode := viaCode("signed in with a new recovery code", newCode)
		want(t, "turn TOTP off", e.do("DELETE", "/v1/users/me/mfa/totp",
			map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(byTOTPToo.access)...), 204, "")
		e.wantLive(false, byTOTP, byNewCode)
		e.wantLive(true, byTOTPToo)
		if !e.active(password) {
			t.Error("the password's session ended with the factors")
		}
		e.wantSessionsEnded(email, 1, authd.MethodTOTP)
		e.wantSessionsEnded(email, 2, authd.MethodRecoveryCode)
	})
}

// wantSessionsEnded fails the test unless n sessions of the user were
// logged as ended with a factor of method.
func (e *env) wantSessionsEnded(email string, n int, method string) {
	e.t.Helper()
	logs, err := e.store.SecurityLogs(e.t.Context(), authd.SecurityLogFilter{UserID: e.user(email).ID,
		EventType: authd.EventSessionRevoked})
	if err != nil {
		e.t.Fatal(err)
	}
	got := 0
	for _, l := range logs {
		if strings.Contains(l.FailureReason, "factor it signed in with was removed") && l.AdditionalContext["method"] == method {
			got++
		}
	}
	if got != n {
		e.t.Errorf("%d session_revoked rows for %s, want %d: %+v", got, method, n, logs)
	}
}

// TestRecoveryCodeSessionsOutliveAnotherFactor: the codes stay while a
// factor is left, and so do the sessions they signed in; a session a code
// signed in that replaces the codes stays too, as the asking session
// always does.
func TestRecoveryCodeSessionsOutliveAnotherFactor(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "codes@example.org"
		password, secret, codes := e.mfaUser(email)
		want(t, "add a passkey beside TOTP", e.addPasskey(password, newSoftKey(t, rpID, rpOrigin), "Laptop"), 201, "")
		e.clock.Advance(30 * time.Second)
		byCode := pairOf(t, "signed in with a recovery code",
			e.verify(e.mfaLogin(email), authd.MethodRecoveryCode, codes[0]))
		want(t, "turn TOTP off, the passkey left", e.do("DELETE", "/v1/users/me/mfa/totp",
			map[string]string{"code": totpAt(t, secret, e.clock.Now())}, bearer(password)...), 204, "")
		e.wantLive(true, byCode)
		e.wantSessionsEnded(email, 0, authd.MethodRecoveryCode)

		want(t, "replace the codes from the code's session", e.do("POST", "/v1/users/me/mfa/recovery-codes",
			map[string]string{"code": codes[1]}, bearer(byCode.access)...), 200, "")
		e.wantLive(true, byCode)
		e.wantSessionsEnded(email, 0, authd.MethodRecoveryCode)
	})
}
