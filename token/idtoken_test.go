package token

import (
	"testing"
	"time"
)

// TestIDTokenHint: an ID token this keyring signed for the issuer is a
// hint even once expired; another issuer's, a tampered one, one spelt
// with a line break or an access token is not.
func TestIDTokenHint(t *testing.T) {
	dir := t.TempDir()
	ids, err := OpenKeyring(dir, IDTokenAlg, now)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(iss string) string {
		raw, err := ids.SignID(IDClaims{Issuer: iss, Subject: "user", Audience: "app", IssuedAt: now,
			ExpiresAt: now.Add(time.Minute), AuthTime: now, SessionID: "sid-1"}, now)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	hint, err := ids.ParseIDHint(sign("https://auth.example.org"), "https://auth.example.org")
	if err != nil || hint.Subject != "user" || hint.Audience != "app" || hint.SessionID != "sid-1" {
		t.Errorf("an expired hint of ours: %+v, %v", hint, err)
	}
	if _, err := ids.ParseIDHint(sign("https://other.example.org"), "https://auth.example.org"); err == nil {
		t.Error("a hint of another issuer was accepted")
	}
	raw := sign("https://auth.example.org")
	if _, err := ids.ParseIDHint(raw[:len(raw)-4]+"AAAA", "https://auth.example.org"); err == nil {
		t.Error("a tampered hint was accepted")
	}
	if _, err := ids.ParseIDHint(breakLine(raw), "https://auth.example.org"); err == nil {
		t.Error("a hint with a line break in it was accepted: one token, two spellings")
	}
	access, err := OpenKeyring(dir, IDTokenAlg, now) // the same RS256 keys, as with AUTHD_SIGNING_ALG=RS256
	if err != nil {
		t.Fatal(err)
	}
	at, err := NewIssuer(access, "https://auth.example.org", "authd").Issue(claimsAt(now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ids.ParseIDHint(at, "https://auth.example.org"); err == nil {
		t.Error("an access token passed as an ID token hint")
	}
}
