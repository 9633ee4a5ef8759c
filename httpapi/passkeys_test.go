package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
)

const (
	rpID     = "auth.example.org"
	rpOrigin = "https://auth.example.org"
)

// beginRegistration begins adding a passkey and returns the options: with
// the password and, when the helpers gave the token's user a second factor,
// a step-up with it (a passkey, else a TOTP code).
func (e *env) beginRegistration(access string) map[string]any {
	e.t.Helper()
	body := map[string]any{"password": goodPassword}
	r := e.do("POST", "/v1/users/me/passkeys/begin", body, bearer(access)...)
	if r.status == 403 && r.str("code") == "mfa_required" {
		if k := e.passkeyOf[access]; k != nil {
			body["passkey"] = e.stepUp(access, k)
		} else if secret := e.totpOf[access]; secret != "" {
			body["code"] = totpAt(e.t, secret, e.clock.Now())
		}
		r = e.do("POST", "/v1/users/me/passkeys/begin", body, bearer(access)...)
	}
	want(e.t, "begin passkey registration", r, 200, "")
	return publicKey(e.t, r)
}

// addPasskey registers k for the token's user under name.
func (e *env) addPasskey(access string, k *softKey, name string) response {
	e.t.Helper()
	r := e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{"name": name,
		"credential": k.Create(e.beginRegistration(access))}, bearer(access)...)
	if r.status == 201 {
		e.rememberPasskey(access, k)
	}
	return r
}

// rememberPasskey notes that the token's user has k, for later step-ups.
func (e *env) rememberPasskey(access string, k *softKey) {
	if e.passkeyOf == nil {
		e.passkeyOf = map[string]*softKey{}
	}
	e.passkeyOf[access] = k
}

// passkeyUser registers email, logs in and adds a passkey; it returns the
// access token, the key and the recovery codes it brought.
func (e *env) passkeyUser(email string) (string, *softKey, []string) {
	e.t.Helper()
	e.registerVerified(email, goodPassword)
	access, _ := e.login(email, goodPassword)
	k := newSoftKey(e.t, rpID, rpOrigin)
	r := e.addPasskey(access, k, "Laptop")
	want(e.t, "add passkey", r, 201, "")
	var codes []string
	for _, c := range r.body["recovery_codes"].([]any) {
		codes = append(codes, c.(string))
	}
	return access, k, codes
}

// beginSignIn begins a passwordless sign-in and returns its options.
func (e *env) beginSignIn() map[string]any {
	e.t.Helper()
	r := e.do("POST", "/v1/auth/passkey/begin", map[string]any{})
	want(e.t, "begin passkey sign-in", r, 200, "")
	return publicKey(e.t, r)
}

// signIn signs in with k, passwordless.
func (e *env) signIn(k *softKey) response {
	e.t.Helper()
	return e.do("POST", "/v1/auth/passkey/finish", map[string]any{"credential": k.Get(e.beginSignIn())})
}

// stepUp answers a step-up ceremony of the token's user with k.
func (e *env) stepUp(access string, k *softKey) map[string]any {
	e.t.Helper()
	r := e.do("POST", "/v1/users/me/mfa/challenge", map[string]any{}, bearer(access)...)
	want(e.t, "step-up challenge", r, 200, "")
	return k.Get(publicKey(e.t, r))
}

func hasEvent(events []string, event string) bool { return slices.Contains(events, event) }

func TestPasskeyRegistration(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("pat@example.org", goodPassword)
		other, _ := e.login("pat@example.org", goodPassword) // passed the password alone
		access, _ := e.login("pat@example.org", goodPassword)

		options := e.beginRegistration(access)
		sel, _ := options["authenticatorSelection"].(map[string]any)
		if sel["residentKey"] != "required" || sel["userVerification"] != "required" {
			t.Errorf("authenticatorSelection %v, want residentKey and userVerification required", sel)
		}
		if ex, _ := options["excludeCredentials"].([]any); len(ex) != 0 {
			t.Errorf("excludeCredentials %v for a user without passkeys", ex)
		}
		if rp, _ := options["rp"].(map[string]any); rp["id"] != rpID {
			t.Errorf("rp %v, want id %s", rp, rpID)
		}
		user := options["user"].(map[string]any)
		if handle, _ := b64.DecodeString(user["id"].(string)); string(handle) != string(e.user("pat@example.org").ID[:]) {
			t.Errorf("user.id %v is not the user's id", user["id"])
		}

		// The first second factor: recovery codes, and the other session ends.
		k := newSoftKey(t, rpID, rpOrigin)
		r := e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{"name": "  Laptop  ",
			"credential": k.Create(options)}, bearer(access)...)
		want(t, "finish", r, 201, "")
		e.rememberPasskey(access, k)
		if r.str("name") != "Laptop" || r.body["backup_eligible"] != false || r.body["last_used_at"] != nil {
			t.Errorf("passkey %s", r.raw)
		}
		if codes, _ := r.body["recovery_codes"].([]any); len(codes) != authd.RecoveryCodeCount {
			t.Errorf("recovery codes %v, want %d", r.body["recovery_codes"], authd.RecoveryCodeCount)
		}
		if strings.Contains(r.raw, b64.EncodeToString(k.ID)) {
			t.Error("the answer shows the credential id")
		}
		if e.active(other) || !e.active(access) {
			t.Error("adding the first passkey must end the other sessions and keep this one")
		}
		if !hasEvent(e.events("pat@example.org"), "passkey_added/success") {
			t.Errorf("events %v, want passkey_added", e.events("pat@example.org"))
		}

		// A second one, synced and with packed attestation: no new codes;
		// the first is excluded.
		options = e.beginRegistration(access)
		if ex, _ := options["excludeCredentials"].([]any); len(ex) != 1 {
			t.Errorf("excludeCredentials %v, want the first passkey", ex)
		}
		k2 := newSoftKey(t, rpID, rpOrigin)
		k2.Backup, k2.Packed = true, true
		r = e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{"credential": k2.Create(options)}, bearer(access)...)
		want(t, "finish a second", r, 201, "")
		if r.str("name") != authd.DefaultPasskeyName || r.body["backup_eligible"] != true || r.body["recovery_codes"] != nil {
			t.Errorf("second passkey %s", r.raw)
		}
		// The same authenticator again.
		want(t, "register a passkey twice", e.addPasskey(access, k, "Again"), 409, "conflict")

		r = e.do("GET", "/v1/users/me/passkeys", nil, bearer(access)...)
		want(t, "list", r, 200, "")
		items, _ := r.body["items"].([]any)
		if len(items) != 2 {
			t.Fatalf("list %s, want two passkeys", r.raw)
		}
		id := items[0].(map[string]any)["id"].(string)
		r = e.do("PATCH", "/v1/users/me/passkeys/"+id, map[string]string{"name": "Work laptop"}, bearer(access)...)
		want(t, "rename", r, 200, "")
		if r.str("name") != "Work laptop" {
			t.Errorf("renamed %s", r.raw)
		}
		want(t, "rename to an unprintable name", e.do("PATCH", "/v1/users/me/passkeys/"+id,
			map[string]string{"name": "a\tb"}, bearer(access)...), 400, "validation_failed")
		want(t, "rename to blanks", e.do("PATCH", "/v1/users/me/passkeys/"+id,
			map[string]string{"name": " \u3000 "}, bearer(access)...), 400, "validation_failed")
		want(t, "rename to a long name", e.do("PATCH", "/v1/users/me/passkeys/"+id,
			map[string]string{"name": strings.Repeat("é", 65)}, bearer(access)...), 400, "validation_failed")
		want(t, "rename an unknown passkey", e.do("PATCH", "/v1/users/me/passkeys/"+authd.NewID().String(),
			map[string]string{"name": "x"}, bearer(access)...), 404, "not_found")
		want(t, "rename with a bad id", e.do("PATCH", "/v1/users/me/passkeys/nope",
			map[string]string{"name": "x"}, bearer(access)...), 404, "not_found")
		want(t, "rename to the same name", e.do("PATCH", "/v1/users/me/passkeys/"+id,
			map[string]string{"name": "Work laptop"}, bearer(access)...), 200, "")
		// One rename happened: logged with the passkey's id, never its
		// name (the user's words, which erasure could not find in the log).
		renames, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{
			UserID: e.user("pat@example.org").ID, EventType: authd.EventPasskeyRenamed})
		if err != nil {
			t.Fatal(err)
		}
		if len(renames) != 1 || renames[0].Result != authd.ResultSuccess || renames[0].AdditionalContext["passkey_id"] != id {
			t.Fatalf("passkey_renamed events %+v, want one of passkey %s", renames, id)
		}
		if logged, _ := json.Marshal(renames[0]); strings.Contains(string(logged), "Work laptop") {
			t.Errorf("the rename's audit row keeps the name: %s", logged)
		}

		// Someone else's passkey is not theirs to rename.
		e.registerVerified("quy@example.org", goodPassword)
		stranger, _ := e.login("quy@example.org", goodPassword)
		want(t, "rename another user's passkey", e.do("PATCH", "/v1/users/me/passkeys/"+id,
			map[string]string{"name": "mine"}, bearer(stranger)...), 404, "not_found")
		want(t, "without a token", e.do("POST", "/v1/users/me/passkeys/begin", map[string]any{}), 401, "invalid_token")
	})
}

func TestPasskeyRegistrationFailures(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("ray@example.org", goodPassword)
		access, _ := e.login("ray@example.org", goodPassword)
		e.registerVerified("sol@example.org", goodPassword)
		stranger, _ := e.login("sol@example.org", goodPassword)
		finish := func(token string, cred any) response {
			return e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{"credential": cred}, bearer(token)...)
		}

		// A ceremony is single use, and one user's is no one else's.
		k := newSoftKey(t, rpID, rpOrigin)
		cred := k.Create(e.beginRegistration(access))
		want(t, "finish another user's ceremony", finish(stranger, cred), 400, "invalid_token")
		cred = k.Create(e.beginRegistration(access))
		want(t, "finish", finish(access, cred), 201, "")
		e.rememberPasskey(access, k)
		want(t, "finish the same ceremony again", finish(access, cred), 400, "invalid_token")

		// Expired: five minutes.
		k2 := newSoftKey(t, rpID, rpOrigin)
		options := e.beginRegistration(access)
		e.clock.Advance(authd.WebAuthnChallengeTTL)
		want(t, "finish after five minutes", finish(access, k2.Create(options)), 400, "invalid_token")

		// The checks of the attestation: origin, RP id, user verification.
		for name, spoil := range map[string]func(*softKey){
			"another origin":                  func(k *softKey) { k.Origin = "https://evil.example" },
			"another RP id":                   func(k *softKey) { k.RPID = "example.org" },
			"a credential id over 1023 bytes": func(k *softKey) { k.ID = make([]byte, 1100) },
			"no user verification":            func(k *softKey) { k.NoUV = true },
			"a public key off its curve":      func(k *softKey) { k.OffCurve = true },
		} {
			bad := newSoftKey(t, rpID, rpOrigin)
			spoil(bad)
			r := finish(access, bad.Create(e.beginRegistration(access)))
			want(t, name, r, 400, "validation_failed")
		}
		if !hasEvent(e.events("ray@example.org"), "passkey_added/failure") {
			t.Errorf("events %v, want passkey_added failures", e.events("ray@example.org"))
		}
		// The library's own words on a key off its curve reach the log.
		refused, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{
			UserID: e.user("ray@example.org").ID, EventType: authd.EventPasskeyAdded, Result: authd.ResultFailure})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(refused, func(l *authd.SecurityLog) bool {
			return l.AdditionalContext["detail"] == "EC2 key point is not on curve"
		}) {
			t.Errorf("no refused passkey_added says why the off-curve key was refused: %d refusals", len(refused))
		}
	})
}

func TestPasskeySignIn(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, k, _ := e.passkeyUser("uma@example.org")

		options := e.beginSignIn()
		if allow, _ := options["allowCredentials"].([]any); len(allow) != 0 {
			t.Errorf("allowCredentials %v for a discoverable sign-in", allow)
		}
		if options["userVerification"] != "required" {
			t.Errorf("userVerification %v, want required", options["userVerification"])
		}
		cred := k.Get(options)
		r := e.do("POST", "/v1/auth/passkey/finish", map[string]any{"credential": cred, "device_info": "laptop"})
		want(t, "passwordless sign-in", r, 200, "")
		if got := amrOf(t, r.str("access_token")); !slices.Equal(got, []string{"hwk", "mfa"}) {
			t.Errorf("amr %v, want [hwk mfa]", got)
		}
		want(t, "the same assertion again", e.do("POST", "/v1/auth/passkey/finish", map[string]any{"credential": cred}),
			401, "invalid_token")
		evs := e.events("uma@example.org")
		if !hasEvent(evs, "passkey_used/success") || evs[len(evs)-1] != "login_success/success" {
			t.Errorf("events %v, want passkey_used and login_success", evs)
		}
		r = e.do("GET", "/v1/users/me/passkeys", nil, bearer(r.str("access_token"))...)
		if item := r.body["items"].([]any)[0].(map[string]any); item["last_used_at"] == nil {
			t.Errorf("last_used_at not set: %s", r.raw)
		}

		// A synced passkey is swk.
		e.registerVerified("vic@example.org", goodPassword)
		access, _ := e.login("vic@example.org", goodPassword)
		synced := newSoftKey(t, rpID, rpOrigin)
		synced.Backup, synced.Step = true, 0 // synced passkeys send 0
		want(t, "add synced", e.addPasskey(access, synced, "Phone"), 201, "")
		for range 2 { // a counter of 0 twice is no regression
			r = e.signIn(synced)
			want(t, "sign in with a synced passkey", r, 200, "")
			if got := amrOf(t, r.str("access_token")); !slices.Equal(got, []string{"swk", "mfa"}) {
				t.Errorf("amr %v, want [swk mfa]", got)
			}
		}

		// Unknown, expired, and a ceremony of another kind.
		want(t, "unknown challenge", e.do("POST", "/v1/auth/passkey/finish",
			map[string]any{"credential": k.Get(map[string]any{"challenge": b64.EncodeToString(make([]byte, 32))})}),
			401, "invalid_token")
		options = e.beginSignIn()
		e.clock.Advance(authd.WebAuthnChallengeTTL)
		want(t, "expired challenge", e.do("POST", "/v1/auth/passkey/finish", map[string]any{"credential": k.Get(options)}),
			401, "invalid_token")
		options = e.beginRegistration(access)
		want(t, "a registration challenge", e.do("POST", "/v1/auth/passkey/finish",
			map[string]any{"credential": k.Get(options)}), 401, "invalid_token")
	})
}

func TestPasskeySignInRefusals(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, k, _ := e.passkeyUser("wes@example.org")
		before := e.user("wes@example.org").FailedLoginAttempts

		// A bad signature, a credential no one has, another origin: logged,
		// not counted toward the lock.
		bad := k.Get(e.beginSignIn())
		bad["response"].(map[string]any)["signature"] = b64.EncodeToString([]byte("0 not a signature"))
		want(t, "bad signature", e.do("POST", "/v1/auth/passkey/finish", map[string]any{"credential": bad}),
			401, "invalid_credentials")
		stranger := newSoftKey(t, rpID, rpOrigin)
		stranger.UserHandle = e.user("wes@example.org").ID[:]
		want(t, "unknown credential", e.signIn(stranger), 401, "invalid_credentials")
		k.Origin = "https://evil.example"
		want(t, "another origin", e.signIn(k), 401, "invalid_credentials")
		k.Origin = rpOrigin
		if got := e.user("wes@example.org").FailedLoginAttempts; got != before {
			t.Errorf("failed_login_attempts %d after refused assertions, want %d", got, before)
		}
		if evs := e.events("wes@example.org"); !hasEvent(evs, "passkey_login_failed/failure") {
			t.Errorf("events %v, want passkey_login_failed", evs)
		}

		// A counter that goes back: refused, logged, committed.
		want(t, "sign in", e.signIn(k), 200, "")
		k.Count -= 2
		want(t, "counter regression", e.signIn(k), 401, "invalid_credentials")
		if evs := e.events("wes@example.org"); evs[len(evs)-1] != "passkey_counter_regression/failure" {
			t.Errorf("events %v, want passkey_counter_regression last", evs)
		}
		k.Count += 10
		want(t, "a counter past the stored one", e.signIn(k), 200, "")

		// A brute-force lock stops passwords only.
		for range 5 {
			e.do("POST", "/v1/auth/login", map[string]string{"email": "wes@example.org", "password": "wrong password 123"})
		}
		want(t, "password while locked", e.do("POST", "/v1/auth/login",
			map[string]string{"email": "wes@example.org", "password": goodPassword}), 423, "account_locked")
		was := e.user("wes@example.org")
		want(t, "passkey while brute-force locked", e.signIn(k), 200, "")
		if u := e.user("wes@example.org"); !u.IsLocked(e.clock.Now()) {
			t.Error("a passkey sign-in lifted the brute-force lock")
		} else if u.FailedLoginAttempts != was.FailedLoginAttempts || u.FailedCodeAttempts != was.FailedCodeAttempts ||
			!u.LastFailedLogin.Equal(was.LastFailedLogin) {
			// The lock's guesses are still someone's: the sign-in proves
			// its owner, not that whoever guessed has gone.
			t.Errorf("a passkey sign-in during the lock changed its counts: %d, %d, %v; want %d, %d, %v",
				u.FailedLoginAttempts, u.FailedCodeAttempts, u.LastFailedLogin,
				was.FailedLoginAttempts, was.FailedCodeAttempts, was.LastFailedLogin)
		}

		// An administrator's lock refuses it; erasure too.
		id := e.user("wes@example.org").ID
		want(t, "admin lock", e.admin("POST", "/v1/admin/users/"+id.String()+"/lock", map[string]any{}), 204, "")
		want(t, "passkey while locked by an administrator", e.signIn(k), 423, "account_locked")
		want(t, "admin unlock", e.admin("POST", "/v1/admin/users/"+id.String()+"/unlock", map[string]any{}), 204, "")
		want(t, "passkey after unlock", e.signIn(k), 200, "")
		want(t, "admin delete", e.admin("DELETE", "/v1/admin/users/"+id.String(), nil), 204, "")
		want(t, "passkey after erasure", e.signIn(k), 401, "invalid_credentials")
	})
}

func TestPasskeySecondFactor(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, k, codes := e.passkeyUser("xia@example.org")

		r := e.do("POST", "/v1/auth/login", map[string]string{"email": "xia@example.org", "password": goodPassword})
		want(t, "password login", r, 403, "mfa_required")
		if got := fmt.Sprint(r.body["methods"]); got != "[passkey recovery_code]" {
			t.Errorf("methods %s, want [passkey recovery_code]", got)
		}
		token := r.str("mfa_token")
		begin := func(token string) response {
			return e.do("POST", "/v1/auth/passkey/begin", map[string]string{"mfa_token": token})
		}
		verify := func(token string, cred any) response {
			return e.do("POST", "/v1/auth/mfa/verify", map[string]any{"mfa_token": token, "method": "passkey", "credential": cred})
		}
		r = begin(token)
		want(t, "begin second factor", r, 200, "")
		options := publicKey(t, r)
		if allow, _ := options["allowCredentials"].([]any); len(allow) != 1 {
			t.Errorf("allowCredentials %v, want the user's passkey", allow)
		}
		// A refused assertion counts toward the mfa_token, not the lock.
		bad := k.Get(options)
		bad["response"].(map[string]any)["signature"] = b64.EncodeToString([]byte("junk"))
		want(t, "bad assertion", verify(token, bad), 401, "invalid_credentials")
		if n := e.user("xia@example.org").FailedLoginAttempts; n != 0 {
			t.Errorf("failed_login_attempts %d after a refused assertion, want 0", n)
		}
		r = verify(token, k.Get(publicKey(t, begin(token))))
		want(t, "verify with a passkey", r, 200, "")
		if got := amrOf(t, r.str("access_token")); !slices.Equal(got, []string{"pwd", "hwk", "mfa"}) {
			t.Errorf("amr %v, want [pwd hwk mfa]", got)
		}
		want(t, "the mfa_token again", begin(token), 400, "invalid_token")

		// A ceremony of one login is not another's.
		t1, t2 := e.mfaLogin("xia@example.org"), e.mfaLogin("xia@example.org")
		want(t, "another login's ceremony", verify(t2, k.Get(publicKey(t, begin(t1)))), 400, "invalid_token")
		// Passwordless ceremonies are not second-factor ones.
		want(t, "a passwordless ceremony", verify(t2, k.Get(e.beginSignIn())), 400, "invalid_token")
		want(t, "missing credential", e.do("POST", "/v1/auth/mfa/verify",
			map[string]any{"mfa_token": t2, "method": "passkey"}), 400, "validation_failed")
		want(t, "a dead mfa_token", begin("x"), 400, "invalid_token")

		// A recovery code stands in for the passkey.
		want(t, "recovery code", e.verify(t2, "recovery_code", codes[0]), 200, "")
		want(t, "totp without TOTP", e.verify(e.mfaLogin("xia@example.org"), "totp", "123456"), 400, "invalid_token")

		// A user with TOTP and a passkey is offered both.
		access, _, _ := e.mfaUser("yan@example.org")
		want(t, "add passkey", e.addPasskey(access, newSoftKey(t, rpID, rpOrigin), ""), 201, "")
		r = e.do("POST", "/v1/auth/login", map[string]string{"email": "yan@example.org", "password": goodPassword})
		if got := fmt.Sprint(r.body["methods"]); got != "[totp passkey recovery_code]" {
			t.Errorf("methods %s, want [totp passkey recovery_code]", got)
		}
		// One without a passkey cannot begin one.
		e.mfaUser("zed@example.org")
		want(t, "begin without a passkey", begin(e.mfaLogin("zed@example.org")), 400, "validation_failed")
	})
}

// TestPasskeyChallengeSingleUse finishes one ceremony from many clients at
// once: exactly one wins.
func TestPasskeyChallengeSingleUse(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, k, _ := e.passkeyUser("abe@example.org")
		body, _ := json.Marshal(map[string]any{"credential": k.Get(e.beginSignIn())})
		const n = 8
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { statuses[i] = e.do("POST", "/v1/auth/passkey/finish", string(body)).status })
		}
		wg.Wait()
		exactlyOneWins(t, "concurrent finishes of one ceremony", statuses)
	})
}

func TestPasskeyRemovalNeedsStepUp(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, k, codes := e.passkeyUser("bea@example.org")
		k2 := newSoftKey(t, rpID, rpOrigin)
		want(t, "add a second", e.addPasskey(access, k2, "Key"), 201, "")
		r := e.do("GET", "/v1/users/me/passkeys", nil, bearer(access)...)
		items := r.body["items"].([]any)
		first, second := items[0].(map[string]any)["id"].(string), items[1].(map[string]any)["id"].(string)

		want(t, "delete without proof", e.do("DELETE", "/v1/users/me/passkeys/"+first, nil, bearer(access)...),
			400, "validation_failed")
		want(t, "delete with a wrong code", e.do("DELETE", "/v1/users/me/passkeys/"+first,
			map[string]string{"code": "aaaaa-bbbbb"}, bearer(access)...), 401, "invalid_credentials")

		// The passkey proves itself: a step-up ceremony.
		r = e.do("POST", "/v1/users/me/mfa/challenge", map[string]any{}, bearer(access)...)
		want(t, "step-up challenge", r, 200, "")
		if allow, _ := publicKey(t, r)["allowCredentials"].([]any); len(allow) != 2 {
			t.Errorf("allowCredentials %v, want both passkeys", allow)
		}
		proof := k2.Get(publicKey(t, r))
		want(t, "a passwordless ceremony as proof", e.do("DELETE", "/v1/users/me/passkeys/"+first,
			map[string]any{"passkey": k.Get(e.beginSignIn())}, bearer(access)...), 400, "invalid_token")
		want(t, "delete with a passkey", e.do("DELETE", "/v1/users/me/passkeys/"+first,
			map[string]any{"passkey": proof}, bearer(access)...), 204, "")
		want(t, "the proof again", e.do("DELETE", "/v1/users/me/passkeys/"+second,
			map[string]any{"passkey": proof}, bearer(access)...), 400, "invalid_token")

		// The last one goes with a recovery code, and the codes go with it.
		want(t, "delete the last with a recovery code", e.do("DELETE", "/v1/users/me/passkeys/"+second,
			map[string]string{"code": codes[0]}, bearer(access)...), 204, "")
		if n, _ := e.store.RecoveryCodesLeft(context.Background(), e.user("bea@example.org").ID); n != 0 {
			t.Errorf("%d recovery codes left without a second factor, want 0", n)
		}
		want(t, "step-up without passkeys", e.do("POST", "/v1/users/me/mfa/challenge", nil, bearer(access)...),
			404, "not_found")
		r = e.do("POST", "/v1/auth/login", map[string]string{"email": "bea@example.org", "password": goodPassword})
		want(t, "password alone again", r, 200, "")
		evs := e.events("bea@example.org")
		if n := strings.Count(strings.Join(evs, " "), "passkey_removed/success"); n != 2 {
			t.Errorf("events %v, want two passkey_removed", evs)
		}
	})
}

func TestPasskeyAdminResetAndErasure(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, _, _ := e.passkeyUser("cid@example.org")
		u := e.user("cid@example.org")
		want(t, "admin reset", e.admin("POST", "/v1/admin/users/"+u.ID.String()+"/reset-mfa", nil), 204, "")
		if keys, _ := e.store.Passkeys(context.Background(), u.ID); len(keys) != 0 {
			t.Errorf("%d passkeys after the reset", len(keys))
		}
		if n, _ := e.store.RecoveryCodesLeft(context.Background(), u.ID); n != 0 {
			t.Errorf("%d recovery codes after the reset", n)
		}
		evs := e.events("cid@example.org")
		if !hasEvent(evs, "passkey_removed/success") || !hasEvent(evs, "admin_action/success") {
			t.Errorf("events %v", evs)
		}

		k := newSoftKey(t, rpID, rpOrigin)
		want(t, "add again", e.addPasskey(access, k, "Laptop"), 201, "")
		e.beginRegistration(access) // a ceremony in flight
		want(t, "erase without the second factor", e.do("DELETE", "/v1/users/me",
			map[string]string{"password": goodPassword}, bearer(access)...), 403, "mfa_required")
		want(t, "erase with the passkey", e.do("DELETE", "/v1/users/me", map[string]any{"password": goodPassword,
			"passkey": e.stepUp(access, k)}, bearer(access)...), 204, "")
		if keys, _ := e.store.Passkeys(context.Background(), u.ID); len(keys) != 0 {
			t.Errorf("%d passkeys after erasure", len(keys))
		}
		if n := len(scanText(t, e.store, b64.EncodeToString(k.ID))); n != 0 {
			t.Errorf("the credential id survives erasure in %d places", n)
		}
	})
}

func TestPasskeysOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withConfig(func(c *authd.Config) { c.WebAuthnRPID, c.WebAuthnOrigins = "", nil }))
	e.registerVerified("dee@example.org", goodPassword)
	access, _ := e.login("dee@example.org", goodPassword)
	want(t, "begin registration", e.do("POST", "/v1/users/me/passkeys/begin", map[string]any{"password": goodPassword}, bearer(access)...), 404, "not_found")
	want(t, "begin sign-in", e.do("POST", "/v1/auth/passkey/begin", nil), 404, "not_found")
	want(t, "finish sign-in", e.do("POST", "/v1/auth/passkey/finish",
		map[string]any{"credential": map[string]any{}}), 404, "not_found")
}

// TestPasskeysOffEveryRoute: with passkeys off, every passkey route answers
// 404, even for a user who has a passkey from when they were on, and so do
// the passkey pages, the only pages that link to each other.
func TestPasskeysOffEveryRoute(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	mfaKey := withConfig(func(c *authd.Config) { c.MFAKey = []byte("one MFA key for both, 32 bytes..") }) // the recovery codes'
	on := newEnv(t, store, mfaKey)
	_, _, codes := on.passkeyUser("off@example.org")
	keys, err := store.Passkeys(context.Background(), on.user("off@example.org").ID)
	if err != nil || len(keys) != 1 {
		t.Fatalf("passkeys %v, %v; want one", keys, err)
	}
	off := newEnv(t, store, mfaKey, withConfig(func(c *authd.Config) { c.WebAuthnRPID, c.WebAuthnOrigins = "", nil }))
	r := off.verify(off.mfaLogin("off@example.org"), authd.MethodRecoveryCode, codes[0])
	want(t, "sign in with a recovery code", r, 200, "")
	access := bearer(r.str("access_token"))
	key := "/v1/users/me/passkeys/" + keys[0].ID.String()
	for _, tt := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/users/me/passkeys", nil},
		{"POST", "/v1/users/me/passkeys/begin", map[string]any{"password": goodPassword}},
		{"POST", "/v1/users/me/passkeys/finish", map[string]any{"credential": map[string]any{}}},
		{"PATCH", key, map[string]any{"name": "Renamed"}},
		{"DELETE", key, map[string]any{"code": codes[1]}},
		{"POST", "/v1/users/me/mfa/challenge", map[string]any{}},
	} {
		want(t, tt.method+" "+tt.path, off.do(tt.method, tt.path, tt.body, access...), 404, "not_found")
	}
	if keys, _ := store.Passkeys(context.Background(), keys[0].UserID); len(keys) != 1 || keys[0].Name != "Laptop" {
		t.Errorf("passkeys after the refusals: %+v; want the one, untouched", keys)
	}
	for _, path := range []string{"/passkeys", "/sign-in/passkey"} {
		r := off.do("GET", path, nil)
		if r.status != 404 || !strings.Contains(r.raw, "Passkeys are not enabled") ||
			strings.Contains(r.raw, "<script") {
			t.Errorf("GET %s with passkeys off: %d %s; want 404 saying passkeys are off, no script", path, r.status, r.raw)
		}
	}
}

// malformedCredentials are WebAuthn payloads no parser should accept;
// valid makes a fresh, valid answer (to a ceremony of its own) to spoil.
func malformedCredentials(valid func() map[string]any, create bool) map[string]any {
	resp := func(c map[string]any) map[string]any { return c["response"].(map[string]any) }
	with := func(f func(map[string]any)) map[string]any { c := valid(); f(c); return c }
	out := map[string]any{
		"a string":           "credential",
		"a number":           42,
		"an array":           []any{1, 2},
		"an empty object":    map[string]any{},
		"no response":        with(func(c map[string]any) { delete(c, "response") }),
		"no clientDataJSON":  with(func(c map[string]any) { delete(resp(c), "clientDataJSON") }),
		"clientData not b64": with(func(c map[string]any) { resp(c)["clientDataJSON"] = "%%%" }),
		"clientData not JSON": with(func(c map[string]any) {
			resp(c)["clientDataJSON"] = b64.EncodeToString([]byte("not json"))
		}),
		"clientData a get for a create or the reverse": with(func(c map[string]any) {
			cd, _ := b64.DecodeString(resp(c)["clientDataJSON"].(string))
			cd = []byte(strings.NewReplacer("webauthn.create", "webauthn.get", "webauthn.get", "webauthn.create").Replace(string(cd)))
			resp(c)["clientDataJSON"] = b64.EncodeToString(cd)
		}),
		"id not rawId":      with(func(c map[string]any) { c["id"] = b64.EncodeToString([]byte("other")) }),
		"wrong type":        with(func(c map[string]any) { c["type"] = "password" }),
		"id of newlines":    with(func(c map[string]any) { c["id"], c["rawId"] = "\r\n", "" }),
		"response an array": with(func(c map[string]any) { c["response"] = []any{} }),
		"extensions a list": with(func(c map[string]any) { c["clientExtensionResults"] = []any{1} }),
	}
	if create {
		out["attestation junk"] = with(func(c map[string]any) { resp(c)["attestationObject"] = b64.EncodeToString([]byte{0xff, 0x00}) })
		out["attestation a CBOR number"] = with(func(c map[string]any) { resp(c)["attestationObject"] = b64.EncodeToString([]byte{0x01}) })
		out["no attestation"] = with(func(c map[string]any) { delete(resp(c), "attestationObject") })
	} else {
		out["authData junk"] = with(func(c map[string]any) { resp(c)["authenticatorData"] = b64.EncodeToString([]byte{1}) })
		out["userHandle not b64"] = with(func(c map[string]any) { resp(c)["userHandle"] = "!!" })
		out["signature not b64"] = with(func(c map[string]any) { resp(c)["signature"] = "%" })
		out["no signature"] = with(func(c map[string]any) { delete(resp(c), "signature") })
	}
	return out
}

// TestPasskeyMalformedPayloads: every malformed payload is a 400
// problem, or (well-formed but refused) a 401, never a 500.
func TestPasskeyMalformedPayloads(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, k, _ := e.passkeyUser("eve@example.org")
		check := func(what string, r response) {
			t.Helper()
			if r.status != 400 && r.status != 401 {
				t.Errorf("%s: %d %s; want 400 (or 401 for a well-formed refusal)", what, r.status, r.raw)
			}
			if r.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s: Content-Type %q", what, r.header.Get("Content-Type"))
			}
		}
		fresh := newSoftKey(t, rpID, rpOrigin)
		for name, cred := range malformedCredentials(func() map[string]any { return fresh.Create(e.beginRegistration(access)) }, true) {
			check("registration, "+name, e.do("POST", "/v1/users/me/passkeys/finish",
				map[string]any{"credential": cred}, bearer(access)...))
		}
		signIn := func() map[string]any { return k.Get(e.beginSignIn()) }
		for name, cred := range malformedCredentials(signIn, false) {
			check("sign-in, "+name, e.do("POST", "/v1/auth/passkey/finish", map[string]any{"credential": cred}))
		}
		token := e.mfaLogin("eve@example.org")
		second := func() map[string]any {
			r := e.do("POST", "/v1/auth/passkey/begin", map[string]string{"mfa_token": token})
			return k.Get(publicKey(t, r))
		}
		for name, cred := range malformedCredentials(second, false) {
			check("second factor, "+name, e.do("POST", "/v1/auth/mfa/verify",
				map[string]any{"mfa_token": token, "method": "passkey", "credential": cred}))
		}
		// The body itself: refused by the body's own checks, which say what
		// is wrong, before the credential reaches the WebAuthn parser.
		for name, c := range map[string]struct{ body, says string }{
			"unknown field":  {`{"credential":{},"extra":1}`, "is not a known field"},
			"duplicate key":  {`{"credential":{},"credential":{}}`, "appears twice"},
			"no credential":  {`{}`, ""},
			"trailing data":  {`{"credential":{}} {}`, "nothing after it"},
			"deeply nested":  {`{"credential":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":1}}}}}}}}}`, "is nested too deeply"},
			"NUL in a value": {`{"credential":{"id":"\u0000"}}`, "must not contain NUL characters"},
		} {
			r := e.do("POST", "/v1/auth/passkey/finish", c.body)
			want(t, name, r, 400, "")
			if !strings.Contains(r.raw, c.says) {
				t.Errorf("%s: %s, want it to say %q", name, r.raw, c.says)
			}
		}
		r := e.do("POST", "/v1/auth/passkey/finish", strings.Repeat(" ", 70<<10))
		want(t, "a body over 64 KiB", r, 413, "")
	})
}

// exactlyOneWins fails unless exactly one of statuses is 200 and the rest 401.
func exactlyOneWins(t testing.TB, what string, statuses []int) {
	t.Helper()
	wins := 0
	for _, s := range statuses {
		switch s {
		case 200:
			wins++
		case 401:
		default:
			t.Errorf("%s: one answered %d", what, s)
		}
	}
	if wins != 1 {
		t.Errorf("%s: %d of %d won, want exactly 1 (statuses %v)", what, wins, len(statuses), statuses)
	}
}

// TestPasskeyPagesCSP: the passkey pages run their inline scripts under the
// response's nonce and may call this origin only; the mail pages run none.
func TestPasskeyPagesCSP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	for _, path := range []string{"/passkeys", "/sign-in/passkey"} {
		r := e.do("GET", path, nil)
		want(t, path, r, 200, "")
		csp := r.header.Get("Content-Security-Policy")
		_, nonce, _ := strings.Cut(csp, "script-src 'nonce-")
		nonce, _, _ = strings.Cut(nonce, "'")
		if nonce == "" || !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		page := html.UnescapeString(r.raw) // the template writes a + of the nonce as &#43;
		if n := strings.Count(page, "<script"); n == 0 || n != strings.Count(page, `<script nonce="`+nonce+`"`) {
			t.Errorf("%s: %d scripts, not all under the nonce", path, n)
		}
		if strings.Contains(r.raw, "onclick") || strings.Contains(r.raw, "localStorage") {
			t.Errorf("%s: inline handlers or localStorage", path)
		}
	}
	r := e.do("GET", "/reset-password?token=x", nil)
	if csp := r.header.Get("Content-Security-Policy"); strings.Contains(csp, "script-src") || strings.Contains(r.raw, "<script") {
		t.Errorf("a mail page runs script: CSP %q", csp)
	}
}

// TestPasskeyStepUp: a user whose second factor is a passkey proves it for
// a password change, and a TOTP user with a passkey may use either.
func TestPasskeyStepUp(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, k, codes := e.passkeyUser("fay@example.org")
		change := func(proof map[string]any) response {
			body := map[string]any{"current_password": goodPassword, "new_password": "another long passphrase 7"}
			for k, v := range proof {
				body[k] = v
			}
			return e.do("POST", "/v1/auth/password/change", body, bearer(access)...)
		}
		r := change(nil)
		want(t, "change without the second factor", r, 403, "mfa_required")
		if got := fmt.Sprint(r.body["methods"]); got != "[passkey recovery_code]" || r.str("mfa_token") != "" {
			t.Errorf("step-up answer %s", r.raw)
		}
		bad := e.stepUp(access, k)
		bad["response"].(map[string]any)["signature"] = b64.EncodeToString([]byte("junk"))
		want(t, "a refused assertion", change(map[string]any{"passkey": bad}), 401, "invalid_credentials")
		if n := e.user("fay@example.org").FailedLoginAttempts; n != 0 {
			t.Errorf("failed_login_attempts %d after a refused assertion, want 0", n)
		}
		want(t, "a sign-in ceremony as proof", change(map[string]any{"passkey": k.Get(e.beginSignIn())}), 400, "invalid_token")
		want(t, "malformed proof", change(map[string]any{"passkey": map[string]any{"id": 1}}), 400, "validation_failed")
		want(t, "change with the passkey", change(map[string]any{"passkey": e.stepUp(access, k)}), 204, "")
		access, _ = e.login2("fay@example.org", "another long passphrase 7", k)
		goodBody := map[string]any{"current_password": "another long passphrase 7", "new_password": goodPassword,
			"code": codes[0]}
		want(t, "change with a recovery code", e.do("POST", "/v1/auth/password/change", goodBody, bearer(access)...), 204, "")

		// TOTP and a passkey: the passkey removes TOTP.
		access, _, _ = e.mfaUser("gil@example.org")
		k2 := newSoftKey(t, rpID, rpOrigin)
		want(t, "add passkey", e.addPasskey(access, k2, ""), 201, "")
		want(t, "disable TOTP with the passkey", e.do("DELETE", "/v1/users/me/mfa/totp",
			map[string]any{"passkey": e.stepUp(access, k2)}, bearer(access)...), 204, "")
		r = e.do("GET", "/v1/users/me/mfa", nil, bearer(access)...)
		want(t, "factors", r, 200, "")
		if items := r.body["items"].([]any); len(items) != 1 || items[0].(map[string]any)["kind"] != "passkey" ||
			r.body["recovery_codes_left"] != float64(authd.RecoveryCodeCount) {
			t.Errorf("factors after disabling TOTP with a passkey left: %s", r.raw)
		}
	})
}

// login2 signs in with a password and the passkey k as second factor.
func (e *env) login2(email, password string, k *softKey) (access, refresh string) {
	e.t.Helper()
	r := e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": password})
	want(e.t, "password", r, 403, "mfa_required")
	token := r.str("mfa_token")
	r = e.do("POST", "/v1/auth/passkey/begin", map[string]string{"mfa_token": token})
	want(e.t, "begin second factor", r, 200, "")
	r = e.do("POST", "/v1/auth/mfa/verify", map[string]any{"mfa_token": token, "method": "passkey",
		"credential": k.Get(publicKey(e.t, r))})
	want(e.t, "verify with the passkey", r, 200, "")
	return r.str("access_token"), r.str("refresh_token")
}

// TestPasskeySignInRateLimited: refused passwordless sign-ins are limited
// per client like logins, and lock no account.
func TestPasskeySignInRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withRateLimit())
	_, k, _ := e.passkeyUser("hal@example.org")
	var cred map[string]any
	for i := range 30 {
		cred = k.Get(e.beginSignIn())
		cred["response"].(map[string]any)["signature"] = b64.EncodeToString([]byte{byte(i)})
		want(t, "a refused sign-in", e.do("POST", "/v1/auth/passkey/finish", map[string]any{"credential": cred}),
			401, "invalid_credentials")
	}
	want(t, "a 31st begin", e.do("POST", "/v1/auth/passkey/begin", map[string]any{}), 429, "rate_limited")
	last := e.do("POST", "/v1/auth/passkey/finish", map[string]any{"credential": cred})
	want(t, "the 31st finish from one client", last, 429, "rate_limited")
	if last.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if u := e.user("hal@example.org"); u.FailedLoginAttempts != 0 || u.IsLocked(e.clock.Now()) {
		t.Errorf("refused assertions counted toward the lock: %d failures, locked %v", u.FailedLoginAttempts, u.IsLocked(e.clock.Now()))
	}
	want(t, "another client signs in", e.do("POST", "/v1/auth/passkey/finish",
		map[string]any{"credential": k.Get(publicKey(t, e.do("POST", "/v1/auth/passkey/begin", map[string]any{}, from("10.9.8.7")...)))},
		from("10.9.8.7")...), 200, "")
}

// TestPasskeyEdgeCases covers the refusals the main flows do not reach.
func TestPasskeyEdgeCases(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		ctx := context.Background()
		access, k, _ := e.passkeyUser("ida@example.org")
		u := e.user("ida@example.org")

		// An unverified email refuses a passwordless sign-in, as it refuses a login.
		u.EmailVerified = false
		if err := e.store.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		want(t, "unverified email", e.signIn(k), 403, "email_not_verified")
		u.EmailVerified = true
		if err := e.store.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}

		// A passkey added after the password was checked cannot finish that
		// login, in a ceremony begun before or after.
		token := e.mfaLogin("ida@example.org")
		r := e.do("POST", "/v1/auth/passkey/begin", map[string]string{"mfa_token": token})
		want(t, "begin", r, 200, "")
		e.clock.Advance(time.Second)
		late := newSoftKey(t, rpID, rpOrigin)
		want(t, "add a second passkey", e.addPasskey(access, late, "Late"), 201, "")
		used := func() int { return strings.Count(strings.Join(e.events("ida@example.org"), " "), "passkey_used") }
		before := used()
		want(t, "a passkey newer than the login", e.do("POST", "/v1/auth/mfa/verify", map[string]any{
			"mfa_token": token, "method": "passkey", "credential": late.Get(publicKey(t, r))}), 400, "invalid_token")
		want(t, "a ceremony begun after the passkey was added", e.do("POST", "/v1/auth/passkey/begin",
			map[string]string{"mfa_token": token}), 400, "invalid_token")
		keys, err := e.store.Passkeys(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range keys {
			if p.Name == "Late" && !p.LastUsedAt.IsZero() || used() != before {
				t.Errorf("the refused passkey was recorded as used: last used %v, %d passkey_used rows, want %d", p.LastUsedAt, used(), before)
			}
		}

		// An expired mfa_token cannot begin one.
		token = e.mfaLogin("ida@example.org")
		e.clock.Advance(authd.MFAChallengeTTL)
		want(t, "an expired mfa_token", e.do("POST", "/v1/auth/passkey/begin", map[string]string{"mfa_token": token}),
			400, "invalid_token")

		// At most MaxPasskeys.
		for i := range authd.MaxPasskeys - 2 {
			if err := e.store.CreatePasskey(ctx, &authd.Passkey{ID: authd.NewID(), UserID: u.ID, Name: "Filler",
				CredentialID: []byte(fmt.Sprintf("filler-%d", i)), PublicKey: []byte{1}, AttestationType: "none",
				CreatedAt: e.clock.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		want(t, "begin past the limit", e.do("POST", "/v1/users/me/passkeys/begin", map[string]any{"password": goodPassword}, bearer(access)...), 409, "conflict")
		want(t, "a name too long", e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{
			"name": strings.Repeat("x", 65), "credential": map[string]any{}}, bearer(access)...), 400, "validation_failed")
	})
}

// TestPasskeysOffHidesTheMethod: with passkeys off, a user's passkeys are
// not offered as a method (recovery codes still are), at sign-in or for a
// step-up.
func TestPasskeysOffHidesTheMethod(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	keys := t.TempDir() // one MFA key, so that a recovery code from one opens at the other
	on := newEnv(t, store, withKeysDir(keys))
	_, _, codes := on.passkeyUser("jon@example.org")
	off := newEnv(t, store, withKeysDir(keys), withConfig(func(c *authd.Config) { c.WebAuthnRPID = "" }))
	r := off.do("POST", "/v1/auth/login", map[string]string{"email": "jon@example.org", "password": goodPassword})
	want(t, "login", r, 403, "mfa_required")
	if got := fmt.Sprint(r.body["methods"]); got != "[recovery_code]" {
		t.Errorf("methods %s with passkeys off, want [recovery_code]", got)
	}
	want(t, "verify with a passkey while off", off.do("POST", "/v1/auth/mfa/verify", map[string]any{
		"mfa_token": r.str("mfa_token"), "method": "passkey", "credential": map[string]any{}}), 404, "not_found")

	// Nor is it offered for a step-up: a change that lacks one is told of
	// the recovery codes alone.
	r = off.verify(off.mfaLogin("jon@example.org"), "recovery_code", codes[0])
	want(t, "sign in with a recovery code", r, 200, "")
	r = off.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword,
		"new_password": "another long passphrase 7"}, bearer(r.str("access_token"))...)
	want(t, "a change without its step-up", r, 403, "mfa_required")
	if got := fmt.Sprint(r.body["methods"]); got != "[recovery_code]" || strings.Contains(r.raw, "passkey") {
		t.Errorf("step-up with passkeys off: %s, want methods [recovery_code] and no passkey offered", r.raw)
	}
}

// TestPasskeyAssertionWithoutUV: an assertion without user verification is
// refused everywhere, since user verification makes a passkey two factors.
func TestPasskeyAssertionWithoutUV(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	_, k, _ := e.passkeyUser("kim@example.org")
	k.NoUV = true
	want(t, "sign in without UV", e.signIn(k), 401, "invalid_credentials")
	token := e.mfaLogin("kim@example.org")
	r := e.do("POST", "/v1/auth/passkey/begin", map[string]string{"mfa_token": token})
	want(t, "second factor without UV", e.do("POST", "/v1/auth/mfa/verify", map[string]any{"mfa_token": token,
		"method": "passkey", "credential": k.Get(publicKey(t, r))}), 401, "invalid_credentials")
}

// TestRegistrationConflictSpendsTheCeremony: a registration refused with a
// conflict (the passkey is registered already, or the user has the most
// allowed) is logged, and its ceremony is spent like any other: the same
// options cannot then register another authenticator.
func TestRegistrationConflictSpendsTheCeremony(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "twice@example.org"
		access, k, _ := e.passkeyUser(email)
		options := e.beginRegistration(access)
		want(t, "the same passkey again", e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{"name": "dup",
			"credential": k.Create(options)}, bearer(access)...), 409, "conflict")
		want(t, "the spent ceremony with another passkey", e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{
			"name": "second", "credential": newSoftKey(t, rpID, rpOrigin).Create(options)}, bearer(access)...), 400, "invalid_token")

		u := e.user(email)
		for i := range authd.MaxPasskeys - 2 {
			if err := e.store.CreatePasskey(context.Background(), &authd.Passkey{ID: authd.NewID(), UserID: u.ID, Name: "Filler",
				CredentialID: []byte(fmt.Sprintf("filler-%d", i)), PublicKey: []byte{1}, AttestationType: "none",
				CreatedAt: e.clock.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		options = e.beginRegistration(access) // begun below the limit, finished past it
		if err := e.store.CreatePasskey(context.Background(), &authd.Passkey{ID: authd.NewID(), UserID: u.ID, Name: "Filler",
			CredentialID: []byte("filler-last"), PublicKey: []byte{1}, AttestationType: "none", CreatedAt: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
		want(t, "past the limit", e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{"name": "many",
			"credential": newSoftKey(t, rpID, rpOrigin).Create(options)}, bearer(access)...), 409, "conflict")
		var reasons []string
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: u.ID, EventType: authd.EventPasskeyAdded,
			Result: authd.ResultFailure})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logs {
			reasons = append(reasons, l.FailureReason)
		}
		for _, r := range []string{"already registered", "passkey challenge used", "too many passkeys"} {
			if !slices.Contains(reasons, r) {
				t.Errorf("passkey_added failures %q lack %q", reasons, r)
			}
		}
	})
}

// TestPasskeyRegistrationVoidedByChanges: a registration begun before a new
// password or a new second factor does not finish after it. Begun with the
// old password, or with no factor to step up with, it may be an intruder's
// (the old password and a stolen access token), whom the change means to
// shut out: finished, their passkey would sign in alone.
func TestPasskeyRegistrationVoidedByChanges(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		finish := func(access string, k *softKey, options map[string]any) response {
			t.Helper()
			return e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{"name": "intruder's",
				"credential": k.Create(options)}, bearer(access)...)
		}
		refused := func(what string, r response, email string) {
			t.Helper()
			want(t, what, r, 400, "invalid_token")
			u := e.user(email)
			if keys, _ := e.store.Passkeys(context.Background(), u.ID); len(keys) != 0 {
				t.Errorf("%s: %d passkeys planted", what, len(keys))
			}
		}

		// A new password.
		e.registerVerified("changed@example.org", goodPassword)
		access, _ := e.login("changed@example.org", goodPassword)
		options := e.beginRegistration(access)
		want(t, "change password", e.do("POST", "/v1/auth/password/change", map[string]string{
			"current_password": goodPassword, "new_password": "a brand new passphrase"}, bearer(access)...), 204, "")
		refused("a registration begun before a new password", finish(access, newSoftKey(t, rpID, rpOrigin), options),
			"changed@example.org")

		// A first TOTP factor.
		e.registerVerified("totp@example.org", goodPassword)
		access, _ = e.login("totp@example.org", goodPassword)
		options = e.beginRegistration(access)
		r := e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...)
		want(t, "enrol", r, 200, "")
		want(t, "confirm", e.do("POST", "/v1/users/me/mfa/totp/confirm",
			map[string]string{"code": totpAt(t, r.str("secret"), e.clock.Now())}, bearer(access)...), 200, "")
		refused("a registration begun before the first factor", finish(access, newSoftKey(t, rpID, rpOrigin), options),
			"totp@example.org")

		// An administrator's reset of the second factors.
		access, _, _ = e.passkeyUser("reset@example.org")
		options = e.beginRegistration(access)
		want(t, "reset-mfa", e.admin("POST", "/v1/admin/users/"+e.user("reset@example.org").ID.String()+"/reset-mfa", nil), 204, "")
		want(t, "a registration begun before an administrator's reset", finish(access, newSoftKey(t, rpID, rpOrigin), options),
			400, "invalid_token")

		// A factor's removal: TOTP turned off, a passkey removed. The
		// registration began with its proof; the owner removing it may be
		// shutting out whoever else holds it.
		access, secret, _ := e.mfaUser("totpoff@example.org")
		options = e.beginRegistration(access)
		e.clock.Advance(30 * time.Second) // the step-up spent the code of this window
		want(t, "turn TOTP off", e.do("DELETE", "/v1/users/me/mfa/totp", map[string]string{"code": totpAt(t, secret, e.clock.Now())},
			bearer(access)...), 204, "")
		refused("a registration begun before TOTP was turned off", finish(access, newSoftKey(t, rpID, rpOrigin), options),
			"totpoff@example.org")

		access, k, _ := e.passkeyUser("keyoff@example.org")
		options = e.beginRegistration(access)
		id := e.do("GET", "/v1/users/me/passkeys", nil, bearer(access)...).body["items"].([]any)[0].(map[string]any)["id"].(string)
		want(t, "remove the passkey", e.do("DELETE", "/v1/users/me/passkeys/"+id, map[string]any{"passkey": e.stepUp(access, k)},
			bearer(access)...), 204, "")
		refused("a registration begun before a passkey was removed", finish(access, newSoftKey(t, rpID, rpOrigin), options),
			"keyoff@example.org")

		// A first passkey: the other registration begun without a step-up
		// goes; a registration finishes once.
		e.registerVerified("twice@example.org", goodPassword)
		access, _ = e.login("twice@example.org", goodPassword)
		first, second := e.beginRegistration(access), e.beginRegistration(access)
		want(t, "the first passkey", finish(access, newSoftKey(t, rpID, rpOrigin), first), 201, "")
		r = finish(access, newSoftKey(t, rpID, rpOrigin), second)
		want(t, "a registration begun before the first passkey", r, 400, "invalid_token")
		if h := r.header.Get("WWW-Authenticate"); h != "" || r.field() != "credential" {
			t.Errorf("the refusal has WWW-Authenticate %q and names %q; want none (the access token is good) and credential",
				h, r.field())
		}
		if detail := r.str("detail"); !strings.Contains(detail, "another passkey was added") {
			t.Errorf("the refusal says %q; want why (another passkey was added) and what to do", detail)
		}
		if keys, _ := e.store.Passkeys(context.Background(), e.user("twice@example.org").ID); len(keys) != 1 {
			t.Errorf("%d passkeys; want the first alone", len(keys))
		}
	})
}

// TestPasskeySecondFactorFailuresKillTheToken: refused passkey assertions
// count toward the mfa_token's MaxMFAFailures, as wrong codes do: past
// them the token is dead, even for a good assertion, so that one stolen
// mfa_token cannot try assertions for its lifetime.
func TestPasskeySecondFactorFailuresKillTheToken(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, k, _ := e.passkeyUser("max@example.org")
		token := e.mfaLogin("max@example.org")
		begin := func() map[string]any {
			t.Helper()
			r := e.do("POST", "/v1/auth/passkey/begin", map[string]string{"mfa_token": token})
			want(t, "begin second factor", r, 200, "")
			return publicKey(t, r)
		}
		verify := func(cred any) response {
			return e.do("POST", "/v1/auth/mfa/verify", map[string]any{"mfa_token": token, "method": "passkey", "credential": cred})
		}
		spare := begin() // a ceremony of the token, begun before its failures
		for range authd.MaxMFAFailures {
			bad := k.Get(begin())
			bad["response"].(map[string]any)["signature"] = b64.EncodeToString([]byte("junk"))
			want(t, "a refused assertion", verify(bad), 401, "invalid_credentials")
		}
		want(t, "a good assertion once the token is spent by failures", verify(k.Get(spare)), 400, "invalid_token")
		want(t, "begin once the token is spent by failures", e.do("POST", "/v1/auth/passkey/begin",
			map[string]string{"mfa_token": token}), 400, "invalid_token")
		if n := e.user("max@example.org").FailedLoginAttempts; n != 0 {
			t.Errorf("failed_login_attempts %d after refused assertions, want 0", n)
		}
		token = e.mfaLogin("max@example.org")
		want(t, "a new login with the passkey", verify(k.Get(begin())), 200, "")
	})
}

// TestPasskeyStepUpClearsWrongCodes: a passkey that passes a step-up is a
// right second factor from the signed-in owner, as a right code is: the
// wrong codes counted before it are forgotten, so that they do not join
// later ones toward a lock by codes.
func TestPasskeyStepUpClearsWrongCodes(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		access, k, _ := e.passkeyUser("ned@example.org")
		want(t, "a wrong recovery code", e.do("POST", "/v1/users/me/passkeys/begin", map[string]any{
			"password": goodPassword, "code": "abcde-fghij"}, bearer(access)...), 401, "invalid_credentials")
		if n := e.user("ned@example.org").FailedCodeAttempts; n != 1 {
			t.Fatalf("failed_code_attempts %d after a wrong code, want 1", n)
		}
		want(t, "a step-up with the passkey", e.do("POST", "/v1/users/me/passkeys/begin", map[string]any{
			"password": goodPassword, "passkey": e.stepUp(access, k)}, bearer(access)...), 200, "")
		if n := e.user("ned@example.org").FailedCodeAttempts; n != 0 {
			t.Errorf("failed_code_attempts %d after a passkey step-up, want 0", n)
		}
	})
}

// TestFirstPasskeyLogsTheSessionsItEnds: the passkey_added row of a first
// second factor says how many other sessions it ended (they passed the
// password alone), so that the owner or an administrator reading the log
// can tell why those devices were signed out; a later passkey ends none.
func TestFirstPasskeyLogsTheSessionsItEnds(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "ola@example.org"
		e.registerVerified(email, goodPassword)
		e.login(email, goodPassword)
		e.login(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		want(t, "add the first passkey", e.addPasskey(access, newSoftKey(t, rpID, rpOrigin), "Laptop"), 201, "")
		want(t, "add a second passkey", e.addPasskey(access, newSoftKey(t, rpID, rpOrigin), "Phone"), 201, "")
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: e.user(email).ID,
			EventType: authd.EventPasskeyAdded, Result: authd.ResultSuccess})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range logs {
			got = append(got, fmt.Sprint(l.AdditionalContext["first_factor"], " ", l.AdditionalContext["sessions_revoked"]))
		}
		slices.Sort(got)
		if want := []string{"false 0", "true 2"}; !slices.Equal(got, want) {
			t.Errorf("passkey_added rows (first_factor sessions_revoked) %q, want %q", got, want)
		}
	})
}

// TestPasswordlessSessionRemovesFactorsWithThePassword: a session a
// passkey signed in alone (no pwd in its amr) must give the password to
// remove a factor or replace the recovery codes. Whoever holds one passkey
// (a copy synced to someone else's device) would otherwise remove the
// owner's TOTP and passkeys and take the recovery codes, leaving the owner
// no way in but an administrator.
func TestPasswordlessSessionRemovesFactorsWithThePassword(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "owner@example.org"
		owner, _, _ := e.mfaUser(email)
		shared := newSoftKey(t, rpID, rpOrigin)
		want(t, "add the shared passkey", e.addPasskey(owner, shared, "Family tablet"), 201, "")
		r := e.signIn(shared)
		want(t, "passwordless sign-in", r, 200, "")
		holder := r.str("access_token")
		r = e.do("GET", "/v1/users/me/passkeys", nil, bearer(holder)...)
		want(t, "list", r, 200, "")
		key := r.body["items"].([]any)[0].(map[string]any)["id"].(string)

		removals := []struct{ name, method, path string }{
			{"TOTP's removal", "DELETE", "/v1/users/me/mfa/totp"},
			{"the codes' replacement", "POST", "/v1/users/me/mfa/recovery-codes"},
			{"a passkey's removal", "DELETE", "/v1/users/me/passkeys/" + key},
		}
		for _, c := range removals {
			r := e.do(c.method, c.path, map[string]any{"passkey": e.stepUp(holder, shared)}, bearer(holder)...)
			want(t, c.name+" without the password", r, 400, "validation_failed")
			if r.field() != "password" {
				t.Errorf("%s: field %q, want password", c.name, r.field())
			}
			r = e.do(c.method, c.path, map[string]any{"password": "not-the-password-1", "passkey": e.stepUp(holder, shared)},
				bearer(holder)...)
			want(t, c.name+" with a wrong password", r, 401, "invalid_credentials")
		}
		if u := e.user(email); u.FailedLoginAttempts != len(removals) {
			t.Errorf("%d failures counted, want the %d wrong passwords", u.FailedLoginAttempts, len(removals))
		}
		if evs := e.events(email); hasEvent(evs, "mfa_disabled/success") || hasEvent(evs, "passkey_removed/success") ||
			hasEvent(evs, "recovery_codes_replaced/success") {
			t.Fatalf("a factor changed without the password: %v", evs)
		}

		// With the password the holder's session is the owner's, as a
		// session the password signed in is: the removal goes through.
		want(t, "TOTP's removal with the password", e.do("DELETE", "/v1/users/me/mfa/totp",
			map[string]any{"password": goodPassword, "passkey": e.stepUp(holder, shared)}, bearer(holder)...), 204, "")
		// A session the password signed in needs only the second factor;
		// a password it gives is checked all the same.
		e.clock.Advance(30 * time.Second)
		want(t, "a wrong password given in a password's session", e.do("POST", "/v1/users/me/mfa/recovery-codes",
			map[string]any{"password": "not-the-password-1", "passkey": e.stepUp(owner, shared)}, bearer(owner)...),
			401, "invalid_credentials")
		want(t, "the codes' replacement in a password's session", e.do("POST", "/v1/users/me/mfa/recovery-codes",
			map[string]any{"passkey": e.stepUp(owner, shared)}, bearer(owner)...), 200, "")
	})
}
