package httpapi_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/authd/authd"
)

// A device description is bounded in bytes (authd.MaxDeviceInfoLength):
// one at the bound is stored as sent, one past it is refused naming the
// field, before any session starts, whether the sign-in is by password or
// by passkey. Past the bound in characters too, the database's own limit
// would answer 500 on PostgreSQL; past it in bytes only, both stores would
// keep it.
func TestDeviceInfoBound(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("dora@example.org", goodPassword)
		_, k, _ := e.passkeyUser("pam@example.org")
		atBound := strings.Repeat("é", authd.MaxDeviceInfoLength/2) + "x"
		if len(atBound) != authd.MaxDeviceInfoLength {
			t.Fatalf("atBound is %d bytes", len(atBound))
		}
		over := map[string]string{
			"in bytes only":           strings.Repeat("é", authd.MaxDeviceInfoLength/2+1),
			"in bytes and characters": strings.Repeat("x", authd.MaxDeviceInfoLength+1),
		}

		for name, device := range over {
			r := e.do("POST", "/v1/auth/login", map[string]string{"email": "dora@example.org", "password": goodPassword, "device_info": device})
			want(t, "login with a device description "+name+" too long", r, 400, "validation_failed")
			if r.field() != "device_info" {
				t.Errorf("the refusal names %q: %s", r.field(), r.raw)
			}
			r = e.do("POST", "/v1/auth/passkey/finish", map[string]any{"credential": k.Get(e.beginSignIn()), "device_info": device})
			want(t, "passkey sign-in with a device description "+name+" too long", r, 400, "validation_failed")
			if r.field() != "device_info" {
				t.Errorf("the refusal names %q: %s", r.field(), r.raw)
			}
		}

		r := e.do("POST", "/v1/auth/login", map[string]string{"email": "dora@example.org", "password": goodPassword, "device_info": atBound})
		want(t, "login with a device description at the bound", r, 200, "")
		if got := sessionDevices(t, e, r.str("access_token")); len(got) != 1 || got[0] != atBound {
			t.Errorf("sessions' device descriptions %q, want only the one at the bound", got)
		}
		r = e.do("POST", "/v1/auth/passkey/finish", map[string]any{"credential": k.Get(e.beginSignIn()), "device_info": atBound})
		want(t, "passkey sign-in with a device description at the bound", r, 200, "")
		// passkeyUser's own login and the sign-in above: the refused ones
		// started none.
		if got := sessionDevices(t, e, r.str("access_token")); len(got) != 2 || !slices.Contains(got, atBound) {
			t.Errorf("sessions' device descriptions %q, want two, one at the bound", got)
		}
	})
}

// sessionDevices lists the device descriptions of the token's user's sessions.
func sessionDevices(t *testing.T, e *env, access string) []string {
	t.Helper()
	r := e.do("GET", "/v1/users/me/sessions", nil, bearer(access)...)
	want(t, "sessions", r, 200, "")
	var out []string
	for _, item := range r.body["items"].([]any) {
		d, _ := item.(map[string]any)["device_info"].(string)
		out = append(out, d)
	}
	return out
}
