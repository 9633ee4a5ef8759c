package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzPasskeyFinish sends arbitrary credentials to the routes that parse
// WebAuthn answers: whatever arrives, the answer is never a 5xx.
func FuzzPasskeyFinish(f *testing.F) {
	e := newEnv(f, openSQLite(f))
	access, k, _ := e.passkeyUser("fuzz@example.org")
	token := e.mfaLogin("fuzz@example.org")
	for _, seed := range []any{
		k.Get(e.beginSignIn()),
		newSoftKey(f, rpID, rpOrigin).Create(e.beginRegistration(access)),
		map[string]any{"id": "AA", "rawId": "AA", "type": "public-key", "response": map[string]any{}},
		"x", 1, nil,
	} {
		b, _ := json.Marshal(seed)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, credential []byte) {
		if !json.Valid(credential) {
			credential, _ = json.Marshal(string(credential))
		}
		for _, req := range []struct {
			path  string
			body  map[string]any
			token string
		}{
			{"/v1/auth/passkey/finish", map[string]any{}, ""},
			{"/v1/users/me/passkeys/finish", map[string]any{}, access},
			{"/v1/auth/mfa/verify", map[string]any{"mfa_token": token, "method": "passkey"}, ""},
		} {
			req.body["credential"] = json.RawMessage(credential)
			body, _ := json.Marshal(req.body)
			r := httptest.NewRequest("POST", req.path, bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			if req.token != "" {
				r.Header.Set("Authorization", "Bearer "+req.token)
			}
			w := httptest.NewRecorder()
			e.api.ServeHTTP(w, r)
			if w.Code >= http.StatusInternalServerError {
				t.Fatalf("%s with %q: %d %s", req.path, credential, w.Code, w.Body)
			}
		}
	})
}
