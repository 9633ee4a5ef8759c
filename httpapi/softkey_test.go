package httpapi_test

import (
	"encoding/base64"
	"testing"

	"github.com/authd/authd/internal/softkey"
)

// softKey is the tests' software WebAuthn authenticator.
type softKey = softkey.Key

func newSoftKey(t testing.TB, rpID, origin string) *softKey { return softkey.New(t, rpID, origin) }

var b64 = base64.RawURLEncoding

// publicKey reads the options of a begin answer ({publicKey: …}).
func publicKey(t testing.TB, r response) map[string]any {
	t.Helper()
	pk, ok := r.body["publicKey"].(map[string]any)
	if !ok {
		t.Fatalf("no publicKey in %s", r.raw)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("ceremony options answered as %q, want application/json", ct)
	}
	return pk
}
